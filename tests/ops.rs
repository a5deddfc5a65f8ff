//! Every built-in elementwise op and reduction: value and derivative against its closed
//! form (at the op's `check_at()` points and at its edges) and against a central
//! difference; the kink conventions; numerical stability; broadcasting gradients.

use approx::assert_relative_eq;
use std::collections::HashMap;
use tapegrad::{ops, Result, Tape, Tensor, Var};

type Apply = for<'t> fn(Var<'t>) -> Var<'t>;

/// One op: how to record it, its closed-form value and derivative, and extra edge points.
struct Case {
    apply: Apply,
    value: fn(f64) -> f64,
    derivative: fn(f64) -> f64,
    edges: &'static [f64],
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Closed forms written out independently of the engine. GELU's reference values
/// come from Python's `math.erf` (the engine uses `libm::erf`).
fn cases() -> HashMap<&'static str, Case> {
    let mut m = HashMap::new();
    macro_rules! case {
        ($name:literal, $apply:expr, $f:expr, $df:expr, $edges:expr) => {
            m.insert(
                $name,
                Case {
                    apply: $apply,
                    value: $f,
                    derivative: $df,
                    edges: $edges,
                },
            );
        };
    }
    case!("neg", |x| -x, |x| -x, |_| -1.0, &[0.0]);
    case!(
        "powf",
        |x| x.powf(2.5),
        |x| x.powf(2.5),
        |x| 2.5 * x.powf(1.5),
        &[0.0, 9.0]
    );
    case!(
        "powi",
        |x| x.powi(3),
        |x| x * x * x,
        |x| 3.0 * x * x,
        &[0.0, -1.0]
    );
    case!("add_scalar", |x| x + 1.5, |x| x + 1.5, |_| 1.0, &[0.0]);
    case!("mul_scalar", |x| x * -2.5, |x| -2.5 * x, |_| -2.5, &[0.0]);
    case!("div_scalar", |x| x / 4.0, |x| x / 4.0, |_| 0.25, &[0.0]);
    case!("scalar_sub", |x| 1.0 - x, |x| 1.0 - x, |_| -1.0, &[0.0]);
    case!(
        "scalar_div",
        |x| 3.0 / x,
        |x| 3.0 / x,
        |x| -3.0 / (x * x),
        &[1.0]
    );
    case!("exp", |x| x.exp(), f64::exp, f64::exp, &[-745.0, 700.0]);
    case!("ln", |x| x.ln(), f64::ln, |x| 1.0 / x, &[1e-300, 1e300]);
    case!(
        "sqrt",
        |x| x.sqrt(),
        f64::sqrt,
        |x| 0.5 / x.sqrt(),
        &[1e-300, 1e300]
    );
    case!(
        "abs",
        |x| x.abs(),
        f64::abs,
        |x| if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        },
        &[0.0, -0.0]
    );
    case!(
        "sin",
        |x| x.sin(),
        f64::sin,
        f64::cos,
        &[std::f64::consts::PI]
    );
    case!(
        "cos",
        |x| x.cos(),
        f64::cos,
        |x| -x.sin(),
        &[std::f64::consts::PI]
    );
    case!(
        "tan",
        |x| x.tan(),
        f64::tan,
        |x| 1.0 / (x.cos() * x.cos()),
        &[1.5]
    );
    case!(
        "sign",
        |x| x.sign(),
        |x| if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        },
        |_| 0.0,
        &[0.0, -0.0]
    );
    case!(
        "erf",
        |x| x.erf(),
        erf_reference,
        |x| 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp(),
        &[-6.0, 6.0]
    );
    case!(
        "step",
        |x| x.step(),
        |x| if x > 0.0 { 1.0 } else { 0.0 },
        |_| 0.0,
        &[0.0, -1e9, 1e9]
    );
    case!(
        "sigmoid",
        |x| x.sigmoid(),
        sigmoid,
        |x| sigmoid(x) * (1.0 - sigmoid(x)),
        &[-700.0, 700.0]
    );
    case!(
        "tanh",
        |x| x.tanh(),
        f64::tanh,
        |x| 1.0 / (x.cosh() * x.cosh()),
        &[-1000.0, 1000.0]
    );
    case!(
        "relu",
        |x| x.relu(),
        |x| x.max(0.0),
        |x| if x > 0.0 { 1.0 } else { 0.0 },
        &[0.0, -1e9, 1e9]
    );
    case!(
        "leaky_relu",
        |x| x.leaky_relu(0.01),
        |x| if x > 0.0 { x } else { 0.01 * x },
        |x| if x > 0.0 { 1.0 } else { 0.01 },
        &[0.0, -1e9]
    );
    case!(
        "elu",
        |x| x.elu(1.0),
        |x| if x > 0.0 { x } else { x.exp() - 1.0 },
        |x| if x > 0.0 { 1.0 } else { x.exp() },
        &[0.0, -1000.0, 1000.0]
    );
    case!(
        "softsign",
        |x| x.softsign(),
        |x| x / (1.0 + x.abs()),
        |x| 1.0 / ((1.0 + x.abs()) * (1.0 + x.abs())),
        &[-1e9, 1e9]
    );
    case!(
        "atan",
        |x| x.atan(),
        f64::atan,
        |x| 1.0 / (1.0 + x * x),
        &[-1e9, 1e9]
    );
    case!(
        "gaussian",
        |x| x.gaussian(),
        |x| (-x * x).exp(),
        |x| -2.0 * x * (-x * x).exp(),
        &[-30.0, 30.0]
    );
    case!(
        "swish",
        |x| x.silu(),
        |x| x * sigmoid(x),
        |x| sigmoid(x) + x * sigmoid(x) * (1.0 - sigmoid(x)),
        &[-700.0, 700.0]
    );
    case!(
        "softplus",
        |x| x.softplus(),
        |x| (1.0 + x.exp()).ln(),
        sigmoid,
        &[-700.0, 700.0]
    );
    case!(
        "gelu",
        |x| x.gelu(),
        |x| gelu_reference(x).0,
        |x| gelu_reference(x).1,
        &[]
    );
    case!(
        "gelu_tanh",
        |x| x.gelu_tanh(),
        |x| 0.5 * x * (1.0 + gelu_tanh_u(x).tanh()),
        |x| {
            let t = gelu_tanh_u(x).tanh();
            let du = (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 3.0 * 0.044715 * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        },
        &[-30.0, 30.0]
    );
    case!(
        "clamp",
        |x| x.clamp(-1.0, 1.0),
        |x: f64| x.clamp(-1.0, 1.0), // std's clamp
        |x| if (-1.0..=1.0).contains(&x) { 1.0 } else { 0.0 },
        &[-1.0, 1.0, -1e9, 1e9]
    );
    m
}

