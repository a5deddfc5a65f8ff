//! Gradient descent on plain functions: `x ← x − lr·∇f(x)`, keeping the whole path.
//!
//! This is the lecture's `gradient_descent(f, init_x, lr, step_num)`: minimise a scalar
//! function of one tensor from a starting point. The gradient comes from the tape
//! ([`GradientMethod::Tape`]) or, the lecture's way, from central differences
//! ([`GradientMethod::Numerical`]). A learning rate that is too large does not end in a
//! silent NaN: the run stops with [`Outcome::Diverged`], saying at which step and why,
//! and every point and loss handed back is a finite number.
//!
//! ```
//! use tapegrad::optim::descent::{gradient_descent, Outcome};
//! use tapegrad::Tensor;
//!
//! // f(x0, x1) = x0² + x1² from (−3, 4) with lr 0.1: each step multiplies x by 0.8.
//! let run = gradient_descent(|x| Ok(x.powi(2).sum()), &Tensor::vector([-3.0, 4.0]), 0.1, 100)?;
//! assert_eq!(run.outcome, Outcome::Completed);
//! assert!((run.path[1].data()[0] - -2.4).abs() < 1e-15);
//! assert!(run.point().data().iter().all(|v| v.abs() < 1e-9));
//!
//! // lr 10 multiplies x by −19 each step: reported, not a NaN.
//! let run = gradient_descent(|x| Ok(x.powi(2).sum()), &Tensor::vector([-3.0, 4.0]), 10.0, 100)?;
//! assert!(matches!(run.outcome, Outcome::Diverged { step: 5, .. }));
//! assert!(run.losses.iter().all(|l| l.is_finite()));
//! # Ok::<(), tapegrad::Error>(())
//! ```

use crate::backward::Gradients;
use crate::check::{numerical_gradient, positive};
use crate::error::{Error, Result};
use crate::tape::Tape;
use crate::tensor::Tensor;
use crate::var::Var;
use std::fmt;

/// Where the gradient of each step comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradientMethod {
    /// One backward pass over the tape: exact, one recording per step.
    Tape,
    /// Central differences with step `h`, as the lecture's `numerical_gradient` (two
    /// evaluations of the function per element per step).
    Numerical {
        /// The central-difference step; the lecture uses 1e-4
        /// ([`DEFAULT_H`](crate::check::DEFAULT_H)).
        h: f64,
    },
}

/// Why a run was stopped as diverged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Divergence {
    /// The loss at a point is infinite or NaN.
    NonFiniteLoss,
    /// The loss is finite but an entry of its gradient is not.
    NonFiniteGradient,
    /// The loss grew this many steps in a row.
    LossGrew {
        /// How many steps in a row.
        steps: usize,
    },
}

/// How a run of gradient descent ended. `Display` says it as a sentence:
///
/// ```
/// use tapegrad::optim::descent::{Divergence, Outcome};
/// let outcome = Outcome::Diverged { step: 5, value: 1.5e14, reason: Divergence::LossGrew { steps: 5 } };
/// assert_eq!(
///     outcome.to_string(),
///     "diverged at step 5: the loss grew 5 steps in a row, to 1.5e14; lower the learning rate"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Every step was taken.
    Completed,
    /// The run was stopped at `step` (the index of the point where the problem showed):
    /// `value` is the number that stopped it — the grown loss, or the infinite or NaN
    /// loss or gradient entry. That number is reported here and nowhere else: the path
    /// and the losses of the run hold only finite numbers.
    Diverged {
        /// The step at which the run stopped.
        step: usize,
        /// The number that stopped it.
        value: f64,
        /// What was wrong with it.
        reason: Divergence,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => write!(f, "completed"),
            Outcome::Diverged {
                step,
                value,
                reason,
            } => {
                write!(f, "diverged at step {step}: ")?;
                match reason {
                    Divergence::NonFiniteLoss => write!(f, "the loss is {value}")?,
                    Divergence::NonFiniteGradient => {
                        write!(f, "the gradient holds {value}")?;
                    }
                    Divergence::LossGrew { steps } => {
                        write!(f, "the loss grew {steps} steps in a row, to {value:e}")?;
                    }
                }
                write!(f, "; lower the learning rate")
            }
        }
    }
}

