//! Shapes of tensors and the broadcasting rule that binary ops follow.
//!
//! A [`Shape`] is the list of a tensor's axis lengths, outermost first (row-major). A
//! scalar has the empty shape `[]`. Shapes of rank up to four are stored inline, so
//! building one does not touch the heap.
//!
//! A shape may name more elements than any tensor can hold: `[3, 2⁶³]` is a list of two
//! numbers like any other. Such a shape never gets data. [`Tensor::new`](crate::Tensor::new),
//! a parameter file and every op check the shape they make with
//! [`checked_numel`](Shape::checked_numel) and refuse one that is too large with
//! [`Error::ShapeTooLarge`], so an element count never wraps around.

use crate::error::{Error, Result};
use smallvec::SmallVec;
use std::fmt;

/// The axis lengths of a tensor, outermost first; `[]` is a scalar.
///
/// ```
/// use tapegrad::Shape;
/// let s = Shape::from([2, 3]);
/// assert_eq!(s.rank(), 2);
/// assert_eq!(s.numel(), 6);
/// assert_eq!(s.to_string(), "[2, 3]");
/// assert!(Shape::scalar().is_scalar());
/// ```
#[derive(Clone, Default)]
pub struct Shape(SmallVec<[usize; 4]>);

// Shapes are compared on every recorded op; a short inline loop (and the identity test
// for interned shapes) is much cheaper than the byte comparison `derive` would call.
impl PartialEq for Shape {
    #[inline]
    fn eq(&self, other: &Shape) -> bool {
        std::ptr::eq(self, other)
            || (self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a == b))
    }
}

impl Eq for Shape {}

impl std::hash::Hash for Shape {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0[..].hash(state);
    }
}

impl Shape {
    /// The shape of a scalar: rank 0, one element.
    pub fn scalar() -> Self {
        Shape(SmallVec::new())
    }

    /// The most elements a tensor can hold: a `Vec<f64>` is at most `isize::MAX` bytes.
    pub const MAX_NUMEL: usize = isize::MAX as usize / std::mem::size_of::<f64>();

    /// A shape from its axis lengths. Any lengths are accepted; see
    /// [`try_new`](Shape::try_new) for a shape that is checked to fit a tensor.
    pub fn new(dims: &[usize]) -> Self {
        Shape(SmallVec::from_slice(dims))
    }

