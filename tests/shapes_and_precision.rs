//! Shapes whose element count would overflow are refused with an error wherever they
//! are made; softmax, log-softmax and softmax cross-entropy are exact for logits of any
//! magnitude; the edges of `powi`, `narrow`, `set_value` and the empty reductions give
//! the documented value or an error that names the actual problem.

use tapegrad::nn::Params;
use tapegrad::{Error, Result, Shape, Tape, Tensor};

/// 3·K = 2⁶⁴ + 2, which wraps around to 2 in `usize`.
const K: usize = 6148914691236517206;

/// True when `err` is the refusal of a shape too large for any tensor.
fn too_large(err: &Error) -> bool {
    err.to_string().contains("is too large")
}

// --- Shapes whose element count overflows ------------------------------------------------

#[test]
fn a_tensor_whose_shape_wraps_around_to_its_length_is_an_error() {
    // [3, K] names 2⁶⁴ + 2 elements: a wrapping product would accept these two values.
    let err = Tensor::new(vec![1.0, 2.0], [3, K]).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "tensor: shape [3, {K}] is too large; the product of its nonzero axis lengths must be at most {}",
            Shape::MAX_NUMEL
        )
    );
    // 2³² · 2³² wraps to 0: no empty tensor either.
    let err = Tensor::new(Vec::new(), [1 << 32, 1 << 32]).unwrap_err();
    assert!(too_large(&err), "{err}");
    let err = Tensor::new(Vec::new(), [0, 1 << 32, 1 << 32]).unwrap_err();
    assert!(too_large(&err), "{err}");
    // The limit is a Vec<f64>'s: isize::MAX bytes.
    assert_eq!(Shape::MAX_NUMEL, (isize::MAX as usize) / 8);
    assert!(too_large(
        &Tensor::new(Vec::new(), [0, Shape::MAX_NUMEL + 1]).unwrap_err()
    ));
    // Empty tensors of representable shapes are still fine.
    assert_eq!(
        Tensor::new(Vec::new(), [0, Shape::MAX_NUMEL])
            .unwrap()
            .numel(),
        0
    );
}

#[test]
fn a_view_whose_shape_wraps_around_is_an_error() {
    let shape = Shape::from([3, K]);
    let err = tapegrad::TensorRef::new(&[1.0, 2.0], &shape).unwrap_err();
    assert!(too_large(&err), "{err}");
}

#[test]
fn shape_counts_never_wrap() {
    assert_eq!(Shape::from([3, K]).checked_numel(), None);
    assert_eq!(Shape::from([1 << 32, 1 << 32]).checked_numel(), None);
    assert_eq!(Shape::from([2, 3, 4]).checked_numel(), Some(24));
    assert_eq!(Shape::from([5, 0, 7]).checked_numel(), Some(0));
    assert_eq!(Shape::scalar().checked_numel(), Some(1));
}

#[test]
#[should_panic(expected = "Tensor::full: shape [3, 6148914691236517206] is too large")]
fn zeros_of_a_shape_that_wraps_around_panics_with_a_message() {
    let _ = Tensor::zeros([3, K]);
}

#[test]
#[should_panic(
    expected = "shape [4294967296, 4294967296] has more elements than a usize can count"
)]
fn the_count_of_a_shape_that_overflows_panics_with_a_message() {
    let _ = Shape::from([1 << 32, 1 << 32]).numel();
}

#[test]
fn a_broadcast_past_any_tensor_is_an_error() -> Result<()> {
    // Each operand is empty and fits; their broadcast [2³², 2³², 0] counts 2⁶⁴ along
    // its nonzero axes, which wraps to 0.
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::new(Vec::new(), [1 << 32, 1, 0])?);
    let b = tape.tensor(&Tensor::new(Vec::new(), [1, 1 << 32, 0])?);
    let before = tape.len();
    let err = a.try_mul(b).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(err
        .to_string()
        .starts_with("mul: shape [4294967296, 4294967296, 0]"));
    assert_eq!(tape.len(), before, "nothing recorded");
    Ok(())
}

