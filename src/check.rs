//! Numerical gradients and the gradient checker.
//!
//! The lecture checks backpropagation by computing the same derivative a second way: the
//! central difference `(f(x + h) − f(x − h)) / 2h` with `h = 1e-4`. This module makes
//! that check one call for any function — a built-in op, a composition, or a user's
//! [`Function`] or [`ScalarFunction`](crate::ScalarFunction):
//!
//! - [`numerical_gradient`] and [`numerical_gradients`]: central differences of a scalar
//!   function of one tensor or of several, probing one element at a time and putting
//!   each element back afterwards, exactly as the lecture's `numerical_gradient` does.
//! - [`gradcheck`]: records a function on a tape, backpropagates, compares every entry
//!   of the gradient with the numerical one and returns a [`GradcheckReport`] (pass or
//!   fail, the largest absolute and relative errors, the worst entry with both numbers).
//! - [`check_function`]: the same for one function on its own, at given points or at
//!   its own [`check_at`](crate::Function::check_at) points.
//! - [`gradgradcheck`]: the same one order up, for gradients that are differentiated
//!   again ([`Var::grad_graph`]): the recorded first derivatives against central
//!   differences of the function, and their derivatives against central differences of
//!   the first derivatives.
//!
//! ```
//! use tapegrad::check::{gradcheck, numerical_gradient, Tolerance, DEFAULT_H};
//! use tapegrad::Tensor;
//!
//! // The lecture's function_2: f(x0, x1) = x0² + x1², whose gradient is (2x0, 2x1).
//! let mut x = Tensor::vector([3.0, 4.0]);
//! let g = numerical_gradient(|x| Ok(x.data().iter().map(|v| v * v).sum()), &mut x, DEFAULT_H)?;
//! assert!((g.data()[0] - 6.0).abs() < 1e-9 && (g.data()[1] - 8.0).abs() < 1e-9);
//!
//! // The same function on the tape, checked against that numerical gradient.
//! let report = gradcheck(|x| Ok(x[0].powi(2).sum()), &[x], &Tolerance::default())?;
//! assert!(report.passed);
//! assert!(report.max_abs_error < 1e-9);
//! # Ok::<(), tapegrad::Error>(())
//! ```

use crate::backward::Gradients;
use crate::error::{Error, Result};
use crate::function::{AsFunction, Function};
use crate::shape::Shape;
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::Var;
use std::fmt;
use std::sync::Arc;

/// The lecture's step for central differences: `h = 1e-4`.
///
/// Small enough that the truncation error (of order h²) is tiny, large enough that
/// rounding in `f(x + h) − f(x − h)` (of order ε·|f|/h) stays near 1e-12·|f|.
pub const DEFAULT_H: f64 = 1e-4;

/// The central-difference gradient of a scalar function of one tensor, shaped like `x`.
///
/// For each element `xᵢ` in turn, `f` is evaluated with `xᵢ + h` and with `xᵢ − h`, and
/// `(f(x + h) − f(x − h)) / 2h` is that element's derivative. The element is put back
/// after each probe (also when `f` fails), so when the call returns `x` holds exactly
/// the values it held before. `f` is called `2·x.numel()` times.
///
/// An error if `h` is not a positive finite number, or the first error `f` returns.
///
/// ```
/// use tapegrad::check::numerical_gradient;
/// use tapegrad::Tensor;
///
/// // d/dx sin x = cos x, at three points at once.
/// let mut x = Tensor::vector([0.0, 1.0, 2.0]);
/// let before = x.clone();
/// let g = numerical_gradient(|x| Ok(x.data().iter().map(|v| v.sin()).sum()), &mut x, 1e-4)?;
/// for (g, x) in g.data().iter().zip(x.data()) {
///     assert!((g - x.cos()).abs() < 1e-8);
/// }
/// assert_eq!(x, before); // every probe was undone
/// assert!(numerical_gradient(|_| Ok(0.0), &mut x, 0.0).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn numerical_gradient<F>(mut f: F, x: &mut Tensor, h: f64) -> Result<Tensor>
where
    F: FnMut(&Tensor) -> Result<f64>,
{
    let mut grads = numerical_gradients(|xs| f(&xs[0]), std::slice::from_mut(x), h)?;
    Ok(grads.remove(0))
}

