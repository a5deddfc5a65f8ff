//! The tape and the reverse sweep: accumulation, reuse, no-grad and detach, deep
//! chains, and every error a public call can return.

use std::sync::Arc;
use tapegrad::{Error, Function, Gradients, Result, ScalarFunction, Tape, Tensor, TensorRef, Var};

#[test]
fn a_node_used_several_times_accumulates() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(3.0);
    assert_eq!((x * x).backward()?.wrt_scalar(x)?, 6.0);
    assert_eq!((x + x).backward()?.wrt_scalar(x)?, 2.0);
    // y = x·x·x + x·x: y' = 3x² + 2x
    let y = x * x * x + x * x;
    assert_eq!(y.backward()?.wrt_scalar(x)?, 27.0 + 6.0);
    // A diamond: u = x², y = sin(u) · u; y' = (cos(u)·u + sin(u))·2x
    let u = x * x;
    let y = u.sin() * u;
    let want = (9f64.cos() * 9.0 + 9f64.sin()) * 6.0;
    assert!((y.backward()?.wrt_scalar(x)? - want).abs() < 1e-12);
    Ok(())
}

#[test]
fn backward_can_run_again_with_fresh_gradients() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(2.0);
    let y = x * x;
    let first = y.backward()?;
    let second = y.backward()?;
    assert_eq!(first.wrt_scalar(x)?, 4.0);
    assert_eq!(second.wrt_scalar(x)?, 4.0);
    let z = y * 3.0;
    let mut grads = Gradients::new();
    z.backward_into(&mut grads)?;
    z.backward_into(&mut grads)?;
    assert_eq!(grads.wrt_scalar(x)?, 12.0);
    Ok(())
}

/// One `Gradients` reused across passes of many sizes and over two tapes holds what
/// fresh gradients hold after every pass. A pass on a tape of scalars has the helper
/// thread zero a spare arena while it sweeps, for the next pass to take; a pass on a
/// tape with a general node zeroes its arena before the sweep.
#[test]
#[cfg_attr(miri, ignore = "400,000 nodes take too long to interpret")]
fn reused_gradients_match_fresh_ones_across_sizes_and_tapes() -> Result<()> {
    let mut grads = Gradients::new();
    let mut tapes = [Tape::new(), Tape::new()];
    let sizes: [i32; 7] = [70_000, 10, 100_000, 70_000, 5, 70_000, 80_000];
    for (round, n) in sizes.into_iter().enumerate() {
        let tape = &mut tapes[round % 2];
        tape.clear();
        let tape = &*tape;
        let (x, c) = (tape.var(0.5 + round as f64 / 8.0), tape.var(0.999));
        let (mut y, mut kept) = (x, vec![]);
        for k in 0..n {
            y = (y + c) * c;
            if k % 9_999 == 0 {
                kept.push(y);
            }
        }
        // Every third round ends in a tensor op, a general node: d/dy Σ y·[1, 2] = 3.
        let scale = if round % 3 == 2 {
            y = (y * tape.constant_tensor(&Tensor::vector([1.0, 2.0]))).sum();
            3.0
        } else {
            1.0
        };
        y.backward_into(&mut grads)?;
        // dy/dx = 0.999ⁿ, times the tensor's sum.
        let (got, want) = (grads.wrt_scalar(x)?, scale * 0.999f64.powi(n));
        assert!(
            (got - want).abs() <= 1e-9 * want,
            "round {round}: {got}, {want}"
        );
        let fresh = y.backward()?;
        for v in [x, c].into_iter().chain(kept) {
            let (a, b) = (grads.wrt_scalar(v)?, fresh.wrt_scalar(v)?);
            assert_eq!(a.to_bits(), b.to_bits(), "round {round}: {a}, {b}");
        }
    }
    Ok(())
}

/// Arenas large enough that the sweep zeroes them, and `set`, `vars` and `wrt_into`
/// copy, on two threads: a reused `Gradients` holds no stale number from the last pass.
#[test]
#[cfg_attr(miri, ignore = "arenas of 300,000 numbers take too long to interpret")]
fn large_arenas_are_zeroed_and_copied_whole() -> Result<()> {
    let n = 300_001;
    let data: Vec<f64> = (0..n).map(|i| (i % 1013) as f64 * 0.5 - 7.0).collect();
    let mut tape = Tape::new();
    let mut grads = Gradients::new();
    let mut out = vec![f64::NAN; n];
    // d/dx Σ x² = 2x, then d/dx Σ 3x = 3 into the same gradients.
    for pass in 0..2 {
        tape.clear();
        let x = tape.tensor(&Tensor::vector(data.clone()));
        let y = if pass == 0 {
            (x * x).sum()
        } else {
            (x * 3.0).sum()
        };
        y.backward_into(&mut grads)?;
        grads.wrt_into(x, &mut out)?;
        for (i, (&g, &v)) in out.iter().zip(&data).enumerate() {
            let want = if pass == 0 { 2.0 * v } else { 3.0 };
            assert_eq!(g, want, "pass {pass}, element {i}");
        }
    }
    // Scalar variables: a block of them set anew, then their gradients read at once.
    tape.clear();
    let xs = tape.vars(&data);
    let y = xs.iter().fold(tape.constant(0.0), |y, x| y + x * x);
    let doubled: Vec<f64> = data.iter().map(|v| 2.0 * v).collect();
    xs.set(&doubled)?;
    tape.replay();
    y.backward_into(&mut grads)?;
    grads.wrt_vars(xs, &mut out)?;
    for (i, (&g, &v)) in out.iter().zip(&doubled).enumerate() {
        assert_eq!(g, 2.0 * v, "scalar {i}");
    }
    Ok(())
}

#[test]
fn constants_unrelated_and_later_variables_have_zero_gradient() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(2.0);
    let c = tape.constant(5.0);
    let unrelated = tape.var(7.0);
    let y = x * c;
    let grads = y.backward()?;
    let later = tape.var(1.0);
    assert_eq!(grads.wrt_scalar(x)?, 5.0);
    assert_eq!(grads.wrt_scalar(c)?, 0.0);
    assert_eq!(grads.wrt_scalar(unrelated)?, 0.0);
    assert_eq!(grads.wrt_scalar(later)?, 0.0);
    assert!(!c.requires_grad() && x.requires_grad() && y.requires_grad());
    Ok(())
}

#[test]
fn no_grad_and_detach_stop_gradients() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(3.0);
    let frozen = {
        let _guard = tape.no_grad();
        let _nested = tape.no_grad();
        x * x
    };
    assert!(!tape.is_no_grad());
    assert!(!frozen.requires_grad());
    let y = x * frozen; // frozen = 9 is a constant here
    assert_eq!(y.backward()?.wrt_scalar(x)?, 9.0);
    let z = x * x.detach();
    assert_eq!(z.backward()?.wrt_scalar(x)?, 3.0);
    Ok(())
}

#[test]
fn seeded_backward_from_a_tensor() -> Result<()> {
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::new(vec![1.0, 2.0, 3.0, 4.0], [2, 2])?);
    let y = x.sin();
    let seed = Tensor::new(vec![1.0, -1.0, 0.5, 2.0], [2, 2])?;
    let g = y.backward_with(&seed)?.wrt(x)?;
    let want: Vec<f64> = [1.0f64, 2.0, 3.0, 4.0]
        .iter()
        .zip(seed.data())
        .map(|(x, s)| x.cos() * s)
        .collect();
    assert_eq!(g, Tensor::new(want, [2, 2])?);
    Ok(())
}

