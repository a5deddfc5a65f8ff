//! Property tests on random expression graphs: for random compositions of every op, of
//! depth up to 8, over scalars and broadcasting tensors,
//!
//! 1. the tape's gradient matches the central-difference gradient (`gradcheck`);
//! 2. recording on a cleared, reused tape gives bit-identical values and gradients to a
//!    fresh tape;
//! 3. nothing panics.
//!
//! The elementwise ops and reductions are reached through their `Var` methods (the path
//! a user takes, with the tape's fast path for scalars); every other registered op
//! (matmul, softmax, the losses, and whatever is registered later) through
//! `Tape::apply`. Each op's inputs are kept inside its `domain()`: an input whose value
//! at the drawn point leaves the interval is squashed into it by `low + (high − low)·σ(x)`
//! (recorded with tape ops, so it is differentiated like the rest). An op whose inputs
//! do not fit its shapes is skipped, leaving its first input. These choices are made
//! once per case, at the drawn point, and replayed for every evaluation of the case, so
//! the function being differentiated is one fixed composition.
//!
//! Kinks (relu at 0, ties of max, …) can land within h of an intermediate value. When
//! the tape and the central difference disagree, the case is checked again with h/4;
//! if the two central differences disagree with each other too, the function is not
//! smooth at that point and the case is discarded (counted and printed); if they agree
//! with each other but not with the tape, the test fails.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;
use tapegrad::check::{gradcheck, numerical_gradients, GradcheckReport, Tolerance};
use tapegrad::ops::registry;
use tapegrad::{Function, Gradients, Result, Shape, Tape, Tensor, Var};

const CASES: u32 = 4000;
const MAX_DEPTH: u32 = 8;

/// One-input ops reached through their `Var` methods, by registry name.
const METHODS: &[&str] = &[
    "neg",
    "powf",
    "powi",
    "add_scalar",
    "mul_scalar",
    "div_scalar",
    "scalar_sub",
    "scalar_div",
    "exp",
    "ln",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tan",
    "step",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "softsign",
    "atan",
    "gaussian",
    "swish",
    "softplus",
    "gelu",
    "sum",
    "mean",
    "max",
    "sum_axis",
    "mean_axis",
    "max_axis",
];

/// Two-input ops reached through their `Var` methods, by registry name.
const BINARY: &[&str] = &["add", "sub", "mul", "div"];

fn method<'t>(name: &str, x: Var<'t>) -> Result<Var<'t>> {
    let last_axis = x.shape().rank().saturating_sub(1);
    Ok(match name {
        "neg" => -x,
        "powf" => x.try_powf(2.5)?,
        "powi" => x.powi(3),
        "add_scalar" => x + 1.5,
        "mul_scalar" => x * -2.5,
        "div_scalar" => x / 4.0,
        "scalar_sub" => 1.0 - x,
        "scalar_div" => 3.0 / x,
        "exp" => x.exp(),
        "ln" => x.ln(),
        "sqrt" => x.sqrt(),
        "abs" => x.abs(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "step" => x.step(),
        "sigmoid" => x.sigmoid(),
        "tanh" => x.tanh(),
        "relu" => x.relu(),
        "leaky_relu" => x.try_leaky_relu(0.1)?,
        "elu" => x.try_elu(0.7)?,
        "softsign" => x.softsign(),
        "atan" => x.atan(),
        "gaussian" => x.gaussian(),
        "swish" => x.try_swish(1.5)?,
        "softplus" => x.softplus(),
        "gelu" => x.gelu(),
        "sum" => x.sum(),
        "mean" => x.mean(),
        "max" => x.max(),
        "sum_axis" => x.try_sum_axis(0, false)?,
        "mean_axis" => x.try_mean_axis(last_axis, true)?,
        "max_axis" => x.try_max_axis(0, true)?,
        other => panic!("no method for {other}"),
    })
}

fn binary<'t>(name: &str, a: Var<'t>, b: Var<'t>) -> Result<Var<'t>> {
    match name {
        "add" => a.try_add(b),
        "sub" => a.try_sub(b),
        "mul" => a.try_mul(b),
        "div" => a.try_div(b),
        other => panic!("no binary method for {other}"),
    }
}