/// The central-difference gradients of a scalar function of several tensors: one
/// gradient per tensor, each shaped like its tensor.
///
/// Every element of every tensor is probed in turn, as in [`numerical_gradient`], and
/// put back afterwards; when the call returns, `xs` holds exactly what it held before.
///
/// ```
/// use tapegrad::check::numerical_gradients;
/// use tapegrad::Tensor;
///
/// // f(a, b) = Σ a·b: ∂f/∂a = b and ∂f/∂b = a.
/// let mut xs = vec![Tensor::vector([1.0, 2.0]), Tensor::vector([3.0, -4.0])];
/// let f = |xs: &[Tensor]| Ok(xs[0].data().iter().zip(xs[1].data()).map(|(a, b)| a * b).sum());
/// let g = numerical_gradients(f, &mut xs, 1e-4)?;
/// assert!((g[0].data()[1] - -4.0).abs() < 1e-9);
/// assert!((g[1].data()[0] - 1.0).abs() < 1e-9);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn numerical_gradients<F>(mut f: F, xs: &mut [Tensor], h: f64) -> Result<Vec<Tensor>>
where
    F: FnMut(&[Tensor]) -> Result<f64>,
{
    positive("numerical_gradient", "h", h)?;
    let mut grads = Vec::with_capacity(xs.len());
    for i in 0..xs.len() {
        let mut grad = Tensor::zeros(xs[i].shape().clone());
        for k in 0..xs[i].numel() {
            let saved = xs[i].data()[k];
            xs[i].data_mut()[k] = saved + h;
            let plus = f(xs);
            xs[i].data_mut()[k] = saved - h;
            let minus = f(xs);
            // Put the element back before looking at the results, so that an error
            // from `f` does not leave the input moved.
            xs[i].data_mut()[k] = saved;
            grad.data_mut()[k] = (plus? - minus?) / (2.0 * h);
        }
        grads.push(grad);
    }
    Ok(grads)
}

/// How close an analytic and a numerical gradient entry must be, and the step `h` of
/// the numerical one.
///
/// An entry passes when `|analytic − numerical| ≤ abs + rel · max(|analytic|, |numerical|)`
/// (NumPy's `allclose` rule, symmetric in the two numbers). The absolute part covers
/// entries that are zero or nearly so, where a relative error means nothing; the
/// relative part covers large gradients, where the central difference's error grows
/// with the function's curvature.
///
/// The default (`abs = 1e-6`, `rel = 1e-4`, `h = 1e-4`) passes every correct built-in op
/// at its check points and fails a backward rule that is off by a hundredth. Two check
/// points come close to it, because there the central difference itself is off: `ln`
/// at 0.01 (relative error 3.3·10⁻⁵, from the curvature h²·f‴/6) and `softsign` at 0
/// (absolute error 10⁻⁴ = h/(1 + h): its second derivative jumps there, so the error is
/// of order h, not h²). A tighter tolerance needs a smaller `h` at such points.
///
/// ```
/// use tapegrad::check::Tolerance;
/// let tolerance = Tolerance::default();
/// assert!(tolerance.accepts(100.0, 100.005));
/// assert!(!tolerance.accepts(32.0, 8.0));
/// let strict = Tolerance { rel: 1e-8, ..Tolerance::default() };
/// assert!(!strict.accepts(100.0, 100.005));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Allowed absolute difference.
    pub abs: f64,
    /// Allowed difference relative to the larger magnitude of the two entries.
    pub rel: f64,
    /// The central-difference step.
    pub h: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            abs: 1e-6,
            rel: 1e-4,
            h: DEFAULT_H,
        }
    }
}

impl Tolerance {
    /// True when `analytic` and `numerical` agree within this tolerance. Two equal
    /// infinities agree; a NaN agrees with nothing.
    pub fn accepts(&self, analytic: f64, numerical: f64) -> bool {
        let (abs_error, _) = errors(analytic, numerical);
        abs_error.is_finite() && abs_error <= self.allowance(analytic, numerical)
    }

    /// `abs + rel · max(|a|, |n|)`.
    fn allowance(&self, analytic: f64, numerical: f64) -> f64 {
        self.abs + self.rel * analytic.abs().max(numerical.abs())
    }

    fn validate(&self) -> Result<()> {
        positive("gradcheck", "h", self.h)?;
        not_negative("gradcheck", "abs", self.abs)?;
        not_negative("gradcheck", "rel", self.rel)?;
        Ok(())
    }
}

