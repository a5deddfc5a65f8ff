//! # tapegrad
//!
//! A reverse-mode automatic differentiation engine built on a tape. A program records
//! its computation on a [`Tape`]; every node was made by a [`Function`] that knows its
//! forward value and its backward rule; one reverse sweep ([`Var::backward`]) gives the
//! gradient of the output with respect to every input.
//!
//! Scalars and dense row-major `f64` tensors live on the same tape; binary ops broadcast
//! like NumPy. The activation functions of the classic backpropagation lecture (step,
//! sigmoid, tanh, ReLU, Leaky ReLU, ELU, softsign, arctan, Gaussian, Swish, softplus,
//! GELU) are built in, each with its derivative, and user functions plug in through the
//! same [`Function`] trait (or the simpler [`ScalarFunction`]).
//!
//! ## Quick start: the lecture's worked example
//!
//! X = 0.5, W1 = 0.7, W2 = 0.5, target Y = 1, cost C = (O − Y)²:
//!
//! ```
//! use tapegrad::Tape;
//!
//! let tape = Tape::new();
//! let (x, w1, w2) = (tape.constant(0.5), tape.var(0.7), tape.var(0.5));
//! let h1 = (w1 * x).sigmoid();
//! let o = (w2 * h1).sigmoid();
//! let cost = (o - 1.0).powi(2);
//! let grads = cost.backward()?;
//!
//! assert!((cost.item()? - 0.18249472584342818).abs() < 1e-15);
//! assert!((grads.wrt_scalar(w2)? - -0.12264304766891344).abs() < 1e-15);
//! assert!((grads.wrt_scalar(w1)? - -0.012674619993583183).abs() < 1e-15);
//! # Ok::<(), tapegrad::Error>(())
//! ```
//!
//! ## Where things are
//! - [`tape`]: the arena, [`Tape::clear`] for reuse, no-grad scopes.
//! - [`Var`]: the handle, its operators and method ops (each op's method lives with the
//!   op in [`ops`]).
//! - [`function`]: the [`Function`] and [`ScalarFunction`] traits for user functions.
//! - [`backward`]: the reverse sweep and [`Gradients`].
//! - [`ops`]: the built-in ops, one family per file, and their registry.
//! - [`higher`]: gradients, Hessians, Hessian-vector products and Jacobians of functions
//!   of tensors (second derivatives through [`Var::grad_graph`], the recorded backward
//!   pass).
//! - [`check`]: numerical gradients and the gradient checker (first and second order);
//!   [`trace`]: the step-by-step table of a backward pass; [`dot`]: the recorded graph
//!   drawn as Graphviz DOT.
//! - [`nn`]: parameters, initialisation, layers, networks and the training loop;
//!   [`optim`]: gradient descent on plain functions and the network optimizers;
//!   [`data`]: full-batch, stochastic and mini-batch iteration.
//!
//! ## Errors and panics: one rule
//! An op method on [`Var`] returns a `Var`, so that ops chain; misuse (shapes that do
//! not fit, an axis out of range, a parameter that is not finite, variables of two
//! tapes) panics at the caller's line with a message naming the op and the bad value,
//! as `a + b` does on shapes that do not broadcast. Each op that can fail has a `try_`
//! twin returning [`Result`] with the same [`Error`] instead: `leaky_relu` and
//! `try_leaky_relu`, `matmul` and `try_matmul`, `+` and `try_add`. Ops that cannot
//! fail (`sigmoid`, `exp`, `sum`) have no twin. A failed `try_` call leaves the tape as
//! it was. Methods that run a pass or read or write values ([`Var::backward`],
//! [`Var::item`], [`Gradients::wrt`], [`Var::set_value`]) and [`Var::apply`] (a user
//! function brings its own errors) return `Result` only, as do constructors that check
//! their arguments, such as [`Tensor::new`].
//!
//! ```
//! use tapegrad::Tape;
//!
//! let tape = Tape::new();
//! let x = tape.var(-2.0);
//! let y = x.leaky_relu(0.1).sigmoid();
//! assert!((y.item()? - 1.0 / (1.0 + 0.2f64.exp())).abs() < 1e-15);
//! assert_eq!(
//!     x.try_leaky_relu(f64::NAN).unwrap_err().to_string(),
//!     "leaky_relu: parameter alpha must be a finite number, got NaN"
//! );
//! assert_eq!(tape.len(), 3); // the failed call recorded nothing
//! # Ok::<(), tapegrad::Error>(())
//! ```
//!
//! ```should_panic
//! # use tapegrad::Tape;
//! let tape = Tape::new();
//! // panics: "leaky_relu: parameter alpha must be a finite number, got NaN"
//! tape.var(1.0).leaky_relu(f64::NAN);
//! ```
//!
//! ## Derivatives at kinks
//! Where an op has no derivative, tapegrad takes a fixed value; PyTorch and JAX do not
//! always take the same one, so code ported from them can give other gradients there
//! (and only there). `tests/ops.rs` (`kink_conventions`) checks tapegrad's column; the
//! PyTorch column is its `derivatives.yaml` rules, the JAX column what `jax.grad` gives
//! in JAX 0.10 with float64.
//!
//! | op | where | tapegrad | PyTorch | JAX |
//! |---|---|---|---|---|
//! | `relu` | x = 0 | 0 | 0 | 0 |
//! | `leaky_relu(α)` | x = 0 | α | α | **1** |
//! | `elu(α)` | x = 0 | α | α | α |
//! | `abs` | x = 0 | 0 | 0 | **1** |
//! | `sign`, `step` | x = 0 (and everywhere) | 0 | 0 (`sign`; a mask `x > 0` carries no gradient) | 0 |
//! | `equal` | a = b | 0 | no gradient | 0 |
//! | `max`, `min` | k elements tie | 1/k each | 1/k each | 1/k each |
//! | `max_axis`, `min_axis` | k elements of a lane tie | 1/k each | `amax`/`amin`: 1/k each; **`max(dim)`: all to the one index it returns** | 1/k each |
//! | `maximum(a, b)`, `minimum(a, b)` | a = b | ½ each | ½ each | ½ each |
//! | `clamp(lo, hi)` | x = lo or x = hi | 1 | 1 | **½** (`jnp.clip`) |
//!
//! So `x.maximum(zero)` is a ReLU whose derivative at 0 is ½, where [`Var::relu`]'s is 0.
//!
//! ## Threads
//! A tape belongs to one thread at a time, but tapegrad shares large work with one
//! helper thread of its own, started the first time there is some: matrix products of
//! at least 2¹⁸ multiply-adds, and fills, copies and optimizer updates of at least 2¹⁶
//! numbers (zeroing a large gradient arena, copying parameters or a data batch onto a
//! tape). On a tape of scalars, [`Var::backward_into`] has the helper zero the next
//! pass's gradient arena while this pass sweeps. Results are the same, bit for bit,
//! on one thread or two. Set the environment
//! variable `TAPEGRAD_NUM_THREADS=1` to keep all work on the calling thread.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod check;
pub mod data;
pub mod dot;
pub mod error;
pub mod function;
pub mod higher;
pub mod nn;
pub mod ops;
pub mod optim;
mod parallel;
pub mod shape;
pub mod tape;
pub use tape::{backward, var};
pub mod tensor;
pub mod trace;

pub use backward::Gradients;
pub use error::{Error, Phase, Result};
pub use function::{AsFunction, Function, InputGrads, ScalarFunction};
pub use shape::Shape;
pub use tape::{NoGrad, Tape};
pub use tensor::{Tensor, TensorRef};
pub use var::{Var, Vars};

/// The README's code, compiled and run as a doctest so that it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The tutorial's code (`docs/tutorial.md`), compiled and run as doctests.
#[doc = include_str!("../docs/tutorial.md")]
#[cfg(doctest)]
pub struct TutorialDoctests;

/// The Korean tutorial's code (`docs/tutorial.ko.md`), compiled and run as doctests.
#[doc = include_str!("../docs/tutorial.ko.md")]
#[cfg(doctest)]
pub struct TutorialKoDoctests;