/// An interval `(low, high)` per input.
type Domain = Vec<(f64, f64)>;

/// The ops a graph is built from, with each input's domain.
struct Catalogue {
    methods: Vec<(&'static str, (f64, f64))>,
    binary: Vec<(&'static str, [(f64, f64); 2])>,
    /// Registered ops without a method here, applied as functions.
    registered: Vec<(Arc<dyn Function>, Domain)>,
}

impl Catalogue {
    fn new() -> Catalogue {
        let ops = registry();
        let domain = |name: &str| -> Domain {
            let op = ops
                .iter()
                .find(|op| op.name() == name)
                .unwrap_or_else(|| panic!("{name} is not registered"));
            op.domain()
        };
        let methods = METHODS.iter().map(|&n| (n, domain(n)[0])).collect();
        let binary = BINARY
            .iter()
            .map(|&n| {
                let d = domain(n);
                (n, [d[0], d[1]])
            })
            .collect();
        let registered = ops
            .iter()
            .filter(|op| !METHODS.contains(&op.name()) && !BINARY.contains(&op.name()))
            .map(|op| {
                let mut d = op.domain();
                if d.is_empty() {
                    // No domain given: as many inputs as its check points have.
                    let arity = op.check_at().first().map_or(1, Vec::len);
                    d = vec![(-3.0, 3.0); arity];
                }
                (op.clone(), d)
            })
            .collect();
        Catalogue {
            methods,
            binary,
            registered,
        }
    }
}

#[derive(Clone, Debug)]
enum Expr {
    Input(usize),
    Method(usize, Box<Expr>),
    Binary(usize, Box<Expr>, Box<Expr>),
    /// A registered op; the second child is used only by two-input ops.
    Registered(usize, Box<Expr>, Box<Expr>),
}

impl Expr {
    fn depth(&self) -> u32 {
        match self {
            Expr::Input(_) => 0,
            Expr::Method(_, a) => 1 + a.depth(),
            Expr::Binary(_, a, b) | Expr::Registered(_, a, b) => 1 + a.depth().max(b.depth()),
        }
    }
}

/// Graphs of every depth from 1 to 8 equally often: a spine of exactly that depth,
/// with shallower side branches (depth at most 2) at the two-input ops.
fn expr_strategy(catalogue: &Catalogue) -> impl Strategy<Value = Expr> {
    let sizes = (
        catalogue.methods.len(),
        catalogue.binary.len(),
        catalogue.registered.len(),
    );
    (1..=MAX_DEPTH).prop_flat_map(move |depth| expr_of_depth(depth, sizes))
}

fn expr_of_depth(depth: u32, sizes: (usize, usize, usize)) -> BoxedStrategy<Expr> {
    let (m, b, r) = sizes;
    if depth == 0 {
        return (0..3usize).prop_map(Expr::Input).boxed();
    }
    let spine = expr_of_depth(depth - 1, sizes);
    let side = (0..depth.min(3))
        .prop_flat_map(move |d| expr_of_depth(d, sizes))
        .boxed();
    prop_oneof![
        4 => (0..m, spine.clone()).prop_map(|(k, a)| Expr::Method(k, Box::new(a))),
        3 => (0..b, spine.clone(), side.clone(), any::<bool>()).prop_map(|(k, a, c, swap)| {
            let (a, c) = if swap { (c, a) } else { (a, c) };
            Expr::Binary(k, Box::new(a), Box::new(c))
        }),
        2 => (0..r, spine, side)
            .prop_map(|(k, a, c)| Expr::Registered(k, Box::new(a), Box::new(c))),
    ]
    .boxed()
}

/// Shapes that all broadcast with each other, to each other.
const SHAPES: [&[usize]; 4] = [&[], &[3], &[2, 1], &[2, 3]];

#[derive(Clone, Debug)]
struct Case {
    inputs: Vec<Tensor>,
    expr: Expr,
}

fn case_strategy(catalogue: &Catalogue) -> impl Strategy<Value = Case> {
    // Values stay 0.01 away from 0, where relu, abs, step and leaky_relu have their
    // kink: exactly at a kink the central difference is the mean of the two slopes, and
    // a shrunk failing case would land there.
    let value = (-2.5f64..2.5).prop_map(|v| {
        if v.abs() < 0.01 {
            0.01f64.copysign(v)
        } else {
            v
        }
    });
    let input = (0..SHAPES.len(), prop::collection::vec(value, 6)).prop_map(|(s, v)| {
        let shape = Shape::new(SHAPES[s]);
        Tensor::new(v[..shape.numel()].to_vec(), shape).expect("at most 6 values")
    });
    (
        prop::collection::vec(input, 1..=3),
        expr_strategy(catalogue),
    )
        .prop_map(|(inputs, expr)| Case { inputs, expr })
}

/// The choices made at the drawn point — squash an input into its op's domain or not —
/// recorded once and replayed for every evaluation of the case.
#[derive(Default)]
struct Plan {
    squash: Vec<bool>,
    next: usize,
    replaying: bool,
    /// Ops recorded and ops skipped for shapes that do not fit, at the drawn point.
    applied: u32,
    skipped: u32,
    /// Whether some op met its input within 1e-3 of a kink (see [`at_kink`]).
    near_kink: bool,
    /// Whether some op gave a value that is not finite, even if a later op (`step`)
    /// hides it from the output.
    non_finite: bool,
}

/// True when `x` lies within 1e-3 of a kink of the op `name`: where the central
/// difference is the mean of the two one-sided slopes at every step, so comparing two
/// steps cannot tell the kink from a smooth point. Leaves keep away from 0, but inner
/// values can land on a kink (`x − x` into `relu`, a scalar broadcast into a tie for
/// `max`).
fn at_kink(name: &str, x: &Tensor) -> bool {
    let d = x.data();
    match name {
        "abs" | "relu" | "step" | "leaky_relu" | "elu" | "sign" => d.iter().any(|v| v.abs() < 1e-3),
        "max" | "max_axis" => d
            .iter()
            .enumerate()
            .any(|(i, a)| d[i + 1..].iter().any(|b| (a - b).abs() < 1e-3)),
        _ => false,
    }
}

impl Plan {
    fn replay(&mut self) {
        self.replaying = true;
        self.next = 0;
    }

    fn squash<'t>(&mut self, x: Var<'t>, (low, high): (f64, f64)) -> Var<'t> {
        let squash = if self.replaying {
            let s = self.squash[self.next];
            self.next += 1;
            s
        } else {
            let inside = x.value().data().iter().all(|v| (low..=high).contains(v));
            self.squash.push(!inside);
            !inside
        };
        if squash {
            x.sigmoid() * (high - low) + low
        } else {
            x
        }
    }

