//! Reductions: `sum`, `mean` and `max`, over all elements or along one axis.
//!
//! `max` sends the gradient to the maximal elements; when several elements tie for the
//! maximum, they share it equally (the subgradient JAX and PyTorch's `amax` use). A NaN
//! element makes the maximum NaN.

use super::Op;
use crate::error::{Error, Result};
use crate::function::{backward_by_accumulation, Function, InputGrads};
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

fn nan_max(values: impl Iterator<Item = f64>) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for v in values {
        if v.is_nan() {
            return f64::NAN;
        }
        if v > m {
            m = v;
        }
    }
    m
}

fn matrix_points() -> Vec<Vec<Tensor>> {
    vec![
        vec![Tensor::new(vec![0.5, -1.0, 2.0, 3.5, 0.25, -2.0], [2, 3]).expect("6 values")],
        vec![Tensor::vector([1.0, -4.0, 2.5, 0.0])],
    ]
}

/// The shared `backward` of the reductions, whose native rule accumulates in place.
macro_rules! backward_via_accumulate {
    () => {
        fn backward(
            &self,
            inputs: &[TensorRef<'_>],
            y: TensorRef<'_>,
            gy: TensorRef<'_>,
        ) -> Result<Vec<Tensor>> {
            backward_by_accumulation(self, inputs, y, gy)
        }
    };
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
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0, 6.0]));
/// let y = x.mean();
/// assert_eq!(y.item()?, 3.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([0.25; 4]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean;

impl Function for Mean {
    fn name(&self) -> &str {
        "mean"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        one_input("mean", inputs).map(|_| Shape::scalar())
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
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 3.0, 3.0, 2.0]));
/// let y = x.max();
/// assert_eq!(y.item()?, 3.0);
/// assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([0.0, 0.5, 0.5, 0.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Max;

impl Function for Max {
    fn name(&self) -> &str {
        "max"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        one_input("max", inputs).map(|_| Shape::scalar())
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
        let (x, y) = (inputs[0].data(), y.data()[0]);
        let ties = x.iter().filter(|&&v| v == y).count();
        if ties > 0 {
            let g = gy.data()[0] / ties as f64;
            for (acc, &v) in gx.get_mut(0).iter_mut().zip(x) {
                if v == y {
                    *acc += g;
                }
            }
        }
        Ok(())
    }
    backward_via_accumulate!();
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The sum of all elements, a scalar.
    pub fn sum(self) -> Var<'t> {
        self.unary(Op::Sum(Sum))
    }

    /// The mean of all elements, a scalar.
    pub fn mean(self) -> Var<'t> {
        self.unary(Op::Mean(Mean))
    }

    /// The largest element, a scalar; ties share the gradient.
    pub fn max(self) -> Var<'t> {
        self.unary(Op::Max(Max))
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
/// assert_eq!(x.sum_axis(0, false)?.value(), Tensor::vector([5.0, 7.0, 9.0]));
/// assert_eq!(x.sum_axis(1, true)?.value(), Tensor::matrix(&[[6.0], [15.0]])?);
/// assert!(x.sum_axis(2, false).is_err());
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
/// assert_eq!(x.mean_axis(1, false)?.value(), Tensor::vector([2.0, 5.0]));
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
        axis_shape("mean_axis", inputs, self.axis, self.keepdim)
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
/// let y = x.max_axis(1, false)?;
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
        axis_shape("max_axis", inputs, self.axis, self.keepdim)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        for o in 0..outer {
            for i in 0..inner {
                out[o * inner + i] = nan_max((0..len).map(|j| x[(o * len + j) * inner + i]));
            }
        }
    }
    // d/dx_(o,j,i) maxⱼ x = [x_(o,j,i) = y_(o,i)] / #ties
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let x = inputs[0].data();
        let (y, gy) = (y.data(), gy.data());
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        let g = gx.get_mut(0);
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
        Ok(())
    }
    backward_via_accumulate!();
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        matrix_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The sum along `axis` (kept with length 1 when `keepdim`); an error if `axis` is
    /// not below the rank.
    pub fn sum_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::SumAxis(SumAxis { axis, keepdim }), &[self])
    }

    /// The mean along `axis` (kept with length 1 when `keepdim`); an error if `axis` is
    /// not below the rank.
    pub fn mean_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::MeanAxis(MeanAxis { axis, keepdim }), &[self])
    }

    /// The maximum along `axis` (kept with length 1 when `keepdim`); ties share the
    /// gradient; an error if `axis` is not below the rank.
    pub fn max_axis(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::MaxAxis(MaxAxis { axis, keepdim }), &[self])
    }
}