    /// A shape from its axis lengths; an error if a tensor of this shape could not exist
    /// (see [`checked_numel`](Shape::checked_numel)).
    ///
    /// ```
    /// use tapegrad::{Error, Shape};
    /// assert_eq!(Shape::try_new(&[2, 3])?.numel(), 6);
    /// let err = Shape::try_new(&[3, 6148914691236517206]).unwrap_err();
    /// assert!(matches!(err, Error::ShapeTooLarge { .. }));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn try_new(dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims);
        shape.check_size("shape")?;
        Ok(shape)
    }

    /// The axis lengths, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The number of elements (1 for a scalar).
    ///
    /// # Panics
    ///
    /// If the product of the axis lengths overflows `usize`. A shape that belongs to a
    /// tensor or to a recorded variable never does; for any other use
    /// [`checked_numel`](Shape::checked_numel).
    pub fn numel(&self) -> usize {
        self.0
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .unwrap_or_else(|| panic!("shape {self} has more elements than a usize can count"))
    }

    /// The number of elements, if a tensor of this shape can exist: `None` when the
    /// product of the axis lengths, an empty axis counted as length 1, exceeds
    /// [`MAX_NUMEL`](Shape::MAX_NUMEL).
    ///
    /// Counting empty axes as 1 keeps every partial product of a valid shape's axis
    /// lengths below the limit, so the index arithmetic of an op on it cannot overflow
    /// even where the shape holds no elements.
    ///
    /// ```
    /// use tapegrad::Shape;
    /// assert_eq!(Shape::from([2, 3]).checked_numel(), Some(6));
    /// assert_eq!(Shape::from([0, 5]).checked_numel(), Some(0));
    /// assert_eq!(Shape::from([3, 6148914691236517206]).checked_numel(), None); // 3·K wraps to 2
    /// assert_eq!(Shape::from([1 << 32, 1 << 32]).checked_numel(), None);
    /// assert_eq!(Shape::from([0, 1 << 32, 1 << 32]).checked_numel(), None);
    /// ```
    pub fn checked_numel(&self) -> Option<usize> {
        let mut nonzero = 1usize;
        let mut empty = false;
        for &d in &self.0 {
            if d == 0 {
                empty = true;
            } else {
                nonzero = nonzero.checked_mul(d).filter(|&n| n <= Shape::MAX_NUMEL)?;
            }
        }
        Some(if empty { 0 } else { nonzero })
    }

    /// The number of elements; [`Error::ShapeTooLarge`] naming `op` when a tensor of
    /// this shape cannot exist (see [`checked_numel`](Shape::checked_numel)).
    pub(crate) fn check_size(&self, op: &str) -> Result<usize> {
        self.checked_numel().ok_or_else(|| Error::ShapeTooLarge {
            op: op.to_string(),
            shape: self.clone(),
        })
    }

    /// True for the rank-0 shape.
    pub fn is_scalar(&self) -> bool {
        self.0.is_empty()
    }

    /// The shape both `self` and `other` broadcast to under NumPy's rule, if any.
    ///
    /// Shapes are aligned at their last axis; a missing leading axis counts as length 1,
    /// and an axis of length 1 stretches to the other's length. The result may be too
    /// large for a tensor (`[3, 1]` with `[1, 2⁶²]`); the ops that broadcast check it.
    ///
    /// ```
    /// use tapegrad::Shape;
    /// let a = Shape::from([3, 1]);
    /// let b = Shape::from([1, 4]);
    /// assert_eq!(a.broadcast(&b), Some(Shape::from([3, 4])));
    /// assert_eq!(Shape::from([2, 3]).broadcast(&Shape::from([3])), Some(Shape::from([2, 3])));
    /// assert_eq!(Shape::from([2]).broadcast(&Shape::from([3])), None);
    /// ```
    pub fn broadcast(&self, other: &Shape) -> Option<Shape> {
        if self == other {
            return Some(self.clone());
        }
        let rank = self.rank().max(other.rank());
        let mut dims = SmallVec::with_capacity(rank);
        for axis in 0..rank {
            let a = self.dim_from_end(rank - 1 - axis);
            let b = other.dim_from_end(rank - 1 - axis);
            dims.push(match (a, b) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => return None,
            });
        }
        Some(Shape(dims))
    }

    /// The length of the axis `k` places from the last (0 = last); 1 past the rank.
    fn dim_from_end(&self, k: usize) -> usize {
        if k < self.rank() {
            self.0[self.rank() - 1 - k]
        } else {
            1
        }
    }

    /// Row-major strides of this shape seen as a broadcast operand of `out`: axes that
    /// are stretched (or missing) get stride 0.
    pub(crate) fn broadcast_strides(&self, out: &Shape) -> SmallVec<[usize; 4]> {
        let rank = out.rank();
        let mut strides = SmallVec::from_elem(0, rank);
        let mut stride = 1;
        for k in 0..self.rank() {
            let axis = rank - 1 - k;
            let dim = self.0[self.rank() - 1 - k];
            if dim != 1 {
                strides[axis] = stride;
            }
            stride *= dim;
        }
        strides
    }

    /// The shape with `axis` removed, or set to 1 when `keepdim`.
    pub(crate) fn reduce_axis(&self, axis: usize, keepdim: bool) -> Shape {
        let mut dims = self.0.clone();
        if keepdim {
            dims[axis] = 1;
        } else {
            dims.remove(axis);
        }
        Shape(dims)
    }

    /// `(outer, len, inner)` around `axis`: the element at `(o, j, i)` sits at
    /// `(o * len + j) * inner + i`.
    pub(crate) fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.0[..axis].iter().product();
        let inner = self.0[axis + 1..].iter().product();
        (outer, self.0[axis], inner)
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape::new(dims)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape::new(&dims)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(SmallVec::from_vec(dims))
    }
}

