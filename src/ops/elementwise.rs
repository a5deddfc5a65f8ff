//! Elementary functions, elementwise: `exp ln sqrt abs sin cos tan`, the `sign` and the
//! error function `erf`, the comparison `equal`, `maximum` and `minimum` of two inputs,
//! and `clamp`.
//!
//! Edge conventions: `abs′(0) = 0`; `ln′(0) = +∞` and `sqrt′(0) = +∞` (the limits from
//! the right); outside their domains `ln` and `sqrt` give NaN, as `f64` does. `sign` and
//! `equal` are piecewise constant: their derivative is 0 everywhere (at their jumps it
//! does not exist, and 0 is the convention); they give the derivatives of `abs` and of
//! `max` a form that can be recorded on the tape. `maximum` and `minimum` share the
//! gradient equally at a tie (½ each); `clamp` passes it at its bounds.
//!
//! Each op's `derivative_graph` writes its derivative with tape ops, so that gradients
//! built by [`Var::grad_graph`] can be differentiated again. The values it records are
//! the same numbers as the first-order rule's.

use super::{Binary, Unary};
use crate::error::{Error, Result};
use crate::var::Var;

// ---------------------------------------------------------------------------------------
/// `y = eˣ`. dy/dx = eˣ = y.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1.0);
/// let y = x.exp();
/// assert_eq!(y.backward()?.wrt_scalar(x)?, std::f64::consts::E);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Exp;

impl Unary for Exp {
    const NAME: &'static str = "exp";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.exp()
    }
    // d/dx eˣ = eˣ
    #[inline]
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        y
    }
    fn derivative_graph<'t>(&self, _x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(y)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-3.0, -0.5, 0.0, 1.0, 5.0]
    }
}

impl<'t> Var<'t> {
    /// eˣ, elementwise.
    #[inline]
    #[track_caller]
    pub fn exp(self) -> Var<'t> {
        self.elementwise(Exp)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = ln x`. dy/dx = 1/x.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(4.0);
/// assert_eq!(x.ln().backward()?.wrt_scalar(x)?, 0.25);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Ln;

impl Unary for Ln {
    const NAME: &'static str = "ln";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.ln()
    }
    // d/dx ln x = 1/x
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        1.0 / x
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(1.0 / x)
    }
    fn check_at(&self) -> &'static [f64] {
        &[0.01, 0.1, 1.0, 2.5, 100.0]
    }
    fn domain(&self) -> (f64, f64) {
        (0.05, 5.0)
    }
}

impl<'t> Var<'t> {
    /// The natural logarithm, elementwise.
    #[inline]
    #[track_caller]
    pub fn ln(self) -> Var<'t> {
        self.elementwise(Ln)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = √x`. dy/dx = 1/(2√x) = 1/(2y).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(4.0);
/// assert_eq!(x.sqrt().backward()?.wrt_scalar(x)?, 0.25);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sqrt;

impl Unary for Sqrt {
    const NAME: &'static str = "sqrt";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.sqrt()
    }
    // d/dx √x = 1/(2√x)
    #[inline]
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        0.5 / y
    }
    fn derivative_graph<'t>(&self, _x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(0.5 / y)
    }
    fn check_at(&self) -> &'static [f64] {
        &[0.01, 0.25, 1.0, 4.0, 100.0]
    }
    fn domain(&self) -> (f64, f64) {
        (0.05, 5.0)
    }
}

