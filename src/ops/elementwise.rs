//! Elementary functions, elementwise: `exp ln sqrt abs sin cos tan`.
//!
//! Edge conventions: `abs′(0) = 0`; `ln′(0) = +∞` and `sqrt′(0) = +∞` (the limits from
//! the right); outside their domains `ln` and `sqrt` give NaN, as `f64` does.

use super::{Op, Unary};
use crate::error::Result;
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
    fn value(&self, x: f64) -> f64 {
        x.exp()
    }
    // d/dx eˣ = eˣ
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        y
    }
    fn check_at(&self) -> &'static [f64] {
        &[-3.0, -0.5, 0.0, 1.0, 5.0]
    }
}

impl<'t> Var<'t> {
    /// eˣ, elementwise.
    pub fn exp(self) -> Var<'t> {
        self.unary(Op::Exp(Exp))
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
    fn value(&self, x: f64) -> f64 {
        x.ln()
    }
    // d/dx ln x = 1/x
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        1.0 / x
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
    pub fn ln(self) -> Var<'t> {
        self.unary(Op::Ln(Ln))
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
    fn value(&self, x: f64) -> f64 {
        x.sqrt()
    }
    // d/dx √x = 1/(2√x)
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        0.5 / y
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
    pub fn sqrt(self) -> Var<'t> {
        self.unary(Op::Sqrt(Sqrt))
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
    fn value(&self, x: f64) -> f64 {
        x.abs()
    }
    // d/dx |x| = sign(x), 0 at 0
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    }
    fn check_at(&self) -> &'static [f64] {
        &[-2.0, -1e-3, 1e-3, 3.0]
    }
}

impl<'t> Var<'t> {
    /// The absolute value, elementwise.
    pub fn abs(self) -> Var<'t> {
        self.unary(Op::Abs(Abs))
    }
}

// ---------------------------------------------------------------------------------------
/// `y = sin x`. dy/dx = cos x.
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
    fn value(&self, x: f64) -> f64 {
        x.sin()
    }
    // d/dx sin x = cos x
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        x.cos()
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
    pub fn sin(self) -> Var<'t> {
        self.unary(Op::Sin(Sin))
    }
}

// ---------------------------------------------------------------------------------------
/// `y = cos x`. dy/dx = −sin x.
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
    fn value(&self, x: f64) -> f64 {
        x.cos()
    }
    // d/dx cos x = −sin x
    fn derivative(&self, x: f64, _y: f64) -> f64 {
        -x.sin()
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
    pub fn cos(self) -> Var<'t> {
        self.unary(Op::Cos(Cos))
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
    fn value(&self, x: f64) -> f64 {
        x.tan()
    }
    // d/dx tan x = 1 + tan²x
    fn derivative(&self, _x: f64, y: f64) -> f64 {
        1.0 + y * y
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
    pub fn tan(self) -> Var<'t> {
        self.unary(Op::Tan(Tan))
    }
}
