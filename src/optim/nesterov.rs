//! Nesterov accelerated gradient.

use super::{
    check_decay, check_gradients, check_learning_rate, export_state, for_each_parameter,
    import_state, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// Nesterov momentum: the momentum is applied as if the gradient had been taken one
/// momentum step ahead, in the form that needs only the gradient at w:
/// `b ← μ·b + g`, `w ← w − η·(g + μ·b)`, with the new b and b starting at 0.
/// Default μ = 0.9.
///
/// This is PyTorch's `torch.optim.SGD(params, lr=η, momentum=μ, nesterov=True)`
/// (dampening 0, no weight decay). As in [`Momentum`](super::Momentum), the buffer
/// holds gradients, so a new learning rate applies at once to all of it.
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Nesterov, Optimizer};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::scalar(0.0))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::scalar(1.0))])?;
/// let mut opt = Nesterov::new(0.1).momentum(0.5);
/// assert_eq!(opt.mu(), 0.5);
/// opt.step(&mut params, &grads)?;
/// // b = 1, w = −0.1·(1 + 0.5·1)
/// assert!((params.get("w")?.item()? - -0.15).abs() < 1e-15);
/// // At η = 0.01: b = 1.5, w = −0.15 − 0.01·(1 + 0.75)
/// opt.set_learning_rate(0.01);
/// opt.step(&mut params, &grads)?;
/// assert!((params.get("w")?.item()? - -0.1675).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Nesterov {
    lr: f64,
    momentum: f64,
    buffer: Slots,
}

impl Nesterov {
    /// Nesterov momentum with learning rate `lr` and μ = 0.9.
    pub fn new(lr: f64) -> Nesterov {
        Nesterov {
            lr,
            momentum: 0.9,
            buffer: Slots::default(),
        }
    }

    /// Sets μ (checked at each step: in [0, 1)).
    pub fn momentum(mut self, momentum: f64) -> Nesterov {
        self.momentum = momentum;
        self
    }

    /// μ, the momentum factor.
    pub fn mu(&self) -> f64 {
        self.momentum
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
        self.buffer.prepare("nesterov", params)?;
        let (lr, mu) = (self.lr, self.momentum);
        for_each_parameter(params, grads, [&mut self.buffer], |w, g, [b]| {
            for ((w, g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
                *b = mu * *b + g;
                *w -= lr * (g + mu * *b);
            }
        });
        Ok(())
    }
    fn reset(&mut self) {
        self.buffer.clear();
    }
    fn state(&self) -> Params {
        export_state(&[("momentum_buffer", &self.buffer)], None)
    }
    fn load_state(&mut self, state: &Params) -> Result<()> {
        let ([buffer], _) = import_state("nesterov", state, ["momentum_buffer"], false)?;
        self.buffer = buffer;
        Ok(())
    }
}