impl<'t> Var<'t> {
    /// The square root, elementwise.
    #[inline]
    #[track_caller]
    pub fn sqrt(self) -> Var<'t> {
        self.elementwise(Sqrt)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = |x|`. dy/dx = sign(x), and 0 at x = 0 (the convention).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.abs().backward()?.wrt_scalar(x)?, 0.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Abs;

impl Unary for Abs {
    const NAME: &'static str = "abs";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.abs()
    }
    // d/dx |x| = sign(x), 0 at 0
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    }
    // sign(0) = 0: the same convention at the kink
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.sign())
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -1e-3, 1e-3, 3.0]
    }
}

impl<'t> Var<'t> {
    /// The absolute value, elementwise.
    #[inline]
    #[track_caller]
    pub fn abs(self) -> Var<'t> {
        self.elementwise(Abs)
    }
}

// ---------------------------------------------------------------------------------------
/// Sine and cosine of `x` with the bits of `libm::sincos`. For π/4 ≥ |x| ≥ 2⁻²⁷·√2, where
/// no argument reduction is needed, it evaluates `libm`'s two polynomials (from
/// FreeBSD's msun) inline; every other `x` goes to `libm`.
#[inline(always)]
pub(crate) fn sincos(x: f64) -> (f64, f64) {
    // |x|'s high word, compared with those of 2⁻²⁷·√2 and π/4, as `libm` does.
    let high = (x.to_bits() >> 32) as u32 & 0x7fff_ffff;
    if !(0x3e46_a09e..=0x3fe9_21fb).contains(&high) {
        return libm::sincos(x);
    }
    const S: [f64; 6] = [
        -0.166_666_666_666_666_32,
        0.008_333_333_333_322_49,
        -1.984_126_982_985_795e-4,
        2.755_731_370_707_006_8e-6,
        -2.505_076_025_340_686_3e-8,
        1.589_690_995_211_55e-10,
    ];
    const C: [f64; 6] = [
        0.041_666_666_666_666_6,
        -0.001_388_888_888_887_411,
        2.480_158_728_947_673e-5,
        -2.755_731_435_139_066_3e-7,
        2.087_572_321_298_175e-9,
        -1.135_964_755_778_819_5e-11,
    ];
    let z = x * x;
    let w = z * z;
    let r = S[1] + z * (S[2] + z * S[3]) + z * w * (S[4] + z * S[5]);
    let sin = x + z * x * (S[0] + z * r);
    let r = z * (C[0] + z * (C[1] + z * C[2])) + w * w * (C[3] + z * (C[4] + z * C[5]));
    let hz = 0.5 * z;
    let one_minus_hz = 1.0 - hz;
    // `libm` subtracts x·0 from z·r, which is positive here: that changes no bit.
    let cos = one_minus_hz + (((1.0 - one_minus_hz) - hz) + z * r);
    (sin, cos)
}

// ---------------------------------------------------------------------------------------
/// `y = sin x`. dy/dx = cos x.
///
/// Sine and cosine come from the `libm` crate: the same bits on every platform, and a
/// scalar node gets both from one range reduction (`libm::sincos`), which costs about
/// as much as one sine. For |x| ≤ π/4 the node evaluates `libm`'s polynomials inline,
/// with the same bits.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.sin().backward()?.wrt_scalar(x)?, 1.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sin;

impl Unary for Sin {
    const NAME: &'static str = "sin";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        libm::sin(x)
    }
    // d/dx sin x = cos x
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        libm::cos(x)
    }
    #[inline(always)]
    fn value_and_derivative(&self, x: f64) -> (f64, f64) {
        sincos(x)
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.cos())
    }
    fn check_at(&self) -> &'static [f64] {
        &[-3.0, -1.0, 0.0, 0.5, 2.0]
    }
}

impl<'t> Var<'t> {
    /// The sine, elementwise.
    #[inline]
    #[track_caller]
    pub fn sin(self) -> Var<'t> {
        self.elementwise(Sin)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = cos x`. dy/dx = −sin x. Computed with `libm`, like [`Sin`].
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.cos().backward()?.wrt_scalar(x)?, 0.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Cos;

impl Unary for Cos {
    const NAME: &'static str = "cos";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        libm::cos(x)
    }
    // d/dx cos x = −sin x
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        -libm::sin(x)
    }
    #[inline(always)]
    fn value_and_derivative(&self, x: f64) -> (f64, f64) {
        let (s, c) = sincos(x);
        (c, -s)
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(-x.sin())
    }
    fn check_at(&self) -> &'static [f64] {
        &[-3.0, -1.0, 0.0, 0.5, 2.0]
    }
}