    /// The op's result, or `fallback` when the op does not fit its inputs' shapes.
    fn outcome<'t>(&mut self, result: Result<Var<'t>>, fallback: Var<'t>) -> Var<'t> {
        if !self.replaying {
            match &result {
                Ok(y) => {
                    self.applied += 1;
                    self.non_finite |= !y.value().data().iter().all(|v| v.is_finite());
                }
                Err(_) => self.skipped += 1,
            }
        }
        result.unwrap_or(fallback)
    }
}

fn eval<'t>(e: &Expr, xs: &[Var<'t>], plan: &mut Plan, catalogue: &Catalogue) -> Result<Var<'t>> {
    Ok(match e {
        Expr::Input(i) => xs[i % xs.len()],
        Expr::Method(k, a) => {
            let (name, domain) = catalogue.methods[*k];
            let a = eval(a, xs, plan, catalogue)?;
            let a = plan.squash(a, domain);
            if !plan.replaying {
                plan.near_kink |= at_kink(name, &a.value());
            }
            plan.outcome(method(name, a), a)
        }
        Expr::Binary(k, a, b) => {
            let (name, [da, db]) = catalogue.binary[*k];
            let a = eval(a, xs, plan, catalogue)?;
            let b = eval(b, xs, plan, catalogue)?;
            let (a, b) = (plan.squash(a, da), plan.squash(b, db));
            plan.outcome(binary(name, a, b), a)
        }
        Expr::Registered(k, a, b) => {
            let (op, domain) = &catalogue.registered[*k];
            let a = eval(a, xs, plan, catalogue)?;
            let a = plan.squash(a, domain[0]);
            let result = if domain.len() == 2 {
                let b = eval(b, xs, plan, catalogue)?;
                let b = plan.squash(b, domain[1]);
                if !plan.replaying && op.name() == "equal" {
                    // A tie is a removable jump: ±h both leave it.
                    let (a, b) = (a.value(), b.value());
                    plan.near_kink |= a
                        .data()
                        .iter()
                        .any(|x| b.data().iter().any(|y| (x - y).abs() < 1e-3));
                }
                a.tape().apply(op, &[a, b])
            } else {
                if !plan.replaying {
                    plan.near_kink |= at_kink(op.name(), &a.value());
                }
                a.tape().apply(op, &[a])
            };
            plan.outcome(result, a)
        }
    })
}