/// The argument of tanh in GELU's tanh approximation, √(2/π)(x + 0.044715x³).
fn gelu_tanh_u(x: f64) -> f64 {
    (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)
}

/// erf(x) from Python's `math.erf` (the engine uses `libm::erf`).
fn erf_reference(x: f64) -> f64 {
    const TABLE: [(f64, f64); 7] = [
        (-6.0, -1.0),
        (-3.0, -0.9999779095030014),
        (-1.0, -0.8427007929497149),
        (0.0, 0.0),
        (0.5, 0.5204998778130465),
        (2.0, 0.9953222650189527),
        (6.0, 1.0),
    ];
    TABLE
        .iter()
        .find(|r| r.0 == x)
        .unwrap_or_else(|| panic!("no erf reference at {x}"))
        .1
}

fn gelu_reference(x: f64) -> (f64, f64) {
    // (x, gelu(x), gelu'(x)) from Python's math.erf.
    const TABLE: [(f64, f64, f64); 5] = [
        (-6.0, -5.919525869479969e-09, -3.546870945402639e-08),
        (-1.0, -0.15865525393145707, -0.08331547058768629),
        (0.0, 0.0, 0.5),
        (0.5, 0.34573123063700656, 0.8674951246561629),
        (3.0, 2.99595030590511, 1.011945647204184),
    ];
    let row = TABLE
        .iter()
        .find(|r| r.0 == x)
        .unwrap_or_else(|| panic!("no GELU reference at {x}"));
    (row.1, row.2)
}

fn value_and_derivative(apply: Apply, x: f64) -> Result<(f64, f64)> {
    let tape = Tape::new();
    let xv = tape.var(x);
    let y = apply(xv);
    Ok((y.item()?, y.backward()?.wrt_scalar(xv)?))
}

fn near(got: f64, want: f64, tol: f64) -> bool {
    if got.is_infinite() || want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= tol * (1.0 + want.abs())
}

/// Elementwise ops are the registered ops whose check points are scalars.
fn elementwise_names() -> Vec<String> {
    ops::registry()
        .iter()
        .filter(|f| {
            let points = f.check_at();
            !points.is_empty()
                && points
                    .iter()
                    .all(|p| p.iter().all(|t| t.shape().is_scalar()))
        })
        .filter(|f| f.check_at()[0].len() == 1)
        .map(|f| f.name().to_string())
        .collect()
}

#[test]
fn every_unary_op_matches_its_closed_form_at_check_points_and_edges() -> Result<()> {
    let cases = cases();
    let registry = ops::registry();
    for name in elementwise_names() {
        let case = cases.get(name.as_str()).unwrap_or_else(|| {
            panic!(
                "no closed form written for registered op {name}: add its case! row \
                     to cases() above (docs/adding-an-op.md, step 3)"
            )
        });
        let f = registry.iter().find(|f| f.name() == name).unwrap();
        let mut points: Vec<f64> = f.check_at().iter().map(|p| p[0].item().unwrap()).collect();
        assert!(points.len() >= 4, "{name}: fewer than 4 check points");
        if name != "gelu" {
            points.extend_from_slice(case.edges);
        }
        for x in points {
            let (y, dy) = value_and_derivative(case.apply, x)?;
            let (want_y, want_dy) = ((case.value)(x), (case.derivative)(x));
            assert!(
                near(y, want_y, 1e-13),
                "{name}({x}) = {y}, closed form {want_y}"
            );
            assert!(
                near(dy, want_dy, 1e-12),
                "{name}'({x}) = {dy}, closed form {want_dy}"
            );
            assert!(!dy.is_nan(), "{name}'({x}) is NaN");
        }
    }
    Ok(())
}

