//! Derivatives of functions of tensors, first and second order: [`grad`], [`hessian`],
//! [`hvp`] (Hessian-vector products) and [`jacobian`].
//!
//! Each takes the function as a closure over tape variables, as
//! [`gradcheck`](crate::check::gradcheck) does: `f` receives one variable per input
//! tensor and returns its output, and is recorded once on a fresh tape at the given
//! point. Where a result is a matrix, its columns run over the input elements in order:
//! input by input, each row-major.
//!
//! Second derivatives are reverse over reverse: [`Var::grad_graph`] records the backward
//! pass as tape ops, and the plain backward pass then differentiates that recording. A
//! Hessian-vector product is one such pass, so it costs a small constant times one
//! gradient whatever the number of inputs; a dense Hessian is one pass per input
//! element. Every built-in op can be differentiated twice; a user
//! [`Function`](crate::Function) needs [`backward_graph`](crate::Function::backward_graph)
//! (a [`ScalarFunction`](crate::ScalarFunction) needs
//! [`derivative_graph`](crate::ScalarFunction::derivative_graph)), or [`hessian`] and
//! [`hvp`] return [`Error::NotTwiceDifferentiable`].
//!
//! The Hessian of the Rosenbrock function `(1 − x0)² + 100(x1 − x0²)²` at its minimum:
//!
//! ```
//! use tapegrad::higher::{grad, hessian};
//! use tapegrad::{Result, Tensor, Var};
//!
//! fn rosenbrock<'t>(x: &[Var<'t>]) -> Result<Var<'t>> {
//!     let (x0, x1) = (x[0], x[1]);
//!     Ok((1.0 - x0).powi(2) + 100.0 * (x1 - x0.powi(2)).powi(2))
//! }
//!
//! let at = [Tensor::scalar(1.0), Tensor::scalar(1.0)];
//! let g = grad(rosenbrock, &at)?;
//! assert_eq!((g[0].item()?, g[1].item()?), (0.0, 0.0));
//! let h = hessian(rosenbrock, &at)?;
//! assert_eq!(h, Tensor::matrix(&[[802.0, -400.0], [-400.0, 200.0]])?);
//! # Ok::<(), tapegrad::Error>(())
//! ```

use crate::backward::Gradients;
use crate::error::{Error, Result};
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::Var;

/// Records `f` at `inputs` on `tape`: the input variables and the output. With
/// `scalar`, the output must have one element.
fn record<'t, F>(
    tape: &'t Tape,
    f: &mut F,
    inputs: &[Tensor],
    op: &str,
    scalar: bool,
) -> Result<(Vec<Var<'t>>, Var<'t>)>
where
    F: for<'s> FnMut(&[Var<'s>]) -> Result<Var<'s>>,
{
    if inputs.is_empty() {
        return Err(Error::Invalid {
            op: op.to_string(),
            reason: "no inputs were given; give one tensor per input of the function".into(),
        });
    }
    let vars: Vec<Var<'t>> = inputs.iter().map(|x| tape.tensor(x)).collect();
    let y = f(&vars)?;
    if scalar && y.shape().numel() != 1 {
        return Err(Error::NotScalar {
            op: op.to_string(),
            shape: y.shape(),
        });
    }
    Ok((vars, y))
}

