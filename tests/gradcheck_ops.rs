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

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use tapegrad::check::{check_function, gradcheck, GradcheckReport, Tolerance};
use tapegrad::ops::registry;
use tapegrad::{Function, Result, Shape, Tensor, TensorRef, Var};

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