/// The absolute and relative error between two entries: `|a − n|` and
/// `|a − n| / max(|a|, |n|)`, 0 when they are equal (also two equal infinities),
/// infinite when either is NaN or only one is infinite.
fn errors(analytic: f64, numerical: f64) -> (f64, f64) {
    if analytic == numerical {
        return (0.0, 0.0);
    }
    let abs_error = (analytic - numerical).abs();
    if !abs_error.is_finite() {
        return (f64::INFINITY, f64::INFINITY);
    }
    let scale = analytic.abs().max(numerical.abs());
    (abs_error, abs_error / scale)
}

/// The entry of a gradient check that is furthest outside (or least inside) its
/// tolerance.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstEntry {
    /// Which point (0 for [`gradcheck`]; the index into the points for
    /// [`check_function`]).
    pub point: usize,
    /// Which input of the function (0-based) the entry is a derivative with respect to
    /// (0 when [`wrt_seed`](WorstEntry::wrt_seed)).
    pub input: usize,
    /// The element's multi-index in that input, or in the seed (empty for a scalar).
    pub index: Vec<usize>,
    /// The input (or seed) element's value at that point.
    pub at: f64,
    /// In a second-order check ([`gradgradcheck`]), the first-derivative entry that was
    /// differentiated: which input's gradient, and the element's multi-index in it.
    /// `None` for an entry of a first derivative.
    pub of_gradient: Option<(usize, Vec<usize>)>,
    /// In a second-order check, true when the entry is a derivative with respect to the
    /// seed of the backward pass (the upstream gradient ∂L/∂y) rather than an input.
    pub wrt_seed: bool,
    /// The gradient entry the tape computed.
    pub analytic: f64,
    /// The central-difference estimate of the same entry.
    pub numerical: f64,
    /// `|analytic − numerical|`.
    pub abs_error: f64,
    /// `|analytic − numerical| / max(|analytic|, |numerical|)`.
    pub rel_error: f64,
}

/// The result of a gradient check: did every gradient entry agree with the numerical
/// one, how large were the errors, and which entry was the worst.
///
/// `Display` prints it as a short table. For the lecture's `Function2` with its
/// backward `y * 4`, checked at z = 2:
///
/// ```text
/// gradcheck function2: FAILED (1 of 1 entries outside the tolerance)
///   entries checked  1 (1 point)
///   max abs error    2.4000e1
///   max rel error    7.5000e-1
///   tolerance        |analytic - numerical| <= 1e-6 + 1e-4 * max(|analytic|, |numerical|), h = 1e-4
///   worst entry      point 0, input 0 (scalar), at 2
///     analytic       32
///     numerical      8.000000000008
/// ```
///
/// ```
/// use std::sync::Arc;
/// use tapegrad::check::check_function;
/// use tapegrad::{ScalarFunction, Tensor};
///
/// struct LectureFunction2;
/// impl ScalarFunction for LectureFunction2 {
///     fn name(&self) -> &str { "function2" }
///     fn value(&self, z: f64) -> f64 { 2.0 * z * z }
///     fn derivative(&self, z: f64) -> f64 { self.value(z) * 4.0 }
/// }
///
/// let report = check_function(&Arc::new(LectureFunction2), &[vec![Tensor::scalar(2.0)]])?;
/// let text = report.to_string();
/// let lines: Vec<&str> = text.lines().collect();
/// assert_eq!(lines[0], "gradcheck function2: FAILED (1 of 1 entries outside the tolerance)");
/// assert_eq!(lines[2], "  max abs error    2.4000e1");
/// assert_eq!(lines[5], "  worst entry      point 0, input 0 (scalar), at 2");
/// assert_eq!(lines[6], "    analytic       32");
/// assert!(lines[7].starts_with("    numerical      8.0000000000"));
/// assert_eq!((report.points, report.entries, report.failures), (1, 1, 1));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GradcheckReport {
    /// What was checked (the function's name for [`check_function`]).
    pub name: String,
    /// True when every entry is within the tolerance (and at least one was checked).
    pub passed: bool,
    /// How many points were checked.
    pub points: usize,
    /// How many gradient entries were compared (all inputs, all points).
    pub entries: usize,
    /// How many of them are outside the tolerance.
    pub failures: usize,
    /// The largest absolute error over all entries.
    pub max_abs_error: f64,
    /// The largest relative error over all entries. Entries near zero can have a large
    /// relative error and still pass on the absolute tolerance.
    pub max_rel_error: f64,
    /// The entry whose error is largest compared with what the tolerance allows there.
    pub worst: Option<WorstEntry>,
    /// The tolerance the entries were held to.
    pub tolerance: Tolerance,
    /// Error divided by allowance at the worst entry: above 1 means it failed.
    worst_ratio: f64,
    /// Made by [`gradgradcheck`].
    second_order: bool,
}

