//! Two interleaving half-circles ("two moons", 500 points, noise 0.1), separated by a
//! 2-16-16-2 ReLU network trained with softmax cross-entropy, Adam and mini-batches of
//! 32. No straight line separates the moons; the ReLU network bends its boundary
//! around them.
//!
//! The picture `target/plots/moons_boundary.svg` shows the regions the trained network
//! gives each moon, with the 500 points over them.
//!
//! Run with `cargo run --release --example moons`.

#[path = "common/plots.rs"]
mod plots;

use plots::{grid, regions_svg, save, Regions};
use tapegrad::data::{two_moons, Batches, Batching};
use tapegrad::nn::{accuracy, init, Activation, Mlp, Params, Trainer};
use tapegrad::optim::Adam;
use tapegrad::Tensor;

fn main() -> plots::PlotResult<()> {
    let data = two_moons(500, 0.1, 2024)?;
    let labels = data.labels().unwrap_or_default().to_vec();

    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(16, Activation::Relu)
        .layer(16, Activation::Relu)
        .layer(2, Activation::Identity)
        .build(&mut params, &mut init::rng(5))?;
    println!("{} parameters", params.numel());

    let mut trainer = Trainer::new();
    let mut adam = Adam::new(0.01);
    let mut batches = Batches::new(data.len(), Batching::MiniBatch(32), 11)?;
    for round in 0..6 {
        let history = trainer.fit(&mut params, &mut adam, &data, &mut batches, 25, |p, b| {
            net.forward(p, b.inputs)?
                .try_softmax_cross_entropy(b.labels)
        })?;
        let scores = net.predict(&params, data.inputs())?;
        println!(
            "epoch {:>3}: loss {:.4}, training accuracy {:.1}%",
            (round + 1) * 25,
            history.last().unwrap_or(f64::NAN),
            100.0 * accuracy(&scores, &labels)?
        );
    }

    // The decision boundary, coarsely: which moon each point of a grid belongs to.
    println!();
    println!("class by position (x from -1.5 to 2.5, y from 1.5 down to -1.0):");
    let (columns, rows) = (41, 14);
    let mut cells = Vec::with_capacity(2 * columns * rows);
    for r in 0..rows {
        for c in 0..columns {
            let x = -1.5 + 4.0 * c as f64 / (columns - 1) as f64;
            let y = 1.5 - 2.5 * r as f64 / (rows - 1) as f64;
            cells.extend([x, y]);
        }
    }
    let scores = net.predict(&params, &Tensor::new(cells, [columns * rows, 2])?)?;
    for row in scores.data().chunks(2 * columns) {
        let line: String = row
            .chunks(2)
            .map(|s| if s[0] >= s[1] { '0' } else { '1' })
            .collect();
        println!("  {line}");
    }

    // The same boundary finely, as a picture: the probability of moon 1 by softmax of the
    // two scores, on a 100 x 100 grid.
    println!();
    let (xr, yr, n) = ((-1.5, 2.5), (-1.0, 1.5), 100);
    let scores = net.predict(&params, &grid(xr, yr, n)?)?;
    let p = scores
        .data()
        .chunks(2)
        .map(|s| 1.0 / (1.0 + (s[0] - s[1]).exp()))
        .collect();
    let points = data
        .inputs()
        .data()
        .chunks(2)
        .zip(&labels)
        .map(|(x, &label)| (x[0], x[1], label))
        .collect();
    let regions = Regions {
        title: "2-16-16-2 ReLU network after 150 epochs".into(),
        x: xr,
        y: yr,
        n,
        p,
        points,
        axes: ["x", "y"],
    };
    save(
        "moons_boundary.svg",
        &regions_svg(
            "Two moons: the class the network gives every point",
            &[regions],
        )?,
    )?;
    Ok(())
}
