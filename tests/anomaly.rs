//! Anomaly mode: the first NaN or ±∞ of a forward pass or a sweep, named by its op, its
//! phase and the line of this file that recorded its node.

use std::sync::Arc;
use tapegrad::{Error, Gradients, Phase, ScalarFunction, Tape, Tensor};

/// The fields of an `Error::NonFinite`, or a panic naming the error.
fn non_finite(err: &Error) -> (&str, Phase, String, f64, Option<usize>, Option<usize>) {
    match err {
        Error::NonFinite {
            op,
            phase,
            location,
            value,
            input,
            element,
            ..
        } => (
            op.as_str(),
            *phase,
            location.map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line())),
            *value,
            *input,
            *element,
        ),
        other => panic!("expected a non-finite value, got: {other}"),
    }
}

/// `file:line` of this file at `line`.
fn here(line: u32) -> String {
    format!("{}:{line}", file!())
}

#[test]
fn ln_of_zero_is_named_in_forward_with_its_line() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.var(0.0);
    let (y, line) = (x.ln(), line!());
    let loss = y * 2.0 + 1.0;
    let err = loss.backward().unwrap_err();
    let (op, phase, at, value, input, element) = non_finite(&err);
    assert_eq!((op, phase, at), ("ln", Phase::Forward, here(line)));
    assert_eq!(value, f64::NEG_INFINITY);
    assert_eq!((input, element), (None, None));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("ln at {}:", here(line))),
        "{message}"
    );
    assert!(message.ends_with("produced -inf in forward"), "{message}");
}

#[test]
fn the_backward_of_sqrt_at_zero_is_named_with_its_line() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.var(0.0);
    let (y, line) = (x.sqrt(), line!());
    let loss = y * 3.0;
    // Forward is finite: sqrt(0) = 0, and the product is 0.
    assert_eq!(loss.item().unwrap(), 0.0);
    let err = loss.backward().unwrap_err();
    let (op, phase, at, value, input, element) = non_finite(&err);
    assert_eq!((op, phase, at), ("sqrt", Phase::Backward, here(line)));
    assert_eq!((value, input, element), (f64::INFINITY, Some(0), None));
    assert!(err
        .to_string()
        .ends_with("produced inf in backward (gradient of input 0)"));

    // The same through a reused `Gradients` and through the gradient graph.
    let mut grads = Gradients::new();
    let again = loss.backward_into(&mut grads).unwrap_err();
    assert_eq!(again, err);
    let graph = loss.grad_graph(&[x]).unwrap_err();
    let (op, phase, at, value, input, _) = non_finite(&graph);
    assert_eq!((op, phase, at), ("sqrt", Phase::Backward, here(line)));
    assert_eq!((value, input), (f64::INFINITY, Some(0)));
}

#[test]
fn a_tensor_names_its_first_bad_element() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.tensor(&Tensor::vector([1.0, 4.0, 0.0, 0.0]));
    let (y, line) = (x.ln(), line!());
    let err = y.sum().backward().unwrap_err();
    let (op, phase, at, value, _, element) = non_finite(&err);
    assert_eq!((op, phase, at), ("ln", Phase::Forward, here(line)));
    assert_eq!((value, element), (f64::NEG_INFINITY, Some(2)));
    assert!(err
        .to_string()
        .ends_with("produced -inf in forward (element 2)"));
    assert_eq!(tape.check_finite().unwrap_err(), err);

    let (r, line) = (x.sqrt(), line!());
    let err = r.sum().backward().unwrap_err();
    let (op, phase, at, value, input, element) = non_finite(&err);
    assert_eq!((op, phase, at), ("sqrt", Phase::Backward, here(line)));
    assert_eq!((value, input, element), (f64::INFINITY, Some(0), Some(2)));
}

