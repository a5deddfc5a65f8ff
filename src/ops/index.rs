//! Indexing: `narrow`, a contiguous slice of a tensor along one axis, and its inverse,
//! `concat` (with `stack`), which joins tensors along one.

use super::Op;
use crate::error::{Error, Result};
use crate::function::{Function, InputGrads};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;

// ---------------------------------------------------------------------------------------
/// `y = x[…, start..start + len, …]`: the elements at positions `start..start + len`
/// along `axis`, every other axis whole. ∂y/∂x is 1 from each kept element to its
/// source and 0 elsewhere, so backward adds `gy` into that slice of the gradient.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0, 4.0]));
/// let y = x.narrow(0, 1, 2);
/// assert_eq!(y.value(), Tensor::vector([2.0, 3.0]));
/// let g = (y * y).sum().backward()?;
/// assert_eq!(g.wrt(x)?, Tensor::vector([0.0, 4.0, 6.0, 0.0]));
/// assert!(x.try_narrow(0, 3, 2).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Narrow {
    /// The axis sliced.
    pub axis: u32,
    /// The first position kept.
    pub start: u32,
    /// How many positions are kept.
    pub len: u32,
}

impl Default for Narrow {
    fn default() -> Self {
        Narrow {
            axis: 1,
            start: 1,
            len: 2,
        }
    }
}

/// An error unless positions `start..start + len` lie within `axis` (below the rank) of
/// `x`; the sum is not formed, so it cannot overflow.
fn check_range(x: &Shape, axis: usize, start: usize, len: usize) -> Result<()> {
    let length = x.dims()[axis];
    if start > length || len > length - start {
        return Err(Error::Invalid {
            op: "narrow".into(),
            reason: format!(
                "start {start} and length {len} reach past the end of axis {axis}, \
                 of length {length}, in shape {x}; start + length must be at most {length}"
            ),
        });
    }
    Ok(())
}

impl Narrow {
    /// `(outer, source length, inner)` around the axis of an input of `shape`.
    fn layout(&self, shape: &Shape) -> (usize, usize, usize) {
        shape.split_at_axis(self.axis as usize)
    }
}

impl Function for Narrow {
    fn name(&self) -> &str {
        "narrow"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let [x] = inputs else {
            return Err(Error::Arity {
                op: "narrow".into(),
                expected: 1,
                got: inputs.len(),
            });
        };
        let axis = self.axis as usize;
        if axis >= x.rank() {
            return Err(Error::InvalidAxis {
                op: "narrow".into(),
                axis,
                rank: x.rank(),
            });
        }
        check_range(x, axis, self.start as usize, self.len as usize)?;
        let mut dims = x.dims().to_vec();
        dims[axis] = self.len as usize;
        Ok(Shape::from(dims))
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        let (outer, source, inner) = self.layout(inputs[0].shape());
        let (start, len) = (self.start as usize, self.len as usize);
        for o in 0..outer {
            let from = &x[(o * source + start) * inner..][..len * inner];
            out[o * len * inner..][..len * inner].copy_from_slice(from);
        }
    }
    // d/dx narrow(x) = 1 from each kept element to its source
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (outer, source, inner) = self.layout(inputs[0].shape());
        let (start, len) = (self.start as usize, self.len as usize);
        let (gy, g) = (gy.data(), gx.get_mut(0));
        for o in 0..outer {
            let into = &mut g[(o * source + start) * inner..][..len * inner];
            for (acc, v) in into.iter_mut().zip(&gy[o * len * inner..][..len * inner]) {
                *acc += v;
            }
        }
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        // The gradient is gy placed at the slice and zero elsewhere: a product with a
        // constant 0/1 selector matrix along the axis, which stays differentiable.
        let x = inputs[0];
        let shape = x.shape();
        let (outer, source, inner) = self.layout(&shape);
        let (start, len) = (self.start as usize, self.len as usize);
        // selector[j, i] = 1 when source position j receives kept position i.
        let selector_shape = Shape::try_new(&[source, len])?;
        let mut selector = vec![0.0; selector_shape.numel()];
        for i in 0..len {
            selector[(start + i) * len + i] = 1.0;
        }
        let selector = x
            .tape()
            .constant_tensor(&Tensor::new(selector, selector_shape)?);
        // Move the axis last, multiply by the selector's transpose, move it back.
        let g = gy.try_reshape([outer, len, inner])?.try_transpose()?;
        let g = g.try_matmul(selector.try_transpose()?)?.try_transpose()?;
        Ok(vec![g.try_reshape(shape.dims())?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        let x = Tensor::new((0..24).map(|v| v as f64 * 0.25 - 3.0).collect(), [2, 4, 3]);
        vec![vec![x.expect("24 values")]]
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The elements `start..start + len` along `axis`, the other axes whole (see
    /// [`Narrow`]).
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank or the positions are out of range, with the error's
    /// message; [`try_narrow`](Var::try_narrow) returns the error.
    #[track_caller]
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Var<'t> {
        super::or_panic(self.try_narrow(axis, start, len))
    }

    /// The positions `start..start + len` along `axis`; an error if the axis or the
    /// positions are out of range, naming the axis and its length, or if a position
    /// is 2³² or more.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0]));
    /// assert_eq!(
    ///     x.try_narrow(0, usize::MAX, 2).unwrap_err().to_string(),
    ///     "narrow: start 18446744073709551615 and length 2 reach past the end of axis 0, \
    ///      of length 3, in shape [3]; start + length must be at most 3"
    /// );
    /// ```
    #[track_caller]
    pub fn try_narrow(self, axis: usize, start: usize, len: usize) -> Result<Var<'t>> {
        let shape = self.shape();
        if axis >= shape.rank() {
            return Err(Error::InvalidAxis {
                op: "narrow".into(),
                axis,
                rank: shape.rank(),
            });
        }
        check_range(&shape, axis, start, len)?;
        // Within range, so only an axis of 2³² or more can hold such a position.
        let field = |name: &'static str, value: usize| {
            u32::try_from(value).map_err(|_| Error::Invalid {
                op: "narrow".into(),
                reason: format!(
                    "{name} {value} is 2³² or more; narrow takes axes and positions below 2³²"
                ),
            })
        };
        let op = Narrow {
            axis: field("axis", axis)?,
            start: field("start", start)?,
            len: field("len", len)?,
        };
        self.record(Op::Narrow(op), &[self])
    }
}

