//! The reverse sweep and the [`Gradients`] it produces.
//!
//! Backward is one loop from the output's node down to the first node, over a gradient
//! arena laid out like the value arena: no recursion (a chain of millions of nodes is
//! fine) and no hash map. Each node's function adds its inputs' gradients; a node used
//! several times (`x * x`, `x + x`) simply receives several additions.
//!
//! Only the output's ancestors take part, as in PyTorch and JAX: a node the output does
//! not depend on is passed by, whatever its local derivative (NaN and ±∞ included), and
//! a user function off the output's path is never asked for its backward.
//!
//! ```
//! use tapegrad::Tape;
//! let tape = Tape::new();
//! let x = tape.var(0.0);
//! let _unused = x.ln(); // −∞, with derivative +∞ at 0
//! let z = x * 2.0;
//! assert_eq!(z.backward()?.wrt_scalar(x)?, 2.0);
//! # Ok::<(), tapegrad::Error>(())
//! ```

use super::node::{Kind, Node, NodeId};
use super::replay::Plan;
use super::var::{Var, Vars};
use super::{Inner, LeafBlock, Tape};
use crate::error::{Error, Phase, Result};
use crate::function::InputGrads;
use crate::ops::Op;
use crate::parallel::{copy as shared_copy, copy_finite, zero as shared_zero};
use crate::tensor::{Tensor, TensorRef};
use smallvec::SmallVec;

/// The gradients of one backward pass: ∂y/∂x for every variable x recorded before it.
///
/// Reuse one `Gradients` across steps with [`Var::backward_into`]: after the first
/// pass it allocates nothing.
///
/// ```
/// use tapegrad::{Gradients, Tape};
/// let mut tape = Tape::new();
/// let mut grads = Gradients::new();
/// for k in 1..=3 {
///     tape.clear();
///     let x = tape.var(k as f64);
///     (x * x * x).backward_into(&mut grads)?;
///     assert_eq!(grads.wrt_scalar(x)?, 3.0 * (k * k) as f64);
/// }
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Default)]
pub struct Gradients {
    tape: u64,
    generation: u64,
    /// Nodes recorded when the pass ran; later nodes have zero gradient.
    nodes: usize,
    data: Vec<f64>,
    /// Memory for the marks of a pass's ancestors (see [`PROVEN`]), kept for the next
    /// pass.
    ancestors: Vec<bool>,
    /// The recording (tape, generation) and root of the last pass, if that pass showed
    /// every node it swept to be an ancestor of the root: a pass from the same root of
    /// the same recording (a replay) then needs no test (see [`PROVEN`]).
    all_ancestors: Option<(u64, u64, NodeId)>,
}

impl Clone for Gradients {
    /// The gradients alone: the copy starts without the marks' memory.
    fn clone(&self) -> Gradients {
        Gradients {
            tape: self.tape,
            generation: self.generation,
            nodes: self.nodes,
            data: self.data.clone(),
            ancestors: Vec::new(),
            all_ancestors: None,
        }
    }
}