#[test]
fn every_unary_op_matches_a_central_difference_at_its_check_points() -> Result<()> {
    let cases = cases();
    for name in elementwise_names() {
        let case = &cases[name.as_str()];
        let f = ops::registry()
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap();
        for point in f.check_at() {
            let x = point[0].item()?;
            let h = 1e-6 * x.abs().max(1.0);
            let (_, dy) = value_and_derivative(case.apply, x)?;
            let (up, _) = value_and_derivative(case.apply, x + h)?;
            let (down, _) = value_and_derivative(case.apply, x - h)?;
            let numerical = (up - down) / (2.0 * h);
            assert!(
                (dy - numerical).abs() <= 1e-6 * (1.0 + dy.abs()),
                "{name}'({x}): tape {dy}, central difference {numerical}"
            );
        }
    }
    Ok(())
}

/// The tapegrad column of the kink table in the crate docs (`src/lib.rs`), row by row.
#[test]
fn kink_conventions() -> Result<()> {
    let d = |apply: Apply, x| value_and_derivative(apply, x).map(|r| r.1);
    assert_eq!(d(|x| x.relu(), 0.0)?, 0.0);
    assert_eq!(d(|x| x.abs(), 0.0)?, 0.0);
    for x in [-1.0, 0.0, 1.0] {
        assert_eq!(d(|x| x.step(), x)?, 0.0);
    }
    assert_eq!(d(|x| x.leaky_relu(0.2), 0.0)?, 0.2);
    assert_eq!(d(|x| x.elu(0.5), 0.0)?, 0.5);
    assert_eq!(value_and_derivative(|x| x.sign(), 0.0)?, (0.0, 0.0));
    // equal at a tie: value 1, derivative 0 on both sides.
    let tape = Tape::new();
    let (a, b) = (tape.var(2.0), tape.var(2.0));
    let y = a.equal(b);
    let g = y.backward()?;
    assert_eq!(
        (y.item()?, g.wrt_scalar(a)?, g.wrt_scalar(b)?),
        (1.0, 0.0, 0.0)
    );
    // maximum and minimum at a tie: half each.
    for y in [a.maximum(b), a.minimum(b)] {
        let g = y.backward()?;
        assert_eq!((g.wrt_scalar(a)?, g.wrt_scalar(b)?), (0.5, 0.5));
    }
    // clamp at either bound: 1.
    assert_eq!(d(|x| x.clamp(-1.0, 1.0), -1.0)?, 1.0);
    assert_eq!(d(|x| x.clamp(-1.0, 1.0), 1.0)?, 1.0);
    // max and min of k tied elements: 1/k each, over all elements and along an axis.
    let x = tape.tensor(&Tensor::new(vec![3.0, 1.0, 3.0, 1.0, 3.0, 1.0], [2, 3])?);
    let third = 1.0 / 3.0;
    assert_eq!(
        x.max().backward()?.wrt(x)?,
        Tensor::new(vec![third, 0.0, third, 0.0, third, 0.0], [2, 3])?
    );
    assert_eq!(
        x.min().backward()?.wrt(x)?,
        Tensor::new(vec![0.0, third, 0.0, third, 0.0, third], [2, 3])?
    );
    assert_eq!(
        x.max_axis(1, false).sum().backward()?.wrt(x)?,
        Tensor::new(vec![0.5, 0.0, 0.5, 0.0, 1.0, 0.0], [2, 3])?
    );
    assert_eq!(
        x.min_axis(1, false).sum().backward()?.wrt(x)?,
        Tensor::new(vec![0.0, 1.0, 0.0, 0.5, 0.0, 0.5], [2, 3])?
    );
    Ok(())
}

/// GELU's tanh approximation against `jax.nn.gelu(x, approximate=True)` and its
/// `jax.grad`, in float64 (values printed by JAX 0.10.2 with `jax_enable_x64`); and the two
/// GELUs against each other.
#[test]
fn gelu_tanh_matches_jax() -> Result<()> {
    const JAX: [(f64, f64, f64); 6] = [
        (1.0, 0.8411919906082768, 1.0829640838457828),
        (-6.0, -8.439682286365269e-11, -7.710016767410024e-10),
        (-1.0, -0.1588080093917233, -0.08296408384578258),
        (0.0, 0.0, 0.5),
        (0.5, 0.3457140098251439, 0.8673699035346423),
        (3.0, 2.996362607918227, 1.0115841666309702),
    ];
    for (x, y, dy) in JAX {
        let (got_y, got_dy) = value_and_derivative(|x| x.gelu_tanh(), x)?;
        assert!(near(got_y, y, 1e-14), "gelu_tanh({x}) = {got_y}, JAX {y}");
        assert!(
            near(got_dy, dy, 1e-14),
            "gelu_tanh'({x}) = {got_dy}, JAX {dy}"
        );
        let (exact, _) = value_and_derivative(|x| x.gelu(), x)?;
        assert!((exact - got_y).abs() < 5e-4, "the two GELUs at {x}");
    }
    Ok(())
}