/// Value and gradient bits of the case on `tape`, with the plan replayed.
fn record_bits(
    tape: &Tape,
    case: &Case,
    plan: &mut Plan,
    catalogue: &Catalogue,
) -> Result<(Vec<u64>, Vec<u64>)> {
    plan.replay();
    let xs: Vec<Var<'_>> = case.inputs.iter().map(|x| tape.tensor(x)).collect();
    let y = eval(&case.expr, &xs, plan, catalogue)?;
    let mut grads = Gradients::new();
    y.sum().backward_into(&mut grads)?;
    let mut bits: Vec<u64> = y.value().data().iter().map(|v| v.to_bits()).collect();
    bits.push(y.sum().item()?.to_bits());
    let mut grad_bits = Vec::new();
    for &x in &xs {
        grad_bits.extend(grads.wrt(x)?.data().iter().map(|v| v.to_bits()));
    }
    Ok((bits, grad_bits))
}

/// Counters printed at the end.
#[derive(Default)]
struct Stats {
    cases: Cell<u32>,
    discarded: Cell<u32>,
    rechecked: Cell<u32>,
    deepest: Cell<u32>,
    applied: Cell<u32>,
    skipped: Cell<u32>,
    worst_abs: Cell<f64>,
    depths: [Cell<u32>; MAX_DEPTH as usize + 1],
}

