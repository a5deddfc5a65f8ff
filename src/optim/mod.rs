//! Optimizers: gradient descent on plain functions, and the optimizers that update network parameters.
//!
//! Every network optimizer implements [`Optimizer`]: given a [`Params`] store and the
//! [`ParamGradients`] of one backward pass, [`step`](Optimizer::step) updates every
//! parameter in place. With g the gradient of a parameter w and η the learning rate:
//!
//! | optimizer | update | matches |
//! |---|---|---|
//! | [`Sgd`] | w ← w − η·g | `torch.optim.SGD` |
//! | [`Momentum`] | b ← μ·b + g; w ← w − η·b | `torch.optim.SGD(momentum=μ)` |
//! | [`Nesterov`] | b ← μ·b + g; w ← w − η·(g + μ·b) | `torch.optim.SGD(momentum=μ, nesterov=True)` |
//! | [`AdaGrad`] | h ← h + g²; w ← w − η·g/(√h + ε) | `torch.optim.Adagrad` |
//! | [`RmsProp`] | h ← ρ·h + (1 − ρ)·g²; w ← w − η·g/(√h + ε) | `torch.optim.RMSprop` |
//! | [`Adam`] | m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; w ← w − η·m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ) | `torch.optim.Adam` |
//!
//! Each follows the formulation and the default hyper-parameters (μ, ρ, β₁, β₂, ε) of
//! the PyTorch optimizer it names, with PyTorch's other options (weight decay,
//! dampening, …) at their defaults, so a run can be reproduced in either. In particular
//! the momentum buffer b holds gradients, not steps: the learning rate multiplies it
//! when it is applied, so a new learning rate takes effect at once, also on the
//! momentum gathered before. `Default::default()` gives each one its usual learning
//! rate: 0.001 for Adam, 0.01 for the others (PyTorch's SGD, alone, defaults to 0.001:
//! give the rate explicitly when comparing). Every hyper-parameter has a getter (`mu`,
//! `beta1`, `beta2`, `rho`, `eps`), and a [`Scheduler`] changes the learning rate from
//! epoch to epoch.
//!
//! An optimizer's state (momentum buffers, accumulated squares, moments, Adam's step
//! count) can be read with [`Optimizer::state`] as named tensors, saved like parameters
//! (with [`Params::save`] or `Params::save_safetensors`), and given to a fresh optimizer
//! with [`Optimizer::load_state`]: training then resumes exactly where it stopped.
//!
//! A [frozen](Params::freeze) parameter is skipped by every optimizer: its value and
//! its state stay as they are, as PyTorch skips a parameter without a gradient.
//!
//! An optimizer with state sizes it on its first step and reuses it afterwards,
//! allocating nothing. A step checks everything first — hyper-parameters, that the
//! gradients have the names, order and shapes of the parameters, and that they are
//! finite (NaN or ±∞ in a gradient is [`Error::NonFiniteGradient`], naming the
//! parameter) — and on any error changes neither the parameters nor its state.
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
pub mod schedule;
pub mod sgd;

pub use adagrad::AdaGrad;
pub use adam::Adam;
pub use descent::{
    gradient_descent, Descent, Divergence, GradientDescent, GradientMethod, Outcome,
};
pub use momentum::Momentum;
pub use nesterov::Nesterov;
pub use rmsprop::RmsProp;
pub use schedule::{Schedule, Scheduler};
pub use sgd::Sgd;

