//! The activation functions of the lecture, each with its derivative: step, sigmoid,
//! tanh, ReLU, Leaky ReLU, ELU, softsign, arctan, Gaussian, Swish/SiLU, softplus, GELU
//! (the exact erf form and the tanh approximation).
//!
//! All are numerically stable: `sigmoid(±1000)` is finite, `softplus(1000) = 1000`, and
//! no derivative is NaN at a finite input.
//!
//! Kink conventions (where the derivative does not exist, tapegrad takes the
//! left-hand one): `step′ = 0` everywhere (including 0, where the true derivative is
//! undefined); `relu′(0) = 0`; `leaky_relu′(0) = α`; `elu′(0) = α` (which is 1, the
//! two-sided derivative, for the default α = 1).
//!
//! Each op's `derivative_graph` writes its derivative with tape ops (with y where that
//! is natural: σ′ = y(1 − y), tanh′ = 1 − y²), so that gradients built by
//! [`Var::grad_graph`] can be differentiated again. The derivatives of the kinked ops
//! are built from [`step`](Var::step), whose derivative is 0, and record exactly the
//! numbers of the first-order rule, conventions at the kinks included; their second
//! derivative is 0 away from the kinks (for ELU, αeˣ below 0).

use super::{finite, math, or_panic, Unary};
use crate::error::Result;
use crate::var::Var;

/// σ(x) = 1/(1 + e⁻ˣ), computed without overflow for any x: with e = e^−|x|, it is
/// 1/(1 + e) for x ≥ 0 and e/(1 + e) below. No branch, so that a loop of it
/// vectorizes (see [`sigmoid_slice`]).
#[inline(always)]
pub(crate) fn sigmoid(x: f64) -> f64 {
    let e = math::exp(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    numerator / (1.0 + e)
}

/// `y[i] = σ(x[i])`, four lanes at a time on a processor with AVX2, else two: the
/// same bits as [`sigmoid`] either way (no step is fused).
fn sigmoid_slice(x: &[f64], y: &mut [f64]) {
    // Miri cannot run the intrinsics: the portable loop, with the same bits, stands in.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2, the one feature the function is compiled for.
        #[allow(unsafe_code)]
        unsafe {
            sigmoid_slice_avx2(x, y)
        };
        return;
    }
    sigmoid_loop(x, y);
}

#[inline(always)]
fn sigmoid_loop(x: &[f64], y: &mut [f64]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = sigmoid(x);
    }
}

/// [`sigmoid_loop`] compiled for AVX2. On 16 numbers (XOR's hidden layer) it takes
/// 40–47 ns, the two-lane loop 72–75 ns, and a loop of the C library's `exp` 81–87 ns.
///
/// # Safety
/// The processor must have AVX2.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn sigmoid_slice_avx2(x: &[f64], y: &mut [f64]) {
    sigmoid_loop(x, y);
}

// ---------------------------------------------------------------------------------------
/// The step function: `y = 1` for x > 0, else 0 (the lecture's `x > 0`).
/// dy/dx = 0 everywhere — at 0 the true derivative does not exist, and 0 is the
/// convention; this is why a network of steps cannot learn by gradient descent.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.5);
/// let y = x.step();
/// assert_eq!(y.item()?, 1.0);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 0.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Step;

impl Unary for Step {
    const NAME: &'static str = "step";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else {
            0.0
        }
    }
    // d/dx step = 0 (undefined at 0; 0 by convention)
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        0.0
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(0.0))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-1.0, -1e-3, 1e-3, 1.0]
    }
}

impl<'t> Var<'t> {
    /// The step function, elementwise.
    #[inline]
    #[track_caller]
    pub fn step(self) -> Var<'t> {
        self.elementwise(Step)
    }
}

// ---------------------------------------------------------------------------------------
/// The sigmoid (logistic) function: `y = σ(x) = 1/(1 + e⁻ˣ)`. dy/dx = σ(x)(1 − σ(x)).
///
/// Stable for any x: for x < 0 it is computed as eˣ/(1 + eˣ).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// let y = x.sigmoid();
/// assert_eq!(y.item()?, 0.5);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 0.25);
/// assert_eq!(tape.var(-1000.0).sigmoid().item()?, 0.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sigmoid;

