//! Nesterov accelerated gradient.

use super::{
    check_decay, check_gradients, check_learning_rate, for_each_parameter, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// Nesterov momentum: the velocity is applied as if the gradient had been taken one
/// momentum step ahead. In the form that needs only the gradient at w (as PyTorch's
/// `nesterov=True`): `v ← μ·v − η·g`, `w ← w + μ·v − η·g`, with the new v and v
/// starting at 0. Default μ = 0.9.
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Nesterov, Optimizer};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::scalar(0.0))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::scalar(1.0))])?;
/// Nesterov::new(0.1).momentum(0.5).step(&mut params, &grads)?;
/// // v = −0.1, w = 0.5·(−0.1) − 0.1
/// assert!((params.get("w")?.item()? - -0.15).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Nesterov {
    lr: f64,
    momentum: f64,
    velocity: Slots,
}

impl Nesterov {
    /// Nesterov momentum with learning rate `lr` and μ = 0.9.
    pub fn new(lr: f64) -> Nesterov {
        Nesterov {
            lr,
            momentum: 0.9,
            velocity: Slots::default(),
        }
    }

    /// Sets μ (checked at each step: in [0, 1)).
    pub fn momentum(mut self, momentum: f64) -> Nesterov {
        self.momentum = momentum;
        self
    }
}

impl Default for Nesterov {
    /// Learning rate 0.01 and the default hyper-parameters.
    fn default() -> Self {
        Nesterov::new(0.01)
    }
}

impl Optimizer for Nesterov {
    fn name(&self) -> &str {
        "nesterov"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        check_learning_rate("nesterov", self.lr)?;
        check_decay("nesterov", "momentum", self.momentum)?;
        check_gradients("nesterov", params, grads)?;
        self.velocity.prepare("nesterov", params)?;
        let (lr, mu) = (self.lr, self.momentum);
        for_each_parameter(params, grads, [&mut self.velocity], |w, g, [v]| {
            for ((w, g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v - lr * g;
                *w += mu * *v - lr * g;
            }
        });
        Ok(())
    }
    fn reset(&mut self) {
        self.velocity.clear();
    }
}
