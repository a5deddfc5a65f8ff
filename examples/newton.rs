//! Newton's method against gradient descent on the Rosenbrock function
//! f(x0, x1) = (1 − x0)² + 100·(x1 − x0²)², from the classic start (−1.2, 1).
//!
//! The minimum is f(1, 1) = 0 at the bottom of a long, curved, flat-floored valley.
//! Gradient descent follows the steepest slope, which points across the valley, not
//! along it: with a learning rate small enough not to blow up across the valley
//! (lr = 1e-3; the curvature across it reaches about 1000) it creeps along the floor and
//! needs thousands of steps. Newton's method takes the curvature into account — each
//! step solves H·d = ∇f with the Hessian H from `tapegrad::higher::hessian`, which
//! differentiates the recorded gradient once more — and lands on (1, 1) to machine
//! precision in a handful of steps.
//!
//! Its second step is a large one, up the far side of the valley to f = 1412: a Newton
//! step goes to the minimum of the quadratic that fits f at the current point, and at
//! (−1.18, 1.38) that quadratic's minimum lies far away. Plain Newton's method does not
//! check that f goes down; the step still lands with x0 near 0.76, and from there the
//! model is good and the steps close in on (1, 1).
//!
//! Run with `cargo run --release --example newton`.

use tapegrad::higher::{grad, hessian};
use tapegrad::{Result, Tensor, Var};

fn rosenbrock<'t>(x: &[Var<'t>]) -> Result<Var<'t>> {
    let (x0, x1) = (x[0], x[1]);
    Ok((1.0 - x0).powi(2) + 100.0 * (x1 - x0.powi(2)).powi(2))
}

fn f(x: [f64; 2]) -> f64 {
    (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2)
}

fn point(x: [f64; 2]) -> [Tensor; 2] {
    [Tensor::scalar(x[0]), Tensor::scalar(x[1])]
}

/// The distance to the minimum (1, 1), in the largest coordinate.
fn error(x: [f64; 2]) -> f64 {
    (x[0] - 1.0).abs().max((x[1] - 1.0).abs())
}

fn gradient(x: [f64; 2]) -> Result<[f64; 2]> {
    let g = grad(rosenbrock, &point(x))?;
    Ok([g[0].item()?, g[1].item()?])
}

/// The columns of [`row`].
fn header() {
    println!(
        "  {:>6} {:>15} {:>15} {:>10} {:>10} {:>10}",
        "step k", "x0", "x1", "f", "|grad f|", "error"
    );
}

fn row(k: usize, x: [f64; 2], g: [f64; 2]) {
    let norm = g[0].hypot(g[1]);
    println!(
        "  {k:>6} {:>15.12} {:>15.12} {:>10.3e} {norm:>10.3e} {:>10.3e}",
        x[0],
        x[1],
        f(x),
        error(x)
    );
}

/// A 2×2 matrix with its entries to 4 decimals.
fn matrix(h: &[f64]) -> String {
    let n = |v: f64| {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    format!("[[{}, {}], [{}, {}]]", n(h[0]), n(h[1]), n(h[2]), n(h[3]))
}

fn main() -> Result<()> {
    let start = [-1.2, 1.0];
    let tolerance = 1e-10;

    println!("Rosenbrock f(x0, x1) = (1 - x0)^2 + 100 (x1 - x0^2)^2, minimum f(1, 1) = 0");
    println!(
        "start ({}, {}), stop within {tolerance:e} of (1, 1)\n",
        start[0], start[1]
    );

    println!("Newton's method: x <- x - H^-1 grad f, H from tapegrad::higher::hessian");
    println!("(error: the distance to (1, 1) in the larger coordinate)");
    header();
    let mut x = start;
    let mut newton_steps = None;
    for k in 0..30 {
        let g = gradient(x)?;
        row(k, x, g);
        if error(x) <= tolerance {
            newton_steps = Some(k);
            break;
        }
        let h = hessian(rosenbrock, &point(x))?;
        let [a, b, c, d] = [h.data()[0], h.data()[1], h.data()[2], h.data()[3]];
        if k == 0 {
            println!("         H at the start = {}", matrix(&[a, b, c, d]));
        }
        if k == 1 {
            println!("         (the next step overshoots across the valley: see below)");
        }
        // Solve H·step = g (2×2, by Cramer's rule).
        let det = a * d - b * c;
        let step = [(d * g[0] - b * g[1]) / det, (a * g[1] - c * g[0]) / det];
        x = [x[0] - step[0], x[1] - step[1]];
    }
    let h = hessian(rosenbrock, &point(x))?;
    println!("         H at the end   = {}", matrix(h.data()));
    match newton_steps {
        Some(k) => println!("  reached (1, 1) to {tolerance:e} in {k} Newton steps"),
        None => println!("  did not reach (1, 1) to {tolerance:e} in 30 steps"),
    }
    println!(
        "  Step 2 jumps to x1 = -3.18, where f = 1412: a Newton step goes to the minimum\n  \
         of the quadratic that fits f where it stands, and at step 1 that minimum lies\n  \
         far off. Nothing checks that f goes down, but the step lands with x0 near the\n  \
         answer, and from there the quadratic is a good fit: 4 more steps to (1, 1).\n"
    );

    let lr = 1e-3;
    let budget = 100_000;
    println!("Gradient descent: x <- x - lr grad f, lr = {lr:e}, at most {budget} steps");
    header();
    let mut x = start;
    let mut descent_steps = None;
    for k in 0..=budget {
        let g = gradient(x)?;
        let report = k < 3 || (k <= 10_000 && k % 2_000 == 0) || k % 20_000 == 0;
        if report {
            row(k, x, g);
        }
        if error(x) <= tolerance {
            row(k, x, g);
            descent_steps = Some(k);
            break;
        }
        x = [x[0] - lr * g[0], x[1] - lr * g[1]];
    }
    match descent_steps {
        Some(k) => println!("  reached (1, 1) to {tolerance:e} in {k} steps"),
        None => println!(
            "  after {budget} steps still {:.3e} away from (1, 1)",
            error(x)
        ),
    }
    Ok(())
}
