//! The lecture's `Function1` / `Function2` / `FunctionUnion`, as user functions.
//!
//! f(x) = 2(x − 2)² is built from `Function1` (z = x − 2) and `Function2` (y = 2z²).
//! `Function1` is a `ScalarFunction` (value and derivative at a point); `Function2` is a
//! full `Function` whose backward receives its input, its output and the upstream
//! gradient, like the lecture's classes. tapegrad composes them and backpropagates
//! through both; the true derivative is f′(x) = 4(x − 2).
//!
//! The lecture printed 32 for f′(4) because its `Function2.backward` returns `y * 4`
//! (= 8z²) instead of `4 * z`. The end of this example writes that backward as a user
//! function too, shows that it reproduces the lecture's numbers, and lets the gradient
//! checker find the bug: analytic 32 against numerical 8 at x = 4.
//!
//! Run with `cargo run --release --example function_union`.

use std::sync::Arc;
use tapegrad::check::{check_function, gradcheck, Tolerance};
use tapegrad::{Function, Result, ScalarFunction, Tape, Tensor, TensorRef};

/// z = x − 2; dz/dx = 1.
struct Function1;

impl ScalarFunction for Function1 {
    fn name(&self) -> &str {
        "function1"
    }
    fn value(&self, x: f64) -> f64 {
        x - 2.0
    }
    fn derivative(&self, _x: f64) -> f64 {
        1.0
    }
}

/// y = 2z²; dy/dz = 4z.
struct Function2;

impl Function for Function2 {
    fn name(&self) -> &str {
        "function2"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for (y, &z) in out.iter_mut().zip(inputs[0].data()) {
            *y = 2.0 * z * z;
        }
    }
    // d/dz 2z² = 4z, times the upstream gradient (the chain rule)
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let z = inputs[0];
        let gz = z.data().iter().zip(gy.data()).map(|(z, g)| 4.0 * z * g);
        Ok(vec![Tensor::new(gz.collect(), z.shape().clone())?])
    }
}

/// y = 2z² with the lecture's backward: `return self.y * 4`, which is 8z², not 4z (and,
/// like the lecture's, it ignores the upstream gradient).
struct LectureFunction2;

impl Function for LectureFunction2 {
    fn name(&self) -> &str {
        "lecture_function2"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for (y, &z) in out.iter_mut().zip(inputs[0].data()) {
            *y = 2.0 * z * z;
        }
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        y: TensorRef<'_>,
        _gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let gz = y.data().iter().map(|y| y * 4.0);
        Ok(vec![Tensor::new(gz.collect(), y.shape().clone())?])
    }
}

/// Prints `text` with every line longer than 80 columns wrapped at a space; a
/// continuation lines up with the value after the line's label (two spaces or more
/// past its indentation), or is indented 4 more.
fn print_wrapped(text: &str) {
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let value = line[indent..]
            .find("  ")
            .map(|gap| {
                let after = indent + gap;
                after + line[after..].len() - line[after..].trim_start().len()
            })
            .unwrap_or(indent + 4);
        let mut rest = line;
        let mut first = true;
        while rest.len() > 80 - if first { 0 } else { value } {
            let width = if first { 80 } else { 80 - value };
            let cut = rest[..width].rfind(' ').unwrap_or(width);
            let pad = if first { 0 } else { value };
            println!("{:pad$}{}", "", &rest[..cut]);
            rest = rest[cut..].trim_start();
            first = false;
        }
        let pad = if first { 0 } else { value };
        println!("{:pad$}{rest}", "");
    }
}

fn main() -> Result<()> {
    let (f1, f2) = (Arc::new(Function1), Arc::new(Function2));
    println!("f(x) = 2*(x - 2)**2, built from Function1 (z = x - 2) and Function2 (y = 2z^2)\n");

    let mut tape = Tape::new();
    for x in -1..=4 {
        tape.clear();
        let xv = tape.var(f64::from(x));
        let y = xv.apply(&f1)?.apply(&f2)?;
        let grad = y.backward()?.wrt_scalar(xv)?;
        println!("---- x = {x} ----");
        println!("forward:  f({x}) = {}", y.item()?);
        println!(
            "backward: f'({x}) = {grad}   (true derivative 4(x - 2) = {})\n",
            4 * (x - 2)
        );
    }

    // The same functions work elementwise on a tensor, in one pass.
    tape.clear();
    let xs = tape.tensor(&Tensor::vector([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]));
    let ys = xs.apply(&f1)?.apply(&f2)?;
    let grads = ys.sum().backward()?;
    println!("all at once on a tensor:");
    println!("x     = {}", xs.value());
    println!("f(x)  = {}", ys.value());
    println!("f'(x) = {}", grads.wrt(xs)?);

    // The gradient checker compares the tape's derivative with the lecture's central
    // difference (f(x + h) - f(x - h)) / 2h, h = 1e-4.
    let at_4 = [Tensor::scalar(4.0)];
    let report = gradcheck(
        |x| x[0].apply(&f1)?.apply(&f2),
        &at_4,
        &Tolerance::default(),
    )?
    .named("f(x) = 2(x - 2)^2 at x = 4");
    println!();
    print_wrapped(&report.to_string());
    // Function2 on its own, at z = x - 2 for x = -1, 2 and 4.
    let points = [-3.0, 0.0, 2.0].map(|z| vec![Tensor::scalar(z)]);
    println!();
    print_wrapped(&check_function(&f2, &points)?.to_string());

    // Why the lecture printed 32: its Function2.backward returns y * 4.
    let lecture = Arc::new(LectureFunction2);
    println!("\nWith the lecture's Function2.backward (y * 4 = 8z^2 instead of 4z):");
    for x in 0..=4 {
        tape.clear();
        let xv = tape.var(f64::from(x));
        let y = xv.apply(&f1)?.apply(&lecture)?;
        let grad = y.backward()?.wrt_scalar(xv)?;
        println!(
            "  x = {x}: f'({x}) = {grad}   (the lecture printed this; true: {})",
            4 * (x - 2)
        );
    }
    let report = gradcheck(
        |x| x[0].apply(&f1)?.apply(&lecture),
        &at_4,
        &Tolerance::default(),
    )?
    .named("f(x) = 2(x - 2)^2 with the lecture's backward, at x = 4");
    println!();
    print_wrapped(&report.to_string());
    println!(
        "\nThe tape used the backward rule it was given (32 = 8z^2 at z = 2); the central\n\
         difference measured the function itself (8 = 4z). The checker names the entry."
    );
    Ok(())
}