#[test]
fn saturation_is_finite_and_exact() -> Result<()> {
    let tape = Tape::new();
    for x in [-1000.0, -40.0, 40.0, 1000.0] {
        let xv = tape.var(x);
        for y in [
            xv.sigmoid(),
            xv.tanh(),
            xv.softplus(),
            xv.silu(),
            xv.gelu(),
            xv.gelu_tanh(),
            xv.elu(1.0),
            xv.gaussian(),
            xv.softsign(),
            xv.atan(),
        ] {
            let g = y.backward()?.wrt_scalar(xv)?;
            assert!(
                y.item()?.is_finite() && g.is_finite(),
                "{} at {x}: {} / {g}",
                y.op_name(),
                y.item()?
            );
        }
    }
    assert_eq!(tape.var(1000.0).softplus().item()?, 1000.0);
    assert_eq!(tape.var(-1000.0).sigmoid().item()?, 0.0);
    assert_eq!(tape.var(1000.0).sigmoid().item()?, 1.0);
    Ok(())
}

#[test]
fn binary_ops_match_their_closed_forms() -> Result<()> {
    type Partials = fn(f64, f64) -> (f64, f64, f64);
    let table: [(&str, Partials); 7] = [
        ("add", |a, b| (a + b, 1.0, 1.0)),
        ("sub", |a, b| (a - b, 1.0, -1.0)),
        ("mul", |a, b| (a * b, b, a)),
        ("div", |a, b| (a / b, 1.0 / b, -a / (b * b))),
        ("equal", |a, b| (if a == b { 1.0 } else { 0.0 }, 0.0, 0.0)),
        (
            "maximum",
            |a, b| {
                if a > b {
                    (a, 1.0, 0.0)
                } else {
                    (b, 0.0, 1.0)
                }
            },
        ),
        (
            "minimum",
            |a, b| {
                if a < b {
                    (a, 1.0, 0.0)
                } else {
                    (b, 0.0, 1.0)
                }
            },
        ),
    ];
    let registry = ops::registry();
    for (name, closed) in table {
        let f = registry.iter().find(|f| f.name() == name).unwrap();
        let points = f.check_at();
        assert!(points.len() >= 4);
        for p in points {
            let (a, b) = (p[0].item()?, p[1].item()?);
            let tape = Tape::new();
            let (av, bv) = (tape.var(a), tape.var(b));
            let y = match name {
                "add" => av + bv,
                "sub" => av - bv,
                "mul" => av * bv,
                "div" => av / bv,
                "maximum" => av.maximum(bv),
                "minimum" => av.minimum(bv),
                _ => av.equal(bv),
            };
            let g = y.backward()?;
            let (want, da, db) = closed(a, b);
            assert_eq!(y.item()?, want, "{name}({a}, {b})");
            assert!(
                near(g.wrt_scalar(av)?, da, 1e-15),
                "d{name}/da at ({a}, {b})"
            );
            assert!(
                near(g.wrt_scalar(bv)?, db, 1e-15),
                "d{name}/db at ({a}, {b})"
            );
        }
    }
    Ok(())
}

#[test]
fn scalar_on_either_side_of_an_operator() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(2.0);
    let y = (3.0 - x) * (x + 1.0) / 4.0 + 6.0 / x - x * 0.5;
    // y = (3 − x)(x + 1)/4 + 6/x − x/2; y' = (2 − 2x)/4 − 6/x² − 1/2
    assert_eq!(y.item()?, 0.75 + 3.0 - 1.0);
    assert_eq!(y.backward()?.wrt_scalar(x)?, -0.5 - 1.5 - 0.5);
    Ok(())
}

/// A weighted sum makes every element's gradient different, so a wrong broadcast
/// index shows up.
fn weighted_sum<'t>(y: Var<'t>) -> Var<'t> {
    let n = y.shape().numel();
    let w: Vec<f64> = (0..n).map(|k| 1.0 + k as f64 * 0.5).collect();
    let w = Tensor::new(w, y.shape()).unwrap();
    (y * y.tape().constant_tensor(&w)).sum()
}

/// Central differences of `f(a, b)` with respect to every element of `a` and `b`.
fn numerical(f: impl Fn(&Tensor, &Tensor) -> f64, a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    let h = 1e-6;
    let probe = |which: usize| {
        let base = if which == 0 { a } else { b };
        let mut grad = base.clone();
        for k in 0..base.numel() {
            let mut up = base.clone();
            up.data_mut()[k] += h;
            let mut down = base.clone();
            down.data_mut()[k] -= h;
            let (fu, fd) = if which == 0 {
                (f(&up, b), f(&down, b))
            } else {
                (f(a, &up), f(a, &down))
            };
            grad.data_mut()[k] = (fu - fd) / (2.0 * h);
        }
        grad
    };
    (probe(0), probe(1))
}

