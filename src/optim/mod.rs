//! Optimizers: gradient descent on plain functions, and the optimizers that update network parameters.
//!
//! Every network optimizer implements [`Optimizer`]: given a [`Params`] store and the
//! [`ParamGradients`] of one backward pass, [`step`](Optimizer::step) updates every
//! parameter in place. With g the gradient of a parameter w and η the learning rate:
//!
//! | optimizer | update |
//! |---|---|
//! | [`Sgd`] | w ← w − η·g |
//! | [`Momentum`] | v ← μ·v − η·g; w ← w + v |
//! | [`Nesterov`] | v ← μ·v − η·g; w ← w + μ·v − η·g |
//! | [`AdaGrad`] | h ← h + g²; w ← w − η·g/(√h + ε) |
//! | [`RmsProp`] | h ← ρ·h + (1 − ρ)·g²; w ← w − η·g/(√h + ε) |
//! | [`Adam`] | m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; w ← w − η·m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ) |
//!
//! `Default::default()` gives each one its usual learning rate: 0.001 for Adam, 0.01 for
//! the others.
//!
//! An optimizer with state (velocities, accumulated squares, moments) sizes it on its
//! first step and reuses it afterwards, allocating nothing. A step checks everything
//! first — hyper-parameters, that the gradients have the names, order and shapes of the
//! parameters, and that they are finite (NaN or ±∞ in a gradient is
//! [`Error::NonFiniteGradient`](crate::Error::NonFiniteGradient), naming the parameter)
//! — and on any error changes neither the parameters nor its state.
//!
//! ```
//! use tapegrad::nn::{ParamGradients, Params};
//! use tapegrad::optim::{Adam, Optimizer, Sgd};
//! use tapegrad::Tensor;
//!
//! let mut params = Params::new();
//! params.insert("w", Tensor::vector([1.0, -2.0]))?;
//! let grads = ParamGradients::from_pairs([("w", Tensor::vector([0.5, 4.0]))])?;
//! Sgd::new(0.1).step(&mut params, &grads)?;
//! assert_eq!(params.get("w")?, &Tensor::vector([0.95, -2.4]));
//!
//! // Adam's first step moves every weight by about η, whatever the gradient's scale.
//! let mut adam = Adam::new(0.01);
//! adam.step(&mut params, &grads)?;
//! let w = params.get("w")?.data();
//! assert!((w[0] - 0.94).abs() < 1e-9 && (w[1] - -2.41).abs() < 1e-9);
//! assert_eq!(Adam::default().learning_rate(), 0.001);
//! # Ok::<(), tapegrad::Error>(())
//! ```

pub mod adagrad;
pub mod adam;
pub mod descent;
pub mod momentum;
pub mod nesterov;
pub mod rmsprop;
pub mod sgd;

pub use adagrad::AdaGrad;
pub use adam::Adam;
pub use descent::{
    gradient_descent, Descent, Divergence, GradientDescent, GradientMethod, Outcome,
};
pub use momentum::Momentum;
pub use nesterov::Nesterov;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use crate::error::{Error, Result};
use crate::nn::{ParamGradients, Params};
use crate::ops::linalg::update_in_pieces;

/// Updates parameters from their gradients, one step at a time.
///
/// Object safe: a `Vec<Box<dyn Optimizer>>` can hold several kinds to compare.
pub trait Optimizer {
    /// A short lower-case name (`"sgd"`, `"adam"`, …).
    fn name(&self) -> &str;

    /// The learning rate η.
    fn learning_rate(&self) -> f64;

    /// Changes the learning rate (for schedules); checked at the next step.
    fn set_learning_rate(&mut self, lr: f64);

    /// Updates every parameter from its gradient. An error, changing nothing, for an
    /// invalid hyper-parameter, gradients that do not match the parameters, or
    /// parameters whose shapes changed since the state was sized (call
    /// [`reset`](Optimizer::reset) when moving to another network).
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()>;

    /// Forgets the state (velocities, moments, the step count).
    fn reset(&mut self);
}

impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn learning_rate(&self) -> f64 {
        (**self).learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) {
        (**self).set_learning_rate(lr)
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        (**self).step(params, grads)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
}

/// An error for optimizer `op` whose hyper-parameter `name` is `value`, not in `range`.
fn out_of_range(op: &str, name: &str, value: f64, range: &str) -> Error {
    Error::Invalid {
        op: op.to_string(),
        reason: format!("{name} must be {range}, got {value}"),
    }
}

/// Checks a learning rate: finite and ≥ 0.
fn check_learning_rate(op: &str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(out_of_range(op, "the learning rate", lr, "finite and ≥ 0"))
    }
}

/// Checks a decay factor (momentum, ρ, β): in [0, 1).
fn check_decay(op: &str, name: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(out_of_range(op, name, value, "in [0, 1)"))
    }
}

/// Checks ε: finite and > 0.
fn check_epsilon(op: &str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(out_of_range(op, "epsilon", eps, "finite and > 0"))
    }
}

/// Checks that `grads` has the names, order and shapes of `params`, and that every
/// gradient is finite.
fn check_gradients(op: &str, params: &Params, grads: &ParamGradients) -> Result<()> {
    if grads.matches(params) {
        grads.check_finite(op)
    } else {
        Err(Error::Invalid {
            op: op.to_string(),
            reason: format!(
                "the gradients ({}) do not match the parameters ({})",
                grads
                    .iter()
                    .map(|(n, g)| format!("{n} {}", g.shape()))
                    .collect::<Vec<_>>()
                    .join(", "),
                params
                    .iter()
                    .map(|(n, p)| format!("{n} {}", p.shape()))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        })
    }
}

/// Per-parameter state buffers (one flat vector per parameter), sized on first use.
#[derive(Clone, Debug, Default)]
struct Slots {
    buffers: Vec<Vec<f64>>,
}

impl Slots {
    /// Sizes the buffers to `params` (zeros) if they are empty; an error if they were
    /// sized for parameters of other shapes.
    fn prepare(&mut self, op: &str, params: &Params) -> Result<()> {
        if self.buffers.is_empty() {
            self.buffers = params.iter().map(|(_, p)| vec![0.0; p.numel()]).collect();
            return Ok(());
        }
        let fits = self.buffers.len() == params.len()
            && self
                .buffers
                .iter()
                .zip(params.iter())
                .all(|(b, (_, p))| b.len() == p.numel());
        if fits {
            Ok(())
        } else {
            Err(Error::Invalid {
                op: op.to_string(),
                reason:
                    "the parameters changed since the optimizer's state was sized; call reset()"
                        .into(),
            })
        }
    }

    fn clear(&mut self) {
        self.buffers.clear();
    }
}

/// Calls `update(w, g, state)` for every parameter, with its gradient and the
/// parameter's buffer from each of `slots`, all as flat slices of equal length.
/// `update` works position by position, so a large parameter is updated in pieces on
/// two threads (see `update_in_pieces`).
fn for_each_parameter<const N: usize>(
    params: &mut Params,
    grads: &ParamGradients,
    slots: [&mut Slots; N],
    update: impl Fn(&mut [f64], &[f64], [&mut [f64]; N]) + Sync,
) {
    let mut buffers = slots.map(|s| s.buffers.iter_mut());
    for (w, g) in params.values_mut().zip(grads.views()) {
        let state = buffers
            .each_mut()
            .map(|b| b.next().expect("sized by prepare").as_mut_slice());
        update_in_pieces(w, g.data(), state, &update);
    }
}
