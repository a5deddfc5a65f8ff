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
    let err = a.matmul(b).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(err.to_string().starts_with("matmul: "), "{err}");
    // A product that fits still works: [2, 0]·[0, 3] is a [2, 3] matrix of zeros.
    let a = tape.tensor(&Tensor::new(Vec::new(), [2, 0])?);
    let b = tape.tensor(&Tensor::new(Vec::new(), [0, 3])?);
    assert_eq!(a.matmul(b)?.value(), Tensor::zeros([2, 3]));
    Ok(())
}

#[test]
fn a_reshape_past_any_tensor_is_an_error() -> Result<()> {
    // An empty tensor has 0 elements; [2³¹, 2³¹, 2³¹, 0] wraps around to 0 as well.
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::new(Vec::new(), [0])?);
    let err = x.reshape([1 << 31, 1 << 31, 1 << 31, 0]).unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(err.to_string().starts_with("reshape: "), "{err}");
    assert_eq!(x.reshape([2, 0, 3])?.shape(), Shape::from([2, 0, 3]));
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