fn check_case(case: &Case, catalogue: &Catalogue, stats: &Stats) -> Result<(), TestCaseError> {
    let fail = |e: tapegrad::Error| TestCaseError::fail(format!("error: {e}"));
    // The drawn point fixes the plan.
    let mut plan = Plan::default();
    {
        let tape = Tape::new();
        let xs: Vec<Var<'_>> = case
            .inputs
            .iter()
            .map(|x| tape.constant_tensor(x))
            .collect();
        let y = eval(&case.expr, &xs, &mut plan, catalogue).map_err(fail)?;
        stats.applied.set(stats.applied.get() + plan.applied);
        stats.skipped.set(stats.skipped.get() + plan.skipped);
        if plan.non_finite || !y.value().data().iter().all(|v| v.is_finite()) {
            stats.discarded.set(stats.discarded.get() + 1);
            return Err(TestCaseError::reject("a value that is not finite"));
        }
    }

    // A fresh tape and a reused one give the same bits.
    let fresh = record_bits(&Tape::new(), case, &mut plan, catalogue).map_err(fail)?;
    let mut reused = Tape::new();
    {
        // Dirty the tape with another recording of other shapes and values.
        let scaled: Vec<Tensor> = case
            .inputs
            .iter()
            .map(|x| x.map(|v| 0.5 * v - 0.25))
            .collect();
        let other = Case {
            inputs: scaled,
            expr: case.expr.clone(),
        };
        let mut other_plan = Plan::default();
        let xs: Vec<Var<'_>> = other.inputs.iter().map(|x| reused.tensor(x)).collect();
        let m = reused.tensor(&Tensor::zeros([4, 5]));
        let y = eval(&other.expr, &xs, &mut other_plan, catalogue).map_err(fail)?;
        let _ = (y.sum() + m.sum()).backward().map_err(fail)?;
    }
    reused.clear();
    let again = record_bits(&reused, case, &mut plan, catalogue).map_err(fail)?;
    prop_assert_eq!(&fresh, &again, "a cleared tape recorded different bits");

    // The tape's gradient against central differences.
    let check = |plan: &mut Plan, tolerance: &Tolerance| -> Result<GradcheckReport> {
        gradcheck(
            |xs| {
                plan.replay();
                eval(&case.expr, xs, plan, catalogue)
            },
            &case.inputs,
            tolerance,
        )
    };
    let tolerance = Tolerance::default();
    let report = check(&mut plan, &tolerance).map_err(fail)?;
    stats
        .worst_abs
        .set(stats.worst_abs.get().max(report.max_abs_error));
    if !report.passed {
        stats.rechecked.set(stats.rechecked.get() + 1);
        let finer = Tolerance {
            h: tolerance.h / 4.0,
            ..tolerance
        };
        let finer_report = check(&mut plan, &finer).map_err(fail)?;
        if !finer_report.passed {
            // Do the two central differences agree with each other?
            let mut numerical = |h: f64| {
                let mut xs = case.inputs.clone();
                numerical_gradients(
                    |xs| {
                        let tape = Tape::new();
                        let vars: Vec<Var<'_>> =
                            xs.iter().map(|x| tape.constant_tensor(x)).collect();
                        plan.replay();
                        let y = eval(&case.expr, &vars, &mut plan, catalogue)?;
                        Ok(y.value().data().iter().sum())
                    },
                    &mut xs,
                    h,
                )
            };
            let coarse = numerical(tolerance.h).map_err(fail)?;
            let fine = numerical(finer.h).map_err(fail)?;
            let smooth = coarse.iter().zip(&fine).all(|(c, f)| {
                c.data()
                    .iter()
                    .zip(f.data())
                    .all(|(&c, &f)| tolerance.accepts(c, f))
            });
            if smooth && !plan.near_kink {
                return Err(TestCaseError::fail(format!(
                    "the tape's gradient disagrees with central differences:\n{report}\n{finer_report}"
                )));
            }
            stats.discarded.set(stats.discarded.get() + 1);
            return Err(TestCaseError::reject("not smooth within h of the point"));
        }
    }
    stats.cases.set(stats.cases.get() + 1);
    let depth = &stats.depths[case.expr.depth() as usize];
    depth.set(depth.get() + 1);
    stats
        .deepest
        .set(stats.deepest.get().max(case.expr.depth()));
    Ok(())
}

