//! Losses: `mse`, `half_sse`, `bce`, `bce_with_logits` and `softmax_cross_entropy`.
//!
//! Each loss is one op with a fused backward rule, so a training step records one node
//! for its loss rather than a chain of elementwise ops. Outputs and targets must have
//! the same shape (a target is not broadcast: `[4, 1]` against `[4]` would silently
//! compare every output with every target). Targets are ordinary variables, usually
//! constants; class labels are integers, recorded as a constant input of their loss.
//!
//! The lecture uses two squared errors: the mean `(1/N)·Σ(o − y)²` ([`Mse`], what its
//! XOR code prints) and the half sum `½·Σ(t − o)²` ([`HalfSse`], its E_tot, whose
//! gradient `o − t` is what its backward formulas use).

use super::activation::sigmoid;
use super::softmax::max_and_sum_exp;
use super::Op;
use crate::error::{Error, Result};
use crate::function::{Function, InputGrads};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;
use std::cell::RefCell;

/// [`pair_shape`] for a loss that is a mean over the elements: an error for empty
/// operands, whose mean is undefined.
fn mean_pair_shape(name: &str, inputs: &[&Shape]) -> Result<Shape> {
    let shape = pair_shape(name, inputs)?;
    if inputs[0].numel() == 0 {
        return Err(Error::Invalid {
            op: name.to_string(),
            reason: format!(
                "the mean over empty outputs (shape {}) is undefined; give at least one element",
                inputs[0]
            ),
        });
    }
    Ok(shape)
}

/// The shape check of a loss between outputs and targets: equal shapes, scalar result.
fn pair_shape(name: &str, inputs: &[&Shape]) -> Result<Shape> {
    match inputs {
        [o, t] if o == t => Ok(Shape::scalar()),
        [o, t] => Err(Error::Invalid {
            op: name.to_string(),
            reason: format!("the outputs have shape {o} but the targets have shape {t}"),
        }),
        _ => Err(Error::Arity {
            op: name.to_string(),
            expected: 2,
            got: inputs.len(),
        }),
    }
}

/// Check points for a loss: outputs and targets anywhere.
fn real_pairs() -> Vec<Vec<Tensor>> {
    let t = |v: &[f64]| Tensor::new(v.to_vec(), [2, 3]).expect("fits");
    vec![
        vec![
            t(&[0.5, -1.0, 2.0, 3.5, 0.25, -2.0]),
            t(&[1.0, 0.0, 1.5, -0.5, 0.75, 2.0]),
        ],
        vec![Tensor::vector([0.609, 0.633]), Tensor::vector([0.3, 0.9])],
    ]
}

/// Check points for a loss of probabilities: outputs in (0, 1), targets in [0, 1].
fn probability_pairs() -> Vec<Vec<Tensor>> {
    let t = |v: &[f64]| Tensor::new(v.to_vec(), [2, 3]).expect("fits");
    vec![
        vec![
            t(&[0.1, 0.5, 0.9, 0.3, 0.7, 0.25]),
            t(&[0.0, 1.0, 1.0, 0.0, 0.5, 0.2]),
        ],
        vec![Tensor::vector([0.609, 0.633]), Tensor::vector([0.3, 0.9])],
    ]
}

/// Check points for a loss of logits: logits anywhere, targets in [0, 1].
fn logit_pairs() -> Vec<Vec<Tensor>> {
    let t = |v: &[f64]| Tensor::new(v.to_vec(), [2, 3]).expect("fits");
    vec![
        vec![
            t(&[0.5, -1.0, 2.0, 3.5, 0.25, -2.0]),
            t(&[0.0, 1.0, 1.0, 0.0, 0.5, 0.2]),
        ],
        vec![Tensor::vector([-4.0, 4.0]), Tensor::vector([1.0, 0.0])],
    ]
}