/// Copies the gradient of every input, from one backward pass, into `row` (laid out
/// input by input).
fn fill_row(grads: &Gradients, vars: &[Var<'_>], inputs: &[Tensor], row: &mut [f64]) -> Result<()> {
    let mut at = 0;
    for (x, input) in vars.iter().zip(inputs) {
        let n = input.numel();
        grads.wrt_into(*x, &mut row[at..at + n])?;
        at += n;
    }
    Ok(())
}

/// The gradient of a scalar function `f` at `inputs`: one tensor per input, shaped like
/// it. One recording and one backward pass.
///
/// Write `f` as a closure in the call itself or as a `fn` (see
/// [`gradcheck`](crate::check::gradcheck) for why). Errors: no inputs; an output with
/// more than one element ([`Error::NotScalar`]); any error `f` returns.
///
/// ```
/// use tapegrad::higher::grad;
/// use tapegrad::Tensor;
///
/// // f(x0, x1) = x0² + x1² at (−3, 4): (2x0, 2x1).
/// let g = grad(|x| Ok(x[0].powi(2).sum()), &[Tensor::vector([-3.0, 4.0])])?;
/// assert_eq!(g[0], Tensor::vector([-6.0, 8.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn grad<F>(mut f: F, inputs: &[Tensor]) -> Result<Vec<Tensor>>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let (vars, y) = record(&tape, &mut f, inputs, "grad", true)?;
    let grads = y.backward()?;
    vars.iter().map(|&x| grads.wrt(x)).collect()
}

/// The Hessian of a scalar function `f` at `inputs`: the dense, symmetric `[n, n]`
/// matrix of second derivatives ∂²f/∂zᵢ∂zⱼ, where z runs over the n input elements
/// (input by input, each row-major).
///
/// The gradient is recorded once with [`Var::grad_graph`]; row i is then one backward
/// pass from the gradient's entry i. The two passes give ∂²f/∂zᵢ∂zⱼ and ∂²f/∂zⱼ∂zᵢ
/// separately, equal up to rounding wherever f is twice differentiable; the matrix
/// returned holds their mean, so it is exactly symmetric.
///
/// Errors: those of [`grad`], and [`Error::NotTwiceDifferentiable`] when `f` uses a
/// user function without a recorded backward rule.
///
/// ```
/// use tapegrad::higher::hessian;
/// use tapegrad::Tensor;
///
/// // f(x0, x1) = x0² + x1²: the Hessian is 2·I.
/// let h = hessian(|x| Ok(x[0].powi(2).sum()), &[Tensor::vector([-3.0, 4.0])])?;
/// assert_eq!(h, Tensor::matrix(&[[2.0, 0.0], [0.0, 2.0]])?);
///
/// // sin(x·y) over two scalars: [[−y² s, c − xy s], [c − xy s, −x² s]].
/// let h = hessian(|v| Ok((v[0] * v[1]).sin()), &[Tensor::scalar(0.5), Tensor::scalar(2.0)])?;
/// let (s, c) = (1f64.sin(), 1f64.cos());
/// assert!((h.data()[0] - -4.0 * s).abs() < 1e-15);
/// assert!((h.data()[1] - (c - s)).abs() < 1e-15);
/// assert_eq!(h.data()[1], h.data()[2]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn hessian<F>(mut f: F, inputs: &[Tensor]) -> Result<Tensor>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let (vars, y) = record(&tape, &mut f, inputs, "hessian", true)?;
    let first = y.grad_graph(&vars)?;
    let n: usize = inputs.iter().map(Tensor::numel).sum();
    let mut h = vec![0.0; n * n];
    let mut sweep = Gradients::new();
    let mut row = 0;
    for (g, input) in first.iter().zip(inputs) {
        let mut unit = Tensor::zeros(input.shape().clone());
        for k in 0..input.numel() {
            unit.data_mut()[k] = 1.0;
            g.backward_with_into(&unit, &mut sweep)?;
            unit.data_mut()[k] = 0.0;
            fill_row(&sweep, &vars, inputs, &mut h[row * n..(row + 1) * n])?;
            row += 1;
        }
    }
    for i in 0..n {
        for j in i + 1..n {
            let mean = 0.5 * (h[i * n + j] + h[j * n + i]);
            h[i * n + j] = mean;
            h[j * n + i] = mean;
        }
    }
    Tensor::new(h, [n, n])
}

