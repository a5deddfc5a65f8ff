//! The recorded graph of an output, drawn: Graphviz DOT export.
//!
//! [`Graph::new`] takes every node the output depends on — its ancestors on the tape,
//! found by walking the recorded inputs back from it — and [`Graph::to_dot`] writes them
//! as a Graphviz `digraph`: one record per node with its name, its op, its value and,
//! after [`Graph::gradients`], the gradient of the output with respect to it, and one
//! arrow from each input to the node that used it. Nodes are named with
//! [`Graph::label`], or all at once from a [`Trace`] by
//! [`Graph::trace`], which keeps the trace's names (`W1`, `h1`, …) and gradients. Like
//! micrograd's `draw_dot`, the picture reads left to right, from the leaves to the
//! output.
//!
//! Render the text with Graphviz's `dot` program: `dot -Tsvg graph.dot -o graph.svg`.
//!
//! ```
//! use tapegrad::dot::Graph;
//! use tapegrad::Tape;
//!
//! let tape = Tape::new();
//! let (x, w) = (tape.constant(0.5), tape.var(0.7));
//! let z = w * x;
//! let o = z.sigmoid();
//! let grads = o.backward()?;
//! let dot = Graph::new(o)
//!     .gradients(&grads)?
//!     .label(w, "W")?
//!     .label(z, "Z")?
//!     .to_dot();
//!
//! assert!(dot.starts_with("digraph tapegrad {"));
//! // One record per node: name, op, value and gradient (to four decimals).
//! assert!(dot.contains(r#"n1 [label="W|leaf|value 0.7|grad 0.1212""#));
//! assert!(dot.contains(r#"n3 [label="sigmoid|value 0.5866|grad 1""#));
//! // Arrows run from each input to the node that used it.
//! assert!(dot.contains("n0 -> n2;") && dot.contains("n1 -> n2;") && dot.contains("n2 -> n3;"));
//! # Ok::<(), tapegrad::Error>(())
//! ```

use crate::backward::Gradients;
use crate::error::{Error, Result};
use crate::tape::recorded;
use crate::tensor::Tensor;
use crate::trace::{cell, short, Trace};
use crate::var::Var;
use std::fmt::Write;

/// One node of a [`Graph`].
#[derive(Clone, Debug, PartialEq)]
pub struct GraphNode {
    /// The node's id: its position in recording order on the tape.
    pub id: u32,
    /// A name given with [`Graph::label`] (or taken from a trace).
    pub label: Option<String>,
    /// The op that made the node: `"leaf"` for an input, `"constant"` for a constant.
    pub op: String,
    /// The ids of the node's inputs, in order (an input used twice appears twice).
    pub inputs: Vec<u32>,
    /// True when gradients flow through the node.
    pub requires_grad: bool,
    /// The node's value from the forward pass.
    pub value: Tensor,
    /// The gradient of the output with respect to this node, once given by
    /// [`Graph::gradients`]; `None` before that and for nodes gradients do not flow
    /// through (constants).
    pub gradient: Option<Tensor>,
}

/// The recorded graph of one output: its ancestors in recording order, ready to be
/// written as Graphviz DOT by [`Graph::to_dot`] (or `Display`).
#[derive(Clone, Debug)]
pub struct Graph<'t> {
    output: Var<'t>,
    nodes: Vec<GraphNode>,
}