/// Σᵢ (oᵢ − tᵢ)², the sum both squared-error losses scale.
fn sum_of_squares(o: &[f64], t: &[f64]) -> f64 {
    o.iter().zip(t).map(|(o, t)| (o - t) * (o - t)).sum()
}

/// Adds the gradients of `scale/2 · Σᵢ (oᵢ − tᵢ)²` into `g`: `scale·(oᵢ − tᵢ)` to o's
/// at `at_o`, its negative to t's at `at_t` (the offsets may be equal, for `x` against
/// itself).
pub(super) fn add_square_gradients(
    o: &[f64],
    t: &[f64],
    scale: f64,
    g: &mut [f64],
    at_o: usize,
    at_t: usize,
) {
    let n = o.len();
    for (g, (o, t)) in g[at_o..at_o + n].iter_mut().zip(o.iter().zip(t)) {
        *g += scale * (o - t);
    }
    for (g, (o, t)) in g[at_t..at_t + n].iter_mut().zip(o.iter().zip(t)) {
        *g -= scale * (o - t);
    }
}

/// The `backward_accumulate` of a squared-error loss, on views.
fn add_squared_error_gradients<L: SquaredError>(
    loss: &L,
    inputs: &[TensorRef<'_>],
    gy: TensorRef<'_>,
    gx: &mut InputGrads<'_>,
) {
    let (o, t) = (inputs[0].data(), inputs[1].data());
    let scale = loss.scale(gy.data()[0], o.len());
    let (g, at_o, at_t) = gx.pair();
    add_square_gradients(o, t, scale, g, at_o, at_t);
}

/// The squared-error losses on raw slices, for replay and backward: both operands have
/// the same length (their shapes are checked when recorded).
pub(crate) trait SquaredError {
    /// The loss of outputs `o` against targets `t`.
    fn value(&self, o: &[f64], t: &[f64]) -> f64;
    /// The factor of `oᵢ − tᵢ` in the gradient of `oᵢ`, given the upstream gradient
    /// `gy` and the number of elements `n`.
    fn scale(&self, gy: f64, n: usize) -> f64;
}

impl SquaredError for Mse {
    fn value(&self, o: &[f64], t: &[f64]) -> f64 {
        sum_of_squares(o, t) / o.len() as f64
    }
    fn scale(&self, gy: f64, n: usize) -> f64 {
        2.0 * gy / n as f64
    }
}

impl SquaredError for HalfSse {
    fn value(&self, o: &[f64], t: &[f64]) -> f64 {
        0.5 * sum_of_squares(o, t)
    }
    fn scale(&self, gy: f64, _n: usize) -> f64 {
        gy
    }
}

// ---------------------------------------------------------------------------------------
/// Mean squared error `y = (1/N)·Σᵢ (oᵢ − tᵢ)²` over all N elements.
/// ∂y/∂oᵢ = 2(oᵢ − tᵢ)/N, ∂y/∂tᵢ = −2(oᵢ − tᵢ)/N. With N = 0 the mean is undefined,
/// and recording it is an error.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let o = tape.tensor(&Tensor::vector([0.609, 0.633]));
/// let t = tape.constant_tensor(&Tensor::vector([0.3, 0.9]));
/// let loss = o.mse(t);
/// assert!((loss.item()? - 0.08338500000000001).abs() < 1e-15); // (0.095481 + 0.071289)/2
/// let g = loss.backward()?.wrt(o)?;
/// assert!((g.data()[0] - 0.309).abs() < 1e-12 && (g.data()[1] + 0.267).abs() < 1e-12);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Mse;

impl Function for Mse {
    fn name(&self) -> &str {
        "mse"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        mean_pair_shape("mse", inputs)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out[0] = SquaredError::value(self, inputs[0].data(), inputs[1].data());
    }
    // d/doᵢ (1/N)Σ(o − t)² = 2(oᵢ − tᵢ)/N, d/dtᵢ = −2(oᵢ − tᵢ)/N
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        add_squared_error_gradients(self, inputs, gy, gx);
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let (o, t) = (inputs[0], inputs[1]);
        let n = o.shape().numel() as f64;
        let g = o.try_sub(t)?.try_mul(gy)? * (2.0 / n);
        Ok(vec![g, -g])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        real_pairs()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0), (-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// Half the sum of squared errors, `y = ½·Σᵢ (tᵢ − oᵢ)²` — the lecture's E_tot.
/// ∂y/∂oᵢ = oᵢ − tᵢ, ∂y/∂tᵢ = tᵢ − oᵢ. Empty operands give the empty sum, 0.
///
/// Plain gradient descent on this loss is exactly the lecture's XOR update
/// `W += Xᵀ·δ·lr` with `δ = (t − o)·o(1 − o)`: the deltas are summed over the batch,
/// not averaged.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let o = tape.tensor(&Tensor::vector([0.609, 0.633]));
/// let t = tape.constant_tensor(&Tensor::vector([0.3, 0.9]));
/// let e_tot = o.half_sse(t);
/// assert!((e_tot.item()? - 0.083385).abs() < 1e-15);
/// let g = e_tot.backward()?.wrt(o)?;
/// assert!((g.data()[0] - 0.309).abs() < 1e-15 && (g.data()[1] + 0.267).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HalfSse;

impl Function for HalfSse {
    fn name(&self) -> &str {
        "half_sse"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        pair_shape("half_sse", inputs)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out[0] = SquaredError::value(self, inputs[0].data(), inputs[1].data());
    }
    // d/doᵢ ½Σ(t − o)² = oᵢ − tᵢ, d/dtᵢ = tᵢ − oᵢ
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        add_squared_error_gradients(self, inputs, gy, gx);
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let g = inputs[0].try_sub(inputs[1])?.try_mul(gy)?;
        Ok(vec![g, -g])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        real_pairs()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0), (-3.0, 3.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// Binary cross-entropy of probabilities,
/// `y = −(1/N)·Σᵢ [tᵢ·ln pᵢ + (1 − tᵢ)·ln(1 − pᵢ)]`.
/// ∂y/∂pᵢ = (pᵢ − tᵢ) / (pᵢ(1 − pᵢ)·N), ∂y/∂tᵢ = (ln(1 − pᵢ) − ln pᵢ)/N.
///
/// At p = 0 or 1 each logarithm is clamped at −100 and the denominator p(1 − p) at
/// 10⁻¹², so a saturated prediction gives a large finite loss and gradient instead of
/// infinity (PyTorch's convention). Probabilities that come out of a sigmoid lose
/// precision near 0 and 1: prefer [`BceWithLogits`] on the logits. With N = 0 the mean
/// is undefined, and recording it is an error.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let p = tape.tensor(&Tensor::vector([0.8, 0.4]));
/// let t = tape.constant_tensor(&Tensor::vector([1.0, 0.0]));
/// let loss = p.bce(t);
/// assert!((loss.item()? - -(0.8f64.ln() + 0.6f64.ln()) / 2.0).abs() < 1e-15);
/// let g = loss.backward()?.wrt(p)?;
/// assert!((g.data()[0] - -1.0 / 1.6).abs() < 1e-15); // −1/(p·N)
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Bce;

/// ln x, clamped below at −100.
fn clamped_ln(x: f64) -> f64 {
    x.ln().max(-100.0)
}

impl Function for Bce {
    fn name(&self) -> &str {
        "bce"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        mean_pair_shape("bce", inputs)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let (p, t) = (inputs[0].data(), inputs[1].data());
        let sum: f64 = p
            .iter()
            .zip(t)
            .map(|(&p, &t)| t * clamped_ln(p) + (1.0 - t) * clamped_ln(1.0 - p))
            .sum();
        out[0] = -sum / p.len() as f64;
    }
    // d/dpᵢ = (pᵢ − tᵢ)/(pᵢ(1 − pᵢ)N), d/dtᵢ = (ln(1 − pᵢ) − ln pᵢ)/N
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (p, t) = (inputs[0].data(), inputs[1].data());
        let scale = gy.data()[0] / p.len() as f64;
        for (g, (&p, &t)) in gx.get_mut(0).iter_mut().zip(p.iter().zip(t)) {
            *g += scale * (p - t) / (p * (1.0 - p)).max(1e-12);
        }
        for (g, &p) in gx.get_mut(1).iter_mut().zip(p) {
            *g += scale * (clamped_ln(1.0 - p) - clamped_ln(p));
        }
        Ok(())
    }
    backward_via_accumulate!();
    /// The graph form follows the unclamped formulas.
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let (p, t) = (inputs[0], inputs[1]);
        let scale = gy / p.shape().numel() as f64;
        let gp = p.try_sub(t)?.try_div(p * (1.0 - p))?.try_mul(scale)?;
        let gt = ((1.0 - p).ln() - p.ln()).try_mul(scale)?;
        Ok(vec![gp, gt])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        probability_pairs()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(0.05, 0.95), (0.0, 1.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// Binary cross-entropy of logits: `bce(σ(z), t)` computed stably as
/// `y = (1/N)·Σᵢ [max(zᵢ, 0) − zᵢ·tᵢ + ln(1 + e^(−|zᵢ|))]`.
/// ∂y/∂zᵢ = (σ(zᵢ) − tᵢ)/N, ∂y/∂tᵢ = −zᵢ/N.
///
/// Finite for any finite logit: at z = ±1000 the loss is 0 or 1000 per element, never
/// `ln 0`. With N = 0 the mean is undefined, and recording it is an error.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let z = tape.tensor(&Tensor::vector([1000.0, -1000.0, 0.0]));
/// let t = tape.constant_tensor(&Tensor::vector([1.0, 1.0, 0.0]));
/// let loss = z.bce_with_logits(t);
/// assert!((loss.item()? - (1000.0 + 2f64.ln()) / 3.0).abs() < 1e-12);
/// let g = loss.backward()?.wrt(z)?;
/// assert_eq!(g, Tensor::vector([0.0, -1.0 / 3.0, 0.5 / 3.0]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BceWithLogits;

impl Function for BceWithLogits {
    fn name(&self) -> &str {
        "bce_with_logits"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        mean_pair_shape("bce_with_logits", inputs)
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let (z, t) = (inputs[0].data(), inputs[1].data());
        let sum: f64 = z
            .iter()
            .zip(t)
            .map(|(&z, &t)| z.max(0.0) - z * t + (-z.abs()).exp().ln_1p())
            .sum();
        out[0] = sum / z.len() as f64;
    }
    // d/dzᵢ = (σ(zᵢ) − tᵢ)/N, d/dtᵢ = −zᵢ/N
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (z, t) = (inputs[0].data(), inputs[1].data());
        let scale = gy.data()[0] / z.len() as f64;
        for (g, (&z, &t)) in gx.get_mut(0).iter_mut().zip(z.iter().zip(t)) {
            *g += scale * (sigmoid(z) - t);
        }
        for (g, &z) in gx.get_mut(1).iter_mut().zip(z) {
            *g -= scale * z;
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
        let (z, t) = (inputs[0], inputs[1]);
        let scale = gy / z.shape().numel() as f64;
        let gz = z.sigmoid().try_sub(t)?.try_mul(scale)?;
        let gt = -z.try_mul(scale)?;
        Ok(vec![gz, gt])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        logit_pairs()
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0), (0.0, 1.0)]
    }
}

// ---------------------------------------------------------------------------------------
/// Softmax cross-entropy of logits against integer class labels:
/// `y = (1/N)·Σᵢ [ln Σⱼ exp(zᵢⱼ) − zᵢ,labelᵢ]` for logits `z: [N, C]` (or one row
/// `[C]` with one label). ∂y/∂zᵢⱼ = (softmax(zᵢ)ⱼ − [j = labelᵢ])/N — the fused
/// gradient, softmax minus one-hot.
///
/// Stable and exact at any magnitude: each row's logits are taken relative to its
/// maximum m, and the loss is `ln Σⱼ exp(zᵢⱼ − m) − (zᵢ,labelᵢ − m)`, so logits of ±1000
/// give a finite loss and gradient, and C equal logits give exactly ln C however large
/// they are. The op has two inputs, the logits and the labels `[N]`
/// (class numbers as values; [`Var::softmax_cross_entropy`] records them on the tape as
/// a constant, so the op itself holds no data and recording it allocates nothing). A
/// label value names the class nearest to it; the labels get no gradient (their
/// derivative is 0), and a value that names no class (below 0, or rounding to C or
/// more) makes the loss NaN. Recording fails when there is not one label per row or,
/// through `softmax_cross_entropy`, a label is not below C.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let z = tape.tensor(&Tensor::matrix(&[[0.0, 0.0], [1000.0, -1000.0]])?);
/// let loss = z.softmax_cross_entropy(&[1, 1]);
/// assert!((loss.item()? - (2f64.ln() + 2000.0) / 2.0).abs() < 1e-12);
/// let g = loss.backward()?.wrt(z)?;
/// assert_eq!(g, Tensor::matrix(&[[0.25, -0.25], [0.5, -0.5]])?);
/// assert!(z.try_softmax_cross_entropy(&[0, 2]).is_err()); // only classes 0 and 1
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SoftmaxCrossEntropy;

const SOFTMAX_CROSS_ENTROPY: &str = "softmax_cross_entropy";

fn sce_invalid(reason: String) -> Error {
    Error::Invalid {
        op: SOFTMAX_CROSS_ENTROPY.into(),
        reason,
    }
}

/// `(rows, classes)` of logits of shape `[N, C]` or `[C]`; an error for any other shape
/// or no elements.
fn rows_and_classes(z: &Shape) -> Result<(usize, usize)> {
    match *z.dims() {
        [c] if c > 0 => Ok((1, c)),
        [n, c] if n > 0 && c > 0 => Ok((n, c)),
        _ => Err(sce_invalid(format!(
            "expects non-empty logits of shape [N, C] or [C], got {z}"
        ))),
    }
}

/// An error unless there is one label per row.
fn check_label_count(rows: usize, labels: usize) -> Result<()> {
    if labels == rows {
        Ok(())
    } else {
        Err(sce_invalid(format!(
            "{labels} labels for {rows} rows of logits"
        )))
    }
}

/// The class a label value names: the nearest integer, if it is a class below `classes`.
fn class_of(label: f64, classes: usize) -> Option<usize> {
    let class = label.round();
    // A NaN label fails both comparisons.
    (class >= 0.0 && class < classes as f64).then_some(class as usize)
}

impl Function for SoftmaxCrossEntropy {
    fn name(&self) -> &str {
        SOFTMAX_CROSS_ENTROPY
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let [z, labels] = inputs else {
            return Err(Error::Arity {
                op: SOFTMAX_CROSS_ENTROPY.into(),
                expected: 2,
                got: inputs.len(),
            });
        };
        let (rows, _) = rows_and_classes(z)?;
        if labels.rank() > 1 {
            return Err(sce_invalid(format!(
                "expects labels of shape [N], got {labels}"
            )));
        }
        check_label_count(rows, labels.numel())?;
        Ok(Shape::scalar())
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let (z, labels) = (inputs[0].data(), inputs[1].data());
        let (rows, classes) = rows_and_classes(inputs[0].shape()).expect("checked when recorded");
        let mut sum = 0.0;
        for (i, &label) in labels.iter().enumerate() {
            let row = i * classes;
            sum += match class_of(label, classes) {
                Some(label) => {
                    // ln Σ exp(z) − z_label with both terms taken relative to the row's
                    // maximum: at large logits their difference is the small number.
                    let (max, sum_exp) = max_and_sum_exp(z, row, classes, 1);
                    sum_exp.ln() - (z[row + label] - max)
                }
                None => f64::NAN,
            };
        }
        out[0] = sum / rows as f64;
    }
    // d/dzᵢⱼ = (softmax(zᵢ)ⱼ − [j = labelᵢ])/N, d/dlabelᵢ = 0
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        if !gx.needs(0) {
            return Ok(());
        }
        let (z, labels) = (inputs[0].data(), inputs[1].data());
        let (rows, classes) = rows_and_classes(inputs[0].shape())?;
        let scale = gy.data()[0] / rows as f64;
        let g = gx.get_mut(0);
        for (i, &label) in labels.iter().enumerate() {
            let row = i * classes;
            let label = class_of(label, classes);
            let (max, sum_exp) = max_and_sum_exp(z, row, classes, 1);
            for j in 0..classes {
                let onehot = match label {
                    Some(label) if label == j => 1.0,
                    Some(_) => 0.0,
                    None => f64::NAN,
                };
                // The softmax exactly as the `softmax` op computes it.
                let p = (z[row + j] - max).exp() / sum_exp;
                g[row + j] += scale * (p - onehot);
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
        let (z, labels) = (inputs[0], inputs[1]);
        let shape = z.shape();
        let (rows, classes) = rows_and_classes(&shape)?;
        let mut onehot = Tensor::zeros(shape.clone());
        for (i, &label) in labels.value().data().iter().enumerate() {
            let class = class_of(label, classes).ok_or_else(|| {
                sce_invalid(format!("label {label} is not a class below {classes}"))
            })?;
            onehot.data_mut()[i * classes + class] = 1.0;
        }
        let tape = z.tape();
        let onehot = tape.constant_tensor(&onehot);
        let softmax = z.try_softmax(shape.rank() - 1)?;
        let gz = softmax.try_sub(onehot)?.try_mul(gy / rows as f64)?;
        let glabels = tape.constant_tensor(&Tensor::zeros(labels.shape()));
        Ok(vec![gz, glabels])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        let t = |v: &[f64]| Tensor::new(v.to_vec(), [2, 3]).expect("fits");
        vec![
            vec![
                t(&[0.5, -1.0, 2.0, 3.5, 0.25, -2.0]),
                Tensor::vector([2.0, 0.0]),
            ],
            vec![
                t(&[1.0, 1.0, 1.0, -3.0, 0.0, 3.0]),
                Tensor::vector([2.0, 0.0]),
            ],
            vec![Tensor::vector([0.5, -1.0, 2.0]), Tensor::vector([1.0])],
        ]
    }
    /// Random labels are drawn around class 2, where no central difference can round
    /// them to another class.
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0), (1.75, 2.25)]
    }
}

