//! Reductions: `sum`, `mean`, `max` and `min`, over all elements or along one axis.
//!
//! `max` sends the gradient to the maximal elements; when several elements tie for the
//! maximum, they share it equally (the subgradient JAX and PyTorch's `amax` use). A NaN
//! element makes the maximum NaN. `min` is the same with the minimal elements.
//!
//! The graph forms of the backward rules (for [`Var::grad_graph`]) hand the upstream
//! gradient back to every element by multiplying it with a tensor of ones of the input's
//! shape; `max` builds its mask with [`equal`](Var::equal) and divides by the number of
//! ties, so it records the same numbers as its first-order rule. A reduction along an
//! axis that removes the axis (`keepdim = false`) puts it back with a reshape.

use super::Op;
use crate::error::{Error, Result};
use crate::function::{Function, InputGrads};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;

fn one_input(name: &str, inputs: &[&Shape]) -> Result<Shape> {
    match inputs {
        [x] => Ok((*x).clone()),
        _ => Err(Error::Arity {
            op: name.to_string(),
            expected: 1,
            got: inputs.len(),
        }),
    }
}

fn axis_shape(name: &str, inputs: &[&Shape], axis: usize, keepdim: bool) -> Result<Shape> {
    let x = one_input(name, inputs)?;
    if axis >= x.rank() {
        return Err(Error::InvalidAxis {
            op: name.to_string(),
            axis,
            rank: x.rank(),
        });
    }
    Ok(x.reduce_axis(axis, keepdim))
}

/// An error unless `x` has an element: the mean and the maximum of none are undefined
/// (0/0 and −∞ if computed), so they are refused rather than returned.
fn non_empty(name: &str, what: &str, x: &Shape) -> Result<()> {
    if x.numel() == 0 {
        return Err(Error::Invalid {
            op: name.to_string(),
            reason: format!(
                "the {what} of an empty tensor (shape {x}) is undefined; give at least one element"
            ),
        });
    }
    Ok(())
}

/// [`axis_shape`], and an error if `axis` is empty: the mean and the maximum along no
/// elements are undefined.
fn non_empty_axis_shape(
    name: &str,
    what: &str,
    inputs: &[&Shape],
    axis: usize,
    keepdim: bool,
) -> Result<Shape> {
    let shape = axis_shape(name, inputs, axis, keepdim)?;
    let x = inputs[0];
    if x.dims()[axis] == 0 {
        return Err(Error::Invalid {
            op: name.to_string(),
            reason: format!(
                "axis {axis} of shape {x} is empty, and the {what} of no elements is undefined"
            ),
        });
    }
    Ok(shape)
}

/// The value of `values` that no other beats (`beats(v, m)`), starting from `start`;
/// NaN if any value is NaN.
#[inline]
fn nan_extremum(
    values: impl Iterator<Item = f64>,
    start: f64,
    beats: impl Fn(f64, f64) -> bool,
) -> f64 {
    let mut m = start;
    for v in values {
        if v.is_nan() {
            return f64::NAN;
        }
        if beats(v, m) {
            m = v;
        }
    }
    m
}

fn nan_max(values: impl Iterator<Item = f64>) -> f64 {
    nan_extremum(values, f64::NEG_INFINITY, |v, m| v > m)
}

fn nan_min(values: impl Iterator<Item = f64>) -> f64 {
    nan_extremum(values, f64::INFINITY, |v, m| v < m)
}

/// The backward rule of `max` and `min` over all elements: `gy` shared equally by the
/// elements of `x` equal to the result `y`.
fn extremum_backward(x: &[f64], y: f64, gy: f64, g: &mut [f64]) {
    let ties = x.iter().filter(|&&v| v == y).count();
    if ties > 0 {
        let share = gy / ties as f64;
        for (acc, &v) in g.iter_mut().zip(x) {
            if v == y {
                *acc += share;
            }
        }
    }
}

/// The backward rule of `max_axis` and `min_axis`: each output's gradient shared equally
/// by the elements along `axis` equal to that output.
fn extremum_axis_backward(
    shape: &Shape,
    axis: usize,
    x: &[f64],
    y: &[f64],
    gy: &[f64],
    g: &mut [f64],
) {
    let (outer, len, inner) = shape.split_at_axis(axis);
    for o in 0..outer {
        for i in 0..inner {
            let m = y[o * inner + i];
            let at = |j: usize| (o * len + j) * inner + i;
            let ties = (0..len).filter(|&j| x[at(j)] == m).count();
            if ties == 0 {
                continue;
            }
            let share = gy[o * inner + i] / ties as f64;
            for j in (0..len).filter(|&j| x[at(j)] == m) {
                g[at(j)] += share;
            }
        }
    }
}

