//! The [`Function`] trait — the one way a node gets onto a tape — and its simpler
//! elementwise cousin [`ScalarFunction`].
//!
//! Every built-in op (`add`, `sigmoid`, `sum`, …) implements [`Function`], and so can
//! any user type. A function declares its output shape, writes its forward value into
//! the slot the tape hands it, and in backward turns the upstream gradient `gy` into
//! the gradient of each input.
//!
//! # A user function, the lecture's way
//!
//! The lecture builds `f(x) = 2(x − 2)²` from two classes, `Function1` (`z = x − 2`) and
//! `Function2` (`y = 2z²`). Here `Function1` is a [`ScalarFunction`] (value and
//! derivative at a point) and `Function2` a full [`Function`]:
//!
//! ```
//! use std::sync::Arc;
//! use tapegrad::{Function, Result, ScalarFunction, Tape, Tensor, TensorRef};
//!
//! struct Function1;
//! impl ScalarFunction for Function1 {
//!     fn name(&self) -> &str { "function1" }
//!     fn value(&self, x: f64) -> f64 { x - 2.0 }
//!     fn derivative(&self, _x: f64) -> f64 { 1.0 }
//! }
//!
//! struct Function2;
//! impl Function for Function2 {
//!     fn name(&self) -> &str { "function2" }
//!     fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
//!         for (y, z) in out.iter_mut().zip(inputs[0].data()) {
//!             *y = 2.0 * z * z;
//!         }
//!     }
//!     // d/dz 2z² = 4z
//!     fn backward(&self, inputs: &[TensorRef<'_>], _y: TensorRef<'_>, gy: TensorRef<'_>)
//!         -> Result<Vec<Tensor>>
//!     {
//!         let z = inputs[0];
//!         let gz = z.data().iter().zip(gy.data()).map(|(z, g)| 4.0 * z * g).collect();
//!         Ok(vec![Tensor::new(gz, z.shape().clone())?])
//!     }
//! }
//!
//! let (f1, f2) = (Arc::new(Function1), Arc::new(Function2));
//! let tape = Tape::new();
//! let x = tape.var(4.0);
//! let y = x.apply(&f1)?.apply(&f2)?;
//! assert_eq!(y.item()?, 8.0);
//! assert_eq!(y.backward()?.wrt_scalar(x)?, 8.0); // f'(4) = 4·(4 − 2)
//! # Ok::<(), tapegrad::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;
use smallvec::SmallVec;
use std::sync::Arc;

/// A differentiable function: a forward value and a backward rule.
///
/// Implement [`name`](Function::name), [`forward`](Function::forward) and
/// [`backward`](Function::backward); the other methods have defaults.
/// [`output_shape`](Function::output_shape) defaults to "all inputs have one shape, and
/// so does the output", which fits elementwise functions.
///
/// The tape calls [`backward_accumulate`](Function::backward_accumulate), whose default
/// calls `backward`, checks that it returned one gradient of the right shape per input
/// (an [`Error::GradientCount`] or [`Error::GradientShape`] otherwise), and adds them
/// in. The built-in ops override it to add in place without allocating.
///
/// Functions are `Send + Sync` so that a tape holding them can move between threads.
pub trait Function: Send + Sync {
    /// A short lower-case name, used in errors, in [`trace`](crate::trace) tables and in
    /// the graphs that [`dot`](crate::dot) draws.
    fn name(&self) -> &str;