impl Unary for Sigmoid {
    const NAME: &'static str = "sigmoid";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        sigmoid(x)
    }
    #[inline]
    fn values(&self, x: &[f64], y: &mut [f64]) {
        sigmoid_slice(x, y);
    }
    // d/dx σ = σ(1 − σ)
    #[inline]
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        y * (1.0 - y)
    }
    fn derivative_graph<'t>(&self, _x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(y * (1.0 - y))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-40.0, -3.0, -0.5, 0.0, 0.35, 2.0, 40.0]
    }
}

impl<'t> Var<'t> {
    /// The sigmoid σ(x) = 1/(1 + e⁻ˣ), elementwise.
    #[inline]
    #[track_caller]
    pub fn sigmoid(self) -> Var<'t> {
        self.elementwise(Sigmoid)
    }
}

// ---------------------------------------------------------------------------------------
/// The hyperbolic tangent of `x`, as tapegrad's [`Tanh`] computes it.
///
/// Below |x| = 0.625 it is x + x³·P(x²)/Q(x²), the rational approximation of the Cephes
/// library; above, 1 − 2/(e^{2|x|} + 1); the sign is `x`'s. On 100,000 points spread
/// over [−20, 20], near the split and down to 10⁻³⁰⁰, it stays within 1.33 units in the
/// last place of the true value (the C library's `tanh`, behind `f64::tanh`: 2.06),
/// and it takes one exponential and one division, against the C library's
/// `expm1`-based code: about twice as fast.
///
/// ```
/// use tapegrad::ops::activation::tanh;
/// assert_eq!(tanh(0.0), 0.0);
/// assert_eq!(tanh(-1000.0), -1.0);
/// assert!((tanh(2f64.ln()) - 0.6).abs() < 1e-16); // tanh(ln 2) = 3/5
/// ```
#[inline]
pub fn tanh(x: f64) -> f64 {
    const P: [f64; 3] = [
        -0.964_399_179_425_052_3,
        -99.287_723_100_191_85,
        -1_614.687_684_417_084_5,
    ];
    const Q: [f64; 3] = [
        112.811_678_491_632_93,
        2_235.488_390_601_004_5,
        4_844.063_053_251_255,
    ];
    let a = x.abs();
    let t = if a < 0.625 {
        let z = a * a;
        let p = (P[0] * z + P[1]) * z + P[2];
        let q = ((z + Q[0]) * z + Q[1]) * z + Q[2];
        a + a * z * p / q
    } else {
        // e^{2|x|} overflows to infinity past 354, giving exactly 1.
        1.0 - 2.0 / ((2.0 * a).exp() + 1.0)
    };
    t.copysign(x)
}

/// The hyperbolic tangent: `y = tanh x`. dy/dx = 1 − tanh²x = 1 − y². Its value is
/// [`tanh`].
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.tanh().backward()?.wrt_scalar(x)?, 1.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Tanh;

impl Unary for Tanh {
    const NAME: &'static str = "tanh";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        tanh(x)
    }
    // d/dx tanh = 1 − tanh²
    #[inline]
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        1.0 - y * y
    }
    fn derivative_graph<'t>(&self, _x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(1.0 - y * y)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-20.0, -1.0, 0.0, 0.5, 20.0]
    }
}

impl<'t> Var<'t> {
    /// The hyperbolic tangent, elementwise.
    #[inline]
    #[track_caller]
    pub fn tanh(self) -> Var<'t> {
        self.elementwise(Tanh)
    }
}

// ---------------------------------------------------------------------------------------
/// The rectified linear unit: `y = max(0, x)`. dy/dx = 1 for x > 0, else 0 (so
/// ReLU′(0) = 0, the convention).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.relu().backward()?.wrt_scalar(x)?, 0.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl Unary for Relu {
    const NAME: &'static str = "relu";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        if x < 0.0 {
            0.0
        } else {
            x
        }
    }
    // d/dx max(0, x) = [x > 0]
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else {
            0.0
        }
    }
    // [x > 0] is step(x), 0 at the kink as above
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.step())
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -1e-3, 1e-3, 2.0]
    }
}