#[test]
fn a_matrix_product_past_any_tensor_is_an_error() -> Result<()> {
    // [2³², 0]·[0, 2³²] would be a [2³², 2³²] matrix of zeros: 2⁶⁴ elements.
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::new(Vec::new(), [1 << 32, 0])?);
    let b = tape.tensor(&Tensor::new(Vec::new(), [0, 1 << 32])?);
    let err = a.try_matmul(b).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(err.to_string().starts_with("matmul: "), "{err}");
    // A product that fits still works: [2, 0]·[0, 3] is a [2, 3] matrix of zeros.
    let a = tape.tensor(&Tensor::new(Vec::new(), [2, 0])?);
    let b = tape.tensor(&Tensor::new(Vec::new(), [0, 3])?);
    assert_eq!(a.matmul(b).value(), Tensor::zeros([2, 3]));
    Ok(())
}

#[test]
fn a_reshape_past_any_tensor_is_an_error() -> Result<()> {
    // An empty tensor has 0 elements; [2³¹, 2³¹, 2³¹, 0] wraps around to 0 as well.
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::new(Vec::new(), [0])?);
    let err = x.try_reshape([1 << 31, 1 << 31, 1 << 31, 0]).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(err.to_string().starts_with("reshape: "), "{err}");
    assert_eq!(x.reshape([2, 0, 3]).shape(), Shape::from([2, 0, 3]));
    Ok(())
}

#[test]
fn a_parameter_file_with_huge_axis_lengths_is_an_error_before_any_value_is_read() {
    // 2³² · 2³² wraps to 0, which the empty line would have matched.
    let text = "tapegrad-params 1\na 2 4294967296 4294967296\n\n";
    let err = Params::from_text(text).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(
        err.to_string()
            .starts_with("params load: line 2: shape [4294967296, 4294967296]"),
        "{err}"
    );
    // 3·K wraps to 2, which two values would have matched.
    let text = format!("tapegrad-params 1\nb 2 3 {K}\n1 2\n");
    assert!(too_large(&Params::from_text(&text).unwrap_err()));
    // Loading a file into a store goes through the same check and leaves it untouched.
    let mut params = Params::new();
    params.insert("a", Tensor::vector([1.0])).unwrap();
    let err = params
        .load_text("tapegrad-params 1\na 2 4294967296 4294967296\n\n")
        .unwrap_err();
    assert!(too_large(&err), "{err}");
    assert_eq!(params.get("a").unwrap(), &Tensor::vector([1.0]));
}

// --- Softmax and cross-entropy at any magnitude -----------------------------------------

/// 1e0, 1e1, …, 1e300, each with both signs.
fn magnitudes() -> Vec<f64> {
    (0..=300)
        .map(|k| format!("1e{k}").parse::<f64>().unwrap())
        .flat_map(|m| [m, -m])
        .collect()
}

#[test]
fn equal_logits_give_exactly_one_over_n_at_any_magnitude() -> Result<()> {
    for n in [2usize, 3, 5, 7, 10] {
        let p = 1.0 / n as f64;
        for m in magnitudes() {
            let tape = Tape::new();
            let x = tape.tensor(&Tensor::vector(vec![m; n]));
            let y = x.softmax(0);
            assert_eq!(
                y.value(),
                Tensor::vector(vec![p; n]),
                "n = {n}, logits {m:e}"
            );
            // ∂(y₀)/∂xⱼ = y₀(δ₀ⱼ − yⱼ): p(1 − p) and −p·p, with no error at all.
            let mut weight = vec![0.0; n];
            weight[0] = 1.0;
            let w = tape.constant_tensor(&Tensor::vector(weight));
            let g = y.try_mul(w)?.sum().backward()?.wrt(x)?;
            let mut want = vec![p * (0.0 - p); n];
            want[0] = p * (1.0 - p);
            assert_eq!(g, Tensor::vector(want), "n = {n}, logits {m:e}");
        }
    }
    Ok(())
}

#[test]
fn softmax_of_two_equal_large_logits_sums_to_one() -> Result<()> {
    // The reproducers: 1e16 gave [1, 1], 1e15 gave 0.472 for each.
    let tape = Tape::new();
    for m in [1e15, 1e16] {
        let x = tape.tensor(&Tensor::vector([m, m]));
        assert_eq!(x.softmax(0).value(), Tensor::vector([0.5, 0.5]));
    }
    Ok(())
}