    /// The output's shape given the inputs' shapes; an error if they do not fit.
    ///
    /// The default accepts one or more inputs that all have the same shape.
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let Some((first, rest)) = inputs.split_first() else {
            return Err(Error::Arity {
                op: self.name().to_string(),
                expected: 1,
                got: 0,
            });
        };
        for other in rest {
            if other != first {
                return Err(Error::ShapeMismatch {
                    op: self.name().to_string(),
                    left: (*first).clone(),
                    right: (*other).clone(),
                });
            }
        }
        Ok((*first).clone())
    }

    /// Writes the output value into `out` (row-major, `output_shape` long). `out` is
    /// zeroed for user functions; the built-in ops write every element.
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]);

    /// The gradient of the loss with respect to each input, given the inputs, this
    /// function's output `y`, and the upstream gradient `gy` (∂L/∂y, shaped like `y`).
    ///
    /// Return one tensor per input, each shaped like its input.
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>>;

    /// Adds each input's gradient into `gx`. The tape calls this one.
    ///
    /// The default calls [`backward`](Function::backward) and checks what it returns;
    /// nothing is added unless every gradient has the right shape.
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let grads = self.backward(inputs, y, gy)?;
        if grads.len() != inputs.len() {
            return Err(Error::GradientCount {
                function: self.name().to_string(),
                expected: inputs.len(),
                got: grads.len(),
            });
        }
        for (i, (g, x)) in grads.iter().zip(inputs).enumerate() {
            if g.shape() != x.shape() {
                return Err(Error::GradientShape {
                    function: self.name().to_string(),
                    input: i,
                    expected: x.shape().clone(),
                    got: g.shape().clone(),
                });
            }
        }
        for (i, g) in grads.iter().enumerate() {
            for (acc, v) in gx.get_mut(i).iter_mut().zip(g.data()) {
                *acc += v;
            }
        }
        Ok(())
    }

    /// Points at which a gradient checker should test this function: each entry holds
    /// one value per input. Empty by default.
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        Vec::new()
    }

    /// For each input, an interval `(low, high)` inside which random points are valid
    /// for a gradient check (inside the function's domain, away from poles). Empty by
    /// default: checkers then use [`check_at`](Function::check_at) points only.
    fn domain(&self) -> Vec<(f64, f64)> {
        Vec::new()
    }

    /// The backward rule written with tape ops, so that the gradient can itself be
    /// differentiated: given the input variables, the output and the upstream gradient
    /// as variables, return one gradient variable per input.
    ///
    /// The default reports [`Error::NotTwiceDifferentiable`]: a function without this
    /// rule still has first derivatives, and asking it for a second one is an error,
    /// never a wrong number.
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let _ = (inputs, y, gy);
        Err(Error::NotTwiceDifferentiable {
            function: self.name().to_string(),
        })
    }
}

/// A scalar function of one variable, given by its value and derivative at a point.
/// Every `ScalarFunction` is a [`Function`] that works elementwise on tensors of any
/// shape.
///
/// ```
/// use std::sync::Arc;
/// use tapegrad::{ScalarFunction, Tape, Tensor};
///
/// struct Cube;
/// impl ScalarFunction for Cube {
///     fn name(&self) -> &str { "cube" }
///     fn value(&self, x: f64) -> f64 { x * x * x }
///     fn derivative(&self, x: f64) -> f64 { 3.0 * x * x }
/// }
///
/// let cube = Arc::new(Cube);
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 2.0]));
/// let y = x.apply(&cube)?.sum();
/// assert_eq!(y.item()?, 9.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([3.0, 12.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub trait ScalarFunction: Send + Sync {
    /// A short lower-case name, used in errors, in [`trace`](crate::trace) tables and in
    /// the graphs that [`dot`](crate::dot) draws.
    fn name(&self) -> &str;
    /// f(x).
    fn value(&self, x: f64) -> f64;
    /// f′(x).
    fn derivative(&self, x: f64) -> f64;
    /// Points at which a gradient checker should test this function. Empty by default.
    fn check_at(&self) -> Vec<f64> {
        Vec::new()
    }
    /// f′(x) written with tape ops, so that the function can be differentiated more than
    /// once (see [`Var::grad_graph`]).
    ///
    /// The default reports [`Error::NotTwiceDifferentiable`]: first derivatives still
    /// work, and a second one is an error, never a wrong number.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tapegrad::{Result, ScalarFunction, Tape, Var};
    ///
    /// struct Cube;
    /// impl ScalarFunction for Cube {
    ///     fn name(&self) -> &str { "cube" }
    ///     fn value(&self, x: f64) -> f64 { x * x * x }
    ///     fn derivative(&self, x: f64) -> f64 { 3.0 * x * x }
    ///     fn derivative_graph<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
    ///         Ok(x * x * 3.0)
    ///     }
    /// }
    ///
    /// let tape = Tape::new();
    /// let x = tape.var(2.0);
    /// let y = x.apply(&Arc::new(Cube))?;
    /// let dy = y.grad_graph(&[x])?[0];
    /// let d2y = dy.grad_graph(&[x])?[0];
    /// assert_eq!((dy.item()?, d2y.item()?), (12.0, 12.0)); // 3x², 6x
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    fn derivative_graph<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        let _ = x;
        Err(Error::NotTwiceDifferentiable {
            function: self.name().to_string(),
        })
    }
}

