//! [`Var`], the handle to a value on a tape, and its operators.
//!
//! `+ - * /` and unary `-` work between variables and with plain `f64`s on either side.
//! Binary operators between variables broadcast like NumPy.
//!
//! # Panics
//! An operator between variables panics when the shapes cannot be broadcast together
//! (the message names both shapes) or when the variables belong to different tapes.
//! The `try_` forms ([`Var::try_add`], …) return the same conditions as an
//! [`Error`] instead.

use super::{NodeId, Tape};
use crate::error::{Error, Result};
use crate::function::AsFunction;
use crate::ops::{Op, Registered, Unary};
use crate::parallel::copy as shared_copy;
use crate::shape::Shape;
use crate::tensor::Tensor;
use std::fmt;

/// A value recorded on a [`Tape`]: a cheap `Copy` handle (the tape and a node id).
///
/// ```
/// use tapegrad::Tape;
/// let tape = Tape::new();
/// let x = tape.var(0.5);
/// let w = tape.var(0.7);
/// let o = (w * x).sigmoid();
/// let grads = o.backward()?;
/// let s = o.item()?;
/// assert!((grads.wrt_scalar(w)? - s * (1.0 - s) * 0.5).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Var<'t> {
    tape: &'t Tape,
    /// The node's id in the low 32 bits; in the high 32, what the recording paths need
    /// of a scalar node without loading it: its slot and flags, packed by
    /// [`Tape::scalar_hint`], or zero when not known. One word, so that a variable
    /// is a pair of registers, passed and returned in them.
    word: u64,
}

impl<'t> Var<'t> {
    /// The variable of node `id`, with nothing known of the node.
    #[allow(unsafe_code)]
    pub(crate) fn new(tape: &'t Tape, id: NodeId) -> Self {
        // SAFETY: a hint of 0 claims nothing.
        unsafe { Var::with_hint(tape, id, 0) }
    }

    /// The variable of node `id`, with its node's hint (see [`Tape::scalar_hint`]).
    ///
    /// # Safety
    ///
    /// `hint` is 0, or the hint of node `id` of `tape`'s current recording: its slot,
    /// below the recording's number of values, and its flags. The tape's scalar paths
    /// read values through hints without bounds checks; a variable cannot outlive the
    /// recording (clearing a tape takes it mutably, and a variable borrows it).
    #[allow(unsafe_code)]
    #[inline(always)]
    pub(crate) unsafe fn with_hint(tape: &'t Tape, id: NodeId, hint: u32) -> Self {
        Var {
            tape,
            word: u64::from(id) | u64::from(hint) << 32,
        }
    }

    /// The node's slot and flags when it is a scalar whose slot fits the hint, else 0.
    #[inline(always)]
    pub(crate) fn hint(&self) -> u32 {
        (self.word >> 32) as u32
    }

