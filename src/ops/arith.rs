//! Arithmetic: `add sub mul div` between variables (broadcasting), `neg`, powers, and
//! the forms with a plain number on one side (`x + 2.0`, `1.0 / x`).

use super::{finite, Binary, Partials, Unary};
use crate::error::Result;
use crate::var::Var;

// ---------------------------------------------------------------------------------------
/// `y = a + b`, broadcasting. ∂y/∂a = 1, ∂y/∂b = 1.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let (a, b) = (tape.var(2.0), tape.var(3.0));
/// let g = (a + b).backward()?;
/// assert_eq!((g.wrt_scalar(a)?, g.wrt_scalar(b)?), (1.0, 1.0));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Add;

impl Binary for Add {
    const NAME: &'static str = "add";
    // d/da (a + b) = 1, d/db (a + b) = 1
    const PARTIALS: Partials = Partials::Constant(1.0, 1.0);
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    #[inline]
    fn derivative(&self, a: f64, b: f64, _y: f64) -> (f64, f64) {
        Self::PARTIALS.at(a, b)
    }
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        _b: Var<'t>,
        _y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        let one = a.tape().constant(1.0);
        Ok((one, one))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (-3.0, 0.5), (0.0, -4.0), (2.5, 1.5)]
    }
}

impl<'t> Var<'t> {
    /// `self + other`, broadcasting; an error on incompatible shapes.
    #[inline]
    #[track_caller]
    pub fn try_add(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Add, self, other)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = a − b`, broadcasting. ∂y/∂a = 1, ∂y/∂b = −1.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let (a, b) = (tape.var(2.0), tape.var(3.0));
/// let g = (a - b).backward()?;
/// assert_eq!((g.wrt_scalar(a)?, g.wrt_scalar(b)?), (1.0, -1.0));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sub;

impl Binary for Sub {
    const NAME: &'static str = "sub";
    // d/da (a − b) = 1, d/db (a − b) = −1
    const PARTIALS: Partials = Partials::Constant(1.0, -1.0);
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        a - b
    }
    #[inline]
    fn derivative(&self, a: f64, b: f64, _y: f64) -> (f64, f64) {
        Self::PARTIALS.at(a, b)
    }
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        _b: Var<'t>,
        _y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        Ok((a.tape().constant(1.0), a.tape().constant(-1.0)))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (-3.0, 0.5), (0.0, -4.0), (2.5, 1.5)]
    }
}

impl<'t> Var<'t> {
    /// `self − other`, broadcasting; an error on incompatible shapes.
    #[inline]
    #[track_caller]
    pub fn try_sub(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Sub, self, other)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = a · b`, broadcasting. ∂y/∂a = b, ∂y/∂b = a.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let (a, b) = (tape.var(2.0), tape.var(3.0));
/// let g = (a * b).backward()?;
/// assert_eq!((g.wrt_scalar(a)?, g.wrt_scalar(b)?), (3.0, 2.0));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Mul;

impl Binary for Mul {
    const NAME: &'static str = "mul";
    // d/da ab = b, d/db ab = a
    const PARTIALS: Partials = Partials::Swapped;
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        a * b
    }
    #[inline]
    fn derivative(&self, a: f64, b: f64, _y: f64) -> (f64, f64) {
        Self::PARTIALS.at(a, b)
    }
    fn derivative_graph<'t>(
        &self,
        a: Var<'t>,
        b: Var<'t>,
        _y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        Ok((b, a))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (-3.0, 0.5), (0.0, -4.0), (2.5, 1.5)]
    }
}

