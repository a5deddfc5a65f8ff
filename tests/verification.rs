//! The verification toolkit proves what the lecture checks by hand: numerical gradients,
//! a gradient checker that catches the lecture's wrong backward rule, the step-by-step
//! trace of the worked example, and gradient descent that reports divergence.

use std::sync::Arc;
use tapegrad::check::{
    check_function, check_function_with, gradcheck, numerical_gradient, numerical_gradients,
    Tolerance, DEFAULT_H,
};
use tapegrad::optim::descent::{
    gradient_descent, Divergence, GradientDescent, GradientMethod, Outcome,
};
use tapegrad::trace::trace;
use tapegrad::{Error, Function, Result, ScalarFunction, Tape, Tensor, TensorRef, Var};

// ---------------------------------------------------------------------------------------
// The lecture's Function1 / Function2, right and wrong.

/// z = x − 2.
struct Function1;
impl ScalarFunction for Function1 {
    fn name(&self) -> &str {
        "function1"
    }
    fn value(&self, x: f64) -> f64 {
        x - 2.0
    }
    fn derivative(&self, _x: f64) -> f64 {
        1.0
    }
}

/// y = 2z², backward 4z·gy.
struct Function2;
impl Function for Function2 {
    fn name(&self) -> &str {
        "function2"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for (y, &z) in out.iter_mut().zip(inputs[0].data()) {
            *y = 2.0 * z * z;
        }
    }
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let z = inputs[0];
        let gz = z.data().iter().zip(gy.data()).map(|(z, g)| 4.0 * z * g);
        Ok(vec![Tensor::new(gz.collect(), z.shape().clone())?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        [-3.0, -0.5, 0.0, 2.0]
            .map(|z| vec![Tensor::scalar(z)])
            .to_vec()
    }
}

/// y = 2z² with the lecture's backward: `return self.y * 4`.
struct LectureFunction2;
impl Function for LectureFunction2 {
    fn name(&self) -> &str {
        "lecture_function2"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        Function2.forward(inputs, out)
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        _gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let gz = y.data().iter().map(|y| y * 4.0);
        Ok(vec![Tensor::new(gz.collect(), y.shape().clone())?])
    }
}

#[test]
fn gradcheck_passes_on_the_correct_function2_composition_at_every_lecture_point() -> Result<()> {
    let (f1, f2) = (Arc::new(Function1), Arc::new(Function2));
    for x in -1..=4 {
        let x = f64::from(x);
        let report = gradcheck(
            |v| v[0].apply(&f1)?.apply(&f2),
            &[Tensor::scalar(x)],
            &Tolerance::default(),
        )?;
        assert!(report.passed, "{report}");
        let worst = report.worst.as_ref().expect("one entry");
        assert_eq!(worst.analytic, 4.0 * (x - 2.0));
        assert!((worst.numerical - 4.0 * (x - 2.0)).abs() < 1e-9);
    }
    // On its own, at its check_at points, and on a tensor.
    let report = check_function(&f2, &[])?;
    assert!(report.passed, "{report}");
    assert_eq!(report.points, 4);
    let report = check_function(&f2, &[vec![Tensor::vector([-1.0, 0.5, 3.0])]])?;
    assert!(report.passed, "{report}");
    assert_eq!(report.entries, 3);
    Ok(())
}

#[test]
fn gradcheck_fails_on_the_lectures_function2_with_32_against_8_at_x_4() -> Result<()> {
    let (f1, bad) = (Arc::new(Function1), Arc::new(LectureFunction2));
    let report = gradcheck(
        |v| v[0].apply(&f1)?.apply(&bad),
        &[Tensor::scalar(4.0)],
        &Tolerance::default(),
    )?;
    assert!(!report.passed);
    assert_eq!(report.failures, 1);
    let worst = report.worst.as_ref().expect("one entry");
    assert_eq!((worst.point, worst.input, worst.at), (0, 0, 4.0));
    assert_eq!(worst.analytic, 32.0);
    assert!((worst.numerical - 8.0).abs() < 1e-9, "{}", worst.numerical);
    assert_eq!(worst.abs_error, report.max_abs_error);
    assert!((report.max_abs_error - 24.0).abs() < 1e-9);
    assert!((report.max_rel_error - 0.75).abs() < 1e-9);

    let text = report.to_string();
    assert!(text.contains("FAILED"), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in\n{text}"))
            .to_string()
    };
    assert!(line("analytic").ends_with(" 32"), "{text}");
    assert!(
        line("numerical").contains(" 7.99999999999") || line("numerical").contains(" 8.0000000000")
    );
    assert!(line("worst entry").ends_with("at 4"), "{text}");

    // The same bug, found by checking the function on its own at z = 2.
    let report = check_function(&bad, &[vec![Tensor::scalar(2.0)]])?;
    assert!(!report.passed);
    let worst = report.worst.as_ref().expect("one entry");
    assert_eq!((worst.analytic, worst.at), (32.0, 2.0));
    assert!((worst.numerical - 8.0).abs() < 1e-9);
    // At z = 0 both rules agree (0 = 0). At z = −1 the rule gives 8 for −4, 12 off;
    // at z = 2 it is 24 off, but on 32: the worst entry is the one furthest outside what
    // the tolerance allows there, z = −1.
    let points = [0.0, -1.0, 2.0].map(|z| vec![Tensor::scalar(z)]);
    let report = check_function(&bad, &points)?;
    assert_eq!((report.points, report.failures), (3, 2));
    let worst = report.worst.as_ref().expect("entries");
    assert_eq!((worst.point, worst.at, worst.analytic), (1, -1.0, 8.0));
    assert!((worst.numerical - -4.0).abs() < 1e-9);
    assert!((report.max_abs_error - 24.0).abs() < 1e-9);
    Ok(())
}

#[test]
fn the_lectures_backward_reproduces_the_numbers_it_printed() -> Result<()> {
    let (f1, bad) = (Arc::new(Function1), Arc::new(LectureFunction2));
    let mut tape = Tape::new();
    let mut printed = Vec::new();
    for x in 0..=4 {
        tape.clear();
        let x = tape.var(f64::from(x));
        let y = x.apply(&f1)?.apply(&bad)?;
        printed.push(y.backward()?.wrt_scalar(x)?);
    }
    assert_eq!(printed, [32.0, 8.0, 0.0, 8.0, 32.0]);
    Ok(())
}

#[test]
fn check_function_works_for_scalar_functions_and_reports_missing_points() -> Result<()> {
    struct Cube;
    impl ScalarFunction for Cube {
        fn name(&self) -> &str {
            "cube"
        }
        fn value(&self, x: f64) -> f64 {
            x * x * x
        }
        fn derivative(&self, x: f64) -> f64 {
            3.0 * x * x
        }
    }
    let cube = Arc::new(Cube);
    let report = check_function(
        &cube,
        &[vec![Tensor::scalar(1.5)], vec![Tensor::vector([-2.0, 0.1])]],
    )?;
    assert!(report.passed, "{report}");
    assert_eq!((report.points, report.entries), (2, 3));
    assert!(report.max_abs_error < 1e-7);
    assert!(report.to_string().starts_with("gradcheck cube: passed"));

    let err = check_function(&cube, &[]).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("cube"));
    let err = check_function(&cube, &[vec![]]).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    // Two tensors for a one-input function.
    let two = vec![Tensor::scalar(1.0), Tensor::scalar(2.0)];
    assert!(matches!(
        check_function(&cube, &[two]),
        Err(Error::Arity { .. })
    ));
    Ok(())
}