impl From<&Shape> for Shape {
    fn from(shape: &Shape) -> Self {
        shape.clone()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Walks the elements of a broadcast binary op: for every output element in row-major
/// order, the index of the matching element of each operand.
pub(crate) struct BroadcastIndex {
    dims: SmallVec<[usize; 4]>,
    strides_a: SmallVec<[usize; 4]>,
    strides_b: SmallVec<[usize; 4]>,
    /// When both operands repeat cyclically over the output (the same shape, a scalar,
    /// or a shape equal to the output's trailing axes, like a bias row), their lengths:
    /// then operand index = output index mod length, and no odometer is needed.
    cyclic: Option<(usize, usize)>,
}

/// The operand's length if its elements repeat in order over `out`: its shape, leading
/// ones dropped, equals the trailing axes of `out`.
pub(crate) fn cyclic_len(operand: &Shape, out: &Shape) -> Option<usize> {
    let dims = operand.dims();
    let first = dims.iter().position(|&d| d != 1).unwrap_or(dims.len());
    let tail = &dims[first..];
    let out = out.dims();
    // An inline loop: the slices are a few axes long, too short for memcmp to pay.
    (tail.len() <= out.len()
        && out[out.len() - tail.len()..]
            .iter()
            .zip(tail)
            .all(|(a, b)| a == b))
    .then(|| tail.iter().product())
}

impl BroadcastIndex {
    pub(crate) fn new(a: &Shape, b: &Shape, out: &Shape) -> Self {
        BroadcastIndex {
            dims: out.0.clone(),
            strides_a: a.broadcast_strides(out),
            strides_b: b.broadcast_strides(out),
            cyclic: cyclic_len(a, out).zip(cyclic_len(b, out)),
        }
    }

    /// Calls `f(k, ia, ib)` for every output element `k`.
    #[inline]
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let rank = self.dims.len();
        let total: usize = self.dims.iter().product();
        if total == 0 {
            return;
        }
        if let Some((len_a, len_b)) = self.cyclic {
            let (mut ia, mut ib) = (0usize, 0usize);
            for k in 0..total {
                f(k, ia, ib);
                ia += 1;
                if ia == len_a {
                    ia = 0;
                }
                ib += 1;
                if ib == len_b {
                    ib = 0;
                }
            }
            return;
        }
        let mut counter: SmallVec<[usize; 4]> = SmallVec::from_elem(0, rank);
        let (mut ia, mut ib) = (0usize, 0usize);
        for k in 0..total {
            f(k, ia, ib);
            // Advance the odometer from the last axis.
            for axis in (0..rank).rev() {
                counter[axis] += 1;
                ia += self.strides_a[axis];
                ib += self.strides_b[axis];
                if counter[axis] < self.dims[axis] {
                    break;
                }
                ia -= self.strides_a[axis] * self.dims[axis];
                ib -= self.strides_b[axis] * self.dims[axis];
                counter[axis] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (k, ia, ib) the odometer visits, for comparison with the cyclic walk.
    fn visits(a: &[usize], b: &[usize]) -> Vec<(usize, usize, usize)> {
        let (a, b) = (Shape::new(a), Shape::new(b));
        let out = a.broadcast(&b).unwrap();
        let index = BroadcastIndex::new(&a, &b, &out);
        let mut cyclic = Vec::new();
        index.for_each(|k, ia, ib| cyclic.push((k, ia, ib)));
        let odometer = BroadcastIndex {
            cyclic: None,
            ..index
        };
        let mut general = Vec::new();
        odometer.for_each(|k, ia, ib| general.push((k, ia, ib)));
        assert_eq!(cyclic, general, "{a} with {b}");
        cyclic
    }

    #[test]
    fn the_cyclic_walk_matches_the_odometer() {
        for (a, b) in [
            (&[4, 4][..], &[1, 4][..]),
            (&[2, 3, 4], &[4]),
            (&[2, 3, 4], &[3, 4]),
            (&[2, 3], &[2, 3]),
            (&[], &[2, 3]),
            (&[1, 1, 3], &[2, 3]),
            (&[3, 1], &[1, 4]),
            (&[2, 1, 3], &[4, 1]),
        ] {
            visits(a, b);
            visits(b, a);
        }
        assert_eq!(visits(&[2, 2], &[1, 2])[3], (3, 3, 1));
    }
}
