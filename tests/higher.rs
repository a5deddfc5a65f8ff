//! Higher-order derivatives: gradients recorded as variables and differentiated again,
//! Hessians, Hessian-vector products and Jacobians, against closed forms and against
//! each other; Newton's method on the Rosenbrock function; user functions with and
//! without a recorded backward rule.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use tapegrad::check::{gradgradcheck, Tolerance};
use tapegrad::higher::{grad, hessian, hvp, jacobian};
use tapegrad::{Error, Function, Result, ScalarFunction, Tape, Tensor, TensorRef, Var};

fn rosenbrock<'t>(x: &[Var<'t>]) -> Result<Var<'t>> {
    let (x0, x1) = (x[0], x[1]);
    Ok((1.0 - x0).powi(2) + 100.0 * (x1 - x0.powi(2)).powi(2))
}

/// The Rosenbrock gradient and Hessian written out by hand.
fn rosenbrock_closed_form(x0: f64, x1: f64) -> ([f64; 2], [[f64; 2]; 2]) {
    let g = [
        -2.0 * (1.0 - x0) - 400.0 * x0 * (x1 - x0 * x0),
        200.0 * (x1 - x0 * x0),
    ];
    let h = [
        [2.0 - 400.0 * x1 + 1200.0 * x0 * x0, -400.0 * x0],
        [-400.0 * x0, 200.0],
    ];
    (g, h)
}