#[test]
#[cfg_attr(miri, ignore = "a million nodes take hours to interpret")]
fn a_million_node_chain_runs_backward_without_recursion() -> Result<()> {
    const N: usize = 1_000_000;
    let tape = Tape::with_capacity(N + 1, N + 1);
    let x0 = tape.var(0.9);
    let mut x = x0;
    for _ in 0..N {
        x = x.sin();
    }
    let grads = x.backward()?;
    // d/dx0 of sin∘…∘sin = Π cos(x_k) over the chain's inputs.
    let (mut v, mut product) = (0.9f64, 1.0f64);
    for _ in 0..N {
        product *= v.cos();
        v = v.sin();
    }
    // The tape's sine is libm's; std's may differ in the last bit at some steps.
    assert!((x.item()? - v).abs() <= 1e-12 * v.abs());
    let g = grads.wrt_scalar(x0)?;
    assert!(
        (g - product).abs() <= 1e-12 * product.abs(),
        "{g} vs {product}"
    );
    assert_eq!(tape.len(), N + 1);
    Ok(())
}

#[test]
fn clear_keeps_working_and_gradients_know_their_recording() -> Result<()> {
    let mut tape = Tape::new();
    let x = tape.var(1.0);
    let old = (x * 2.0).backward()?;
    tape.clear();
    assert!(tape.is_empty());
    let x = tape.var(4.0);
    let y = x.sqrt();
    assert_eq!(y.backward()?.wrt_scalar(x)?, 0.25);
    assert_eq!(old.wrt_scalar(x), Err(Error::StaleGradients));
    Ok(())
}

#[test]
fn tape_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Tape>();
    assert_send::<Gradients>();
    assert_send::<Tensor>();
}

/// A user function whose backward returns `extra` more gradients than inputs, or
/// (`wrong_shape`) a gradient of the wrong shape.
struct Faulty {
    extra: usize,
    wrong_shape: bool,
}

impl Function for Faulty {
    fn name(&self) -> &str {
        "faulty"
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
        let mut grads = vec![gy.to_tensor(); inputs.len() + self.extra];
        if self.wrong_shape {
            grads[0] = Tensor::zeros([7]);
        }
        Ok(grads)
    }
}

struct Square;

impl ScalarFunction for Square {
    fn name(&self) -> &str {
        "square"
    }
    fn value(&self, x: f64) -> f64 {
        x * x
    }
    fn derivative(&self, x: f64) -> f64 {
        2.0 * x
    }
}

fn message(result: Result<Var<'_>>) -> String {
    result.map(|_| ()).unwrap_err().to_string()
}

#[test]
fn every_error_variant_from_a_public_call() -> Result<()> {
    let tape = Tape::new();
    let other = Tape::new();
    let m = tape.tensor(&Tensor::zeros([2, 3]));
    let v = tape.tensor(&Tensor::zeros([4]));
    let x = tape.var(1.0);
    let nodes = tape.len();

    // Shape mismatch, from every try_ form, naming the op and both shapes.
    assert_eq!(
        message(m.try_add(v)),
        "add: shapes [2, 3] and [4] cannot be broadcast together"
    );
    assert_eq!(
        message(m.try_sub(v)),
        "sub: shapes [2, 3] and [4] cannot be broadcast together"
    );
    assert_eq!(
        message(m.try_mul(v)),
        "mul: shapes [2, 3] and [4] cannot be broadcast together"
    );
    assert_eq!(
        message(v.try_div(m)),
        "div: shapes [4] and [2, 3] cannot be broadcast together"
    );

    // A variable of another tape.
    let foreign = other.var(1.0);
    assert_eq!(
        message(x.try_add(foreign)),
        "add: the variable belongs to a different tape"
    );
    let grads = (x * 2.0).backward()?;
    assert_eq!(
        grads.wrt(foreign).unwrap_err(),
        Error::ForeignVariable {
            op: "gradients".into()
        }
    );

    // Backward from a non-scalar, and a seed of the wrong shape.
    assert_eq!(
        m.backward().unwrap_err().to_string(),
        "backward: the output has shape [2, 3], not a scalar; give a seed gradient with backward_with"
    );
    assert_eq!(
        m.backward_with(&Tensor::zeros([3, 2]))
            .unwrap_err()
            .to_string(),
        "backward: the seed gradient has shape [3, 2] but the output has shape [2, 3]"
    );

    // Op parameters that are not finite numbers.
    assert_eq!(
        message(x.try_leaky_relu(f64::NAN)),
        "leaky_relu: parameter alpha must be a finite number, got NaN"
    );
    assert_eq!(
        message(x.try_powf(f64::NAN)),
        "powf: parameter p must be a finite number, got NaN"
    );
    assert_eq!(
        message(x.try_elu(f64::INFINITY)),
        "elu: parameter alpha must be a finite number, got inf"
    );
    assert_eq!(
        message(x.try_swish(f64::NEG_INFINITY)),
        "swish: parameter beta must be a finite number, got -inf"
    );

    // Axes out of range.
    assert_eq!(
        message(m.try_sum_axis(2, false)),
        "sum_axis: axis 2 is out of range for a tensor of rank 2"
    );
    assert!(matches!(
        x.try_mean_axis(0, true),
        Err(Error::InvalidAxis { .. })
    ));
    assert!(matches!(
        v.try_max_axis(1, false),
        Err(Error::InvalidAxis { .. })
    ));

    // Wrong number of inputs for a user function.
    let square = Arc::new(Square);
    assert_eq!(
        message(tape.apply(&square, &[x, x])),
        "square: expected 1 inputs, got 2"
    );

    // Not a scalar.
    assert_eq!(
        m.item().unwrap_err().to_string(),
        "item: expected a scalar, got a value of shape [2, 3]"
    );
    let g = m.sum().backward()?;
    assert!(matches!(g.wrt_scalar(m), Err(Error::NotScalar { .. })));

    // Tensor data of the wrong length.
    assert_eq!(
        Tensor::new(vec![1.0; 5], [2, 3]).unwrap_err().to_string(),
        "tensor: shape [2, 3] holds 6 values, but 5 were given"
    );
    assert!(Tensor::matrix(&[vec![1.0, 2.0], vec![3.0]]).is_err());

    // A user function returning the wrong number of gradients, or a wrong shape.
    let too_many = Arc::new(Faulty {
        extra: 1,
        wrong_shape: false,
    });
    let y = x.apply(&too_many)?;
    assert_eq!(
        y.backward().unwrap_err().to_string(),
        "faulty: backward returned 2 gradients for 1 inputs"
    );
    let misshapen = Arc::new(Faulty {
        extra: 0,
        wrong_shape: true,
    });
    let y = x.apply(&misshapen)?;
    assert_eq!(
        y.backward().unwrap_err().to_string(),
        "faulty: the gradient for input 0 has shape [7], but the input has shape []"
    );

    // A second derivative of a function without a graph-building rule.
    let (inputs, out) = ([x], x.apply(&too_many)?);
    let err = too_many.backward_graph(&inputs, out, out).unwrap_err();
    assert_eq!(
        err,
        Error::NotTwiceDifferentiable {
            function: "faulty".into()
        }
    );

    // Failed calls recorded nothing.
    // x * 2.0, m.sum() and three applications of user functions.
    assert_eq!(tape.len(), nodes + 5);
    Ok(())
}

