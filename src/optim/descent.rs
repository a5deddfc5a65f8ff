//! Gradient descent on plain functions.