impl<'t> Var<'t> {
    /// `self · other` elementwise, broadcasting; an error on incompatible shapes.
    #[inline]
    #[track_caller]
    pub fn try_mul(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Mul, self, other)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = a / b`, broadcasting. ∂y/∂a = 1/b, ∂y/∂b = −a/b².
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let (a, b) = (tape.var(3.0), tape.var(2.0));
/// let g = (a / b).backward()?;
/// assert_eq!((g.wrt_scalar(a)?, g.wrt_scalar(b)?), (0.5, -0.75));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Div;

impl Binary for Div {
    const NAME: &'static str = "div";
    #[inline]
    fn value(&self, a: f64, b: f64) -> f64 {
        a / b
    }
    // d/da a/b = 1/b, d/db a/b = −a/b² = −y/b
    #[inline]
    fn derivative(&self, _a: f64, b: f64, y: f64) -> (f64, f64) {
        (1.0 / b, -y / b)
    }
    fn derivative_graph<'t>(
        &self,
        _a: Var<'t>,
        b: Var<'t>,
        y: Var<'t>,
    ) -> Result<(Var<'t>, Var<'t>)> {
        Ok((1.0 / b, -(y / b)))
    }
    fn check_at(&self) -> &'static [(f64, f64)] {
        &[(1.0, 2.0), (-3.0, 0.5), (0.0, -4.0), (2.5, 1.5)]
    }
    fn domain(&self) -> [(f64, f64); 2] {
        [(-3.0, 3.0), (0.2, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// `self / other` elementwise, broadcasting; an error on incompatible shapes.
    #[inline]
    #[track_caller]
    pub fn try_div(self, other: Var<'t>) -> Result<Var<'t>> {
        self.tape().record_binary(Div, self, other)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = −x`. dy/dx = −1. Used by unary `-`.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(2.0);
/// assert_eq!((-x).backward()?.wrt_scalar(x)?, -1.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Neg;

impl Unary for Neg {
    const NAME: &'static str = "neg";
    #[inline]
    fn value(&self, x: f64) -> f64 {
        -x
    }
    // d/dx (−x) = −1
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        -1.0
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(-1.0))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, 0.0, 1.5, 3.0]
    }
}

