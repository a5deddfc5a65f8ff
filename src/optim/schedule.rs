//! Learning-rate schedules: step decay, exponential decay and cosine annealing.
//!
//! A [`Scheduler`] is called by the training loop once per epoch: [`step`](Scheduler::step)
//! moves it to the next epoch and gives the optimizer that epoch's learning rate through
//! [`Optimizer::set_learning_rate`]. It works with any [`Optimizer`], and the rates are
//! computed as PyTorch's schedulers of the same name compute them, so a run can be
//! reproduced in either.

use super::Optimizer;
use crate::error::{Error, Result};

/// How the learning rate η changes with the epoch e = 0, 1, 2, …, from the initial
/// rate η₀.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Schedule {
    /// η₀ at every epoch.
    Constant,
    /// Step decay: multiplied by `gamma` every `every` epochs, η = η₀·γ^⌊e/every⌋, as
    /// PyTorch's `StepLR(step_size=every, gamma=γ)` (one product at a time, so the same
    /// rounding). `every` ≥ 1, `gamma` finite and ≥ 0.
    StepDecay {
        /// Epochs between two decays.
        every: usize,
        /// The factor of each decay.
        gamma: f64,
    },
    /// Exponential decay: η = η₀·γ^e, as PyTorch's `ExponentialLR(gamma=γ)` (one
    /// product per epoch). `gamma` finite and ≥ 0.
    Exponential {
        /// The factor of each epoch.
        gamma: f64,
    },
    /// Cosine annealing from η₀ down to `min` over `period` epochs:
    /// η = min + (η₀ − min)·(1 + cos(π·e/period))/2, the closed form of PyTorch's
    /// `CosineAnnealingLR(T_max=period, eta_min=min)`. Past `period` the cosine goes on
    /// and the rate climbs back towards η₀, as in PyTorch. `period` ≥ 1, `min` finite
    /// and ≥ 0.
    Cosine {
        /// Epochs from η₀ down to `min` (PyTorch's `T_max`).
        period: usize,
        /// The lowest rate (PyTorch's `eta_min`).
        min: f64,
    },
}

/// A learning-rate schedule with its current epoch, to call once per epoch.
///
/// ```
/// use tapegrad::data::{Batches, Batching, Dataset};
/// use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
/// use tapegrad::optim::{Optimizer, Schedule, Scheduler, Sgd};
/// use tapegrad::Tensor;
///
/// let x = Tensor::new(vec![-1.0, 0.0, 1.0, 2.0], [4, 1])?;
/// let data = Dataset::new(x.clone(), x.map(|x| 2.0 * x - 1.0))?;
/// let mut params = Params::new();
/// let net = Mlp::builder(1).layer(1, Activation::Identity).build(&mut params, &mut init::rng(0))?;
/// let mut batches = Batches::new(data.len(), Batching::Full, 0)?;
/// let (mut trainer, mut opt) = (Trainer::new(), Sgd::new(0.2));
/// // Halve the learning rate every 10 epochs.
/// let mut scheduler = Scheduler::new(opt.learning_rate(), Schedule::StepDecay { every: 10, gamma: 0.5 })?;
/// let mut losses = Vec::new();
/// for _ in 0..30 {
///     let history = trainer.fit(&mut params, &mut opt, &data, &mut batches, 1, |p, b| {
///         net.forward(p, b.inputs)?.try_mse(b.targets)
///     })?;
///     losses.push(history.last().unwrap());
///     scheduler.step(&mut opt);
/// }
/// assert_eq!(scheduler.epoch(), 30);
/// assert_eq!(opt.learning_rate(), 0.2 * 0.5 * 0.5 * 0.5);
/// assert_eq!(scheduler.learning_rate(15), 0.1);
/// assert!(losses[29] < 1e-3 * losses[0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduler {
    initial: f64,
    schedule: Schedule,
    epoch: usize,
}

impl Scheduler {
    /// A scheduler at epoch 0 that starts from the learning rate `initial` (give the
    /// optimizer's own, so epoch 0 trains at it). An error for a negative or non-finite
    /// rate or factor, or a period of 0.
    ///
    /// ```
    /// use tapegrad::optim::{Schedule, Scheduler};
    /// let cosine = Scheduler::new(0.1, Schedule::Cosine { period: 10, min: 0.001 })?;
    /// assert_eq!(cosine.learning_rate(0), 0.1);
    /// assert!((cosine.learning_rate(5) - 0.0505).abs() < 1e-15); // half way
    /// assert!((cosine.learning_rate(10) - 0.001).abs() < 1e-15);
    /// let exponential = Scheduler::new(0.1, Schedule::Exponential { gamma: 0.9 })?;
    /// assert_eq!(exponential.learning_rate(2), 0.1 * 0.9 * 0.9);
    /// assert!(Scheduler::new(0.1, Schedule::StepDecay { every: 0, gamma: 0.5 }).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn new(initial: f64, schedule: Schedule) -> Result<Scheduler> {
        let bad = |reason: String| Error::Invalid {
            op: "scheduler".into(),
            reason,
        };
        let rate = |name: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(bad(format!("{name} must be finite and ≥ 0, got {value}")))
            }
        };
        rate("the initial learning rate", initial)?;
        match schedule {
            Schedule::Constant => {}
            Schedule::StepDecay { every, gamma } => {
                if every == 0 {
                    return Err(bad("the step decay's `every` must be at least 1".into()));
                }
                rate("gamma", gamma)?;
            }
            Schedule::Exponential { gamma } => rate("gamma", gamma)?,
            Schedule::Cosine { period, min } => {
                if period == 0 {
                    return Err(bad("the cosine's period must be at least 1".into()));
                }
                rate("the cosine's minimum", min)?;
            }
        }
        Ok(Scheduler {
            initial,
            schedule,
            epoch: 0,
        })
    }

    /// The learning rate at `epoch`, whatever the current epoch.
    pub fn learning_rate(&self, epoch: usize) -> f64 {
        let decayed = |times: usize, gamma: f64| (0..times).fold(self.initial, |lr, _| lr * gamma);
        match self.schedule {
            Schedule::Constant => self.initial,
            Schedule::StepDecay { every, gamma } => decayed(epoch / every, gamma),
            Schedule::Exponential { gamma } => decayed(epoch, gamma),
            Schedule::Cosine { period, min } => {
                let angle = std::f64::consts::PI * epoch as f64 / period as f64;
                min + (self.initial - min) * (1.0 + libm::cos(angle)) / 2.0
            }
        }
    }

    /// The current epoch: how many times [`step`](Scheduler::step) was called, or the
    /// epoch last [set](Scheduler::set_epoch).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Moves to `epoch` (to resume a run) without touching an optimizer.
    pub fn set_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }

    /// Ends an epoch: moves to the next one and sets `optimizer`'s learning rate to its
    /// rate, which it returns.
    pub fn step<O: Optimizer + ?Sized>(&mut self, optimizer: &mut O) -> f64 {
        self.epoch += 1;
        let lr = self.learning_rate(self.epoch);
        optimizer.set_learning_rate(lr);
        lr
    }
}
