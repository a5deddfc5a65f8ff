//! Parameters, initialisation, layers and networks.
//!
//! - [`Params`]: named parameter tensors in insertion order, bound onto a tape for each
//!   step ([`Params::bind`]), their gradients read back by name ([`ParamGradients`]),
//!   saved to and loaded from a plain-text file; a parameter can be frozen
//!   ([`Params::freeze`]) to keep it out of training.
//! - [`init`]: seeded, portable initialisation (normal, Xavier/Glorot, He).
//! - [`Linear`], [`Activation`] and the [`Mlp`] builder.
//! - [`Trainer`]: the training loop on one reused tape, with its loss [`History`].
//!
//! The lecture's XOR network, trained the lecture's way (plain gradient descent on
//! ½Σ(t − o)² over the whole batch, lr 0.1):
//!
//! ```
//! use tapegrad::nn::{init, Activation, Init, Mlp, Params, Trainer};
//! use tapegrad::optim::Sgd;
//! use tapegrad::Tensor;
//!
//! let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])?;
//! let y = Tensor::matrix(&[[0.0], [1.0], [1.0], [0.0]])?;
//! let mut params = Params::new();
//! let net = Mlp::builder(2)
//!     .layer(4, Activation::Sigmoid)
//!     .layer(1, Activation::Sigmoid)
//!     .init(Init::Normal { mean: 0.0, std: 1.0 })
//!     .build(&mut params, &mut init::rng(3))?;
//! let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
//! for _ in 0..10_000 {
//!     trainer.step(&mut params, &mut sgd, |p| {
//!         let o = net.forward(p, p.tape().constant_tensor(&x))?;
//!         o.try_half_sse(p.tape().constant_tensor(&y))
//!     })?;
//! }
//! let o = net.predict(&params, &x)?;
//! let mse = o.data().iter().zip(y.data()).map(|(o, y)| (o - y).powi(2)).sum::<f64>() / 4.0;
//! assert!(mse < 0.01);
//! # Ok::<(), tapegrad::Error>(())
//! ```

pub mod init;
pub mod layer;
pub mod params;
pub mod train;

pub use init::Init;
pub use layer::{Activation, Composed, Linear, Mlp, MlpBuilder};
pub use params::{Bound, ParamGradients, Params};
pub use train::{accuracy, Batch, History, Trainer};
