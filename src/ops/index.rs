//! Indexing: `narrow`, a contiguous slice of a tensor along one axis.

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