/// Where a compared entry sits: the variable it is a derivative with respect to, and
/// for a second derivative, the first-derivative entry that was differentiated.
struct Site<'a> {
    point: usize,
    input: usize,
    shape: &'a Shape,
    element: usize,
    at: f64,
    wrt_seed: bool,
    of_gradient: Option<(usize, &'a Shape, usize)>,
}

impl GradcheckReport {
    fn new(name: &str, tolerance: Tolerance) -> GradcheckReport {
        GradcheckReport {
            name: name.to_string(),
            passed: false,
            points: 0,
            entries: 0,
            failures: 0,
            max_abs_error: 0.0,
            max_rel_error: 0.0,
            worst: None,
            tolerance,
            worst_ratio: -1.0,
            second_order: false,
        }
    }

    /// The same report under another name (shown in its first line).
    pub fn named(mut self, name: impl Into<String>) -> GradcheckReport {
        self.name = name.into();
        self
    }

    /// Adds the comparison of one point's gradients.
    fn add_point(
        &mut self,
        point: usize,
        inputs: &[Tensor],
        analytic: &[Tensor],
        numerical: &[Tensor],
    ) {
        self.points += 1;
        for (input, ((x, a), n)) in inputs.iter().zip(analytic).zip(numerical).enumerate() {
            for (element, ((&at, &a), &n)) in
                x.data().iter().zip(a.data()).zip(n.data()).enumerate()
            {
                let site = Site {
                    point,
                    input,
                    shape: x.shape(),
                    element,
                    at,
                    wrt_seed: false,
                    of_gradient: None,
                };
                self.add_entry(&site, a, n);
            }
        }
    }

    /// Adds the comparison of one entry.
    fn add_entry(&mut self, site: &Site<'_>, analytic: f64, numerical: f64) {
        let (abs_error, rel_error) = errors(analytic, numerical);
        let allowance = self.tolerance.allowance(analytic, numerical);
        let ok = abs_error.is_finite() && abs_error <= allowance;
        let ratio = if abs_error == 0.0 {
            0.0
        } else if abs_error.is_finite() {
            abs_error / allowance
        } else {
            f64::INFINITY
        };
        self.entries += 1;
        self.failures += usize::from(!ok);
        self.max_abs_error = self.max_abs_error.max(abs_error);
        self.max_rel_error = self.max_rel_error.max(rel_error);
        if ratio > self.worst_ratio {
            self.worst_ratio = ratio;
            self.worst = Some(WorstEntry {
                point: site.point,
                input: site.input,
                index: unravel(site.element, site.shape),
                at: site.at,
                of_gradient: site
                    .of_gradient
                    .map(|(input, shape, element)| (input, unravel(element, shape))),
                wrt_seed: site.wrt_seed,
                analytic,
                numerical,
                abs_error,
                rel_error,
            });
        }
        self.passed = self.failures == 0 && self.entries > 0;
    }
}

/// The multi-index of row-major element `k` of `shape`.
fn unravel(mut k: usize, shape: &Shape) -> Vec<usize> {
    let mut index = vec![0; shape.rank()];
    for (slot, &d) in index.iter_mut().zip(shape.dims()).rev() {
        *slot = k % d;
        k /= d;
    }
    index
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed {
            "passed".to_string()
        } else if self.entries == 0 {
            "FAILED (nothing was checked)".to_string()
        } else {
            format!(
                "FAILED ({} of {} entries outside the tolerance)",
                self.failures, self.entries
            )
        };
        let check = if self.second_order {
            "gradgradcheck"
        } else {
            "gradcheck"
        };
        writeln!(f, "{check} {}: {verdict}", self.name)?;
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        writeln!(
            f,
            "  {:<16} {} ({})",
            "entries checked",
            self.entries,
            plural(self.points, "point")
        )?;
        writeln!(f, "  {:<16} {:.4e}", "max abs error", self.max_abs_error)?;
        writeln!(f, "  {:<16} {:.4e}", "max rel error", self.max_rel_error)?;
        let t = &self.tolerance;
        write!(
            f,
            "  {:<16} |analytic - numerical| <= {:e} + {:e} * max(|analytic|, |numerical|), h = {:e}",
            "tolerance", t.abs, t.rel, t.h
        )?;
        if let Some(w) = &self.worst {
            let element = |index: &[usize]| {
                if index.is_empty() {
                    "(scalar)".to_string()
                } else {
                    format!("element {index:?}")
                }
            };
            let wrt = if w.wrt_seed {
                format!("seed {}", element(&w.index))
            } else {
                format!("input {} {}", w.input, element(&w.index))
            };
            let entry = match &w.of_gradient {
                None => wrt,
                Some((input, index)) => {
                    format!("d(gradient of input {input} {}) / d({wrt})", element(index))
                }
            };
            writeln!(f)?;
            writeln!(
                f,
                "  {:<16} point {}, {entry}, at {}",
                "worst entry", w.point, w.at
            )?;
            writeln!(f, "    {:<14} {}", "analytic", w.analytic)?;
            write!(f, "    {:<14} {}", "numerical", w.numerical)?;
        }
        Ok(())
    }
}