#[test]
fn operators_panic_with_both_shapes_on_mismatch() {
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::zeros([2, 3]));
    let b = tape.tensor(&Tensor::zeros([4]));
    let before = tape.len();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a * b)).unwrap_err();
    let text = panic.downcast_ref::<String>().expect("a formatted message");
    assert_eq!(
        text,
        "mul: shapes [2, 3] and [4] cannot be broadcast together"
    );
    assert_eq!(tape.len(), before);
}

/// A computation mixing scalar and tensor nodes, broadcasting and reductions.
fn model<'t>(tape: &'t Tape, w: Var<'t>, b: Var<'t>) -> Var<'t> {
    let x =
        tape.constant_tensor(&Tensor::new(vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.75], [2, 3]).unwrap());
    let h = (x * w + b).tanh();
    let s = h.sum_axis(1, false).sigmoid();
    (s.max() * b.sum() + s.mean()).softplus()
}

#[test]
fn replay_is_bit_identical_to_recording_afresh() -> Result<()> {
    let tape = Tape::new();
    let w = tape.tensor(&Tensor::vector([0.1, 0.2, 0.3]));
    let b = tape.tensor(&Tensor::new(vec![0.0, 0.5], [2, 1])?);
    let y = model(&tape, w, b);
    let mut grads = Gradients::new();

    for k in 1..4 {
        let k = f64::from(k);
        let new_w = Tensor::vector([0.3 * k, -0.7, 1.1 / k]);
        let new_b = Tensor::new(vec![-0.2 * k, 0.9], [2, 1])?;
        w.set_value(&new_w)?;
        b.set_value(&new_b)?;
        tape.replay();
        y.backward_into(&mut grads)?;

        let fresh = Tape::new();
        let (fw, fb) = (fresh.tensor(&new_w), fresh.tensor(&new_b));
        let fy = model(&fresh, fw, fb);
        let fg = fy.backward()?;
        assert_eq!(y.item()?.to_bits(), fy.item()?.to_bits());
        assert_eq!(grads.wrt(w)?, fg.wrt(fw)?);
        assert_eq!(grads.wrt(b)?, fg.wrt(fb)?);
    }
    Ok(())
}

/// On a tape of scalars alone each node's value sits at the slot numbered like the
/// node, which replay and backward rely on; a tensor recorded first moves every slot.
#[test]
fn scalar_replay_and_backward_hold_whether_or_not_slots_match_node_ids() -> Result<()> {
    let mut tape = Tape::new();
    for layout in ["scalars", "tensor first", "empty tensor first", "scalars"] {
        tape.clear();
        match layout {
            "tensor first" => {
                let _ = tape.tensor(&Tensor::vector([9.0, 9.0, 9.0]));
            }
            // One slot fewer than nodes before the scalars, one more after them: as
            // many slots as nodes in all, but no slot numbered like its node.
            "empty tensor first" => {
                let _ = tape.tensor(&Tensor::vector(Vec::new()));
            }
            _ => {}
        }
        let (x, y) = (tape.var(0.5), tape.var(-1.5));
        if layout == "empty tensor first" {
            let _ = tape.tensor(&Tensor::vector([9.0, 9.0]));
        }
        let f = (x * y).sin() + x.tanh() * y;
        for (a, b) in [(0.5, -1.5), (2.0, 0.25), (-0.75, 3.0)] {
            x.set_scalar(a)?;
            y.set_scalar(b)?;
            tape.replay();
            let (c, t) = ((a * b).cos(), a.tanh());
            assert!((f.item()? - ((a * b).sin() + t * b)).abs() < 1e-14);
            let g = f.backward()?;
            assert!((g.wrt_scalar(x)? - (c * b + (1.0 - t * t) * b)).abs() < 1e-14);
            assert!((g.wrt_scalar(y)? - (c * a + t)).abs() < 1e-14);
        }
    }
    Ok(())
}

#[test]
fn only_leaves_of_the_same_shape_can_be_set() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(1.0);
    let v = tape.tensor(&Tensor::vector([1.0, 2.0]));
    let y = x.exp();
    assert_eq!(
        y.set_scalar(2.0).unwrap_err().to_string(),
        "set_value: only a leaf's value can be set; this variable was made by exp"
    );
    assert_eq!(
        v.set_value(&Tensor::vector([1.0, 2.0, 3.0]))
            .unwrap_err()
            .to_string(),
        "set_value: the leaf has shape [2], but the new value has shape [3]; give a value of \
         the leaf's shape"
    );
    assert_eq!(v.value(), Tensor::vector([1.0, 2.0]));
    x.set_scalar(0.0)?;
    tape.replay();
    assert_eq!(y.item()?, 1.0);
    Ok(())
}

/// A user function that adds into its output slot instead of assigning it.
struct AddsIntoOutput;

impl Function for AddsIntoOutput {
    fn name(&self) -> &str {
        "adds_into_output"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for (y, &x) in out.iter_mut().zip(inputs[0].data()) {
            *y += 3.0 * x;
        }
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        Ok(vec![gy.to_tensor().map(|g| 3.0 * g)])
    }
}

#[test]
fn a_reused_tape_hands_user_functions_a_zeroed_slot() -> Result<()> {
    let f = Arc::new(AddsIntoOutput);
    let mut tape = Tape::new();
    for k in 1..4 {
        tape.clear();
        // Fill the arena with other values first, so a reused slot is not zero.
        let noise = tape.tensor(&Tensor::vector([7.0; 8])).exp();
        let _ = noise;
        tape.clear();
        let x = tape.tensor(&Tensor::vector([f64::from(k), 2.0]));
        let y = x.apply(&f)?;
        assert_eq!(y.value(), Tensor::vector([3.0 * f64::from(k), 6.0]));
        x.set_value(&Tensor::vector([1.0, 1.0]))?;
        tape.replay();
        assert_eq!(y.value(), Tensor::vector([3.0, 3.0]));
    }
    Ok(())
}

/// Every scalar op with a parameter, so that replay has to rebuild each op from the
/// parameter its node keeps.
fn parametrised<'t>(x: Var<'t>, y: Var<'t>) -> Result<Var<'t>> {
    let a = (x * 1.5 + 0.25) / 3.0 - 0.5;
    let b = 2.0 - y + 1.0 / (x * x + 1.0);
    let c = x.powf(2.5) + y.powi(3);
    let d = (x - y).leaky_relu(0.1) + (y - x).elu(0.7) + (x * y).swish(1.3);
    Ok(a * b + c * d)
}

#[test]
fn replay_rebuilds_scalar_ops_from_their_parameters() -> Result<()> {
    let tape = Tape::new();
    let (x, y) = (tape.var(0.8), tape.var(1.7));
    let z = parametrised(x, y)?;
    let dz = z.grad_graph(&[x, y])?;
    for (u, v) in [(0.3, 2.2), (1.9, 0.4), (1.1, 1.1)] {
        x.set_scalar(u)?;
        y.set_scalar(v)?;
        tape.replay();
        let grads = z.backward()?;

        let fresh = Tape::new();
        let (fx, fy) = (fresh.var(u), fresh.var(v));
        let fz = parametrised(fx, fy)?;
        let fgrads = fz.backward()?;
        assert_eq!(z.item()?.to_bits(), fz.item()?.to_bits());
        for (a, b) in [(x, fx), (y, fy)] {
            assert_eq!(
                grads.wrt_scalar(a)?.to_bits(),
                fgrads.wrt_scalar(b)?.to_bits()
            );
        }
        // The recorded gradient graph replays too: its values are the fresh gradient.
        assert_eq!(dz[0].item()?.to_bits(), fgrads.wrt_scalar(fx)?.to_bits());
        assert_eq!(dz[1].item()?.to_bits(), fgrads.wrt_scalar(fy)?.to_bits());
    }
    // The ops keep their names and parameters: second derivatives match the
    // numerical derivative of the first.
    let names: Vec<String> = [x * 1.5, 2.0 - y, x.powf(2.5), x.elu(0.7)]
        .iter()
        .map(|v| v.op_name())
        .collect();
    assert_eq!(names, ["mul_scalar", "scalar_sub", "powf", "elu"]);
    let report = tapegrad::check::gradgradcheck(
        |v| parametrised(v[0], v[1]),
        &[Tensor::scalar(0.9), Tensor::scalar(1.4)],
        &tapegrad::check::Tolerance::default(),
    )?;
    assert!(report.passed, "{report}");
    Ok(())
}