#[test]
fn random_graphs_match_central_differences_and_record_identically_on_a_reused_tape() {
    let catalogue = Catalogue::new();
    let config = Config {
        cases: CASES,
        max_global_rejects: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let stats = Stats::default();
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case_strategy(&catalogue), |case| {
        prop_assert!(case.expr.depth() <= MAX_DEPTH);
        check_case(&case, &catalogue, &stats)
    });
    println!(
        "{} cases passed in {:.2?} ({} ops: {} methods, {} binary, {} registered); \
         {} rechecked with h/4, {} discarded as not smooth or not finite; \
         deepest graph {}, worst abs error {:.3e}",
        stats.cases.get(),
        started.elapsed(),
        catalogue.methods.len() + catalogue.binary.len() + catalogue.registered.len(),
        catalogue.methods.len(),
        catalogue.binary.len(),
        catalogue.registered.len(),
        stats.rechecked.get(),
        stats.discarded.get(),
        stats.deepest.get(),
        stats.worst_abs.get(),
    );
    let depths: Vec<u32> = stats.depths.iter().map(Cell::get).collect();
    println!("cases by depth 0..={MAX_DEPTH}: {depths:?}");
    println!(
        "ops recorded {}, skipped for shapes that do not fit {}",
        stats.applied.get(),
        stats.skipped.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(stats.cases.get() >= CASES);
    // Discards are rare; many would mean the generator drifted onto kinks.
    assert!(
        stats.discarded.get() * 20 < CASES,
        "{} discarded",
        stats.discarded.get()
    );
}

/// Checks that `case` is set aside (rejected and counted as discarded), not failed or
/// passed; returns the counts.
fn assert_set_aside(case: &Case, catalogue: &Catalogue) -> Stats {
    let stats = Stats::default();
    let result = check_case(case, catalogue, &stats);
    assert!(
        matches!(result, Err(TestCaseError::Reject(_))),
        "{result:?}"
    );
    assert_eq!(stats.discarded.get(), 1);
    stats
}

/// A tie under `max_axis`, where central differences give ½ at every step while the tape
/// splits the gradient in thirds, is set aside as a kink rather than failed (a shrunk
/// random case once landed there).
#[test]
fn a_tie_under_max_is_a_kink_not_a_failure() {
    let catalogue = Catalogue::new();
    let k = catalogue
        .methods
        .iter()
        .position(|(name, _)| *name == "max_axis")
        .expect("max_axis is a method");
    let case = Case {
        inputs: vec![
            Tensor::scalar(0.01),
            Tensor::new(vec![0.01; 3], [3]).unwrap(),
        ],
        expr: Expr::Method(k, Box::new(Expr::Input(1))),
    };
    let stats = assert_set_aside(&case, &catalogue);
    // Without the tie the same expression passes.
    let case = Case {
        inputs: vec![
            Tensor::scalar(0.01),
            Tensor::new(vec![0.3, -0.2, 0.01], [3]).unwrap(),
        ],
        ..case
    };
    assert!(check_case(&case, &catalogue, &stats).is_ok());
}

/// A value that is not finite inside the graph sets the case aside even when a later
/// `step` hides it from the output (the case below once failed: a label the loss does not
/// accept makes it NaN, `step` turns that into 0, and the gradient stays NaN).
#[test]
fn a_hidden_nan_sets_the_case_aside() {
    let catalogue = Catalogue::new();
    let method = |name: &str| {
        catalogue
            .methods
            .iter()
            .position(|(n, _)| *n == name)
            .expect("a method")
    };
    let registered = |name: &str| {
        catalogue
            .registered
            .iter()
            .position(|(op, _)| op.name() == name)
            .expect("a registered op")
    };
    let input = |i| Box::new(Expr::Input(i));
    let logits = Expr::Registered(
        registered("matmul"),
        Box::new(Expr::Method(method("mean_axis"), input(0))),
        input(0),
    );
    let loss = Expr::Registered(
        registered("softmax_cross_entropy"),
        Box::new(logits),
        input(1),
    );
    let neg = |e| Box::new(Expr::Method(method("neg"), Box::new(e)));
    let case = Case {
        inputs: vec![
            Tensor::new(vec![0.01, 0.6943336043582808, -1.219528250742132], [3]).unwrap(),
            Tensor::scalar(0.01),
        ],
        expr: Expr::Method(method("step"), neg(*neg(loss))),
    };
    assert_set_aside(&case, &catalogue);
}

// ---------------------------------------------------------------------------------------
// Only the output's ancestors take part in its backward pass.
//
// A random program is a list of steps over scalar and vector leaves, each step reading
// any earlier node, so that many nodes end up off the path of the chosen output. Leaf
// values include 0, −0, subnormals, ±1e308, ±∞ and NaN, so that dead nodes meet
// infinite and NaN local derivatives (ln, √ and 1/x at 0, exp overflowing, a user
// function whose derivative is NaN). The gradients of every leaf must equal, bit for
// bit, those of the same program with every node off the output's path left out (any
// NaN matching any NaN: see `bits`).

/// A leaf's values are drawn from these.
const EDGE_VALUES: [f64; 13] = [
    0.0,
    -0.0,
    0.5,
    -1.5,
    2.5,
    1e308,
    -1e308,
    5e-324,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    3.0,
    -0.25,
];

/// A scalar function with a NaN derivative everywhere (a user function, recorded as a
/// general node).
struct NanSlope;

impl tapegrad::ScalarFunction for NanSlope {
    fn name(&self) -> &str {
        "nan_slope"
    }
    fn value(&self, x: f64) -> f64 {
        x * 0.5
    }
    fn derivative(&self, _x: f64) -> f64 {
        f64::NAN
    }
}

const UNARY_STEPS: [&str; 12] = [
    "ln",
    "sqrt",
    "exp",
    "recip",
    "sin",
    "tanh",
    "relu",
    "abs",
    "sigmoid",
    "powi",
    "nan_slope",
    "sum",
];
const BINARY_STEPS: [&str; 4] = ["add", "sub", "mul", "div"];

#[derive(Clone, Debug)]
enum Step {
    /// An op of `UNARY_STEPS` on an earlier node (indices are taken modulo the nodes
    /// recorded so far).
    Unary(usize, usize),
    /// An op of `BINARY_STEPS` on two earlier nodes.
    Binary(usize, usize, usize),
}

#[derive(Clone, Debug)]
struct Program {
    /// Each leaf: a scalar (`None`) or a vector of three values.
    leaves: Vec<(f64, Option<[f64; 3]>)>,
    steps: Vec<Step>,
    /// The output node, modulo the number of nodes.
    output: usize,
}

impl Program {
    /// The inputs of step `k`, as node numbers (leaves first).
    fn inputs(&self, k: usize) -> Vec<usize> {
        let before = self.leaves.len() + k;
        match self.steps[k] {
            Step::Unary(_, a) => vec![a % before],
            Step::Binary(_, a, b) => vec![a % before, b % before],
        }
    }

    /// For every node, whether the output depends on it.
    fn ancestors(&self) -> Vec<bool> {
        let n = self.leaves.len() + self.steps.len();
        let mut on_path = vec![false; n];
        on_path[self.output % n] = true;
        for k in (0..self.steps.len()).rev() {
            if on_path[self.leaves.len() + k] {
                for i in self.inputs(k) {
                    on_path[i] = true;
                }
            }
        }
        on_path
    }
}

fn program_strategy() -> impl Strategy<Value = Program> {
    let value = prop::sample::select(EDGE_VALUES.to_vec());
    let leaf = (
        value.clone(),
        prop::option::of(prop::array::uniform3(value)),
    );
    let step = prop_oneof![
        (0..UNARY_STEPS.len(), any::<usize>()).prop_map(|(op, a)| Step::Unary(op, a)),
        (0..BINARY_STEPS.len(), any::<usize>(), any::<usize>())
            .prop_map(|(op, a, b)| Step::Binary(op, a, b)),
    ];
    (
        prop::collection::vec(leaf, 1..=4),
        prop::collection::vec(step, 1..=14),
        any::<usize>(),
    )
        .prop_map(|(leaves, steps, output)| Program {
            leaves,
            steps,
            output,
        })
}

/// The leaves, every node (`None` where left out) and the output (summed to a scalar)
/// of a recorded program.
type Recorded<'t> = (Vec<Var<'t>>, Vec<Option<Var<'t>>>, Var<'t>);