impl std::fmt::Debug for Gradients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gradients")
            .field("tape", &self.tape)
            .field("generation", &self.generation)
            .field("nodes", &self.nodes)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl Gradients {
    /// Empty gradients, to be filled by [`Var::backward_into`].
    pub fn new() -> Gradients {
        Gradients::default()
    }

    /// Checks that `x` belongs to the recording these gradients came from, and returns
    /// where its gradient sits (or `None` when it was recorded after the pass).
    #[inline]
    fn slot(&self, x: Var<'_>, op: &str) -> Result<Option<(usize, usize)>> {
        let tape = x.tape();
        if tape.id() != self.tape {
            return Err(Error::ForeignVariable { op: op.to_string() });
        }
        let inner = tape.inner.borrow();
        if inner.generation != self.generation {
            return Err(Error::StaleGradients);
        }
        let Some(node) = inner.nodes[..self.nodes.min(inner.nodes.len())].get(x.id() as usize)
        else {
            return Ok(None);
        };
        // Kernels add into every input's slot; a constant's slot is not its gradient.
        if !node.requires_grad() {
            return Ok(None);
        }
        Ok(Some((inner.offset(x.id() as usize), inner.numel(node))))
    }

    /// Copies the gradients of the consecutive nodes `first, first + 1, …` of `tape`
    /// into `outs`, in order, with one check of the tape: a parameter store's gradients.
    /// Each output must have its node's number of elements; a constant, or a node
    /// recorded after the pass, gets zeros. True if every number copied is finite. The
    /// errors are [`wrt_into`](Self::wrt_into)'s.
    pub(crate) fn consecutive_into<'o>(
        &self,
        tape: &Tape,
        first: usize,
        outs: impl Iterator<Item = &'o mut [f64]>,
    ) -> Result<bool> {
        if tape.id() != self.tape {
            return Err(Error::ForeignVariable {
                op: "gradients".into(),
            });
        }
        let inner = tape.inner.borrow();
        if inner.generation != self.generation {
            return Err(Error::StaleGradients);
        }
        let mut finite = true;
        for (id, out) in (first..).zip(outs) {
            let node = &inner.nodes[id];
            let n = inner.numel(node);
            if out.len() != n {
                return Err(Error::DataLength {
                    shape: inner.shape(node.shape()).clone(),
                    expected: n,
                    got: out.len(),
                });
            }
            if id < self.nodes && node.requires_grad() {
                let at = inner.offset(id);
                finite &= copy_finite(out, &self.data[at..at + n]);
            } else {
                shared_zero(out);
            }
        }
        Ok(finite)
    }

    /// The gradients of the leaves of `block`, one after another: one slice of the
    /// arena. An error when `block` and this pass belong to different recordings, or
    /// its leaves were recorded after the pass.
    pub(crate) fn leaf_block(&self, block: &LeafBlock) -> Result<&[f64]> {
        block.check(self.tape, self.generation, "gradients")?;
        self.data
            .get(block.at..block.at + block.len)
            .ok_or_else(|| Error::Invalid {
                op: "gradients".into(),
                reason: "the block was recorded after the backward pass".into(),
            })
    }

    /// Bytes of heap memory held: the gradient arena and the marks of a pass that met
    /// nodes off the output's path.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<f64>() + self.ancestors.capacity()
    }

    /// The gradient with respect to `x`, shaped like `x`.
    ///
    /// Zero for a constant, for a variable the output does not depend on, and for one
    /// recorded after the backward pass. An error for a variable of another tape or of
    /// an earlier recording.
    pub fn wrt(&self, x: Var<'_>) -> Result<Tensor> {
        let shape = x.shape();
        match self.slot(x, "gradients")? {
            Some((offset, n)) => Tensor::new(self.data[offset..offset + n].to_vec(), shape),
            None => Ok(Tensor::zeros(shape)),
        }
    }

    /// The gradient with respect to a scalar `x`; an error if `x` is not a scalar.
    #[inline]
    pub fn wrt_scalar(&self, x: Var<'_>) -> Result<f64> {
        match self.slot(x, "gradients")? {
            Some((offset, 1)) => Ok(self.data[offset]),
            None if x.shape().numel() == 1 => Ok(0.0),
            _ => Err(Error::NotScalar {
                op: "wrt_scalar".into(),
                shape: x.shape(),
            }),
        }
    }

    /// The gradients with respect to many scalar variables at once, one per slot of
    /// `out`: [`wrt_scalar`](Gradients::wrt_scalar) for each, with the recording
    /// checked once. An error, with `out` unchanged, if the lengths differ, a variable
    /// is not a scalar, or one belongs to another tape or recording.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let xs: Vec<_> = (1..=3).map(|k| tape.var(k as f64)).collect();
    /// let y = xs[0] * xs[1] * xs[2];
    /// let mut g = [0.0; 3];
    /// y.backward()?.wrt_scalars(&xs, &mut g)?;
    /// assert_eq!(g, [6.0, 3.0, 2.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn wrt_scalars(&self, xs: &[Var<'_>], out: &mut [f64]) -> Result<()> {
        let op = "wrt_scalars";
        if xs.len() != out.len() {
            return Err(Error::Invalid {
                op: op.into(),
                reason: format!("{} variables but {} slots", xs.len(), out.len()),
            });
        }
        let Some(first) = xs.first() else {
            return Ok(());
        };
        let tape = first.tape();
        if tape.id() != self.tape {
            return Err(Error::ForeignVariable { op: op.into() });
        }
        let inner = tape.inner.borrow();
        // One pass checks every variable; the error path looks again to report a
        // foreign variable before a stale pass or a non-scalar.
        let bad = xs
            .iter()
            .find(|x| !std::ptr::eq(x.tape(), tape) || !inner.nodes[x.id() as usize].is_scalar());
        if bad.is_some() && xs.iter().any(|x| !std::ptr::eq(x.tape(), tape)) {
            return Err(Error::ForeignVariable { op: op.into() });
        }
        if inner.generation != self.generation {
            return Err(Error::StaleGradients);
        }
        let nodes = &inner.nodes[..self.nodes.min(inner.nodes.len())];
        if let Some(x) = bad {
            return Err(Error::NotScalar {
                op: op.into(),
                shape: inner.shape(inner.nodes[x.id() as usize].shape()).clone(),
            });
        }
        for (slot, x) in out.iter_mut().zip(xs) {
            // Zero for a constant and for a variable recorded after the pass.
            *slot = match nodes.get(x.id() as usize) {
                Some(node) if node.requires_grad() => self.data[inner.offset(x.id() as usize)],
                _ => 0.0,
            };
        }
        Ok(())
    }

    /// The gradients with respect to the variables of a [`Vars`] block, one per slot of
    /// `out`, in one copy: what [`wrt_scalars`](Gradients::wrt_scalars) gives for the
    /// same variables (zeros if they are constants or were recorded after this pass).
    /// An error, with `out` unchanged, if the lengths differ or the variables belong to
    /// another tape or recording.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.vars(&[1.0, 2.0, 3.0]);
    /// let y = x.iter().fold(tape.constant(1.0), |y, v| y * v);
    /// let mut g = [0.0; 3];
    /// y.backward()?.wrt_vars(x, &mut g)?;
    /// assert_eq!(g, [6.0, 3.0, 2.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn wrt_vars(&self, xs: Vars<'_>, out: &mut [f64]) -> Result<()> {
        let op = "wrt_vars";
        if xs.len != out.len() {
            return Err(Error::Invalid {
                op: op.into(),
                reason: format!("{} variables but {} slots", xs.len, out.len()),
            });
        }
        if xs.tape.id() != self.tape {
            return Err(Error::ForeignVariable { op: op.into() });
        }
        if xs.tape.inner.borrow().generation != self.generation {
            return Err(Error::StaleGradients);
        }
        if xs.requires_grad() && (xs.first as usize) < self.nodes {
            shared_copy(out, &self.data[xs.slot..xs.slot + xs.len]);
        } else {
            shared_zero(out);
        }
        Ok(())
    }

    /// Copies the gradient with respect to `x` into `out` without allocating; `out`
    /// must have as many elements as `x`.
    pub fn wrt_into(&self, x: Var<'_>, out: &mut [f64]) -> Result<()> {
        let slot = self.slot(x, "gradients")?;
        let n = slot.map_or_else(|| x.shape().numel(), |(_, n)| n);
        if out.len() != n {
            return Err(Error::DataLength {
                shape: x.shape(),
                expected: n,
                got: out.len(),
            });
        }
        match slot {
            Some((offset, n)) => shared_copy(out, &self.data[offset..offset + n]),
            None => shared_zero(out),
        }
        Ok(())
    }
}