#[test]
fn broadcasting_gradients_sum_over_stretched_axes() -> Result<()> {
    let cases: [(Tensor, Tensor); 3] = [
        (
            Tensor::new(vec![1.0, -2.0, 0.5], [3, 1])?,
            Tensor::new(vec![0.3, 1.5, -1.0, 2.0], [1, 4])?,
        ),
        (
            Tensor::new(vec![1.0, 2.0, 3.0, -1.0, 0.5, 4.0], [2, 3])?,
            Tensor::vector([0.7, -1.3, 2.1]),
        ),
        (
            Tensor::scalar(1.7),
            Tensor::new(vec![1.0, 2.0, 3.0, -1.0, 0.5, 4.0], [2, 3])?,
        ),
    ];
    for (a, b) in &cases {
        for op in ["add", "sub", "mul", "div"] {
            let record = |tape: &Tape, a: &Tensor, b: &Tensor| -> Result<(f64, Tensor, Tensor)> {
                let (av, bv) = (tape.tensor(a), tape.tensor(b));
                let y = match op {
                    "add" => av.try_add(bv)?,
                    "sub" => av.try_sub(bv)?,
                    "mul" => av.try_mul(bv)?,
                    _ => av.try_div(bv)?,
                };
                let loss = weighted_sum(y);
                let g = loss.backward()?;
                Ok((loss.item()?, g.wrt(av)?, g.wrt(bv)?))
            };
            let (_, ga, gb) = record(&Tape::new(), a, b)?;
            assert_eq!(ga.shape(), a.shape(), "{op}: gradient keeps a's shape");
            assert_eq!(gb.shape(), b.shape(), "{op}: gradient keeps b's shape");
            let (na, nb) = numerical(|a, b| record(&Tape::new(), a, b).unwrap().0, a, b);
            assert_relative_eq!(ga, na, epsilon = 1e-6, max_relative = 1e-6);
            assert_relative_eq!(gb, nb, epsilon = 1e-6, max_relative = 1e-6);
        }
    }

    // (3,1) + (1,4) in closed form: every a_i meets four b_j, every b_j three a_i.
    let tape = Tape::new();
    let a = tape.tensor(&cases[0].0);
    let b = tape.tensor(&cases[0].1);
    let g = (a + b).sum().backward()?;
    assert_eq!(g.wrt(a)?, Tensor::full([3, 1], 4.0));
    assert_eq!(g.wrt(b)?, Tensor::full([1, 4], 3.0));
    // scalar · matrix: d/ds Σ s·M = ΣM, d/dM = s.
    let s = tape.tensor(&cases[2].0);
    let m = tape.tensor(&cases[2].1);
    let g = (s * m).sum().backward()?;
    assert_eq!(g.wrt_scalar(s)?, cases[2].1.data().iter().sum::<f64>());
    assert_eq!(g.wrt(m)?, Tensor::full([2, 3], 1.7));
    Ok(())
}

