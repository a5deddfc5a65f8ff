//! The lecture's three kinds of gradient descent on one task: fit y = sin(πx) on 200
//! points of [−1, 1] with a 1-16-1 tanh network and the mean squared error, starting
//! each time from the same weights with the same learning rate (0.1).
//!
//! - batch gradient descent: the whole data set per update, 1 update per epoch;
//! - stochastic gradient descent: one random sample per update, 200 updates per epoch;
//! - mini-batch gradient descent: 16 random samples per update, 13 updates per epoch
//!   (12 of 16 and a last one of 8: the partial batch is kept).
//!
//! The loss printed for an epoch (every fifth) is the mean loss over its samples as
//! training saw them.
//!
//! The picture `target/plots/batching.svg` draws the three loss curves against epochs
//! and against updates: per epoch, stochastic descent learns fastest; per update, the
//! batch mode is the one that moves most.
//!
//! Run with `cargo run --release --example minibatch`.

#[path = "common/plots.rs"]
mod plots;

use plots::{batching_svg, save, Curve};
use tapegrad::data::{Batches, Batching, Dataset};
use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::Tensor;

const EPOCHS: usize = 100;
const LEARNING_RATE: f64 = 0.1;

fn main() -> plots::PlotResult<()> {
    let n = 200;
    let x: Vec<f64> = (0..n)
        .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
        .collect();
    let y: Vec<f64> = x.iter().map(|x| (std::f64::consts::PI * x).sin()).collect();
    let data = Dataset::new(Tensor::new(x, [n, 1])?, Tensor::new(y, [n, 1])?)?;

    let mut start = Params::new();
    let net = Mlp::builder(1)
        .layer(16, Activation::Tanh)
        .layer(1, Activation::Identity)
        .build(&mut start, &mut init::rng(1))?;

    let modes = [
        ("batch", Batching::Full),
        ("stochastic", Batching::Stochastic),
        ("mini-batch 16", Batching::MiniBatch(16)),
    ];
    let mut columns = Vec::new();
    let (mut by_epoch, mut by_update) = (Vec::new(), Vec::new());
    for (name, batching) in modes {
        let mut params = start.clone();
        let mut batches = Batches::new(data.len(), batching, 7)?;
        let updates = batches.batches_per_epoch();
        let history = Trainer::new().fit(
            &mut params,
            &mut Sgd::new(LEARNING_RATE),
            &data,
            &mut batches,
            EPOCHS,
            |p, b| net.forward(p, b.inputs)?.try_mse(b.targets),
        )?;
        let fitted = net.predict(&params, data.inputs())?;
        let mse = fitted
            .data()
            .iter()
            .zip(data.targets().data())
            .map(|(o, t)| (o - t) * (o - t))
            .sum::<f64>()
            / n as f64;
        println!("{name:>14}: {updates:>3} updates per epoch, final MSE on all points {mse:.5}");
        by_epoch.push(Curve {
            name: name.into(),
            x: (1..=EPOCHS).map(|e| e as f64).collect(),
            loss: history.epochs.clone(),
        });
        // Each epoch's loss at the number of updates made by its end.
        by_update.push(Curve {
            name: format!("{name} ({updates} per epoch)"),
            x: (1..=EPOCHS).map(|e| (e * updates) as f64).collect(),
            loss: history.epochs.clone(),
        });
        columns.push(history.epochs);
    }

    println!();
    println!(
        "{:>5} {:>12} {:>12} {:>14}",
        "epoch", "batch", "stochastic", "mini-batch 16"
    );
    for epoch in (0..EPOCHS).filter(|e| e % 5 == 0 || e + 1 == EPOCHS) {
        println!(
            "{:>5} {:>12.5} {:>12.5} {:>14.5}",
            epoch + 1,
            columns[0][epoch],
            columns[1][epoch],
            columns[2][epoch]
        );
    }
    println!();
    save("batching.svg", &batching_svg(&by_epoch, &by_update)?)?;
    Ok(())
}
