//! Every activation function of the lecture beside its derivative, and the sigmoid on
//! its own as the lecture draws it.
//!
//! Each function is recorded on a tape over a grid of 201 points from −5 to 5; one
//! backward pass from the sum gives the derivative at every point (an elementwise
//! function's gradient is its derivative). The table prints a few of those numbers to
//! check by hand — σ′(0) = σ(0)(1 − σ(0)) = 0.25, tanh′(0) = 1, ReLU′ is 0 then 1 — and
//! the pictures show them all:
//!
//! - `target/plots/activations.svg`: a grid, f in blue and f′ in purple;
//! - `target/plots/sigmoid.svg`: σ and σ′ on centred axes.
//!
//! Run with `cargo run --release --example activations`.

#[path = "common/plots.rs"]
mod plots;

use plots::{activation_curves, activations_svg, linspace, on_tape, save, sigmoid_svg};

fn main() -> plots::PlotResult<()> {
    let curves = activation_curves()?;
    let at = [-2.0, 0.0, 1.0];
    println!("f and f' (from the tape) at x = -2, 0 and 1:\n");
    println!(
        "{:<22} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}",
        "", "f(-2)", "f(0)", "f(1)", "f'(-2)", "f'(0)", "f'(1)"
    );
    for curve in &curves {
        let index = |x: f64| {
            curve
                .x
                .iter()
                .position(|&v| (v - x).abs() < 1e-9)
                .unwrap_or(0)
        };
        // The terminal's names in plain ASCII.
        let name: String = curve
            .name
            .replace('−', "-")
            .replace('²', "^2")
            .replace("·σ(x)", "*sigmoid(x)")
            .replace('α', "a")
            .replace(" (f′ = 0)", "");
        print!("{name:<22}");
        for x in at {
            print!(" {:>8.4}", curve.y[index(x)]);
        }
        print!("  ");
        for x in at {
            print!(" {:>8.4}", curve.dy[index(x)]);
        }
        println!();
    }
    println!("\n(step: derivative 0 everywhere, 0 at the jump by convention; ReLU'(0) = 0.)\n");
    save("activations.svg", &activations_svg(&curves)?)?;

    // The lecture's sigmoid picture: x from -6 to 6 in steps of 0.01.
    let x = linspace(-6.0, 6.0, 1201);
    let (s, ds) = on_tape(&x, |x| Ok(x.sigmoid()))?;
    save("sigmoid.svg", &sigmoid_svg(&x, &s, &ds)?)?;
    Ok(())
}