#[test]
fn equal_logits_give_exactly_minus_ln_n_under_log_softmax() -> Result<()> {
    for n in [2usize, 3, 5, 7, 10] {
        let ln_n = (n as f64).ln();
        for m in magnitudes() {
            let tape = Tape::new();
            let x = tape.tensor(&Tensor::vector(vec![m; n]));
            let y = x.log_softmax(0);
            assert_eq!(
                y.value(),
                Tensor::vector(vec![-ln_n; n]),
                "n = {n}, logits {m:e}"
            );
            // ∂(y₀)/∂xⱼ = δ₀ⱼ − 1/n, with 1/n taken as exp(−ln n).
            let total = y.sum_axis(0, false);
            let g0 = x.log_softmax(0).narrow(0, 0, 1).sum();
            let grad = g0.backward()?.wrt(x)?;
            let p = (-ln_n).exp();
            for (j, &gj) in grad.data().iter().enumerate() {
                let want = if j == 0 { 1.0 - p } else { -p };
                assert!(
                    (gj - want).abs() <= 1e-15,
                    "n = {n}, logits {m:e}: ∂y₀/∂x{j} = {gj}, want {want}"
                );
            }
            // The lane sums to −n·ln n exactly as the values do.
            assert_eq!(total.item()?, vec![-ln_n; n].iter().sum::<f64>());
        }
    }
    Ok(())
}