    /// The tape this variable is recorded on.
    pub fn tape(&self) -> &'t Tape {
        self.tape
    }

    /// The node's index on its tape (its position in recording order).
    #[inline]
    pub fn id(&self) -> u32 {
        self.word as u32
    }

    /// The value, copied out of the tape.
    pub fn value(&self) -> Tensor {
        self.tape.inner.borrow().value(self.id()).to_tensor()
    }

    /// The single value of a scalar (or one-element) variable; an error otherwise.
    pub fn item(&self) -> Result<f64> {
        let inner = self.tape.inner.borrow();
        let v = inner.value(self.id());
        v.item().map_err(|_| Error::NotScalar {
            op: "item".into(),
            shape: v.shape().clone(),
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        let inner = self.tape.inner.borrow();
        inner.shape(inner.nodes[self.id() as usize].shape()).clone()
    }

    /// The name of the op that made this variable (`"leaf"` for inputs).
    pub fn op_name(&self) -> String {
        let inner = self.tape.inner.borrow();
        inner
            .op(&inner.nodes[self.id() as usize])
            .name()
            .to_string()
    }

    /// True if gradients flow into this variable (a `var`/`tensor` leaf or a result
    /// that depends on one outside a no-grad scope).
    pub fn requires_grad(&self) -> bool {
        self.tape.inner.borrow().nodes[self.id() as usize].requires_grad()
    }

    /// A copy of this value that gradients do not flow through.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.var(3.0);
    /// let y = x * x.detach(); // d/dx = 3, not 6
    /// assert_eq!(y.backward()?.wrt_scalar(x)?, 3.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    #[track_caller]
    pub fn detach(self) -> Var<'t> {
        let value = self.value();
        self.tape.leaf(value.view(), false)
    }

    /// Replaces the value of a leaf (made by `var`, `tensor`, `constant` or
    /// `constant_tensor`), for [`Tape::replay`]. An error if this variable is not a
    /// leaf or `value` has another shape; nothing changes then.
    pub fn set_value(&self, value: &Tensor) -> Result<()> {
        let mut inner = self.tape.inner.borrow_mut();
        let offset = inner.settable_leaf(self.id() as usize, value)?;
        shared_copy(
            &mut inner.values[offset..offset + value.numel()],
            value.data(),
        );
        Ok(())
    }

    /// Replaces the value of a scalar leaf, for [`Tape::replay`]; an error if this
    /// variable is not a scalar leaf.
    pub fn set_scalar(&self, value: f64) -> Result<()> {
        {
            let mut inner = self.tape.inner.borrow_mut();
            let node = &inner.nodes[self.id() as usize];
            if node.is_leaf() && node.is_scalar() {
                let offset = inner.offset(self.id() as usize);
                inner.values[offset] = value;
                return Ok(());
            }
        }
        self.set_value(&Tensor::scalar(value))
    }

    /// Applies a user [`Function`](crate::Function) or
    /// [`ScalarFunction`](crate::ScalarFunction) to this variable: the function itself
    /// when it is `Clone`, or an `Arc` of it (see [`AsFunction`]).
    ///
    /// Errors: the function's [`output_shape`](crate::Function::output_shape) refuses
    /// the input, or the variable belongs to another tape.
    ///
    /// ```
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
    /// let x = tape.var(3.0);
    /// let f = Cube;
    /// let y = x.apply(&f)?;
    /// assert_eq!(y.item()?, 27.0);
    /// assert_eq!(y.backward()?.wrt_scalar(x)?, 27.0); // 3x²
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    #[track_caller]
    pub fn apply(self, f: &impl AsFunction) -> Result<Var<'t>> {
        self.tape.apply(f, &[self])
    }

    /// Applies a two-input user [`Function`](crate::Function) to this variable and
    /// `other`, in that order: `a.apply2(&f, b)` is `tape.apply(&f, &[a, b])`.
    ///
    /// Errors: as [`apply`](Var::apply), and a variable of another tape.
    ///
    /// ```
    /// use tapegrad::{Function, Result, Shape, Tape, Tensor, TensorRef};
    ///
    /// /// f(a, b) = a·b + a, elementwise.
    /// #[derive(Clone)]
    /// struct MulAdd;
    /// impl Function for MulAdd {
    ///     fn name(&self) -> &str { "mul_add" }
    ///     fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
    ///         Ok(inputs[0].clone())
    ///     }
    ///     fn forward(&self, x: &[TensorRef<'_>], out: &mut [f64]) {
    ///         for ((y, a), b) in out.iter_mut().zip(x[0].data()).zip(x[1].data()) {
    ///             *y = a * b + a;
    ///         }
    ///     }
    ///     fn backward(
    ///         &self,
    ///         x: &[TensorRef<'_>],
    ///         _y: TensorRef<'_>,
    ///         gy: TensorRef<'_>,
    ///     ) -> Result<Vec<Tensor>> {
    ///         let (a, b, g) = (x[0].data(), x[1].data(), gy.data());
    ///         let ga = (0..g.len()).map(|i| g[i] * (b[i] + 1.0)).collect();
    ///         let gb = (0..g.len()).map(|i| g[i] * a[i]).collect();
    ///         Ok(vec![
    ///             Tensor::new(ga, x[0].shape().clone())?,
    ///             Tensor::new(gb, x[1].shape().clone())?,
    ///         ])
    ///     }
    /// }
    ///
    /// let tape = Tape::new();
    /// let (a, b) = (tape.var(2.0), tape.var(5.0));
    /// let y = a.apply2(&MulAdd, b)?;
    /// assert_eq!(y.item()?, 12.0);
    /// let g = y.backward()?;
    /// assert_eq!((g.wrt_scalar(a)?, g.wrt_scalar(b)?), (6.0, 2.0));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    #[track_caller]
    pub fn apply2(self, f: &impl AsFunction, other: Var<'t>) -> Result<Var<'t>> {
        self.tape.apply(f, &[self, other])
    }

    /// Records a built-in op on this variable's tape.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn record(self, op: Op, inputs: &[Var<'t>]) -> Result<Var<'t>> {
        self.tape.record(op, inputs)
    }

    /// Records a unary elementwise built-in op (it cannot fail) on this variable.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn elementwise<U: Unary + Registered>(self, f: U) -> Var<'t> {
        self.tape.unary_or_panic(f, self)
    }

    /// Records a unary built-in op that cannot fail on a variable of this tape.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn unary(self, op: Op) -> Var<'t> {
        match self.tape.record(op, &[self]) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }
}

