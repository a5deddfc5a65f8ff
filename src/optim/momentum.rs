//! Gradient descent with momentum.

use super::{
    check_decay, check_gradients, check_learning_rate, export_state, for_each_parameter,
    import_state, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// Momentum: a buffer that sums past gradients, decayed by μ,
/// `b ← μ·b + g`, `w ← w − η·b`, with b starting at 0. Default μ = 0.9.
///
/// This is PyTorch's `torch.optim.SGD(params, lr=η, momentum=μ)` (dampening 0, no weight
/// decay). The buffer holds gradients, not steps, so the learning rate in force at a
/// step scales all of the momentum applied then: after
/// [`set_learning_rate`](Optimizer::set_learning_rate) the old momentum moves at the new
/// rate. (The form `v ← μ·v − η·g`, `w ← w + v` takes the same steps while η stays
/// constant, but keeps each old η in v.)
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Momentum, Optimizer};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::scalar(0.0))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::scalar(1.0))])?;
/// let mut opt = Momentum::new(0.1).momentum(0.5);
/// assert_eq!(opt.mu(), 0.5);
/// opt.step(&mut params, &grads)?; // b = 1, w = −0.1
/// opt.step(&mut params, &grads)?; // b = 0.5 + 1 = 1.5, w = −0.1 − 0.15
/// assert!((params.get("w")?.item()? - -0.25).abs() < 1e-15);
/// // A new learning rate applies to the whole buffer: b = 1.75, w = −0.25 − 0.01·1.75.
/// opt.set_learning_rate(0.01);
/// opt.step(&mut params, &grads)?;
/// assert!((params.get("w")?.item()? - -0.2675).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Momentum {
    lr: f64,
    momentum: f64,
    buffer: Slots,
}

impl Momentum {
    /// Momentum with learning rate `lr` and μ = 0.9.
    pub fn new(lr: f64) -> Momentum {
        Momentum {
            lr,
            momentum: 0.9,
            buffer: Slots::default(),
        }
    }

    /// Sets μ (checked at each step: in [0, 1)).
    pub fn momentum(mut self, momentum: f64) -> Momentum {
        self.momentum = momentum;
        self
    }

    /// μ, the momentum factor.
    pub fn mu(&self) -> f64 {
        self.momentum
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
        self.buffer.prepare("momentum", params)?;
        let (lr, mu) = (self.lr, self.momentum);
        for_each_parameter(params, grads, [&mut self.buffer], |w, g, [b]| {
            for ((w, g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
                *b = mu * *b + g;
                *w -= lr * *b;
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
        let ([buffer], _) = import_state("momentum", state, ["momentum_buffer"], false)?;
        self.buffer = buffer;
        Ok(())
    }
}
