//! The lecture's worked backpropagation example, number by number.
//!
//! A 1-1-1 sigmoid network: X = 0.5, W1 = 0.7, W2 = 0.5, target Y = 1, learning rate 1,
//! cost C = (O − Y)². Every quantity is computed by the tape — forward values, the local
//! derivatives (each one a backward pass from an intermediate node), the gradients, one
//! update and the second forward pass — and printed beside the lecture's rounded value.
//! Then the same step is taken by the training loop, on a network of two `Linear`
//! layers whose biases (which the lecture's network does not have) are frozen at zero.
//!
//! At the end, the graph of the first forward pass is written as Graphviz DOT to
//! `target/plots/worked_example.dot` (one record per node: name, op, value, gradient),
//! and drawn as `target/plots/worked_example.svg` when Graphviz's `dot` program is
//! installed.
//!
//! Run with `cargo run --release --example worked_example`.

use std::process::Command;
use tapegrad::dot::Graph;
use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::trace::{trace, Trace};
use tapegrad::{Result, Tape, Tensor, Var};

const X: f64 = 0.5;
const Y: f64 = 1.0;
const LR: f64 = 1.0;

/// The forward pass: (x, z1, h1, z2, o, o − y, cost) on `tape`.
fn forward<'t>(tape: &'t Tape, w1: Var<'t>, w2: Var<'t>) -> [Var<'t>; 7] {
    let x = tape.constant(X);
    let z1 = w1 * x;
    let h1 = z1.sigmoid();
    let z2 = w2 * h1;
    let o = z2.sigmoid();
    let error = o - Y;
    let cost = error.powi(2);
    [x, z1, h1, z2, o, error, cost]
}

/// One line: the quantity, the lecture's number, tapegrad's rounded to the lecture's
/// digits, and tapegrad's exact value.
fn row(name: &str, exact: f64, lecture: &str) {
    let digits = lecture.split('.').nth(1).map_or(0, str::len);
    let rounded = format!("{exact:.digits$}");
    let mark = if rounded == lecture { " " } else { "*" };
    println!("{name:<24}{lecture:>9}{rounded:>10}{mark} {exact:>24}");
}

/// The trace as a table narrow enough for an 80-column terminal: values to 4 decimals,
/// inputs by name.
fn print_trace(table: &Trace) {
    let rows = table.rows();
    let name = |id: u32| {
        let row = &rows[id as usize];
        row.label.clone().unwrap_or_else(|| format!("#{id}"))
    };
    let number = |t: &Tensor| format!("{:.4}", t.data()[0]);
    println!(
        "{:>2} {:<4} {:<10} {:<5} {:>8} {:>10} {:>10} {:>10}",
        "id", "name", "op", "input", "value", "local", "upstream", "gradient"
    );
    println!(
        "{:>2} {:<4} {:<10} {:<5} {:>8} {:>10} {:>10} {:>10}",
        "", "y", "", "x", "y", "dy/dx", "dC/dy", "dC/dx"
    );
    println!("{}", "-".repeat(66));
    for row in rows {
        let op = if row.inputs.is_empty() && !row.requires_grad {
            "constant".to_string()
        } else {
            row.op.clone()
        };
        let upstream = if row.requires_grad {
            number(&row.upstream)
        } else {
            "-".into()
        };
        let label = row.label.clone().unwrap_or_default();
        let value = number(&row.value);
        if row.inputs.is_empty() {
            println!(
                "{:>2} {label:<4} {op:<10} {:<5} {value:>8} {:>10} {upstream:>10}",
                row.id, "", ""
            );
        }
        for (k, &input) in row.inputs.iter().enumerate() {
            let gradient = match row.gradient.get(k) {
                Some(Some(g)) => number(g),
                _ => "-".into(),
            };
            let local = number(&row.local[k]);
            if k == 0 {
                println!(
                    "{:>2} {label:<4} {op:<10} {:<5} {value:>8} {local:>10} {upstream:>10} {gradient:>10}",
                    row.id,
                    name(input)
                );
            } else {
                println!(
                    "{:>2} {:<4} {:<10} {:<5} {:>8} {local:>10} {:>10} {gradient:>10}",
                    "",
                    "",
                    "",
                    name(input),
                    "",
                    ""
                );
            }
        }
    }
}