impl<'t> Var<'t> {
    /// The cosine, elementwise.
    #[inline]
    #[track_caller]
    pub fn cos(self) -> Var<'t> {
        self.elementwise(Cos)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = tan x`. dy/dx = 1 + tan²x = 1 + y².
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.0);
/// assert_eq!(x.tan().backward()?.wrt_scalar(x)?, 1.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Tan;

impl Unary for Tan {
    const NAME: &'static str = "tan";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.tan()
    }
    // d/dx tan x = 1 + tan²x
    #[inline]
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        1.0 + y * y
    }
    fn derivative_graph<'t>(&self, _x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(y * y + 1.0)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-1.2, -0.5, 0.0, 0.7, 1.3]
    }
    fn domain(&self) -> (f64, f64) {
        (-1.3, 1.3)
    }
}

impl<'t> Var<'t> {
    /// The tangent, elementwise.
    #[inline]
    #[track_caller]
    pub fn tan(self) -> Var<'t> {
        self.elementwise(Tan)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = sign(x)`: 1 for x > 0, −1 for x < 0, 0 at 0 (and NaN for NaN).
/// dy/dx = 0 everywhere — at 0, where the value jumps, the derivative does not exist and
/// 0 is the convention. `sign` is the derivative of [`Abs`], written as an op.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([-2.0, 0.0, 3.0]));
/// let y = x.sign();
/// assert_eq!(y.value(), Tensor::vector([-1.0, 0.0, 1.0]));
/// assert_eq!(y.sum().backward()?.wrt(x)?, Tensor::vector([0.0, 0.0, 0.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sign;

impl Unary for Sign {
    const NAME: &'static str = "sign";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else if x == 0.0 {
            0.0
        } else {
            x
        }
    }
    // d/dx sign(x) = 0 (undefined at 0; 0 by convention)
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        0.0
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(0.0))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -1e-3, 1e-3, 3.0]
    }
}

impl<'t> Var<'t> {
    /// The sign (−1, 0 or 1), elementwise.
    #[inline]
    #[track_caller]
    pub fn sign(self) -> Var<'t> {
        self.elementwise(Sign)
    }
}

// ---------------------------------------------------------------------------------------
/// The error function: `y = erf x = (2/√π)·∫₀ˣ e^(−t²) dt`. dy/dx = (2/√π)·e^(−x²).
///
/// The standard normal CDF is Φ(x) = (1 + erf(x/√2))/2; [GELU](crate::ops::activation::Gelu)
/// is x·Φ(x), and its derivative is written with `erf`.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(1.0);
/// let y = x.erf();
/// assert!((y.item()? - 0.8427007929497149).abs() < 1e-15);
/// let dy = y.backward()?.wrt_scalar(x)?;
/// assert!((dy - std::f64::consts::FRAC_2_SQRT_PI * (-1.0f64).exp()).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Erf;

impl Unary for Erf {
    const NAME: &'static str = "erf";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        libm::erf(x)
    }
    // d/dx erf x = (2/√π)·exp(−x²)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp()
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.gaussian() * std::f64::consts::FRAC_2_SQRT_PI)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-3.0, -1.0, 0.0, 0.5, 2.0]
    }
}