impl<'t> Var<'t> {
    /// Backpropagates from this scalar (or one-element) output: the gradient of `self`
    /// with respect to every variable recorded before it (zero for those it does not
    /// depend on). Only the nodes the output depends on run their backward rules.
    ///
    /// An error if the output has more than one element: use
    /// [`backward_with`](Var::backward_with) and give the upstream gradient.
    pub fn backward(self) -> Result<Gradients> {
        let mut grads = Gradients::new();
        sweep(self.tape(), self.id(), None, &mut grads)?;
        Ok(grads)
    }

    /// Backpropagates from an output of any shape, starting from the upstream gradient
    /// `seed` (∂L/∂self, shaped like `self`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.tensor(&Tensor::vector([1.0, 2.0]));
    /// let y = x * x;
    /// let g = y.backward_with(&Tensor::vector([1.0, 10.0]))?;
    /// assert_eq!(g.wrt(x)?, Tensor::vector([2.0, 40.0]));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn backward_with(self, seed: &Tensor) -> Result<Gradients> {
        let mut grads = Gradients::new();
        sweep(self.tape(), self.id(), Some(seed.view()), &mut grads)?;
        Ok(grads)
    }

    /// [`backward`](Var::backward) into an existing [`Gradients`], reusing its memory:
    /// after the first pass over a recording of a given size, no allocation.
    pub fn backward_into(self, grads: &mut Gradients) -> Result<()> {
        sweep(self.tape(), self.id(), None, grads)
    }

    /// [`backward_with`](Var::backward_with) into an existing [`Gradients`], reusing
    /// its memory.
    pub fn backward_with_into(self, seed: &Tensor, grads: &mut Gradients) -> Result<()> {
        sweep(self.tape(), self.id(), Some(seed.view()), grads)
    }
}

