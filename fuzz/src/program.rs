//! Programs of tapegrad calls decoded from bytes, and the checks run on each: the one
//! file shared by the fuzz target (`fuzz/fuzz_targets/programs.rs`) and the test that
//! replays the committed corpus on stable (`tests/fuzz_corpus.rs`).
//!
//! # The byte format
//!
//! Bytes are read one at a time; past the end every byte reads as 0, so any input is a
//! program.
//!
//! - `1` byte: the number of leaves, 1 to 6.
//! - per leaf, `1` byte of kind: bits 0–3 pick a shape of [`SHAPES`] (scalars, small
//!   vectors and matrices, empty axes), bit 4 makes it a constant, bit 5 records a scalar
//!   as a rank-0 tensor rather than on the scalar path, bit 6 records a scalar through
//!   [`Tape::vars`]; then one byte per element, decoded by [`value`].
//! - `1` byte: the number of steps, 0 to 31; per step 4 bytes: the op ([`OPS`]), two
//!   operands (earlier nodes, modulo their number) and a parameter byte.
//! - `1` byte: the output node (modulo the number of nodes); a node that is not one
//!   number is summed.
//! - per leaf element, `1` byte: its value for the replay check.
//!
//! # The checks
//!
//! [`check`] records the program and fails, with a message, if
//!
//! - anything panics other than the user function that panics on purpose;
//! - a call that panics on purpose changes the tape: the recording must give the same
//!   bits as a fresh tape that never made the call;
//! - a cleared and reused tape gives other bits than a fresh one;
//! - `backward_into` a `Gradients` reused across programs gives other bits than a
//!   fresh `backward`;
//! - the gradients differ from those of the program pruned to the output's ancestors;
//! - `replay` after `set_value` / `set_scalars` gives other bits than a fresh recording
//!   at the new values;
//! - `grad_graph` gives other first derivatives than `backward` with respect to the
//!   nodes that take gradients (see [`close_enough`] for how they are compared; a
//!   program with a `bce` node is left out, whose graph rule is documented to skip
//!   the clamps of its first-order rule);
//! - a shape too large for a tensor is anything but an error.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once};
use tapegrad::{
    Error, Function, Gradients, Result, ScalarFunction, Shape, Tape, Tensor, TensorRef, Var,
};

/// Leaf values: signed zeros, subnormals, the largest magnitudes, infinities and NaNs
/// of several bit patterns, and plain numbers.
pub const VALUES: [f64; 20] = [
    0.0,
    -0.0,
    0.5,
    -1.5,
    2.5,
    1e308,
    -1e308,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    3.0,
    -0.25,
    1.0,
    f64::MAX,
    // A NaN with the sign bit set and one with a payload (signalling).
    f64::from_bits(0xfff8_0000_0000_0000),
    f64::from_bits(0x7ff0_0000_0000_0001),
    -700.0,
];

/// The shapes a leaf may have.
pub const SHAPES: [&[usize]; 16] = [
    &[],
    &[1],
    &[2],
    &[3],
    &[1, 1],
    &[2, 3],
    &[3, 2],
    &[1, 3],
    &[3, 1],
    &[2, 1, 3],
    &[0],
    &[2, 0],
    &[0, 3],
    &[4],
    &[2, 2],
    &[6],
];

/// Axis lengths whose product overflows or exceeds [`Shape::MAX_NUMEL`].
const HUGE_SHAPES: [&[usize]; 6] = [
    &[usize::MAX],
    &[Shape::MAX_NUMEL + 1],
    &[3, 6_148_914_691_236_517_206],
    &[1 << 32, 1 << 32],
    &[0, usize::MAX, 2],
    &[2, 2, 2, 1 << 62],
];

/// Parameters of ops (slopes, exponents, plain numbers on the other side of `+ - * /`).
const PARAMS: [f64; 16] = [
    0.0,
    -0.0,
    0.5,
    -1.5,
    2.0,
    1e308,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    5e-324,
    3.0,
    -2.0,
    1.0,
    0.1,
    -1e308,
    7.5,
];

/// Positions and lengths for `narrow`.
const POSITIONS: [usize; 8] = [0, 1, 2, 3, usize::MAX, 1 << 32, usize::MAX / 2 + 1, 4];

/// A byte as a value: below 128 one of [`VALUES`], else a multiple of 1/8 in [−8, 8).
pub fn value(byte: u8) -> f64 {
    if byte < 128 {
        VALUES[byte as usize % VALUES.len()]
    } else {
        (f64::from(byte) - 192.0) / 8.0
    }
}

