//! The lecture's gradient descent: minimise f(x0, x1) = x0² + x1² from (−3, 4).
//!
//! Three learning rates, as in the lecture: 0.1 (each step multiplies x by 0.8 and the
//! path walks into the minimum), 10 (each step multiplies x by −19: the run diverges and
//! tapegrad stops it and says so) and 1e-10 (the point barely moves). The first run is
//! done twice, with the tape's gradient and with the lecture's numerical gradient, and
//! both paths are compared with the closed form xₖ = 0.8ᵏ·(−3, 4).
//!
//! The three paths are drawn over the contour lines of f in
//! `target/plots/gradient_descent.svg`; the diverging one leaves the frame at its first
//! step, and the picture marks where.
//!
//! Run with `cargo run --release --example gradient_descent`.

#[path = "common/plots.rs"]
mod plots;

use plots::{compact, gradient_descent_svg, save, DescentPanel, Path2};
use tapegrad::check::DEFAULT_H;
use tapegrad::optim::descent::{Descent, GradientDescent, GradientMethod};
use tapegrad::Tensor;

const STEPS: usize = 100;

/// The first steps and the last of a run: step k, the point (x0, x1), f there.
fn show(title: &str, run: &Descent) {
    println!("{title}");
    println!(
        "  {:>6}  {:>16} {:>16}  {:>13}",
        "step k", "x0", "x1", "f(x0, x1)"
    );
    let last = run.path.len() - 1;
    for (k, (x, loss)) in run.path.iter().zip(&run.losses).enumerate() {
        if k < 3 || k + 2 > last {
            let (x0, x1) = (x.data()[0], x.data()[1]);
            println!("  {k:>6}  {x0:>16.8e} {x1:>16.8e}  {loss:>13.6e}");
        } else if k == 3 {
            println!("  {:>6}", "...");
        }
    }
    // The outcome, wrapped to the terminal's 80 columns.
    let mut line = String::from("  outcome:");
    for word in run.outcome.to_string().split(' ') {
        if line.len() + 1 + word.len() > 78 {
            println!("{line}");
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(word);
    }
    println!("{line}\n");
}

/// A run's points as (x0, x1) pairs.
fn points(run: &Descent) -> Vec<(f64, f64)> {
    run.path
        .iter()
        .map(|x| (x.data()[0], x.data()[1]))
        .collect()
}

fn main() -> plots::PlotResult<()> {
    let init = Tensor::vector([-3.0, 4.0]);
    println!("f(x0, x1) = x0^2 + x1^2, from (x0, x1) = (-3, 4), {STEPS} steps\n");

    let run = |lr: f64, gradient: GradientMethod| {
        GradientDescent {
            lr,
            steps: STEPS,
            gradient,
            ..GradientDescent::default()
        }
        // The loss, recorded with tape ops: the lecture's np.sum(x ** 2).
        .run(|x| Ok(x.powi(2).sum()), &init)
    };

    let by_tape = run(0.1, GradientMethod::Tape)?;
    show("lr = 0.1, gradient from the tape:", &by_tape);
    let by_numbers = run(0.1, GradientMethod::Numerical { h: DEFAULT_H })?;
    show(
        "lr = 0.1, gradient by central differences (h = 1e-4, the lecture's way):",
        &by_numbers,
    );
    let distance = |run: &Descent| {
        let mut worst = 0.0f64;
        for (k, x) in run.path.iter().enumerate() {
            let scale = 0.8f64.powi(k as i32);
            for (v, x0) in x.data().iter().zip(init.data()) {
                worst = worst.max((v - scale * x0).abs());
            }
        }
        worst
    };
    println!(
        "largest distance from the closed form 0.8^k * (-3, 4):\n  tape {:.1e}, numerical {:.1e}\n",
        distance(&by_tape),
        distance(&by_numbers)
    );

    let too_large = run(10.0, GradientMethod::Tape)?;
    show("lr = 10 (too large):", &too_large);

    let too_small = run(1e-10, GradientMethod::Tape)?;
    show("lr = 1e-10 (too small):", &too_small);
    let moved: f64 = too_small
        .point()
        .data()
        .iter()
        .zip(init.data())
        .map(|(x, x0)| (x - x0).powi(2))
        .sum::<f64>()
        .sqrt();
    println!("after {STEPS} steps with lr = 1e-10 the point moved {moved:.1e}: it barely moved.\n");

    let panels = [
        DescentPanel {
            title: "lr = 0.1: a good learning rate".into(),
            path: Path2 {
                name: "lr = 0.1".into(),
                points: points(&by_tape),
            },
            note: format!("{STEPS} steps, f = {} at the end", compact(by_tape.loss())),
        },
        DescentPanel {
            title: "lr = 10: too large".into(),
            path: Path2 {
                name: "lr = 10".into(),
                points: points(&too_large),
            },
            note: format!(
                "x → −19x each step; stopped after {} steps",
                too_large.path.len() - 1
            ),
        },
        DescentPanel {
            title: "lr = 1e-10: too small".into(),
            path: Path2 {
                name: "lr = 1e-10".into(),
                points: points(&too_small),
            },
            note: format!("{STEPS} steps moved the point {moved:.1e}"),
        },
    ];
    save("gradient_descent.svg", &gradient_descent_svg(&panels)?)?;
    Ok(())
}