#[test]
fn tolerance_decides_and_is_validated() -> Result<()> {
    // 1% off: fails by default, passes with rel = 2e-2.
    struct OnePercentOff;
    impl ScalarFunction for OnePercentOff {
        fn name(&self) -> &str {
            "one_percent_off"
        }
        fn value(&self, x: f64) -> f64 {
            x.sin()
        }
        fn derivative(&self, x: f64) -> f64 {
            1.01 * x.cos()
        }
    }
    let f = Arc::new(OnePercentOff);
    let point = [vec![Tensor::scalar(0.3)]];
    assert!(!check_function(&f, &point)?.passed);
    let loose = Tolerance {
        rel: 2e-2,
        ..Tolerance::default()
    };
    assert!(check_function_with(&f, &point, &loose)?.passed);

    let bad_h = Tolerance {
        h: 0.0,
        ..Tolerance::default()
    };
    assert!(matches!(
        check_function_with(&f, &point, &bad_h),
        Err(Error::Invalid { .. })
    ));
    let bad_abs = Tolerance {
        abs: f64::NAN,
        ..Tolerance::default()
    };
    assert!(matches!(
        gradcheck(|x| Ok(x[0].sin()), &[Tensor::scalar(1.0)], &bad_abs),
        Err(Error::InvalidParameter { .. })
    ));
    Ok(())
}