#[test]
fn many_scalars_are_set_and_read_at_once_or_not_at_all() -> Result<()> {
    let tape = Tape::new();
    let xs: Vec<Var<'_>> = (1..=4).map(|k| tape.var(f64::from(k))).collect();
    let c = tape.constant(10.0);
    let y = (xs[0] * xs[1] + xs[2].sin()) * xs[3] + c;
    tape.set_scalars(&xs, &[0.5, -2.0, 1.5, 3.0])?;
    tape.replay();
    let grads = y.backward()?;
    let mut g = [f64::NAN; 4];
    grads.wrt_scalars(&xs, &mut g)?;
    let one_by_one: Vec<f64> = xs
        .iter()
        .map(|&x| grads.wrt_scalar(x))
        .collect::<Result<_>>()?;
    assert_eq!(g.to_vec(), one_by_one);
    assert_eq!(
        g,
        [
            -2.0 * 3.0,
            0.5 * 3.0,
            1.5f64.cos() * 3.0,
            -1.0 + 1.5f64.sin()
        ]
    );
    // A constant has gradient zero, as with wrt_scalar.
    let mut gc = [f64::NAN];
    grads.wrt_scalars(&[c], &mut gc)?;
    assert_eq!(gc, [0.0]);

    // Errors change nothing.
    let other = Tape::new();
    let z = other.var(1.0);
    let v = tape.tensor(&Tensor::vector([1.0, 2.0]));
    let set = |vars: &[Var<'_>], values: &[f64]| tape.set_scalars(vars, values).unwrap_err();
    assert!(set(&xs, &[1.0])
        .to_string()
        .contains("4 variables but 1 values"));
    assert!(matches!(
        set(&[xs[0], z], &[1.0, 2.0]),
        Error::ForeignVariable { .. }
    ));
    assert!(matches!(
        set(&[xs[0], y], &[1.0, 2.0]),
        Error::NotALeaf { .. }
    ));
    // A foreign variable is reported first, wherever it stands.
    assert!(matches!(
        set(&[y, z], &[1.0, 2.0]),
        Error::ForeignVariable { .. }
    ));
    assert!(matches!(
        set(&[xs[0], v], &[1.0, 2.0]),
        Error::NotScalar { .. }
    ));
    assert_eq!(xs[0].item()?, 0.5);

    let mut out = [7.0; 2];
    let read = |vars: &[Var<'_>], out: &mut [f64]| grads.wrt_scalars(vars, out).unwrap_err();
    assert!(read(&xs[..1], &mut out)
        .to_string()
        .contains("1 variables but 2 slots"));
    assert!(matches!(
        read(&[xs[0], z], &mut out),
        Error::ForeignVariable { .. }
    ));
    assert!(matches!(
        read(&[xs[0], v], &mut out),
        Error::NotScalar { .. }
    ));
    assert!(matches!(
        read(&[v, z], &mut out),
        Error::ForeignVariable { .. }
    ));
    assert_eq!(out, [7.0; 2]);
    Ok(())
}

/// W1's function, Σᵢ sin(xᵢxᵢ₊₁) + tanh(xᵢ), on a list of scalar variables.
fn w1<'t>(tape: &'t Tape, x: impl Iterator<Item = Var<'t>> + Clone) -> Var<'t> {
    x.clone()
        .zip(x.skip(1))
        .fold(tape.constant(0.0), |y, (a, b)| {
            y + ((a * b).sin() + a.tanh())
        })
}

#[test]
fn a_block_of_vars_gives_the_results_of_single_variables_bit_for_bit() -> Result<()> {
    let start = [0.3, -1.2, 0.7, 2.5, -0.4];
    let later = [[1.1, 0.2, -0.9, 0.05, 3.0], [-2.0, 0.6, 0.6, -1.5, 0.25]];
    // With a tensor recorded first, the block's tape is no longer dense.
    for shifted in [false, true] {
        let block_tape = Tape::new();
        if shifted {
            let _ = block_tape.tensor(&Tensor::vector([1.0, 2.0]));
        }
        let x = block_tape.vars(&start);
        assert_eq!(x.values(), start.to_vec());
        let y = w1(&block_tape, x.iter());
        let single_tape = Tape::new();
        let xs: Vec<Var> = start.iter().map(|&v| single_tape.var(v)).collect();
        let ys = w1(&single_tape, xs.iter().copied());
        let (mut gb, mut gs) = (Gradients::new(), Gradients::new());
        let (mut out_b, mut out_s) = ([0.0; 5], [0.0; 5]);
        for values in [start].iter().chain(&later) {
            x.set(values)?;
            single_tape.set_scalars(&xs, values)?;
            block_tape.replay();
            single_tape.replay();
            y.backward_into(&mut gb)?;
            ys.backward_into(&mut gs)?;
            gb.wrt_vars(x, &mut out_b)?;
            gs.wrt_scalars(&xs, &mut out_s)?;
            assert_eq!(y.item()?.to_bits(), ys.item()?.to_bits());
            assert_eq!(out_b.map(f64::to_bits), out_s.map(f64::to_bits));
            // One variable of the block, read on its own, agrees too.
            assert_eq!(gb.wrt_scalar(x.get(3).unwrap())?, out_b[3]);
        }
    }
    Ok(())
}

#[test]
fn a_block_of_vars_reports_bad_input_and_changes_nothing() -> Result<()> {
    let mut tape = Tape::new();
    let x = tape.vars(&[1.0, 2.0]);
    let y = x.iter().fold(tape.constant(0.0), |y, v| y + v * v);
    let grads = y.backward()?;
    let mut out = [7.0; 3];
    assert_eq!(
        x.set(&[1.0]).unwrap_err().to_string(),
        "set: 2 variables but 1 values"
    );
    assert_eq!(x.values(), vec![1.0, 2.0]);
    assert_eq!(
        grads.wrt_vars(x, &mut out).unwrap_err().to_string(),
        "wrt_vars: 2 variables but 3 slots"
    );
    assert_eq!(out, [7.0; 3]);
    let mut out = [7.0; 2];
    let other = Tape::new();
    let z = other.vars(&[1.0, 2.0]);
    assert!(matches!(
        grads.wrt_vars(z, &mut out),
        Err(Error::ForeignVariable { .. })
    ));
    assert_eq!(out, [7.0; 2]);
    grads.wrt_vars(x, &mut out)?;
    assert_eq!(out, [2.0, 4.0]);

    // Variables recorded after the pass, or under a no-grad guard, have gradient zero.
    let late = tape.vars(&[5.0]);
    let mut one = [7.0];
    grads.wrt_vars(late, &mut one)?;
    assert_eq!(one, [0.0]);
    let frozen = {
        let _guard = tape.no_grad();
        tape.vars(&[3.0, 4.0])
    };
    let y = frozen.iter().fold(y, |y, v| y * v);
    y.backward()?.wrt_vars(frozen, &mut out)?;
    assert_eq!(out, [0.0, 0.0]);

    // Gradients of an earlier recording are stale.
    tape.clear();
    let fresh = tape.vars(&[1.0, 2.0]);
    assert!(matches!(
        grads.wrt_vars(fresh, &mut out),
        Err(Error::StaleGradients)
    ));
    assert!(tape.vars(&[]).is_empty());
    Ok(())
}

/// f(a, b) = sin(a·b) + tanh(a) − b/a, with its value and gradient in closed form.
fn f_and_closed_form<'t>(a: Var<'t>, b: Var<'t>) -> (Var<'t>, [f64; 3]) {
    let (x, y) = (a.item().unwrap(), b.item().unwrap());
    let value = (x * y).sin() + x.tanh() - y / x;
    let da = (x * y).cos() * y + 1.0 - x.tanh().powi(2) + y / (x * x);
    let db = (x * y).cos() * x - 1.0 / x;
    ((a * b).sin() + a.tanh() - b / a, [value, da, db])
}

#[test]
fn scalars_from_every_source_record_the_same_function() -> Result<()> {
    let (a0, b0) = (0.7, -1.3);
    let mut params = tapegrad::nn::Params::new();
    params.insert("a", Tensor::scalar(a0))?;
    params.insert("b", Tensor::scalar(b0))?;
    // With and without a tensor first: value slots equal to node ids, or not.
    for shifted in [false, true] {
        let tape = Tape::new();
        if shifted {
            let _ = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0]));
        }
        let block = tape.vars(&[5.0, a0, b0]);
        let summed = tape.tensor(&Tensor::vector([a0, 0.0])).sum();
        let bound = params.bind(&tape);
        let sources = [
            (tape.var(a0), tape.var(b0)),
            (block.get(1).unwrap(), block.get(2).unwrap()),
            (block.iter().nth(1).unwrap(), block.iter().nth(2).unwrap()),
            (bound.get("a")?, bound.get("b")?),
            (summed, tape.var(b0).detach()),
        ];
        for (k, (a, b)) in sources.into_iter().enumerate() {
            let (y, [value, da, db]) = f_and_closed_form(a, b);
            assert!((y.item()? - value).abs() < 1e-14, "source {k}");
            let grads = y.backward()?;
            assert!((grads.wrt_scalar(a)? - da).abs() < 1e-13, "source {k}");
            // The detached b is a constant.
            let db = if k == 4 { 0.0 } else { db };
            assert!((grads.wrt_scalar(b)? - db).abs() < 1e-13, "source {k}");
            assert!(y.requires_grad());
        }
    }
    Ok(())
}

