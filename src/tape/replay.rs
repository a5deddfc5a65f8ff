//! Replay: computing the recorded nodes' values again, and the plan that fixes, when
//! a general node is recorded, how it runs forward and backward.

use super::node::{InputLists, Kind, Node, NodeId, ShapeId, ShapeSet};
use super::{slot_of, unary_param, Inner};
use crate::ops::{Kernel, Op};
use crate::shape::cyclic_len;
use crate::tensor::TensorRef;
use smallvec::SmallVec;

/// Replay's walk over a dense tape, kept out of line so that the walk over other tapes
/// keeps its small frame.
#[inline(never)]
pub(super) fn replay_dense(graph: &Graph<'_>, start: usize, arenas: (&mut [f64], &mut [f64])) {
    replay_nodes::<true>(graph, start, arenas);
}

/// What computing a node's value reads besides the value arena: the recording.
pub(super) struct Graph<'a> {
    pub(super) nodes: &'a [Node],
    /// See [`Inner::offsets`].
    pub(super) offsets: &'a [u32],
    pub(super) shapes: &'a ShapeSet,
    pub(super) ops: &'a [Op],
    pub(super) plans: &'a [Plan],
    pub(super) wide: &'a InputLists,
}

/// Replay's walk over the nodes from `start` (the leaves before it have nothing to
/// do), writing the values and the unary nodes' stored derivatives. With `DENSE` (see
/// [`Inner::dense`]), an input's value sits at its node's id, so the walk loads no
/// slot; otherwise the slots are `offsets`.
#[inline(always)]
pub(super) fn replay_nodes<const DENSE: bool>(
    graph: &Graph<'_>,
    start: usize,
    // Slices, not the Vecs: their pointers and lengths stay in registers.
    (values, aux): (&mut [f64], &mut [f64]),
) {
    let (nodes, offsets) = (graph.nodes, graph.offsets);
    let at = |id: NodeId| {
        if DENSE {
            id as usize
        } else {
            offsets[id as usize] as usize
        }
    };
    for (id, node) in nodes.iter().enumerate().skip(start) {
        match node.kind {
            Kind::Leaf => {}
            Kind::General => forward_general(graph, values, id),
            // Unary and binary scalar nodes share one dispatch on the op. A binary
            // node's partials are left to backward, so the compiler drops them here.
            _ => {
                let [a, b] = node.args();
                let unary = node.kind.is_unary();
                let va = values[at(a)];
                let (param, vb) = if !unary {
                    (0.0, values[at(b)])
                } else {
                    (unary_param(node, aux), 0.0)
                };
                if let Some((y, da, _)) = Op::scalar_eval_code(node.code, param, va, vb) {
                    values[at(id as NodeId)] = y;
                    if unary {
                        aux[b as usize] = da;
                    }
                }
            }
        }
    }
}

/// Computes the value of general node `id` from its inputs' values.
#[inline]
pub(super) fn forward_general(graph: &Graph<'_>, values: &mut [f64], id: usize) {
    let node = &graph.nodes[id];
    let at = node.general_index();
    let op = &graph.ops[at];
    match graph.plans[at] {
        Plan::Slices {
            inputs: [(oa, la), (ob, lb)],
            y: (oy, n),
        } => {
            let (before, out) = values.split_at_mut(oy);
            if op.forward_slices(&before[oa..oa + la], &before[ob..ob + lb], &mut out[..n]) {
                return;
            }
        }
        Plan::Kernel {
            kernel, a, b, y, ..
        } => {
            let [la, lb, n] = kernel.lens();
            let (before, out) = values.split_at_mut(y);
            kernel.forward(&before[a..a + la], &before[b..b + lb], &mut out[..n]);
            return;
        }
        Plan::Views => {}
    }
    let n = graph.shapes.numel(node.shape());
    let (before, out) = values.split_at_mut(slot_of(graph.offsets, id));
    op.forward(&views(graph, before, graph.wide.get(at)), &mut out[..n]);
}

/// How a general node runs forward and backward, fixed when it is recorded: offsets
/// and sizes never change afterwards (replay included), so neither the shapes nor the
/// op need to be looked at again.
#[derive(Clone, Copy, Debug)]
pub(super) enum Plan {
    /// A built-in elementwise op on raw slices: the `(offset, len)` of its one or two
    /// inputs, each repeating cyclically over the output (equal shapes, scalars, rows
    /// broadcast down leading axes), and of its output. Also a squared-error loss, of
    /// two inputs of equal length.
    Slices {
        inputs: [(usize, usize); 2],
        y: (usize, usize),
    },
    /// The op's own kernel ([`Op::kernel`]) on two different nodes, whose values sit
    /// at offsets `a` and `b`, into the output at offset `y`, and whether each input
    /// needs its gradient.
    Kernel {
        kernel: Kernel,
        a: usize,
        b: usize,
        y: usize,
        need_a: bool,
        need_b: bool,
    },
    /// Views of the inputs and the op's own rules.
    Views,
}

/// The plan of a general node of `op` on `inputs` with output shape `out`, its value
/// at offset `at`.
pub(super) fn plan_of(inner: &Inner, op: &Op, inputs: &[NodeId], out: ShapeId, at: usize) -> Plan {
    let (nodes, shapes) = (&inner.nodes, &inner.shapes);
    let squared = op.is_squared_error();
    if (op.is_elementwise() || squared) && inputs.len() <= 2 {
        let mut operands = [(0, 0); 2];
        for (slot, &i) in operands.iter_mut().zip(inputs) {
            let input = &nodes[i as usize];
            let offset = inner.offset(i as usize);
            let shape = input.shape();
            // A squared-error loss's operands have one shape (checked when recorded);
            // an elementwise op's must repeat cyclically over the output.
            if !squared
                && shape != out
                && cyclic_len(&shapes[shape as usize], &shapes[out as usize]).is_none()
            {
                return Plan::Views;
            }
            *slot = (offset, shapes.numel(shape));
        }
        return Plan::Slices {
            inputs: operands,
            y: (at, shapes.numel(out)),
        };
    }
    // Two different nodes: a kernel's gradients of the two are added separately.
    if let &[a, b] = inputs {
        let (a_at, b_at) = (inner.offset(a as usize), inner.offset(b as usize));
        let (a, b) = (&nodes[a as usize], &nodes[b as usize]);
        if a_at != b_at {
            if let Some(kernel) =
                op.kernel(&shapes[a.shape() as usize], &shapes[b.shape() as usize])
            {
                return Plan::Kernel {
                    kernel,
                    a: a_at,
                    b: b_at,
                    y: at,
                    need_a: a.requires_grad(),
                    need_b: b.requires_grad(),
                };
            }
        }
    }
    Plan::Views
}

/// Views of the values of nodes `ids`, cut from `values` (the arena up to the node that
/// reads them).
pub(super) fn views<'a>(
    graph: &Graph<'a>,
    values: &'a [f64],
    ids: &[NodeId],
) -> SmallVec<[TensorRef<'a>; 4]> {
    let (nodes, shapes) = (graph.nodes, graph.shapes);
    let mut views = SmallVec::new();
    for &id in ids {
        let node = &nodes[id as usize];
        let shape = &shapes[node.shape() as usize];
        let (at, len) = (
            slot_of(graph.offsets, id as usize),
            shapes.numel(node.shape()),
        );
        views.push(TensorRef::from_parts(&values[at..at + len], shape));
    }
    views
}
