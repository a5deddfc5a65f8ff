//! Gradient descent with momentum.

use super::{
    check_decay, check_gradients, check_learning_rate, for_each_parameter, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// Momentum: a velocity that remembers past steps,
/// `v ← μ·v − η·g`, `w ← w + v`, with v starting at 0. Default μ = 0.9.
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Momentum, Optimizer};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::scalar(0.0))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::scalar(1.0))])?;
/// let mut opt = Momentum::new(0.1).momentum(0.5);
/// opt.step(&mut params, &grads)?; // v = −0.1
/// opt.step(&mut params, &grads)?; // v = −0.05 − 0.1 = −0.15
/// assert!((params.get("w")?.item()? - -0.25).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Momentum {
    lr: f64,
    momentum: f64,
    velocity: Slots,
}

impl Momentum {
    /// Momentum with learning rate `lr` and μ = 0.9.
    pub fn new(lr: f64) -> Momentum {
        Momentum {
            lr,
            momentum: 0.9,
            velocity: Slots::default(),
        }
    }

    /// Sets μ (checked at each step: in [0, 1)).
    pub fn momentum(mut self, momentum: f64) -> Momentum {
        self.momentum = momentum;
        self
    }
}

impl Default for Momentum {
    /// Learning rate 0.01 and the default hyper-parameters.
    fn default() -> Self {
        Momentum::new(0.01)
    }
}

impl Optimizer for Momentum {
    fn name(&self) -> &str {
        "momentum"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        check_learning_rate("momentum", self.lr)?;
        check_decay("momentum", "momentum", self.momentum)?;
        check_gradients("momentum", params, grads)?;
        self.velocity.prepare("momentum", params)?;
        let (lr, mu) = (self.lr, self.momentum);
        for_each_parameter(params, grads, [&mut self.velocity], |w, g, [v]| {
            for ((w, g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v - lr * g;
                *w += *v;
            }
        });
        Ok(())
    }
    fn reset(&mut self) {
        self.velocity.clear();
    }
}