/// The ops a step may take, by name; a step's op byte picks one modulo their number.
pub const OPS: [&str; 62] = [
    "neg",
    "exp",
    "ln",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tan",
    "sign",
    "erf",
    "step",
    "sigmoid",
    "tanh",
    "relu",
    "softsign",
    "atan",
    "gaussian",
    "silu",
    "softplus",
    "gelu",
    "square",
    "sum",
    "try_mean",
    "try_max",
    "transpose",
    "leaky_relu",
    "elu",
    "swish",
    "powf",
    "powi",
    "add_scalar",
    "mul_scalar",
    "div_scalar",
    "scalar_sub",
    "scalar_div",
    "sum_axis",
    "mean_axis",
    "max_axis",
    "softmax",
    "log_softmax",
    "reshape",
    "narrow",
    "softmax_cross_entropy",
    "nan_slope",
    "nan_value",
    "panics",
    "wrong_count",
    "try_add",
    "try_sub",
    "try_mul",
    "try_div",
    "matmul",
    "equal",
    "mse",
    "half_sse",
    "bce",
    "bce_with_logits",
    "huge_shape",
    "huge_reshape",
    "no_grad_sigmoid",
    "product",
    "reshape_back",
];

/// One leaf of a program.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f64>,
    /// Its values for the replay check.
    pub replay_values: Vec<f64>,
    /// A constant (no gradient) rather than a variable.
    pub constant: bool,
    /// A scalar recorded as a rank-0 tensor rather than on the scalar path.
    pub as_tensor: bool,
    /// A scalar recorded through `Tape::vars`.
    pub through_vars: bool,
}

/// One step: an op of [`OPS`] on earlier nodes, with a parameter byte.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Index into [`OPS`].
    pub op: usize,
    /// First operand, modulo the nodes before the step.
    pub a: usize,
    /// Second operand, modulo the nodes before the step.
    pub b: usize,
    /// Parameter byte.
    pub p: u8,
}

/// A decoded program.
#[derive(Clone, Debug)]
pub struct Program {
    /// The leaves, nodes `0..leaves.len()`.
    pub leaves: Vec<Leaf>,
    /// The steps, node `leaves.len() + k` for step `k`.
    pub steps: Vec<Step>,
    /// The output node, modulo the number of nodes.
    pub output: usize,
}

struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
}

/// Decodes any bytes into a program (see the module docs for the format).
pub fn decode(data: &[u8]) -> Program {
    let mut bytes = Bytes { data, at: 0 };
    let n_leaves = bytes.next() as usize % 6 + 1;
    let mut leaves = Vec::with_capacity(n_leaves);
    for _ in 0..n_leaves {
        let kind = bytes.next();
        let shape = SHAPES[usize::from(kind & 15)].to_vec();
        let numel = shape.iter().product::<usize>();
        let values = (0..numel).map(|_| value(bytes.next())).collect();
        leaves.push(Leaf {
            shape,
            values,
            replay_values: Vec::new(),
            constant: kind & 0x10 != 0,
            as_tensor: kind & 0x20 != 0,
            through_vars: kind & 0x40 != 0,
        });
    }
    let n_steps = bytes.next() as usize % 32;
    let steps = (0..n_steps)
        .map(|_| Step {
            op: bytes.next() as usize % OPS.len(),
            a: bytes.next() as usize,
            b: bytes.next() as usize,
            p: bytes.next(),
        })
        .collect();
    let output = bytes.next() as usize;
    for leaf in &mut leaves {
        leaf.replay_values = (0..leaf.values.len())
            .map(|_| value(bytes.next()))
            .collect();
    }
    Program {
        leaves,
        steps,
        output,
    }
}

/// The payload of the user function that panics on purpose.
pub struct Deliberate;

/// Installs, once, a panic hook that stays silent for the panics made on purpose and
/// hands every other panic to the hook installed before (libFuzzer's aborts).
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Deliberate>() {
                previous(info);
            }
        }));
    });
}

/// A scalar function whose derivative is NaN everywhere.
struct NanSlope;

impl ScalarFunction for NanSlope {
    fn name(&self) -> &str {
        "nan_slope"
    }
    fn value(&self, x: f64) -> f64 {
        x * 0.5
    }
    fn derivative(&self, _x: f64) -> f64 {
        f64::NAN
    }
}