/// Gives closure `f` the signature the checkers take, `for<'t> FnMut(&[Var<'t>]) ->
/// Result<Var<'t>>`, so that it can be kept in a variable and passed to [`gradcheck`]
/// or [`gradgradcheck`], as often as needed (by `&mut`). It returns
/// `f` unchanged: the bound on its argument is what makes rustc infer a closure that
/// works on a tape of any lifetime.
///
/// ```
/// use tapegrad::check::{closure, gradcheck, Tolerance};
/// use tapegrad::Tensor;
///
/// let mut f = closure(|x| Ok((x[0] * x[1]).tanh()));
/// let inputs = [Tensor::vector([0.5, -1.0]), Tensor::vector([2.0, 0.25])];
/// let tolerance = Tolerance::default();
/// assert!(gradcheck(&mut f, &inputs, &tolerance)?.passed);
/// // The same closure, checked again at other points.
/// let others = [Tensor::vector([1.5, 0.0]), Tensor::vector([-0.5, 3.0])];
/// assert!(gradcheck(&mut f, &others, &tolerance)?.passed);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn closure<F>(f: F) -> F
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    f
}

/// Checks the tape's gradient of `f` at `inputs` against the numerical gradient.
///
/// `f` receives one variable per input tensor and returns the output variable. It is
/// recorded once on a tape and backpropagated; then it is evaluated `2n` more times (n
/// = the number of input elements) for central differences with step `tolerance.h`.
///
/// A scalar output is checked as it is. For an output with several elements, both
/// gradients are taken of `L = Σₖ wₖ·yₖ` with fixed weights `wₖ` between 0.5 and 1.5
/// that differ from element to element, so every element's backward rule is exercised
/// and a rule that mixes elements up (a softmax, a transpose) cannot hide behind a
/// plain sum.
///
/// Write `f` as a closure in the call itself, as a `fn`, or, to keep a closure in a
/// variable, through [`closure`]: a closure stored in a variable otherwise does not
/// get the signature `for<'t> FnMut(&[Var<'t>]) -> …` that lets it run on the
/// checker's tapes (rustc then reports "lifetime may not live long enough" or "one
/// type is more general than the other").
///
/// Errors: a tolerance with a non-positive or non-finite `h`, or a negative `abs`/`rel`;
/// any error `f` returns; an output whose shape changes between evaluations.
///
/// ```
/// use tapegrad::check::{gradcheck, Tolerance};
/// use tapegrad::{Tensor, Var};
///
/// // A matrix input and a non-scalar output.
/// let x = Tensor::matrix(&[[0.5, -1.0], [2.0, 0.25]])?;
/// let report = gradcheck(|x| Ok(x[0].sigmoid() * x[0]), &[x], &Tolerance::default())?;
/// assert!(report.passed, "{report}");
/// assert_eq!(report.entries, 4);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn gradcheck<F>(mut f: F, inputs: &[Tensor], tolerance: &Tolerance) -> Result<GradcheckReport>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    tolerance.validate()?;
    let mut report = GradcheckReport::new("function", *tolerance);
    check_point(&mut f, inputs, 0, &mut report)?;
    Ok(report)
}

