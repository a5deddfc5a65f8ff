//! Every built-in op in the registry is gradient-checked against central differences:
//! at its `check_at` points, at 20 seeded random points in its `domain`, and — for the
//! elementwise ops — on tensors that broadcast against each other. Nothing here names an
//! op: a newly registered op is checked as soon as it is registered.
//!
//! Tolerance: `Tolerance::default()`, that is
//! `|analytic − numerical| ≤ 1e-6 + 1e-4·max(|analytic|, |numerical|)` with h = 1e-4.
//!
//! Random points avoid the places where an op has no derivative, so that a central
//! difference of width 2h never straddles one: every coordinate is kept at least 0.01
//! away from 0 (the kink of relu, leaky_relu, abs and step; a value closer is moved to
//! ±0.01), and the elements of one input are kept at least 0.01 apart (ties are the
//! kinks of max; a value too close to another is drawn again). Run with
//! `--nocapture` to see the worst errors per op.
//!
//! Second order: every op's backward rule written with tape ops (what
//! `Var::grad_graph` records) passes `gradgradcheck` at the same check points, at random
//! points and on broadcasting tensors: its recorded first derivatives against central
//! differences of the op, and their derivatives — with respect to the inputs and to the
//! upstream gradient — against central differences of the first derivatives. Ops whose
//! derivative is piecewise constant (step, relu, leaky_relu, abs, sign, equal, max) have
//! second derivative 0 away from their kinks, which the random points keep away from.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use tapegrad::check::{check_function, gradcheck, gradgradcheck, GradcheckReport, Tolerance};
use tapegrad::ops::registry;
use tapegrad::{Error, Function, Result, Shape, Tensor, TensorRef, Var};

const RANDOM_POINTS: usize = 20;
/// How far random coordinates stay from a kink at 0 and from each other.
const KINK_GAP: f64 = 0.01;

fn apply<'t>(op: &Arc<dyn Function>, xs: &[Var<'t>]) -> Result<Var<'t>> {
    xs[0].tape().apply(op, xs)
}

/// A seed per op name, so that adding an op does not change the points of the others.
fn seed(name: &str, salt: u64) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A random tensor of `shape` with values in `(low, high)`, away from 0 and from each
/// other (see the module docs).
fn random_tensor(rng: &mut ChaCha8Rng, shape: &Shape, (low, high): (f64, f64)) -> Tensor {
    let mut values: Vec<f64> = Vec::with_capacity(shape.numel());
    for _ in 0..shape.numel() {
        let mut v = rng.random_range(low..high);
        for _ in 0..100 {
            if values.iter().all(|u| (u - v).abs() >= KINK_GAP) {
                break;
            }
            v = rng.random_range(low..high);
        }
        if v.abs() < KINK_GAP {
            let nudged = if v < 0.0 { -KINK_GAP } else { KINK_GAP };
            if (low..=high).contains(&nudged) {
                v = nudged;
            }
        }
        values.push(v);
    }
    Tensor::new(values, shape.clone()).expect("values fit the shape")
}

/// True for the ops whose check points are all scalars: the unary and binary
/// elementwise ops.
fn is_elementwise(op: &Arc<dyn Function>) -> bool {
    op.check_at()
        .iter()
        .all(|point| point.iter().all(|x| x.shape().is_scalar()))
}

/// The worst errors of one op, for the summary.
struct Line {
    name: String,
    entries: usize,
    max_abs_error: f64,
    max_rel_error: f64,
}

fn summary(title: &str, lines: &[Line]) {
    println!("{title}");
    println!(
        "  {:<24} {:>8} {:>14} {:>14}",
        "op", "entries", "max abs error", "max rel error"
    );
    for l in lines {
        println!(
            "  {:<24} {:>8} {:>14.3e} {:>14.3e}",
            l.name, l.entries, l.max_abs_error, l.max_rel_error
        );
    }
    let worst_abs = lines.iter().map(|l| l.max_abs_error).fold(0.0, f64::max);
    let entries: usize = lines.iter().map(|l| l.entries).sum();
    println!(
        "  {} ops, {entries} entries, worst abs error {worst_abs:.3e}\n",
        lines.len()
    );
}

fn line(name: &str, reports: &[GradcheckReport]) -> Line {
    Line {
        name: name.to_string(),
        entries: reports.iter().map(|r| r.entries).sum(),
        max_abs_error: reports.iter().map(|r| r.max_abs_error).fold(0.0, f64::max),
        max_rel_error: reports.iter().map(|r| r.max_rel_error).fold(0.0, f64::max),
    }
}

