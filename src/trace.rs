//! A step-by-step table of a recorded computation: values, local derivatives, gradients.
//!
//! The lecture explains backpropagation one node at a time: the node's value from the
//! forward pass, its local derivative with respect to each input (∂O/∂Z2 = O(1 − O)),
//! the upstream gradient that arrives at it from the output (∂C/∂O), and their product,
//! the gradient it passes on to each input (∂C/∂Z2 = ∂C/∂O · ∂O/∂Z2). After a backward
//! pass, [`trace`] collects exactly these numbers for every node in recording order, and
//! its `Display` prints them as that table.
//!
//! ```
//! use tapegrad::trace::trace;
//! use tapegrad::Tape;
//!
//! let tape = Tape::new();
//! let (x, w) = (tape.constant(0.5), tape.var(0.7));
//! let z = w * x;
//! let o = z.sigmoid();
//! let grads = o.backward()?;
//! let table = trace(o, &grads)?.label(w, "W")?.label(z, "Z")?;
//!
//! let row = table.row(o).unwrap();
//! assert_eq!(row.op, "sigmoid");
//! let s = o.item()?;
//! assert_eq!(row.local[0].item()?, s * (1.0 - s)); // ∂O/∂Z = O(1 − O)
//! assert_eq!(table.row(z).unwrap().local[0].item()?, 0.5); // ∂Z/∂W = X
//! println!("{table}");
//! # Ok::<(), tapegrad::Error>(())
//! ```
//!
//! # Local derivatives of tensor nodes
//! A node's local derivatives are computed by running its backward rule with an upstream
//! gradient of ones. For a node with one element that is exactly ∂y/∂x for every input
//! element. For an elementwise node it is the derivative at each element (for a
//! broadcast input, summed over the elements it was stretched to). For any other node
//! with several elements (a matmul, a softmax) it is Σₖ ∂yₖ/∂x — the column sums of the
//! Jacobian, which is what a gradient of ones would receive — not the whole Jacobian.
//! The gradients passed on are always exact: they run the same rule with the true
//! upstream gradient.

use crate::backward::Gradients;
use crate::error::{Error, Result};
use crate::function::accumulate_into_fresh;
use crate::ops::Op;
use crate::tape::recorded;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;
use smallvec::SmallVec;
use std::fmt;

/// One node of a [`Trace`].
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    /// The node's id: its position in recording order.
    pub id: u32,
    /// A name given with [`Trace::label`].
    pub label: Option<String>,
    /// The op that made the node (`"leaf"` for inputs and constants).
    pub op: String,
    /// The ids of the node's inputs, in order.
    pub inputs: Vec<u32>,
    /// True when gradients flow through the node (false for constants and for values
    /// recorded under no-grad).
    pub requires_grad: bool,
    /// The node's value from the forward pass.
    pub value: Tensor,
    /// The local derivative ∂y/∂x with respect to each input, shaped like that input
    /// (see the module docs for nodes with several elements). Empty for a leaf.
    pub local: Vec<Tensor>,
    /// The upstream gradient ∂L/∂y: the gradient of the traced output with respect to
    /// this node, shaped like the node (zeros for a node that gradients do not flow
    /// through).
    pub upstream: Tensor,
    /// The gradient this node passes to each input, ∂L/∂y · ∂y/∂x, shaped like that
    /// input; `None` for an input that gradients do not flow into (a constant). Empty for
    /// a leaf and for a node that gradients do not flow through. An input used by
    /// several nodes receives the sum of their contributions: its own `upstream`.
    pub gradient: Vec<Option<Tensor>>,
}

/// Every node of a recording up to an output, with its value, local derivatives,
/// upstream gradient and the gradients it passes on. Made by [`trace`]; `Display`
/// prints it as a table.
#[derive(Clone, Debug)]
pub struct Trace {
    tape: u64,
    output: u32,
    rows: Vec<TraceRow>,
}

/// The trace of every node recorded up to and including `output`, after a backward pass
/// from `output`: `grads` must be what `output.backward()` (or `backward_with`) returned.
///
/// Errors: `grads` from another tape or from a recording the tape has since cleared; a
/// user function whose backward rule fails when asked for the local derivatives.
pub fn trace(output: Var<'_>, grads: &Gradients) -> Result<Trace> {
    let nodes = recorded(output);
    let mut rows = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let upstream = grads.wrt(Var::new(output.tape(), node.id))?;
        let value = node.value.view();
        let inputs: SmallVec<[TensorRef<'_>; 4]> = node
            .inputs
            .iter()
            .map(|&i| nodes[i as usize].value.view())
            .collect();
        let (local, gradient) = if inputs.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let ones = Tensor::ones(value.shape().clone());
            let local = input_gradients(&node.op, &inputs, value, ones.view())?;
            let gradient = if node.requires_grad {
                let passed = input_gradients(&node.op, &inputs, value, upstream.view())?;
                passed
                    .into_iter()
                    .zip(&node.inputs)
                    .map(|(g, &i)| nodes[i as usize].requires_grad.then_some(g))
                    .collect()
            } else {
                Vec::new()
            };
            (local, gradient)
        };
        rows.push(TraceRow {
            id: node.id,
            label: None,
            op: node.op.name().to_string(),
            inputs: node.inputs.clone(),
            requires_grad: node.requires_grad,
            value: node.value.clone(),
            local,
            upstream,
            gradient,
        });
    }
    Ok(Trace {
        tape: output.tape().id(),
        output: output.id(),
        rows,
    })
}