impl<'t> Var<'t> {
    /// The error function, elementwise.
    #[inline]
    #[track_caller]
    pub fn erf(self) -> Var<'t> {
        self.elementwise(Erf)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = [a = b]`: 1 where a equals b, else 0, broadcasting (NaN equals nothing).
/// ∂y/∂a = ∂y/∂b = 0 everywhere — where a = b the value jumps and the derivative does
/// not exist; 0 is the convention.
///
/// It is the mask that sends the gradient of a maximum to the elements equal to it.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 3.0, 3.0, 2.0]));
/// let mask = x.equal(x.max());
/// assert_eq!(mask.value(), Tensor::vector([0.0, 1.0, 1.0, 0.0]));
/// assert_eq!(mask.sum().backward()?.wrt(x)?, Tensor::vector([0.0; 4]));
/// assert!(x.try_equal(tape.tensor(&Tensor::vector([1.0, 2.0]))).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Equal;

impl Binary for Equal {
    const NAME: &'static str = "equal";
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        if a == b {
            1.0
        } else {
            0.0
        }
    }
    // d/da [a = b] = 0, d/db [a = b] = 0 (undefined at a = b; 0 by convention)
    #[inline]
    fn derivative(&self, _a: f64, _b: f64, _y: f64) -> (f64, f64) {
        (0.0, 0.0)
    }
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        _b: Var<'t>,
        _y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        let zero = a.tape().constant(0.0);
        Ok((zero, zero))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (2.0, 2.0), (-0.5, -0.5), (0.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// 1 where `self` equals `other`, else 0, elementwise and broadcasting.
    ///
    /// # Panics
    ///
    /// On shapes that cannot be broadcast together, with the error's message;
    /// [`try_equal`](Var::try_equal) returns the error.
    #[track_caller]
    pub fn equal(self, other: Var<'t>) -> Var<'t> {
        super::or_panic(self.try_equal(other))
    }

    /// 1 where `self` equals `other`, else 0, elementwise and broadcasting; an error on
    /// incompatible shapes.
    #[track_caller]
    pub fn try_equal(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Equal, self, other)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = max(a, b)`, elementwise and broadcasting (PyTorch's `torch.maximum`, NumPy's and
/// JAX's `maximum`); NaN if either is NaN. ∂y/∂a = 1 where a > b, 0 where a < b, and
/// ½ at a tie a = b, where each input gets half the gradient (the convention of
/// PyTorch and JAX, and what a central difference gives there).
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let a = tape.tensor(&Tensor::vector([1.0, 5.0, 2.0]));
/// let b = tape.tensor(&Tensor::vector([3.0, 4.0, 2.0]));
/// let y = a.maximum(b);
/// assert_eq!(y.value(), Tensor::vector([3.0, 5.0, 2.0]));
/// let g = y.sum().backward()?;
/// assert_eq!(g.wrt(a)?, Tensor::vector([0.0, 1.0, 0.5])); // a tie shares the gradient
/// assert_eq!(g.wrt(b)?, Tensor::vector([1.0, 0.0, 0.5]));
/// // A ReLU with PyTorch's tie rule at 0 would be x.maximum(0): ½ at x = 0.
/// let x = tape.var(0.0);
/// let relu = x.maximum(tape.constant(0.0));
/// assert_eq!(relu.backward()?.wrt_scalar(x)?, 0.5);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Maximum;

impl Binary for Maximum {
    const NAME: &'static str = "maximum";
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        if a >= b {
            a
        } else if a < b {
            b
        } else {
            f64::NAN
        }
    }
    // d/da max(a, b) = [a > b] + ½[a = b], d/db = [b > a] + ½[a = b]
    #[inline]
    fn derivative(&self, a: f64, b: f64, _y: f64) -> (f64, f64) {
        tie_split(a, b)
    }
    // step(a − b) + ½·equal(a, b): a − b > 0 exactly when a > b, so the same numbers
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        b: Var<'t>,
        _y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        let half_tie = a.try_equal(b)? * 0.5;
        Ok((
            a.try_sub(b)?.step() + half_tie,
            b.try_sub(a)?.step() + half_tie,
        ))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (3.0, -1.0), (-0.5, 0.25), (2.0, -3.0)]
    }
}