#[test]
fn reductions_match_closed_forms() -> Result<()> {
    let x = Tensor::new(vec![0.5, -1.0, 2.0, 3.5, 0.25, -2.0], [2, 3])?;
    let tape = Tape::new();
    let xv = tape.tensor(&x);

    let s = xv.sum();
    assert_eq!(s.item()?, 3.25);
    assert_eq!(s.backward()?.wrt(xv)?, Tensor::ones([2, 3]));

    let m = xv.mean();
    assert_eq!(m.item()?, 3.25 / 6.0);
    assert_eq!(m.backward()?.wrt(xv)?, Tensor::full([2, 3], 1.0 / 6.0));

    let mx = xv.max();
    assert_eq!(mx.item()?, 3.5);
    assert_eq!(
        mx.backward()?.wrt(xv)?,
        Tensor::new(vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [2, 3])?
    );

    let seed = Tensor::vector([10.0, 20.0, 30.0]);
    let s0 = xv.sum_axis(0, false);
    assert_eq!(s0.value(), Tensor::vector([4.0, -0.75, 0.0]));
    assert_eq!(
        s0.backward_with(&seed)?.wrt(xv)?,
        Tensor::new(vec![10.0, 20.0, 30.0, 10.0, 20.0, 30.0], [2, 3])?
    );

    let m1 = xv.mean_axis(1, true);
    assert_eq!(m1.shape().dims(), &[2, 1]);
    assert_eq!(m1.value(), Tensor::new(vec![0.5, 1.75 / 3.0], [2, 1])?);
    let g = m1.backward_with(&Tensor::new(vec![3.0, 6.0], [2, 1])?)?;
    assert_eq!(
        g.wrt(xv)?,
        Tensor::new(vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0], [2, 3])?
    );

    let x0 = xv.max_axis(0, false);
    assert_eq!(x0.value(), Tensor::vector([3.5, 0.25, 2.0]));
    let g = x0.backward_with(&seed)?;
    assert_eq!(
        g.wrt(xv)?,
        Tensor::new(vec![0.0, 0.0, 30.0, 10.0, 20.0, 0.0], [2, 3])?
    );

    // Ties share the gradient.
    let t = tape.tensor(&Tensor::new(vec![2.0, 2.0, 1.0, 5.0], [2, 2])?);
    let g = t.max_axis(1, false).sum().backward()?;
    assert_eq!(g.wrt(t)?, Tensor::new(vec![0.5, 0.5, 0.0, 1.0], [2, 2])?);
    let g = t.min_axis(0, false).sum().backward()?;
    assert_eq!(g.wrt(t)?, Tensor::new(vec![0.0, 1.0, 1.0, 0.0], [2, 2])?);

    let mn = xv.min();
    assert_eq!(mn.item()?, -2.0);
    assert_eq!(
        mn.backward()?.wrt(xv)?,
        Tensor::new(vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [2, 3])?
    );
    let n1 = xv.min_axis(1, true);
    assert_eq!(n1.value(), Tensor::new(vec![-1.0, -2.0], [2, 1])?);
    let g = n1.backward_with(&Tensor::new(vec![3.0, 6.0], [2, 1])?)?;
    assert_eq!(
        g.wrt(xv)?,
        Tensor::new(vec![0.0, 3.0, 0.0, 0.0, 0.0, 6.0], [2, 3])?
    );
    // Ties share it for the minimum too.
    let ties = tape.tensor(&Tensor::vector([1.0, 4.0, 1.0, 1.0]));
    assert_eq!(
        ties.min().backward()?.wrt(ties)?,
        Tensor::vector([1.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0])
    );
    assert!(tape.tensor(&Tensor::vector([])).try_min().is_err());
    assert!(xv.try_min_axis(2, false).is_err());

    // logsumexp: ln Σ exp by its formula, and the softmax as its gradient.
    let l = xv.logsumexp(1, false);
    let rows = [[0.5f64, -1.0, 2.0], [3.5, 0.25, -2.0]];
    let want: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.exp()).sum::<f64>().ln())
        .collect();
    assert_relative_eq!(
        l.value(),
        Tensor::vector(want.clone()),
        max_relative = 1e-15
    );
    let g = l.backward_with(&Tensor::vector([1.0, 2.0]))?.wrt(xv)?;
    let softmax: Vec<f64> = rows
        .iter()
        .zip([1.0, 2.0])
        .flat_map(|(r, w)| {
            let z: f64 = r.iter().map(|v| v.exp()).sum();
            r.iter().map(move |v| w * v.exp() / z)
        })
        .collect();
    assert_relative_eq!(g, Tensor::new(softmax, [2, 3])?, max_relative = 1e-14);
    assert_eq!(xv.logsumexp(0, true).shape().dims(), &[1, 3]);
    // No overflow, and the lanes of −∞ and +∞.
    let big = tape.tensor(&Tensor::vector([1000.0, 1000.0]));
    assert_eq!(big.logsumexp(0, false).item()?, 1000.0 + 2f64.ln());
    let inf = f64::INFINITY;
    let edge = tape.tensor(&Tensor::new(vec![-inf, -inf, 1.0, inf], [2, 2])?);
    let l = edge.logsumexp(1, false);
    assert_eq!(l.value(), Tensor::vector([-inf, inf]));
    assert_eq!(
        l.backward_with(&Tensor::vector([1.0, 0.0]))?
            .wrt(edge)?
            .data()[..2],
        [0.0, 0.0]
    );
    assert!(xv.try_logsumexp(2, false).is_err());
    Ok(())
}

#[test]
fn reductions_match_central_differences_on_a_rank_3_tensor() -> Result<()> {
    let data: Vec<f64> = (0..24)
        .map(|k| ((k * 7 % 11) as f64 - 5.0) * 0.37)
        .collect();
    let x = Tensor::new(data, [2, 3, 4])?;
    for axis in 0..3 {
        for keepdim in [false, true] {
            for which in 0..5 {
                let f = |t: &Tensor| -> Result<(f64, Tensor)> {
                    let tape = Tape::new();
                    let v = tape.tensor(t);
                    let r = match which {
                        0 => v.sum_axis(axis, keepdim),
                        1 => v.mean_axis(axis, keepdim),
                        2 => v.max_axis(axis, keepdim),
                        3 => v.min_axis(axis, keepdim),
                        _ => v.logsumexp(axis, keepdim),
                    };
                    let loss = weighted_sum(r);
                    Ok((loss.item()?, loss.backward()?.wrt(v)?))
                };
                let (_, g) = f(&x)?;
                let (n, _) = numerical(|a, _| f(a).unwrap().0, &x, &Tensor::scalar(0.0));
                assert_relative_eq!(g, n, epsilon = 1e-6, max_relative = 1e-6);
            }
        }
    }
    Ok(())
}

/// tapegrad's tanh against the C library's: each is within about 2 units in the last
/// place of the true value, so they agree within 4; odd; exact where it saturates; and
/// 3/5 at ln 2.
#[test]
fn tanh_agrees_with_the_c_library_within_a_few_ulps() {
    use tapegrad::ops::activation::tanh;
    let ulp = |y: f64| f64::from_bits(y.abs().to_bits() + 1) - y.abs();
    for k in -40_000..=40_000 {
        // [−20, 20] in steps of 1/2000, the split at 0.625 included.
        let x = f64::from(k) / 2000.0;
        let (ours, libc) = (tanh(x), x.tanh());
        assert!(
            (ours - libc).abs() <= 4.0 * ulp(libc),
            "tanh({x}): {ours} vs {libc}"
        );
        assert_eq!(tanh(-x).to_bits(), (-ours).to_bits());
    }
    for x in [1e-300, 1e-20, 1e-9] {
        assert_eq!(tanh(x), x);
    }
    assert_eq!(tanh(-0.0).to_bits(), (-0.0f64).to_bits());
    assert_eq!((tanh(1000.0), tanh(f64::NEG_INFINITY)), (1.0, -1.0));
    assert!(tanh(f64::NAN).is_nan());
    assert!((tanh(2f64.ln()) - 0.6).abs() <= ulp(0.6));
}