fn scalars(values: &[f64]) -> Vec<Tensor> {
    values.iter().map(|&v| Tensor::scalar(v)).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn hessian_of_the_sum_of_squares_is_twice_the_identity() -> Result<()> {
    let two_i = Tensor::matrix(&[[2.0, 0.0], [0.0, 2.0]])?;
    for (x0, x1) in [(-3.0, 4.0), (0.0, 0.0), (1e3, -2.5e-3)] {
        // Two scalar inputs, and one vector input.
        let h = hessian(|x| Ok(x[0].powi(2) + x[1].powi(2)), &scalars(&[x0, x1]))?;
        assert_eq!(h, two_i);
        let h = hessian(|x| Ok(x[0].powi(2).sum()), &[Tensor::vector([x0, x1])])?;
        assert_eq!(h, two_i);
    }
    Ok(())
}

#[test]
fn hessian_of_rosenbrock_is_its_closed_form() -> Result<()> {
    let h = hessian(rosenbrock, &scalars(&[1.0, 1.0]))?;
    assert_eq!(h, Tensor::matrix(&[[802.0, -400.0], [-400.0, 200.0]])?);
    for (x0, x1) in [(-1.2, 1.0), (0.3, -0.7), (2.0, 4.1)] {
        let h = hessian(rosenbrock, &scalars(&[x0, x1]))?;
        let (_, want) = rosenbrock_closed_form(x0, x1);
        for i in 0..2 {
            for j in 0..2 {
                let got = h.get(&[i, j]).unwrap();
                let want = want[i][j];
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "H[{i}][{j}] at ({x0}, {x1}): {got} vs {want}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn second_derivative_of_sigmoid_at_0_35() -> Result<()> {
    let s = sigmoid(0.35);
    let want = s * (1.0 - s) * (1.0 - 2.0 * s);
    let h = hessian(|x| Ok(x[0].sigmoid()), &scalars(&[0.35]))?;
    assert!((h.item()? - want).abs() < 1e-12, "{} vs {want}", h.item()?);
    // The same through grad_graph twice.
    let tape = Tape::new();
    let x = tape.var(0.35);
    let y = x.sigmoid();
    let dy = y.grad_graph(&[x])?[0];
    let d2y = dy.grad_graph(&[x])?[0];
    assert!((dy.item()? - s * (1.0 - s)).abs() < 1e-15);
    assert!((d2y.item()? - want).abs() < 1e-12);
    Ok(())
}

#[test]
fn third_derivative_of_sin_is_minus_cos() -> Result<()> {
    for x0 in [-2.0, -0.3, 0.0, 0.5, 1.7, 3.0] {
        let tape = Tape::new();
        let x = tape.var(x0);
        let d1 = x.sin().grad_graph(&[x])?[0];
        let d2 = d1.grad_graph(&[x])?[0];
        let d3 = d2.grad_graph(&[x])?[0];
        let d4 = d3.grad_graph(&[x])?[0];
        let x0: f64 = x0;
        assert!((d1.item()? - x0.cos()).abs() < 1e-15);
        assert!((d2.item()? + x0.sin()).abs() < 1e-15);
        assert!((d3.item()? + x0.cos()).abs() < 1e-15, "sin‴({x0})");
        assert!((d4.item()? - x0.sin()).abs() < 1e-15, "sin⁗({x0})");
    }
    Ok(())
}

#[test]
fn third_derivatives_of_the_activations_match_central_differences_of_the_second() -> Result<()> {
    // Each activation's recorded derivative is itself made of ops with recorded rules,
    // so the gradient can be differentiated a third time.
    type Activation = for<'t> fn(Var<'t>) -> Var<'t>;
    let activations: [(&str, Activation); 8] = [
        ("sigmoid", |x| x.sigmoid()),
        ("tanh", |x| x.tanh()),
        ("gelu", |x| x.gelu()),
        ("swish", |x| x.silu()),
        ("softplus", |x| x.softplus()),
        ("gaussian", |x| x.gaussian()),
        ("atan", |x| x.atan()),
        ("elu", |x| x.elu(1.0)),
    ];
    let second = |f: Activation, x0: f64| -> Result<f64> {
        let tape = Tape::new();
        let x = tape.var(x0);
        let d1 = f(x).grad_graph(&[x])?[0];
        d1.grad_graph(&[x])?[0].item()
    };
    for (name, f) in activations {
        for x0 in [-1.3, -0.4, 0.6, 2.1] {
            let tape = Tape::new();
            let x = tape.var(x0);
            let d1 = f(x).grad_graph(&[x])?[0];
            let d2 = d1.grad_graph(&[x])?[0];
            let d3 = d2.grad_graph(&[x])?[0].item()?;
            let h = 1e-5;
            let numerical = (second(f, x0 + h)? - second(f, x0 - h)?) / (2.0 * h);
            assert!(
                (d3 - numerical).abs() <= 1e-6 * (1.0 + d3.abs()),
                "{name}‴({x0}): {d3} vs {numerical}"
            );
        }
    }
    Ok(())
}

/// A random smooth function of 50 inputs: two random 30×50 layers (tanh and sigmoid),
/// a log-softmax, sines of scaled inputs, a softplus and a quartic term, so that every
/// entry of its Hessian is non-zero.
struct RandomFunction {
    w1: Tensor,
    w2: Tensor,
    c: Tensor,
}

impl RandomFunction {
    const N: usize = 50;

    fn new(seed: u64) -> RandomFunction {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut random = |shape: &[usize], scale: f64| {
            let n = shape.iter().product();
            let data = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
            Tensor::new(data, shape).expect("fits")
        };
        RandomFunction {
            w1: random(&[30, Self::N], 0.3),
            w2: random(&[30, Self::N], 0.3),
            c: random(&[Self::N], 1.5),
        }
    }

    fn eval<'t>(&self, x: &[Var<'t>]) -> Result<Var<'t>> {
        let tape = x[0].tape();
        let x = x[0];
        let column = x.reshape([Self::N, 1]);
        let w1 = tape.constant_tensor(&self.w1);
        let w2 = tape.constant_tensor(&self.w2);
        let c = tape.constant_tensor(&self.c);
        let h = w1.matmul(column).tanh();
        let s = w2.matmul(column).sigmoid();
        let layers = h.try_mul(s)?.sum();
        let softmax = h.log_softmax(0).sum();
        let waves = x.try_mul(c)?.sin().sum();
        let soft = x.softplus().try_mul(c)?.sum();
        let quartic = (x.powi(2).sum() * 0.02).powi(2);
        Ok(layers + softmax * 0.1 + waves + soft + quartic)
    }

    fn point(seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Tensor::vector(
            (0..Self::N)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect::<Vec<_>>(),
        )
    }
}