/// The extremum ([`nan_extremum`]) of the elements along `axis`, for every position of
/// the other axes.
fn extremum_axis_forward(
    x: TensorRef<'_>,
    axis: usize,
    out: &mut [f64],
    start: f64,
    beats: impl Fn(f64, f64) -> bool + Copy,
) {
    let (outer, len, inner) = x.shape().split_at_axis(axis);
    let x = x.data();
    for o in 0..outer {
        for i in 0..inner {
            let along = (0..len).map(|j| x[(o * len + j) * inner + i]);
            out[o * inner + i] = nan_extremum(along, start, beats);
        }
    }
}

fn matrix_points() -> Vec<Vec<Tensor>> {
    vec![
        vec![Tensor::new(vec![0.5, -1.0, 2.0, 3.5, 0.25, -2.0], [2, 3]).expect("6 values")],
        vec![Tensor::vector([1.0, -4.0, 2.5, 0.0])],
    ]
}

/// `v` broadcast to `shape` (multiplied by ones of that shape): the graph form of handing
/// an upstream gradient to every element it was reduced from.
fn broadcast_to<'t>(v: Var<'t>, shape: &Shape) -> Result<Var<'t>> {
    v.tape()
        .constant_tensor(&Tensor::ones(shape.clone()))
        .try_mul(v)
}

/// A reduction's output (or upstream gradient) `v` with its reduced axis in place, of
/// length 1, so that it broadcasts against the input of shape `x`.
fn with_axis<'t>(v: Var<'t>, x: &Shape, axis: usize, keepdim: bool) -> Result<Var<'t>> {
    if keepdim {
        Ok(v)
    } else {
        v.try_reshape(x.reduce_axis(axis, true))
    }
}

/// The graph form of a maximum's backward: `gy` shared by the elements of `x` equal to
/// the maximum `y` (both already broadcastable against `x`), ties counted by `count`.
/// Where nothing equals the maximum (a NaN), the gradient is 0, as in the first-order
/// rule: the count is raised from 0 to 1 before dividing.
fn max_graph<'t>(
    x: Var<'t>,
    y: Var<'t>,
    gy: Var<'t>,
    count: impl Fn(Var<'t>) -> Result<Var<'t>>,
) -> Result<Var<'t>> {
    let mask = x.try_equal(y)?;
    let ties = count(mask)?;
    let ties = ties.try_add(ties.try_equal(x.tape().constant(0.0))?)?;
    mask.try_mul(gy.try_div(ties)?)
}

// ---------------------------------------------------------------------------------------
/// `y = Σᵢ xᵢ` over all elements (a scalar). ∂y/∂xᵢ = 1.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0]));
/// let y = x.sum();
/// assert_eq!(y.item()?, 6.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([1.0, 1.0, 1.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum;