/// Checks the second derivatives of `f` at `inputs`: the gradient that
/// [`Var::grad_graph`] records (as variables, so that it can be differentiated again)
/// and the derivatives of that gradient, against central differences.
///
/// With `L = Σₖ sₖ·yₖ` for the output `y = f(x)` (the seed `s` holds the weights of
/// [`gradcheck`]; it is 1 for a scalar output), the recorded backward pass is a function
/// `G(x, s) = ∂L/∂x`. The check compares
///
/// 1. every entry of `G`, as recorded, with the central difference of `L` (the
///    first-order check of [`gradcheck`], through the recorded rules), and
/// 2. every entry of the Jacobian of `G` with respect to every input element **and every
///    seed element** — the second derivatives ∂²L/∂xᵢ∂xⱼ and the mixed ∂²L/∂xᵢ∂sₖ =
///    ∂yₖ/∂xᵢ — with central differences of `G` computed by the plain backward pass.
///
/// The derivatives of `G` come from one backward sweep over the recorded graph per
/// entry of `G`. With n input elements and m output elements that is n + n·(n + m)
/// entries; `f` is recorded 2n times for part 1 and 2(n + m) times for part 2.
///
/// The central differences of part 2 are of exact first derivatives, so they are much
/// more precise than those of part 1 for the same `h`; the truncation error is still
/// of order h²·f⁗ and grows near poles (at `ln`'s check point x = 0.01 it is just under
/// the default tolerance's allowance).
///
/// Errors: those of [`gradcheck`], and [`Error::NotTwiceDifferentiable`] when `f` uses
/// a user function that has no [`backward_graph`](Function::backward_graph).
///
/// ```
/// use std::sync::Arc;
/// use tapegrad::check::{gradgradcheck, Tolerance};
/// use tapegrad::{Error, Result, ScalarFunction, Tensor, Var};
///
/// // A vector input and a vector output: 2 + 2·(2 + 2) entries.
/// let x = Tensor::vector([0.5, -1.5]);
/// let report = gradgradcheck(|x| Ok(x[0].sigmoid() * x[0]), &[x.clone()], &Tolerance::default())?;
/// assert!(report.passed, "{report}");
/// assert_eq!(report.entries, 10);
///
/// // A cube whose recorded derivative has the right values but is cut off from x
/// // (`detach`): its second derivative comes out 0 instead of 6x, and the check fails.
/// struct Cube;
/// impl ScalarFunction for Cube {
///     fn name(&self) -> &str { "cube" }
///     fn value(&self, x: f64) -> f64 { x * x * x }
///     fn derivative(&self, x: f64) -> f64 { 3.0 * x * x }
///     fn derivative_graph<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
///         Ok((x * x * 3.0).detach())
///     }
/// }
/// let cube = Arc::new(Cube);
/// let report = gradgradcheck(|x| x[0].apply(&cube), &[Tensor::scalar(2.0)], &Tolerance::default())?;
/// assert!(!report.passed);
/// let worst = report.worst.as_ref().unwrap();
/// assert_eq!((worst.analytic, worst.of_gradient.clone()), (0.0, Some((0, vec![]))));
/// assert!((worst.numerical - 12.0).abs() < 1e-6);
/// assert!(report.to_string().starts_with("gradgradcheck function: FAILED"));
///
/// // A function without a recorded rule cannot be checked twice.
/// struct Opaque;
/// impl ScalarFunction for Opaque {
///     fn name(&self) -> &str { "opaque" }
///     fn value(&self, x: f64) -> f64 { x * x }
///     fn derivative(&self, x: f64) -> f64 { 2.0 * x }
/// }
/// let opaque = Arc::new(Opaque);
/// let err = gradgradcheck(|x| x[0].apply(&opaque), &[x], &Tolerance::default()).unwrap_err();
/// assert!(matches!(err, Error::NotTwiceDifferentiable { .. }));
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn gradgradcheck<F>(
    mut f: F,
    inputs: &[Tensor],
    tolerance: &Tolerance,
) -> Result<GradcheckReport>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    tolerance.validate()?;
    let mut report = GradcheckReport::new("function", *tolerance);
    report.second_order = true;
    check_point_twice(&mut f, inputs, 0, &mut report)?;
    Ok(report)
}