#[test]
fn an_inner_no_grad_guard_ending_first_keeps_the_outer_scope() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(2.0);
    let xs = tape.vars(&[2.0]);
    let outer = tape.no_grad();
    let inner = tape.no_grad();
    drop(inner);
    assert!(tape.is_no_grad());
    let c = x * 3.0;
    let d = xs.get(0).unwrap() * x;
    let constants = tape.vars(&[1.0]);
    assert!(!c.requires_grad() && !d.requires_grad());
    assert!(!constants.get(0).unwrap().requires_grad());
    drop(outer);
    assert!(!tape.is_no_grad());
    let y = x * c + d * x + constants.get(0).unwrap() * x;
    assert!(y.requires_grad());
    // y = x·6 + 4·x + 1·x with c, d and the constant frozen.
    let grads = y.backward()?;
    assert_eq!(grads.wrt_scalar(x)?, 11.0);
    assert_eq!(grads.wrt_scalar(xs.get(0).unwrap())?, 0.0);
    assert_eq!(grads.wrt_scalar(constants.get(0).unwrap())?, 0.0);
    Ok(())
}

#[test]
fn replay_and_backward_skip_only_the_leading_leaves() -> Result<()> {
    let tape = Tape::new();
    let x = tape.vars(&[1.5, -0.5]);
    let (a, b) = (x.get(0).unwrap(), x.get(1).unwrap());
    let p = a * b; // the first op, right after the leaves
    let c = tape.var(2.0); // a leaf after an op
    let y = p * c + a;
    // Backward from a leading leaf.
    let from_leaf = a.backward()?;
    assert_eq!(
        (from_leaf.wrt_scalar(a)?, from_leaf.wrt_scalar(b)?),
        (1.0, 0.0)
    );
    for ([u, v], w) in [([1.5, -0.5], 2.0), ([3.0, 0.25], 4.0)] {
        x.set(&[u, v])?;
        c.set_scalar(w)?;
        tape.replay();
        assert_eq!((p.item()?, y.item()?), (u * v, u * v * w + u));
        let g = y.backward()?;
        assert_eq!(g.wrt_scalar(a)?, v * w + 1.0);
        assert_eq!(g.wrt_scalar(b)?, u * w);
        assert_eq!(g.wrt_scalar(c)?, u * v);
    }
    Ok(())
}

// A tape reached from inside an op's own rules: a leaked tape in a thread-local, and a
// variable of it that a user function finds there.
thread_local! {
    static SHARED_TAPE: &'static Tape = Box::leak(Box::new(Tape::new()));
    static SHARED_VAR: std::cell::Cell<Option<Var<'static>>> = const { std::cell::Cell::new(None) };
}

/// A function whose value (when `in_value`) or derivative records `x · x` on the
/// shared tape.
struct RecordsInside {
    in_value: bool,
}

impl RecordsInside {
    fn record(&self) {
        let x = SHARED_VAR.with(|v| v.get()).expect("a shared variable");
        std::hint::black_box(x * x);
    }
}

impl ScalarFunction for RecordsInside {
    fn name(&self) -> &str {
        "records_inside"
    }
    fn value(&self, x: f64) -> f64 {
        if self.in_value {
            self.record();
        }
        x
    }
    fn derivative(&self, _x: f64) -> f64 {
        self.record();
        1.0
    }
}

/// Runs `f` on the shared tape and returns its panic message.
fn panic_on_shared_tape(f: impl FnOnce(&'static Tape, Var<'static>)) -> String {
    let tape = SHARED_TAPE.with(|t| *t);
    let x = tape.var(3.0);
    SHARED_VAR.with(|v| v.set(Some(x)));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tape, x)))
        .expect_err("recording inside the tape's own work panics");
    // The tape still records.
    let y = x * x;
    assert_eq!(y.item().unwrap(), 9.0);
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn recording_from_inside_a_forward_rule_panics_instead_of_aliasing() {
    let text = panic_on_shared_tape(|tape, x| {
        let f = Arc::new(RecordsInside { in_value: true });
        let _ = tape.apply(&f, &[x]);
    });
    assert!(text.contains("already borrowed"), "{text}");
}

#[test]
fn recording_from_inside_a_backward_rule_panics_instead_of_aliasing() {
    let text = panic_on_shared_tape(|tape, x| {
        let f = Arc::new(RecordsInside { in_value: false });
        let y = tape.apply(&f, &[x]).unwrap();
        let _ = y.backward();
    });
    assert!(text.contains("already borrowed"), "{text}");
}