impl<'t> Var<'t> {
    /// max(0, x), elementwise.
    #[inline]
    #[track_caller]
    pub fn relu(self) -> Var<'t> {
        self.elementwise(Relu)
    }
}

// ---------------------------------------------------------------------------------------
/// Leaky ReLU with slope α: `y = x` for x > 0, else αx. dy/dx = 1 for x > 0, else α.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(-2.0);
/// let y = x.leaky_relu(0.1);
/// assert_eq!(y.item()?, -0.2);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 0.1);
/// // A parameter that is not finite: the method panics, its `try_` twin says why.
/// assert_eq!(
///     x.try_leaky_relu(f64::NAN).unwrap_err().to_string(),
///     "leaky_relu: parameter alpha must be a finite number, got NaN"
/// );
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LeakyRelu {
    /// The slope for x ≤ 0.
    pub alpha: f64,
}

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu { alpha: 0.01 }
    }
}

impl Unary for LeakyRelu {
    const NAME: &'static str = "leaky_relu";
    fn param(&self) -> Option<f64> {
        Some(self.alpha)
    }
    fn with_param(p: f64) -> Self {
        LeakyRelu { alpha: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        if x > 0.0 {
            x
        } else {
            self.alpha * x
        }
    }
    // d/dx = 1 for x > 0, α otherwise
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else {
            self.alpha
        }
    }
    // s + α(1 − s) with s = step(x): exactly 1 or α, never a rounded 1 − α + α
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let s = x.step();
        Ok(s + (1.0 - s) * self.alpha)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -1e-3, 1e-3, 2.0]
    }
}

impl<'t> Var<'t> {
    /// Leaky ReLU with slope `alpha` below 0, elementwise.
    ///
    /// # Panics
    ///
    /// If `alpha` is not finite, naming the op and the value;
    /// [`try_leaky_relu`](Var::try_leaky_relu) returns the error.
    #[track_caller]
    pub fn leaky_relu(self, alpha: f64) -> Var<'t> {
        let alpha = or_panic(finite(LeakyRelu::NAME, "alpha", alpha));
        self.elementwise(LeakyRelu { alpha })
    }

    /// Leaky ReLU with slope `alpha` below 0, elementwise; an error if `alpha` is not
    /// finite.
    #[track_caller]
    pub fn try_leaky_relu(self, alpha: f64) -> Result<Var<'t>> {
        let alpha = finite(LeakyRelu::NAME, "alpha", alpha)?;
        self.tape().record_unary(LeakyRelu { alpha }, self)
    }
}

// ---------------------------------------------------------------------------------------
/// The exponential linear unit: `y = x` for x > 0, else α(eˣ − 1).
/// dy/dx = 1 for x > 0, else αeˣ = y + α.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(-1.0);
/// let y = x.elu(1.0);
/// assert!((y.item()? - (-1.0f64).exp_m1()).abs() < 1e-15);
/// assert!((y.backward()?.wrt_scalar(x)? - (-1.0f64).exp()).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Elu {
    /// The scale of the negative part.
    pub alpha: f64,
}

impl Default for Elu {
    fn default() -> Self {
        Elu { alpha: 1.0 }
    }
}

impl Unary for Elu {
    const NAME: &'static str = "elu";
    fn param(&self) -> Option<f64> {
        Some(self.alpha)
    }
    fn with_param(p: f64) -> Self {
        Elu { alpha: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        if x > 0.0 {
            x
        } else {
            self.alpha * x.exp_m1()
        }
    }
    // d/dx = 1 for x > 0, αeˣ otherwise
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else {
            self.alpha * x.exp()
        }
    }
    // s + (1 − s)·α·exp((1 − s)·x) with s = step(x): the exponential only ever sees
    // x ≤ 0 (it sees 0 where x > 0), so a large x cannot make 0·∞ = NaN
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let s = x.step();
        let below = 1.0 - s;
        Ok(s + below * (x * below).exp() * self.alpha)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-5.0, -1.0, -1e-3, 1e-3, 2.0]
    }
}