#[test]
fn every_registered_op_passes_at_its_check_points() -> Result<()> {
    let ops = registry();
    assert!(ops.len() >= 37, "the registry lists {} ops", ops.len());
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for op in &ops {
        let points = op.check_at();
        assert!(!points.is_empty(), "{} has no check_at points", op.name());
        let report = check_function(op, &points)?;
        assert_eq!(report.points, points.len());
        if !report.passed {
            failed.push(report.to_string());
        }
        lines.push(line(op.name(), &[report]));
    }
    summary("check_at points:", &lines);
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
    Ok(())
}

#[test]
fn every_registered_op_passes_at_random_points_in_its_domain() -> Result<()> {
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    let mut unchecked = Vec::new();
    for op in &registry() {
        let domain = op.domain();
        let bases = op.check_at();
        if domain.is_empty() {
            unchecked.push(op.name().to_string());
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed(op.name(), 1));
        let mut reports = Vec::new();
        for r in 0..RANDOM_POINTS {
            // The shapes of the op's check points, in turn.
            let base = &bases[r % bases.len()];
            assert_eq!(
                base.len(),
                domain.len(),
                "{}: one interval per input",
                op.name()
            );
            let point: Vec<Tensor> = base
                .iter()
                .zip(&domain)
                .map(|(x, &interval)| random_tensor(&mut rng, x.shape(), interval))
                .collect();
            let report = gradcheck(|xs| apply(op, xs), &point, &Tolerance::default())?
                .named(format!("{} at random point {r} {point:?}", op.name()));
            if !report.passed {
                failed.push(report.to_string());
            }
            reports.push(report);
        }
        lines.push(line(op.name(), &reports));
    }
    summary(&format!("{RANDOM_POINTS} random points per op:"), &lines);
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
    // Every op this crate registers gives a domain; one without it would go unchecked here.
    assert!(unchecked.is_empty(), "no domain() for {unchecked:?}");
    Ok(())
}

#[test]
fn elementwise_ops_pass_on_tensors_that_broadcast() -> Result<()> {
    let unary_shapes: [&[usize]; 3] = [&[4], &[2, 3], &[2, 1, 3]];
    let binary_shapes: [(&[usize], &[usize]); 6] = [
        (&[3, 1], &[1, 4]),
        (&[2, 3], &[3]),
        (&[], &[2, 3]),
        (&[2, 3], &[]),
        (&[4], &[4]),
        (&[2, 1, 3], &[4, 1]),
    ];
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    let mut elementwise = 0;
    for op in registry().iter().filter(|op| is_elementwise(op)) {
        elementwise += 1;
        let domain = op.domain();
        let mut rng = ChaCha8Rng::seed_from_u64(seed(op.name(), 2));
        let shapes: Vec<Vec<Shape>> = match domain.len() {
            1 => unary_shapes.iter().map(|s| vec![Shape::new(s)]).collect(),
            2 => binary_shapes
                .iter()
                .map(|(a, b)| vec![Shape::new(a), Shape::new(b)])
                .collect(),
            n => panic!("{}: an elementwise op with {n} inputs", op.name()),
        };
        let mut reports = Vec::new();
        for shape in &shapes {
            let point: Vec<Tensor> = shape
                .iter()
                .zip(&domain)
                .map(|(s, &interval)| random_tensor(&mut rng, s, interval))
                .collect();
            let report = gradcheck(|xs| apply(op, xs), &point, &Tolerance::default())?
                .named(format!("{} on shapes {shape:?}", op.name()));
            if !report.passed {
                failed.push(report.to_string());
            }
            reports.push(report);
        }
        lines.push(line(op.name(), &reports));
    }
    summary("elementwise ops on broadcast tensors:", &lines);
    assert!(
        elementwise >= 31,
        "only {elementwise} elementwise ops found"
    );
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
    Ok(())
}

/// A registered op whose backward rule is off by a hundredth: 0.01·(1 + |g|) is added
/// to every gradient entry g.
struct OffByAHundredth(Arc<dyn Function>);

impl Function for OffByAHundredth {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        self.0.output_shape(inputs)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        self.0.forward(inputs, out)
    }
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let mut grads = self.0.backward(inputs, y, gy)?;
        for g in &mut grads {
            for v in g.data_mut() {
                *v += 0.01 * (1.0 + v.abs());
            }
        }
        Ok(grads)
    }
}