impl<'t> std::ops::Neg for Var<'t> {
    type Output = Var<'t>;
    #[track_caller]
    fn neg(self) -> Var<'t> {
        self.elementwise(Neg)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = x^p` for a real exponent `p`. dy/dx = p·x^(p−1); 0 when p = 0.
///
/// For x < 0 and a non-integer p the value is NaN, as for `f64::powf`; use
/// [`Var::powi`] for integer powers of negative numbers.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(4.0);
/// let y = x.powf(1.5);
/// assert_eq!(y.item()?, 8.0);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 3.0); // 1.5·√4
/// assert!(x.try_powf(f64::NAN).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Powf {
    /// The exponent.
    pub p: f64,
}

impl Default for Powf {
    fn default() -> Self {
        Powf { p: 2.5 }
    }
}

impl Unary for Powf {
    const NAME: &'static str = "powf";
    fn param(&self) -> Option<f64> {
        Some(self.p)
    }
    fn with_param(p: f64) -> Self {
        Powf { p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.powf(self.p)
    }
    // d/dx x^p = p·x^(p−1)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if self.p == 0.0 {
            0.0
        } else {
            self.p * x.powf(self.p - 1.0)
        }
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        if self.p == 0.0 {
            return Ok(x.tape().constant(0.0));
        }
        Ok(x.try_powf(self.p - 1.0)? * self.p)
    }
    fn check_at(&self) -> &'static [f64] {
        &[0.1, 0.5, 1.0, 2.0, 4.0]
    }
    fn domain(&self) -> (f64, f64) {
        (0.1, 4.0)
    }
}

impl<'t> Var<'t> {
    /// `self^p`, elementwise.
    ///
    /// # Panics
    ///
    /// If `p` is not finite, naming the op and the value; [`try_powf`](Var::try_powf)
    /// returns the error.
    #[track_caller]
    pub fn powf(self, p: f64) -> Var<'t> {
        let p = super::or_panic(finite(Powf::NAME, "p", p));
        self.elementwise(Powf { p })
    }

    /// `self^p`, elementwise; an error if `p` is not finite.
    #[track_caller]
    pub fn try_powf(self, p: f64) -> Result<Var<'t>> {
        let p = finite(Powf::NAME, "p", p)?;
        self.tape().record_unary(Powf { p }, self)
    }
}

// ---------------------------------------------------------------------------------------
/// `y = x^n` for an integer `n`. dy/dx = n·x^(n−1); 0 when n = 0.
///
/// For n = `i32::MIN` the exponent n − 1 is not an `i32`; the derivative then takes
/// x^(n−1) as `powf` of the exact `f64` exponent: at x = 2, −2³¹·2^(−2³¹−1) rounds to −0.
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(-2.0);
/// let y = x.powi(3);
/// assert_eq!(y.item()?, -8.0);
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 12.0);
/// let x = tape.var(2.0);
/// let d = x.powi(i32::MIN).grad_graph(&[x])?[0].item()?;
/// assert!(d == 0.0 && d.is_sign_negative());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Powi {
    /// The exponent.
    pub n: i32,
}

impl Default for Powi {
    fn default() -> Self {
        Powi { n: 3 }
    }
}

impl Unary for Powi {
    const NAME: &'static str = "powi";
    fn param(&self) -> Option<f64> {
        Some(f64::from(self.n))
    }
    fn with_param(p: f64) -> Self {
        Powi { n: p as i32 }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x.powi(self.n)
    }
    // d/dx x^n = n·x^(n−1)
    #[inline]
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        match self.n {
            0 => 0.0,
            i32::MIN => powi_min_derivative(x),
            n => f64::from(n) * x.powi(n - 1),
        }
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        match self.n {
            0 => Ok(x.tape().constant(0.0)),
            i32::MIN => Ok(x.try_powf(f64::from(self.n) - 1.0)? * f64::from(self.n)),
            n => Ok(x.powi(n - 1) * f64::from(n)),
        }
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -0.5, 0.0, 1.0, 3.0]
    }
}

/// d/dx x^n at n = `i32::MIN`, whose n − 1 is no `i32`; −2³¹ − 1 is exact in f64. Out of
/// line, so that the derivative every other exponent inlines stays as small as it was.
#[cold]
#[inline(never)]
fn powi_min_derivative(x: f64) -> f64 {
    let n = f64::from(i32::MIN);
    n * x.powf(n - 1.0)
}

impl<'t> Var<'t> {
    /// `self^n`, elementwise, for an integer `n`.
    #[track_caller]
    pub fn powi(self, n: i32) -> Var<'t> {
        self.elementwise(Powi { n })
    }

    /// `self²`, elementwise.
    #[track_caller]
    pub fn square(self) -> Var<'t> {
        self.powi(2)
    }
}

#[cfg(test)]
mod powi_tests {
    use super::{Powi, Unary};

    #[test]
    fn the_derivative_at_the_ends_of_i32_has_the_right_sign() {
        let at = |n: i32, x: f64| Powi { n }.derivative(x, x.powi(n));
        // −2³¹ · 2^(−2³¹−1): a negative number too small for f64.
        let d = at(i32::MIN, 2.0);
        assert!(d == 0.0 && d.is_sign_negative(), "{d}");
        // −2³¹ · (−2)^(−2³¹−1): the power is negative, the product positive.
        let d = at(i32::MIN, -2.0);
        assert!(d == 0.0 && d.is_sign_positive(), "{d}");
        assert_eq!(at(i32::MIN, 1.0), -2147483648.0);
        assert_eq!(at(i32::MIN, -1.0), 2147483648.0);
        assert_eq!(at(i32::MIN, 0.0), f64::NEG_INFINITY);
        assert_eq!(at(i32::MAX, 2.0), f64::INFINITY);
        assert_eq!(at(i32::MAX, -1.0), 2147483647.0);
    }
}

// ---------------------------------------------------------------------------------------
/// `y = x + c` for a number `c` (also `x − c`, recorded as `x + (−c)`, which is the
/// same in floating point). dy/dx = 1.
#[derive(Clone, Copy, Debug)]
pub struct AddScalar {
    /// The number added.
    pub c: f64,
}

impl Default for AddScalar {
    fn default() -> Self {
        AddScalar { c: 1.5 }
    }
}

impl Unary for AddScalar {
    const NAME: &'static str = "add_scalar";
    fn param(&self) -> Option<f64> {
        Some(self.c)
    }
    fn with_param(p: f64) -> Self {
        AddScalar { c: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x + self.c
    }
    // d/dx (x + c) = 1
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        1.0
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(1.0))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, 0.0, 1.5, 3.0]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = c · x` for a number `c`. dy/dx = c.
#[derive(Clone, Copy, Debug)]
pub struct MulScalar {
    /// The factor.
    pub c: f64,
}

impl Default for MulScalar {
    fn default() -> Self {
        MulScalar { c: -2.5 }
    }
}

impl Unary for MulScalar {
    const NAME: &'static str = "mul_scalar";
    fn param(&self) -> Option<f64> {
        Some(self.c)
    }
    fn with_param(p: f64) -> Self {
        MulScalar { c: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x * self.c
    }
    // d/dx cx = c
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        self.c
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(self.c))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, 0.0, 1.5, 3.0]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = x / c` for a number `c`. dy/dx = 1/c.
#[derive(Clone, Copy, Debug)]
pub struct DivScalar {
    /// The divisor.
    pub c: f64,
}

impl Default for DivScalar {
    fn default() -> Self {
        DivScalar { c: 4.0 }
    }
}

impl Unary for DivScalar {
    const NAME: &'static str = "div_scalar";
    fn param(&self) -> Option<f64> {
        Some(self.c)
    }
    fn with_param(p: f64) -> Self {
        DivScalar { c: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        x / self.c
    }
    // d/dx x/c = 1/c
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        1.0 / self.c
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(1.0 / self.c))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, 0.0, 1.5, 3.0]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = c − x` for a number `c`. dy/dx = −1.
#[derive(Clone, Copy, Debug)]
pub struct ScalarSub {
    /// The number subtracted from.
    pub c: f64,
}

impl Default for ScalarSub {
    fn default() -> Self {
        ScalarSub { c: 1.0 }
    }
}

impl Unary for ScalarSub {
    const NAME: &'static str = "scalar_sub";
    fn param(&self) -> Option<f64> {
        Some(self.c)
    }
    fn with_param(p: f64) -> Self {
        ScalarSub { c: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        self.c - x
    }
    // d/dx (c − x) = −1
    #[inline]
    fn derivative(&self, _x: f64, _y: f64) -> f64 {
        -1.0
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, _y: Var<'t>) -> Result<Var<'t>> {
        Ok(x.tape().constant(-1.0))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, 0.0, 1.5, 3.0]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = c / x` for a number `c`. dy/dx = −c/x².
#[derive(Clone, Copy, Debug)]
pub struct ScalarDiv {
    /// The dividend.
    pub c: f64,
}

impl Default for ScalarDiv {
    fn default() -> Self {
        ScalarDiv { c: 3.0 }
    }
}

impl Unary for ScalarDiv {
    const NAME: &'static str = "scalar_div";
    fn param(&self) -> Option<f64> {
        Some(self.c)
    }
    fn with_param(p: f64) -> Self {
        ScalarDiv { c: p }
    }
    #[inline]
    fn value(&self, x: f64) -> f64 {
        self.c / x
    }
    // d/dx c/x = −c/x² = −y/x
    #[inline]
    fn derivative(&self, x: f64, y: f64) -> f64 {
        -y / x
    }
    fn derivative_graph<'t>(&self, x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
        Ok(-(y / x))
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -0.5, 0.5, 3.0]
    }
    fn domain(&self) -> (f64, f64) {
        (0.2, 3.0)
    }
}

/// `x + c`, the op of `var + f64` and `f64 + var`.
#[inline(always)]
pub(crate) fn add_scalar(c: f64) -> AddScalar {
    AddScalar { c }
}
/// `x · c`, the op of `var * f64` and `f64 * var`.
#[inline(always)]
pub(crate) fn mul_scalar(c: f64) -> MulScalar {
    MulScalar { c }
}
/// `x / c`, the op of `var / f64`.
#[inline(always)]
pub(crate) fn div_scalar(c: f64) -> DivScalar {
    DivScalar { c }
}
/// `c − x`, the op of `f64 - var`.
#[inline(always)]
pub(crate) fn scalar_sub(c: f64) -> ScalarSub {
    ScalarSub { c }
}
/// `c / x`, the op of `f64 / var`.
#[inline(always)]
pub(crate) fn scalar_div(c: f64) -> ScalarDiv {
    ScalarDiv { c }
}

/// `var op var`, `var op f64` and `f64 op var` for one operator.
macro_rules! binary_operator {
    ($trait:ident, $method:ident, $with_scalar:expr, $scalar_with:expr) => {
        impl<'t> std::ops::$trait for Var<'t> {
            type Output = Var<'t>;
            /// # Panics
            /// On shapes that cannot be broadcast together, or variables of different
            /// tapes, with a message that names both shapes and the caller's line.
            #[inline]
            #[track_caller]
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                self.tape().binary_or_panic($trait, self, rhs)
            }
        }

        impl<'t> std::ops::$trait<f64> for Var<'t> {
            type Output = Var<'t>;
            #[inline]
            #[track_caller]
            fn $method(self, rhs: f64) -> Var<'t> {
                self.elementwise($with_scalar(rhs))
            }
        }

        impl<'t> std::ops::$trait<Var<'t>> for f64 {
            type Output = Var<'t>;
            #[inline]
            #[track_caller]
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                rhs.elementwise($scalar_with(self))
            }
        }
    };
}

binary_operator!(Add, add, add_scalar, add_scalar);
binary_operator!(Sub, sub, |c: f64| add_scalar(-c), scalar_sub);
binary_operator!(Mul, mul, mul_scalar, mul_scalar);
binary_operator!(Div, div, div_scalar, scalar_div);