/// A run of gradient descent: the path it took, the loss at each point, how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Descent {
    /// The points visited, the starting point first: `path[k]` is the point after k
    /// steps. Only points whose loss is finite are kept.
    pub path: Vec<Tensor>,
    /// `losses[k]` is the loss at `path[k]`.
    pub losses: Vec<f64>,
    /// Whether every step was taken or the run diverged.
    pub outcome: Outcome,
}

impl Descent {
    /// The last point reached (the starting point if no step was taken).
    pub fn point(&self) -> &Tensor {
        // The starting point is always on the path: a run whose first loss is not
        // finite is an error, not a `Descent`.
        &self.path[self.path.len() - 1]
    }

    /// The loss at [`point`](Descent::point).
    pub fn loss(&self) -> f64 {
        self.losses[self.losses.len() - 1]
    }

    /// True when the run was stopped as diverged.
    pub fn diverged(&self) -> bool {
        matches!(self.outcome, Outcome::Diverged { .. })
    }
}

/// The settings of a gradient-descent run; [`run`](GradientDescent::run) it on a
/// function.
///
/// The defaults are the lecture's (`lr = 0.01`, 100 steps), with the tape's gradient and
/// a run stopped as diverged when the loss grows 5 steps in a row.
///
/// ```
/// use tapegrad::check::DEFAULT_H;
/// use tapegrad::optim::descent::{GradientDescent, GradientMethod};
/// use tapegrad::Tensor;
///
/// // The lecture's way: the gradient by central differences.
/// let descent = GradientDescent {
///     lr: 0.1,
///     gradient: GradientMethod::Numerical { h: DEFAULT_H },
///     ..GradientDescent::default()
/// };
/// let run = descent.run(|x| Ok(x.powi(2).sum()), &Tensor::vector([-3.0, 4.0]))?;
/// assert!((run.path[2].data()[1] - 4.0 * 0.8 * 0.8).abs() < 1e-10);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradientDescent {
    /// The learning rate: each step moves by `lr` times the gradient.
    pub lr: f64,
    /// How many steps to take.
    pub steps: usize,
    /// Where the gradient comes from.
    pub gradient: GradientMethod,
    /// Stop as diverged when the loss grew this many steps in a row; 0 never stops for
    /// growth (a non-finite loss or gradient still stops the run).
    pub patience: usize,
}

impl Default for GradientDescent {
    fn default() -> Self {
        GradientDescent {
            lr: 0.01,
            steps: 100,
            gradient: GradientMethod::Tape,
            patience: 5,
        }
    }
}

/// Gradient descent from `init` with learning rate `lr` for `steps` steps, the gradient
/// from the tape, stopped as diverged after 5 steps of growing loss: a shorthand for
/// [`GradientDescent::run`].
///
/// `f` records the loss of a point `x` with tape ops and returns it; it must be a
/// scalar. Write it as a closure in the call itself or as a `fn`
/// (`fn f(x: Var<'_>) -> Result<Var<'_>>`): a closure stored in a variable first does
/// not get the `for<'t>` signature the run needs. The run's [`path`](Descent::path)
/// holds `steps + 1` points when it completes.
pub fn gradient_descent<F>(f: F, init: &Tensor, lr: f64, steps: usize) -> Result<Descent>
where
    F: for<'t> FnMut(Var<'t>) -> Result<Var<'t>>,
{
    GradientDescent {
        lr,
        steps,
        ..GradientDescent::default()
    }
    .run(f, init)
}