#[test]
fn variables_recorded_on_after_new_values_and_replay_use_the_new_values() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(2.0);
    let xs = tape.vars(&[1.0, 2.0]);
    let (a, b) = (xs.get(0).unwrap(), xs.get(1).unwrap());
    let y = x * x + a * b;
    let s = y.sin();
    assert_eq!(y.item()?, 6.0);

    // Every way of giving leaves new values, each followed by replay: a variable made
    // before (`x`, `a`, `b`, `y`, `s`) must record with the new values.
    let rewrites: [&dyn Fn() -> Result<()>; 4] = [
        &|| x.set_scalar(3.0),
        &|| x.set_value(&Tensor::scalar(4.0)),
        &|| xs.set(&[5.0, 6.0]),
        &|| tape.set_scalars(&[x, a], &[7.0, 8.0]),
    ];
    for rewrite in rewrites {
        rewrite()?;
        tape.replay();
        let (xv, av, bv) = (x.item()?, a.item()?, b.item()?);
        let yv = xv * xv + av * bv;
        assert_eq!(y.item()?, yv);
        // Binary and unary ops on variables made before the rewrite.
        assert_eq!((y + 1.0).item()?, yv + 1.0);
        assert_eq!((x * a).item()?, xv * av);
        assert_eq!((a - b).item()?, av - bv);
        assert_eq!(y.sin().item()?, s.item()?);
        assert_eq!(x.exp().item()?, xv.exp());
    }
    // Before any replay, too: the leaf's new value, and the old value of the rest.
    x.set_scalar(-1.0)?;
    assert_eq!((x * 2.0).item()?, -2.0);
    assert_eq!((y * 1.0).item()?, y.item()?);
    Ok(())
}

/// A scalar function whose derivative is NaN everywhere.
struct NanDerivative;

impl ScalarFunction for NanDerivative {
    fn name(&self) -> &str {
        "nan_derivative"
    }
    fn value(&self, x: f64) -> f64 {
        x
    }
    fn derivative(&self, _x: f64) -> f64 {
        f64::NAN
    }
}

/// A user function whose backward panics: it must never run for an output that does
/// not depend on it.
struct PanicsInBackward;

impl Function for PanicsInBackward {
    fn name(&self) -> &str {
        "panics_in_backward"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out.copy_from_slice(inputs[0].data());
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        _gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        panic!("backward ran for an output that does not depend on this node")
    }
}

/// Branches with an infinite or NaN local derivative at x = 0, for recording beside
/// an output that does not use them.
type Branch = for<'t> fn(Var<'t>) -> Var<'t>;

fn dead_branches() -> [(&'static str, Branch); 6] {
    [
        ("ln", |x| x.ln()),
        ("sqrt", |x| x.sqrt()),
        ("1/x", |x| 1.0 / x),
        // 0/0: its partials are NaN.
        ("x/(x·1)", |x| x / (x * 1.0)),
        ("exp(x + 1000)", |x| (x + 1000.0).exp()),
        ("user function", |x| {
            x.apply(&Arc::new(NanDerivative)).unwrap()
        }),
    ]
}

/// A node the output does not depend on takes no part in its backward pass, whatever
/// its local derivative: 0 · ∞ would otherwise turn the input's gradient into NaN.
#[test]
fn nodes_off_the_outputs_path_leave_its_gradients_alone() -> Result<()> {
    let mut reused = Gradients::new();
    for (name, branch) in dead_branches() {
        // Scalars, through every entry point of the sweep.
        let tape = Tape::new();
        let x = tape.var(0.0);
        let dead = branch(x);
        let z = x * 2.0;
        assert_eq!(z.backward()?.wrt_scalar(x)?, 2.0, "{name}");
        z.backward_into(&mut reused)?;
        assert_eq!(reused.wrt_scalar(x)?, 2.0, "{name}");
        assert_eq!(reused.wrt_scalar(dead)?, 0.0, "{name}");
        let seeded = z.backward_with(&Tensor::scalar(3.0))?;
        assert_eq!(seeded.wrt_scalar(x)?, 6.0, "{name}");
        assert_eq!(z.grad_graph(&[x])?[0].item()?, 2.0, "{name}");
        tape.replay();
        assert_eq!(z.backward()?.wrt_scalar(x)?, 2.0, "{name} after replay");

        // Tensors: the dead branch's entry at 0 has the infinite derivative.
        let tape = Tape::new();
        let x = tape.tensor(&Tensor::vector([0.0, 1.0]));
        let _dead = branch(x);
        let z = (x * 2.0).sum();
        assert_eq!(z.backward()?.wrt(x)?, Tensor::vector([2.0, 2.0]), "{name}");
        z.backward_into(&mut reused)?;
        assert_eq!(reused.wrt(x)?, Tensor::vector([2.0, 2.0]), "{name}");
    }
    Ok(())
}

#[test]
fn a_user_function_off_the_path_is_never_called_backward() -> Result<()> {
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::vector([1.0, 2.0]));
    let off = x.apply(&Arc::new(PanicsInBackward))?;
    let y = (x * x).sum();
    assert_eq!(y.backward()?.wrt(x)?, Tensor::vector([2.0, 4.0]));
    assert_eq!(y.grad_graph(&[x])?[0].value(), Tensor::vector([2.0, 4.0]));
    // The function's node and the output share an input, and the function comes
    // before the output, so a sweep over every node would reach it.
    assert!(off.id() < y.id());
    Ok(())
}

/// The second-order helpers sweep graphs where each gradient's nodes lie beside the
/// others': [[2, 0], [0, 0]] for x0² + x1 with a branch of infinite derivative at
/// x0 = 0 that nothing uses.
#[test]
fn higher_order_helpers_sweep_only_the_outputs_ancestors() -> Result<()> {
    fn f<'t>(v: &[Var<'t>]) -> Result<Var<'t>> {
        let x = v[0];
        let _dead = x.ln();
        let (x0, x1) = (x.narrow(0, 0, 1), x.narrow(0, 1, 1));
        Ok((x0 * x0 + x1).sum())
    }
    let at = [Tensor::vector([0.0, 5.0])];
    let h = tapegrad::higher::hessian(f, &at)?;
    assert_eq!(h, Tensor::new(vec![2.0, 0.0, 0.0, 0.0], [2, 2])?);
    let g = tapegrad::higher::grad(f, &at)?;
    assert_eq!(g[0], Tensor::vector([0.0, 1.0]));
    Ok(())
}

/// What a caught failure may not change: a fresh computation on the tape after it
/// gives, bit for bit, what it gives on a tape that never failed, before and after a
/// replay at new inputs.
fn survives(tape: &Tape, len_before: usize, what: &str) -> Result<()> {
    assert_eq!(tape.len(), len_before, "{what}: the tape changed length");
    let x = tape.tensor(&Tensor::vector([0.5, -1.5, 2.0]));
    let y = (x.sin() * x).sum();
    let fresh = Tape::new();
    let fx = fresh.tensor(&Tensor::vector([0.5, -1.5, 2.0]));
    let fy = (fx.sin() * fx).sum();
    assert_eq!(y.item()?.to_bits(), fy.item()?.to_bits(), "{what}");
    assert_eq!(y.backward()?.wrt(x)?, fy.backward()?.wrt(fx)?, "{what}");
    x.set_value(&Tensor::vector([1.0, 2.0, 3.0]))?;
    tape.replay();
    fx.set_value(&Tensor::vector([1.0, 2.0, 3.0]))?;
    fresh.replay();
    assert_eq!(
        y.item()?.to_bits(),
        fy.item()?.to_bits(),
        "{what} after replay"
    );
    assert_eq!(y.backward()?.wrt(x)?, fy.backward()?.wrt(fx)?, "{what}");
    Ok(())
}

/// A user function whose forward panics; its value has two numbers, so that on a
/// tape of scalars it would be the first node that does not take one slot.
struct PanicsInForward;

