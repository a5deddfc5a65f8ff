//! Adam: momentum and RMSProp together, with bias correction.

use super::{
    check_decay, check_epsilon, check_gradients, check_learning_rate, export_state,
    for_each_parameter, import_state, Optimizer, Slots,
};
use crate::error::Result;
use crate::nn::{ParamGradients, Params};

/// Adam. At step t = 1, 2, …:
/// `m ← β₁·m + (1 − β₁)·g`, `v ← β₂·v + (1 − β₂)·g²`,
/// `m̂ = m/(1 − β₁ᵗ)`, `v̂ = v/(1 − β₂ᵗ)`, `w ← w − η·m̂/(√v̂ + ε)`,
/// with m and v starting at 0. Defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8 (η = 0.001 is
/// the usual choice).
///
/// This is PyTorch's `torch.optim.Adam(params, lr=η, betas=(β₁, β₂), eps=ε)` (no
/// weight decay, not AMSGrad), defaults included. One difference: t counts the steps
/// of the optimizer, where PyTorch counts them per parameter, so a parameter that was
/// [frozen](crate::nn::Params::freeze) for some steps and then unfrozen is corrected
/// with the optimizer's t (while frozen, its moments stay as they are).
///
/// ```
/// use tapegrad::nn::{ParamGradients, Params};
/// use tapegrad::optim::{Adam, Optimizer};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::scalar(1.0))?;
/// let grads = ParamGradients::from_pairs([("w", Tensor::scalar(-40.0))])?;
/// let mut adam = Adam::new(0.001);
/// adam.step(&mut params, &grads)?;
/// // m̂ = g and v̂ = g² after one step: w moves by η·g/(|g| + ε) ≈ η.
/// assert!((params.get("w")?.item()? - 1.001).abs() < 1e-12);
/// assert_eq!(adam.steps(), 1);
/// assert_eq!((adam.beta1(), adam.beta2(), adam.eps()), (0.9, 0.999, 1e-8));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    steps: u64,
    first: Slots,
    second: Slots,
}

impl Adam {
    /// Adam with learning rate `lr`, β₁ = 0.9, β₂ = 0.999 and ε = 1e-8.
    pub fn new(lr: f64) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            steps: 0,
            first: Slots::default(),
            second: Slots::default(),
        }
    }

    /// Sets β₁ and β₂, the decays of the two moments (checked at each step: in [0, 1)).
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Adam {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets ε (checked at each step: finite, > 0).
    pub fn epsilon(mut self, epsilon: f64) -> Adam {
        self.epsilon = epsilon;
        self
    }

    /// The number of steps taken since the last reset (t).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// β₁, the decay of the first moment (the mean of the gradients).
    pub fn beta1(&self) -> f64 {
        self.beta1
    }

    /// β₂, the decay of the second moment (the mean of the squared gradients).
    pub fn beta2(&self) -> f64 {
        self.beta2
    }

    /// ε, added to √v̂ to keep the division finite.
    pub fn eps(&self) -> f64 {
        self.epsilon
    }
}

impl Default for Adam {
    /// Learning rate 0.001 and the default hyper-parameters.
    fn default() -> Self {
        Adam::new(0.001)
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &str {
        "adam"
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn step(&mut self, params: &mut Params, grads: &ParamGradients) -> Result<()> {
        check_learning_rate("adam", self.lr)?;
        check_decay("adam", "beta1", self.beta1)?;
        check_decay("adam", "beta2", self.beta2)?;
        check_epsilon("adam", self.epsilon)?;
        check_gradients("adam", params, grads)?;
        // Size both buffers before touching either, so an error leaves no half state.
        let mut first = std::mem::take(&mut self.first);
        let mut second = std::mem::take(&mut self.second);
        let prepared = first
            .prepare("adam", params)
            .and_then(|()| second.prepare("adam", params));
        if let Err(e) = prepared {
            self.first = first;
            self.second = second;
            return Err(e);
        }
        self.steps += 1;
        let t = self.steps as f64;
        let (lr, b1, b2, eps) = (self.lr, self.beta1, self.beta2, self.epsilon);
        let (c1, c2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
        for_each_parameter(params, grads, [&mut first, &mut second], |w, g, [m, v]| {
            for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            }
        });
        self.first = first;
        self.second = second;
        Ok(())
    }
    fn reset(&mut self) {
        self.steps = 0;
        self.first.clear();
        self.second.clear();
    }
    fn state(&self) -> Params {
        export_state(
            &[("exp_avg", &self.first), ("exp_avg_sq", &self.second)],
            Some(self.steps),
        )
    }
    fn load_state(&mut self, state: &Params) -> Result<()> {
        let ([first, second], steps) =
            import_state("adam", state, ["exp_avg", "exp_avg_sq"], true)?;
        (self.first, self.second, self.steps) = (first, second, steps);
        Ok(())
    }
}