#[test]
fn gradcheck_of_a_non_scalar_output_catches_an_error_a_plain_sum_would_hide() -> Result<()> {
    // A "softmax" whose backward forgets the coupling between elements. Σ softmax = 1, so
    // the gradient of a plain sum is 0 whatever the rule says about each element; the
    // weighted sum gradcheck uses still tells a wrong rule from a right one.
    struct DiagonalSoftmax;
    impl Function for DiagonalSoftmax {
        fn name(&self) -> &str {
            "diagonal_softmax"
        }
        fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
            let x = inputs[0].data();
            let total: f64 = x.iter().map(|v| v.exp()).sum();
            for (y, v) in out.iter_mut().zip(x) {
                *y = v.exp() / total;
            }
        }
        // Wrong on purpose: only the diagonal y(1 − y) of the Jacobian.
        fn backward(
            &self,
            inputs: &[TensorRef<'_>],
            y: TensorRef<'_>,
            gy: TensorRef<'_>,
        ) -> Result<Vec<Tensor>> {
            let g = y
                .data()
                .iter()
                .zip(gy.data())
                .map(|(y, g)| g * y * (1.0 - y));
            Ok(vec![Tensor::new(g.collect(), inputs[0].shape().clone())?])
        }
    }
    let x = Tensor::vector([0.5, -1.0, 2.0]);
    let report = check_function(&Arc::new(DiagonalSoftmax), &[vec![x.clone()]])?;
    assert!(!report.passed, "{report}");
    // The built-in softmax passes the same check.
    let report = gradcheck(|v| v[0].try_softmax(0), &[x], &Tolerance::default())?;
    assert!(report.passed, "{report}");
    Ok(())
}

#[test]
fn gradcheck_reports_the_multi_index_of_the_worst_entry() -> Result<()> {
    // Wrong only for the element at row 1, column 2 of a 2×3 input.
    struct WrongAt5;
    impl Function for WrongAt5 {
        fn name(&self) -> &str {
            "wrong_at_5"
        }
        fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
            out.copy_from_slice(inputs[0].data());
        }
        fn backward(
            &self,
            inputs: &[TensorRef<'_>],
            _y: TensorRef<'_>,
            gy: TensorRef<'_>,
        ) -> Result<Vec<Tensor>> {
            let mut g = gy.to_tensor();
            g.data_mut()[5] *= 2.0;
            Ok(vec![Tensor::new(g.into_data(), inputs[0].shape().clone())?])
        }
    }
    let x = Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])?;
    let report = gradcheck(
        |v| Ok(v[0].apply(&Arc::new(WrongAt5))?.sum()),
        &[x],
        &Tolerance::default(),
    )?;
    assert_eq!((report.entries, report.failures), (6, 1));
    let worst = report.worst.as_ref().expect("entries");
    assert_eq!((worst.index.clone(), worst.at), (vec![1, 2], 6.0));
    assert_eq!(worst.analytic, 2.0);
    assert!((worst.numerical - 1.0).abs() < 1e-9);
    assert!(report.to_string().contains("element [1, 2]"));
    Ok(())
}

#[test]
fn a_nan_or_infinite_gradient_is_the_worst_entry_and_fails() -> Result<()> {
    // d/dx of x·x is 2x; this rule says NaN at the second element and +∞ at the third.
    struct Broken;
    impl Function for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
            for (y, x) in out.iter_mut().zip(inputs[0].data()) {
                *y = x * x;
            }
        }
        fn backward(
            &self,
            inputs: &[TensorRef<'_>],
            _y: TensorRef<'_>,
            gy: TensorRef<'_>,
        ) -> Result<Vec<Tensor>> {
            let mut g: Vec<f64> = inputs[0]
                .data()
                .iter()
                .zip(gy.data())
                .map(|(x, g)| 2.0 * x * g)
                .collect();
            g[1] = f64::NAN;
            g[2] = f64::INFINITY;
            Ok(vec![Tensor::new(g, inputs[0].shape().clone())?])
        }
    }
    let x = Tensor::vector([1.0, 2.0, 3.0, 4.0]);
    let broken = Arc::new(Broken);
    let report = gradcheck(
        |v| Ok(v[0].apply(&broken)?.sum()),
        &[x],
        &Tolerance::default(),
    )?;
    assert_eq!((report.entries, report.failures), (4, 2));
    assert_eq!(report.max_abs_error, f64::INFINITY);
    let worst = report.worst.as_ref().expect("entries");
    assert_eq!(worst.index, vec![1]);
    assert!(worst.analytic.is_nan());
    assert!((worst.numerical - 4.0).abs() < 1e-9);
    assert!(report.to_string().contains("analytic       NaN"));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Numerical gradients.