/// A scalar function whose value is NaN everywhere, with slope 1 and a graph rule.
struct NanValue;

impl ScalarFunction for NanValue {
    fn name(&self) -> &str {
        "nan_value"
    }
    fn value(&self, _x: f64) -> f64 {
        f64::NAN
    }
    fn derivative(&self, _x: f64) -> f64 {
        1.0
    }
    fn derivative_graph<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        Ok(x * 0.0 + 1.0)
    }
}

/// A function whose forward panics on purpose.
struct Panics;

impl Function for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    fn forward(&self, _inputs: &[TensorRef<'_>], _out: &mut [f64]) {
        panic::panic_any(Deliberate);
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        _gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }
}

/// A function whose backward returns no gradient for its one input.
struct WrongCount;

impl Function for WrongCount {
    fn name(&self) -> &str {
        "wrong_count"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        out.copy_from_slice(inputs[0].data());
    }
    fn backward(
        &self,
        _inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        _gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }
}

/// The elementwise product of two inputs of one shape, with both backward rules.
struct Product;

impl Function for Product {
    fn name(&self) -> &str {
        "product"
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        for ((y, a), b) in out.iter_mut().zip(inputs[0].data()).zip(inputs[1].data()) {
            *y = a * b;
        }
    }
    // d/da ab = b, d/db ab = a
    fn backward(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
    ) -> Result<Vec<Tensor>> {
        let (a, b) = (inputs[0], inputs[1]);
        let ga = b.data().iter().zip(gy.data()).map(|(b, g)| g * b).collect();
        let gb = a.data().iter().zip(gy.data()).map(|(a, g)| g * a).collect();
        Ok(vec![
            Tensor::new(ga, a.shape().clone())?,
            Tensor::new(gb, b.shape().clone())?,
        ])
    }
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        Ok(vec![gy.try_mul(inputs[1])?, gy.try_mul(inputs[0])?])
    }
}

/// What became of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// It recorded a node.
    Node,
    /// It returned an error; the step stands for its first operand.
    Error,
    /// It panicked on purpose; the step stands for its first operand.
    Panicked,
    /// It was left out (off the output's path, or a panicking call not made).
    Skipped,
}

/// A program as recorded on one tape.
struct Recording<'t> {
    /// The leaves.
    leaves: Vec<Var<'t>>,
    /// Each node's variable (`None` where left out); a step that failed holds its first
    /// operand's variable.
    nodes: Vec<Option<Var<'t>>>,
    /// Each step's inputs, as node numbers, when it recorded a node; its first operand
    /// when it failed.
    inputs: Vec<Vec<usize>>,
    /// Each step's outcome.
    outcomes: Vec<Outcome>,
    /// The output: the chosen node, summed unless it is one number.
    output: Var<'t>,
}

impl Recording<'_> {
    /// True if a step recorded a node of op `name`.
    fn has_node_of(&self, name: &str, program: &Program) -> bool {
        program
            .steps
            .iter()
            .zip(&self.outcomes)
            .any(|(step, outcome)| OPS[step.op] == name && *outcome == Outcome::Node)
    }
}

/// How to record: which nodes to keep, whether to make the calls that panic.
struct Mode<'a> {
    /// Which nodes to record, and each step's outcome in the whole program: a step
    /// that returned an error there stands for its first operand without being made
    /// again (its second operand need not be an ancestor of the output).
    keep: Option<(&'a [bool], &'a [Outcome])>,
    make_panicking_calls: bool,
    replay_values: bool,
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn fail<T>(message: impl Into<String>) -> std::result::Result<T, String> {
    Err(message.into())
}