/// Runs `op`'s backward rule with upstream gradient `gy` into fresh zeros, one slot per
/// input position (so `x * x` shows both partial derivatives, not their sum).
fn input_gradients(
    op: &Op,
    inputs: &[TensorRef<'_>],
    y: TensorRef<'_>,
    gy: TensorRef<'_>,
) -> Result<Vec<Tensor>> {
    accumulate_into_fresh(inputs, |gx| op.backward_accumulate(inputs, y, gy, gx))
}

impl Trace {
    /// Every row, in recording order (row `k` is node `k`).
    pub fn rows(&self) -> &[TraceRow] {
        &self.rows
    }

    /// The row of `var`, or `None` if `var` belongs to another tape or was recorded after
    /// the traced output.
    pub fn row(&self, var: Var<'_>) -> Option<&TraceRow> {
        if var.tape().id() != self.tape {
            return None;
        }
        self.rows.get(var.id() as usize)
    }

    /// Names `var`'s row (shown in the table's `name` column).
    ///
    /// Errors: `var` belongs to another tape, or was recorded after the traced output.
    pub fn label(mut self, var: Var<'_>, name: impl Into<String>) -> Result<Trace> {
        if var.tape().id() != self.tape {
            return Err(Error::ForeignVariable {
                op: "trace label".into(),
            });
        }
        let output = self.output;
        let row = self
            .rows
            .get_mut(var.id() as usize)
            .ok_or_else(|| Error::Invalid {
                op: "trace label".into(),
                reason: format!(
                    "node {} was recorded after the traced output (node {output})",
                    var.id()
                ),
            })?;
        row.label = Some(name.into());
        Ok(self)
    }
}

/// A value in the table: a scalar in full (shortest round-trip) precision, a tensor with
/// its shape and a few rounded elements.
pub(crate) fn cell(t: &Tensor) -> String {
    if t.shape().is_scalar() {
        return format!("{}", t.data()[0]);
    }
    const SHOWN: usize = 4;
    let mut s = format!("{} [", t.shape());
    for (k, v) in t.data().iter().take(SHOWN).enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        s.push_str(&short(*v));
    }
    if t.numel() > SHOWN {
        s.push_str(", …");
    }
    s.push(']');
    s
}

/// Four significant decimals, or scientific notation for very small or large numbers.
pub(crate) fn short(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.3e}")
    }
}

impl fmt::Display for Trace {
    /// One line per node and input: `id`, `name` (when any row is labelled), `op`, the
    /// input on that line, the node's value, the local derivative ∂y/∂x for that input,
    /// the upstream gradient ∂L/∂y, and the gradient ∂L/∂x the node passes to that input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labelled = self.rows.iter().any(|r| r.label.is_some());
        let mut lines: Vec<[String; 8]> = vec![[
            "id".into(),
            "name".into(),
            "op".into(),
            "input".into(),
            "value".into(),
            "local ∂y/∂x".into(),
            "upstream ∂L/∂y".into(),
            "gradient ∂L/∂x".into(),
        ]];
        for row in &self.rows {
            let op = if row.inputs.is_empty() && !row.requires_grad {
                "constant".to_string()
            } else {
                row.op.clone()
            };
            let mut first = [
                row.id.to_string(),
                row.label.clone().unwrap_or_default(),
                op,
                String::new(),
                cell(&row.value),
                String::new(),
                if row.requires_grad {
                    cell(&row.upstream)
                } else {
                    "-".into()
                },
                String::new(),
            ];
            if row.inputs.is_empty() {
                lines.push(first);
                continue;
            }
            for (k, &input) in row.inputs.iter().enumerate() {
                let gradient = match row.gradient.get(k) {
                    Some(Some(g)) => cell(g),
                    _ => "-".into(),
                };
                if k == 0 {
                    first[3] = format!("#{input}");
                    first[5] = cell(&row.local[k]);
                    first[7] = gradient;
                    lines.push(first.clone());
                } else {
                    let mut line: [String; 8] = Default::default();
                    line[3] = format!("#{input}");
                    line[5] = cell(&row.local[k]);
                    line[7] = gradient;
                    lines.push(line);
                }
            }
        }
        let mut widths = [0usize; 8];
        for line in &lines {
            for (w, c) in widths.iter_mut().zip(line) {
                *w = (*w).max(c.chars().count());
            }
        }
        for (n, line) in lines.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            let mut text = String::new();
            for (c, (cell, &w)) in line.iter().zip(&widths).enumerate() {
                if c == 1 && !labelled {
                    continue;
                }
                if c == 0 {
                    text.push_str(&format!("{cell:>w$}"));
                } else {
                    text.push_str(&format!("  {cell:<w$}"));
                }
            }
            write!(f, "{}", text.trim_end())?;
        }
        write!(
            f,
            "\n(y: the node; x: the input on that line; L: the output, node #{})",
            self.output
        )
    }
}