#[test]
fn numerical_gradient_matches_closed_forms_and_restores_its_input() -> Result<()> {
    // f(x) = Σ xᵢ³ → 3xᵢ²; central differences are exact up to h²·f‴/6 = h² per entry.
    let mut x = Tensor::new(vec![-1.5, 0.0, 0.25, 2.0, 3.0, -0.5], [2, 3])?;
    let before: Vec<u64> = x.data().iter().map(|v| v.to_bits()).collect();
    let g = numerical_gradient(
        |x| Ok(x.data().iter().map(|v| v * v * v).sum()),
        &mut x,
        DEFAULT_H,
    )?;
    assert_eq!(g.shape().dims(), &[2, 3]);
    for (g, v) in g.data().iter().zip(x.data()) {
        assert!((g - 3.0 * v * v).abs() < 2e-8, "{g} vs {}", 3.0 * v * v);
    }
    let after: Vec<u64> = x.data().iter().map(|v| v.to_bits()).collect();
    assert_eq!(before, after);

    // Each probe sees exactly one element moved, by ±h, and the rest untouched.
    let original = x.clone();
    let mut probes = 0;
    numerical_gradient(
        |p| {
            let moved: Vec<usize> = (0..p.numel())
                .filter(|&k| p.data()[k] != original.data()[k])
                .collect();
            assert_eq!(moved.len(), 1);
            let d = (p.data()[moved[0]] - original.data()[moved[0]]).abs();
            assert!((d - DEFAULT_H).abs() < 1e-12);
            probes += 1;
            Ok(0.0)
        },
        &mut x,
        DEFAULT_H,
    )?;
    assert_eq!(probes, 12);

    // An error from f leaves the input as it was.
    let err = numerical_gradient(|_| Err(Error::StaleGradients), &mut x, DEFAULT_H);
    assert_eq!(err, Err(Error::StaleGradients));
    assert_eq!(x, original);
    assert!(numerical_gradient(|_| Ok(0.0), &mut x, -1e-4).is_err());
    assert!(numerical_gradient(|_| Ok(0.0), &mut x, f64::NAN).is_err());
    Ok(())
}

