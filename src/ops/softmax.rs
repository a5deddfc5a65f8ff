//! `softmax`, `log_softmax` and `logsumexp` along one axis.
//!
//! Both subtract the largest element m along the axis before exponentiating, so that no
//! exponential overflows, and keep every logit relative to m afterwards: log-softmax is
//! `(x − m) − ln Σ exp(x − m)`, never `x − (m + ln Σ exp(x − m))`, whose sum rounds
//! away the small logarithm once |m| is large (at 10¹⁶, ln 2 is below half a unit in the
//! last place). So n equal logits give exactly 1/n and −ln n at any magnitude, and
//! logits of ±10³⁰⁰ give exact probabilities, not NaN.

use super::Op;
use crate::error::{Error, Result};
use crate::function::{Function, InputGrads};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;

fn axis_shape(name: &str, inputs: &[&Shape], axis: usize) -> Result<Shape> {
    let x = match inputs {
        [x] => *x,
        _ => {
            return Err(Error::Arity {
                op: name.to_string(),
                expected: 1,
                got: inputs.len(),
            })
        }
    };
    if axis >= x.rank() {
        return Err(Error::InvalidAxis {
            op: name.to_string(),
            axis,
            rank: x.rank(),
        });
    }
    Ok(x.clone())
}

/// Calls `f(start, len, stride)` for every lane along an axis: the lane's elements sit
/// at `start + j·stride` for `j < len`.
fn for_each_lane(shape: &Shape, axis: usize, mut f: impl FnMut(usize, usize, usize)) {
    let (outer, len, inner) = shape.split_at_axis(axis);
    for o in 0..outer {
        for i in 0..inner {
            f(o * len * inner + i, len, inner);
        }
    }
}

/// `(m, Σⱼ exp(xⱼ − m))` over one lane, m the lane's maximum: no exponential overflows,
/// and the sum is at least 1. A caller keeps each logit as `xⱼ − m` from here on:
/// `ln Σⱼ exp(xⱼ) = m + ln sum` is not representable next to a large m.
pub(crate) fn max_and_sum_exp(x: &[f64], start: usize, len: usize, stride: usize) -> (f64, f64) {
    let max = (0..len)
        .map(|j| x[start + j * stride])
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = (0..len).map(|j| (x[start + j * stride] - max).exp()).sum();
    (max, sum)
}

fn check_points() -> Vec<Vec<Tensor>> {
    vec![
        vec![Tensor::new(vec![0.5, -1.0, 2.0, 3.5, 0.25, -2.0], [2, 3]).expect("fits")],
        vec![Tensor::new(vec![1.0, 1.0, 1.0, -3.0, 0.0, 3.0], [2, 3]).expect("fits")],
    ]
}

// ---------------------------------------------------------------------------------------
/// `yⱼ = exp(xⱼ) / Σₖ exp(xₖ)` along `axis`: each lane becomes a probability
/// distribution. ∂L/∂xⱼ = yⱼ·(gyⱼ − Σₖ gyₖ·yₖ).
///
/// Computed as `exp(xⱼ − m) / Σₖ exp(xₖ − m)` with m the lane's maximum: exact for
/// logits of any magnitude (n equal logits give exactly 1/n). A lane holding +∞, or
/// only −∞, gives NaN.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[0.0, 2f64.ln()], [1000.0, -1000.0], [1e300, 1e300]])?);
/// let y = x.softmax(1);
/// let v = y.value();
/// assert!((v.get(&[0, 0]).unwrap() - 1.0 / 3.0).abs() < 1e-15);
/// assert_eq!(v.get(&[1, 0]), Some(1.0)); // no overflow at ±1000
/// assert_eq!(v.get(&[2, 0]), Some(0.5)); // nor precision lost at 1e300
/// // Each row sums to 1 whatever x is, so the gradient of the sum is zero.
/// let g = y.sum().backward()?.wrt(x)?;
/// assert!(g.data().iter().all(|g| g.abs() < 1e-15));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Softmax {
    /// The axis along which the values sum to 1.
    pub axis: usize,
}

impl Default for Softmax {
    fn default() -> Self {
        Softmax { axis: 1 }
    }
}

