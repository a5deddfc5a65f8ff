//! Owned tensors: the values that go onto a tape and the values and gradients that come
//! back from it.
//!
//! A [`Tensor`] is a row-major `Vec<f64>` with a [`Shape`]. A [`TensorRef`] is the
//! borrowed view a [`Function`](crate::Function) sees of its inputs, output and
//! gradients. Tensors implement the `approx` traits, so tests can write
//! `assert_relative_eq!(grad, expected)`.

use crate::error::{Error, Result};
use crate::shape::Shape;
use std::fmt;

/// A dense, row-major tensor of `f64` values.
///
/// ```
/// use tapegrad::Tensor;
/// let t = Tensor::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
/// assert_eq!(t.shape().dims(), &[2, 3]);
/// assert_eq!(t.get(&[1, 0]), Some(4.0));
/// assert!(Tensor::new(vec![1.0, 2.0], [3]).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor {
    data: Vec<f64>,
    shape: Shape,
}

impl Tensor {
    /// A tensor from row-major data and a shape; an error if the lengths disagree, or
    /// [`Error::ShapeTooLarge`] if no tensor can have that shape.
    ///
    /// ```
    /// use tapegrad::{Error, Tensor};
    /// let err = Tensor::new(vec![1.0, 2.0], [3, 6148914691236517206]).unwrap_err();
    /// assert!(matches!(err, Error::ShapeTooLarge { .. }));
    /// ```
    pub fn new(data: Vec<f64>, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let expected = shape.check_size("tensor")?;
        if data.len() != expected {
            return Err(Error::DataLength {
                expected,
                got: data.len(),
                shape,
            });
        }
        Ok(Tensor { data, shape })
    }

    /// A rank-0 tensor holding one number.
    pub fn scalar(value: f64) -> Tensor {
        Tensor {
            data: vec![value],
            shape: Shape::scalar(),
        }
    }

    /// A rank-1 tensor from a list of numbers.
    ///
    /// ```
    /// use tapegrad::Tensor;
    /// let v = Tensor::vector([1.0, 2.0]);
    /// assert_eq!(v.shape().dims(), &[2]);
    /// ```
    pub fn vector(values: impl Into<Vec<f64>>) -> Tensor {
        let data = values.into();
        let shape = Shape::new(&[data.len()]);
        Tensor { data, shape }
    }

    /// A rank-2 tensor from rows of equal length; errors if the rows differ in length.
    ///
    /// ```
    /// use tapegrad::Tensor;
    /// let m = Tensor::matrix(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])?;
    /// assert_eq!(m.shape().dims(), &[3, 2]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn matrix<R: AsRef<[f64]>>(rows: &[R]) -> Result<Tensor> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let data: Vec<f64> = rows
            .iter()
            .flat_map(|r| r.as_ref().iter().copied())
            .collect();
        Tensor::new(data, [rows.len(), cols])
    }

    /// A tensor of the given shape filled with `value`.
    ///
    /// # Panics
    ///
    /// If no tensor can have `shape` (see [`Shape::checked_numel`]); use
    /// [`Tensor::new`] for an error instead.
    #[track_caller]
    pub fn full(shape: impl Into<Shape>, value: f64) -> Tensor {
        let shape = shape.into();
        let n = match shape.check_size("Tensor::full") {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        Tensor {
            data: vec![value; n],
            shape,
        }
    }

    /// A tensor of zeros.
    ///
    /// # Panics
    ///
    /// If no tensor can have `shape`, as [`Tensor::full`].
    #[track_caller]
    pub fn zeros(shape: impl Into<Shape>) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    ///
    /// # Panics
    ///
    /// If no tensor can have `shape`, as [`Tensor::full`].
    #[track_caller]
    pub fn ones(shape: impl Into<Shape>) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The values in row-major order, mutably.
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// The values, giving up the tensor.
    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The single value of a one-element tensor; errors otherwise.
    pub fn item(&self) -> Result<f64> {
        self.view().item()
    }

    /// The element at a multi-index, or `None` if the index is out of range.
    pub fn get(&self, index: &[usize]) -> Option<f64> {
        if index.len() != self.shape.rank() {
            return None;
        }
        let mut flat = 0;
        for (&i, &d) in index.iter().zip(self.shape.dims()) {
            if i >= d {
                return None;
            }
            flat = flat * d + i;
        }
        self.data.get(flat).copied()
    }

    /// A new tensor with `f` applied to every element.
    pub fn map(&self, f: impl FnMut(f64) -> f64) -> Tensor {
        Tensor {
            data: self.data.iter().copied().map(f).collect(),
            shape: self.shape.clone(),
        }
    }

    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorRef<'_> {
        TensorRef {
            data: &self.data,
            shape: &self.shape,
        }
    }
}