/// Bad input to the new ops: the `try_` form returns an error naming the op and the bad
/// value and records nothing.
#[test]
fn maximum_minimum_and_clamp_refuse_bad_input_and_leave_the_tape_intact() -> Result<()> {
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0]));
    let b = tape.tensor(&Tensor::vector([1.0, 2.0]));
    let len = tape.len();
    assert_eq!(
        a.try_maximum(b).unwrap_err().to_string(),
        "maximum: shapes [3] and [2] cannot be broadcast together"
    );
    assert!(a.try_minimum(b).is_err());
    assert_eq!(
        a.try_clamp(2.0, 1.0).unwrap_err().to_string(),
        "clamp: the bounds lo = 2 and hi = 1 must be numbers with lo ≤ hi"
    );
    assert!(a.try_clamp(0.0, f64::NAN).is_err());
    assert_eq!(tape.len(), len);
    // Equal bounds are allowed: a constant, whose gradient is 1 where x sits on it.
    let y = a.clamp(2.0, 2.0);
    assert_eq!(y.value(), Tensor::vector([2.0, 2.0, 2.0]));
    assert_eq!(y.sum().backward()?.wrt(a)?, Tensor::vector([0.0, 1.0, 0.0]));
    Ok(())
}

#[test]
#[should_panic(expected = "clamp: the bounds lo = 1 and hi = -1")]
fn clamp_panics_on_bounds_out_of_order() {
    let tape = Tape::new();
    tape.var(0.0).clamp(1.0, -1.0);
}

#[test]
#[should_panic(expected = "leaky_relu: parameter alpha must be a finite number, got inf")]
fn a_parameter_op_panics_naming_the_op_and_the_value() {
    let tape = Tape::new();
    tape.var(0.0).leaky_relu(f64::INFINITY).sigmoid();
}

/// Bits of `x`, with every NaN alike: Rust leaves a NaN's sign and payload open.
fn bits(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else {
        x.to_bits()
    }
}

/// Every registered unary op gives the same bits on every path that can run it, as
/// the design promises (`Unary::value_and_derivative` and `Unary::values` must agree
/// with `value` and `derivative` bit for bit): the method on a scalar (the recording's
/// fast path and the sweep's unary arm), on a vector (the slice kernels), through
/// `Tape::apply` with the registry's op (the general path: views and `Function`'s
/// rules), and after a replay; and `grad_graph`'s first derivative, recorded with tape
/// ops, agrees with them to rounding.
#[test]
fn every_unary_op_gives_the_same_bits_on_every_path() -> Result<()> {
    let cases = cases();
    let registry = ops::registry();
    for name in elementwise_names() {
        let case = &cases[name.as_str()];
        let f = registry.iter().find(|f| f.name() == name).unwrap();
        let mut points: Vec<f64> = f.check_at().iter().map(|p| p[0].item().unwrap()).collect();
        points.extend_from_slice(case.edges);
        let n = points.len();
        let ones = Tensor::new(vec![1.0; n], [n])?;

        // The slice kernels: the method on a vector.
        let tape = Tape::new();
        let t = tape.tensor(&Tensor::vector(points.clone()));
        let y = (case.apply)(t);
        let (ys, gs) = (y.value(), y.backward_with(&ones)?.wrt(t)?);
        // The general path: the registry's op applied as a function.
        let general = tape.apply(f, &[t])?;
        let (yg, gg) = (general.value(), general.backward_with(&ones)?.wrt(t)?);
        // Replay: one scalar recording, replayed at each point.
        let replayed = Tape::new();
        let xr = replayed.var(0.5);
        let yr = (case.apply)(xr);

        for (k, &x) in points.iter().enumerate() {
            let (y1, d1) = value_and_derivative(case.apply, x)?;
            let at = format!("{name} at {x}");
            assert_eq!(bits(ys.data()[k]), bits(y1), "{at}: slice value");
            assert_eq!(bits(gs.data()[k]), bits(d1), "{at}: slice derivative");
            assert_eq!(bits(yg.data()[k]), bits(y1), "{at}: general value");
            assert_eq!(bits(gg.data()[k]), bits(d1), "{at}: general derivative");
            xr.set_scalar(x)?;
            replayed.replay();
            assert_eq!(bits(yr.item()?), bits(y1), "{at}: replayed value");
            let dr = yr.backward()?.wrt_scalar(xr)?;
            assert_eq!(bits(dr), bits(d1), "{at}: replayed derivative");
            // Second order: the derivative as a graph.
            let tape2 = Tape::new();
            let x2 = tape2.var(x);
            if let Ok(dg) = (case.apply)(x2).grad_graph(&[x2]) {
                let dg = dg[0].item()?;
                assert!(
                    bits(dg) == bits(d1) || near(dg, d1, 1e-14),
                    "{at}: grad_graph {dg}, backward {d1}"
                );
            }
        }
    }
    Ok(())
}