/// The reverse sweep from `root` into `grads`.
fn sweep(
    tape: &Tape,
    root: NodeId,
    seed: Option<TensorRef<'_>>,
    grads: &mut Gradients,
) -> Result<()> {
    let inner = tape.inner.borrow();
    let root_node = &inner.nodes[root as usize];
    let root_shape = inner.shape(root_node.shape());
    let n = inner.numel(root_node);
    match seed {
        None if n != 1 => {
            return Err(Error::NonScalarBackward {
                shape: root_shape.clone(),
            })
        }
        Some(s) if s.shape() != root_shape => {
            return Err(Error::SeedShape {
                output: root_shape.clone(),
                seed: s.shape().clone(),
            })
        }
        _ => {}
    }

    // No tape has id 0: until the sweep succeeds, the gradients answer no variable
    // (a user function's backward may fail or panic half way).
    grads.tape = 0;
    grads.generation = inner.generation;
    grads.nodes = inner.nodes.len();
    // The arena must be zero over the slots the pass uses: zeroed now, on both threads
    // when it is large (see `shared_zero`), then fitted to those slots.
    let kept = grads.data.len().min(inner.used);
    shared_zero(&mut grads.data[..kept]);
    grads.data.resize(inner.used, 0.0);
    let at = inner.offset(root as usize);
    match seed {
        None => grads.data[at] = 1.0,
        Some(s) => grads.data[at..at + n].copy_from_slice(s.data()),
    }

    // A slice, not the Vec: its pointer and length stay in registers across the loop.
    let g: &mut [f64] = &mut grads.data;
    let inner = &*inner;
    let marks = &mut grads.ancestors;
    // Which nodes are ancestors depends on the recording alone, not on its values.
    let recording = (tape.id(), inner.generation, root);
    let proven = grads.all_ancestors.take() == Some(recording);
    // True if every node the walk ran was shown an ancestor without marks.
    let anomaly = tape.anomaly();
    let mut walk = move || -> Result<bool> {
        let top = root as usize;
        let dense = inner.dense();
        if anomaly {
            // Anomaly mode: the values first, then each gradient as the sweep writes it.
            inner.first_non_finite_value(Some(root))?;
            mark_ancestors(inner, root, marks);
            if dense {
                sweep_nodes::<true, MARKED, true>(inner, top, g, marks)?;
            } else {
                sweep_nodes::<false, MARKED, true>(inner, top, g, marks)?;
            }
            return Ok(false);
        }
        if proven {
            return if dense {
                sweep_nodes::<true, PROVEN, false>(inner, top, g, &[])
            } else {
                sweep_nodes::<false, PROVEN, false>(inner, top, g, &[])
            }
            .map(|_| true);
        }
        let stopped = if dense {
            sweep_nodes::<true, TESTED, false>(inner, top, g, &[])?
        } else {
            sweep_nodes::<false, TESTED, false>(inner, top, g, &[])?
        };
        let Some(at) = stopped else { return Ok(true) };
        // The gradients written so far are final for the nodes run: go on from the
        // node the walk stopped at, by the marks.
        mark_ancestors(inner, root, marks);
        if dense {
            sweep_nodes::<true, MARKED, false>(inner, at, g, marks)?;
        } else {
            sweep_nodes::<false, MARKED, false>(inner, at, g, marks)?;
        }
        Ok(false)
    };
    grads.all_ancestors = walk()?.then_some(recording);
    grads.tape = tape.id();
    Ok(())
}

/// Which nodes the root depends on: the only nodes a sweep runs.
///
/// A node off the root's path gets no gradient, and running it anyway would add 0 · its
/// local derivative into its inputs' gradients: NaN when that derivative is ±∞ or NaN
/// (`ln` at 0, say), and a call of a user function's backward for an output that does
/// not depend on it. So the sweep runs a node only when it is an ancestor of the root.
///
/// Most nodes show it without a look at the graph: a node whose gradient holds a
/// number other than +0 was written by a node the sweep ran (or is the root), so it
/// is an ancestor. The walk tests that as it goes (`TESTED`), one test per node read
/// from the arena, and stops at the first gradient of +0 (a node off the path, or an
/// ancestor the chain rule gave zero); then every ancestor of the root is marked in one
/// walk over the nodes, and the sweep goes on from there by the marks (`MARKED`). A
/// pass that never stopped has shown every node it ran to be an ancestor: the next
/// pass over the same recording from the same root (after a replay) tests nothing
/// (`PROVEN`).
const PROVEN: u8 = 0;
/// See [`PROVEN`].
const TESTED: u8 = 1;
/// See [`PROVEN`].
const MARKED: u8 = 2;

/// Marks in `marks` every node from which `root` can be reached through nodes that
/// pass gradients on (frozen nodes and nodes without gradient do not).
#[cold]
#[inline(never)]
fn mark_ancestors(inner: &Inner, root: NodeId, marks: &mut Vec<bool>) {
    let root = root as usize;
    marks.clear();
    marks.resize(root + 1, false);
    marks[root] = true;
    for id in (inner.leaf_prefix.min(root + 1)..=root).rev() {
        let node = &inner.nodes[id];
        if marks[id] && passes_gradients(node) {
            for &i in inner.inputs(node) {
                marks[i as usize] = true;
            }
        }
    }
}

/// True if the sweep, running `node`, adds into its inputs' gradients.
fn passes_gradients(node: &Node) -> bool {
    match node.kind {
        Kind::Leaf | Kind::FrozenUnary | Kind::FrozenBinary => false,
        Kind::General => node.requires_grad(),
        Kind::Sum | Kind::Difference | Kind::Unary | Kind::Product | Kind::Binary => true,
    }
}