impl<'t> Var<'t> {
    /// ELU with scale `alpha`, elementwise.
    ///
    /// # Panics
    ///
    /// If `alpha` is not finite, naming the op and the value;
    /// [`try_elu`](Var::try_elu) returns the error.
    #[track_caller]
    pub fn elu(self, alpha: f64) -> Var<'t> {
        let alpha = or_panic(finite(Elu::NAME, "alpha", alpha));
        self.elementwise(Elu { alpha })
    }

    /// ELU with scale `alpha`, elementwise; an error if `alpha` is not finite.
    #[track_caller]
    pub fn try_elu(self, alpha: f64) -> Result<Var<'t>> {
        let alpha = finite(Elu::NAME, "alpha", alpha)?;
        self.tape().record_unary(Elu { alpha }, self)
    }
}

// ---------------------------------------------------------------------------------------
/// Softsign: `y = x/(1 + |x|)`. dy/dx = 1/(1 + |x|)².
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1.0);
/// let y = x.softsign();
/// assert_eq!(y.item()?, 0.5);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 0.25);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Softsign;

impl Unary for Softsign {
    const NAME: &'static str = "softsign";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x / (1.0 + x.abs())
    }
    // d/dx x/(1 + |x|) = 1/(1 + |x|)²
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        let d = 1.0 + x.abs();
        1.0 / (d * d)
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let d = x.abs() + 1.0;
        Ok(1.0 / (d * d))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-5.0, -0.5, 0.0, 0.5, 5.0]
    }
}

impl<'t> Var<'t> {
    /// Softsign x/(1 + |x|), elementwise.
    #[inline]
    #[track_caller]
    pub fn softsign(self) -> Var<'t> {
        self.elementwise(Softsign)
    }
}

// ---------------------------------------------------------------------------------------
/// Arctangent: `y = atan x`. dy/dx = 1/(1 + x²).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1.0);
/// assert_eq!(x.atan().backward()?.wrt_scalar(x)?, 0.5);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Atan;

impl Unary for Atan {
    const NAME: &'static str = "atan";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.atan()
    }
    // d/dx atan x = 1/(1 + x²)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        1.0 / (1.0 + x * x)
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(1.0 / (x * x + 1.0))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-10.0, -1.0, 0.0, 0.5, 10.0]
    }
}

impl<'t> Var<'t> {
    /// The arctangent, elementwise.
    #[inline]
    #[track_caller]
    pub fn atan(self) -> Var<'t> {
        self.elementwise(Atan)
    }
}

// ---------------------------------------------------------------------------------------
/// The Gaussian: `y = exp(−x²)`. dy/dx = −2x·exp(−x²) = −2xy.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1.0);
/// let y = x.gaussian();
/// assert_eq!(y.backward()?.wrt_scalar(x)?, -2.0 * (-1.0f64).exp());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Gaussian;

impl Unary for Gaussian {
    const NAME: &'static str = "gaussian";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        (-x * x).exp()
    }
    // d/dx exp(−x²) = −2x·exp(−x²)
    #[inline]
    fn derivative(&self, x: f64, y: f64) -> f64 {
        -2.0 * x * y
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(x * -2.0 * y)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-3.0, -1.0, 0.0, 0.5, 2.0]
    }
}

impl<'t> Var<'t> {
    /// The Gaussian exp(−x²), elementwise.
    #[inline]
    #[track_caller]
    pub fn gaussian(self) -> Var<'t> {
        self.elementwise(Gaussian)
    }
}

// ---------------------------------------------------------------------------------------
/// Swish with parameter β: `y = x·σ(βx)`; SiLU is β = 1.
/// dy/dx = σ(βx) + βx·σ(βx)(1 − σ(βx)).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// let y = x.silu();
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 0.5);
/// assert!(x.try_swish(f64::INFINITY).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Swish {
    /// The slope inside the sigmoid.
    pub beta: f64,
}

impl Default for Swish {
    fn default() -> Self {
        Swish { beta: 1.0 }
    }
}

