//! The lecture's numbers, reproduced from tape ops: the 0.7 / 0.5 sigmoid chain (also
//! as a network of `Linear` layers whose biases are frozen at zero) and the
//! `Function1` / `Function2` composition.

use std::sync::Arc;
use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::{Function, Result, ScalarFunction, Tape, Tensor, TensorRef, Var};

const TOL: f64 = 1e-12;

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got:e}, want {want:e} (difference {:e})",
        got - want
    );
}

/// X = 0.5, target Y = 1, C = (O − Y)²; returns (z1, h1, z2, o, cost).
fn chain<'t>(
    tape: &'t Tape,
    w1: Var<'t>,
    w2: Var<'t>,
) -> (Var<'t>, Var<'t>, Var<'t>, Var<'t>, Var<'t>) {
    let x = tape.constant(0.5);
    let z1 = w1 * x;
    let h1 = z1.sigmoid();
    let z2 = w2 * h1;
    let o = z2.sigmoid();
    let cost = (o - 1.0).powi(2);
    (z1, h1, z2, o, cost)
}

#[test]
fn every_number_of_the_worked_example_table() -> Result<()> {
    let tape = Tape::new();
    let (w1, w2) = (tape.var(0.7), tape.var(0.5));
    let (z1, h1, z2, o, cost) = chain(&tape, w1, w2);

    close(z1.item()?, 0.35, "Z1");
    close(h1.item()?, 0.5866175789173301, "h1");
    close(z2.item()?, 0.29330878945866506, "Z2");
    close(o.item()?, 0.5728059857120793, "O");
    close(cost.item()?, 0.18249472584342818, "C");

    let grads = cost.backward()?;
    close(grads.wrt_scalar(o)?, -0.8543880285758414, "dC/dO");
    close(o.backward()?.wrt_scalar(z2)?, 0.2446992884444925, "dO/dZ2");
    let d_w2 = grads.wrt_scalar(w2)?;
    let d_w1 = grads.wrt_scalar(w1)?;
    close(d_w2, -0.12264304766891344, "dC/dW2");
    close(d_w1, -0.012674619993583183, "dC/dW1");

    let (new_w1, new_w2) = (0.7 - d_w1, 0.5 - d_w2);
    close(new_w2, 0.6226430476689134, "W2 after one step");
    close(new_w1, 0.7126746199935832, "W1 after one step");

    let tape2 = Tape::new();
    let (_, _, _, _, cost2) = chain(&tape2, tape2.var(new_w1), tape2.var(new_w2));
    close(cost2.item()?, 0.16765520630039044, "C after the step");
    assert!(cost2.item()? < cost.item()?);
    Ok(())
}

/// The lecture's 1-1-1 network as an [`Mlp`]: W1 = 0.7, W2 = 0.5 and the biases,
/// which the lecture's network does not have, zero; frozen when `freeze_biases`.
fn lecture_network(freeze_biases: bool) -> Result<(Mlp, Params)> {
    let mut params = Params::new();
    let net = Mlp::builder(1)
        .layer(1, Activation::Sigmoid)
        .layer(1, Activation::Sigmoid)
        .build(&mut params, &mut init::rng(0))?;
    params.set("layer1.weight", Tensor::matrix(&[[0.7]])?)?;
    params.set("layer2.weight", Tensor::matrix(&[[0.5]])?)?;
    if freeze_biases {
        params.freeze("layer1.bias")?;
        params.freeze("layer2.bias")?;
    }
    Ok((net, params))
}

/// One step of plain gradient descent (lr 1) on C = (O − Y)² for X = 0.5, Y = 1;
/// returns C before the step and the trainer holding the step's gradients.
fn lecture_step(net: &Mlp, params: &mut Params) -> Result<(f64, Trainer)> {
    let (x, y) = (Tensor::matrix(&[[0.5]])?, Tensor::matrix(&[[1.0]])?);
    let mut trainer = Trainer::new();
    let cost = trainer.step(params, &mut Sgd::new(1.0), |p| {
        let o = net.forward(p, p.tape().constant_tensor(&x))?;
        o.try_mse(p.tape().constant_tensor(&y))
    })?;
    Ok((cost, trainer))
}