use crate::error::{Error, Result};
use crate::nn::{ParamGradients, Params};
use crate::parallel::update_in_pieces;
use crate::shape::Shape;
use crate::tensor::Tensor;

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

    /// Updates every trainable parameter from its gradient, leaving a
    /// [frozen](Params::freeze) one and its state as they are. An error, changing
    /// nothing, for an invalid hyper-parameter, gradients that do not match the
    /// parameters, or parameters whose shapes changed since the state was sized (call
    /// [`reset`](Optimizer::reset) when moving to another network).
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()>;

    /// Forgets the state (momentum buffers, moments, the step count).
    fn reset(&mut self);

    /// The optimizer's state as named tensors, to save with the parameters and give
    /// back with [`load_state`](Optimizer::load_state).
    ///
    /// Each buffer is called `{parameter}.{buffer}` and has its parameter's shape, in
    /// the parameters' order, with PyTorch's names for the buffers: `momentum_buffer`
    /// (Momentum, Nesterov), `sum` (AdaGrad), `square_avg` (RMSProp), `exp_avg` and
    /// `exp_avg_sq` (Adam, which also stores its step count as the scalar `step`).
    /// Empty for an optimizer without state, or before its first step. The default
    /// method returns an empty store.
    ///
    /// ```
    /// use tapegrad::nn::{ParamGradients, Params};
    /// use tapegrad::optim::{Momentum, Optimizer};
    /// use tapegrad::Tensor;
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::vector([0.0, 0.0]))?;
    /// let grads = ParamGradients::from_pairs([("w", Tensor::vector([1.0, -2.0]))])?;
    /// let mut opt = Momentum::new(0.1);
    /// opt.step(&mut params, &grads)?;
    /// let state = opt.state();
    /// assert_eq!(state.get("w.momentum_buffer")?, &Tensor::vector([1.0, -2.0]));
    ///
    /// // A fresh optimizer given the state takes the same next step.
    /// let mut resumed = Momentum::new(0.1);
    /// resumed.load_state(&state)?;
    /// let mut copy = params.clone();
    /// opt.step(&mut params, &grads)?;
    /// resumed.step(&mut copy, &grads)?;
    /// assert_eq!(copy, params);
    /// assert_eq!(params.get("w")?.data()[0], -0.1 - 0.1 * 1.9);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    fn state(&self) -> Params {
        Params::new()
    }

    /// Replaces the state with `state`, as written by [`state`](Optimizer::state); an
    /// empty store forgets it (as [`reset`](Optimizer::reset)). An error, changing
    /// nothing, for a missing, unexpected, misshapen or non-finite entry. The next step
    /// checks that the state was saved for parameters of the same names, order and
    /// shapes, and otherwise refuses, changing nothing. The default method accepts only
    /// an empty store.
    fn load_state(&mut self, state: &Params) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                op: format!("{} load_state", self.name()),
                reason: "this optimizer has no state to load".into(),
            })
        }
    }
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
    fn state(&self) -> Params {
        (**self).state()
    }
    fn load_state(&mut self, state: &Params) -> Result<()> {
        (**self).load_state(state)
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

/// `name shape, name shape, …`, for error messages.
fn describe<'a>(entries: impl Iterator<Item = (&'a str, &'a Shape)>) -> String {
    entries
        .map(|(name, shape)| format!("{name} {shape}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-parameter state buffers (one flat vector per parameter), sized on first use,
/// with the name and shape of the parameter each was sized for.
#[derive(Clone, Debug, Default)]
struct Slots {
    buffers: Vec<Vec<f64>>,
    layout: Vec<(String, Shape)>,
    /// Set when the buffers were loaded: the next step checks the names and shapes of
    /// the parameters too, not only their sizes, once.
    loaded: bool,
}

impl Slots {
    /// Sizes the buffers to `params` (zeros) if they are empty; an error if they were
    /// sized for parameters of other shapes.
    fn prepare(&mut self, op: &str, params: &Params) -> Result<()> {
        if self.buffers.is_empty() {
            self.buffers = params.iter().map(|(_, p)| vec![0.0; p.numel()]).collect();
            self.layout = params
                .iter()
                .map(|(name, p)| (name.to_string(), p.shape().clone()))
                .collect();
            return Ok(());
        }
        let fits = self.buffers.len() == params.len()
            && self
                .buffers
                .iter()
                .zip(params.iter())
                .all(|(b, (_, p))| b.len() == p.numel());
        if fits && self.loaded {
            let same = self
                .layout
                .iter()
                .zip(params.iter())
                .all(|((name, shape), (n, p))| name == n && shape == p.shape());
            if !same {
                return Err(Error::Invalid {
                    op: op.to_string(),
                    reason: format!(
                        "the loaded state is for the parameters {}, not {}",
                        describe(self.layout.iter().map(|(n, s)| (n.as_str(), s))),
                        describe(params.iter().map(|(n, p)| (n, p.shape()))),
                    ),
                });
            }
            self.loaded = false;
        }
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
        self.layout.clear();
    }
}

/// The state of `slots`, given as `(buffer name, slots)` sized for the same
/// parameters, as a store: parameter by parameter, `{parameter}.{buffer}` with the
/// parameter's shape; then `step`, if given, as a scalar.
fn export_state(slots: &[(&str, &Slots)], step: Option<u64>) -> Params {
    let mut state = Params::new();
    if let Some((_, first)) = slots.first() {
        for (i, (name, shape)) in first.layout.iter().enumerate() {
            for (key, s) in slots {
                let value = Tensor::new(s.buffers[i].clone(), shape.clone())
                    .expect("a buffer is sized to its parameter's shape");
                state
                    .insert(format!("{name}.{key}"), value)
                    .expect("parameter names are distinct and without whitespace");
            }
        }
    }
    // Before the first step there is no state at all, not even a step count.
    if let Some(step) = step.filter(|_| !state.is_empty()) {
        state
            .insert("step", Tensor::scalar(step as f64))
            .expect("`step` is a valid name, used once");
    }
    state
}

/// The buffers named `keys` (and the step count, if `with_step`) read back from a
/// store written by [`export_state`]. Nothing is changed here: the caller swaps the
/// result in.
fn import_state<const N: usize>(
    op: &str,
    state: &Params,
    keys: [&str; N],
    with_step: bool,
) -> Result<([Slots; N], u64)> {
    let op = format!("{op} load_state");
    let bad = |reason: String| Error::Invalid {
        op: op.clone(),
        reason,
    };
    let mut entries: Vec<(&str, &Tensor)> = state.iter().collect();
    let mut step = 0;
    if with_step {
        if let Some(at) = entries.iter().position(|(name, _)| *name == "step") {
            let (_, value) = entries.remove(at);
            let t = value.item().ok().filter(|t| {
                value.shape().is_scalar() && *t >= 0.0 && t.fract() == 0.0 && *t < 2f64.powi(53)
            });
            step = t.ok_or_else(|| {
                bad(format!(
                    "`step` must be a scalar whole number ≥ 0, got {value:?}"
                ))
            })? as u64;
        } else if !entries.is_empty() {
            return Err(bad("the state has buffers but no `step`".into()));
        }
        if entries.is_empty() && step != 0 {
            return Err(bad(format!(
                "`step` is {step} but the state has no buffers"
            )));
        }
    }
    if !entries.len().is_multiple_of(N.max(1)) {
        return Err(bad(format!(
            "expected {} per parameter, got {} entries",
            keys.join(", "),
            entries.len()
        )));
    }
    let mut slots: [Slots; N] = std::array::from_fn(|_| Slots::default());
    for group in entries.chunks(N.max(1)) {
        let mut parameter: Option<(&str, &Shape)> = None;
        for ((entry, value), (key, slot)) in group.iter().zip(keys.iter().zip(&mut slots)) {
            let name = entry
                .strip_suffix(key)
                .and_then(|n| n.strip_suffix('.'))
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "expected an entry `{{parameter}}.{key}`, got {entry:?}"
                    ))
                })?;
            match parameter {
                None => parameter = Some((name, value.shape())),
                Some((first, shape)) if first == name && shape == value.shape() => {}
                Some((first, shape)) => {
                    return Err(bad(format!(
                        "{entry:?} of shape {} does not go with {first:?} of shape {shape}",
                        value.shape()
                    )))
                }
            }
            if value.data().iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("{entry:?} holds a value that is not finite")));
            }
            slot.loaded = true;
            slot.buffers.push(value.data().to_vec());
            slot.layout.push((name.to_string(), value.shape().clone()));
        }
    }
    Ok((slots, step))
}

/// Calls `update(w, g, state)` for every trainable parameter, with its gradient and
/// the parameter's buffer from each of `slots`, all as flat slices of equal length; a
/// frozen parameter and its buffers are left as they are. `update` works position by
/// position, so a large parameter is updated in pieces on two threads (see
/// `update_in_pieces`).
fn for_each_parameter<const N: usize>(
    params: &mut Params,
    grads: &ParamGradients,
    slots: [&mut Slots; N],
    update: impl Fn(&mut [f64], &[f64], [&mut [f64]; N]) + Sync,
) {
    let mut buffers = slots.map(|s| s.buffers.iter_mut());
    for ((w, trainable), g) in params.values_mut().zip(grads.views()) {
        let state = buffers
            .each_mut()
            .map(|b| b.next().expect("sized by prepare").as_mut_slice());
        if trainable {
            update_in_pieces(w, g.data(), state, &update);
        }
    }
}
