//! The one error type of tapegrad.
//!
//! Every fallible public call returns [`Result`]. Each variant names what went wrong
//! (the op, the shapes, the offending value) so that its message reads as a sentence a
//! user can act on. A call that fails leaves the tape as it was.

use crate::shape::Shape;

/// Everything that can go wrong in tapegrad.
///
/// ```
/// use tapegrad::{Error, Tape, Tensor};
/// let tape = Tape::new();
/// let a = tape.tensor(&Tensor::zeros([2, 3]));
/// let b = tape.tensor(&Tensor::zeros([4]));
/// let err = a.try_add(b).unwrap_err();
/// assert!(matches!(err, Error::ShapeMismatch { .. }));
/// assert_eq!(err.to_string(), "add: shapes [2, 3] and [4] cannot be broadcast together");
/// // `Debug` prints the same sentence, so that `fn main() -> Result<(), Error>`
/// // ends with a readable message.
/// assert_eq!(format!("{err:?}"), err.to_string());
/// ```
#[derive(Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A variable from one tape was used with another tape or its gradients.
    #[error("{op}: the variable belongs to a different tape")]
    ForeignVariable {
        /// Where the variable was used.
        op: String,
    },
    /// `backward()` was called on an output that is not a scalar.
    #[error("backward: the output has shape {shape}, not a scalar; give a seed gradient with backward_with")]
    NonScalarBackward {
        /// Shape of the output.
        shape: Shape,
    },
    /// The seed gradient given to `backward_with` has the wrong shape.
    #[error("backward: the seed gradient has shape {seed} but the output has shape {output}")]
    SeedShape {
        /// Shape of the output.
        output: Shape,
        /// Shape of the seed that was given.
        seed: Shape,
    },
    /// Two operands of an op have shapes that do not fit together.
    #[error("{op}: shapes {left} and {right} cannot be broadcast together")]
    ShapeMismatch {
        /// The op.
        op: String,
        /// Shape of the first operand.
        left: Shape,
        /// Shape of the second operand.
        right: Shape,
    },
    /// An op was given the wrong number of inputs.
    #[error("{op}: expected {expected} inputs, got {got}")]
    Arity {
        /// The op.
        op: String,
        /// How many inputs it takes.
        expected: usize,
        /// How many it was given.
        got: usize,
    },
    /// An axis argument is out of range for the tensor's rank.
    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank}")]
    InvalidAxis {
        /// The op.
        op: String,
        /// The axis that was asked for.
        axis: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An op parameter that must be a finite number is not (a NaN slope, an infinite exponent).
    #[error("{op}: parameter {name} must be a finite number, got {value}")]
    InvalidParameter {
        /// The op.
        op: String,
        /// The parameter's name.
        name: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// Tensor data whose length does not match its shape.
    #[error("tensor: shape {shape} holds {expected} values, but {got} were given")]
    DataLength {
        /// The shape asked for.
        shape: Shape,
        /// How many values that shape holds.
        expected: usize,
        /// How many were given.
        got: usize,
    },
    /// A shape names more elements than a tensor can hold: the product of its axis
    /// lengths (an empty axis counted as 1) exceeds [`Shape::MAX_NUMEL`], or overflows.
    #[error("{op}: shape {shape} is too large; the product of its nonzero axis lengths must be at most {max}", max = Shape::MAX_NUMEL)]
    ShapeTooLarge {
        /// The call or op that made the shape.
        op: String,
        /// The shape.
        shape: Shape,
    },
    /// A single number was asked of a value that is not a scalar.
    #[error("{op}: expected a scalar, got a value of shape {shape}")]
    NotScalar {
        /// Where the scalar was needed.
        op: String,
        /// The value's shape.
        shape: Shape,
    },
    /// A user function's backward returned a different number of gradients than it has inputs.
    #[error("{function}: backward returned {got} gradients for {expected} inputs")]
    GradientCount {
        /// The function's name.
        function: String,
        /// How many inputs it has.
        expected: usize,
        /// How many gradients it returned.
        got: usize,
    },
    /// A user function's backward returned a gradient whose shape is not its input's.
    #[error("{function}: the gradient for input {input} has shape {got}, but the input has shape {expected}")]
    GradientShape {
        /// The function's name.
        function: String,
        /// Which input (0-based).
        input: usize,
        /// The input's shape.
        expected: Shape,
        /// The shape of the returned gradient.
        got: Shape,
    },
    /// Gradients were asked of a recording the tape has since cleared.
    #[error("gradients: these gradients belong to a recording that the tape has since cleared")]
    StaleGradients,
    /// A value was set on a variable that an op made; only leaves can be set.
    #[error("set_value: only a leaf's value can be set; this variable was made by {op}")]
    NotALeaf {
        /// The op that made the variable.
        op: String,
    },
    /// A new value for a leaf ([`Var::set_value`](crate::Var::set_value)) has another
    /// shape than the leaf; a leaf keeps its shape, so that the recording stays valid.
    #[error("set_value: the leaf has shape {expected}, but the new value has shape {got}; give a value of the leaf's shape")]
    ValueShape {
        /// The leaf's shape.
        expected: Shape,
        /// The shape of the value that was given.
        got: Shape,
    },
    /// [`Var::grad_graph`](crate::Var::grad_graph) (and so any second derivative) met a
    /// user function without a graph-building backward rule. `backward` needs only the
    /// numeric rule; the gradient graph needs the rule written with tape ops.
    #[error(
        "{function}: grad_graph needs its backward rule written with tape ops; implement \
         Function::backward_graph (or ScalarFunction::derivative_graph for a \
         ScalarFunction), or use backward, which needs only the numeric rule"
    )]
    NotTwiceDifferentiable {
        /// The function's name.
        function: String,
    },
    /// A parameter was asked for by a name the parameter store does not hold.
    #[error("params: no parameter named {name:?}")]
    UnknownParameter {
        /// The name that was asked for.
        name: String,
    },
    /// A parameter's gradient holds NaN or ±∞: an update would carry it into the
    /// parameter, so the step is refused, and the parameters and the optimizer's state
    /// keep their values.
    #[error(
        "{op}: the gradient of parameter {name:?} is {value} at element {index}; the step \
         is refused and the parameters keep their values"
    )]
    NonFiniteGradient {
        /// The optimizer or training call that refused the step.
        op: String,
        /// The parameter whose gradient is not finite.
        name: String,
        /// The first element, in row-major order, that is not finite.
        index: usize,
        /// Its value: NaN, ∞ or −∞.
        value: f64,
    },
    /// Anomaly mode (see [`Tape::detect_anomaly`](crate::Tape::detect_anomaly)) found
    /// a value or a gradient that is NaN or ±∞: the first one, in the order the forward
    /// pass computed the values and then the order the sweep computed the gradients.
    ///
    /// Its message names the op, the line of the user's code that recorded the node,
    /// the value and where it sits, e.g. `ln at src/main.rs:42:13 produced -inf in
    /// forward`.
    #[error(
        "{op} at {} produced {value} in {phase}{}",
        location.map_or_else(|| "an unknown place (recorded with anomaly mode off)".to_string(), |l| l.to_string()),
        place(*input, *element)
    )]
    NonFinite {
        /// The op that made the value: its name, as in traces (`ln`, `matmul`, a user
        /// function's name, `leaf` for a leaf given a non-finite value).
        op: String,
        /// The node's id on the tape (its recording order).
        node: usize,
        /// Whether the forward pass made the value or the sweep made the gradient.
        phase: Phase,
        /// The file, line and column of the code that recorded the node; `None` for a
        /// node recorded while anomaly mode was off.
        location: Option<&'static std::panic::Location<'static>>,
        /// The value found: NaN, ∞ or −∞.
        value: f64,
        /// In the backward phase, which input of the op received the gradient.
        input: Option<usize>,
        /// For a tensor, the first element, in row-major order, that is not finite.
        element: Option<usize>,
    },
    /// A field of a CSV table ([`data::Csv`](crate::data::Csv)) could not be read as
    /// a finite number, or a row has another number of fields than the table.
    #[error("csv: line {line}, column {column}: {reason}")]
    Csv {
        /// The line of the text, counting from 1 (a header line included).
        line: usize,
        /// The field, counting from 1; for a short row, the first missing field.
        column: usize,
        /// What is wrong, as a sentence.
        reason: String,
    },
    /// An argument that no other variant describes does not fit the call: matrix shapes
    /// that cannot be multiplied, a class label out of range, an empty data set, a
    /// learning rate below zero, a corrupt parameter file. The reason says which and why.
    #[error("{op}: {reason}")]
    Invalid {
        /// The call or op that refused the argument.
        op: String,
        /// What is wrong, as a sentence.
        reason: String,
    },
}

impl std::fmt::Debug for Error {
    /// The error's message, as `Display` writes it: what `main` prints when it returns
    /// the error. Match on the variant for its fields.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Which pass made a non-finite number (see [`Error::NonFinite`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The forward pass: recording, or [`Tape::replay`](crate::Tape::replay).
    Forward,
    /// The backward sweep, or the gradient graph of
    /// [`Var::grad_graph`](crate::Var::grad_graph).
    Backward,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
        })
    }
}

/// Where in a node's value or gradient a non-finite number sits, for the message of
/// [`Error::NonFinite`].
fn place(input: Option<usize>, element: Option<usize>) -> String {
    match (input, element) {
        (None, None) => String::new(),
        (None, Some(e)) => format!(" (element {e})"),
        (Some(i), None) => format!(" (gradient of input {i})"),
        (Some(i), Some(e)) => format!(" (gradient of input {i}, element {e})"),
    }
}

/// `Result` with tapegrad's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