/// The Hessian of a scalar function `f` at `inputs` times the vectors `vectors` (one
/// per input, shaped like it), without forming the Hessian: one tensor per input,
/// shaped like it.
///
/// Reverse over reverse: the gradient g is recorded with [`Var::grad_graph`], then one
/// backward pass from ⟨g, v⟩ gives ∇⟨g, v⟩ = H·v. That is one recording of `f`, one
/// recording of its backward pass and one backward pass over both: a small constant
/// times the cost of one gradient, whatever the number of inputs.
///
/// Errors: those of [`hessian`], and [`Error::Invalid`] when the vectors do not match
/// the inputs in number or shape.
///
/// ```
/// use tapegrad::higher::hvp;
/// use tapegrad::Tensor;
///
/// // f(x) = Σ xᵢ³: H = diag(6x), so H·v = 6x ⊙ v.
/// let x = Tensor::vector([1.0, -2.0, 0.5]);
/// let v = Tensor::vector([1.0, 1.0, 4.0]);
/// let hv = hvp(|x| Ok(x[0].powi(3).sum()), &[x], &[v])?;
/// assert_eq!(hv[0], Tensor::vector([6.0, -12.0, 12.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn hvp<F>(mut f: F, inputs: &[Tensor], vectors: &[Tensor]) -> Result<Vec<Tensor>>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    if vectors.len() != inputs.len() {
        return Err(Error::Invalid {
            op: "hvp".into(),
            reason: format!(
                "{} vectors were given for {} inputs; give one vector per input",
                vectors.len(),
                inputs.len()
            ),
        });
    }
    for (i, (x, v)) in inputs.iter().zip(vectors).enumerate() {
        if x.shape() != v.shape() {
            return Err(Error::Invalid {
                op: "hvp".into(),
                reason: format!(
                    "vector {i} has shape {} but input {i} has shape {}",
                    v.shape(),
                    x.shape()
                ),
            });
        }
    }
    let tape = Tape::new();
    let (vars, y) = record(&tape, &mut f, inputs, "hvp", true)?;
    let first = y.grad_graph(&vars)?;
    let mut dot: Option<Var<'_>> = None;
    for (g, v) in first.iter().zip(vectors) {
        let term = g.try_mul(tape.constant_tensor(v))?.sum();
        dot = Some(match dot {
            Some(d) => d.try_add(term)?,
            None => term,
        });
    }
    let Some(dot) = dot else {
        return Ok(Vec::new());
    };
    let grads = dot.backward()?;
    vars.iter().map(|&x| grads.wrt(x)).collect()
}

/// The Jacobian of a function `f` with any output at `inputs`: the `[m, n]` matrix
/// ∂yₖ/∂zⱼ for the m output elements (row-major) and the n input elements (input by
/// input, each row-major). One recording and m backward passes, one per output element.
///
/// Only first derivatives are taken, so any function works, user functions without a
/// recorded rule included. Errors: no inputs; any error `f` returns.
///
/// ```
/// use tapegrad::higher::jacobian;
/// use tapegrad::Tensor;
///
/// // y = x ⊙ x: J = diag(2x).
/// let j = jacobian(|x| Ok(x[0] * x[0]), &[Tensor::vector([1.0, 3.0])])?;
/// assert_eq!(j, Tensor::matrix(&[[2.0, 0.0], [0.0, 6.0]])?);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn jacobian<F>(mut f: F, inputs: &[Tensor]) -> Result<Tensor>
where
    F: for<'t> FnMut(&[Var<'t>]) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let (vars, y) = record(&tape, &mut f, inputs, "jacobian", false)?;
    let n: usize = inputs.iter().map(Tensor::numel).sum();
    let mut unit = Tensor::zeros(y.shape());
    let m = unit.numel();
    let mut j = vec![0.0; m * n];
    let mut sweep = Gradients::new();
    for k in 0..m {
        unit.data_mut()[k] = 1.0;
        y.backward_with_into(&unit, &mut sweep)?;
        unit.data_mut()[k] = 0.0;
        fill_row(&sweep, &vars, inputs, &mut j[k * n..(k + 1) * n])?;
    }
    Tensor::new(j, [m, n])
}