#[test]
fn operators_and_binary_ops_are_named_at_the_callers_line() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let (a, b) = (tape.var(1.0), tape.var(0.0));
    let (q, line) = (a / b, line!());
    let err = (q + a).backward().unwrap_err();
    let (op, phase, at, value, ..) = non_finite(&err);
    assert_eq!((op, phase, at), ("div", Phase::Forward, here(line)));
    assert_eq!(value, f64::INFINITY);
}

#[test]
fn off_the_same_programs_give_their_nan_and_infinities_as_before() {
    let tape = Tape::new();
    assert!(!tape.is_detecting_anomaly());
    let x = tape.var(0.0);
    let y = x.ln();
    assert_eq!(
        (y * 2.0).backward().unwrap().wrt_scalar(x).unwrap(),
        f64::INFINITY
    );
    let r = x.sqrt() * 3.0;
    assert_eq!(r.backward().unwrap().wrt_scalar(x).unwrap(), f64::INFINITY);
    let t = tape.tensor(&Tensor::vector([1.0, 0.0]));
    let g = t.sqrt().sum().backward().unwrap().wrt(t).unwrap();
    assert_eq!(g.data(), &[0.5, f64::INFINITY]);
    // Turned on and off again, the mode leaves recording as it was.
    tape.detect_anomaly(true);
    tape.detect_anomaly(false);
    let z = x.sqrt() * 3.0;
    assert_eq!(z.backward().unwrap().wrt_scalar(x).unwrap(), f64::INFINITY);
}

#[test]
fn values_off_the_outputs_path_are_not_anomalies() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.var(0.0);
    let _off_the_path = x.ln();
    let y = x * 2.0 + 1.0;
    assert_eq!(y.backward().unwrap().wrt_scalar(x).unwrap(), 2.0);
    // The whole recording does hold one.
    assert!(tape.check_finite().is_err());
}

#[test]
fn a_leaf_given_nan_and_a_node_recorded_before_the_mode_are_reported() {
    let tape = Tape::new();
    let x = tape.var(0.0);
    let y = x.ln(); // recorded with the mode off: no line kept
    tape.detect_anomaly(true);
    let err = (y + 1.0).backward().unwrap_err();
    let (op, phase, at, ..) = non_finite(&err);
    assert_eq!((op, phase, at.as_str()), ("ln", Phase::Forward, ""));
    assert!(err.to_string().contains("ln at an unknown place"));

    let tape = Tape::new();
    tape.detect_anomaly(true);
    let (w, line) = (tape.var(f64::NAN), line!());
    let err = (w * 2.0).backward().unwrap_err();
    let (op, phase, at, value, ..) = non_finite(&err);
    assert_eq!((op, phase, at), ("leaf", Phase::Forward, here(line)));
    assert!(value.is_nan());
}

#[test]
fn replay_is_checked_like_a_recording() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.var(1.0);
    let (y, line) = (x.ln(), line!());
    let loss = y * y;
    assert_eq!(loss.backward().unwrap().wrt_scalar(x).unwrap(), 0.0);
    x.set_scalar(0.0).unwrap();
    tape.replay();
    let err = loss.backward().unwrap_err();
    let (op, phase, at, value, ..) = non_finite(&err);
    assert_eq!((op, phase, at), ("ln", Phase::Forward, here(line)));
    assert_eq!(value, f64::NEG_INFINITY);
    x.set_scalar(2.0).unwrap();
    tape.replay();
    let g = loss.backward().unwrap().wrt_scalar(x).unwrap();
    assert_eq!(g, 2.0 * 2f64.ln() / 2.0);
}

/// x ↦ x², whose derivative the user wrote wrong: NaN below zero.
struct BadSquare;

impl ScalarFunction for BadSquare {
    fn name(&self) -> &str {
        "bad_square"
    }
    fn value(&self, x: f64) -> f64 {
        x * x
    }
    fn derivative(&self, x: f64) -> f64 {
        if x < 0.0 {
            f64::NAN
        } else {
            2.0 * x
        }
    }
}