/// Records `program` on `tape`.
fn record<'t>(
    tape: &'t Tape,
    program: &Program,
    mode: &Mode<'_>,
) -> std::result::Result<Recording<'t>, String> {
    let mut leaves = Vec::new();
    for leaf in &program.leaves {
        let values = if mode.replay_values {
            &leaf.replay_values
        } else {
            &leaf.values
        };
        let var = if leaf.shape.is_empty() && !leaf.as_tensor {
            match (leaf.constant, leaf.through_vars) {
                (true, _) => tape.constant(values[0]),
                (false, true) => tape.vars(values).get(0).expect("one variable"),
                (false, false) => tape.var(values[0]),
            }
        } else {
            let t = Tensor::new(values.clone(), leaf.shape.as_slice())
                .map_err(|e| format!("a leaf's tensor: {e}"))?;
            if leaf.constant {
                tape.constant_tensor(&t)
            } else {
                tape.tensor(&t)
            }
        };
        leaves.push(var);
    }
    let mut nodes: Vec<Option<Var<'t>>> = leaves.iter().copied().map(Some).collect();
    let mut inputs = Vec::new();
    let mut outcomes = Vec::new();
    for (k, step) in program.steps.iter().enumerate() {
        let before = nodes.len();
        let (ia, ib) = (step.a % before, step.b % before);
        if let Some((keep, whole)) = mode.keep {
            if !keep[before] {
                nodes.push(None);
                inputs.push(Vec::new());
                outcomes.push(Outcome::Skipped);
                continue;
            }
            if whole[k] == Outcome::Error {
                nodes.push(nodes[ia]);
                inputs.push(vec![ia]);
                outcomes.push(Outcome::Error);
                continue;
            }
        }
        let get = |i: usize| nodes[i].ok_or_else(|| format!("step {k}: operand {i} left out"));
        let a = get(ia)?;
        let name = OPS[step.op];
        if name == "panics" {
            if !mode.make_panicking_calls {
                nodes.push(Some(a));
                inputs.push(vec![ia]);
                outcomes.push(Outcome::Skipped);
                continue;
            }
            let len = tape.len();
            let result = panic::catch_unwind(AssertUnwindSafe(|| a.apply(&Arc::new(Panics))));
            match result {
                Ok(_) => return fail(format!("step {k}: the panicking function returned")),
                Err(payload) if payload.is::<Deliberate>() => {}
                Err(payload) => panic::resume_unwind(payload),
            }
            if tape.len() != len {
                return fail(format!(
                    "step {k}: a panicking function left the tape with {} nodes, not {len}",
                    tape.len()
                ));
            }
            nodes.push(Some(a));
            inputs.push(vec![ia]);
            outcomes.push(Outcome::Panicked);
            continue;
        }
        let binary = matches!(
            name,
            "try_add"
                | "try_sub"
                | "try_mul"
                | "try_div"
                | "matmul"
                | "equal"
                | "mse"
                | "half_sse"
                | "bce"
                | "bce_with_logits"
                | "product"
        );
        let b = if binary { get(ib)? } else { a };
        let result = apply_op(tape, name, step.p, a, b).map_err(|e| format!("step {k}: {e}"))?;
        match result {
            Some(y) => {
                nodes.push(Some(y));
                inputs.push(if binary { vec![ia, ib] } else { vec![ia] });
                outcomes.push(Outcome::Node);
            }
            None => {
                nodes.push(Some(a));
                inputs.push(vec![ia]);
                outcomes.push(Outcome::Error);
            }
        }
    }
    let n = nodes.len();
    let chosen = nodes[program.output % n].ok_or("the output is left out")?;
    let output = if chosen.shape().numel() == 1 {
        chosen
    } else {
        chosen.sum()
    };
    Ok(Recording {
        leaves,
        nodes,
        inputs,
        outcomes,
        output,
    })
}

