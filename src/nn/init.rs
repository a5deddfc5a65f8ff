//! Weight initialisation from a seeded random number generator.
//!
//! [`rng`] gives a ChaCha8 generator: the same seed gives the same stream on every
//! platform. Normal draws use the Box–Muller transform computed with the pure-Rust
//! `libm` functions, and uniform draws `rand_distr`'s `Uniform`, which is plain IEEE
//! arithmetic; so the same seed gives bit-for-bit the same network on every machine and
//! in every build profile.
//!
//! Fans follow tapegrad's weight layout `[inputs, outputs]` (a layer computes `x·W`):
//! for a shape `[…, n]` the fan-out is the last axis n and the fan-in is the product of
//! the others (both 1 for a scalar, both n for a vector).

use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use std::f64::consts::PI;

/// A ChaCha8 generator seeded from `seed`: portable, reproducible randomness for
/// initialisation, shuffling and generated data sets.
///
/// ```
/// use tapegrad::nn::init::{rng, standard_normal};
/// let (mut a, mut b) = (rng(7), rng(7));
/// assert_eq!(standard_normal(&mut a), standard_normal(&mut b));
/// ```
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A uniform draw from [0, 1) with 53 random bits.
fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// One draw from the standard normal distribution N(0, 1), by the Box–Muller transform
/// `√(−2 ln u₁)·cos(2π u₂)` with u₁ in (0, 1] (so the logarithm is finite) and u₂ in
/// [0, 1). Computed with `libm`, so the result is the same on every machine.
///
/// ```
/// use tapegrad::nn::init::{rng, standard_normal};
/// let mut r = rng(1);
/// let draws: Vec<f64> = (0..20_000).map(|_| standard_normal(&mut r)).collect();
/// let mean = draws.iter().sum::<f64>() / 20_000.0;
/// let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 20_000.0;
/// assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.03);
/// ```
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * PI * u2)
}

/// `(fan_in, fan_out)` of a weight of this shape (see the [module docs](self)).
pub fn fans(shape: &Shape) -> (usize, usize) {
    match shape.dims().split_last() {
        None => (1, 1),
        Some((&n, [])) => (n, n),
        Some((&n, rest)) => (rest.iter().product(), n),
    }
}

/// How to fill a new parameter tensor.
///
/// | variant | distribution |
/// |---|---|
/// | `Zeros` | all 0 |
/// | `Constant(c)` | all c |
/// | `Normal { mean, std }` | N(mean, std²) — `Normal { mean: 0.0, std: 1.0 }` is NumPy's `randn`, the lecture's choice |
/// | `Uniform { low, high }` | U[low, high) |
/// | `XavierNormal` | N(0, 2/(fan_in + fan_out)) (Glorot) |
/// | `XavierUniform` | U[−a, a), a = √(6/(fan_in + fan_out)) |
/// | `HeNormal` | N(0, 2/fan_in) (for ReLU layers) |
/// | `HeUniform` | U[−a, a), a = √(6/fan_in) |
///
/// ```
/// use tapegrad::nn::init::{rng, Init};
/// let w = Init::HeNormal.tensor([200, 100], &mut rng(3))?;
/// let var = w.data().iter().map(|x| x * x).sum::<f64>() / w.numel() as f64;
/// assert!((var - 2.0 / 200.0).abs() < 0.001);
/// assert_eq!(Init::Constant(0.5).tensor([2], &mut rng(3))?.data(), &[0.5, 0.5]);
/// assert!(Init::Normal { mean: 0.0, std: -1.0 }.tensor([2], &mut rng(3)).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// Every element the same value.
    Constant(f64),
    /// Normal with the given mean and standard deviation.
    Normal {
        /// The mean.
        mean: f64,
        /// The standard deviation (≥ 0).
        std: f64,
    },
    /// Uniform on [low, high).
    Uniform {
        /// The lower bound.
        low: f64,
        /// The upper bound (> low).
        high: f64,
    },
    /// Xavier/Glorot normal: std = √(2/(fan_in + fan_out)).
    XavierNormal,
    /// Xavier/Glorot uniform: bound √(6/(fan_in + fan_out)).
    XavierUniform,
    /// He/Kaiming normal: std = √(2/fan_in).
    HeNormal,
    /// He/Kaiming uniform: bound √(6/fan_in).
    HeUniform,
}

impl Init {
    /// A tensor of `shape` filled by this rule, drawing from `rng` in row-major order.
    /// An error for a non-finite constant, a negative or non-finite std, bounds with
    /// `low ≥ high`, or a shape with more elements than a tensor can hold.
    pub fn tensor<R: Rng + ?Sized>(&self, shape: impl Into<Shape>, rng: &mut R) -> Result<Tensor> {
        let shape = shape.into();
        let (fan_in, fan_out) = fans(&shape);
        let (fan_in, fan_out) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        let mut values = vec![0.0; shape.check_size("init")?];
        match *self {
            Init::Zeros => {}
            Init::Constant(c) => {
                check("constant", c.is_finite(), c)?;
                values.fill(c);
            }
            Init::Normal { mean, std } => {
                check("mean", mean.is_finite(), mean)?;
                check("std", std.is_finite() && std >= 0.0, std)?;
                normal(&mut values, mean, std, rng);
            }
            Init::Uniform { low, high } => uniform(&mut values, low, high, rng)?,
            Init::XavierNormal => normal(&mut values, 0.0, (2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::XavierUniform => {
                let a = (6.0 / (fan_in + fan_out)).sqrt();
                uniform(&mut values, -a, a, rng)?;
            }
            Init::HeNormal => normal(&mut values, 0.0, (2.0 / fan_in).sqrt(), rng),
            Init::HeUniform => {
                let a = (6.0 / fan_in).sqrt();
                uniform(&mut values, -a, a, rng)?;
            }
        }
        Tensor::new(values, shape)
    }
}

fn check(name: &str, ok: bool, value: f64) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            op: "init".into(),
            reason: format!("{name} = {value} is not allowed"),
        })
    }
}

fn normal<R: Rng + ?Sized>(values: &mut [f64], mean: f64, std: f64, rng: &mut R) {
    for v in values {
        *v = mean + std * standard_normal(rng);
    }
}

fn uniform<R: Rng + ?Sized>(values: &mut [f64], low: f64, high: f64, rng: &mut R) -> Result<()> {
    let dist = Uniform::new(low, high).map_err(|e| Error::Invalid {
        op: "init".into(),
        reason: format!("uniform bounds [{low}, {high}): {e}"),
    })?;
    for v in values {
        *v = dist.sample(rng);
    }
    Ok(())
}