impl Function for PanicsInForward {
    fn name(&self) -> &str {
        "panics_in_forward"
    }
    fn output_shape(&self, _inputs: &[&tapegrad::Shape]) -> Result<tapegrad::Shape> {
        Ok(tapegrad::Shape::from([2]))
    }
    fn forward(&self, _inputs: &[TensorRef<'_>], _out: &mut [f64]) {
        panic!("forward refuses")
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        Ok(vec![Tensor::scalar(gy.data().iter().sum())])
    }
}

/// Any failure while recording, an error or a caught panic, leaves the tape as it was:
/// the tape then records, differentiates and replays as one that never failed.
#[test]
fn a_tape_after_a_failed_recording_is_the_tape_before_it() -> Result<()> {
    let quiet = |f: &mut dyn FnMut()| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("panics")
    };
    let mut tape = Tape::new();
    for dense in [true, false] {
        tape.clear();
        let tape = &tape;
        let s = tape.var(2.0);
        let _ = s * s;
        if !dense {
            let _ = tape.tensor(&Tensor::vector([1.0, 2.0]));
        }
        // A caught panic: a user function's forward, on a tape of scalars or not.
        let before = tape.len();
        quiet(&mut || {
            let _ = s.apply(&Arc::new(PanicsInForward));
        });
        assert_eq!(tape.len(), before);
        // Scalars still append on the fast path if the tape is dense.
        let t = s * 3.0;
        assert_eq!(t.backward()?.wrt_scalar(s)?, 3.0);

        // An error: shapes that do not broadcast.
        let a = tape.tensor(&Tensor::vector([1.0, 2.0]));
        let b = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0]));
        let before = tape.len();
        assert!(a.try_add(b).is_err());
        assert_eq!(tape.len(), before);
        // An error: a value past the 2^32 numbers a tape holds (an outer product of
        // 70,000 numbers with themselves), refused before anything is allocated. Too
        // many numbers to copy onto the tape under Miri's interpreter.
        if !cfg!(miri) {
            let column = tape.constant_tensor(&Tensor::ones([70_000, 1]));
            let row = tape.constant_tensor(&Tensor::ones([1, 70_000]));
            let before = tape.len();
            let err = column.try_matmul(row).unwrap_err();
            assert!(err.to_string().contains("2^32"), "{err}");
            assert_eq!(tape.len(), before);
        }
        let before_outer = tape.len();
        // A caught panic: an operator on shapes that do not broadcast.
        quiet(&mut || {
            let _ = a + b;
        });
        assert_eq!(tape.len(), before_outer);
        // A caught panic: a user function's forward.
        quiet(&mut || {
            let _ = a.sum().apply(&Arc::new(PanicsInForward));
        });
        assert_eq!(tape.len(), before_outer + 1);
        // A caught panic in backward leaves the recording alone too.
        quiet(&mut || {
            let _ = a
                .apply(&Arc::new(PanicsInBackward))
                .unwrap()
                .sum()
                .backward();
        });
        survives(tape, tape.len(), if dense { "dense tape" } else { "tape" })?;
    }
    Ok(())
}

/// A general node taken back after a panic takes its list of inputs with it: the
/// next general node, on other inputs, reads its own.
#[test]
fn a_general_node_after_a_panicking_one_reads_its_own_inputs() -> Result<()> {
    let tape = Tape::new();
    let s = tape.var(2.0);
    let t = tape.tensor(&Tensor::vector([1.0, 2.0]));
    for x in [s, t] {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = x.apply(&Arc::new(PanicsInForward));
        }));
        assert!(caught.is_err());
    }
    let u = tape.tensor(&Tensor::vector([10.0, 20.0, 30.0]));
    let total = u.sum();
    assert_eq!(total.item()?, 60.0);
    let product = (u * u).sum();
    assert_eq!(product.item()?, 1400.0);
    let grads = product.backward()?;
    assert_eq!(grads.wrt(u)?.data(), &[20.0, 40.0, 60.0]);
    assert_eq!(grads.wrt(t)?.data(), &[0.0, 0.0]);
    tape.replay();
    assert_eq!(total.item()?, 60.0);
    Ok(())
}

/// A pass that shows every node it runs to be an ancestor lets the next pass over the
/// same recording from the same root skip the test; another root, another recording or
/// a node that became off-path must not be taken for one.
#[test]
fn passes_after_a_replay_keep_to_the_roots_ancestors() -> Result<()> {
    let mut grads = Gradients::new();
    let mut tape = Tape::new();
    for round in 0..2 {
        tape.clear();
        let x = tape.var(1.0);
        let whole = (x * 3.0).sin() * x; // every node an ancestor
        let _dead = x.ln(); // off the path of `part`, ∞ slope at 0
        let part = x * 2.0;
        for v in [1.0, 0.0, 2.0, 0.0] {
            x.set_scalar(v)?;
            tape.replay();
            whole.backward_into(&mut grads)?;
            let want = (3.0 * v).cos() * 3.0 * v + (3.0 * v).sin();
            assert_eq!(grads.wrt_scalar(x)?, want, "round {round}, x = {v}");
            part.backward_into(&mut grads)?;
            assert_eq!(grads.wrt_scalar(x)?, 2.0, "round {round}, x = {v}");
            part.backward_into(&mut grads)?;
            assert_eq!(grads.wrt_scalar(x)?, 2.0, "round {round}, x = {v}");
        }
    }
    Ok(())
}

/// A panic from an operator names the line that used it, not a line of tapegrad.
#[test]
fn an_operators_panic_points_at_its_caller() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Option<(String, u32)>>> = Arc::new(Mutex::new(None));
    let hook_seen = Arc::clone(&seen);
    // Only this thread's panic: other tests of the binary run beside this one.
    let this_thread = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let (Some(at), true) = (info.location(), std::thread::current().id() == this_thread) {
            *hook_seen.lock().unwrap() = Some((at.file().to_string(), at.line()));
        }
    }));
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::zeros([2, 3]));
    let b = tape.tensor(&Tensor::zeros([4]));
    let line = line!() + 1;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a + b));
    std::panic::set_hook(previous);
    assert!(caught.is_err());
    let (file, at) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the hook saw the panic");
    assert!(file.ends_with("engine.rs"), "{file}");
    assert_eq!(at, line);
}

/// `Error`'s `Debug` is its message: what `fn main() -> Result<(), Error>` prints.
#[test]
fn an_errors_debug_output_is_its_message() {
    let tape = Tape::new();
    let a = tape.tensor(&Tensor::zeros([2, 3]));
    let b = tape.tensor(&Tensor::zeros([4]));
    let err = a.try_add(b).unwrap_err();
    assert_eq!(
        format!("{err:?}"),
        "add: shapes [2, 3] and [4] cannot be broadcast together"
    );
}

#[test]
fn a_no_grad_scope_ends_with_its_closure() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(2.0);
    let (frozen, inside) = tape.no_grad_scope(|| (x * x, tape.is_no_grad()));
    assert!(inside && !tape.is_no_grad());
    let y = x * frozen;
    assert_eq!(y.backward()?.wrt_scalar(x)?, 4.0);
    Ok(())
}