#[test]
fn hvp_equals_the_hessian_times_v_on_a_random_50_input_function() -> Result<()> {
    let f = RandomFunction::new(7);
    let n = RandomFunction::N;
    for seed in 0..3 {
        let (x, v) = (
            RandomFunction::point(100 + seed),
            RandomFunction::point(200 + seed),
        );
        let h = hessian(|x| f.eval(x), std::slice::from_ref(&x))?;
        assert_eq!(h.shape().dims(), &[n, n]);
        let hv = hvp(
            |x| f.eval(x),
            std::slice::from_ref(&x),
            std::slice::from_ref(&v),
        )?;
        let mut zeros = 0;
        for i in 0..n {
            let want: f64 = (0..n).map(|j| h.data()[i * n + j] * v.data()[j]).sum();
            let got = hv[0].data()[i];
            assert!((got - want).abs() < 1e-10, "(Hv)[{i}]: {got} vs {want}");
            for j in 0..n {
                assert_eq!(h.data()[i * n + j], h.data()[j * n + i], "symmetric");
                zeros += usize::from(h.data()[i * n + j] == 0.0);
            }
        }
        assert_eq!(zeros, 0, "the Hessian is dense");
        // The Hessian itself against central differences of the gradient.
        let step = 1e-5;
        for j in [0, 17, 49] {
            let mut up = x.clone();
            up.data_mut()[j] += step;
            let mut down = x.clone();
            down.data_mut()[j] -= step;
            let g_up = grad(|x| f.eval(x), &[up])?;
            let g_down = grad(|x| f.eval(x), &[down])?;
            for i in 0..n {
                let numerical = (g_up[0].data()[i] - g_down[0].data()[i]) / (2.0 * step);
                let analytic = h.data()[i * n + j];
                assert!(
                    (analytic - numerical).abs() < 1e-7 * (1.0 + analytic.abs()),
                    "H[{i}][{j}]: {analytic} vs {numerical}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn the_random_50_input_function_passes_gradgradcheck() -> Result<()> {
    let f = RandomFunction::new(11);
    let report = gradgradcheck(
        |x| f.eval(x),
        &[RandomFunction::point(3)],
        &Tolerance::default(),
    )?;
    assert!(report.passed, "{report}");
    assert_eq!(report.entries, 50 + 50 * (50 + 1));
    Ok(())
}

/// Newton's method x ← x − H⁻¹∇f on Rosenbrock from (−1.2, 1): every iterate, and the
/// number of steps it took to come within `tolerance` of (1, 1).
fn newton(tolerance: f64, max_steps: usize) -> Result<(Vec<[f64; 2]>, Option<usize>)> {
    let mut x = [-1.2, 1.0];
    let mut path = vec![x];
    for step in 1..=max_steps {
        let at = scalars(&x);
        let g = grad(rosenbrock, &at)?;
        let (g0, g1) = (g[0].item()?, g[1].item()?);
        let h = hessian(rosenbrock, &at)?;
        let (want_g, want_h) = rosenbrock_closed_form(x[0], x[1]);
        assert!((g0 - want_g[0]).abs() <= 1e-12 * want_g[0].abs().max(1.0));
        assert!((g1 - want_g[1]).abs() <= 1e-12 * want_g[1].abs().max(1.0));
        let [a, b, c, d] = [h.data()[0], h.data()[1], h.data()[2], h.data()[3]];
        assert!((a - want_h[0][0]).abs() <= 1e-12 * want_h[0][0].abs().max(1.0));
        let det = a * d - b * c;
        x = [
            x[0] - (d * g0 - b * g1) / det,
            x[1] - (a * g1 - c * g0) / det,
        ];
        path.push(x);
        if (x[0] - 1.0).abs().max((x[1] - 1.0).abs()) <= tolerance {
            return Ok((path, Some(step)));
        }
    }
    Ok((path, None))
}

#[test]
fn newton_reaches_the_minimum_of_rosenbrock_in_fewer_than_30_steps() -> Result<()> {
    let (path, steps) = newton(1e-10, 29)?;
    let steps = steps.unwrap_or_else(|| panic!("not within 1e-10 after 29 steps: {path:?}"));
    println!("Newton on Rosenbrock from (-1.2, 1): {steps} steps, {path:?}");
    assert!(steps < 30);
    let [x0, x1] = path[path.len() - 1];
    assert!((x0 - 1.0).abs() <= 1e-10 && (x1 - 1.0).abs() <= 1e-10);
    // Quadratic convergence at the end: each error at most a constant times the square
    // of the one before.
    let error = |x: &[f64; 2]| (x[0] - 1.0).abs().max((x[1] - 1.0).abs());
    let k = path.len() - 1;
    assert!(error(&path[k]) <= 10.0 * error(&path[k - 1]).powi(2) + 1e-15);
    Ok(())
}

#[test]
fn gradient_and_hessian_of_functions_of_several_tensors() -> Result<()> {
    // f(a, b) = Σ a ⊙ b: the Hessian is [[0, I], [I, 0]] over (a, b).
    let a = Tensor::vector([1.0, -2.0]);
    let b = Tensor::vector([0.5, 3.0]);
    let g = grad(|x| Ok(x[0].try_mul(x[1])?.sum()), &[a.clone(), b.clone()])?;
    assert_eq!((g[0].clone(), g[1].clone()), (b.clone(), a.clone()));
    let h = hessian(|x| Ok(x[0].try_mul(x[1])?.sum()), &[a, b])?;
    let want = Tensor::matrix(&[
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
    ])?;
    assert_eq!(h, want);

    // A quadratic form xᵀAx through matmul and transpose: the Hessian is A + Aᵀ.
    let a = Tensor::matrix(&[[1.0, 2.0, 0.0], [-1.0, 3.0, 4.0], [0.5, 0.0, -2.0]])?;
    let x = Tensor::matrix(&[[0.3], [-1.1], [2.0]])?;
    let h = hessian(
        |x| {
            let a = x[0].tape().constant_tensor(&a);
            Ok(x[0].transpose().matmul(a).matmul(x[0]).sum())
        },
        &[x],
    )?;
    for i in 0..3 {
        for j in 0..3 {
            let want = a.get(&[i, j]).unwrap() + a.get(&[j, i]).unwrap();
            assert_eq!(h.get(&[i, j]).unwrap(), want, "H[{i}][{j}]");
        }
    }
    Ok(())
}

#[test]
fn jacobians_of_matmul_and_softmax_are_their_closed_forms() -> Result<()> {
    // y = W·x: J = W.
    let w = Tensor::matrix(&[[1.0, -2.0, 0.5], [3.0, 0.0, 4.0]])?;
    let j = jacobian(
        |x| {
            let w = x[0].tape().constant_tensor(&w);
            w.matmul(x[0].reshape([3, 1])).try_reshape([2])
        },
        &[Tensor::vector([0.2, 0.4, -1.0])],
    )?;
    assert_eq!(j, w);

    // y = softmax(x): J = diag(s) − s·sᵀ.
    let x = Tensor::vector([0.5, -1.0, 2.0, 0.0]);
    let j = jacobian(|x| x[0].try_softmax(0), std::slice::from_ref(&x))?;
    let total: f64 = x.data().iter().map(|v| v.exp()).sum();
    let s: Vec<f64> = x.data().iter().map(|v| v.exp() / total).collect();
    for i in 0..4 {
        for k in 0..4 {
            let want = if i == k { s[i] } else { 0.0 } - s[i] * s[k];
            let got = j.get(&[i, k]).unwrap();
            assert!((got - want).abs() < 1e-15, "J[{i}][{k}]: {got} vs {want}");
        }
    }

    // Several inputs: y = a ⊙ b, J = [diag(b), diag(a)].
    let j = jacobian(
        |x| x[0].try_mul(x[1]),
        &[Tensor::vector([1.0, 2.0]), Tensor::vector([3.0, 4.0])],
    )?;
    assert_eq!(
        j,
        Tensor::matrix(&[[3.0, 0.0, 1.0, 0.0], [0.0, 4.0, 0.0, 2.0]])?
    );
    Ok(())
}

#[test]
fn misuse_is_an_error_not_a_panic() -> Result<()> {
    let x = [Tensor::vector([1.0, 2.0])];
    let not_scalar = |op: &str, err: Error| {
        assert!(
            matches!(&err, Error::NotScalar { op: o, .. } if o == op),
            "{op}: {err}"
        );
    };
    not_scalar("grad", grad(|x| Ok(x[0] * 2.0), &x).unwrap_err());
    not_scalar("hessian", hessian(|x| Ok(x[0] * 2.0), &x).unwrap_err());
    not_scalar(
        "hvp",
        hvp(|x| Ok(x[0] * 2.0), &x, &[Tensor::vector([1.0, 0.0])]).unwrap_err(),
    );
    let invalid = |err: Error| assert!(matches!(err, Error::Invalid { .. }), "{err}");
    invalid(grad(|x| Ok(x[0].sum()), &[]).unwrap_err());
    invalid(hessian(|x| Ok(x[0].sum()), &[]).unwrap_err());
    invalid(jacobian(|x| Ok(x[0].sum()), &[]).unwrap_err());
    invalid(hvp(|x| Ok(x[0].sum()), &x, &[]).unwrap_err());
    invalid(hvp(|x| Ok(x[0].sum()), &x, &[Tensor::vector([1.0, 0.0, 0.0])]).unwrap_err());
    let message = hvp(|x| Ok(x[0].sum()), &x, &[Tensor::scalar(1.0)])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "hvp: vector 0 has shape [] but input 0 has shape [2]"
    );
    // grad_graph: a non-scalar output without a seed, a seed of the wrong shape.
    let tape = Tape::new();
    let v = tape.tensor(&Tensor::vector([1.0, 2.0]));
    assert!(matches!(
        (v * v).grad_graph(&[v]),
        Err(Error::NonScalarBackward { .. })
    ));
    let seed = tape.constant(1.0);
    assert!(matches!(
        (v * v).grad_graph_with(seed, &[v]),
        Err(Error::SeedShape { .. })
    ));
    // An axis reduction that drops the axis of a five-axis input: its recorded rule
    // reshapes to five axes, which works as keeping the axis does.
    let t = tape.tensor(&Tensor::ones([1, 1, 1, 2, 3]));
    let dropped = t.sum_axis(4, false).sum();
    assert_eq!(
        dropped.grad_graph(&[t])?[0].value(),
        Tensor::ones([1, 1, 1, 2, 3])
    );
    let kept = t.sum_axis(4, true).sum();
    assert_eq!(
        kept.grad_graph(&[t])?[0].value(),
        Tensor::ones([1, 1, 1, 2, 3])
    );
    Ok(())
}

/// The lecture's `Function2`, y = 2z², as a full `Function`; with `recorded`, it also
/// writes its backward rule with tape ops.
struct Function2 {
    recorded: bool,
}

impl Function for Function2 {
    fn name(&self) -> &str {
        "function2"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for (y, z) in out.iter_mut().zip(inputs[0].data()) {
            *y = 2.0 * z * z;
        }
    }
    // d/dz 2z² = 4z
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let z = inputs[0];
        let gz = z.data().iter().zip(gy.data()).map(|(z, g)| 4.0 * z * g);
        Ok(vec![Tensor::new(gz.collect(), z.shape().clone())?])
    }
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        if !self.recorded {
            // The trait's default: no rule.
            return Err(Error::NotTwiceDifferentiable {
                function: self.name().to_string(),
            });
        }
        let _ = y;
        Ok(vec![gy.try_mul(inputs[0] * 4.0)?])
    }
}

/// The default `Function::backward_graph`, untouched.
struct Opaque;

impl Function for Opaque {
    fn name(&self) -> &str {
        "opaque"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out.copy_from_slice(inputs[0].data());
        out.iter_mut().for_each(|y| *y = *y * *y * *y);
    }
    // d/dx x³ = 3x²
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let x = inputs[0];
        let gx = x.data().iter().zip(gy.data()).map(|(x, g)| 3.0 * x * x * g);
        Ok(vec![Tensor::new(gx.collect(), x.shape().clone())?])
    }
}