impl Function for Sum {
    fn name(&self) -> &str {
        "sum"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        one_input("sum", inputs).map(|_| Shape::scalar())
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out[0] = inputs[0].data().iter().sum();
    }
    // d/dxᵢ Σx = 1
    fn backward_accumulate(
        &self,
        _inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let gy = gy.data()[0];
        gx.get_mut(0).iter_mut().for_each(|g| *g += gy);
        Ok(())
    }
    backward_via_accumulate!();
    // d/dxᵢ Σx = 1: gy handed to every element
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        Ok(vec![broadcast_to(gy, &inputs[0].shape())?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = (1/n) Σᵢ xᵢ` over all n elements (a scalar). ∂y/∂xᵢ = 1/n.
///
/// The mean of an empty tensor is undefined: [`Var::try_mean`] returns an error for
/// one, and [`Var::mean`] panics.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0, 6.0]));
/// let y = x.mean();
/// assert_eq!(y.item()?, 3.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([0.25; 4]));
/// let empty = tape.tensor(&Tensor::vector([]));
/// assert!(empty.try_mean().is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean;

impl Function for Mean {
    fn name(&self) -> &str {
        "mean"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        non_empty("mean", "mean", &one_input("mean", inputs)?)?;
        Ok(Shape::scalar())
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        out[0] = x.iter().sum::<f64>() / x.len() as f64;
    }
    // d/dxᵢ (1/n)Σx = 1/n
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let g = gy.data()[0] / inputs[0].data().len() as f64;
        gx.get_mut(0).iter_mut().for_each(|acc| *acc += g);
        Ok(())
    }
    backward_via_accumulate!();
    // d/dxᵢ (1/n)Σx = 1/n
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let shape = inputs[0].shape();
        Ok(vec![broadcast_to(gy / shape.numel() as f64, &shape)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = maxᵢ xᵢ` over all elements (a scalar). ∂y/∂xᵢ = 1/k for the k elements equal to
/// the maximum, 0 for the others.
///
/// The maximum of an empty tensor is undefined: [`Var::try_max`] returns an error for
/// one, and [`Var::max`] panics.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 3.0, 3.0, 2.0]));
/// let y = x.max();
/// assert_eq!(y.item()?, 3.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([0.0, 0.5, 0.5, 0.0]));
/// let empty = tape.tensor(&Tensor::vector([]));
/// assert!(empty.try_max().is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Max;

impl Function for Max {
    fn name(&self) -> &str {
        "max"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        non_empty("max", "maximum", &one_input("max", inputs)?)?;
        Ok(Shape::scalar())
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out[0] = nan_max(inputs[0].data().iter().copied());
    }
    // d/dxᵢ max x = [xᵢ = max] / #ties
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        extremum_backward(inputs[0].data(), y.data()[0], gy.data()[0], gx.get_mut(0));
        Ok(())
    }
    backward_via_accumulate!();
    // d/dxᵢ max x = [xᵢ = max] / #ties, the mask recorded with `equal`
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        Ok(vec![max_graph(inputs[0], y, gy, |mask| Ok(mask.sum()))?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = minᵢ xᵢ` over all elements (a scalar). ∂y/∂xᵢ = 1/k for the k elements equal to
/// the minimum, 0 for the others (ties share the gradient, as for [`Max`]).
///
/// The minimum of an empty tensor is undefined: [`Var::try_min`] returns an error for
/// one, and [`Var::min`] panics.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([2.0, -1.0, 4.0, -1.0]));
/// let y = x.min();
/// assert_eq!(y.item()?, -1.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([0.0, 0.5, 0.0, 0.5]));
/// assert!(tape.tensor(&Tensor::vector([])).try_min().is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Min;

impl Function for Min {
    fn name(&self) -> &str {
        "min"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        non_empty("min", "minimum", &one_input("min", inputs)?)?;
        Ok(Shape::scalar())
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out[0] = nan_min(inputs[0].data().iter().copied());
    }
    // d/dxᵢ min x = [xᵢ = min] / #ties
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        extremum_backward(inputs[0].data(), y.data()[0], gy.data()[0], gx.get_mut(0));
        Ok(())
    }
    backward_via_accumulate!();
    // d/dxᵢ min x = [xᵢ = min] / #ties, the mask recorded with `equal`
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        Ok(vec![max_graph(inputs[0], y, gy, |mask| Ok(mask.sum()))?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The sum of all elements, a scalar.
    #[track_caller]
    pub fn sum(self) -> Var<'t> {
        self.unary(Op::Sum(Sum))
    }

    /// The mean of all elements, a scalar.
    ///
    /// # Panics
    ///
    /// If the tensor has no elements; [`try_mean`](Var::try_mean) returns the error.
    #[track_caller]
    pub fn mean(self) -> Var<'t> {
        self.unary(Op::Mean(Mean))
    }

    /// The mean of all elements, a scalar; an error if there are none.
    #[track_caller]
    pub fn try_mean(self) -> Result<Var<'t>> {
        self.record(Op::Mean(Mean), &[self])
    }

    /// The largest element, a scalar; ties share the gradient.
    ///
    /// # Panics
    ///
    /// If the tensor has no elements; [`try_max`](Var::try_max) returns the error.
    #[track_caller]
    pub fn max(self) -> Var<'t> {
        self.unary(Op::Max(Max))
    }

    /// The largest element, a scalar; ties share the gradient; an error if there are
    /// no elements.
    #[track_caller]
    pub fn try_max(self) -> Result<Var<'t>> {
        self.record(Op::Max(Max), &[self])
    }

    /// The smallest element, a scalar; ties share the gradient.
    ///
    /// # Panics
    ///
    /// If the tensor has no elements; [`try_min`](Var::try_min) returns the error.
    #[track_caller]
    pub fn min(self) -> Var<'t> {
        self.unary(Op::Min(Min))
    }

    /// The smallest element, a scalar; ties share the gradient; an error if there are
    /// no elements.
    #[track_caller]
    pub fn try_min(self) -> Result<Var<'t>> {
        self.record(Op::Min(Min), &[self])
    }
}

// ---------------------------------------------------------------------------------------
/// Sum along one axis; the axis is removed, or kept with length 1 when `keepdim`.
/// ∂y/∂x = 1 for every element summed into y.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])?);
/// assert_eq!(x.sum_axis(0, false).value(), Tensor::vector([5.0, 7.0, 9.0]));
/// assert_eq!(x.sum_axis(1, true).value(), Tensor::matrix(&[[6.0], [15.0]])?);
/// assert!(x.try_sum_axis(2, false).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SumAxis {
    /// The axis summed over.
    pub axis: usize,
    /// Keep the axis with length 1.
    pub keepdim: bool,
}

impl Function for SumAxis {
    fn name(&self) -> &str {
        "sum_axis"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        axis_shape("sum_axis", inputs, self.axis, self.keepdim)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        out.fill(0.0);
        for o in 0..outer {
            for j in 0..len {
                let row = &x[(o * len + j) * inner..][..inner];
                for (acc, v) in out[o * inner..][..inner].iter_mut().zip(row) {
                    *acc += v;
                }
            }
        }
    }
    // d/dx_(o,j,i) Σⱼ x = 1
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        spread(gx.get_mut(0), gy.data(), outer, len, inner, 1.0);
        Ok(())
    }
    backward_via_accumulate!();
    // d/dx_(o,j,i) Σⱼ x = 1: gy, its axis put back, handed along the axis
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let shape = inputs[0].shape();
        let gy = with_axis(gy, &shape, self.axis, self.keepdim)?;
        Ok(vec![broadcast_to(gy, &shape)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

/// Adds `scale · gy[o, i]` to every `g[o, j, i]`: the backward of a sum along an axis.
fn spread(g: &mut [f64], gy: &[f64], outer: usize, len: usize, inner: usize, scale: f64) {
    for o in 0..outer {
        let gy_row = &gy[o * inner..][..inner];
        for j in 0..len {
            for (acc, &gy) in g[(o * len + j) * inner..][..inner].iter_mut().zip(gy_row) {
                *acc += scale * gy;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
/// Mean along one axis of length n; the axis is removed, or kept with length 1 when
/// `keepdim`. ∂y/∂x = 1/n for every element averaged into y.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])?);
/// assert_eq!(x.mean_axis(1, false).value(), Tensor::vector([2.0, 5.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MeanAxis {
    /// The axis averaged over.
    pub axis: usize,
    /// Keep the axis with length 1.
    pub keepdim: bool,
}

impl Function for MeanAxis {
    fn name(&self) -> &str {
        "mean_axis"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        non_empty_axis_shape("mean_axis", "mean", inputs, self.axis, self.keepdim)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        SumAxis {
            axis: self.axis,
            keepdim: self.keepdim,
        }
        .forward(inputs, out);
        let len = inputs[0].shape().dims()[self.axis] as f64;
        out.iter_mut().for_each(|v| *v /= len);
    }
    // d/dx_(o,j,i) (1/n)Σⱼ x = 1/n
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        spread(
            gx.get_mut(0),
            gy.data(),
            outer,
            len,
            inner,
            1.0 / len as f64,
        );
        Ok(())
    }
    backward_via_accumulate!();
    // d/dx_(o,j,i) (1/n)Σⱼ x = 1/n
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let shape = inputs[0].shape();
        let scale = 1.0 / shape.dims()[self.axis] as f64;
        let gy = with_axis(gy, &shape, self.axis, self.keepdim)?;
        Ok(vec![broadcast_to(gy * scale, &shape)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// Maximum along one axis; the axis is removed, or kept with length 1 when `keepdim`.
/// The gradient of each output goes to its maximal elements, shared equally on ties.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[1.0, 7.0], [4.0, 2.0]])?);
/// let y = x.max_axis(1, false);
/// assert_eq!(y.value(), Tensor::vector([7.0, 4.0]));
/// assert_eq!(y.sum().backward()?.wrt(x)?, Tensor::matrix(&[[0.0, 1.0], [1.0, 0.0]])?);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxAxis {
    /// The axis maximised over.
    pub axis: usize,
    /// Keep the axis with length 1.
    pub keepdim: bool,
}

impl Function for MaxAxis {
    fn name(&self) -> &str {
        "max_axis"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        non_empty_axis_shape("max_axis", "maximum", inputs, self.axis, self.keepdim)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        extremum_axis_forward(inputs[0], self.axis, out, f64::NEG_INFINITY, |v, m| v > m);
    }
    // d/dx_(o,j,i) maxⱼ x = [x_(o,j,i) = y_(o,i)] / #ties
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let x = inputs[0];
        let g = gx.get_mut(0);
        extremum_axis_backward(x.shape(), self.axis, x.data(), y.data(), gy.data(), g);
        Ok(())
    }
    backward_via_accumulate!();
    // d/dx_(o,j,i) maxⱼ x = [x_(o,j,i) = y_(o,i)] / #ties
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let (x, axis) = (inputs[0], self.axis);
        let shape = x.shape();
        let y = with_axis(y, &shape, axis, self.keepdim)?;
        let gy = with_axis(gy, &shape, axis, self.keepdim)?;
        Ok(vec![max_graph(x, y, gy, |mask| {
            mask.try_sum_axis(axis, true)
        })?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// Minimum along one axis; the axis is removed, or kept with length 1 when `keepdim`.
/// The gradient of each output goes to its minimal elements, shared equally on ties.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[1.0, 7.0], [4.0, 2.0]])?);
/// let y = x.min_axis(0, true);
/// assert_eq!(y.value(), Tensor::matrix(&[[1.0, 2.0]])?);
/// assert_eq!(y.sum().backward()?.wrt(x)?, Tensor::matrix(&[[1.0, 0.0], [0.0, 1.0]])?);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MinAxis {
    /// The axis minimised over.
    pub axis: usize,
    /// Keep the axis with length 1.
    pub keepdim: bool,
}

impl Function for MinAxis {
    fn name(&self) -> &str {
        "min_axis"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        non_empty_axis_shape("min_axis", "minimum", inputs, self.axis, self.keepdim)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        extremum_axis_forward(inputs[0], self.axis, out, f64::INFINITY, |v, m| v < m);
    }
    // d/dx_(o,j,i) minⱼ x = [x_(o,j,i) = y_(o,i)] / #ties
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let x = inputs[0];
        let g = gx.get_mut(0);
        extremum_axis_backward(x.shape(), self.axis, x.data(), y.data(), gy.data(), g);
        Ok(())
    }
    backward_via_accumulate!();
    // d/dx_(o,j,i) minⱼ x = [x_(o,j,i) = y_(o,i)] / #ties
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let (x, axis) = (inputs[0], self.axis);
        let shape = x.shape();
        let y = with_axis(y, &shape, axis, self.keepdim)?;
        let gy = with_axis(gy, &shape, axis, self.keepdim)?;
        Ok(vec![max_graph(x, y, gy, |mask| {
            mask.try_sum_axis(axis, true)
        })?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The sum along `axis` (kept with length 1 when `keepdim`).
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank, with the error's message;
    /// [`try_sum_axis`](Var::try_sum_axis) returns the error.
    #[track_caller]
    pub fn sum_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        super::or_panic(self.try_sum_axis(axis, keepdim))
    }

    /// The sum along `axis` (kept with length 1 when `keepdim`); an error if `axis` is
    /// not below the rank.
    #[track_caller]
    pub fn try_sum_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::SumAxis(SumAxis { axis, keepdim }), &[self])
    }

    /// The mean along `axis` (kept with length 1 when `keepdim`).
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank or has length 0, with the error's message;
    /// [`try_mean_axis`](Var::try_mean_axis) returns the error.
    #[track_caller]
    pub fn mean_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        super::or_panic(self.try_mean_axis(axis, keepdim))
    }

    /// The mean along `axis` (kept with length 1 when `keepdim`); an error if `axis` is
    /// not below the rank or has length 0.
    #[track_caller]
    pub fn try_mean_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::MeanAxis(MeanAxis { axis, keepdim }), &[self])
    }

    /// The maximum along `axis` (kept with length 1 when `keepdim`); ties share the
    /// gradient.
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank or has length 0, with the error's message;
    /// [`try_max_axis`](Var::try_max_axis) returns the error.
    #[track_caller]
    pub fn max_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        super::or_panic(self.try_max_axis(axis, keepdim))
    }

    /// The maximum along `axis` (kept with length 1 when `keepdim`); ties share the
    /// gradient; an error if `axis` is not below the rank or has length 0.
    #[track_caller]
    pub fn try_max_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::MaxAxis(MaxAxis { axis, keepdim }), &[self])
    }

    /// The minimum along `axis` (kept with length 1 when `keepdim`); ties share the
    /// gradient.
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank or has length 0, with the error's message;
    /// [`try_min_axis`](Var::try_min_axis) returns the error.
    #[track_caller]
    pub fn min_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        super::or_panic(self.try_min_axis(axis, keepdim))
    }

    /// The minimum along `axis` (kept with length 1 when `keepdim`); ties share the
    /// gradient; an error if `axis` is not below the rank or has length 0.
    #[track_caller]
    pub fn try_min_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::MinAxis(MinAxis { axis, keepdim }), &[self])
    }
}