/// Records binary op `name` on `a` and `b` through its operator or method.
fn binary<'t>(name: &str, a: Var<'t>, b: Var<'t>) -> Var<'t> {
    match name {
        "add" => a + b,
        "sub" => a - b,
        "mul" => a * b,
        "div" => a / b,
        "maximum" => a.maximum(b),
        "minimum" => a.minimum(b),
        "equal" => a.equal(b),
        other => panic!("no method written for binary op {other}"),
    }
}

/// Every registered binary op gives the same bits on every path that can run it: two
/// scalars (the recording's fast path and the sweep's arms for sums, differences,
/// products and other binary ops), two vectors (the slice kernels), an outer
/// broadcast of a column against a row (the views), and `Tape::apply` with the
/// registry's op (the general path).
#[test]
fn every_binary_op_gives_the_same_bits_on_every_path() -> Result<()> {
    let registry = ops::registry();
    let names = registry
        .iter()
        .filter(|f| {
            f.check_at()
                .first()
                .is_some_and(|p| p.len() == 2 && p[0].shape().is_scalar())
        })
        .map(|f| f.name().to_string());
    for name in names {
        let f = registry.iter().find(|f| f.name() == name).unwrap();
        let points: Vec<(f64, f64)> = f
            .check_at()
            .iter()
            .map(|p| (p[0].item().unwrap(), p[1].item().unwrap()))
            .collect();
        let n = points.len();
        let (a_values, b_values): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
        let ones = Tensor::new(vec![1.0; n], [n])?;

        let tape = Tape::new();
        let (a, b) = (
            tape.tensor(&Tensor::vector(a_values.clone())),
            tape.tensor(&Tensor::vector(b_values.clone())),
        );
        let sliced = binary(&name, a, b);
        let gs = sliced.backward_with(&ones)?;
        let general = tape.apply(f, &[a, b])?;
        let gg = general.backward_with(&ones)?;
        // The outer op: y[i][j] = f(a_i, b_j); a seed of the identity keeps only the
        // diagonal's partials, each alone in its sum.
        let column = tape.tensor(&Tensor::new(a_values.clone(), [n, 1])?);
        let row = tape.tensor(&Tensor::new(b_values.clone(), [1, n])?);
        let outer = binary(&name, column, row);
        let mut identity = vec![0.0; n * n];
        for k in 0..n {
            identity[k * n + k] = 1.0;
        }
        let go = outer.backward_with(&Tensor::new(identity, [n, n])?)?;
        let values = [sliced.value(), general.value(), outer.value()];
        let grads_a = [gs.wrt(a)?, gg.wrt(a)?, go.wrt(column)?];
        let grads_b = [gs.wrt(b)?, gg.wrt(b)?, go.wrt(row)?];

        for (k, &(x, z)) in points.iter().enumerate() {
            let scalars = Tape::new();
            let (xs, zs) = (scalars.var(x), scalars.var(z));
            let y = binary(&name, xs, zs);
            let g = y.backward()?;
            let (y1, da, db) = (y.item()?, g.wrt_scalar(xs)?, g.wrt_scalar(zs)?);
            for (path, i) in [("slices", 0), ("general", 1), ("views", 2)] {
                let at = format!("{name}({x}, {z}) on the {path} path");
                let v = if i == 2 {
                    values[i].data()[k * n + k]
                } else {
                    values[i].data()[k]
                };
                assert_eq!(bits(v), bits(y1), "{at}: value");
                assert_eq!(bits(grads_a[i].data()[k]), bits(da), "{at}: d/da");
                assert_eq!(bits(grads_b[i].data()[k]), bits(db), "{at}: d/db");
            }
        }
    }
    Ok(())
}

/// Replay rebuilds each scalar op from what its node kept: ops with parameters away
/// from their defaults give, after a replay, the bits of a fresh recording.
#[test]
fn replay_keeps_the_parameters_of_scalar_ops() -> Result<()> {
    let ops: [(&str, Apply); 6] = [
        ("clamp(-0.75, 1.5)", |x| x.clamp(-0.75, 1.5)),
        ("leaky_relu(0.3)", |x| x.leaky_relu(0.3)),
        ("elu(0.7)", |x| x.elu(0.7)),
        ("powi(3)", |x| x.powi(3)),
        ("x + 2.5", |x| x + 2.5),
        ("x * -1.25", |x| x * -1.25),
    ];
    for (name, apply) in ops {
        let tape = Tape::new();
        let x = tape.var(0.1);
        let y = apply(x);
        for v in [-2.0, -0.8, 0.3, 1.2, 1.7] {
            x.set_scalar(v)?;
            tape.replay();
            let (fresh, dfresh) = value_and_derivative(apply, v)?;
            assert_eq!(bits(y.item()?), bits(fresh), "{name} at {v}: value");
            let d = y.backward()?.wrt_scalar(x)?;
            assert_eq!(bits(d), bits(dfresh), "{name} at {v}: derivative");
        }
    }
    Ok(())
}
