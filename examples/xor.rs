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
//! Run with `cargo run --example xor`.

use std::cell::Cell;
use tapegrad::nn::{init, Activation, Init, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::{Result, Tensor};

const SEED: u64 = 42;
const EPOCHS: usize = 10_000;

/// Trains the 2-4-1 network with `activation` after both layers, printing the loss
/// every 4,000 epochs; returns the network, its parameters and the final MSE.
fn train(activation: Activation, x: &Tensor, y: &Tensor) -> Result<(Mlp, Params, f64)> {
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
    let mse = Cell::new(f64::NAN);
    for epoch in 0..EPOCHS {
        trainer.step(&mut params, &mut sgd, |p| {
            let o = net.forward(p, p.tape().constant_tensor(x))?;
            let t = p.tape().constant_tensor(y);
            if epoch % 4000 == 0 {
                mse.set(o.mse(t)?.item()?);
            }
            o.half_sse(t)
        })?;
        if epoch % 4000 == 0 {
            println!("Epoch {epoch}, Loss:{}", mse.get());
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
    Ok((net, params, mse))
}

fn main() -> Result<()> {
    let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])?;
    let y = Tensor::matrix(&[[0.0], [1.0], [1.0], [0.0]])?;

    println!("== 2-4-1 sigmoid network, seed {SEED} ==");
    let (net, params, mse) = train(Activation::Sigmoid, &x, &y)?;
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
    let (net, params, mse) = train(Activation::Identity, &x, &y)?;
    let o = net.predict(&params, &x)?;
    println!("Predictions after training: {:.4?}", o.data());
    println!(
        "final MSE {mse:.6}: a linear model cannot do better than 0.25 (0.5 everywhere) on XOR"
    );
    Ok(())
}