impl Function for Softmax {
    fn name(&self) -> &str {
        "softmax"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        axis_shape("softmax", inputs, self.axis)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        for_each_lane(inputs[0].shape(), self.axis, |start, len, stride| {
            let max = (0..len)
                .map(|j| x[start + j * stride])
                .fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for j in 0..len {
                let at = start + j * stride;
                out[at] = (x[at] - max).exp();
                sum += out[at];
            }
            for j in 0..len {
                out[start + j * stride] /= sum;
            }
        });
    }
    // d/dxⱼ yᵢ = yᵢ(δᵢⱼ − yⱼ), so gxⱼ = yⱼ(gyⱼ − Σᵢ gyᵢ yᵢ)
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (y, gy, g) = (y.data(), gy.data(), gx.get_mut(0));
        for_each_lane(inputs[0].shape(), self.axis, |start, len, stride| {
            let dot: f64 = (0..len)
                .map(|j| gy[start + j * stride] * y[start + j * stride])
                .sum();
            for j in 0..len {
                let at = start + j * stride;
                g[at] += y[at] * (gy[at] - dot);
            }
        });
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        _inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let dot = gy.try_mul(y)?.try_sum_axis(self.axis, true)?;
        Ok(vec![y.try_mul(gy.try_sub(dot)?)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        check_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// `yⱼ = xⱼ − ln Σₖ exp(xₖ)` along `axis`: the logarithm of [`Softmax`], computed
/// directly so that it stays finite where softmax underflows to 0.
/// ∂L/∂xⱼ = gyⱼ − softmax(x)ⱼ·Σₖ gyₖ, with softmax(x) = exp(y).
///
/// Computed as `(xⱼ − m) − ln Σₖ exp(xₖ − m)` with m the lane's maximum, so that the
/// logarithm is not lost next to a large m: n equal logits give exactly −ln n at any
/// magnitude. A lane holding +∞, or only −∞, gives NaN.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1000.0, -1000.0]));
/// let y = x.log_softmax(0);
/// assert_eq!(y.value(), Tensor::vector([0.0, -2000.0]));
/// let big = tape.tensor(&Tensor::vector([-1e300, -1e300]));
/// assert_eq!(big.log_softmax(0).value(), Tensor::vector([-2f64.ln(), -2f64.ln()]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax {
    /// The axis along which the exponentials sum to 1.
    pub axis: usize,
}

impl Default for LogSoftmax {
    fn default() -> Self {
        LogSoftmax { axis: 1 }
    }
}

impl Function for LogSoftmax {
    fn name(&self) -> &str {
        "log_softmax"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        axis_shape("log_softmax", inputs, self.axis)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        for_each_lane(inputs[0].shape(), self.axis, |start, len, stride| {
            let (max, sum) = max_and_sum_exp(x, start, len, stride);
            let log_sum = sum.ln();
            for j in 0..len {
                let at = start + j * stride;
                out[at] = (x[at] - max) - log_sum;
            }
        });
    }
    // d/dxⱼ yᵢ = δᵢⱼ − softmaxⱼ, so gxⱼ = gyⱼ − exp(yⱼ)·Σᵢ gyᵢ
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (y, gy, g) = (y.data(), gy.data(), gx.get_mut(0));
        for_each_lane(inputs[0].shape(), self.axis, |start, len, stride| {
            let total: f64 = (0..len).map(|j| gy[start + j * stride]).sum();
            for j in 0..len {
                let at = start + j * stride;
                g[at] += gy[at] - y[at].exp() * total;
            }
        });
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        _inputs: &[Var<'t>],
        y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let total = gy.try_sum_axis(self.axis, true)?;
        Ok(vec![gy.try_sub(y.exp().try_mul(total)?)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        check_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// `y = ln Σⱼ exp(xⱼ)` along `axis`, without overflow: computed as `m + ln Σⱼ exp(xⱼ − m)`
/// with m the lane's maximum, so logits of ±1000 or 10³⁰⁰ give finite results. The axis
/// is removed, or kept with length 1 when `keepdim` (PyTorch's `torch.logsumexp`,
/// JAX's `jax.nn.logsumexp`). ∂y/∂xⱼ = exp(xⱼ − y), the softmax of the lane.
///
/// A lane of only −∞ gives −∞ (and a zero gradient), a lane holding +∞ gives +∞, and
/// an empty lane gives −∞, the logarithm of an empty sum.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[0.0, 3f64.ln()], [1000.0, 1000.0]])?);
/// let y = x.logsumexp(1, false);
/// let v = y.value();
/// assert!((v.data()[0] - 4f64.ln()).abs() < 1e-15); // ln(1 + 3)
/// assert_eq!(v.data()[1], 1000.0 + 2f64.ln()); // no overflow
/// // The gradient of each row is its softmax.
/// let g = y.sum().backward()?.wrt(x)?;
/// assert!((g.data()[0] - 0.25).abs() < 1e-15 && (g.data()[1] - 0.75).abs() < 1e-15);
/// assert_eq!(&g.data()[2..], &[0.5, 0.5]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LogSumExp {
    /// The axis summed over.
    pub axis: usize,
    /// Keep the axis with length 1.
    pub keepdim: bool,
}

impl Default for LogSumExp {
    fn default() -> Self {
        LogSumExp {
            axis: 1,
            keepdim: false,
        }
    }
}

/// `m + ln Σⱼ exp(xⱼ − m)` of one lane, and m: a lane whose maximum is infinite (only
/// −∞, or a +∞) or that is empty gives its maximum, ±∞.
fn lane_logsumexp(x: &[f64], start: usize, len: usize, stride: usize) -> (f64, f64) {
    let (max, sum) = max_and_sum_exp(x, start, len, stride);
    if max.is_infinite() {
        (max, max)
    } else {
        (max + sum.ln(), max)
    }
}

impl Function for LogSumExp {
    fn name(&self) -> &str {
        "logsumexp"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        Ok(axis_shape("logsumexp", inputs, self.axis)?.reduce_axis(self.axis, self.keepdim))
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        for o in 0..outer {
            for i in 0..inner {
                out[o * inner + i] = lane_logsumexp(x, o * len * inner + i, len, inner).0;
            }
        }
    }
    // d/dxⱼ ln Σₖ exp(xₖ) = exp(xⱼ − m) / Σₖ exp(xₖ − m), the lane's softmax
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (x, gy, g) = (inputs[0].data(), gy.data(), gx.get_mut(0));
        let (outer, len, inner) = inputs[0].shape().split_at_axis(self.axis);
        for o in 0..outer {
            for i in 0..inner {
                let start = o * len * inner + i;
                let (max, sum) = max_and_sum_exp(x, start, len, inner);
                if max == f64::NEG_INFINITY {
                    continue; // every term is exp(−∞) = 0
                }
                let gy = gy[o * inner + i];
                for j in 0..len {
                    let at = start + j * inner;
                    g[at] += gy * ((x[at] - max).exp() / sum);
                }
            }
        }
        Ok(())
    }
    backward_via_accumulate!();
    // gxⱼ = gy·softmax(x)ⱼ, the softmax recorded with `softmax`
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let x = inputs[0];
        let gy = if self.keepdim {
            gy
        } else {
            gy.try_reshape(x.shape().reduce_axis(self.axis, true))?
        };
        Ok(vec![x.try_softmax(self.axis)?.try_mul(gy)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        check_points()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// Softmax along `axis` (see [`Softmax`]).
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank, with the error's message;
    /// [`try_softmax`](Var::try_softmax) returns the error.
    #[track_caller]
    pub fn softmax(self, axis: usize) -> Var<'t> {
        super::or_panic(self.try_softmax(axis))
    }

    /// Softmax along `axis` (see [`Softmax`]); an error if `axis` is not below the rank.
    #[track_caller]
    pub fn try_softmax(self, axis: usize) -> Result<Var<'t>> {
        self.record(Op::Softmax(Softmax { axis }), &[self])
    }

    /// Log-softmax along `axis` (see [`LogSoftmax`]).
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank, with the error's message;
    /// [`try_log_softmax`](Var::try_log_softmax) returns the error.
    #[track_caller]
    pub fn log_softmax(self, axis: usize) -> Var<'t> {
        super::or_panic(self.try_log_softmax(axis))
    }

    /// Log-softmax along `axis` (see [`LogSoftmax`]); an error if `axis` is not below
    /// the rank.
    #[track_caller]
    pub fn try_log_softmax(self, axis: usize) -> Result<Var<'t>> {
        self.record(Op::LogSoftmax(LogSoftmax { axis }), &[self])
    }

    /// `ln Σ exp(x)` along `axis`, without overflow (kept with length 1 when `keepdim`;
    /// see [`LogSumExp`]).
    ///
    /// # Panics
    ///
    /// If `axis` is not below the rank, with the error's message;
    /// [`try_logsumexp`](Var::try_logsumexp) returns the error.
    #[track_caller]
    pub fn logsumexp(self, axis: usize, keepdim: bool) -> Var<'t> {
        super::or_panic(self.try_logsumexp(axis, keepdim))
    }

    /// `ln Σ exp(x)` along `axis`, without overflow (see [`LogSumExp`]); an error if
    /// `axis` is not below the rank.
    #[track_caller]
    pub fn try_logsumexp(self, axis: usize, keepdim: bool) -> Result<Var<'t>> {
        self.record(Op::LogSumExp(LogSumExp { axis, keepdim }), &[self])
    }
}