/// Records `program` on `tape`, leaving out the steps `keep` says no to.
fn record_program<'t>(tape: &'t Tape, program: &Program, keep: &[bool]) -> Result<Recorded<'t>> {
    let nan_slope = Arc::new(NanSlope);
    let mut nodes: Vec<Option<Var<'t>>> = program
        .leaves
        .iter()
        .map(|&(s, v)| {
            Some(match v {
                None => tape.var(s),
                Some(v) => tape.tensor(&Tensor::vector(v)),
            })
        })
        .collect();
    let leaves: Vec<Var<'t>> = nodes.iter().flatten().copied().collect();
    for (k, step) in program.steps.iter().enumerate() {
        if !keep[program.leaves.len() + k] {
            nodes.push(None);
            continue;
        }
        let input = |i: usize| nodes[i].expect("an ancestor's inputs are ancestors");
        let ins = program.inputs(k);
        let y = match *step {
            Step::Unary(op, _) => {
                let x = input(ins[0]);
                match UNARY_STEPS[op] {
                    "ln" => x.ln(),
                    "sqrt" => x.sqrt(),
                    "exp" => x.exp(),
                    "recip" => 1.0 / x,
                    "sin" => x.sin(),
                    "tanh" => x.tanh(),
                    "relu" => x.relu(),
                    "abs" => x.abs(),
                    "sigmoid" => x.sigmoid(),
                    "powi" => x.powi(-2),
                    "nan_slope" => x.apply(&nan_slope)?,
                    _ => x.sum(),
                }
            }
            Step::Binary(op, _, _) => {
                let (a, b) = (input(ins[0]), input(ins[1]));
                match BINARY_STEPS[op] {
                    "add" => a + b,
                    "sub" => a - b,
                    "mul" => a * b,
                    _ => a / b,
                }
            }
        };
        nodes.push(Some(y));
    }
    let n = nodes.len();
    let output = nodes[program.output % n].expect("the output is kept");
    let output = if output.shape().numel() == 1 {
        output
    } else {
        output.sum()
    };
    Ok((leaves, nodes, output))
}