impl Unary for Swish {
    const NAME: &'static str = "swish";
    fn param(&self) -> Option<f64> {
        Some(self.beta)
    }
    fn with_param(p: f64) -> Self {
        Swish { beta: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x * sigmoid(self.beta * x)
    }
    // d/dx xσ(βx) = σ(βx) + βxσ(βx)(1 − σ(βx))
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        let s = sigmoid(self.beta * x);
        s + self.beta * x * s * (1.0 - s)
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let bx = x * self.beta;
        let s = bx.sigmoid();
        Ok(s + bx * s * (1.0 - s))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-40.0, -2.0, 0.0, 0.5, 40.0]
    }
}

impl<'t> Var<'t> {
    /// Swish x·σ(βx), elementwise.
    ///
    /// # Panics
    ///
    /// If `beta` is not finite, naming the op and the value;
    /// [`try_swish`](Var::try_swish) returns the error.
    #[track_caller]
    pub fn swish(self, beta: f64) -> Var<'t> {
        let beta = or_panic(finite(Swish::NAME, "beta", beta));
        self.elementwise(Swish { beta })
    }

    /// Swish x·σ(βx), elementwise; an error if `beta` is not finite.
    #[track_caller]
    pub fn try_swish(self, beta: f64) -> Result<Var<'t>> {
        let beta = finite(Swish::NAME, "beta", beta)?;
        self.tape().record_unary(Swish { beta }, self)
    }

    /// SiLU x·σ(x), elementwise: Swish with β = 1.
    #[inline]
    #[track_caller]
    pub fn silu(self) -> Var<'t> {
        self.elementwise(Swish { beta: 1.0 })
    }
}

// ---------------------------------------------------------------------------------------
/// Softplus: `y = ln(1 + eˣ)`, computed as max(x, 0) + ln(1 + e^−|x|) so that it never
/// overflows (softplus(1000) = 1000). dy/dx = σ(x).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1000.0);
/// let y = x.softplus();
/// assert_eq!(y.item()?, 1000.0);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 1.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Softplus;

impl Unary for Softplus {
    const NAME: &'static str = "softplus";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }
    // d/dx ln(1 + eˣ) = σ(x)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        sigmoid(x)
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.sigmoid())
    }
    fn check_at(&self) -> &'static [f64] {
        &[-40.0, -1.0, 0.0, 1.0, 40.0]
    }
}

impl<'t> Var<'t> {
    /// Softplus ln(1 + eˣ), elementwise.
    #[inline]
    #[track_caller]
    pub fn softplus(self) -> Var<'t> {
        self.elementwise(Softplus)
    }
}

// ---------------------------------------------------------------------------------------
/// GELU, the exact (erf) form: `y = x·Φ(x)` with Φ the standard normal CDF, Φ(x) =
/// ½(1 + erf(x/√2)) (PyTorch's `gelu` default, JAX's `gelu(approximate=False)`).
/// dy/dx = Φ(x) + x·φ(x), φ the standard normal density. [`GeluTanh`] is the tanh
/// approximation.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.gelu().backward()?.wrt_scalar(x)?, 0.5);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Gelu;

/// 1/√(2π).
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Unary for Gelu {
    const NAME: &'static str = "gelu";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))
    }
    // d/dx xΦ(x) = Φ(x) + xφ(x)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        let cdf = 0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
        cdf + x * pdf
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0) * 0.5;
        let pdf = (x * -0.5 * x).exp() * INV_SQRT_2PI;
        Ok(cdf + x * pdf)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-6.0, -1.0, 0.0, 0.5, 3.0]
    }
}

impl<'t> Var<'t> {
    /// GELU x·Φ(x), the exact erf form, elementwise (see [`Gelu`];
    /// [`gelu_tanh`](Var::gelu_tanh) is the tanh approximation).
    #[inline]
    #[track_caller]
    pub fn gelu(self) -> Var<'t> {
        self.elementwise(Gelu)
    }
}