/// (∂/∂a, ∂/∂b) of max(a, b): (1, 0) where a > b, (0, 1) where a < b, (½, ½) at a tie,
/// (0, 0) when either is NaN. `tie_split(b, a)` gives (∂/∂a, ∂/∂b) of min(a, b).
#[inline]
fn tie_split(a: f64, b: f64) -> (f64, f64) {
    if a > b {
        (1.0, 0.0)
    } else if a < b {
        (0.0, 1.0)
    } else if a == b {
        (0.5, 0.5)
    } else {
        (0.0, 0.0)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = min(a, b)`, elementwise and broadcasting (PyTorch's `torch.minimum`, NumPy's and
/// JAX's `minimum`); NaN if either is NaN. ∂y/∂a = 1 where a < b, 0 where a > b, and ½
/// at a tie, as for [`Maximum`].
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let a = tape.tensor(&Tensor::vector([1.0, 5.0, 2.0]));
/// let b = tape.constant(2.0); // broadcast
/// let y = a.minimum(b);
/// assert_eq!(y.value(), Tensor::vector([1.0, 2.0, 2.0]));
/// assert_eq!(y.sum().backward()?.wrt(a)?, Tensor::vector([1.0, 0.0, 0.5]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Minimum;

impl Binary for Minimum {
    const NAME: &'static str = "minimum";
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        if a <= b {
            a
        } else if a > b {
            b
        } else {
            f64::NAN
        }
    }
    // d/da min(a, b) = [a < b] + ½[a = b], d/db = [b < a] + ½[a = b]
    #[inline]
    fn derivative(&self, a: f64, b: f64, _y: f64) -> (f64, f64) {
        // [a < b] is [b > a]: max's rule with the inputs swapped
        tie_split(b, a)
    }
    // step(b − a) + ½·equal(a, b), as for `maximum`
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        b: Var<'t>,
        _y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        let half_tie = a.try_equal(b)? * 0.5;
        Ok((
            b.try_sub(a)?.step() + half_tie,
            a.try_sub(b)?.step() + half_tie,
        ))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (3.0, -1.0), (-0.5, 0.25), (2.0, -3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = min(max(x, lo), hi)`: x limited to `[lo, hi]` (PyTorch's `torch.clamp`, NumPy's
/// and JAX's `clip`); NaN stays NaN. dy/dx = 1 for lo ≤ x ≤ hi, else 0: at the
/// boundaries themselves the gradient passes, as in PyTorch (JAX's `clip` gives ½ there,
/// its `maximum` and `minimum` tie rule; [`Var::maximum`] and [`Var::minimum`] give that
/// form here too).
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([-2.0, -1.0, 0.5, 1.0, 3.0]));
/// let y = x.clamp(-1.0, 1.0);
/// assert_eq!(y.value(), Tensor::vector([-1.0, -1.0, 0.5, 1.0, 1.0]));
/// // The boundaries pass the gradient; outside, it is 0.
/// assert_eq!(y.sum().backward()?.wrt(x)?, Tensor::vector([0.0, 1.0, 1.0, 1.0, 0.0]));
/// assert!(x.try_clamp(1.0, -1.0).is_err()); // lo > hi
/// assert!(x.try_clamp(f64::NAN, 1.0).is_err());
/// assert_eq!(x.clamp(0.0, f64::INFINITY).value().data()[2], 0.5); // one-sided
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Clamp {
    /// The lower bound.
    pub lo: f64,
    /// The upper bound, at least `lo`.
    pub hi: f64,
}

impl Default for Clamp {
    fn default() -> Self {
        Clamp { lo: -1.0, hi: 1.0 }
    }
}

impl Unary for Clamp {
    const NAME: &'static str = "clamp";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        if x < self.lo {
            self.lo
        } else if x > self.hi {
            self.hi
        } else {
            x
        }
    }
    // d/dx clamp(x) = [lo ≤ x ≤ hi] (the boundaries included, as in PyTorch)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if self.lo <= x && x <= self.hi {
            1.0
        } else {
            0.0
        }
    }
    // [x ≥ lo] = step(x − lo) + equal(x, lo), [x ≤ hi] likewise: each 0 or 1 exactly
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        let tape = x.tape();
        let above = (x - self.lo).step() + x.try_equal(tape.constant(self.lo))?;
        let below = (self.hi - x).step() + x.try_equal(tape.constant(self.hi))?;
        Ok(above * below)
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.5, -0.5, 0.25, 0.75, 2.0]
    }
}

