//! AdaGrad: per-weight learning rates from the sum of past squared gradients.

use super::{
    check_epsilon, check_gradients, check_learning_rate, export_state, for_each_parameter,
    import_state, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// AdaGrad: `h ← h + g²`, `w ← w − η·g/(√h + ε)`, with h starting at 0. Weights with
/// large past gradients take smaller steps. Default ε = 1e-10.
///
/// This is PyTorch's `torch.optim.Adagrad(params, lr=η, eps=ε)` (no learning-rate
/// decay, no weight decay, the sum starting at 0), defaults included.
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{AdaGrad, Optimizer};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::vector([0.0, 0.0]))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::vector([2.0, -0.5]))])?;
/// AdaGrad::new(0.1).step(&mut params, &grads)?;
/// // First step: g/√(g²) = sign(g), so every weight moves by η.
/// let w = params.get("w")?.data();
/// assert!((w[0] - -0.1).abs() < 1e-10 && (w[1] - 0.1).abs() < 1e-10);
/// assert_eq!(AdaGrad::default().eps(), 1e-10);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct AdaGrad {
    lr: f64,
    epsilon: f64,
    squares: Slots,
}

impl AdaGrad {
    /// AdaGrad with learning rate `lr` and ε = 1e-10.
    pub fn new(lr: f64) -> AdaGrad {
        AdaGrad {
            lr,
            epsilon: 1e-10,
            squares: Slots::default(),
        }
    }

    /// Sets ε (checked at each step: finite, > 0).
    pub fn epsilon(mut self, epsilon: f64) -> AdaGrad {
        self.epsilon = epsilon;
        self
    }

    /// ε, added to √h to keep the division finite.
    pub fn eps(&self) -> f64 {
        self.epsilon
    }
}

impl Default for AdaGrad {
    /// Learning rate 0.01 and the default hyper-parameters.
    fn default() -> Self {
        AdaGrad::new(0.01)
    }
}

impl Optimizer for AdaGrad {
    fn name(&self) -> &str {
        "adagrad"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        check_learning_rate("adagrad", self.lr)?;
        check_epsilon("adagrad", self.epsilon)?;
        check_gradients("adagrad", params, grads)?;
        self.squares.prepare("adagrad", params)?;
        let (lr, eps) = (self.lr, self.epsilon);
        for_each_parameter(params, grads, [&mut self.squares], |w, g, [h]| {
            for ((w, g), h) in w.iter_mut().zip(g).zip(h.iter_mut()) {
                *h += g * g;
                *w -= lr * g / (h.sqrt() + eps);
            }
        });
        Ok(())
    }
    fn reset(&mut self) {
        self.squares.clear();
    }
    fn state(&self) -> Params {
        export_state(&[("sum", &self.squares)], None)
    }
    fn load_state(&mut self, state: &Params) -> Result<()> {
        let ([squares], _) = import_state("adagrad", state, ["sum"], false)?;
        self.squares = squares;
        Ok(())
    }
}