// ---------------------------------------------------------------------------------------
/// The inputs joined end to end along `axis` (PyTorch's `torch.cat`, NumPy's
/// `concatenate`): every other axis has one length in all inputs, and the output's
/// `axis` is the sum of theirs. ∂y/∂xᵢ is 1 from each element to its place in the
/// output, so each input's gradient is its slice of `gy` (a [`Narrow`]).
///
/// ```
/// use tapegrad::{Tape, Tensor, Var};
/// let tape = Tape::new();
/// let a = tape.tensor(&Tensor::matrix(&[[1.0, 2.0], [3.0, 4.0]])?);
/// let b = tape.tensor(&Tensor::matrix(&[[5.0], [6.0]])?);
/// let y = Var::concat(&[a, b], 1);
/// assert_eq!(y.value(), Tensor::matrix(&[[1.0, 2.0, 5.0], [3.0, 4.0, 6.0]])?);
/// let w = tape.constant_tensor(&Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])?);
/// let g = (y * w).sum().backward()?;
/// assert_eq!(g.wrt(a)?, Tensor::matrix(&[[1.0, 2.0], [4.0, 5.0]])?);
/// assert_eq!(g.wrt(b)?, Tensor::matrix(&[[3.0], [6.0]])?);
/// assert!(Var::try_concat(&[a, b], 0).is_err()); // axis 1 differs: 2 and 1
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Concat {
    /// The axis the inputs are joined along.
    pub axis: usize,
}

impl Default for Concat {
    fn default() -> Self {
        Concat { axis: 1 }
    }
}

impl Function for Concat {
    fn name(&self) -> &str {
        "concat"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let invalid = |reason: String| Error::Invalid {
            op: "concat".into(),
            reason,
        };
        let Some(first) = inputs.first() else {
            return Err(invalid("needs at least one input".into()));
        };
        if self.axis >= first.rank() {
            return Err(Error::InvalidAxis {
                op: "concat".into(),
                axis: self.axis,
                rank: first.rank(),
            });
        }
        let mut dims = first.dims().to_vec();
        for x in &inputs[1..] {
            let fits = x.rank() == first.rank()
                && (0..x.rank()).all(|k| k == self.axis || x.dims()[k] == first.dims()[k]);
            if !fits {
                return Err(invalid(format!(
                    "shapes {first} and {x} differ off axis {}",
                    self.axis
                )));
            }
            dims[self.axis] += x.dims()[self.axis];
        }
        Ok(Shape::new(&dims))
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let (outer, total, inner) = split(inputs, self.axis);
        let mut at = 0;
        for x in inputs {
            let len = x.shape().dims()[self.axis];
            for o in 0..outer {
                out[(o * total + at) * inner..][..len * inner]
                    .copy_from_slice(&x.data()[o * len * inner..][..len * inner]);
            }
            at += len;
        }
    }
    // d/dx concat(x…) = 1 from each element to its place: each input gets its slice
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (outer, total, inner) = split(inputs, self.axis);
        let gy = gy.data();
        let mut at = 0;
        for (i, x) in inputs.iter().enumerate() {
            let len = x.shape().dims()[self.axis];
            if gx.needs(i) {
                let g = gx.get_mut(i);
                for o in 0..outer {
                    let from = &gy[(o * total + at) * inner..][..len * inner];
                    for (acc, v) in g[o * len * inner..][..len * inner].iter_mut().zip(from) {
                        *acc += v;
                    }
                }
            }
            at += len;
        }
        Ok(())
    }
    backward_via_accumulate!();
    // each input's gradient is gy narrowed to its slice
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let mut at = 0;
        let mut grads = Vec::with_capacity(inputs.len());
        for x in inputs {
            let len = x.shape().dims()[self.axis];
            grads.push(gy.try_narrow(self.axis, at, len)?);
            at += len;
        }
        Ok(grads)
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        let t = |n: usize, shape: [usize; 2]| {
            Tensor::new((0..n).map(|v| v as f64 * 0.45 - 2.0).collect(), shape).expect("fits")
        };
        vec![
            vec![t(6, [2, 3]), t(4, [2, 2])],
            vec![t(2, [2, 1]), t(8, [2, 4])],
        ]
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0), (-3.0, 3.0)]
    }
}