impl<S: ScalarFunction> Function for S {
    fn name(&self) -> &str {
        ScalarFunction::name(self)
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        match inputs {
            [x] => Ok((*x).clone()),
            _ => Err(Error::Arity {
                op: ScalarFunction::name(self).to_string(),
                expected: 1,
                got: inputs.len(),
            }),
        }
    }

    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for (y, &x) in out.iter_mut().zip(inputs[0].data()) {
            *y = self.value(x);
        }
    }

    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        backward_by_accumulation(self, inputs, y, gy)
    }

    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let x = inputs[0].data();
        for ((g, &x), &gy) in gx.get_mut(0).iter_mut().zip(x).zip(gy.data()) {
            *g += gy * self.derivative(x);
        }
        Ok(())
    }

    fn check_at(&self) -> Vec<Vec<Tensor>> {
        ScalarFunction::check_at(self)
            .into_iter()
            .map(|x| vec![Tensor::scalar(x)])
            .collect()
    }

    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let d = ScalarFunction::derivative_graph(self, inputs[0])?;
        Ok(vec![gy.try_mul(d)?])
    }
}

/// The gradient slots of a node's inputs during backward: add each input's gradient
/// into `get_mut(i)`.
///
/// Two inputs may be the same variable (`x * x`); then their slots are the same memory,
/// so take them one at a time.
pub struct InputGrads<'a> {
    arena: &'a mut [f64],
    slots: SmallVec<[(usize, usize); 4]>,
    /// Bit i set: input i needs its gradient.
    needed: u64,
}

impl<'a> InputGrads<'a> {
    /// Slots `(offset, len)` into `arena`, one per input, all of them needed.
    pub(crate) fn new(arena: &'a mut [f64], slots: SmallVec<[(usize, usize); 4]>) -> Self {
        InputGrads {
            arena,
            slots,
            needed: u64::MAX,
        }
    }

    /// Marks which inputs need their gradient (bit i for input i).
    pub(crate) fn with_needed(mut self, needed: u64) -> Self {
        self.needed = needed;
        self
    }

    /// True when input `i` needs its gradient; false for a constant (or a value
    /// computed from constants only), whose gradient is thrown away. A function may
    /// skip computing gradients nobody needs — a matrix product does, for its data
    /// operand.
    pub fn needs(&self, i: usize) -> bool {
        i >= 64 || self.needed & (1 << i) != 0
    }

    /// The number of inputs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the function has no inputs.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The gradient accumulator of input `i`, shaped like that input (row-major).
    ///
    /// # Panics
    /// If `i` is not below [`len`](InputGrads::len).
    pub fn get_mut(&mut self, i: usize) -> &mut [f64] {
        let (offset, len) = self.slots[i];
        &mut self.arena[offset..offset + len]
    }

    /// The whole arena and the offsets of the first two inputs, for kernels that write
    /// both gradients in one pass (the offsets may be equal).
    pub(crate) fn pair(&mut self) -> (&mut [f64], usize, usize) {
        (&mut *self.arena, self.slots[0].0, self.slots[1].0)
    }
}

