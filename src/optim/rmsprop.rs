//! RMSProp: per-weight learning rates from a moving average of squared gradients.

use super::{
    check_decay, check_epsilon, check_gradients, check_learning_rate, export_state,
    for_each_parameter, import_state, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// RMSProp: `h ← ρ·h + (1 − ρ)·g²`, `w ← w − η·g/(√h + ε)`, with h starting at 0.
/// Unlike AdaGrad, old gradients fade, so steps do not shrink for ever. Defaults
/// ρ = 0.99, ε = 1e-8.
///
/// This is PyTorch's `torch.optim.RMSprop(params, lr=η, alpha=ρ, eps=ε)` (not centered,
/// no momentum, no weight decay), defaults included; PyTorch calls ρ `alpha`.
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Optimizer, RmsProp};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::scalar(0.0))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::scalar(3.0))])?;
/// RmsProp::new(0.01).decay(0.9).step(&mut params, &grads)?;
/// // h = 0.1·9 = 0.9; w = −0.01·3/√0.9
/// assert!((params.get("w")?.item()? - -0.03 / 0.9f64.sqrt()).abs() < 1e-9);
/// assert_eq!((RmsProp::default().rho(), RmsProp::default().eps()), (0.99, 1e-8));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RmsProp {
    lr: f64,
    decay: f64,
    epsilon: f64,
    squares: Slots,
}

impl RmsProp {
    /// RMSProp with learning rate `lr`, ρ = 0.99 and ε = 1e-8.
    pub fn new(lr: f64) -> RmsProp {
        RmsProp {
            lr,
            decay: 0.99,
            epsilon: 1e-8,
            squares: Slots::default(),
        }
    }

    /// Sets ρ, the decay of the moving average (checked at each step: in [0, 1)).
    pub fn decay(mut self, decay: f64) -> RmsProp {
        self.decay = decay;
        self
    }

    /// Sets ε (checked at each step: finite, > 0).
    pub fn epsilon(mut self, epsilon: f64) -> RmsProp {
        self.epsilon = epsilon;
        self
    }

    /// ρ, the decay of the moving average of squared gradients.
    pub fn rho(&self) -> f64 {
        self.decay
    }

    /// ε, added to √h to keep the division finite.
    pub fn eps(&self) -> f64 {
        self.epsilon
    }
}

impl Default for RmsProp {
    /// Learning rate 0.01 and the default hyper-parameters.
    fn default() -> Self {
        RmsProp::new(0.01)
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &str {
        "rmsprop"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        check_learning_rate("rmsprop", self.lr)?;
        check_decay("rmsprop", "decay", self.decay)?;
        check_epsilon("rmsprop", self.epsilon)?;
        check_gradients("rmsprop", params, grads)?;
        self.squares.prepare("rmsprop", params)?;
        let (lr, rho, eps) = (self.lr, self.decay, self.epsilon);
        for_each_parameter(params, grads, [&mut self.squares], |w, g, [h]| {
            for ((w, g), h) in w.iter_mut().zip(g).zip(h.iter_mut()) {
                *h = rho * *h + (1.0 - rho) * g * g;
                *w -= lr * g / (h.sqrt() + eps);
            }
        });
        Ok(())
    }
    fn reset(&mut self) {
        self.squares.clear();
    }
    fn state(&self) -> Params {
        export_state(&[("square_avg", &self.squares)], None)
    }
    fn load_state(&mut self, state: &Params) -> Result<()> {
        let ([squares], _) = import_state("rmsprop", state, ["square_avg"], false)?;
        self.squares = squares;
        Ok(())
    }
}