thread_local! {
    /// The labels of the last `softmax_cross_entropy` call as numbers, on their way onto
    /// the tape: one buffer per thread, reused, so that recording the loss allocates
    /// nothing after the first call.
    static LABEL_VALUES: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl<'t> Var<'t> {
    /// The mean squared error against `targets` (see [`Mse`]).
    ///
    /// # Panics
    ///
    /// When the shapes differ or have no elements, with the error's message;
    /// [`try_mse`](Var::try_mse) returns the error.
    #[track_caller]
    pub fn mse(self, targets: Var<'t>) -> Var<'t> {
        super::or_panic(self.try_mse(targets))
    }

    /// The mean squared error against `targets` (see [`Mse`]); an error when the shapes
    /// differ or have no elements.
    #[track_caller]
    pub fn try_mse(self, targets: Var<'t>) -> Result<Var<'t>> {
        self.record(Op::Mse(Mse), &[self, targets])
    }

    /// Half the sum of squared errors against `targets`, the lecture's E_tot (see
    /// [`HalfSse`]).
    ///
    /// # Panics
    ///
    /// When the shapes differ, with the error's message;
    /// [`try_half_sse`](Var::try_half_sse) returns the error.
    #[track_caller]
    pub fn half_sse(self, targets: Var<'t>) -> Var<'t> {
        super::or_panic(self.try_half_sse(targets))
    }

    /// Half the sum of squared errors against `targets`, the lecture's E_tot (see
    /// [`HalfSse`]); an error when the shapes differ.
    #[track_caller]
    pub fn try_half_sse(self, targets: Var<'t>) -> Result<Var<'t>> {
        self.record(Op::HalfSse(HalfSse), &[self, targets])
    }

    /// Binary cross-entropy of these probabilities against `targets` (see [`Bce`]).
    ///
    /// # Panics
    ///
    /// When the shapes differ or have no elements, with the error's message;
    /// [`try_bce`](Var::try_bce) returns the error.
    #[track_caller]
    pub fn bce(self, targets: Var<'t>) -> Var<'t> {
        super::or_panic(self.try_bce(targets))
    }

    /// Binary cross-entropy of these probabilities against `targets` (see [`Bce`]); an
    /// error when the shapes differ or have no elements.
    #[track_caller]
    pub fn try_bce(self, targets: Var<'t>) -> Result<Var<'t>> {
        self.record(Op::Bce(Bce), &[self, targets])
    }

    /// Binary cross-entropy of these logits against `targets`, stable for any logit (see
    /// [`BceWithLogits`]).
    ///
    /// # Panics
    ///
    /// When the shapes differ or have no elements, with the error's message;
    /// [`try_bce_with_logits`](Var::try_bce_with_logits) returns the error.
    #[track_caller]
    pub fn bce_with_logits(self, targets: Var<'t>) -> Var<'t> {
        super::or_panic(self.try_bce_with_logits(targets))
    }

    /// Binary cross-entropy of these logits against `targets`, stable for any logit
    /// (see [`BceWithLogits`]); an error when the shapes differ or have no elements.
    #[track_caller]
    pub fn try_bce_with_logits(self, targets: Var<'t>) -> Result<Var<'t>> {
        self.record(Op::BceWithLogits(BceWithLogits), &[self, targets])
    }

    /// Softmax cross-entropy of these logits (`[N, C]` or `[C]`) against one class label
    /// per row (see [`SoftmaxCrossEntropy`]).
    ///
    /// # Panics
    ///
    /// When the logits have another shape, there is not one label per row, or a label is
    /// not below the number of classes, with the error's message;
    /// [`try_softmax_cross_entropy`](Var::try_softmax_cross_entropy) returns the error.
    #[track_caller]
    pub fn softmax_cross_entropy(self, labels: &[usize]) -> Var<'t> {
        super::or_panic(self.try_softmax_cross_entropy(labels))
    }

    /// Softmax cross-entropy of these logits (`[N, C]` or `[C]`) against one class
    /// label per row (see [`SoftmaxCrossEntropy`]); an error when the logits have
    /// another shape, there is not one label per row, or a label is not below the
    /// number of classes. The labels go onto the tape as a constant `[N]` input of the
    /// op; on an error nothing is recorded.
    #[track_caller]
    pub fn try_softmax_cross_entropy(self, labels: &[usize]) -> Result<Var<'t>> {
        let (rows, classes) = rows_and_classes(&self.shape())?;
        check_label_count(rows, labels.len())?;
        if let Some(&label) = labels.iter().find(|&&l| l >= classes) {
            return Err(sce_invalid(format!(
                "label {label} is out of range for {classes} classes"
            )));
        }
        let labels = LABEL_VALUES.with(|values| {
            let mut values = values.borrow_mut();
            values.clear();
            values.extend(labels.iter().map(|&l| l as f64));
            let shape = Shape::new(&[values.len()]);
            Ok::<_, Error>(
                self.tape()
                    .leaf(TensorRef::new(&values[..], &shape)?, false),
            )
        })?;
        self.record(
            Op::SoftmaxCrossEntropy(SoftmaxCrossEntropy),
            &[self, labels],
        )
    }
}