impl<'t> Var<'t> {
    /// `max(self, other)`, elementwise and broadcasting; a tie shares the gradient
    /// equally (see [`Maximum`]).
    ///
    /// # Panics
    ///
    /// On shapes that cannot be broadcast together, with the error's message;
    /// [`try_maximum`](Var::try_maximum) returns the error.
    #[inline]
    #[track_caller]
    pub fn maximum(self, other: Var<'t>) -> Var<'t> {
        self.tape().binary_or_panic(Maximum, self, other)
    }

    /// `max(self, other)`, elementwise and broadcasting (see [`Maximum`]); an error on
    /// incompatible shapes.
    #[track_caller]
    pub fn try_maximum(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Maximum, self, other)
    }

    /// `min(self, other)`, elementwise and broadcasting; a tie shares the gradient
    /// equally (see [`Minimum`]).
    ///
    /// # Panics
    ///
    /// On shapes that cannot be broadcast together, with the error's message;
    /// [`try_minimum`](Var::try_minimum) returns the error.
    #[inline]
    #[track_caller]
    pub fn minimum(self, other: Var<'t>) -> Var<'t> {
        self.tape().binary_or_panic(Minimum, self, other)
    }

    /// `min(self, other)`, elementwise and broadcasting (see [`Minimum`]); an error on
    /// incompatible shapes.
    #[track_caller]
    pub fn try_minimum(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Minimum, self, other)
    }

    /// Each element limited to `[lo, hi]`; the gradient passes at the boundaries (see
    /// [`Clamp`]). An infinite bound leaves that side open.
    ///
    /// # Panics
    ///
    /// If a bound is NaN or `lo > hi`, naming the op and the bounds;
    /// [`try_clamp`](Var::try_clamp) returns the error.
    #[track_caller]
    pub fn clamp(self, lo: f64, hi: f64) -> Var<'t> {
        let op = super::or_panic(clamp_op(lo, hi));
        self.elementwise(op)
    }

    /// Each element limited to `[lo, hi]` (see [`Clamp`]); an error if a bound is NaN
    /// or `lo > hi`.
    #[track_caller]
    pub fn try_clamp(self, lo: f64, hi: f64) -> Result<Var<'t>> {
        let op = clamp_op(lo, hi)?;
        self.tape().record_unary(op, self)
    }
}

/// The clamp to `[lo, hi]`, or the error for bounds that are NaN or out of order.
fn clamp_op(lo: f64, hi: f64) -> Result<Clamp> {
    if lo <= hi {
        Ok(Clamp { lo, hi })
    } else {
        Err(Error::Invalid {
            op: Clamp::NAME.into(),
            reason: format!("the bounds lo = {lo} and hi = {hi} must be numbers with lo ≤ hi"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sincos;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "800,000 calls of sin and cos take too long to interpret"
    )]
    fn inline_sincos_has_the_bits_of_libm() {
        let pi_4 = std::f64::consts::FRAC_PI_4;
        let edges = [
            pi_4,
            f64::from_bits(pi_4.to_bits() + 1),
            f64::from_bits(pi_4.to_bits() - 1),
            f64::from_bits(0x3e46_a09e_0000_0000),
            f64::from_bits(0x3e46_a09d_ffff_ffff),
            2f64.powi(-27),
            1e-300,
            0.0,
            f64::INFINITY,
            f64::NAN,
            1e300,
        ];
        // Steps that are not multiples of a power of two reach every exponent range.
        let sweep = (-200_000..=200_000).map(|k| k as f64 * 4.1e-6);
        let tiny = (0..2000).map(|k| 1e-12 * 1.013f64.powi(k));
        for x in edges.into_iter().chain(sweep).chain(tiny) {
            for x in [x, -x] {
                let ((s, c), (ls, lc)) = (sincos(x), libm::sincos(x));
                assert_eq!(
                    (s.to_bits(), c.to_bits()),
                    (ls.to_bits(), lc.to_bits()),
                    "x = {x:e}"
                );
            }
        }
    }
}