impl GradientDescent {
    /// Minimises `f` from `init`: `x ← x − lr·∇f(x)`, `steps` times, or until the run
    /// diverges.
    ///
    /// `f` records the loss of a point `x` with tape ops (it is called once per step with
    /// the tape's gradient, `2·numel + 1` times with the numerical one).
    ///
    /// Errors: a learning rate that is not finite; `h ≤ 0` or not finite; a starting
    /// point holding a non-finite number or whose loss is not finite; a loss that is not
    /// a scalar; any error `f` returns. Divergence after the start is not an error: it
    /// is the run's [`Outcome`].
    pub fn run<F>(&self, mut f: F, init: &Tensor) -> Result<Descent>
    where
        F: for<'t> FnMut(Var<'t>) -> Result<Var<'t>>,
    {
        if !self.lr.is_finite() {
            return Err(Error::InvalidParameter {
                op: "gradient_descent".into(),
                name: "lr",
                value: self.lr,
            });
        }
        if let GradientMethod::Numerical { h } = self.gradient {
            positive("gradient_descent", "h", h)?;
        }
        if let Some(v) = init.data().iter().find(|v| !v.is_finite()) {
            return Err(Error::Invalid {
                op: "gradient_descent".into(),
                reason: format!("the starting point holds {v}, not a finite number"),
            });
        }

        let mut tape = Tape::new();
        let mut grads = Gradients::new();
        let mut x = init.clone();
        let mut gradient = Tensor::zeros(x.shape().clone());
        let mut path = Vec::with_capacity(self.steps + 1);
        let mut losses = Vec::with_capacity(self.steps + 1);
        let mut grew = 0;
        let mut step = 0;
        let outcome = loop {
            let more = step < self.steps;
            let loss = self.evaluate(&mut f, &mut tape, &mut grads, &mut x, &mut gradient, more)?;
            if !loss.is_finite() {
                if step == 0 {
                    return Err(Error::Invalid {
                        op: "gradient_descent".into(),
                        reason: format!("the loss at the starting point is {loss}"),
                    });
                }
                break diverged(step, loss, Divergence::NonFiniteLoss);
            }
            grew = match losses.last() {
                Some(&last) if loss > last => grew + 1,
                _ => 0,
            };
            path.push(x.clone());
            losses.push(loss);
            if self.patience > 0 && grew >= self.patience {
                break diverged(step, loss, Divergence::LossGrew { steps: grew });
            }
            if !more {
                break Outcome::Completed;
            }
            if let Some(&g) = gradient.data().iter().find(|g| !g.is_finite()) {
                break diverged(step, g, Divergence::NonFiniteGradient);
            }
            for (x, g) in x.data_mut().iter_mut().zip(gradient.data()) {
                *x -= self.lr * g;
            }
            step += 1;
        };
        Ok(Descent {
            path,
            losses,
            outcome,
        })
    }

    /// The loss at `x`, and its gradient into `gradient` when `with_gradient`.
    fn evaluate<F>(
        &self,
        f: &mut F,
        tape: &mut Tape,
        grads: &mut Gradients,
        x: &mut Tensor,
        gradient: &mut Tensor,
        with_gradient: bool,
    ) -> Result<f64>
    where
        F: for<'t> FnMut(Var<'t>) -> Result<Var<'t>>,
    {
        match self.gradient {
            GradientMethod::Tape => {
                tape.clear();
                let xv = tape.tensor(x);
                let y = f(xv)?;
                let loss = y.item()?;
                if with_gradient && loss.is_finite() {
                    y.backward_into(grads)?;
                    grads.wrt_into(xv, gradient.data_mut())?;
                }
                Ok(loss)
            }
            GradientMethod::Numerical { h } => {
                let mut loss_at = |x: &Tensor| -> Result<f64> {
                    tape.clear();
                    f(tape.constant_tensor(x))?.item()
                };
                let loss = loss_at(x)?;
                if with_gradient && loss.is_finite() {
                    *gradient = numerical_gradient(&mut loss_at, x, h)?;
                }
                Ok(loss)
            }
        }
    }
}

fn diverged(step: usize, value: f64, reason: Divergence) -> Outcome {
    Outcome::Diverged {
        step,
        value,
        reason,
    }
}