/// Computes gradients through [`Function::backward_accumulate`] into fresh tensors: the
/// `backward` of functions whose native rule accumulates in place.
pub(crate) fn backward_by_accumulation<F: Function + ?Sized>(
    f: &F,
    inputs: &[TensorRef<'_>],
    y: TensorRef<'_>,
    gy: TensorRef<'_>,
) -> Result<Vec<Tensor>> {
    accumulate_into_fresh(inputs, |gx| f.backward_accumulate(inputs, y, gy, gx))
}

/// Runs `accumulate` on zeroed gradient slots, one per input position (so `x * x` gets
/// two slots, not one shared), and returns them as tensors shaped like the inputs.
pub(crate) fn accumulate_into_fresh(
    inputs: &[TensorRef<'_>],
    accumulate: impl FnOnce(&mut InputGrads<'_>) -> Result<()>,
) -> Result<Vec<Tensor>> {
    let total: usize = inputs.iter().map(|x| x.data().len()).sum();
    let mut arena = vec![0.0; total];
    let mut slots = SmallVec::new();
    let mut offset = 0;
    for x in inputs {
        slots.push((offset, x.data().len()));
        offset += x.data().len();
    }
    accumulate(&mut InputGrads::new(&mut arena, slots))?;
    let mut grads = Vec::with_capacity(inputs.len());
    let mut offset = 0;
    for x in inputs {
        let n = x.data().len();
        grads.push(Tensor::new(
            arena[offset..offset + n].to_vec(),
            x.shape().clone(),
        )?);
        offset += n;
    }
    Ok(grads)
}

/// A user function on the tape: the shared handle that nodes keep.
pub(crate) type UserFunction = Arc<dyn Function>;

/// Anything that can be applied as a user function ([`Var::apply`],
/// [`Var::apply2`], [`Tape::apply`](crate::Tape::apply)):
///
/// - a [`Function`] or [`ScalarFunction`] value that is `Clone` (derive it): each node
///   keeps its own copy, in an `Arc` allocated per call (a unit struct copies for
///   free);
/// - an `Arc` of one, or an `Arc<dyn Function>`: nodes share it, and cloning the `Arc`
///   is all a node costs. Use this form for a function that is not `Clone` or is large.
///
/// A node must own its function (or a share of it): the tape keeps it for
/// [`replay`](crate::Tape::replay) and backward after the call returns.
///
/// ```
/// use std::sync::Arc;
/// use tapegrad::{ScalarFunction, Tape};
///
/// #[derive(Clone)]
/// struct Cube;
/// impl ScalarFunction for Cube {
///     fn name(&self) -> &str { "cube" }
///     fn value(&self, x: f64) -> f64 { x * x * x }
///     fn derivative(&self, x: f64) -> f64 { 3.0 * x * x }
/// }
///
/// let tape = Tape::new();
/// let x = tape.var(2.0);
/// let f = Cube;
/// let y = x.apply(&f)?; // the value itself
/// let z = x.apply(&Arc::new(Cube))?; // or a shared handle
/// assert_eq!((y.item()?, z.item()?), (8.0, 8.0));
/// assert_eq!(y.backward()?.wrt_scalar(x)?, 12.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub trait AsFunction {
    /// A shared handle to the function.
    fn as_function(&self) -> Arc<dyn Function>;
}

impl<F: Function + Clone + 'static> AsFunction for F {
    fn as_function(&self) -> Arc<dyn Function> {
        Arc::new(self.clone())
    }
}

impl<F: Function + 'static> AsFunction for Arc<F> {
    fn as_function(&self) -> Arc<dyn Function> {
        self.clone()
    }
}

impl AsFunction for Arc<dyn Function> {
    fn as_function(&self) -> Arc<dyn Function> {
        self.clone()
    }
}