#[test]
fn a_backward_rule_off_by_a_hundredth_fails_at_every_entry_of_every_op() -> Result<()> {
    for op in registry() {
        let points = op.check_at();
        let wrong = Arc::new(OffByAHundredth(op.clone()));
        let report = check_function(&wrong, &points)?;
        assert!(!report.passed, "{report}");
        assert_eq!(report.failures, report.entries, "{report}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Second order.

/// Random points per op for the second-order check.
const RANDOM_POINTS_TWICE: usize = 10;

#[test]
fn every_registered_op_passes_gradgradcheck_at_its_check_points() -> Result<()> {
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for op in &registry() {
        let mut reports = Vec::new();
        for (p, point) in op.check_at().iter().enumerate() {
            let report = gradgradcheck(|xs| apply(op, xs), point, &Tolerance::default())?
                .named(format!("{} at check point {p} {point:?}", op.name()));
            if !report.passed {
                failed.push(report.to_string());
            }
            reports.push(report);
        }
        assert!(!reports.is_empty(), "{} has no check_at points", op.name());
        lines.push(line(op.name(), &reports));
    }
    summary("second order, check_at points:", &lines);
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
    Ok(())
}

#[test]
fn every_registered_op_passes_gradgradcheck_at_random_points_in_its_domain() -> Result<()> {
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for op in &registry() {
        let domain = op.domain();
        let bases = op.check_at();
        assert!(!domain.is_empty(), "no domain() for {}", op.name());
        let mut rng = ChaCha8Rng::seed_from_u64(seed(op.name(), 3));
        let mut reports = Vec::new();
        for r in 0..RANDOM_POINTS_TWICE {
            let base = &bases[r % bases.len()];
            let point: Vec<Tensor> = base
                .iter()
                .zip(&domain)
                .map(|(x, &interval)| random_tensor(&mut rng, x.shape(), interval))
                .collect();
            let report = gradgradcheck(|xs| apply(op, xs), &point, &Tolerance::default())?
                .named(format!("{} at random point {r} {point:?}", op.name()));
            if !report.passed {
                failed.push(report.to_string());
            }
            reports.push(report);
        }
        lines.push(line(op.name(), &reports));
    }
    summary(
        &format!("second order, {RANDOM_POINTS_TWICE} random points per op:"),
        &lines,
    );
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
    Ok(())
}

#[test]
fn elementwise_ops_pass_gradgradcheck_on_tensors_that_broadcast() -> Result<()> {
    let unary_shapes: [&[usize]; 2] = [&[4], &[2, 1, 3]];
    let binary_shapes: [(&[usize], &[usize]); 4] = [
        (&[3, 1], &[1, 4]),
        (&[2, 3], &[3]),
        (&[], &[2, 3]),
        (&[2, 1, 3], &[4, 1]),
    ];
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for op in registry().iter().filter(|op| is_elementwise(op)) {
        let domain = op.domain();
        let mut rng = ChaCha8Rng::seed_from_u64(seed(op.name(), 4));
        let shapes: Vec<Vec<Shape>> = match domain.len() {
            1 => unary_shapes.iter().map(|s| vec![Shape::new(s)]).collect(),
            _ => binary_shapes
                .iter()
                .map(|(a, b)| vec![Shape::new(a), Shape::new(b)])
                .collect(),
        };
        let mut reports = Vec::new();
        for shape in &shapes {
            let point: Vec<Tensor> = shape
                .iter()
                .zip(&domain)
                .map(|(s, &interval)| random_tensor(&mut rng, s, interval))
                .collect();
            let report = gradgradcheck(|xs| apply(op, xs), &point, &Tolerance::default())?
                .named(format!("{} on shapes {shape:?}", op.name()));
            if !report.passed {
                failed.push(report.to_string());
            }
            reports.push(report);
        }
        lines.push(line(op.name(), &reports));
    }
    summary(
        "second order, elementwise ops on broadcast tensors:",
        &lines,
    );
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
    Ok(())
}

/// A registered op whose recorded backward rule gives the right numbers but is cut off
/// from the op's inputs (they are detached first): its second derivatives come out 0.
struct CutOff(Arc<dyn Function>);

impl Function for CutOff {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        self.0.output_shape(inputs)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        self.0.forward(inputs, out)
    }
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        self.0.backward(inputs, y, gy)
    }
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let detached: Vec<Var<'t>> = inputs.iter().map(|x| x.detach()).collect();
        let y = tapegrad::Tape::apply(y.tape(), &self.0, &detached)?;
        self.0.backward_graph(&detached, y, gy)
    }
}