/// The bits of `v`, with every NaN as one: Rust leaves the sign and payload of a NaN
/// that arithmetic makes unspecified, so the same sum compiled in two places may give
/// two NaNs. Every other number keeps its bits, the sign of zero included.
fn bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

/// The bits of every leaf's gradient, from a fresh and from a reused `Gradients`.
fn leaf_gradient_bits(leaves: &[Var<'_>], y: Var<'_>, reused: &mut Gradients) -> Vec<u64> {
    let fresh = y.backward().expect("a scalar output");
    y.backward_into(reused).expect("a scalar output");
    let mut out = Vec::new();
    for &x in leaves {
        let (a, b) = (fresh.wrt(x).unwrap(), reused.wrt(x).unwrap());
        assert_eq!(
            a.data().iter().copied().map(bits).collect::<Vec<_>>(),
            b.data().iter().copied().map(bits).collect::<Vec<_>>(),
            "fresh and reused gradients differ"
        );
        out.extend(a.data().iter().copied().map(bits));
    }
    out
}

#[test]
fn gradients_equal_those_of_the_program_pruned_to_the_outputs_ancestors() {
    const PROGRAMS: u32 = 10_000;
    let config = Config {
        cases: PROGRAMS,
        failure_persistence: None,
        ..Config::default()
    };
    let (cases, with_dead, with_non_finite) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let reused = std::cell::RefCell::new(Gradients::new());
    let result = TestRunner::new(config).run(&program_strategy(), |program| {
        let reused = &mut *reused.borrow_mut();
        let everything = vec![true; program.leaves.len() + program.steps.len()];
        let on_path = program.ancestors();
        let whole = Tape::new();
        let (leaves, nodes, y) = record_program(&whole, &program, &everything).unwrap();
        let all = leaf_gradient_bits(&leaves, y, reused);
        let pruned_tape = Tape::new();
        let (pruned_leaves, _, pruned_y) =
            record_program(&pruned_tape, &program, &on_path).unwrap();
        let pruned = leaf_gradient_bits(&pruned_leaves, pruned_y, reused);
        prop_assert_eq!(bits(y.item().unwrap()), bits(pruned_y.item().unwrap()));
        prop_assert_eq!(&all, &pruned, "{:?}", program);
        // Replayed, the whole program still gives the pruned one's gradients.
        whole.replay();
        prop_assert_eq!(&leaf_gradient_bits(&leaves, y, reused), &pruned);
        cases.set(cases.get() + 1);
        let dead: Vec<Var<'_>> = nodes
            .iter()
            .zip(&on_path)
            .filter(|(_, &on)| !on)
            .filter_map(|(v, _)| *v)
            .collect();
        if !dead.is_empty() {
            with_dead.set(with_dead.get() + 1);
        }
        if dead
            .iter()
            .any(|v| v.value().data().iter().any(|x| !x.is_finite()))
        {
            with_non_finite.set(with_non_finite.get() + 1);
        }
        Ok(())
    });
    println!(
        "{} programs, {} with nodes off the output's path, {} with NaN or ±∞ in a node \
         off the path",
        cases.get(),
        with_dead.get(),
        with_non_finite.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(cases.get(), PROGRAMS);
    assert!(
        with_dead.get() * 2 > PROGRAMS,
        "most programs have dead nodes"
    );
    assert!(
        with_non_finite.get() * 10 > PROGRAMS,
        "many have NaN or ±∞ in them"
    );
}
