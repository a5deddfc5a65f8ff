//! Plain stochastic gradient descent.

use super::{check_gradients, check_learning_rate, for_each_parameter, Optimizer};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// Gradient descent, `w ← w − η·g`: the lecture's update rule `w⁺ = w − η·∂E/∂w`.
/// Stochastic, mini-batch or full-batch depending only on the batches it is fed.
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Optimizer, Sgd};
/// use tapegrad::Tensor;
/// // The lecture's worked example: W2 = 0.5, ∂C/∂W2 = −0.12264304766891344, η = 1.
/// let mut params = Params::new();
/// params.insert("w2", Tensor::scalar(0.5))?;
/// let grads = ParamGradients::from_pairs([("w2", Tensor::scalar(-0.12264304766891344))])?;
/// Sgd::new(1.0).step(&mut params, &grads)?;
/// assert_eq!(params.get("w2")?.item()?, 0.6226430476689134);
/// assert!(Sgd::new(-1.0).step(&mut params, &grads).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    lr: f64,
}

impl Sgd {
    /// Gradient descent with learning rate `lr` (checked at each step: finite, ≥ 0).
    pub fn new(lr: f64) -> Sgd {
        Sgd { lr }
    }
}

impl Default for Sgd {
    /// Learning rate 0.01 and the default hyper-parameters.
    fn default() -> Self {
        Sgd::new(0.01)
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &str {
        "sgd"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        check_learning_rate("sgd", self.lr)?;
        check_gradients("sgd", params, grads)?;
        let lr = self.lr;
        for_each_parameter(params, grads, [], |w, g, []| {
            for (w, g) in w.iter_mut().zip(g) {
                *w -= lr * g;
            }
        });
        Ok(())
    }
    fn reset(&mut self) {}
}