#[test]
fn vars_recorded_after_other_nodes_leave_those_nodes_in_the_sweep_and_replay() {
    // Leaves, an op, then a block of variables, then an op on all of them: the leading
    // leaves the sweep and replay skip end before the first op.
    let tape = Tape::new();
    let (a, b) = (tape.var(2.0), tape.var(5.0));
    let y = a * a;
    let xs = tape.vars(&[3.0, 4.0, 6.0]);
    let z = y * xs.get(2).unwrap();
    let grads = y.backward().unwrap();
    assert_eq!(grads.wrt_scalar(a).unwrap(), 4.0);
    let grads = z.backward().unwrap();
    assert_eq!(grads.wrt_scalar(a).unwrap(), 24.0);
    assert_eq!(grads.wrt_scalar(b).unwrap(), 0.0);
    a.set_scalar(3.0).unwrap();
    tape.replay();
    assert_eq!((y.item().unwrap(), z.item().unwrap()), (9.0, 54.0));
    // Two leaves, then a block of three: the op right after them is swept.
    let tape = Tape::new();
    let (_, c) = (tape.var(1.0), tape.var(2.0));
    let more = tape.vars(&[3.0, 4.0, 5.0]);
    let w = more.get(0).unwrap() * c;
    let grads = w.backward().unwrap();
    assert_eq!(grads.wrt_scalar(c).unwrap(), 3.0);
    assert_eq!(grads.wrt_scalar(more.get(0).unwrap()).unwrap(), 2.0);
}

#[test]
fn a_block_of_variables_reads_writes_and_shows_its_values() {
    let tape = Tape::new();
    let first = tape.var(9.0);
    let xs = tape.vars(&[1.5, -2.0, 4.0]);
    assert!(std::ptr::eq(xs.tape(), &tape));
    assert_eq!((xs.len(), xs.is_empty()), (3, false));
    assert_eq!(xs.values(), [1.5, -2.0, 4.0]);
    let x1 = xs.get(1).unwrap();
    assert!(xs.get(3).is_none());
    assert_eq!(format!("{x1:?}"), "Var#2 -2");
    assert_eq!(format!("{xs:?}"), "[Var#1 1.5, Var#2 -2, Var#3 4]");
    // New values land in the variables' own slots, not in the leaf before them.
    let y = xs.get(0).unwrap() * x1 + xs.get(2).unwrap();
    xs.set(&[3.0, 0.5, -1.0]).unwrap();
    assert_eq!(xs.values(), [3.0, 0.5, -1.0]);
    assert_eq!(first.item().unwrap(), 9.0);
    tape.replay();
    assert_eq!(y.item().unwrap(), 0.5);
    // A wrong length is an error and changes nothing.
    let err = xs.set(&[1.0, 2.0]).unwrap_err();
    assert!(
        err.to_string().contains("3 variables but 2 values"),
        "{err}"
    );
    assert_eq!(xs.values(), [3.0, 0.5, -1.0]);
    // An empty block.
    let none = tape.vars(&[]);
    assert!(none.is_empty() && none.values().is_empty());
    assert_eq!(format!("{none:?}"), "[]");
    none.set(&[]).unwrap();
}

#[test]
fn a_variable_of_another_tape_is_refused_on_the_path_without_hints() {
    // Variables of a bound parameter store carry no hint, so binary ops on them take
    // the path that reads their nodes: it must refuse a variable of another tape, on
    // either side, and record nothing.
    let mut params = tapegrad::nn::Params::new();
    params.insert("w", Tensor::scalar(2.0)).unwrap();
    let (mine, other) = (Tape::new(), Tape::new());
    let _padding = (other.var(7.0), other.var(8.0));
    let w = params.bind(&mine).get("w").unwrap();
    let x = other.var(3.0);
    let (before_mine, before_other) = (mine.len(), other.len());
    for result in [w.try_add(x), x.try_mul(w), w.try_sub(x), x.try_div(w)] {
        assert!(
            matches!(result, Err(Error::ForeignVariable { .. })),
            "{result:?}"
        );
    }
    assert_eq!((mine.len(), other.len()), (before_mine, before_other));
    // On one tape, the same ops record.
    let v = params.bind(&other).get("w").unwrap();
    assert_eq!((v * x).item().unwrap(), 6.0);
}

#[test]
fn gradients_clone_and_the_debug_forms_show_their_contents() {
    let tape = Tape::new();
    let x = tape.var(3.0);
    let y = x * x;
    let grads = y.backward().unwrap();
    let copy = grads.clone();
    assert_eq!(copy.wrt_scalar(x).unwrap(), 6.0);
    assert_eq!(copy.wrt(y).unwrap().data(), grads.wrt(y).unwrap().data());
    let shown = format!("{grads:?}");
    assert!(
        shown.starts_with("Gradients") && shown.contains("6.0"),
        "{shown}"
    );
    let shown = format!("{tape:?}");
    assert_eq!(shown, "Tape { nodes: 2, values: 2 }");
}

#[test]
fn parameters_bound_after_a_backward_pass_have_zero_gradients_from_it() {
    let mut params = tapegrad::nn::Params::new();
    params.insert("w", Tensor::scalar(3.0)).unwrap();
    params.insert("b", Tensor::vector([1.0, 2.0])).unwrap();
    let tape = Tape::new();
    let first = params.bind(&tape);
    let loss = first.get("w").unwrap() * first.get("b").unwrap().sum();
    let grads = loss.backward().unwrap();
    let g = first.gradients(&grads).unwrap();
    assert_eq!(g.get("w").unwrap().data(), &[3.0]);
    assert_eq!(g.get("b").unwrap().data(), &[3.0, 3.0]);
    // Bound again, after the pass: leaves the pass never saw, whose gradients are 0.
    let again = params.bind(&tape);
    let g = again.gradients(&grads).unwrap();
    assert_eq!(g.get("w").unwrap().data(), &[0.0]);
    assert_eq!(g.get("b").unwrap().data(), &[0.0, 0.0]);
}

#[test]
fn wrt_scalar_of_a_vector_is_an_error_even_when_its_gradient_is_zero() {
    let tape = Tape::new();
    let (x, v) = (tape.var(2.0), tape.tensor(&Tensor::vector([1.0, 2.0])));
    let grads = (x * x).backward().unwrap();
    assert_eq!(grads.wrt_scalar(x).unwrap(), 4.0);
    // `v` is off the output's path (and a constant recorded later would be too).
    assert!(matches!(grads.wrt_scalar(v), Err(Error::NotScalar { .. })));
    let later = tape.constant_tensor(&Tensor::vector([3.0, 4.0]));
    assert!(matches!(
        grads.wrt_scalar(later),
        Err(Error::NotScalar { .. })
    ));
    assert_eq!(grads.wrt_scalar(tape.constant(1.0)).unwrap(), 0.0);
}

#[test]
fn a_node_read_only_through_a_no_grad_node_stays_off_the_path() {
    // √x at 0 has an infinite derivative; it feeds the output only through a node
    // recorded without gradient, so the sweep must not run it (0 · ∞ would be NaN).
    let tape = Tape::new();
    let x = tape.var(0.0);
    let n = x.sqrt();
    let f = tape.no_grad_scope(|| n * 2.0);
    let y = x * 3.0 + f;
    assert_eq!(y.backward().unwrap().wrt_scalar(x).unwrap(), 3.0);
    let mut grads = Gradients::new();
    y.backward_into(&mut grads).unwrap();
    assert_eq!(grads.wrt_scalar(x).unwrap(), 3.0);
}

#[test]
fn replay_recomputes_unary_nodes_recorded_without_gradient_with_their_parameters() {
    let tape = Tape::new();
    let x = tape.var(1.0);
    let (shifted, sine) = tape.no_grad_scope(|| (x + 2.0, (x * 0.5).sin()));
    x.set_scalar(4.0).unwrap();
    tape.replay();
    assert_eq!(shifted.item().unwrap(), 6.0);
    assert_eq!(sine.item().unwrap(), 2.0f64.sin());
}