fn cost_of(net: &Mlp, params: &Params) -> Result<f64> {
    let o = net.predict(params, &Tensor::matrix(&[[0.5]])?)?.item()?;
    Ok((o - 1.0) * (o - 1.0))
}

#[test]
fn the_worked_example_as_a_network_with_frozen_biases() -> Result<()> {
    let (net, mut params) = lecture_network(true)?;
    assert_eq!(
        params.frozen_names().collect::<Vec<_>>(),
        ["layer1.bias", "layer2.bias"]
    );
    let (cost, trainer) = lecture_step(&net, &mut params)?;
    close(cost, 0.18249472584342818, "C");

    let grads = trainer.gradients();
    close(
        grads.get("layer2.weight")?.item()?,
        -0.12264304766891344,
        "dC/dW2",
    );
    close(
        grads.get("layer1.weight")?.item()?,
        -0.012674619993583183,
        "dC/dW1",
    );
    assert_eq!(grads.get("layer1.bias")?.item()?, 0.0);
    assert_eq!(grads.get("layer2.bias")?.item()?, 0.0);

    close(
        params.get("layer2.weight")?.item()?,
        0.6226430476689134,
        "W2 after one step",
    );
    close(
        params.get("layer1.weight")?.item()?,
        0.7126746199935832,
        "W1 after one step",
    );
    // The biases stay exactly zero, so the network stays the lecture's.
    assert_eq!(
        params.get("layer1.bias")?.item()?.to_bits(),
        0.0f64.to_bits()
    );
    assert_eq!(
        params.get("layer2.bias")?.item()?.to_bits(),
        0.0f64.to_bits()
    );
    close(
        cost_of(&net, &params)?,
        0.16765520630039044,
        "C after the step",
    );

    // Left trainable, the biases move (∂C/∂b2 = ∂C/∂Z2 ≈ −0.209) and the cost after
    // the step is no longer the lecture's.
    let (net, mut free) = lecture_network(false)?;
    lecture_step(&net, &mut free)?;
    close(
        free.get("layer2.bias")?.item()?,
        0.8543880285758414 * 0.2446992884444925,
        "b2 when trainable",
    );
    assert!((cost_of(&net, &free)? - 0.16765520630039044).abs() > 1e-3);
    Ok(())
}

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
}

#[test]
fn function_union_gives_the_true_derivative() -> Result<()> {
    let (f1, f2) = (Arc::new(Function1), Arc::new(Function2));
    let mut tape = Tape::new();
    for x in -1..=4 {
        tape.clear();
        let xv = tape.var(f64::from(x));
        let y = xv.apply(&f1)?.apply(&f2)?;
        let x = f64::from(x);
        assert_eq!(y.item()?, 2.0 * (x - 2.0) * (x - 2.0));
        assert_eq!(y.backward()?.wrt_scalar(xv)?, 4.0 * (x - 2.0));
    }

    tape.clear();
    let at = |tape: &Tape, x: f64| -> Result<(f64, f64)> {
        let xv = tape.var(x);
        let y = xv.apply(&f1)?.apply(&f2)?;
        Ok((y.item()?, y.backward()?.wrt_scalar(xv)?))
    };
    assert_eq!(at(&tape, 4.0)?, (8.0, 8.0));
    assert_eq!(at(&tape, 0.0)?.1, -8.0);
    assert_eq!(at(&tape, 2.0)?.1, 0.0);
    Ok(())
}

#[test]
fn function_union_works_elementwise_on_tensors() -> Result<()> {
    let (f1, f2) = (Arc::new(Function1), Arc::new(Function2));
    let tape = Tape::new();
    let xs = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0];
    let x = tape.tensor(&Tensor::vector(xs));
    let y = x.apply(&f1)?.apply(&f2)?;
    let grads = y.sum().backward()?;
    let want: Vec<f64> = xs.iter().map(|x| 4.0 * (x - 2.0)).collect();
    assert_eq!(grads.wrt(x)?, Tensor::vector(want));
    Ok(())
}