impl<'t> Graph<'t> {
    /// The graph of every node that `output` depends on, `output` included, with values
    /// and no gradients yet.
    pub fn new(output: Var<'t>) -> Graph<'t> {
        let recorded = recorded(output);
        let mut needed = vec![false; recorded.len()];
        needed[output.id() as usize] = true;
        // Recording order is a topological order: one pass from the output back reaches
        // every ancestor, without recursion.
        for node in recorded.iter().rev() {
            if needed[node.id as usize] {
                for &i in &node.inputs {
                    needed[i as usize] = true;
                }
            }
        }
        let nodes = recorded
            .into_iter()
            .filter(|node| needed[node.id as usize])
            .map(|node| GraphNode {
                id: node.id,
                label: None,
                op: if node.inputs.is_empty() && !node.requires_grad {
                    "constant".to_string()
                } else {
                    node.op.name().to_string()
                },
                inputs: node.inputs,
                requires_grad: node.requires_grad,
                value: node.value,
                gradient: None,
            })
            .collect();
        Graph { output, nodes }
    }

    /// Takes the names and gradients of a [`Trace`] of the same output (each row's
    /// upstream gradient ∂L/∂y): the trace's labels (`W1`, `h1`, …) name the records.
    ///
    /// Errors: `trace` is not a trace of this graph's output.
    pub fn trace(mut self, trace: &Trace) -> Result<Graph<'t>> {
        let rows = trace.rows();
        if trace.row(self.output).is_none() || rows.len() != self.output.id() as usize + 1 {
            return Err(Error::Invalid {
                op: "graph trace".into(),
                reason: format!(
                    "the trace is not one of the graph's output (node {})",
                    self.output.id()
                ),
            });
        }
        for node in &mut self.nodes {
            let row = &rows[node.id as usize];
            if row.label.is_some() {
                node.label = row.label.clone();
            }
            if node.requires_grad {
                node.gradient = Some(row.upstream.clone());
            }
        }
        Ok(self)
    }

    /// Adds to every node the gradient of the output with respect to it: `grads` must be
    /// what `output.backward()` (or `backward_with`) returned.
    ///
    /// Errors: `grads` from another tape, or from a recording the tape has since cleared.
    pub fn gradients(mut self, grads: &Gradients) -> Result<Graph<'t>> {
        let tape = self.output.tape();
        for node in &mut self.nodes {
            if node.requires_grad {
                node.gradient = Some(grads.wrt(Var::new(tape, node.id))?);
            }
        }
        Ok(self)
    }

    /// Names `var`'s node (the first line of its record).
    ///
    /// Errors: `var` belongs to another tape, or is not one of the nodes the output
    /// depends on.
    pub fn label(mut self, var: Var<'_>, name: impl Into<String>) -> Result<Graph<'t>> {
        if var.tape().id() != self.output.tape().id() {
            return Err(Error::ForeignVariable {
                op: "graph label".into(),
            });
        }
        let output = self.output.id();
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.id == var.id())
            .ok_or_else(|| Error::Invalid {
                op: "graph label".into(),
                reason: format!(
                    "node {} is not one the graph's output (node {output}) depends on",
                    var.id()
                ),
            })?;
        node.label = Some(name.into());
        Ok(self)
    }

    /// Every node, in recording order.
    pub fn nodes(&self) -> &[GraphNode] {
        &self.nodes
    }

    /// The graph as Graphviz DOT text: a left-to-right `digraph` with one record per node,
    /// its fields stacked (`name | op | value | grad`; the name only when given, the gradient only when
    /// known) and one arrow per input. Constants are grey, the output is
    /// drawn bold. Values and gradients show four decimals (tensors: their shape and
    /// first elements).
    pub fn to_dot(&self) -> String {
        let mut dot = String::from("digraph tapegrad {\n");
        dot.push_str("  rankdir=LR;\n");
        dot.push_str("  node [shape=record, fontname=\"Helvetica\", fontsize=12];\n");
        dot.push_str("  edge [color=\"#555555\"];\n");
        for node in &self.nodes {
            let mut fields = Vec::with_capacity(4);
            if let Some(label) = &node.label {
                fields.push(escape(label));
            }
            fields.push(escape(&node.op));
            fields.push(format!("value {}", escape(&number(&node.value))));
            if let Some(g) = &node.gradient {
                fields.push(format!("grad {}", escape(&number(g))));
            }
            let mut style = String::new();
            if !node.requires_grad {
                style.push_str(", style=filled, fillcolor=\"#eeeeee\"");
            } else if node.inputs.is_empty() {
                style.push_str(", style=filled, fillcolor=\"#ddeeff\"");
            }
            if node.id == self.output.id() {
                style.push_str(", penwidth=2");
            }
            let _ = writeln!(
                dot,
                "  n{} [label=\"{}\"{style}];",
                node.id,
                fields.join("|")
            );
        }
        for node in &self.nodes {
            for &i in &node.inputs {
                let _ = writeln!(dot, "  n{i} -> n{};", node.id);
            }
        }
        dot.push_str("}\n");
        dot
    }
}