/// The sweep's walk, from node `top` back to the first node, over the root's ancestors
/// (see [`PROVEN`]): under `PROVEN` every node is known to be one; under `TESTED`
/// the walk stops at the first node whose gradient, read from the arena, is +0, and
/// returns it; under `MARKED` it runs the nodes `marks` holds. With `DENSE` (see
/// [`Inner::dense`]), an input's gradient sits at its node's id, so the walk loads no
/// input node. With `CHECK` (anomaly mode, see [`Tape::detect_anomaly`]), every
/// gradient written is checked, and the first NaN or ±∞ returns [`Error::NonFinite`].
#[allow(unsafe_code)]
#[inline(always)]
fn sweep_nodes<const DENSE: bool, const MODE: u8, const CHECK: bool>(
    inner: &Inner,
    top: usize,
    g: &mut [f64],
    marks: &[bool],
) -> Result<Option<usize>> {
    let (nodes, values, aux) = (&inner.nodes[..], &inner.values[..], &inner.aux[..]);
    let offsets = &inner.offsets[..];
    // The scalar arms index the arenas without bounds checks, at the slots of the node
    // run and of its inputs, and where a unary node's numbers start in `aux`. Every
    // slot of a node of the recording lies below `used`, and every stored number
    // below `aux_used` (the invariants of `Inner`, which only the tape's appends
    // change); the slices reach that far, as checked here once.
    assert!(g.len() >= inner.used && values.len() >= inner.used);
    assert!(aux.len() >= inner.aux_used() && top < nodes.len());
    // SAFETY (each use): `$i` is one of the slots above, so below the slice's length.
    macro_rules! read {
        ($s:expr, $i:expr) => {
            unsafe { read($s, $i) }
        };
    }
    let at = |id: usize| if DENSE { id } else { offsets[id] as usize };
    // The last sum written into a scalar input's gradient stays in a register
    // (`carry`, the gradient of node `carry_for`): if the sweep reaches that input
    // before any other node writes to it, the sum is final and needs no load, which
    // takes the store-to-load round trip out of a chain's critical path. Any node that
    // could write a gradient replaces or clears the carry.
    let (mut carry_for, mut carry) = (usize::MAX, 0.0);
    // The leading leaves have nothing to do (and the root may be one of them).
    let start = inner.leaf_prefix.min(top + 1);
    // The id counts down beside the nodes: worked out from the iterator, it would
    // take a division by the node's 12 bytes.
    let mut id = top + 1;
    // Nodes that take no gradient need no test: the scalar ones recorded past the
    // fast path are frozen (see `Kind::FrozenUnary`) and fall to the default arm,
    // which also tests general nodes; any other such node was recorded from inputs
    // that take none either, so it only adds into slots that are no gradient (see
    // `Gradients::slot`).
    // The gradient flowing into scalar node `id`: the carried sum when it is this
    // node's (written by the node just run, an ancestor, so this node is one too), else
    // the arena's slot. Under `TESTED`, a slot of +0 stops the walk (see `PROVEN`).
    macro_rules! incoming {
        () => {
            if carry_for == id {
                carry
            } else {
                let gy = read!(g, at(id));
                if MODE == TESTED && gy.to_bits() == 0 {
                    return Ok(Some(id));
                }
                gy
            }
        };
    }
    for node in nodes[start..=top].iter().rev() {
        id -= 1;
        if MODE == MARKED && !marks[id] {
            continue;
        }
        match node.kind {
            // Two multiply-adds at most: a unary node's derivative is stored, and a sum's,
            // a difference's or a product's partials are ±1 or come from the values.
            Kind::Unary => {
                let gy = incoming!();
                let [a, stored] = node.args().map(|i| i as usize);
                let da = read!(aux, stored);
                let a_at = at(a);
                let ga = read!(g, a_at) + gy * da;
                // SAFETY: `a_at` is the slot of an input, as for `read!`.
                unsafe { write(g, a_at, ga) };
                (carry_for, carry) = (a, ga);
                if CHECK {
                    check_scalar_inputs(inner, id, g)?;
                }
            }
            Kind::Sum | Kind::Difference => {
                let gy = incoming!();
                // The kind stands for the rule's constant partials (see `Kind::binary`):
                // 1 for `a`, and for `b` 1 or −1 by the kind's number (0 or 1) in the
                // sign bit, with no branch.
                let gb = f64::from_bits(gy.to_bits() ^ (node.kind as u64) << 63);
                // SAFETY: the inputs' slots, as for `read!`.
                (carry_for, carry) = unsafe { accumulate(g, node.args(), at, [gy, gb]) };
                if CHECK {
                    check_scalar_inputs(inner, id, g)?;
                }
            }
            Kind::Product => {
                let gy = incoming!();
                let [a, b] = node.args().map(|i| at(i as usize));
                let (va, vb) = (read!(values, a), read!(values, b));
                // SAFETY: the inputs' slots, as for `read!`.
                (carry_for, carry) = unsafe { accumulate(g, node.args(), at, [gy * vb, gy * va]) };
                if CHECK {
                    check_scalar_inputs(inner, id, g)?;
                }
            }
            // Other binary ops compute their partials by their op code.
            Kind::Binary => {
                let gy = incoming!();
                let [a, b] = node.args().map(|i| at(i as usize));
                let (va, vb) = (read!(values, a), read!(values, b));
                let (da, db) = Op::binary_partials_code(node.code, va, vb, read!(values, at(id)));
                // SAFETY: the inputs' slots, as for `read!`.
                (carry_for, carry) = unsafe { accumulate(g, node.args(), at, [gy * da, gy * db]) };
                if CHECK {
                    check_scalar_inputs(inner, id, g)?;
                }
            }
            // A general node runs its op's rule.
            Kind::General => {
                // The first number of the gradient tells most nodes on the path; a
                // node of no elements has none (its slot is the next node's).
                if MODE == TESTED
                    && (g.get(at(id)).is_none_or(|gy| gy.to_bits() == 0) || inner.numel(node) == 0)
                {
                    return Ok(Some(id));
                }
                general_backward(inner, node, id, values, g)?;
                (carry_for, carry) = (usize::MAX, 0.0);
                if CHECK {
                    check_inputs(inner, id, g)?;
                }
            }
            // Leaves and frozen nodes have nothing to do.
            Kind::Leaf | Kind::FrozenUnary | Kind::FrozenBinary => {}
        }
    }
    Ok(None)
}