/// Writes the graph of the traced forward pass as DOT, and as SVG when Graphviz's `dot`
/// is installed.
fn draw(cost: Var<'_>, table: &Trace) -> Result<()> {
    let dot = Graph::new(cost).trace(table)?.to_dot();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plots");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("worked_example.dot"), &dot));
    if let Err(e) = written {
        println!("could not write target/plots/worked_example.dot: {e}");
        return Ok(());
    }
    println!("wrote target/plots/worked_example.dot");
    let svg = Command::new("dot")
        .arg("-Tsvg")
        .arg(dir.join("worked_example.dot"))
        .arg("-o")
        .arg(dir.join("worked_example.svg"))
        .status();
    match svg {
        Ok(status) if status.success() => println!("wrote target/plots/worked_example.svg"),
        Ok(status) => println!("(Graphviz's `dot` failed, {status}: no worked_example.svg)"),
        Err(_) => println!("(Graphviz's `dot` program is not installed: no worked_example.svg)"),
    }
    Ok(())
}

/// The same step by `tapegrad::nn`: a 1-1-1 sigmoid `Mlp` with W1 = 0.7, W2 = 0.5 and
/// its biases frozen at zero, one step of plain gradient descent on (O − Y)².
fn network_step() -> Result<()> {
    let mut params = Params::new();
    let net = Mlp::builder(1)
        .layer(1, Activation::Sigmoid)
        .layer(1, Activation::Sigmoid)
        .build(&mut params, &mut init::rng(0))?;
    params.set("layer1.weight", Tensor::matrix(&[[0.7]])?)?;
    params.set("layer2.weight", Tensor::matrix(&[[0.5]])?)?;
    params.freeze("layer1.bias")?;
    params.freeze("layer2.bias")?;
    let (x, y) = (Tensor::matrix(&[[X]])?, Tensor::matrix(&[[Y]])?);
    let cost = Trainer::new().step(&mut params, &mut Sgd::new(LR), |p| {
        let o = net.forward(p, p.tape().constant_tensor(&x))?;
        o.try_mse(p.tape().constant_tensor(&y))
    })?;
    let o2 = net.predict(&params, &x)?.item()?;
    println!("\nThe same step by the training loop, on two Linear layers whose biases are");
    println!("frozen (Params::freeze) at zero, so that the network stays the lecture's:");
    row("  C", cost, "0.1823");
    row("  W2", params.get("layer2.weight")?.item()?, "0.623");
    row("  W1", params.get("layer1.weight")?.item()?, "0.713");
    row("  b1 (frozen)", params.get("layer1.bias")?.item()?, "0");
    row("  b2 (frozen)", params.get("layer2.bias")?.item()?, "0");
    row("  C after the step", (o2 - Y).powi(2), "0.1681");
    Ok(())
}

fn main() -> Result<()> {
    let tape = Tape::new();
    let (w1, w2) = (tape.var(0.7), tape.var(0.5));
    let [x, z1, h1, z2, o, error, cost] = forward(&tape, w1, w2);

    println!("The lecture's 1-1-1 sigmoid network: input X = {X}, weights W1 = 0.7 and");
    println!("W2 = 0.5, target Y = {Y}, learning rate {LR}, cost C = (O - Y)^2.\n");
    println!(
        "{:<24}{:>9}{:>11} {:>24}",
        "quantity", "lecture", "tapegrad", "tapegrad, exact f64"
    );
    println!("{:<24}{:>9}{:>11}", "", "", "(rounded)");
    println!("{}", "-".repeat(69));
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
    row("  dh1/dZ1 = h1(1 - h1)", d_h1.wrt_scalar(z1)?, "0.242");
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
    let [.., o2, _, cost2] = forward(&tape2, tape2.var(new_w1), tape2.var(new_w2));
    println!("second forward pass");
    row("  O", o2.item()?, "0.59");
    row("  C", cost2.item()?, "0.1681");
    println!(
        "\nThe cost fell from {:.6} to {:.6}.\n\
         * The lecture computes each line from the rounded line before it:\n  \
         Z2 = 0.5 x 0.587 = 0.2935, C = (0.573 - 1)^2 = 0.1823 and, after the update,\n  \
         C = (0.59 - 1)^2 = 0.1681. It also labels the second update \"W2\" where it\n  \
         means W1.",
        cost.item()?,
        cost2.item()?
    );
    network_step()?;

    // The same derivation as one table: every node of the first forward pass in
    // recording order, with its local derivatives and the gradients backward passed on.
    let table = trace(cost, &d_cost)?
        .label(w1, "W1")?
        .label(w2, "W2")?
        .label(x, "X")?
        .label(z1, "Z1")?
        .label(h1, "h1")?
        .label(z2, "Z2")?
        .label(o, "O")?
        .label(error, "O-Y")?
        .label(cost, "C")?;
    println!("\nThe derivation node by node (O - Y is recorded as O + (-1)). A node's");
    println!("gradient to an input is its upstream gradient times its local derivative:\n");
    print_trace(&table);
    println!();
    draw(cost, &table)
}