#[test]
fn cross_entropy_of_equal_logits_is_exactly_ln_n_at_any_magnitude() -> Result<()> {
    for n in [2usize, 3, 5, 7, 10] {
        let p = 1.0 / n as f64;
        for m in magnitudes() {
            for label in [0, n - 1] {
                let tape = Tape::new();
                let z = tape.tensor(&Tensor::vector(vec![m; n]));
                let loss = z.softmax_cross_entropy(&[label]);
                assert_eq!(loss.item()?, (n as f64).ln(), "n = {n}, logits {m:e}");
                // softmax − one-hot, exactly.
                let mut want = vec![p; n];
                want[label] = p - 1.0;
                let g = loss.backward()?.wrt(z)?;
                assert_eq!(
                    g,
                    Tensor::vector(want),
                    "n = {n}, logits {m:e}, label {label}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn cross_entropy_of_large_equal_logits_has_a_gradient_that_sums_to_zero() -> Result<()> {
    // The reproducer: at 1e16 the loss was 0 and the gradient [0, 1].
    let tape = Tape::new();
    let z = tape.tensor(&Tensor::vector([1e16, 1e16]));
    let loss = z.softmax_cross_entropy(&[0]);
    assert_eq!(loss.item()?, 2f64.ln());
    assert_eq!(loss.backward()?.wrt(z)?, Tensor::vector([-0.5, 0.5]));
    Ok(())
}

#[test]
fn a_batch_of_rows_at_different_magnitudes_averages_ln_c() -> Result<()> {
    // Three rows of three equal logits each, at 1, 1e100 and −1e300: every row's loss is
    // ln 3, every gradient (1/3 − onehot)/3.
    let tape = Tape::new();
    let rows = [[1.0; 3], [1e100; 3], [-1e300; 3]];
    let z = tape.tensor(&Tensor::matrix(&rows)?);
    let loss = z.softmax_cross_entropy(&[0, 1, 2]);
    assert_eq!(loss.item()?, 3.0 * 3f64.ln() / 3.0);
    let g = loss.backward()?.wrt(z)?;
    let (p, q) = ((1.0 / 3.0) / 3.0, (1.0 / 3.0 - 1.0) / 3.0);
    assert_eq!(g, Tensor::matrix(&[[q, p, p], [p, q, p], [p, p, q]])?);
    Ok(())
}

#[test]
fn logits_that_differ_by_a_little_at_a_large_magnitude_keep_their_difference() -> Result<()> {
    // At 1e16 consecutive doubles are 2 apart: [1e16, 1e16 + 2] is softmax of [0, 2].
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::vector([1e16, 1e16 + 2.0]));
    let y = x.softmax(0).value();
    let e = (-2f64).exp();
    let want = [e / (1.0 + e), 1.0 / (1.0 + e)];
    for (got, want) in y.data().iter().zip(want) {
        assert!(
            (got - want).abs() <= 2.0 * f64::EPSILON * want,
            "{got} vs {want}"
        );
    }
    let loss = x.softmax_cross_entropy(&[0]).item()?;
    let want = (1.0 + e).ln() + 2.0; // ln(1 + e²) = 2 + ln(1 + e⁻²)
    assert!(
        (loss - want).abs() <= 2.0 * f64::EPSILON * want,
        "{loss} vs {want}"
    );
    let ls = x.log_softmax(0).value();
    let want = [-want, -(1.0 + e).ln()];
    for (got, want) in ls.data().iter().zip(want) {
        assert!(
            (got - want).abs() <= 2.0 * f64::EPSILON * want.abs(),
            "{got} vs {want}"
        );
    }
    Ok(())
}

#[test]
fn opposite_huge_logits_and_minus_infinity_give_no_nan() -> Result<()> {
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::vector([1e300, -1e300]));
    assert_eq!(x.softmax(0).value(), Tensor::vector([1.0, 0.0]));
    assert_eq!(x.log_softmax(0).value(), Tensor::vector([0.0, -2e300]));
    let first = x.softmax_cross_entropy(&[0]);
    assert_eq!(first.item()?, 0.0);
    assert_eq!(first.backward()?.wrt(x)?, Tensor::vector([0.0, 0.0]));
    let second = x.softmax_cross_entropy(&[1]);
    assert_eq!(second.item()?, 2e300);
    assert_eq!(second.backward()?.wrt(x)?, Tensor::vector([1.0, -1.0]));

    let x = tape.tensor(&Tensor::vector([0.0, f64::NEG_INFINITY, 0.0]));
    assert_eq!(x.softmax(0).value(), Tensor::vector([0.5, 0.0, 0.5]));
    let ls = x.log_softmax(0).value();
    assert_eq!(
        ls,
        Tensor::vector([-2f64.ln(), f64::NEG_INFINITY, -2f64.ln()])
    );
    let loss = x.softmax_cross_entropy(&[2]);
    assert_eq!(loss.item()?, 2f64.ln());
    assert_eq!(loss.backward()?.wrt(x)?, Tensor::vector([0.5, 0.0, -0.5]));
    Ok(())
}

#[test]
fn the_cross_entropy_gradient_is_the_softmax_op_minus_one_hot() -> Result<()> {
    // The fused gradient and the softmax op compute the same probabilities, bit for bit.
    let tape = Tape::new();
    let logits = [[0.3, -1.7, 2.9, 1e15], [-4.0, 1e-3, 7.5, -7.5]];
    let z = tape.tensor(&Tensor::matrix(&logits)?);
    let softmax = z.softmax(1).value();
    let g = z.softmax_cross_entropy(&[3, 0]).backward()?.wrt(z)?;
    let mut want = softmax.data().to_vec();
    want[3] -= 1.0;
    want[4] -= 1.0;
    let want: Vec<f64> = want.iter().map(|v| v * 0.5).collect();
    assert_eq!(g, Tensor::new(want, [2, 4])?);
    Ok(())
}

// --- powi at the ends of i32 --------------------------------------------------------------

#[test]
fn the_derivative_of_powi_at_i32_min_is_minus_zero_at_two() -> Result<()> {
    // d/dx x^n = n·x^(n−1) = −2³¹ · 2^(−2³¹−1), which underflows to −0.
    let tape = Tape::new();
    let x = tape.var(2.0);
    let y = x.powi(i32::MIN);
    assert_eq!(y.item()?, 0.0);
    // The backward sweep adds the −0 into a gradient that starts at +0.
    assert_eq!(y.backward()?.wrt_scalar(x)?, 0.0);
    // The graph of the derivative holds the value itself, sign included.
    let d = y.grad_graph(&[x])?[0].item()?;
    assert_eq!(d, 0.0);
    assert!(d.is_sign_negative(), "{d}");
    // At ±1 nothing underflows: n·1 and n·(−1)^(n−1) = n·(−1) (n − 1 is odd).
    for (x0, want) in [(1.0, -2147483648.0), (-1.0, 2147483648.0)] {
        let x = tape.var(x0);
        assert_eq!(
            x.powi(i32::MIN).backward()?.wrt_scalar(x)?,
            want,
            "x = {x0}"
        );
    }
    // The graph-building rule agrees: the second derivative n(n−1)·x^(n−2) at 1.
    let x = tape.var(1.0);
    let n = f64::from(i32::MIN);
    let dy = x.powi(i32::MIN).grad_graph(&[x])?[0];
    assert_eq!(dy.item()?, n);
    assert_eq!(dy.grad_graph(&[x])?[0].item()?, n * (n - 1.0));
    Ok(())
}

#[test]
fn the_derivative_of_powi_at_i32_max() -> Result<()> {
    // n·x^(n−1): overflows to +∞ at 2, is n at 1 and at −1 (n − 1 is even).
    let tape = Tape::new();
    for (x0, want) in [
        (2.0, f64::INFINITY),
        (1.0, 2147483647.0),
        (-1.0, 2147483647.0),
    ] {
        let x = tape.var(x0);
        assert_eq!(
            x.powi(i32::MAX).backward()?.wrt_scalar(x)?,
            want,
            "x = {x0}"
        );
    }
    Ok(())
}

// --- narrow names the axis it slices ----------------------------------------------------

#[test]
fn narrow_out_of_range_names_the_axis_and_its_length() {
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).unwrap());
    assert_eq!(
        x.try_narrow(0, usize::MAX, 2).unwrap_err().to_string(),
        "narrow: start 18446744073709551615 and length 2 reach past the end of axis 0, \
         of length 2, in shape [2, 3]; start + length must be at most 2"
    );
    assert_eq!(
        x.try_narrow(1, 2, usize::MAX).unwrap_err().to_string(),
        "narrow: start 2 and length 18446744073709551615 reach past the end of axis 1, \
         of length 3, in shape [2, 3]; start + length must be at most 3"
    );
    assert_eq!(
        x.try_narrow(1, 2, 2).unwrap_err().to_string(),
        "narrow: start 2 and length 2 reach past the end of axis 1, \
         of length 3, in shape [2, 3]; start + length must be at most 3"
    );
    assert_eq!(
        x.try_narrow(2, 0, 1).unwrap_err().to_string(),
        "narrow: axis 2 is out of range for a tensor of rank 2"
    );
    assert_eq!(
        x.narrow(1, 3, 0).value(),
        Tensor::new(Vec::new(), [2, 0]).unwrap()
    );
}

