//! The lecture's worked backpropagation example, number by number.
//!
//! A 1-1-1 sigmoid network: X = 0.5, W1 = 0.7, W2 = 0.5, target Y = 1, learning rate 1,
//! cost C = (O − Y)². Every quantity is computed by the tape — forward values, the local
//! derivatives (each one a backward pass from an intermediate node), the gradients, one
//! update and the second forward pass — and printed beside the lecture's rounded value.
//!
//! Run with `cargo run --release --example worked_example`.

use tapegrad::trace::trace;
use tapegrad::{Result, Tape};

const X: f64 = 0.5;
const Y: f64 = 1.0;
const LR: f64 = 1.0;

/// The forward pass: (z1, h1, z2, o, cost) on `tape`.
fn forward<'t>(
    tape: &'t Tape,
    w1: tapegrad::Var<'t>,
    w2: tapegrad::Var<'t>,
) -> [tapegrad::Var<'t>; 5] {
    let x = tape.constant(X);
    let z1 = w1 * x;
    let h1 = z1.sigmoid();
    let z2 = w2 * h1;
    let o = z2.sigmoid();
    let cost = (o - Y).powi(2);
    [z1, h1, z2, o, cost]
}

fn row(name: &str, exact: f64, lecture: &str) {
    println!("{name:<28} {exact:>24} {lecture:>10}");
}

fn main() -> Result<()> {
    let tape = Tape::new();
    let (w1, w2) = (tape.var(0.7), tape.var(0.5));
    let [z1, h1, z2, o, cost] = forward(&tape, w1, w2);

    println!(
        "The lecture's 1-1-1 sigmoid network: X = {X}, W1 = 0.7, W2 = 0.5, Y = {Y}, lr = {LR}"
    );
    println!("C = (O - Y)^2\n");
    println!(
        "{:<28} {:>24} {:>10}",
        "quantity", "tapegrad (exact f64)", "lecture"
    );
    println!("{}", "-".repeat(64));
    println!("forward pass");
    row("  Z1 = W1*X", z1.item()?, "0.35");
    row("  h1 = sigmoid(Z1)", h1.item()?, "0.587");
    row("  Z2 = W2*h1", z2.item()?, "0.294");
    row("  O = sigmoid(Z2)", o.item()?, "0.573");
    row("  C = (O - Y)^2", cost.item()?, "0.1823");

    // Each local derivative is the gradient of one node with respect to the node
    // before it: a backward pass started at an intermediate variable.
    let d_cost = cost.backward()?;
    let d_o = o.backward()?;
    let d_z2 = z2.backward()?;
    let d_h1 = h1.backward()?;
    let d_z1 = z1.backward()?;
    println!("local derivatives");
    row("  dC/dO = 2(O - Y)", d_cost.wrt_scalar(o)?, "-0.854");
    row("  dO/dZ2 = O(1 - O)", d_o.wrt_scalar(z2)?, "0.245");
    row("  dZ2/dW2 = h1", d_z2.wrt_scalar(w2)?, "0.587");
    row("  dZ2/dh1 = W2", d_z2.wrt_scalar(h1)?, "0.5");
    row("  dh1/dZ1 = h1(1 - h1)", d_h1.wrt_scalar(z1)?, "0.243");
    row("  dZ1/dW1 = X", d_z1.wrt_scalar(w1)?, "0.5");

    let (g2, g1) = (d_cost.wrt_scalar(w2)?, d_cost.wrt_scalar(w1)?);
    println!("chain rule (one backward pass from C)");
    row("  dC/dW2", g2, "-0.123");
    row("  dC/dW1", g1, "-0.013");

    let (new_w1, new_w2) = (0.7 - LR * g1, 0.5 - LR * g2);
    println!("update W <- W - lr * dC/dW");
    row("  W2", new_w2, "0.623");
    row("  W1", new_w1, "0.713");

    let tape2 = Tape::new();
    let [_, _, _, o2, cost2] = forward(&tape2, tape2.var(new_w1), tape2.var(new_w2));
    println!("second forward pass");
    row("  O", o2.item()?, "0.59");
    row("  C", cost2.item()?, "0.1681");
    println!(
        "\nThe cost fell from {:.6} to {:.6}. (The lecture's 0.1823 and 0.1681 come from\nrounding O to 0.573 and 0.59 first; it also labels the second update \"W2\" where it\nmeans W1.)",
        cost.item()?,
        cost2.item()?
    );

    // The same derivation as one table: every node of the first forward pass in
    // recording order, with its local derivatives and the gradients backward passed on.
    let table = trace(cost, &d_cost)?
        .label(w1, "W1")?
        .label(w2, "W2")?
        .label(z1, "Z1")?
        .label(h1, "h1")?
        .label(z2, "Z2")?
        .label(o, "O")?
        .label(cost, "C")?;
    println!("\nThe derivation step by step (X is the constant, O - Y is recorded as O + (-1)):\n");
    println!("{table}");
    Ok(())
}