/// Anomaly mode's check after scalar node `id` ran (see [`sweep_nodes`]).
#[cold]
#[inline(never)]
fn check_scalar_inputs(inner: &Inner, id: usize, g: &[f64]) -> Result<()> {
    check_inputs(inner, id, g)
}

/// Anomaly mode's check after node `id` ran: the gradients of its inputs, which held
/// finite numbers before (every earlier write was checked), must hold finite ones.
#[cold]
#[inline(never)]
fn check_inputs(inner: &Inner, id: usize, g: &[f64]) -> Result<()> {
    let node = &inner.nodes[id];
    for (k, &i) in inner.inputs(node).iter().enumerate() {
        let input = &inner.nodes[i as usize];
        if !input.requires_grad() {
            continue;
        }
        let at = inner.offset(i as usize);
        let n = inner.numel(input);
        let grads = &g[at..at + n];
        if let Some(e) = grads.iter().position(|v| !v.is_finite()) {
            return Err(inner.non_finite(id, Phase::Backward, grads[e], Some(k), e, n));
        }
    }
    Ok(())
}

/// Backward through general node `id`, if gradients flow into it. Out of line as a
/// whole: with the test of the flag and the two calls inline, the compiler kept the
/// sweep's carried gradient in memory.
#[inline(never)]
fn general_backward(
    inner: &Inner,
    node: &Node,
    id: usize,
    values: &[f64],
    g: &mut [f64],
) -> Result<()> {
    if node.requires_grad() && !planned_backward(inner, node, values, g) {
        views_backward(inner, id, values, g)?;
    }
    Ok(())
}

/// Adds `terms` into the gradients of a binary scalar node's inputs `args` (at slots
/// `at(a)` and `at(b)`), and returns the carry (see `sweep_nodes`): the later input
/// with its new sum (with `a == b`, the second sum includes the first).
///
/// # Safety
///
/// `at(a)` and `at(b)` are below `g.len()`.
#[allow(unsafe_code)]
#[inline(always)]
unsafe fn accumulate(
    g: &mut [f64],
    args: [u32; 2],
    at: impl Fn(usize) -> usize,
    [ta, tb]: [f64; 2],
) -> (usize, f64) {
    let [a, b] = args.map(|i| i as usize);
    let (a_at, b_at) = (at(a), at(b));
    // SAFETY: both slots are below `g.len()`, the caller's promise.
    let ga = unsafe { read(g, a_at) } + ta;
    unsafe { write(g, a_at, ga) };
    let gb = unsafe { read(g, b_at) } + tb;
    unsafe { write(g, b_at, gb) };
    if b >= a {
        (b, gb)
    } else {
        (a, ga)
    }
}

/// `s[i]`, unchecked, for an index of the sweep's scalar arms.
///
/// # Safety
///
/// `i < s.len()`.
#[allow(unsafe_code)]
#[inline(always)]
unsafe fn read(s: &[f64], i: usize) -> f64 {
    debug_assert!(i < s.len());
    // SAFETY: `i < s.len()`, the caller's promise.
    unsafe { *s.get_unchecked(i) }
}

/// `s[i] = v`, unchecked, for an index of the sweep's scalar arms.
///
/// # Safety
///
/// `i < s.len()`.
#[allow(unsafe_code)]
#[inline(always)]
unsafe fn write(s: &mut [f64], i: usize, v: f64) {
    debug_assert!(i < s.len());
    // SAFETY: `i < s.len()`, the caller's promise.
    unsafe { *s.get_unchecked_mut(i) = v }
}