impl std::fmt::Display for Graph<'_> {
    /// The DOT text of [`Graph::to_dot`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_dot())
    }
}

/// The DOT text of `output`'s graph with the gradients in `grads` (if given) and the
/// names in `labels`: [`Graph::new`], [`Graph::gradients`] and [`Graph::label`] in one
/// call.
///
/// ```
/// use tapegrad::Tape;
///
/// let tape = Tape::new();
/// let (a, b) = (tape.var(2.0), tape.var(3.0));
/// let c = a * b;
/// let grads = c.backward()?;
/// let dot = tapegrad::dot::to_dot(c, Some(&grads), &[(a, "a"), (b, "b"), (c, "c")])?;
/// assert!(dot.contains(r#"n0 [label="a|leaf|value 2|grad 3""#));
/// assert!(dot.contains(r#"n2 [label="c|mul|value 6|grad 1""#));
/// # Ok::<(), tapegrad::Error>(())
/// ```
///
/// Errors: as [`Graph::gradients`] and [`Graph::label`].
pub fn to_dot<'t>(
    output: Var<'t>,
    grads: Option<&Gradients>,
    labels: &[(Var<'t>, &str)],
) -> Result<String> {
    let mut graph = Graph::new(output);
    if let Some(grads) = grads {
        graph = graph.gradients(grads)?;
    }
    for &(var, name) in labels {
        graph = graph.label(var, name)?;
    }
    Ok(graph.to_dot())
}

/// A value in a record: a scalar to four decimals, a tensor as its shape and first
/// elements.
fn number(t: &Tensor) -> String {
    if t.shape().is_scalar() {
        short(t.data()[0])
    } else {
        cell(t)
    }
}

/// `text` escaped for one field of a Graphviz record label: the characters that shape a
/// record (`| { } < >`), quotes and backslashes get a backslash, a newline becomes `\n`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '{' | '}' | '<' | '>' | '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tape;

    #[test]
    fn escape_protects_the_record_syntax() {
        assert_eq!(escape(r#"a|b{c}<d>"e"\"#), r#"a\|b\{c\}\<d\>\"e\"\\"#);
        assert_eq!(escape("two\nlines"), "two\\nlines");
    }

    #[test]
    fn only_the_output_ancestors_are_drawn() -> Result<()> {
        let tape = Tape::new();
        let (a, b) = (tape.var(1.0), tape.var(2.0));
        let _unused = a.exp();
        let c = a + b;
        let graph = Graph::new(c);
        let ids: Vec<u32> = graph.nodes().iter().map(|n| n.id).collect();
        assert_eq!(ids, [0, 1, 3]);
        assert!(graph.label(_unused, "u").is_err());
        Ok(())
    }

    #[test]
    fn a_trace_of_another_output_or_a_foreign_label_is_an_error() -> Result<()> {
        let tape = Tape::new();
        let a = tape.var(1.0);
        let b = a.exp();
        let c = b * 2.0;
        let of_b = crate::trace::trace(b, &b.backward()?)?;
        assert!(Graph::new(c).trace(&of_b).is_err());
        let other = Tape::new();
        let foreign = other.var(1.0);
        assert!(matches!(
            Graph::new(c).label(foreign, "x"),
            Err(Error::ForeignVariable { .. })
        ));
        let grads = c.backward()?;
        let graph = Graph::new(c).gradients(&grads)?;
        assert_eq!(
            graph.nodes()[0].gradient.as_ref().unwrap().item()?,
            2.0 * 1f64.exp()
        );
        Ok(())
    }
}
