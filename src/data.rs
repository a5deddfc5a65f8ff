//! Iteration over a data set: full batch, stochastic (batch 1) and mini-batch.