#[test]
fn numerical_gradients_of_several_tensors_match_the_tape() -> Result<()> {
    // f(W, b) = Σ sigmoid(W·x + b) for a fixed x: a layer.
    let w = Tensor::matrix(&[[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]])?;
    let b = Tensor::vector([0.1, -0.2, 0.3]);
    let x = Tensor::matrix(&[[1.0], [-2.0]])?;
    let mut xs = vec![w.clone(), b.clone()];
    let numerical = numerical_gradients(
        |xs| {
            let tape = Tape::new();
            let (w, b) = (tape.constant_tensor(&xs[0]), tape.constant_tensor(&xs[1]));
            let z = w.matmul(tape.constant_tensor(&x)).reshape([3]);
            z.try_add(b)?.sigmoid().sum().item()
        },
        &mut xs,
        DEFAULT_H,
    )?;
    let tape = Tape::new();
    let (wv, bv) = (tape.tensor(&w), tape.tensor(&b));
    let z = wv.matmul(tape.constant_tensor(&x)).reshape([3]);
    let grads = z.try_add(bv)?.sigmoid().sum().backward()?;
    for (analytic, numerical) in [
        (grads.wrt(wv)?, &numerical[0]),
        (grads.wrt(bv)?, &numerical[1]),
    ] {
        assert_eq!(analytic.shape(), numerical.shape());
        for (a, n) in analytic.data().iter().zip(numerical.data()) {
            assert!((a - n).abs() < 1e-9, "{a} vs {n}");
        }
    }
    assert_eq!(xs, vec![w, b]);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The trace of the worked example.

#[test]
fn trace_of_the_worked_example_holds_the_lectures_local_derivatives() -> Result<()> {
    let tape = Tape::new();
    let (w1, w2) = (tape.var(0.7), tape.var(0.5));
    let x = tape.constant(0.5);
    let z1 = w1 * x;
    let h1 = z1.sigmoid();
    let z2 = w2 * h1;
    let o = z2.sigmoid();
    let cost = (o - 1.0).powi(2);
    let grads = cost.backward()?;
    let table = trace(cost, &grads)?
        .label(w1, "W1")?
        .label(w2, "W2")?
        .label(o, "O")?;

    assert_eq!(table.rows().len(), cost.id() as usize + 1);
    for (k, row) in table.rows().iter().enumerate() {
        assert_eq!(row.id as usize, k);
    }
    let row = |v: Var<'_>| table.row(v).expect("recorded before the output").clone();
    let exact = |t: &Tensor| t.item().expect("scalar");

    // Values of the forward pass.
    assert_eq!(exact(&row(z1).value), 0.35);
    assert_eq!(exact(&row(h1).value), 0.5866175789173301);
    assert_eq!(exact(&row(z2).value), 0.29330878945866506);
    assert_eq!(exact(&row(o).value), 0.5728059857120793);
    assert_eq!(exact(&row(cost).value), 0.18249472584342818);

    // ∂O/∂Z2 = O(1 − O) in O's row, ∂Z2/∂W2 = h1 and ∂Z2/∂h1 = W2 in Z2's row,
    // ∂C/∂(O − Y) = 2(O − Y) in C's row, ∂Z1/∂W1 = X in Z1's row.
    assert_eq!(row(o).op, "sigmoid");
    assert_eq!(row(o).inputs, vec![z2.id()]);
    assert_eq!(exact(&row(o).local[0]), 0.2446992884444925);
    assert_eq!(row(z2).inputs, vec![w2.id(), h1.id()]);
    assert_eq!(exact(&row(z2).local[0]), 0.5866175789173301);
    assert_eq!(exact(&row(z2).local[1]), 0.5);
    assert_eq!(exact(&row(cost).local[0]), -0.8543880285758414);
    assert_eq!(exact(&row(z1).local[0]), 0.5);
    let s = 0.5866175789173301f64;
    assert!((exact(&row(h1).local[0]) - s * (1.0 - s)).abs() < 1e-16);

    // Upstream gradients and what each node passes on: ∂C/∂W2 and ∂C/∂W1.
    assert_eq!(exact(&row(o).upstream), -0.8543880285758414);
    assert_eq!(exact(&row(cost).upstream), 1.0);
    let to_w2 = row(z2).gradient[0].clone().expect("W2 takes gradients");
    assert_eq!(exact(&to_w2), -0.12264304766891344);
    assert_eq!(exact(&row(w2).upstream), -0.12264304766891344);
    assert_eq!(exact(&row(w1).upstream), -0.012674619993583183);
    // The constant X takes no gradient, and shows none.
    assert!(row(z1).gradient[1].is_none());
    assert!(!row(x).requires_grad);
    assert!(row(w1).local.is_empty() && row(w1).gradient.is_empty());

    // The printed table: each number on its node's line.
    let text = table.to_string();
    let line_of = |label: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(label))
            .unwrap_or_else(|| panic!("no line for {label} in\n{text}"))
            .to_string()
    };
    let o_line = line_of("O");
    assert!(o_line.contains("sigmoid"), "{o_line}");
    assert!(o_line.contains("0.5728059857120793"), "{o_line}");
    assert!(o_line.contains("0.2446992884444925"), "{o_line}");
    assert!(o_line.contains("-0.8543880285758414"), "{o_line}");
    let z2_line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{} ", z2.id())))
        .expect("Z2's line");
    assert!(z2_line.contains("0.5866175789173301"), "{z2_line}");
    assert!(z2_line.contains("-0.12264304766891344"), "{z2_line}");
    assert!(line_of("W1").contains("-0.012674619993583183"));
    Ok(())
}