/// A scalar function whose recorded derivative is made of `Opaque`: it can be
/// differentiated twice (f = x⁴/4, f′ = x³), not three times.
struct Quartic;

impl ScalarFunction for Quartic {
    fn name(&self) -> &str {
        "quartic"
    }
    fn value(&self, x: f64) -> f64 {
        x.powi(4) / 4.0
    }
    fn derivative(&self, x: f64) -> f64 {
        x * x * x
    }
    fn derivative_graph<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        x.apply(&Arc::new(Opaque))
    }
}

#[test]
fn user_functions_are_differentiated_twice_only_with_a_recorded_rule() -> Result<()> {
    let tape = Tape::new();
    let z = tape.var(3.0);

    // With a recorded rule: f′ = 4z = 12, f″ = 4.
    let y = z.apply(&Arc::new(Function2 { recorded: true }))?;
    let dy = y.grad_graph(&[z])?[0];
    let d2y = dy.grad_graph(&[z])?[0];
    assert_eq!((dy.item()?, d2y.item()?), (12.0, 4.0));
    assert_eq!(
        hessian(
            |x| x[0].apply(&Arc::new(Function2 { recorded: true })),
            &scalars(&[3.0])
        )?
        .item()?,
        4.0
    );

    // Without: first derivatives work, a recorded gradient is refused by name.
    let without = Arc::new(Function2 { recorded: false });
    let y = z.apply(&without)?;
    assert_eq!(y.backward()?.wrt_scalar(z)?, 12.0);
    let refused = Error::NotTwiceDifferentiable {
        function: "function2".into(),
    };
    assert_eq!(y.grad_graph(&[z]).unwrap_err(), refused);
    let at = scalars(&[3.0]);
    assert_eq!(grad(|x| x[0].apply(&without), &at)?[0].item()?, 12.0);
    assert_eq!(jacobian(|x| x[0].apply(&without), &at)?.item()?, 12.0);
    assert_eq!(hessian(|x| x[0].apply(&without), &at).unwrap_err(), refused);
    assert_eq!(
        hvp(|x| x[0].apply(&without), &at, &at).unwrap_err(),
        refused
    );
    // The default `backward_graph` of the trait says the same.
    let opaque = z.apply(&Arc::new(Opaque))?;
    assert_eq!(
        opaque.grad_graph(&[z]).unwrap_err(),
        Error::NotTwiceDifferentiable {
            function: "opaque".into()
        }
    );

    // A rule that records an op without one: grad_graph works once (f′ = z³ = 27), twice
    // it reaches `Opaque` and stops with its name.
    let y = z.apply(&Arc::new(Quartic))?;
    let dy = y.grad_graph(&[z])?[0];
    assert_eq!(dy.item()?, 27.0);
    assert_eq!(
        dy.grad_graph(&[z]).unwrap_err(),
        Error::NotTwiceDifferentiable {
            function: "opaque".into()
        }
    );
    // A user function that does not lie between the variables and the output is fine.
    let c = tape.constant(2.0).apply(&without)?;
    let d = (z * c).grad_graph(&[z])?[0];
    assert_eq!(d.item()?, 8.0);
    Ok(())
}