/// Applies op `name` with parameter byte `p` to `a` (and `b`): `Ok(Some(node))`,
/// `Ok(None)` when tapegrad returned an error (and the tape is unchanged), `Err` when
/// something it promised did not hold.
fn apply_op<'t>(
    tape: &'t Tape,
    name: &str,
    p: u8,
    a: Var<'t>,
    b: Var<'t>,
) -> std::result::Result<Option<Var<'t>>, String> {
    let param = PARAMS[usize::from(p & 15)];
    let axis = usize::from(p & 3);
    let keepdim = p & 4 != 0;
    let len = tape.len();
    let result: Result<Var<'t>> = match name {
        "neg" => Ok(-a),
        "exp" => Ok(a.exp()),
        "ln" => Ok(a.ln()),
        "sqrt" => Ok(a.sqrt()),
        "abs" => Ok(a.abs()),
        "sin" => Ok(a.sin()),
        "cos" => Ok(a.cos()),
        "tan" => Ok(a.tan()),
        "sign" => Ok(a.sign()),
        "erf" => Ok(a.erf()),
        "step" => Ok(a.step()),
        "sigmoid" => Ok(a.sigmoid()),
        "tanh" => Ok(a.tanh()),
        "relu" => Ok(a.relu()),
        "softsign" => Ok(a.softsign()),
        "atan" => Ok(a.atan()),
        "gaussian" => Ok(a.gaussian()),
        "silu" => Ok(a.silu()),
        "softplus" => Ok(a.softplus()),
        "gelu" => Ok(a.gelu()),
        "square" => Ok(a.square()),
        "sum" => Ok(a.sum()),
        "try_mean" => a.try_mean(),
        "try_max" => a.try_max(),
        "transpose" => a.try_transpose(),
        "leaky_relu" => a.try_leaky_relu(param),
        "elu" => a.try_elu(param),
        "swish" => a.try_swish(param),
        "powf" => a.try_powf(param),
        "powi" => {
            let n = match p {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => i32::MIN + 1,
                _ => i32::from(p as i8) / 8,
            };
            Ok(a.powi(n))
        }
        "add_scalar" => Ok(a + param),
        "mul_scalar" => Ok(a * param),
        "div_scalar" => Ok(a / param),
        "scalar_sub" => Ok(param - a),
        "scalar_div" => Ok(param / a),
        "sum_axis" => a.try_sum_axis(axis, keepdim),
        "mean_axis" => a.try_mean_axis(axis, keepdim),
        "max_axis" => a.try_max_axis(axis, keepdim),
        "softmax" => a.try_softmax(axis),
        "log_softmax" => a.try_log_softmax(axis),
        "reshape" => a.try_reshape(SHAPES[usize::from(p & 15)]),
        "reshape_back" => {
            // Into one axis and back: keeps the shape, records two nodes.
            let shape = a.shape();
            a.try_reshape([shape.numel()])
                .and_then(|f| f.try_reshape(shape))
        }
        "narrow" => a.try_narrow(
            axis,
            POSITIONS[usize::from(p >> 2 & 7)],
            POSITIONS[usize::from(p >> 5)],
        ),
        "softmax_cross_entropy" => {
            let labels = [usize::from(p & 3), usize::from(p >> 2 & 3)];
            let rows = match a.shape().dims() {
                [_] => 1,
                [rows, _] => *rows,
                _ => usize::from(p >> 4 & 3),
            };
            let labels: Vec<usize> = (0..rows).map(|i| labels[i % 2]).collect();
            a.try_softmax_cross_entropy(&labels)
        }
        "nan_slope" => a.apply(&Arc::new(NanSlope)),
        "nan_value" => a.apply(&Arc::new(NanValue)),
        "wrong_count" => a.apply(&Arc::new(WrongCount)),
        "try_add" => a.try_add(b),
        "try_sub" => a.try_sub(b),
        "try_mul" => a.try_mul(b),
        "try_div" => a.try_div(b),
        "matmul" => a.try_matmul(b),
        "equal" => a.try_equal(b),
        "mse" => a.try_mse(b),
        "half_sse" => a.try_half_sse(b),
        "bce" => a.try_bce(b),
        "bce_with_logits" => a.try_bce_with_logits(b),
        "product" => tape.apply(&Arc::new(Product), &[a, b]),
        "no_grad_sigmoid" => {
            let _guard = tape.no_grad();
            Ok(a.sigmoid())
        }
        "huge_shape" => {
            let dims = HUGE_SHAPES[usize::from(p) % HUGE_SHAPES.len()];
            if Shape::try_new(dims).is_ok() {
                return fail(format!("Shape::try_new({dims:?}) is not an error"));
            }
            let data = a.value().into_data();
            match Tensor::new(data, dims) {
                Err(Error::ShapeTooLarge { .. }) => {}
                other => return fail(format!("Tensor::new(_, {dims:?}) gave {other:?}")),
            }
            return Ok(None);
        }
        "huge_reshape" => {
            let dims = HUGE_SHAPES[usize::from(p) % HUGE_SHAPES.len()];
            match a.try_reshape(dims) {
                Ok(_) => return fail(format!("reshape to {dims:?} is not an error")),
                Err(e) => Err(e),
            }
        }
        _ => return fail(format!("no op named {name}")),
    };
    match result {
        Ok(y) => Ok(Some(y)),
        Err(_) if tape.len() != len => fail(format!(
            "{name}: an error left the tape with {} nodes, not {len}",
            tape.len()
        )),
        Err(_) => Ok(None),
    }
}

/// For every node, whether the output depends on it.
fn ancestors(program: &Program, recording: &Recording<'_>) -> Vec<bool> {
    let n = recording.nodes.len();
    let mut on_path = vec![false; n];
    on_path[program.output % n] = true;
    for k in (0..program.steps.len()).rev() {
        if on_path[program.leaves.len() + k] {
            for &i in &recording.inputs[k] {
                on_path[i] = true;
            }
        }
    }
    on_path
}