// --- Reductions of nothing ----------------------------------------------------------------

fn empty(tape: &Tape) -> tapegrad::Var<'_> {
    tape.tensor(&Tensor::new(Vec::new(), [0, 3]).unwrap())
}

#[test]
fn the_mean_of_an_empty_tensor_is_an_error() {
    let tape = Tape::new();
    let x = empty(&tape);
    let before = tape.len();
    assert_eq!(
        x.try_mean_axis(0, false).unwrap_err().to_string(),
        "mean_axis: axis 0 of shape [0, 3] is empty, and the mean of no elements is undefined"
    );
    assert_eq!(
        x.try_max_axis(0, true).unwrap_err().to_string(),
        "max_axis: axis 0 of shape [0, 3] is empty, and the maximum of no elements is undefined"
    );
    assert_eq!(
        x.try_mse(x).unwrap_err().to_string(),
        "mse: the mean over empty outputs (shape [0, 3]) is undefined; give at least one element"
    );
    assert!(x.try_bce(x).is_err());
    assert!(x.try_bce_with_logits(x).is_err());
    assert_eq!(tape.len(), before, "nothing recorded");
    // A sum of nothing is 0, and so is the half sum of squares, and a mean along a
    // non-empty axis of an empty tensor is empty.
    assert_eq!(x.sum().item().unwrap(), 0.0);
    assert_eq!(x.half_sse(x).item().unwrap(), 0.0);
    assert_eq!(x.mean_axis(1, false).value(), Tensor::vector([]));
}

#[test]
#[should_panic(expected = "mean: the mean of an empty tensor (shape [0, 3]) is undefined")]
fn mean_of_an_empty_tensor_panics_with_its_error() {
    let tape = Tape::new();
    let _ = empty(&tape).mean();
}

#[test]
#[should_panic(expected = "max: the maximum of an empty tensor (shape [0, 3]) is undefined")]
fn max_of_an_empty_tensor_panics_with_its_error() {
    let tape = Tape::new();
    let _ = empty(&tape).max();
}

// --- set_value names its own problem ---------------------------------------------------

#[test]
fn set_value_of_the_wrong_shape_says_so() {
    let tape = Tape::new();
    let v = tape.tensor(&Tensor::vector([1.0, 2.0]));
    let err = v.set_value(&Tensor::vector([1.0, 2.0, 3.0])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "set_value: the leaf has shape [2], but the new value has shape [3]; \
         give a value of the leaf's shape"
    );
    // Broadcastable shapes are refused just the same: a leaf keeps its shape.
    let err = v.set_value(&Tensor::scalar(1.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "set_value: the leaf has shape [2], but the new value has shape []; \
         give a value of the leaf's shape"
    );
    assert_eq!(v.value(), Tensor::vector([1.0, 2.0]));
}
