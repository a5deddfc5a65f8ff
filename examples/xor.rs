//! The lecture's XOR network: 2 inputs, 4 sigmoid hidden units, 1 sigmoid output,
//! weights from N(0, 1) and zero biases, full batch, learning rate 0.1, 10,000 epochs.
//!
//! The lecture's update `W += Xᵀ·δ·lr` with `δ = (y − o)·o(1 − o)` is plain gradient
//! descent on E = ½Σ(t − o)² summed over the batch, so that is the loss trained here
//! (`half_sse`). The loss printed is the one the lecture prints, `np.mean(np.square(y −
//! o))`, the mean squared error of the outputs before that epoch's update.
//!
//! Then the same network without activations (linear layers only) is trained the same
//! way: a composition of affine maps is one affine map, and no affine map separates
//! XOR — the lecture's first point, why activation functions are needed.
//!
//! The pictures: `target/plots/xor_loss.svg`, both networks' loss every epoch, and
//! `target/plots/xor_boundary.svg`, the regions each network gives to class 0 and
//! class 1, with the four points.
//!
//! Run with `cargo run --release --example xor`.

#[path = "common/plots.rs"]
mod plots;

use plots::{grid, loss_svg, regions_svg, save, Curve, Regions};
use std::cell::RefCell;
use tapegrad::nn::{init, Activation, Init, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::{Result, Tensor};

const SEED: u64 = 42;
const EPOCHS: usize = 10_000;

/// Trains the 2-4-1 network with `activation` after both layers, printing the loss
/// every 4,000 epochs; returns the network, its parameters, the final MSE and the MSE
/// of every epoch.
fn train(activation: Activation, x: &Tensor, y: &Tensor) -> Result<(Mlp, Params, f64, Vec<f64>)> {
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(4, activation.clone())
        .layer(1, activation)
        .init(Init::Normal {
            mean: 0.0,
            std: 1.0,
        })
        .build(&mut params, &mut init::rng(SEED))?;
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    let history = RefCell::new(Vec::with_capacity(EPOCHS));
    for epoch in 0..EPOCHS {
        trainer.step(&mut params, &mut sgd, |p| {
            let o = net.forward(p, p.tape().constant_tensor(x))?;
            let t = p.tape().constant_tensor(y);
            history.borrow_mut().push(o.mse(t).item()?);
            o.try_half_sse(t)
        })?;
        if epoch % 4000 == 0 {
            println!("Epoch {epoch}, Loss:{}", history.borrow()[epoch]);
        }
    }
    let o = net.predict(&params, x)?;
    let mse = o
        .data()
        .iter()
        .zip(y.data())
        .map(|(o, y)| (y - o) * (y - o))
        .sum::<f64>()
        / 4.0;
    Ok((net, params, mse, history.into_inner()))
}

/// The network's output on a grid over [−0.5, 1.5]², as the probability of class 1
/// (the linear network's output clamped to [0, 1]), with the four points.
fn regions(title: &str, net: &Mlp, params: &Params, x: &Tensor, y: &Tensor) -> Result<Regions> {
    let (range, n) = ((-0.5, 1.5), 60);
    let p = net.predict(params, &grid(range, range, n)?)?;
    let points = x
        .data()
        .chunks(2)
        .zip(y.data())
        .map(|(x, &y)| (x[0], x[1], usize::from(y > 0.5)))
        .collect();
    Ok(Regions {
        title: title.into(),
        x: range,
        y: range,
        n,
        p: p.data().iter().map(|p| p.clamp(0.0, 1.0)).collect(),
        points,
        axes: ["input A", "input B"],
    })
}

fn main() -> plots::PlotResult<()> {
    let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])?;
    let y = Tensor::matrix(&[[0.0], [1.0], [1.0], [0.0]])?;

    println!("== 2-4-1 sigmoid network, seed {SEED} ==");
    let (net, params, mse, sigmoid_losses) = train(Activation::Sigmoid, &x, &y)?;
    println!("Predictions after training:");
    let o = net.predict(&params, &x)?;
    for (row, p) in o.data().iter().enumerate() {
        println!(
            " [{:.0}, {:.0}] -> [{p:.8}]",
            x.data()[2 * row],
            x.data()[2 * row + 1]
        );
    }
    println!("final MSE {mse:.6}");

    println!();
    println!("== the same network with no activation (linear layers only) ==");
    let sigmoid_regions = regions("2-4-1 sigmoid network", &net, &params, &x, &y)?;
    let (net, params, mse, linear_losses) = train(Activation::Identity, &x, &y)?;
    let o = net.predict(&params, &x)?;
    println!("Predictions after training: {:.4?}", o.data());
    println!(
        "final MSE {mse:.6}: a linear model cannot do better than 0.25 (0.5\n\
         everywhere) on XOR"
    );
    println!();
    // Every epoch of the first 100, every tenth after that: a picture 700 pixels wide
    // shows no more.
    let shown: Vec<usize> = (0..EPOCHS).filter(|&e| e < 100 || e % 10 == 9).collect();
    let every = |losses: &[f64]| -> Vec<f64> { shown.iter().map(|&e| losses[e]).collect() };
    let epochs: Vec<f64> = shown.iter().map(|&e| (e + 1) as f64).collect();
    // The linear network first, so that the sigmoid network's curve is drawn over it
    // where both sit near 0.25.
    let curves = [
        Curve {
            name: "no activation (linear): stays at 0.25".into(),
            x: epochs.clone(),
            loss: every(&linear_losses),
        },
        Curve {
            name: "2-4-1 sigmoid network".into(),
            x: epochs,
            loss: every(&sigmoid_losses),
        },
    ];
    save(
        "xor_loss.svg",
        &loss_svg(
            "XOR: mean squared error every epoch (lr 0.1, full batch)",
            &curves,
        )?,
    )?;
    let linear_regions = regions(
        "no activation: 0.5 everywhere (MSE 0.25)",
        &net,
        &params,
        &x,
        &y,
    )?;
    save(
        "xor_boundary.svg",
        &regions_svg(
            "XOR: the class each network gives every point",
            &[sigmoid_regions, linear_regions],
        )?,
    )?;
    Ok(())
}