/// Every node's value as bits (`None` where left out), the output's value, and the
/// gradients of the output (`Err` with the message when backward fails) with respect to
/// every node that `wanted` says yes to, as bits.
#[derive(Debug, PartialEq)]
struct Bits {
    values: Vec<Option<Vec<u64>>>,
    output: Vec<u64>,
    gradients: std::result::Result<Vec<Option<Vec<u64>>>, String>,
}

fn gradient_bits(
    recording: &Recording<'_>,
    grads: std::result::Result<&Gradients, &Error>,
    wanted: &[bool],
) -> std::result::Result<Vec<Option<Vec<u64>>>, String> {
    let grads = grads.map_err(|e| e.to_string())?;
    recording
        .nodes
        .iter()
        .zip(wanted)
        .map(|(v, &want)| match (v, want) {
            (Some(v), true) => grads
                .wrt(*v)
                .map(|g| Some(bits(g.data())))
                .map_err(|e| format!("wrt: {e}")),
            _ => Ok(None),
        })
        .collect()
}

/// The bits of `recording` and of its output's gradients, from a fresh `backward` and
/// from `backward_into(reused)`, which must agree.
fn take_bits(
    recording: &Recording<'_>,
    wanted: &[bool],
    reused: &mut Gradients,
) -> std::result::Result<Bits, String> {
    let fresh = recording.output.backward();
    let into = recording.output.backward_into(reused);
    let fresh_bits = gradient_bits(recording, fresh.as_ref(), wanted);
    let into_bits = gradient_bits(recording, into.as_ref().map(|()| &*reused), wanted);
    if fresh_bits != into_bits {
        return fail(format!(
            "backward_into a reused Gradients gave {into_bits:?}, a fresh backward \
             {fresh_bits:?}"
        ));
    }
    Ok(Bits {
        values: recording
            .nodes
            .iter()
            .map(|v| v.map(|v| bits(v.value().data())))
            .collect(),
        output: bits(recording.output.value().data()),
        gradients: fresh_bits,
    })
}

/// The bits of `values` with every NaN as the one quiet NaN of `f64::NAN`.
fn any_nan(values: &[u64]) -> Vec<u64> {
    values
        .iter()
        .map(|&b| {
            if f64::from_bits(b).is_nan() {
                f64::NAN.to_bits()
            } else {
                b
            }
        })
        .collect()
}

impl Bits {
    /// These bits with every NaN as one NaN: for two runs that reach a NaN through
    /// different code. Rust leaves the sign and payload of a NaN that arithmetic makes
    /// unspecified, so `x * s` with both NaN may give either one's bits, and the
    /// compiler may order the operands one way where it inlines an op into the
    /// recording's fast path and the other way in replay's kernel. tapegrad's own bit
    /// tests match any NaN with any NaN for this reason; everything else, ±0 included,
    /// is still compared bit for bit.
    fn any_nan(&self) -> Bits {
        let each = |v: &Vec<Option<Vec<u64>>>| -> Vec<Option<Vec<u64>>> {
            v.iter().map(|b| b.as_deref().map(any_nan)).collect()
        };
        Bits {
            values: each(&self.values),
            output: any_nan(&self.output),
            gradients: self.gradients.as_ref().map(each).map_err(Clone::clone),
        }
    }
}

/// Compares two runs' bits; `same_code` when both ran the same code (a cleared tape
/// against a fresh one), so that even their NaNs must have the same bits.
fn compare(
    what: &str,
    left: &Bits,
    right: &Bits,
    same_code: bool,
) -> std::result::Result<(), String> {
    if !same_code {
        return compare(what, &left.any_nan(), &right.any_nan(), true);
    }
    if left.output != right.output {
        return fail(format!(
            "{what}: output {:?} vs {:?}",
            left.output, right.output
        ));
    }
    for (i, (l, r)) in left.values.iter().zip(&right.values).enumerate() {
        if let (Some(l), Some(r)) = (l, r) {
            if l != r {
                return fail(format!("{what}: node {i} has value bits {l:x?} vs {r:x?}"));
            }
        }
    }
    if left.gradients != right.gradients {
        return fail(format!(
            "{what}: gradients {:x?} vs {:x?}",
            left.gradients, right.gradients
        ));
    }
    Ok(())
}

