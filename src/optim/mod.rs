//! Optimizers: gradient descent on plain functions, and the optimizers that update network parameters.

pub mod descent;