#[test]
fn a_user_functions_bad_gradient_is_named_by_its_name() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.tensor(&Tensor::vector([1.0, -1.0]));
    let f = Arc::new(BadSquare);
    let (y, line) = (x.apply(&f).unwrap(), line!());
    let err = y.sum().backward().unwrap_err();
    let (op, phase, at, value, input, element) = non_finite(&err);
    assert_eq!((op, phase, at), ("bad_square", Phase::Backward, here(line)));
    assert!(value.is_nan());
    assert_eq!((input, element), (Some(0), Some(1)));
}

#[test]
fn clear_forgets_the_lines_and_keeps_the_mode() {
    let mut tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.var(0.0);
    let _ = x.ln();
    tape.clear();
    assert!(tape.is_detecting_anomaly());
    let x = tape.var(1.0);
    let y = x.ln() - 1.0;
    assert!(tape.check_finite().is_ok());
    let (z, line) = (y / x.ln(), line!()); // -1 / 0 = -inf
    let err = z.exp().backward().unwrap_err();
    let (op, phase, at, ..) = non_finite(&err);
    assert_eq!((op, phase, at), ("div", Phase::Forward, here(line)));
}

#[test]
fn tensor_ops_beyond_the_elementwise_ones_name_the_callers_line() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let a = tape.tensor(&Tensor::matrix(&[[1e200, 1.0], [0.0, 1.0]]).unwrap());
    let b = tape.tensor(&Tensor::matrix(&[[1e200, 0.0], [1.0, 1.0]]).unwrap());
    let (p, line) = (a.matmul(b), line!());
    let err = p.sum().backward().unwrap_err();
    let (op, phase, at, value, _, element) = non_finite(&err);
    assert_eq!((op, phase, at), ("matmul", Phase::Forward, here(line)));
    assert_eq!((value, element), (f64::INFINITY, Some(0)));
}

/// A user function whose forward panics.
#[derive(Clone)]
struct PanicsForward;

impl ScalarFunction for PanicsForward {
    fn name(&self) -> &str {
        "panics_forward"
    }
    fn value(&self, _: f64) -> f64 {
        panic!("this forward always fails")
    }
    fn derivative(&self, _: f64) -> f64 {
        0.0
    }
}

#[test]
fn a_recording_taken_back_after_a_panic_keeps_the_lines_before_it() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let x = tape.var(-1.0);
    let (_y, before) = (x.ln(), line!());
    // The user function's forward panics: the tape takes its node back off, and keeps
    // the nodes before it, with their lines.
    let t = tape.tensor(&Tensor::vector([1.0, 2.0]));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.apply(&PanicsForward)));
    assert!(caught.is_err());
    let err = tape.check_finite().unwrap_err();
    let (op, _, at, ..) = non_finite(&err);
    assert_eq!((op, at), ("ln", here(before)));
    // The node recorded next takes the lost node's id, and its own line.
    let fresh = Tape::new();
    fresh.detect_anomaly(true);
    let x = fresh.var(-1.0);
    let t = fresh.tensor(&Tensor::vector([1.0, 2.0]));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.apply(&PanicsForward)));
    assert!(caught.is_err());
    let (w, line) = (x.sqrt(), line!());
    let err = w.backward().unwrap_err();
    let (op, _, at, ..) = non_finite(&err);
    assert_eq!((op, at), ("sqrt", here(line)));
}

#[test]
fn a_block_of_variables_given_nan_is_named_with_its_line() {
    let tape = Tape::new();
    tape.detect_anomaly(true);
    let _x = tape.var(1.0);
    let (xs, line) = (tape.vars(&[1.0, f64::NAN]), line!());
    let err = (xs.get(1).unwrap() * 2.0).backward().unwrap_err();
    let (op, _, at, value, ..) = non_finite(&err);
    assert_eq!((op, at), ("leaf", here(line)));
    assert!(value.is_nan());
}