/// True if a gradient from `grad_graph` and one from `backward` agree.
///
/// They are not compared bit for bit: `grad_graph` records each backward rule with tape
/// ops, which may group a product differently (`gy · (2x)` against `(gy · 2) · x`) or
/// sum the contributions of a node's uses in another order, so the two may round
/// differently, and at the edges of the range one may overflow to ±∞ (and ∞ · 0 to
/// NaN) where the other does not. Where both are finite they must agree to 1e-9,
/// relative to the larger, or absolutely below 1e-290 (two roundings of a sum that
/// cancels); where either is not finite nothing is claimed.
pub fn close_enough(graph: f64, backward: f64) -> bool {
    if !graph.is_finite() || !backward.is_finite() {
        return true;
    }
    let diff = (graph - backward).abs();
    diff <= 1e-9 * graph.abs().max(backward.abs()) || diff < 1e-290
}

/// Per program, what the checks met: filled in by [`check`], for statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Nodes recorded.
    pub nodes: usize,
    /// Steps that returned an error.
    pub errors: usize,
    /// Calls that panicked on purpose.
    pub panics: usize,
    /// Nodes off the output's path.
    pub dead: usize,
    /// Whether backward succeeded.
    pub backward_ok: bool,
    /// Whether `grad_graph` succeeded and was compared.
    pub grad_graph_compared: bool,
}

thread_local! {
    static REUSED_TAPE: std::cell::RefCell<Tape> = std::cell::RefCell::new(Tape::new());
    static REUSED_GRADIENTS: std::cell::RefCell<Gradients> =
        std::cell::RefCell::new(Gradients::new());
}

/// Decodes `data` and runs every check on it; the error says what failed.
pub fn check(data: &[u8]) -> std::result::Result<Report, String> {
    let program = decode(data);
    match panic::catch_unwind(AssertUnwindSafe(|| check_program(&program))) {
        Ok(result) => result.map_err(|e| format!("{e}\nin {program:?}")),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            fail(format!("panic: {message}\nin {program:?}"))
        }
    }
}

fn check_program(program: &Program) -> std::result::Result<Report, String> {
    REUSED_GRADIENTS.with(|reused| check_with(program, &mut reused.borrow_mut()))
}