#[test]
fn trace_of_tensor_nodes_shows_elementwise_derivatives_and_checks_its_arguments() -> Result<()> {
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::vector([-1.0, 0.0, 2.0]));
    let s = x.sigmoid();
    let y = (s * x).sum();
    let grads = y.backward()?;
    let table = trace(y, &grads)?;
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let local = &table.row(s).expect("row").local[0];
    for (d, v) in local.data().iter().zip([-1.0, 0.0, 2.0]) {
        assert!((d - sig(v) * (1.0 - sig(v))).abs() < 1e-15);
    }
    // x * x-like node with two different inputs: both partials, separately.
    let mul = table
        .rows()
        .iter()
        .find(|r| r.op == "mul")
        .expect("a mul row");
    assert_eq!(mul.local[0], x.value()); // ∂(s·x)/∂s = x
    assert_eq!(mul.local[1], s.value()); // ∂(s·x)/∂x = s
    assert_eq!(
        table.row(y).expect("row").local[0],
        Tensor::vector([1.0; 3])
    );
    // ∂y/∂x passed by the mul node plus that passed through the sigmoid is x's upstream.
    let through_sigmoid = table.row(s).expect("row").gradient[0]
        .clone()
        .expect("grad");
    let direct = mul.gradient[1].clone().expect("grad");
    let total: Vec<f64> = through_sigmoid
        .data()
        .iter()
        .zip(direct.data())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(Tensor::vector(total), grads.wrt(x)?);
    assert!(table.to_string().contains("[3] ["));

    // Gradients of another tape, a label from another tape or after the output.
    let other = Tape::new();
    let z = other.var(1.0);
    let other_grads = (z * 2.0).backward()?;
    assert!(matches!(
        trace(y, &other_grads),
        Err(Error::ForeignVariable { .. })
    ));
    assert!(matches!(
        table.clone().label(z, "z"),
        Err(Error::ForeignVariable { .. })
    ));
    let later = x * 2.0;
    assert!(table.row(later).is_none());
    assert!(matches!(
        table.label(later, "later"),
        Err(Error::Invalid { .. })
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Gradient descent on x0² + x1² from (−3, 4).

fn square_norm(x: Var<'_>) -> Result<Var<'_>> {
    Ok(x.powi(2).sum())
}

fn init() -> Tensor {
    Tensor::vector([-3.0, 4.0])
}

/// The largest distance of the path from xₖ = 0.8ᵏ·(−3, 4).
fn distance_from_closed_form(path: &[Tensor]) -> f64 {
    let mut worst = 0.0f64;
    for (k, x) in path.iter().enumerate() {
        let scale = 0.8f64.powi(k as i32);
        for (v, x0) in x.data().iter().zip([-3.0, 4.0]) {
            worst = worst.max((v - scale * x0).abs());
        }
    }
    worst
}

#[test]
fn gradient_descent_with_the_tape_follows_the_closed_form_path() -> Result<()> {
    let run = gradient_descent(square_norm, &init(), 0.1, 100)?;
    assert_eq!(run.outcome, Outcome::Completed);
    assert_eq!(run.path.len(), 101);
    assert_eq!(run.losses.len(), 101);
    assert!(distance_from_closed_form(&run.path) < 1e-12);
    assert!(run.point().data().iter().all(|v| v.abs() < 1e-9));
    // The lecture's printed result, (−6.11110793e−10, 8.14814391e−10).
    assert!((run.point().data()[0] - -6.11110793e-10).abs() < 1e-18);
    assert!((run.point().data()[1] - 8.14814391e-10).abs() < 1e-18);
    for (x, loss) in run.path.iter().zip(&run.losses) {
        let expected: f64 = x.data().iter().map(|v| v * v).sum();
        assert_eq!(*loss, expected);
    }
    assert_eq!(run.loss(), run.losses[100]);
    Ok(())
}

#[test]
fn gradient_descent_with_the_numerical_gradient_follows_the_same_path() -> Result<()> {
    let run = GradientDescent {
        lr: 0.1,
        steps: 100,
        gradient: GradientMethod::Numerical { h: DEFAULT_H },
        ..GradientDescent::default()
    }
    .run(square_norm, &init())?;
    assert_eq!(run.outcome, Outcome::Completed);
    assert_eq!(run.path.len(), 101);
    let distance = distance_from_closed_form(&run.path);
    assert!(distance < 1e-8, "{distance}");
    // Central differences are not exact in floating point: the path is close, not equal.
    assert!(distance > 0.0);
    assert!(run.point().data().iter().all(|v| v.abs() < 1e-9));
    Ok(())
}

#[test]
fn a_learning_rate_of_10_diverges_within_20_steps_and_no_nan_reaches_the_caller() -> Result<()> {
    for gradient in [
        GradientMethod::Tape,
        GradientMethod::Numerical { h: DEFAULT_H },
    ] {
        let run = GradientDescent {
            lr: 10.0,
            steps: 20,
            gradient,
            ..GradientDescent::default()
        }
        .run(square_norm, &init())?;
        let Outcome::Diverged {
            step,
            value,
            reason,
        } = run.outcome
        else {
            panic!("lr = 10 did not diverge: {:?}", run.outcome);
        };
        assert!(step <= 20);
        assert_eq!(reason, Divergence::LossGrew { steps: 5 });
        assert_eq!(step, 5);
        // Each step multiplies x by 1 − 2·10 = −19, so the loss by 361 (the central
        // difference is off by a few parts in 10⁸ at these magnitudes).
        assert!(
            (value / (25.0 * 361f64.powi(5)) - 1.0).abs() < 1e-6,
            "{value}"
        );
        assert_eq!(value, run.loss());
        assert!(run.diverged());
        assert!(run.losses.iter().all(|l| l.is_finite()));
        assert!(run
            .path
            .iter()
            .all(|x| x.data().iter().all(|v| v.is_finite())));
        assert!(run.outcome.to_string().starts_with("diverged at step 5"));
    }

    // With the growth check off, the run goes on until the loss overflows: still a
    // typed outcome, and still only finite numbers in the path and the losses.
    let run = GradientDescent {
        lr: 10.0,
        steps: 1000,
        patience: 0,
        ..GradientDescent::default()
    }
    .run(square_norm, &init())?;
    let Outcome::Diverged {
        step,
        value,
        reason,
    } = run.outcome
    else {
        panic!("no divergence: {:?}", run.outcome);
    };
    assert_eq!(reason, Divergence::NonFiniteLoss);
    assert_eq!(value, f64::INFINITY);
    // 25·361ᵏ overflows f64 (1.8e308) first at k = 120.
    assert_eq!(step, 120);
    assert_eq!(run.path.len(), 120);
    assert!(run.losses.iter().all(|l| l.is_finite()));
    assert!(run
        .path
        .iter()
        .all(|x| x.data().iter().all(|v| v.is_finite())));
    Ok(())
}

#[test]
fn a_far_too_small_learning_rate_barely_moves() -> Result<()> {
    let run = gradient_descent(square_norm, &init(), 1e-10, 100)?;
    assert_eq!(run.outcome, Outcome::Completed);
    // x₁₀₀ = (1 − 2e−10)¹⁰⁰·x₀: moved by 2e−8·|x₀| = 1e−7.
    let moved: f64 = run
        .point()
        .data()
        .iter()
        .zip(init().data())
        .map(|(x, x0)| (x - x0).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((moved - 1e-7).abs() < 1e-12, "{moved}");
    Ok(())
}

#[test]
fn gradient_descent_reports_bad_arguments_as_errors() {
    let lr_nan = gradient_descent(square_norm, &init(), f64::NAN, 10);
    assert!(matches!(
        lr_nan,
        Err(Error::InvalidParameter { name: "lr", .. })
    ));
    let bad_h = GradientDescent {
        gradient: GradientMethod::Numerical { h: 0.0 },
        ..GradientDescent::default()
    }
    .run(square_norm, &init());
    assert!(matches!(bad_h, Err(Error::Invalid { .. })));
    let nan_start = gradient_descent(square_norm, &Tensor::vector([f64::NAN, 1.0]), 0.1, 10);
    assert!(matches!(nan_start, Err(Error::Invalid { .. })));
    // ln(x) at x = −1 is NaN from the start: an error, not a run.
    let nan_loss = gradient_descent(|x| Ok(x.ln().sum()), &Tensor::vector([-1.0]), 0.1, 10);
    assert!(matches!(nan_loss, Err(Error::Invalid { .. })));
    // A loss that is not a scalar.
    let not_scalar = gradient_descent(|x| Ok(x * 2.0), &init(), 0.1, 10);
    assert!(matches!(not_scalar, Err(Error::NotScalar { .. })));
}

#[test]
fn zero_steps_return_the_starting_point() -> Result<()> {
    let run = gradient_descent(square_norm, &init(), 0.1, 0)?;
    assert_eq!(run.path, vec![init()]);
    assert_eq!(run.losses, vec![25.0]);
    assert_eq!(run.outcome, Outcome::Completed);
    Ok(())
}