#[test]
fn a_small_network_loss_passes_gradgradcheck() -> Result<()> {
    // A 3-4-2 network with a softmax cross-entropy loss, differentiated twice with
    // respect to its weights and its data.
    let w1 = Tensor::new((0..12).map(|k| (k as f64 * 0.37).sin()).collect(), [3, 4])?;
    let w2 = Tensor::new((0..8).map(|k| (k as f64 * 0.91).cos()).collect(), [4, 2])?;
    let x = Tensor::matrix(&[[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])?;
    let report = gradgradcheck(
        |p| {
            let hidden = p[2].matmul(p[0]).tanh();
            hidden.matmul(p[1]).try_softmax_cross_entropy(&[1, 0])
        },
        &[w1, w2, x],
        &Tolerance::default(),
    )?;
    assert!(report.passed, "{report}");
    println!("{report}");
    Ok(())
}

/// The gradient of `op` at `point` through the plain backward pass and through the
/// recorded one (`grad_graph`), seeded with the same weights.
fn both_gradients(op: &Arc<dyn Function>, point: &[Tensor]) -> Result<(Vec<f64>, Vec<f64>)> {
    let tape = Tape::new();
    let xs: Vec<Var<'_>> = point.iter().map(|x| tape.tensor(x)).collect();
    let y = tape.apply(op, &xs)?;
    let weights = Tensor::new(
        (0..y.shape().numel())
            .map(|k| 1.0 + k as f64 / 4.0)
            .collect(),
        y.shape(),
    )?;
    let plain = y.backward_with(&weights)?;
    let recorded = y.grad_graph_with(tape.constant_tensor(&weights), &xs)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (x, g) in xs.iter().zip(&recorded) {
        a.extend_from_slice(plain.wrt(*x)?.data());
        b.extend_from_slice(g.value().data());
    }
    Ok((a, b))
}

#[test]
fn recorded_first_derivatives_are_the_plain_ones_kinks_and_saturation_included() -> Result<()> {
    // Elementwise ops and reductions record exactly the numbers of their first-order
    // rules, also at kinks (0), ties, far in saturation and at poles; the fused ops
    // (matrix product, softmax, losses) agree to rounding.
    let unary_edges = [
        0.0, -0.0, 1e-300, -1e-300, 40.0, -40.0, 700.0, -700.0, 1000.0, -1000.0,
    ];
    let binary_edges = [(0.0, 0.0), (-0.0, 0.0), (2.0, 2.0), (1e300, -1e-300)];
    let reductions = [
        "sum",
        "mean",
        "max",
        "min",
        "sum_axis",
        "mean_axis",
        "max_axis",
        "min_axis",
    ];
    let mut ties_and_nan = vec![
        vec![Tensor::vector([1.0, 3.0, 3.0, 2.0])],
        vec![Tensor::vector([1.0, f64::NAN, 2.0])],
        vec![Tensor::matrix(&[[1.0, 5.0, 5.0], [4.0, 4.0, -1.0]])?],
    ];
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    for op in tapegrad::ops::registry() {
        let mut points = op.check_at();
        let elementwise = points
            .iter()
            .all(|p| p.iter().all(|t| t.shape().is_scalar()));
        let exact = elementwise || reductions.contains(&op.name());
        if elementwise && points[0].len() == 1 {
            points.extend(unary_edges.iter().map(|&x| vec![Tensor::scalar(x)]));
        } else if elementwise {
            points.extend(
                binary_edges
                    .iter()
                    .map(|&(a, b)| vec![Tensor::scalar(a), Tensor::scalar(b)]),
            );
        } else if reductions.contains(&op.name()) {
            points.append(&mut ties_and_nan.clone());
        }
        for point in &points {
            let (plain, recorded) = both_gradients(&op, point)?;
            for (k, (&a, &b)) in plain.iter().zip(&recorded).enumerate() {
                let ok = if exact {
                    same(a, b)
                } else {
                    (a - b).abs() <= 1e-13 * (1.0 + a.abs())
                };
                assert!(
                    ok,
                    "{} at {point:?}, entry {k}: plain {a}, recorded {b}",
                    op.name()
                );
            }
        }
    }
    // The ties of max share the gradient; a NaN sends none, in both forms.
    ties_and_nan.truncate(2);
    let max: Arc<dyn Function> = tapegrad::ops::registry()
        .into_iter()
        .find(|op| op.name() == "max")
        .unwrap();
    assert_eq!(
        both_gradients(&max, &ties_and_nan[0])?.1,
        vec![0.0, 0.5, 0.5, 0.0]
    );
    assert_eq!(
        both_gradients(&max, &ties_and_nan[1])?.1,
        vec![0.0, 0.0, 0.0]
    );
    Ok(())
}

#[test]
fn grad_graph_sums_over_an_axis_of_length_one_a_broadcast_stretched() -> Result<()> {
    // b: [1, 3] is broadcast down a's two rows, an axis of the same rank; its gradient
    // through the recorded rule must be summed back over that axis to [1, 3].
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?);
    let b = tape.tensor(&Tensor::new(vec![0.5, -1.0, 2.0], [1, 3])?);
    let y = (a * b).sum();
    let g = y.grad_graph(&[a, b])?;
    assert_eq!(g[1].shape().dims(), &[1, 3]);
    assert_eq!(g[1].value().data(), &[5.0, 7.0, 9.0]); // column sums of a
    assert_eq!(g[0].shape().dims(), &[2, 3]);
    assert_eq!(g[0].value().data(), &[0.5, -1.0, 2.0, 0.5, -1.0, 2.0]);
    // Differentiated again: ∂(Σ ∂y/∂b)/∂a is 1 everywhere.
    let h = g[1].sum().grad_graph(&[a])?;
    assert_eq!(h[0].value().data(), &[1.0; 6]);
    Ok(())
}

#[test]
fn grad_graph_stops_at_a_node_recorded_without_gradient() -> Result<()> {
    // x·x recorded in a no-grad scope is a constant (9) to both sweeps.
    let tape = Tape::new();
    let x = tape.var(3.0);
    let frozen = tape.no_grad_scope(|| x * x);
    let y = frozen * x + x * x;
    assert_eq!(y.grad_graph(&[x])?[0].item()?, 15.0); // 9 + 2x
    assert_eq!(y.backward()?.wrt_scalar(x)?, 15.0);
    Ok(())
}