fn check_with(program: &Program, reused: &mut Gradients) -> std::result::Result<Report, String> {
    let live = Mode {
        keep: None,
        make_panicking_calls: true,
        replay_values: false,
    };
    let everything_wanted = vec![true; program.leaves.len() + program.steps.len()];
    let mut report = Report::default();

    // The program on a fresh tape.
    let tape = Tape::new();
    let whole = record(&tape, program, &live)?;
    let whole_bits = take_bits(&whole, &everything_wanted, reused)?;
    report.nodes = tape.len();
    report.errors = whole
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Error)
        .count();
    report.panics = whole
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Panicked)
        .count();
    report.backward_ok = whole_bits.gradients.is_ok();

    // The calls that panic change nothing: a tape that never made them agrees.
    let quiet = Mode {
        make_panicking_calls: false,
        ..live
    };
    if report.panics > 0 {
        let tape = Tape::new();
        let survivors = record(&tape, program, &quiet)?;
        compare(
            "without the panicking calls",
            &take_bits(&survivors, &everything_wanted, reused)?,
            &whole_bits,
            false,
        )?;
    }

    // A cleared tape, used before, agrees with a fresh one.
    REUSED_TAPE.with(|t| -> std::result::Result<(), String> {
        let mut t = t.borrow_mut();
        for _ in 0..2 {
            t.clear();
            let again = record(&t, program, &live)?;
            if again.outcomes != whole.outcomes {
                return fail("a reused tape: other steps fail");
            }
            compare(
                "a reused tape",
                &take_bits(&again, &everything_wanted, reused)?,
                &whole_bits,
                true,
            )?;
        }
        Ok(())
    })?;

    // Pruned to the output's ancestors: the same output and gradients.
    let on_path = ancestors(program, &whole);
    report.dead = on_path.iter().filter(|&&on| !on).count();
    {
        let tape = Tape::new();
        let pruned = record(
            &tape,
            program,
            &Mode {
                keep: Some((&on_path, &whole.outcomes)),
                ..quiet
            },
        )?;
        for (k, (p, w)) in pruned.outcomes.iter().zip(&whole.outcomes).enumerate() {
            let expected = if *w == Outcome::Panicked {
                Outcome::Skipped
            } else {
                *w
            };
            if on_path[program.leaves.len() + k] && *p != expected {
                return fail(format!("pruned: step {k} is {p:?}, not {w:?}"));
            }
        }
        let pruned_bits = take_bits(&pruned, &on_path, reused)?;
        let whole_on_path = take_bits(&whole, &on_path, reused)?;
        compare(
            "pruned to the output's ancestors",
            &pruned_bits,
            &whole_on_path,
            false,
        )?;
    }

    // Replay at new leaf values agrees with a fresh recording at them.
    {
        let fresh_tape = Tape::new();
        let fresh = record(
            &fresh_tape,
            program,
            &Mode {
                replay_values: true,
                ..live
            },
        )?;
        if fresh.outcomes != whole.outcomes {
            return fail("at the replay values other steps fail");
        }
        let fresh_bits = take_bits(&fresh, &everything_wanted, reused)?;
        let mut scalars = Vec::new();
        let mut scalar_values = Vec::new();
        for (i, (leaf, var)) in program.leaves.iter().zip(&whole.leaves).enumerate() {
            let is_scalar_leaf = leaf.shape.is_empty() && !leaf.as_tensor;
            if is_scalar_leaf && i % 2 == 0 {
                scalars.push(*var);
                scalar_values.push(leaf.replay_values[0]);
            } else {
                // A value of another shape is refused and changes nothing.
                let wrong = Tensor::new(vec![0.0; 7], [7]).expect("seven values");
                if !matches!(var.set_value(&wrong), Err(Error::ValueShape { .. })) {
                    return fail("set_value of the wrong shape is not a ValueShape error");
                }
                let t = Tensor::new(leaf.replay_values.clone(), leaf.shape.as_slice())
                    .map_err(|e| e.to_string())?;
                var.set_value(&t).map_err(|e| format!("set_value: {e}"))?;
            }
        }
        tape.set_scalars(&scalars, &scalar_values)
            .map_err(|e| format!("set_scalars: {e}"))?;
        if let Some(made) = whole
            .outcomes
            .iter()
            .position(|o| *o == Outcome::Node)
            .and_then(|k| whole.nodes[program.leaves.len() + k])
        {
            if made.op_name() != "leaf"
                && !matches!(made.set_value(&made.value()), Err(Error::NotALeaf { .. }))
            {
                return fail("set_value on an op's result is not a NotALeaf error");
            }
        }
        for round in 0..2 {
            tape.replay();
            compare(
                &format!("replay {round} against a fresh recording"),
                &take_bits(&whole, &everything_wanted, reused)?,
                &fresh_bits,
                false,
            )?;
        }
    }

    // grad_graph's first derivatives agree with backward's.
    {
        let tape = Tape::new();
        let graph = record(&tape, program, &quiet)?;
        let grads = graph.output.backward();
        // Only variables that take gradients: `backward` reports zero for a constant
        // (and for a node made from constants only), while `grad_graph` differentiates
        // with respect to whatever it is given.
        let wrt: Vec<Var<'_>> = graph
            .nodes
            .iter()
            .flatten()
            .copied()
            .filter(|x| x.requires_grad())
            .collect();
        match graph.output.grad_graph(&wrt) {
            // bce's graph rule follows the unclamped formulas, as its documentation says,
            // where its first-order rule clamps p(1 − p) and the logarithms: the two
            // differ for probabilities at or outside 0 and 1.
            Ok(_) if graph.has_node_of("bce", program) => {}
            Ok(dys) => {
                let grads = grads
                    .map_err(|e| format!("grad_graph succeeds where backward fails with {e}"))?;
                for (i, (x, dy)) in wrt.iter().zip(&dys).enumerate() {
                    let (g, d) = (grads.wrt(*x).map_err(|e| e.to_string())?, dy.value());
                    if g.shape() != d.shape()
                        || g.data()
                            .iter()
                            .zip(d.data())
                            .any(|(g, d)| !close_enough(*d, *g))
                    {
                        return fail(format!(
                            "grad_graph gives {d:?} for variable {i}, backward {g:?}"
                        ));
                    }
                }
                report.grad_graph_compared = true;
            }
            Err(Error::NotTwiceDifferentiable { .. }) => {}
            // A user function whose backward fails (wrong_count) fails both.
            Err(_) if grads.is_err() => {}
            Err(e) => return fail(format!("grad_graph: {e}")),
        }
    }
    Ok(report)
}
