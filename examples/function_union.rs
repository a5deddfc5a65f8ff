//! The lecture's `Function1` / `Function2` / `FunctionUnion`, as user functions.
//!
//! f(x) = 2(x − 2)² is built from `Function1` (z = x − 2) and `Function2` (y = 2z²).
//! `Function1` is a `ScalarFunction` (value and derivative at a point); `Function2` is a
//! full `Function` whose backward receives its input, its output and the upstream
//! gradient, like the lecture's classes. tapegrad composes them and backpropagates
//! through both; the true derivative is f′(x) = 4(x − 2).
//!
//! Run with `cargo run --release --example function_union`.

use std::sync::Arc;
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
    Ok(())
}