// ---------------------------------------------------------------------------------------
/// GELU, the tanh approximation: `y = ½x(1 + tanh u)` with u = √(2/π)(x + 0.044715x³)
/// (PyTorch's `gelu(approximate="tanh")`, JAX's `jax.nn.gelu` default, GPT-2's form).
/// dy/dx = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²).
///
/// [`Gelu`] is the exact form x·Φ(x) (PyTorch's default, JAX's `approximate=False`);
/// the two differ by less than 5·10⁻⁴ everywhere. The tanh is tapegrad's [`tanh`].
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1.0);
/// let y = x.gelu_tanh();
/// // ½(1 + tanh(√(2/π)·1.044715))
/// assert!((y.item()? - 0.8411919906082768).abs() < 1e-15);
/// assert!((y.item()? - x.gelu().item()?).abs() < 5e-4);
/// let g = y.backward()?.wrt_scalar(x)?;
/// assert!((g - 1.0829640838457826).abs() < 1e-14);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GeluTanh;

/// √(2/π).
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh approximation of GELU.
const GELU_CUBIC: f64 = 0.044_715;

impl Unary for GeluTanh {
    const NAME: &'static str = "gelu_tanh";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        let u = (x + x * x * x * GELU_CUBIC) * SQRT_2_OVER_PI;
        x * 0.5 * (tanh(u) + 1.0)
    }
    // d/dx ½x(1 + tanh u) = ½(1 + tanh u) + ½x(1 − tanh²u)·u′,
    // u′ = √(2/π)(1 + 3·0.044715x²); written in the order `derivative_graph` records it
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        let x2 = x * x;
        let t = tanh((x + x2 * x * GELU_CUBIC) * SQRT_2_OVER_PI);
        let du = (x2 * (3.0 * GELU_CUBIC) + 1.0) * SQRT_2_OVER_PI;
        (t + 1.0) * 0.5 + x * 0.5 * (1.0 - t * t) * du
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let x2 = x * x;
        let t = ((x + x2 * x * GELU_CUBIC) * SQRT_2_OVER_PI).tanh();
        let du = (x2 * (3.0 * GELU_CUBIC) + 1.0) * SQRT_2_OVER_PI;
        Ok((t + 1.0) * 0.5 + x * 0.5 * (1.0 - t * t) * du)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-6.0, -1.0, 0.0, 0.5, 3.0]
    }
}

impl<'t> Var<'t> {
    /// GELU by the tanh approximation, elementwise (see [`GeluTanh`]; [`gelu`](Var::gelu)
    /// is the exact erf form).
    #[inline]
    #[track_caller]
    pub fn gelu_tanh(self) -> Var<'t> {
        self.elementwise(GeluTanh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs over the sigmoid's whole range, edges included.
    fn inputs() -> Vec<f64> {
        let mut xs: Vec<f64> = (-4_000..=4_000).map(|i| i as f64 * 0.011).collect();
        xs.extend((-800..=800).map(|i| i as f64 * 1.37));
        xs.extend([0.0, -0.0, 1e-300, -1e-300, f64::MAX, -f64::MAX]);
        xs.extend([f64::INFINITY, f64::NEG_INFINITY]);
        xs
    }

    /// The sigmoid by its formula, with the C library's `exp`.
    fn by_formula(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            x.exp() / (1.0 + x.exp())
        }
    }

    #[test]
    fn the_slice_sigmoid_has_the_bits_of_the_scalar_one_at_every_length() {
        let xs = inputs();
        // Every length up to 9 covers each remainder of the two- and four-lane loops.
        for len in (0..=9).chain([xs.len() - 3]) {
            for start in [0, 1, 3] {
                let x = &xs[start..start + len];
                let mut y = vec![f64::NAN; len];
                sigmoid_slice(x, &mut y);
                for (&x, &y) in x.iter().zip(&y) {
                    assert_eq!(y.to_bits(), sigmoid(x).to_bits(), "σ({x})");
                }
            }
        }
        let mut y = [0.0];
        sigmoid_slice(&[f64::NAN], &mut y);
        assert!(y[0].is_nan());
    }

    #[test]
    fn the_sigmoid_is_within_two_ulps_of_its_formula() {
        for x in inputs() {
            let (got, want) = (sigmoid(x), by_formula(x));
            let off = math::ulps(got, want);
            assert!(off <= 2.0, "σ({x}) = {got}, not {want}: {off} ulps");
            assert!((0.0..=1.0).contains(&got));
        }
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