impl From<f64> for Tensor {
    fn from(value: f64) -> Self {
        Tensor::scalar(value)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{} {:?}", self.shape, self.data)
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.view(), f)
    }
}

/// A borrowed tensor: values and shape. This is what a [`Function`](crate::Function)
/// receives for its inputs, its output and the upstream gradient.
#[derive(Clone, Copy)]
pub struct TensorRef<'a> {
    data: &'a [f64],
    shape: &'a Shape,
}

impl<'a> TensorRef<'a> {
    /// A view of `data` with `shape`; an error if the lengths disagree, or
    /// [`Error::ShapeTooLarge`] if no tensor can have that shape.
    pub fn new(data: &'a [f64], shape: &'a Shape) -> Result<Self> {
        let expected = shape.check_size("tensor")?;
        if data.len() != expected {
            return Err(Error::DataLength {
                shape: shape.clone(),
                expected,
                got: data.len(),
            });
        }
        Ok(TensorRef { data, shape })
    }

    /// Trusted constructor for views cut from the tape's arena.
    pub(crate) fn from_parts(data: &'a [f64], shape: &'a Shape) -> Self {
        debug_assert_eq!(data.len(), shape.numel());
        TensorRef { data, shape }
    }

    /// The values in row-major order.
    pub fn data(&self) -> &'a [f64] {
        self.data
    }

    /// The shape.
    pub fn shape(&self) -> &'a Shape {
        self.shape
    }

    /// The single value of a one-element view; errors otherwise.
    pub fn item(&self) -> Result<f64> {
        if self.data.len() == 1 {
            Ok(self.data[0])
        } else {
            Err(Error::NotScalar {
                op: "item".into(),
                shape: self.shape.clone(),
            })
        }
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            data: self.data.to_vec(),
            shape: self.shape.clone(),
        }
    }
}

impl fmt::Debug for TensorRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorRef{} {:?}", self.shape, self.data)
    }
}

impl fmt::Display for TensorRef<'_> {
    /// Scalars print as a plain number; other tensors as nested brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn nested(f: &mut fmt::Formatter<'_>, dims: &[usize], data: &[f64]) -> fmt::Result {
            match dims.split_first() {
                None => write!(f, "{}", data[0]),
                Some((&n, rest)) => {
                    let step = rest.iter().product::<usize>();
                    write!(f, "[")?;
                    for i in 0..n {
                        if i > 0 {
                            write!(f, ", ")?;
                        }
                        nested(f, rest, &data[i * step..(i + 1) * step])?;
                    }
                    write!(f, "]")
                }
            }
        }
        nested(f, self.shape.dims(), self.data)
    }
}

impl approx::AbsDiffEq for Tensor {
    type Epsilon = f64;

    fn default_epsilon() -> f64 {
        f64::EPSILON
    }

    /// Equal shapes and every pair of elements within `epsilon`.
    fn abs_diff_eq(&self, other: &Self, epsilon: f64) -> bool {
        self.shape == other.shape
            && self
                .data
                .iter()
                .zip(&other.data)
                .all(|(a, b)| a.abs_diff_eq(b, epsilon))
    }
}

impl approx::RelativeEq for Tensor {
    fn default_max_relative() -> f64 {
        f64::EPSILON
    }

    /// Equal shapes and every pair of elements relatively equal.
    fn relative_eq(&self, other: &Self, epsilon: f64, max_relative: f64) -> bool {
        self.shape == other.shape
            && self
                .data
                .iter()
                .zip(&other.data)
                .all(|(a, b)| a.relative_eq(b, epsilon, max_relative))
    }
}

impl approx::UlpsEq for Tensor {
    fn default_max_ulps() -> u32 {
        4
    }

    /// Equal shapes and every pair of elements within `max_ulps` units in the last place.
    fn ulps_eq(&self, other: &Self, epsilon: f64, max_ulps: u32) -> bool {
        self.shape == other.shape
            && self
                .data
                .iter()
                .zip(&other.data)
                .all(|(a, b)| a.ulps_eq(b, epsilon, max_ulps))
    }
}