/// Compares the recorded first derivatives of `f`, and their derivatives, with central
/// differences at one point.
fn check_point_twice<F>(
    f: &mut F,
    inputs: &[Tensor],
    point: usize,
    report: &mut GradcheckReport,
) -> Result<()>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    let h = report.tolerance.h;
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|x| tape.tensor(x)).collect();
    let y = f(&vars)?;
    let weights = output_weights(&y.shape());
    let seed = tape.tensor(&weights);
    let first = y.grad_graph_with(seed, &vars)?;

    // 1. The recorded first derivatives against central differences of L.
    let recorded: Vec<Tensor> = first.iter().map(Var::value).collect();
    let numerical = weighted_numerical_gradients(f, inputs, &weights, h)?;
    report.add_point(point, inputs, &recorded, &numerical);

    // 2. Row r of the Jacobian of G with respect to z = (x, s): one sweep from entry r.
    let mut columns: Vec<Tensor> = inputs.to_vec();
    columns.push(weights);
    let wrt: Vec<Var<'_>> = vars.iter().copied().chain([seed]).collect();
    let width: usize = columns.iter().map(Tensor::numel).sum();
    let mut analytic = Vec::new();
    let mut sweep = Gradients::new();
    let mut row = vec![0.0; width];
    for g in &first {
        let mut unit = Tensor::zeros(g.shape());
        for k in 0..unit.numel() {
            unit.data_mut()[k] = 1.0;
            g.backward_with_into(&unit, &mut sweep)?;
            unit.data_mut()[k] = 0.0;
            let mut at = 0;
            for (z, v) in columns.iter().zip(&wrt) {
                sweep.wrt_into(*v, &mut row[at..at + z.numel()])?;
                at += z.numel();
            }
            analytic.extend_from_slice(&row);
        }
    }

    // Column c of the same Jacobian: central differences of the plain backward pass.
    let mut probe = Tape::new();
    let mut backward = |z: &[Tensor]| -> Result<Vec<f64>> {
        probe.clear();
        let (xs, seed) = z.split_at(inputs.len());
        let vars: Vec<Var<'_>> = xs.iter().map(|x| probe.tensor(x)).collect();
        let grads = f(&vars)?.backward_with(&seed[0])?;
        let mut g = Vec::new();
        for v in &vars {
            g.extend_from_slice(grads.wrt(*v)?.data());
        }
        Ok(g)
    };
    let mut column = 0;
    for c in 0..columns.len() {
        for k in 0..columns[c].numel() {
            let saved = columns[c].data()[k];
            columns[c].data_mut()[k] = saved + h;
            let plus = backward(&columns);
            columns[c].data_mut()[k] = saved - h;
            let minus = backward(&columns);
            columns[c].data_mut()[k] = saved;
            let (plus, minus) = (plus?, minus?);
            let wrt_seed = c == inputs.len();
            let mut r = 0;
            for (a, x) in inputs.iter().enumerate() {
                for element in 0..x.numel() {
                    let site = Site {
                        point,
                        input: if wrt_seed { 0 } else { c },
                        shape: columns[c].shape(),
                        element: k,
                        at: saved,
                        wrt_seed,
                        of_gradient: Some((a, x.shape(), element)),
                    };
                    let numerical = (plus[r] - minus[r]) / (2.0 * h);
                    report.add_entry(&site, analytic[r * width + column], numerical);
                    r += 1;
                }
            }
            column += 1;
        }
    }
    Ok(())
}

/// Checks a user [`Function`] (or
/// [`ScalarFunction`](crate::ScalarFunction)) on its own, at each of `points` (one
/// tensor per input each), with the default [`Tolerance`]. With no points, the
/// function's own [`check_at`](crate::Function::check_at) points are used.
///
/// The lecture's `Function2` (y = 2z²) with the backward it printed, `y * 4`, instead of
/// `4 * z`:
///
/// ```
/// use std::sync::Arc;
/// use tapegrad::check::check_function;
/// use tapegrad::{ScalarFunction, Tensor};
///
/// struct LectureFunction2;
/// impl ScalarFunction for LectureFunction2 {
///     fn name(&self) -> &str { "function2" }
///     fn value(&self, z: f64) -> f64 { 2.0 * z * z }
///     fn derivative(&self, z: f64) -> f64 { self.value(z) * 4.0 } // should be 4z
/// }
///
/// let report = check_function(&Arc::new(LectureFunction2), &[vec![Tensor::scalar(2.0)]])?;
/// assert!(!report.passed);
/// let worst = report.worst.as_ref().unwrap();
/// assert_eq!(worst.analytic, 32.0);
/// assert!((worst.numerical - 8.0).abs() < 1e-6);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn check_function(
    function: &impl AsFunction,
    points: &[Vec<Tensor>],
) -> Result<GradcheckReport> {
    check_function_with(function, points, &Tolerance::default())
}