/// Backward through a general node by its plan (slice kernels or a plain product);
/// `false`, doing nothing, when the node has no such plan. Kept out of line so that the
/// scalar loop around it keeps its values in registers.
#[inline(never)]
fn planned_backward(inner: &Inner, node: &Node, values: &[f64], grads: &mut [f64]) -> bool {
    match inner.plan(node) {
        // Elementwise ops on tensors skip building views: raw slices suffice.
        Plan::Slices {
            inputs: [(oa, la), (ob, lb)],
            y: (oy, n),
        } => {
            let (before, from_node) = grads.split_at_mut(oy);
            inner.general_op(node).backward_slices(
                &values[oa..oa + la],
                &values[ob..ob + lb],
                &values[oy..oy + n],
                &from_node[..n],
                before,
                oa,
                ob,
            )
        }
        // The op's own kernel; the inputs are different nodes, so their gradients lie
        // apart.
        Plan::Kernel {
            kernel,
            a,
            b,
            y,
            need_a,
            need_b,
        } => {
            let [la, lb, n] = kernel.lens();
            let (before, from_node) = grads.split_at_mut(y);
            let (inputs, gy) = ((&values[a..a + la], &values[b..b + lb]), &from_node[..n]);
            if need_a {
                kernel.backward(0, inputs, gy, &mut before[a..a + la]);
            }
            if need_b {
                kernel.backward(1, inputs, gy, &mut before[b..b + lb]);
            }
            true
        }
        Plan::Views => false,
    }
}

/// Backward through a general node by its op's own rule, on views of its inputs.
#[inline(never)]
fn views_backward(inner: &Inner, id: usize, values: &[f64], grads: &mut [f64]) -> Result<()> {
    let (node, at) = (&inner.nodes[id], inner.offset(id));
    let nodes = &inner.nodes[..];
    let inputs = inner.inputs(node);
    let (before, from_node) = grads.split_at_mut(at);
    let n = inner.numel(node);
    let shape = inner.shape(node.shape());
    let gy = TensorRef::from_parts(&from_node[..n], shape);
    let y = TensorRef::from_parts(&values[at..at + n], shape);
    let (views, slots) = input_views(inner, inputs);
    let needed = inputs
        .iter()
        .enumerate()
        .filter(|&(_, &i)| nodes[i as usize].requires_grad())
        .fold(0u64, |mask, (k, _)| {
            mask | 1u64.checked_shl(k as u32).unwrap_or(0)
        });
    let mut gx = InputGrads::new(before, slots).with_needed(needed);
    inner
        .general_op(node)
        .backward_accumulate(&views, y, gy, &mut gx)
}

/// Views of a node's input values.
type InputViews<'a> = SmallVec<[TensorRef<'a>; 4]>;
/// The `(offset, len)` of a node's inputs' gradient slots.
type GradSlots = SmallVec<[(usize, usize); 4]>;

/// Views of a node's input values and the `(offset, len)` of their gradient slots.
#[inline]
fn input_views<'a>(inner: &'a Inner, inputs: &[NodeId]) -> (InputViews<'a>, GradSlots) {
    let mut views = SmallVec::new();
    let mut slots = SmallVec::new();
    for &i in inputs {
        let node = &inner.nodes[i as usize];
        let (at, len) = (inner.offset(i as usize), inner.numel(node));
        views.push(TensorRef::from_parts(
            &inner.values[at..at + len],
            inner.shape(node.shape()),
        ));
        slots.push((at, len));
    }
    (views, slots)
}

