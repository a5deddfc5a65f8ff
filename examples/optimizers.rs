//! The six optimizers of the lecture's family tree — SGD, Momentum, Nesterov, AdaGrad,
//! RMSProp and Adam — side by side, twice.
//!
//! First on one training task, the `minibatch` example's: fit y = sin(πx) on 200 points
//! with a 1-16-1 tanh network and mini-batches of 16, every optimizer from the same
//! start. Then on a function of two variables, f(x0, x1) = x0²/20 + x1² from (−7, 2):
//! a long valley, steep across and flat along, where plain SGD zigzags across the valley
//! and the others find their own ways down it. Every gradient comes from the tape.
//!
//! The picture `target/plots/optimizers.svg` draws the loss curves on the left and the
//! paths over the contour lines of f on the right.
//!
//! Run with `cargo run --release --example optimizers`.

#[path = "common/plots.rs"]
mod plots;

use plots::{optimizer_losses, optimizer_paths, optimizers_svg, save, OPTIMIZER_NAMES};

/// Learning rates for the training task.
const TASK_LRS: [f64; 6] = [0.1, 0.05, 0.05, 0.05, 0.005, 0.01];
/// Learning rates for the paths on the valley.
const PATH_LRS: [f64; 6] = [0.95, 0.1, 0.1, 1.5, 0.15, 0.3];
const EPOCHS: usize = 60;
const STEPS: usize = 30;

fn main() -> plots::PlotResult<()> {
    let losses = optimizer_losses(TASK_LRS, EPOCHS)?;
    println!("Fit y = sin(pi x) with a 1-16-1 tanh network, mini-batches of 16:");
    println!("mean squared error after each number of epochs\n");
    print!("{:<10} {:>6}", "optimizer", "lr");
    for e in [1, 10, 30, EPOCHS] {
        print!(" {:>11}", format!("epoch {e}"));
    }
    println!();
    for ((name, curve), lr) in OPTIMIZER_NAMES.iter().zip(&losses).zip(TASK_LRS) {
        print!("{name:<10} {lr:>6}");
        for e in [1, 10, 30, EPOCHS] {
            print!(" {:>11.5}", curve.loss[e - 1]);
        }
        println!();
    }

    let paths = optimizer_paths(PATH_LRS, STEPS)?;
    println!("\nf(x0, x1) = x0^2/20 + x1^2 from (-7, 2), {STEPS} steps: where each one ends\n");
    println!(
        "{:<10} {:>6} {:>12} {:>12} {:>12}",
        "optimizer", "lr", "x0", "x1", "f(x0, x1)"
    );
    for ((name, path), lr) in OPTIMIZER_NAMES.iter().zip(&paths).zip(PATH_LRS) {
        let (x0, x1) = path.points[STEPS];
        let f = x0 * x0 / 20.0 + x1 * x1;
        println!("{name:<10} {lr:>6} {x0:>12.5} {x1:>12.5} {f:>12.3e}");
    }
    println!();
    save(
        "optimizers.svg",
        &optimizers_svg(
            "Fit of sin(πx), 1-16-1 tanh network, batches of 16",
            &losses,
            &paths,
        )?,
    )?;
    Ok(())
}
