//! A step-by-step table of a recorded computation: values, local derivatives, gradients.