/// The second-order check can fail: a rule cut off from its inputs fails exactly for
/// the ops whose second derivative is not zero at the point, and it fails there at a
/// second-order entry whose recorded value is 0.
#[test]
fn a_recorded_rule_cut_off_from_its_inputs_fails_where_the_second_derivative_is_not_zero(
) -> Result<()> {
    let mut caught = Vec::new();
    for op in registry() {
        let cut = Arc::new(CutOff(op.clone()));
        for point in op.check_at() {
            let honest = gradgradcheck(|xs| apply(&op, xs), &point, &Tolerance::default())?;
            let report = gradgradcheck(
                |xs| apply(&(cut.clone() as Arc<dyn Function>), xs),
                &point,
                &Tolerance::default(),
            )?;
            assert!(honest.passed, "{honest}");
            // The first derivatives and the derivatives with respect to the seed are
            // still right; the ones with respect to the inputs come out 0.
            let curved = second_derivatives_are_not_all_zero(&op, &point)?;
            assert_eq!(report.passed, !curved, "{}: {report}", op.name());
            if curved {
                let worst = report.worst.as_ref().expect("entries were checked");
                assert!(worst.of_gradient.is_some() && !worst.wrt_seed, "{report}");
                assert_eq!(worst.analytic, 0.0, "{report}");
                caught.push(op.name().to_string());
            }
        }
    }
    caught.dedup();
    println!(
        "a cut-off rule is caught for {} ops: {caught:?}",
        caught.len()
    );
    for name in ["sigmoid", "mul", "matmul", "softmax", "mse", "gelu", "exp"] {
        assert!(caught.iter().any(|c| c == name), "{name} was not caught");
    }
    Ok(())
}

/// True when some ∂²L/∂xᵢ∂xⱼ at `point` is far from 0, by central differences of the
/// plain backward pass (independent of the recorded rules).
fn second_derivatives_are_not_all_zero(op: &Arc<dyn Function>, point: &[Tensor]) -> Result<bool> {
    let gradient = |xs: &[Tensor]| -> Result<Vec<f64>> {
        let tape = tapegrad::Tape::new();
        let vars: Vec<Var<'_>> = xs.iter().map(|x| tape.tensor(x)).collect();
        let y = apply(op, &vars)?;
        let seed = Tensor::new(
            (0..y.shape().numel())
                .map(|k| 0.5 + ((3 * k + 1) % 7) as f64 / 6.0)
                .collect(),
            y.shape(),
        )?;
        let seed = if seed.numel() == 1 {
            Tensor::ones(y.shape())
        } else {
            seed
        };
        let grads = y.backward_with(&seed)?;
        let mut g = Vec::new();
        for v in &vars {
            g.extend_from_slice(grads.wrt(*v)?.data());
        }
        Ok(g)
    };
    let h = 1e-4;
    let mut xs = point.to_vec();
    for i in 0..xs.len() {
        for k in 0..xs[i].numel() {
            let saved = xs[i].data()[k];
            xs[i].data_mut()[k] = saved + h;
            let plus = gradient(&xs)?;
            xs[i].data_mut()[k] = saved - h;
            let minus = gradient(&xs)?;
            xs[i].data_mut()[k] = saved;
            let allowance = Tolerance::default();
            if plus
                .iter()
                .zip(&minus)
                .any(|(p, m)| !allowance.accepts(0.0, (p - m) / (2.0 * h)))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A user function without a recorded rule: its first derivatives check, its second
/// cannot be asked for.
#[test]
fn a_user_function_without_a_recorded_rule_is_not_twice_differentiable() -> Result<()> {
    struct Square;
    impl tapegrad::ScalarFunction for Square {
        fn name(&self) -> &str {
            "square"
        }
        fn value(&self, x: f64) -> f64 {
            x * x
        }
        fn derivative(&self, x: f64) -> f64 {
            2.0 * x
        }
    }
    let square = Arc::new(Square);
    let x = [Tensor::vector([0.5, -2.0])];
    assert!(gradcheck(|xs| xs[0].apply(&square), &x, &Tolerance::default())?.passed);
    let err = gradgradcheck(|xs| xs[0].apply(&square), &x, &Tolerance::default()).unwrap_err();
    assert_eq!(
        err,
        Error::NotTwiceDifferentiable {
            function: "square".into()
        }
    );
    Ok(())
}

#[test]
fn every_registered_ops_domain_has_room_for_random_points() {
    // A domain of one point, or an empty or infinite one, would make the random checks
    // above repeat one point or draw nothing valid.
    for op in &registry() {
        for (input, &(low, high)) in op.domain().iter().enumerate() {
            assert!(
                low.is_finite() && high.is_finite() && high - low >= 0.5,
                "{} input {input}: domain ({low}, {high})",
                op.name()
            );
        }
    }
}