impl<'t> Var<'t> {
    /// The gradient of this scalar output with respect to each of `wrt`, as variables
    /// on the same tape: the backward pass is itself recorded, so its results can be
    /// combined and differentiated again, any number of times.
    ///
    /// Every built-in op has a backward rule written with tape ops. A user function
    /// needs one too, **even for a first derivative**:
    /// [`Function::backward_graph`](crate::Function::backward_graph), or
    /// [`ScalarFunction::derivative_graph`](crate::ScalarFunction::derivative_graph);
    /// without it this returns [`Error::NotTwiceDifferentiable`] when the function lies
    /// between `wrt` and the output, and its message names the rule to add. For first
    /// derivatives as numbers, [`backward`](Var::backward) needs only the numeric rule.
    /// Only nodes that depend on `wrt` are differentiated.
    ///
    /// ```
    /// use tapegrad::{Error, ScalarFunction, Tape};
    ///
    /// #[derive(Clone)]
    /// struct Cube; // no derivative_graph
    /// impl ScalarFunction for Cube {
    ///     fn name(&self) -> &str { "cube" }
    ///     fn value(&self, x: f64) -> f64 { x * x * x }
    ///     fn derivative(&self, x: f64) -> f64 { 3.0 * x * x }
    /// }
    ///
    /// let tape = Tape::new();
    /// let x = tape.var(2.0);
    /// let y = x.apply(&Cube)?;
    /// assert_eq!(y.backward()?.wrt_scalar(x)?, 12.0); // the numeric rule suffices
    /// let err = y.grad_graph(&[x]).unwrap_err();
    /// assert!(matches!(err, Error::NotTwiceDifferentiable { .. }));
    /// assert!(err.to_string().contains("ScalarFunction::derivative_graph"));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    ///
    /// Inside a [`no_grad`](crate::Tape::no_grad) scope the recorded gradients are
    /// constants, like every node recorded there: their values are right, but
    /// differentiating them again gives zero. Call `grad_graph` outside such a scope
    /// to go on to higher derivatives.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.var(0.5);
    /// let y = x.sin();
    /// let dy = y.grad_graph(&[x])?[0]; // cos x, as a variable
    /// let d2y = dy.grad_graph(&[x])?[0]; // −sin x
    /// let d3y = d2y.grad_graph(&[x])?[0]; // −cos x
    /// assert_eq!(dy.item()?, 0.5f64.cos());
    /// assert_eq!(d2y.item()?, -0.5f64.sin());
    /// assert_eq!(d3y.item()?, -0.5f64.cos());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn grad_graph(self, wrt: &[Var<'t>]) -> Result<Vec<Var<'t>>> {
        let n = self.shape().numel();
        if n != 1 {
            return Err(Error::NonScalarBackward {
                shape: self.shape(),
            });
        }
        let seed = self.tape().constant_tensor(&Tensor::ones(self.shape()));
        self.grad_graph_with(seed, wrt)
    }

    /// [`grad_graph`](Var::grad_graph) from an output of any shape, starting from the
    /// upstream gradient `seed` (a variable shaped like `self`, which may itself depend
    /// on other variables).
    pub fn grad_graph_with(self, seed: Var<'t>, wrt: &[Var<'t>]) -> Result<Vec<Var<'t>>> {
        let tape = self.tape();
        for v in wrt.iter().chain([&seed]) {
            if v.tape().id() != tape.id() {
                return Err(Error::ForeignVariable {
                    op: "grad_graph".into(),
                });
            }
        }
        if seed.shape() != self.shape() {
            return Err(Error::SeedShape {
                output: self.shape(),
                seed: seed.shape(),
            });
        }
        let root = self.id() as usize;
        let anomaly = tape.anomaly();
        if anomaly {
            tape.inner
                .borrow()
                .first_non_finite_value(Some(self.id()))?;
        }

        // needed[i]: node i lies on a path from one of `wrt` (so its gradient matters).
        let mut needed = vec![false; root + 1];
        {
            let inner = tape.inner.borrow();
            for x in wrt {
                if (x.id() as usize) <= root {
                    needed[x.id() as usize] = true;
                }
            }
            for id in 0..=root {
                if !needed[id] {
                    let node = &inner.nodes[id];
                    needed[id] = !frozen(&inner, node)
                        && inner.inputs(node).iter().any(|&i| needed[i as usize]);
                }
            }
        }

        let mut grads: Vec<Option<Var<'t>>> = vec![None; root + 1];
        grads[root] = Some(seed);
        for id in (0..=root).rev() {
            let Some(gy) = grads[id] else { continue };
            if !needed[id] {
                continue;
            }
            let (op, input_ids) = {
                let inner = tape.inner.borrow();
                let node = &inner.nodes[id];
                if node.is_leaf() || frozen(&inner, node) {
                    continue;
                }
                let ids: SmallVec<[NodeId; 4]> = SmallVec::from_slice(inner.inputs(node));
                (inner.op(node), ids)
            };
            let inputs: SmallVec<[Var<'t>; 4]> =
                input_ids.iter().map(|&i| Var::new(tape, i)).collect();
            let gx = op.backward_graph(&inputs, Var::new(tape, id as NodeId), gy)?;
            if gx.len() != inputs.len() {
                return Err(Error::GradientCount {
                    function: op.name().to_string(),
                    expected: inputs.len(),
                    got: gx.len(),
                });
            }
            for (k, (x, g)) in inputs.iter().zip(gx).enumerate() {
                let i = x.id() as usize;
                if !needed[i] {
                    continue;
                }
                if g.shape() != x.shape() {
                    return Err(Error::GradientShape {
                        function: op.name().to_string(),
                        input: k,
                        expected: x.shape(),
                        got: g.shape(),
                    });
                }
                if anomaly {
                    let value = g.value();
                    if let Some(e) = value.data().iter().position(|v| !v.is_finite()) {
                        let inner = tape.inner.borrow();
                        let (v, n) = (value.data()[e], value.data().len());
                        return Err(inner.non_finite(id, Phase::Backward, v, Some(k), e, n));
                    }
                }
                grads[i] = Some(match grads[i] {
                    None => g,
                    Some(acc) => acc.try_add(g)?,
                });
            }
        }
        Ok(wrt
            .iter()
            .map(|x| {
                grads
                    .get(x.id() as usize)
                    .copied()
                    .flatten()
                    .unwrap_or_else(|| tape.constant_tensor(&Tensor::zeros(x.shape())))
            })
            .collect())
    }
}

/// True for a node recorded in a no-grad scope: it takes no gradient, though an input
/// does. It is a constant to `grad_graph`, as it is to backward: gradients stop there.
fn frozen(inner: &Inner, node: &Node) -> bool {
    !node.requires_grad()
        && inner
            .inputs(node)
            .iter()
            .any(|&i| inner.nodes[i as usize].requires_grad())
}
