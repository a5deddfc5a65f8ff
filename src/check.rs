//! Numerical gradients and the gradient checker.