impl fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var#{} {}", self.id(), self.value())
    }
}

/// Scalar input variables recorded one after another by [`Tape::vars`], their values in
/// one block of the tape: the vector input x of a function f: ℝⁿ → ℝ written on scalars.
///
/// [`set`](Vars::set) writes new values for [`Tape::replay`], and
/// [`Gradients::wrt_vars`](crate::Gradients::wrt_vars) reads the gradient, each in one
/// copy with no look at the single variables; the results are those of
/// [`Tape::set_scalars`] and [`Gradients::wrt_scalars`](crate::Gradients::wrt_scalars)
/// on the same variables. A `Copy` handle, like [`Var`].
///
/// ```
/// use tapegrad::{Gradients, Tape};
/// let tape = Tape::new();
/// let x = tape.vars(&[1.0, 2.0, 3.0]);
/// // f(x) = Σ xᵢ·xᵢ₊₁
/// let f = x.iter().zip(x.iter().skip(1)).fold(tape.constant(0.0), |f, (a, b)| f + a * b);
/// let (mut grads, mut g) = (Gradients::new(), [0.0; 3]);
/// f.backward_into(&mut grads)?;
/// grads.wrt_vars(x, &mut g)?;
/// assert_eq!((f.item()?, g), (8.0, [2.0, 4.0, 2.0]));
///
/// x.set(&[0.5, -1.0, 4.0])?;
/// tape.replay();
/// f.backward_into(&mut grads)?;
/// grads.wrt_vars(x, &mut g)?;
/// assert_eq!((f.item()?, g), (-4.5, [-1.0, 4.5, -1.0]));
/// assert!(x.set(&[1.0]).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Vars<'t> {
    pub(crate) tape: &'t Tape,
    /// The first variable's node; the others follow it.
    pub(crate) first: NodeId,
    pub(crate) len: usize,
    /// Where the first variable's value (and gradient) sits in the arenas.
    pub(crate) slot: usize,
    /// The variables' node flags; without gradients when recorded under a no-grad
    /// guard: then they are constants.
    pub(crate) flags: u8,
}

impl<'t> Vars<'t> {
    /// False when recorded under a no-grad guard.
    pub(crate) fn requires_grad(&self) -> bool {
        Tape::flags_require_grad(self.flags)
    }

    /// The tape the variables are recorded on.
    pub fn tape(&self) -> &'t Tape {
        self.tape
    }

    /// How many variables there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Variable `i`, or `None` past the end.
    #[allow(unsafe_code)]
    pub fn get(&self, i: usize) -> Option<Var<'t>> {
        (i < self.len).then(|| {
            let hint = Tape::scalar_hint(self.slot + i, self.flags);
            // SAFETY: only `Tape::vars` makes a `Vars`, for the nodes from `first` on,
            // whose values it put in the slots from `slot` on, in the current recording
            // (a `Vars` borrows the tape, so no clear comes between); `i < len`.
            unsafe { Var::with_hint(self.tape, self.first + i as NodeId, hint) }
        })
    }

    /// The variables in order.
    #[allow(unsafe_code)]
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Var<'t>> + ExactSizeIterator + Clone {
        let (tape, first, slot, flags) = (self.tape, self.first, self.slot, self.flags);
        (first..first + self.len as NodeId).map(move |id| {
            let hint = Tape::scalar_hint(slot + (id - first) as usize, flags);
            // SAFETY: as in `get`: node `id` holds slot `slot + (id - first)`.
            unsafe { Var::with_hint(tape, id, hint) }
        })
    }

    /// The variables' current values.
    pub fn values(&self) -> Vec<f64> {
        self.tape.inner.borrow().values[self.slot..self.slot + self.len].to_vec()
    }

    /// Replaces the variables' values, `values[i]` for variable `i`, for
    /// [`Tape::replay`]; an error, changing nothing, if the lengths differ.
    pub fn set(&self, values: &[f64]) -> Result<()> {
        if values.len() != self.len {
            return Err(Error::Invalid {
                op: "set".into(),
                reason: format!("{} variables but {} values", self.len, values.len()),
            });
        }
        let mut inner = self.tape.inner.borrow_mut();
        shared_copy(&mut inner.values[self.slot..self.slot + self.len], values);
        Ok(())
    }
}

impl fmt::Debug for Vars<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