/// [`check_function`] with a chosen [`Tolerance`].
///
/// Errors: no points given and none from `check_at`; a point with no tensors; the
/// errors of [`gradcheck`] (including a point whose tensors do not fit the function).
pub fn check_function_with(
    function: &impl AsFunction,
    points: &[Vec<Tensor>],
    tolerance: &Tolerance,
) -> Result<GradcheckReport> {
    tolerance.validate()?;
    let function = function.as_function();
    let own_points;
    let points = if points.is_empty() {
        own_points = function.check_at();
        &own_points[..]
    } else {
        points
    };
    if points.is_empty() {
        return Err(Error::Invalid {
            op: "check_function".into(),
            reason: format!(
                "{} has no check_at points; give the points to check at",
                function.name()
            ),
        });
    }
    let mut report = GradcheckReport::new(function.name(), *tolerance);
    for (p, inputs) in points.iter().enumerate() {
        check_point(&mut |xs| apply(&function, xs), inputs, p, &mut report)?;
    }
    Ok(report)
}

/// Records `function` on the tape of `inputs`.
fn apply<'t>(function: &Arc<dyn Function>, inputs: &[Var<'t>]) -> Result<Var<'t>> {
    match inputs.first() {
        Some(x) => x.tape().apply(function, inputs),
        None => Err(Error::Invalid {
            op: "check_function".into(),
            reason: format!(
                "a point for {} holds no tensors; give one per input",
                function.name()
            ),
        }),
    }
}

/// Compares the tape's and the numerical gradient of `f` at one point.
fn check_point<F>(
    f: &mut F,
    inputs: &[Tensor],
    point: usize,
    report: &mut GradcheckReport,
) -> Result<()>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|x| tape.tensor(x)).collect();
    let y = f(&vars)?;
    let weights = output_weights(&y.shape());
    let grads = y.backward_with(&weights)?;
    let analytic = vars
        .iter()
        .map(|&x| grads.wrt(x))
        .collect::<Result<Vec<_>>>()?;
    let numerical = weighted_numerical_gradients(f, inputs, &weights, report.tolerance.h)?;
    report.add_point(point, inputs, &analytic, &numerical);
    Ok(())
}

/// Central differences of `L = Σₖ wₖ·yₖ` for `y = f(inputs)`.
fn weighted_numerical_gradients<F>(
    f: &mut F,
    inputs: &[Tensor],
    weights: &Tensor,
    h: f64,
) -> Result<Vec<Tensor>>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    let mut probe = Tape::new();
    let mut xs = inputs.to_vec();
    numerical_gradients(
        |xs| {
            probe.clear();
            let vars: Vec<Var<'_>> = xs.iter().map(|x| probe.constant_tensor(x)).collect();
            weighted_sum(&f(&vars)?.value(), weights)
        },
        &mut xs,
        h,
    )
}

/// The weights of `L = Σ wₖ·yₖ`: 1 for a one-element output, else fixed numbers in
/// [0.5, 1.5] that differ between neighbouring elements.
fn output_weights(shape: &Shape) -> Tensor {
    let mut w = Tensor::ones(shape.clone());
    if w.numel() > 1 {
        for (k, v) in w.data_mut().iter_mut().enumerate() {
            *v = 0.5 + ((3 * k + 1) % 7) as f64 / 6.0;
        }
    }
    w
}

fn weighted_sum(y: &Tensor, weights: &Tensor) -> Result<f64> {
    if y.shape() != weights.shape() {
        return Err(Error::ShapeMismatch {
            op: "gradcheck (the output's shape changed between evaluations)".into(),
            left: weights.shape().clone(),
            right: y.shape().clone(),
        });
    }
    Ok(y.data()
        .iter()
        .zip(weights.data())
        .map(|(y, w)| y * w)
        .sum())
}

/// Checks that a parameter is a finite number above zero.
pub(crate) fn positive(op: &str, name: &'static str, value: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(Error::InvalidParameter {
            op: op.to_string(),
            name,
            value,
        });
    }
    if value <= 0.0 {
        return Err(Error::Invalid {
            op: op.to_string(),
            reason: format!("{name} must be above zero, got {value}"),
        });
    }
    Ok(value)
}

fn not_negative(op: &str, name: &'static str, value: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(Error::InvalidParameter {
            op: op.to_string(),
            name,
            value,
        });
    }
    if value < 0.0 {
        return Err(Error::Invalid {
            op: op.to_string(),
            reason: format!("{name} must not be negative, got {value}"),
        });
    }
    Ok(value)
}