/// (outer, total length along `axis`, inner) of the output of a concatenation.
fn split(inputs: &[TensorRef<'_>], axis: usize) -> (usize, usize, usize) {
    let (outer, _, inner) = inputs[0].shape().split_at_axis(axis);
    let total = inputs.iter().map(|x| x.shape().dims()[axis]).sum();
    (outer, total, inner)
}

impl<'t> Var<'t> {
    /// The variables joined along `axis` (see [`Concat`]); every other axis must have
    /// one length in all of them.
    ///
    /// # Panics
    ///
    /// With no variables, `axis` not below their rank, shapes that differ off `axis`,
    /// or variables of different tapes, with the error's message;
    /// [`try_concat`](Var::try_concat) returns the error.
    #[track_caller]
    pub fn concat(xs: &[Var<'t>], axis: usize) -> Var<'t> {
        super::or_panic(Var::try_concat(xs, axis))
    }

    /// The variables joined along `axis` (see [`Concat`]); an error with no variables,
    /// `axis` not below their rank, or shapes that differ off `axis`.
    #[track_caller]
    pub fn try_concat(xs: &[Var<'t>], axis: usize) -> Result<Var<'t>> {
        let Some(first) = xs.first() else {
            return Err(Error::Invalid {
                op: "concat".into(),
                reason: "needs at least one input".into(),
            });
        };
        first.record(Op::Concat(Concat { axis }), xs)
    }

    /// The variables, of one shape, stacked along a new axis at `axis` (PyTorch's
    /// `torch.stack`): n inputs of shape `[a, b]` stacked at axis 1 give `[a, n, b]`.
    /// Recorded as a reshape of each (inserting the axis, of length 1) and a
    /// [`concat`](Var::concat).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor, Var};
    /// let tape = Tape::new();
    /// let a = tape.tensor(&Tensor::vector([1.0, 2.0]));
    /// let b = tape.tensor(&Tensor::vector([3.0, 4.0]));
    /// let rows = Var::stack(&[a, b], 0);
    /// assert_eq!(rows.value(), Tensor::matrix(&[[1.0, 2.0], [3.0, 4.0]])?);
    /// let columns = Var::stack(&[a, b], 1);
    /// assert_eq!(columns.value(), Tensor::matrix(&[[1.0, 3.0], [2.0, 4.0]])?);
    /// let g = (columns * columns).sum().backward()?;
    /// assert_eq!(g.wrt(b)?, Tensor::vector([6.0, 8.0]));
    /// assert!(Var::try_stack(&[a, b], 2).is_err()); // past the new rank
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// With no variables, shapes that differ, `axis` above their rank, or variables of
    /// different tapes, with the error's message; [`try_stack`](Var::try_stack) returns
    /// the error.
    #[track_caller]
    pub fn stack(xs: &[Var<'t>], axis: usize) -> Var<'t> {
        super::or_panic(Var::try_stack(xs, axis))
    }

    /// The variables stacked along a new axis at `axis` (see [`stack`](Var::stack)); an
    /// error with no variables, shapes that differ, `axis` above their rank, or
    /// variables of different tapes, with nothing recorded.
    #[track_caller]
    pub fn try_stack(xs: &[Var<'t>], axis: usize) -> Result<Var<'t>> {
        let invalid = |reason: String| Error::Invalid {
            op: "stack".into(),
            reason,
        };
        let Some(first) = xs.first() else {
            return Err(invalid("needs at least one input".into()));
        };
        let shape = first.shape();
        if axis > shape.rank() {
            return Err(Error::InvalidAxis {
                op: "stack".into(),
                axis,
                rank: shape.rank() + 1,
            });
        }
        for x in xs {
            if !std::ptr::eq(x.tape(), first.tape()) {
                return Err(Error::ForeignVariable { op: "stack".into() });
            }
            if x.shape() != shape {
                return Err(invalid(format!(
                    "shapes {shape} and {} differ; stacked variables have one shape",
                    x.shape()
                )));
            }
        }
        let mut dims = shape.dims().to_vec();
        dims.insert(axis, 1);
        let with_axis = Shape::new(&dims);
        let parts = xs
            .iter()
            .map(|x| x.try_reshape(with_axis.clone()))
            .collect::<Result<Vec<_>>>()?;
        Var::try_concat(&parts, axis)
    }
}
