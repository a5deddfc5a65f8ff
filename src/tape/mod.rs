//! The tape: an arena that records a computation in order.
//!
//! Recording appends a node (which op, its inputs, where its value sits, its shape) and
//! the node's value to flat vectors. Recording order is already a topological order, so
//! backward is a single loop over the nodes in reverse. [`Tape::clear`] forgets the
//! nodes but keeps the memory, so a training loop that records a fresh graph each step
//! on one tape stops allocating after its first step.

pub mod backward;
mod node;
mod replay;
pub mod var;

use crate::error::{Error, Result};
use crate::function::{AsFunction, UserFunction};
use crate::ops::{Binary, Op, OpCode, Registered, Unary};
use crate::parallel::copy as shared_copy;
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorRef};
use node::{InputLists, Kind, Node, ShapeId, ShapeSet, IS_SCALAR, REQUIRES_GRAD, SCALAR};
use replay::{forward_general, plan_of, replay_dense, replay_nodes, Graph, Plan};
use var::{Var, Vars};

pub(crate) use node::NodeId;
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU64, Ordering};

/// The message of the panic when a recording outgrows 32-bit slot numbers.
const TOO_MANY_VALUES: &str = "a tape holds at most 2^32 values";

/// The most values a tape holds: slots are numbered in 32 bits.
const MAX_VALUES: usize = 1 << 32;

/// Where a recording ended at some moment: the lengths of its lists (see
/// [`Inner::mark`]).
#[derive(Clone, Copy)]
struct Mark {
    nodes: usize,
    used: usize,
    ops: usize,
    wide: [usize; 2],
    aux_used: usize,
    offsets: usize,
    leaf_prefix: usize,
}

/// The tape's storage.
struct Inner {
    nodes: Vec<Node>,
    /// The value arena. Its first `used` numbers belong to the recording; the rest is
    /// memory of earlier, longer recordings, kept so that a new slot needs no zeroing.
    values: Vec<f64>,
    used: usize,
    shapes: ShapeSet,
    /// The ops of general nodes.
    ops: Vec<Op>,
    /// How each general node runs, by the index of its op in `ops`.
    plans: Vec<Plan>,
    /// The inputs of the general nodes, by the index of their op in `ops`.
    wide: InputLists,
    /// The numbers that unary scalar nodes store (see [`Node`]). Like `values`, its first
    /// `aux_used` numbers belong to the recording, the rest is kept memory.
    aux: Vec<f64>,
    aux_used: usize,
    /// How many times the tape has been cleared; gradients remember it.
    generation: u64,
    /// The slot of every node, kept once the recording is not dense (see
    /// [`Inner::dense`]); empty while it is, when node `id`'s slot is `id`.
    offsets: Vec<u32>,
    /// How many nodes, from the first, are leaves: replay and the backward sweep,
    /// which have nothing to do at a leaf, start after them.
    leaf_prefix: usize,
    /// Anomaly mode's record (see [`Tape::detect_anomaly`]): the line of the user's
    /// code that recorded each node recorded while the mode was on, by node id, in
    /// recording order. Empty while the mode has never been on.
    sites: Vec<(NodeId, &'static Location<'static>)>,
}

impl Inner {
    /// The inputs of `node`.
    #[inline]
    fn inputs<'a>(&'a self, node: &'a Node) -> &'a [NodeId] {
        match node.kind {
            Kind::Leaf => &[],
            Kind::Unary | Kind::FrozenUnary => &node.args[..1],
            Kind::General => self.wide.get(node.general_index()),
            _ => &node.args,
        }
    }

    /// The parameter of a unary scalar node's op (0 for an op without one).
    #[inline]
    fn param(&self, node: &Node) -> f64 {
        unary_param(node, &self.aux)
    }

    fn shape(&self, id: ShapeId) -> &Shape {
        &self.shapes[id as usize]
    }

    #[inline]
    fn numel(&self, node: &Node) -> usize {
        if node.is_scalar() {
            1
        } else {
            self.shapes.numel(node.shape())
        }
    }

    /// How a general node runs, as fixed when it was recorded.
    #[inline]
    fn plan(&self, node: &Node) -> Plan {
        self.plans[node.general_index()]
    }

    /// The offset of node `id`'s value if `value` may replace it: the node must be a
    /// leaf of `value`'s shape ([`Var::set_value`]'s errors otherwise).
    #[inline]
    fn settable_leaf(&self, id: usize, value: &Tensor) -> Result<usize> {
        let node = &self.nodes[id];
        if !node.is_leaf() {
            return Err(Error::NotALeaf {
                op: self.op(node).name().to_string(),
            });
        }
        let shape = self.shape(node.shape());
        if shape != value.shape() {
            return Err(Error::ValueShape {
                expected: shape.clone(),
                got: value.shape().clone(),
            });
        }
        Ok(self.offset(id))
    }

    /// The op that made `node`.
    fn op(&self, node: &Node) -> Op {
        match node.kind {
            Kind::General => self.general_op(node).clone(),
            Kind::Unary | Kind::FrozenUnary if node.code.has_params() => {
                Op::from_code_param(node.code, self.param(node)).unwrap_or(Op::Leaf)
            }
            _ => Op::from_code(node.code).unwrap_or(Op::Leaf),
        }
    }

    /// The op of a general node, borrowed.
    #[inline]
    fn general_op(&self, node: &Node) -> &Op {
        &self.ops[node.general_index()]
    }

    /// The value of node `id` as a view.
    fn value(&self, id: NodeId) -> TensorRef<'_> {
        let node = &self.nodes[id as usize];
        let (at, n) = (self.offset(id as usize), self.numel(node));
        TensorRef::from_parts(&self.values[at..at + n], self.shape(node.shape()))
    }

    /// True if every node's value sits at the slot numbered like the node, as on a
    /// tape of scalars: replay and backward then find an input's slot without loading
    /// anything. A tape stays dense while each node takes one slot; the first node that
    /// takes none or several starts `offsets`, which then holds every node's slot.
    #[inline]
    fn dense(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Where node `id`'s value (and gradient) starts in the arenas.
    #[inline(always)]
    fn offset(&self, id: usize) -> usize {
        slot_of(&self.offsets, id)
    }

    /// The recording, to read, beside the value arena and the unary nodes' stored
    /// numbers, to write: what computing values (recording, replay) needs.
    fn split(&mut self) -> (Graph<'_>, &mut [f64], &mut [f64]) {
        let graph = Graph {
            nodes: &self.nodes,
            offsets: &self.offsets,
            shapes: &self.shapes,
            ops: &self.ops,
            plans: &self.plans,
            wide: &self.wide,
        };
        (graph, &mut self.values, &mut self.aux)
    }

    /// A slot of `n` numbers at the end of the recording; its contents are whatever
    /// an earlier recording left there (zero the first time), for the caller to write.
    /// `None`, with nothing changed, when the recording would pass 2³² values.
    #[inline]
    fn slot(&mut self, n: usize) -> Option<usize> {
        let offset = self.used;
        let end = offset.checked_add(n).filter(|&end| end <= MAX_VALUES)?;
        if end > self.values.len() {
            self.values.resize(end, 0.0);
        }
        self.used = end;
        Some(offset)
    }

    /// Where the recording ends now, for [`truncate`](Inner::truncate).
    fn mark(&self) -> Mark {
        Mark {
            nodes: self.nodes.len(),
            used: self.used,
            ops: self.ops.len(),
            wide: self.wide.lens(),
            aux_used: self.aux_used,
            offsets: self.offsets.len(),
            leaf_prefix: self.leaf_prefix,
        }
    }

    /// Forgets everything recorded since `mark` was taken: the recording is again what
    /// it was then. Values written past the mark stay in the arena as memory, like
    /// those of a longer recording before [`Tape::clear`].
    fn truncate(&mut self, mark: Mark) {
        self.nodes.truncate(mark.nodes);
        self.used = mark.used;
        self.ops.truncate(mark.ops);
        self.plans.truncate(mark.ops);
        self.wide.truncate(mark.wide);
        self.aux_used = mark.aux_used;
        // Empty again if the tape was dense at the mark (see `Inner::dense`).
        self.offsets.truncate(mark.offsets);
        self.leaf_prefix = mark.leaf_prefix;
        let kept = self
            .sites
            .partition_point(|&(id, _)| (id as usize) < mark.nodes);
        self.sites.truncate(kept);
    }

    /// [`Error::NonFinite`] for the first value, in recording order, that is NaN or ±∞
    /// among those of node `root` and the nodes it is computed from; with no root,
    /// among all the recording's values.
    fn first_non_finite_value(&self, root: Option<NodeId>) -> Result<()> {
        let end = root.map_or(self.nodes.len(), |r| r as usize + 1);
        let mut needed = vec![root.is_none(); end];
        if let Some(root) = root {
            needed[root as usize] = true;
            for id in (0..end).rev() {
                if needed[id] {
                    for &i in self.inputs(&self.nodes[id]) {
                        needed[i as usize] = true;
                    }
                }
            }
        }
        for (id, node) in self.nodes[..end].iter().enumerate() {
            if !needed[id] {
                continue;
            }
            let at = self.offset(id);
            let n = self.numel(node);
            let values = &self.values[at..at + n];
            if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                return Err(self.non_finite(id, crate::Phase::Forward, values[k], None, k, n));
            }
        }
        Ok(())
    }

    /// [`Error::NonFinite`] for `value`, made by node `id` in `phase`: element `k` of
    /// `n` of its value, or of the gradient of its input `input`.
    #[cold]
    fn non_finite(
        &self,
        id: usize,
        phase: crate::Phase,
        value: f64,
        input: Option<usize>,
        k: usize,
        n: usize,
    ) -> Error {
        let node = &self.nodes[id];
        let op = if node.is_leaf() {
            "leaf".to_string()
        } else {
            self.op(node).name().to_string()
        };
        Error::NonFinite {
            op,
            node: id,
            phase,
            location: self.site(id),
            value,
            input,
            element: (n > 1).then_some(k),
        }
    }

    /// How many numbers of `aux` belong to the recording.
    fn aux_used(&self) -> usize {
        self.aux_used
    }

    /// The line of the user's code that recorded node `id`, if anomaly mode was on then.
    fn site(&self, id: usize) -> Option<&'static Location<'static>> {
        let at = self.sites.partition_point(|&(n, _)| (n as usize) < id);
        self.sites
            .get(at)
            .filter(|&&(n, _)| n as usize == id)
            .map(|&(_, l)| l)
    }

    /// Keeps `location` as the site of node `id`, the last one recorded.
    #[cold]
    #[inline(never)]
    fn keep_site(&mut self, id: usize, location: &'static Location<'static>) {
        self.sites.push((id as NodeId, location));
    }

    /// A one-number slot at the end of the recording, holding `y`.
    #[inline(always)]
    fn push_scalar(&mut self, y: f64) -> u32 {
        let offset = self.used;
        if offset < self.values.len() {
            self.values[offset] = y;
        } else {
            self.grow_values();
            self.values[offset] = y;
        }
        self.used = offset + 1;
        // Below the arena's length, which its growth keeps at most 2^32.
        offset as u32
    }

    /// Appends a unary scalar node's stored numbers (see [`Node`]) to `aux` and returns
    /// where they start: one bounds check when the arena has room.
    #[inline(always)]
    fn push_aux<const N: usize>(&mut self, numbers: [f64; N]) -> u32 {
        let at = self.aux_used;
        match self.aux.get_mut(at..at + N) {
            Some(slot) => slot.copy_from_slice(&numbers),
            // By value: a reference would keep the numbers in memory on the fast path.
            None => self.grow_aux(numbers),
        }
        self.aux_used = at + N;
        // Below the arena's length, which its growth keeps at most 2^32.
        at as u32
    }

    /// [`push_aux`](Inner::push_aux) when the arena is full: grows it, then writes.
    #[cold]
    #[inline(never)]
    fn grow_aux<const N: usize>(&mut self, numbers: [f64; N]) {
        let (at, end) = (self.aux_used, self.aux_used + N);
        u32::try_from(end - 1).expect("a tape holds at most 2^32 stored derivatives");
        // Room for the next nodes' numbers too, as `grow_values` makes.
        self.aux.resize((end + 4096).min(1 << 32), 0.0);
        self.aux[at..end].copy_from_slice(&numbers);
    }

    /// The hint (see [`Tape::scalar_hint`]) of node `id`: 0 unless it is a scalar.
    #[inline(always)]
    fn node_hint(&self, id: NodeId) -> u32 {
        let node = &self.nodes[id as usize];
        Tape::scalar_hint(self.offset(id as usize), node.flags)
    }

    #[cold]
    #[inline(never)]
    fn grow_values(&mut self) {
        let len = self.values.len();
        u32::try_from(len).expect(TOO_MANY_VALUES);
        // Slots for the next 4,096 numbers at once (at most the 2^32 a tape holds), so
        // that the nodes after this one find their slots ready, as the fast path
        // (see `Tape::fast_end`) needs, without a call each. Not doubled: zeroing
        // slots that no node takes would cost a fresh tape time and memory.
        self.values.resize((len + 4096).min(1 << 32), 0.0);
    }

    fn intern(&mut self, shape: &Shape) -> ShapeId {
        if shape.is_scalar() {
            SCALAR
        } else {
            self.shapes.intern(shape)
        }
    }
}

/// The panic of a recording past 2³² nodes.
#[cold]
#[inline(never)]
fn too_many_nodes() -> ! {
    panic!("a tape holds at most 2^32 nodes")
}

/// Doubles the node arena's capacity.
#[cold]
#[inline(never)]
fn grow_nodes(nodes: &mut Vec<Node>) {
    nodes.reserve(1);
}

/// Doubles the capacity of a tape's list of slots.
#[cold]
#[inline(never)]
fn grow_offsets(offsets: &mut Vec<u32>) {
    offsets.reserve(1);
}

/// The value of the scalar node of hint `hint` (see [`Tape::scalar_hint`]), read
/// without a bounds check.
///
/// # Safety
///
/// `hint` is a nonzero hint of a variable of the current recording of the tape whose
/// storage is `inner` (see [`Var::with_hint`]): it holds a slot below `inner.used`,
/// which is at most the value arena's length.
#[allow(unsafe_code)]
#[inline(always)]
unsafe fn hinted_value(inner: &Inner, hint: u32) -> f64 {
    let slot = (hint >> 2) as usize;
    debug_assert!(slot < inner.used && inner.used <= inner.values.len());
    // SAFETY: `slot < inner.values.len()`, by the caller's promise.
    unsafe { *inner.values.get_unchecked(slot) }
}

/// The panic of a fast append whose `fast_end` did not match the arenas.
#[cold]
#[inline(never)]
fn stale_fast_end() -> ! {
    panic!("tapegrad: the tape's fast-path bound does not match its arenas")
}

/// The [`fast_end`](Tape::fast_end) of storage `inner` under grad mask `mask`.
fn fast_end(inner: &Inner, mask: u8) -> usize {
    if mask == REQUIRES_GRAD && inner.dense() && inner.used == inner.nodes.len() {
        inner.nodes.capacity().min(inner.values.len()).min(1 << 30)
    } else {
        0
    }
}

/// The slot of node `id`, given a tape's `Inner::offsets` (see [`Inner::dense`]).
#[inline(always)]
fn slot_of(offsets: &[u32], id: usize) -> usize {
    if offsets.is_empty() {
        id
    } else {
        offsets[id] as usize
    }
}

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(1);

/// A recording of a computation: the arena every [`Var`] lives on.
///
/// Make variables with [`var`](Tape::var) (a scalar leaf), [`tensor`](Tape::tensor)
/// (a tensor leaf) and [`constant`](Tape::constant) (no gradient); combine them with
/// operators and method ops; call [`Var::backward`] on the result.
///
/// A scalar node takes 12 bytes, its value 8 and its gradient 8: 28 bytes for a leaf or
/// a binary op, 36 for a unary op (which stores its derivative), 44 for a unary op with
/// a parameter (checked by `tests/scale.rs`). The arenas grow by doubling, so a tape
/// may hold up to twice that until it is cleared and reused, or made
/// [`with_capacity`](Tape::with_capacity).
///
/// A tape is `Send` but not `Sync`: use one per thread. It holds at most 2³² nodes and
/// 2³² values (32 GiB of them): an op whose value would not fit returns an error (and
/// its operator panics with it); a leaf or scalar past the limit panics, as a `Vec`
/// does when it cannot grow.
///
/// A recording that fails, with an error or with a panic that the caller catches (a
/// shape mismatch in an operator, a user function's forward), leaves the tape as it
/// was before the call: it goes on recording, differentiating and replaying.
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<tapegrad::Tape>(); // a tape cannot be shared between threads
/// ```
///
/// ```
/// use tapegrad::Tape;
/// let mut tape = Tape::new();
/// for step in 0..3 {
///     tape.clear(); // reuse the memory of the last step
///     let x = tape.var(step as f64);
///     let y = x * x + 1.0;
///     assert_eq!(y.backward()?.wrt_scalar(x)?, 2.0 * step as f64);
/// }
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub struct Tape {
    id: u64,
    inner: RefCell<Inner>,
    no_grad: Cell<u32>,
    /// `REQUIRES_GRAD` outside no-grad scopes, 0 inside: new nodes' flags are masked
    /// with it.
    grad_mask: Cell<u8>,
    /// While the number of nodes is below it, a scalar node may be appended on the fast
    /// path ([`push_scalar_node`](Tape::push_scalar_node)): the tape is dense and
    /// outside no-grad scopes, every node holds one slot (`used` is the number of
    /// nodes), the node arena has room, the value arena is long enough, and the next id
    /// fits a hint. Zero when not known; the slow path sets it again (see
    /// [`refresh_fast_end`](Tape::refresh_fast_end)).
    fast_end: Cell<usize>,
    /// True while anomaly mode is on (see [`detect_anomaly`](Tape::detect_anomaly)).
    anomaly: Cell<bool>,
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// An empty tape.
    pub fn new() -> Tape {
        Tape::with_capacity(0, 0)
    }

    /// An empty tape with room for `nodes` nodes holding `values` numbers in all.
    pub fn with_capacity(nodes: usize, values: usize) -> Tape {
        let shapes = ShapeSet::new();
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed),
            inner: RefCell::new(Inner {
                nodes: Vec::with_capacity(nodes),
                values: Vec::with_capacity(values),
                used: 0,
                shapes,
                ops: Vec::new(),
                plans: Vec::new(),
                wide: InputLists::default(),
                aux: Vec::new(),
                aux_used: 0,
                generation: 0,
                offsets: Vec::new(),
                leaf_prefix: 0,
                sites: Vec::new(),
            }),
            no_grad: Cell::new(0),
            grad_mask: Cell::new(REQUIRES_GRAD),
            fast_end: Cell::new(0),
            anomaly: Cell::new(false),
        }
    }

    /// A number that identifies this tape among all tapes of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The number of recorded nodes.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap memory the tape holds: its nodes, values, stored derivatives, shapes,
    /// the slots of a tape that is not all scalars, the ops, plans and inputs of its
    /// general nodes, and the lines kept by anomaly mode.
    pub fn heap_bytes(&self) -> usize {
        let inner = self.inner.borrow();
        inner.nodes.capacity() * std::mem::size_of::<Node>()
            + inner.values.capacity() * std::mem::size_of::<f64>()
            + inner.shapes.heap_bytes()
            + inner.offsets.capacity() * std::mem::size_of::<u32>()
            + inner.ops.capacity() * std::mem::size_of::<Op>()
            + inner.plans.capacity() * std::mem::size_of::<Plan>()
            + inner.wide.heap_bytes()
            + inner.aux.capacity() * std::mem::size_of::<f64>()
            + inner.sites.capacity() * std::mem::size_of::<(NodeId, &Location<'_>)>()
    }

    /// Forgets every node, keeping the memory for the next recording.
    ///
    /// Variables of the old recording cannot outlive this call (it takes `&mut self`);
    /// [`Gradients`](crate::Gradients) computed before it report
    /// [`Error::StaleGradients`] when asked about variables of the new recording.
    pub fn clear(&mut self) {
        let inner = self.inner.get_mut();
        inner.nodes.clear();
        inner.used = 0;
        inner.ops.clear();
        inner.plans.clear();
        inner.wide.clear();
        inner.aux_used = 0;
        inner.generation += 1;
        inner.offsets.clear();
        inner.leaf_prefix = 0;
        inner.sites.clear();
        let end = fast_end(inner, self.grad_mask.get());
        self.fast_end.set(if self.anomaly.get() { 0 } else { end });
    }

    /// A scalar leaf variable: gradients are computed for it.
    #[inline]
    #[track_caller]
    pub fn var(&self, value: f64) -> Var<'_> {
        self.leaf_scalar(value, true)
    }

    /// A tensor leaf variable: gradients are computed for it. The values are copied onto
    /// the tape.
    #[track_caller]
    pub fn tensor(&self, value: &Tensor) -> Var<'_> {
        self.leaf(value.view(), true)
    }

    /// A scalar constant: no gradient flows into it.
    #[inline]
    #[track_caller]
    pub fn constant(&self, value: f64) -> Var<'_> {
        self.leaf_scalar(value, false)
    }

    /// A tensor constant: no gradient flows into it.
    #[track_caller]
    pub fn constant_tensor(&self, value: &Tensor) -> Var<'_> {
        self.leaf(value.view(), false)
    }

    #[inline]
    #[track_caller]
    fn leaf_scalar(&self, value: f64, requires_grad: bool) -> Var<'_> {
        let mut inner = self.inner.borrow_mut();
        self.room_for_a_node(&inner);
        let offset = inner.push_scalar(value);
        let node = Node::scalar_leaf(self.flags(requires_grad, true));
        let var = self.push(&mut inner, node, offset);
        if self.anomaly.get() {
            inner.keep_site(var.id() as usize, Location::caller());
        }
        var
    }

    /// Scalar leaf variables, one per value, recorded one after another with their
    /// values in one block: [`var`](Tape::var) for each value, with one look at the
    /// tape. [`Vars`] sets their values and reads their gradients in one copy.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.vars(&[3.0, 4.0]);
    /// let (a, b) = (x.get(0).unwrap(), x.get(1).unwrap());
    /// let grads = (a * b).backward()?;
    /// assert_eq!(grads.wrt_scalar(a)?, 4.0);
    /// assert_eq!(x.len(), 2);
    /// assert!(x.get(2).is_none());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    #[track_caller]
    pub fn vars(&self, values: &[f64]) -> Vars<'_> {
        let mut inner = self.inner.borrow_mut();
        let len = values.len();
        let first = inner.nodes.len();
        NodeId::try_from(first + len).expect("a tape holds at most 2^32 nodes");
        let slot = inner.slot(len).expect(TOO_MANY_VALUES);
        shared_copy(&mut inner.values[slot..slot + len], values);
        let flags = self.flags(true, true);
        inner
            .nodes
            .extend(std::iter::repeat_n(Node::scalar_leaf(flags), len));
        if !inner.dense() {
            // Below 2^32, like every slot the arena hands out.
            inner.offsets.extend((slot..slot + len).map(|at| at as u32));
        }
        if inner.leaf_prefix == first {
            inner.leaf_prefix = first + len;
        }
        if self.anomaly.get() {
            for id in first..first + len {
                inner.keep_site(id, Location::caller());
            }
        }
        self.refresh_fast_end(&inner);
        Vars {
            tape: self,
            first: first as NodeId,
            len,
            slot,
            flags,
        }
    }

    #[track_caller]
    pub(crate) fn leaf(&self, value: TensorRef<'_>, requires_grad: bool) -> Var<'_> {
        let mut inner = self.inner.borrow_mut();
        self.room_for_a_node(&inner);
        let shape = inner.intern(value.shape());
        let offset = inner.slot(value.data().len()).expect(TOO_MANY_VALUES);
        shared_copy(
            &mut inner.values[offset..offset + value.data().len()],
            value.data(),
        );
        let var = self.push_general(&mut inner, Op::Leaf, &[], offset, shape, requires_grad);
        if self.anomaly.get() {
            inner.keep_site(var.id() as usize, Location::caller());
        }
        var
    }

    /// Panics, before anything changes, if the tape holds as many nodes as node ids
    /// can number.
    #[inline(always)]
    fn room_for_a_node(&self, inner: &Inner) {
        if NodeId::try_from(inner.nodes.len()).is_err() {
            too_many_nodes();
        }
    }

    /// The flags of a new node.
    #[inline(always)]
    fn flags(&self, requires_grad: bool, scalar: bool) -> u8 {
        let scalar = if scalar { IS_SCALAR } else { 0 };
        scalar | (if requires_grad { REQUIRES_GRAD } else { 0 } & self.grad_mask.get())
    }

    /// True if node flags `flags` let gradients flow.
    #[inline(always)]
    pub(crate) fn flags_require_grad(flags: u8) -> bool {
        flags & REQUIRES_GRAD != 0
    }

    /// A scalar node's slot and flags packed in 32 bits for its [`Var`], so that
    /// recording on it need not load its node: `slot << 2 | flags`, or 0 (not known)
    /// when the node is not a scalar or its slot needs more than 30 bits.
    #[inline(always)]
    pub(crate) fn scalar_hint(slot: usize, flags: u8) -> u32 {
        if flags & IS_SCALAR != 0 && slot < 1 << 30 {
            (slot as u32) << 2 | u32::from(flags)
        } else {
            0
        }
    }

    /// Appends a node whose value sits at `offset` and returns its variable.
    #[inline(always)]
    fn push(&self, inner: &mut Inner, node: Node, offset: u32) -> Var<'_> {
        // On a dense tape `offset` is the node's id (see `Inner::dense`).
        if !inner.offsets.is_empty() {
            if inner.offsets.len() == inner.offsets.capacity() {
                grow_offsets(&mut inner.offsets);
            }
            inner.offsets.push(offset);
        }
        self.push_node(inner, node, offset)
    }

    /// [`push`](Tape::push) without the slot kept in `Inner::offsets`.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn push_node(&self, inner: &mut Inner, node: Node, offset: u32) -> Var<'_> {
        let len = inner.nodes.len();
        let id = NodeId::try_from(len).unwrap_or_else(|_| too_many_nodes());
        // Grown out of line, so that the inlined `Vec::push` never allocates.
        if len == inner.nodes.capacity() {
            grow_nodes(&mut inner.nodes);
        }
        // Known at compile time for the op paths, which inline this.
        if node.kind == Kind::Leaf && inner.leaf_prefix == inner.nodes.len() {
            inner.leaf_prefix += 1;
        }
        inner.nodes.push(node);
        // SAFETY: node `id` was just appended, with its value at slot `offset` of this
        // recording.
        unsafe { Var::with_hint(self, id, Tape::scalar_hint(offset as usize, node.flags)) }
    }

    /// Appends a leaf (`op` is `Op::Leaf`) or a general node.
    fn push_general(
        &self,
        inner: &mut Inner,
        op: Op,
        inputs: &[NodeId],
        offset: usize,
        shape: ShapeId,
        requires_grad: bool,
    ) -> Var<'_> {
        let offset = u32::try_from(offset).expect(TOO_MANY_VALUES);
        let code = op.code();
        let (kind, index) = if inputs.is_empty() {
            (Kind::Leaf, 0)
        } else {
            let index = u32::try_from(inner.ops.len()).expect("a tape holds at most 2^32 nodes");
            let plan = plan_of(inner, &op, inputs, shape, offset as usize);
            inner.wide.push(inputs);
            inner.ops.push(op);
            inner.plans.push(plan);
            (Kind::General, index)
        };
        let node = Node {
            args: [index, shape],
            code,
            kind,
            flags: self.flags(requires_grad, shape == SCALAR),
        };
        let id = inner.nodes.len();
        if inner.dense() && (inner.shapes.numel(shape) != 1 || offset as usize != id) {
            // The first node that does not take exactly the next slot: from now on
            // the tape keeps every node's slot, with room for as many as the nodes
            // have (a tape made `with_capacity` then grows neither).
            inner.offsets.reserve(inner.nodes.capacity().max(id + 1));
            inner.offsets.extend(0..id as u32);
            inner.offsets.push(offset);
            let var = self.push_node(inner, node, offset);
            self.refresh_fast_end(inner);
            return var;
        }
        let var = self.push(inner, node, offset);
        self.refresh_fast_end(inner);
        var
    }

    /// Applies a user [`Function`](crate::Function) (or
    /// [`ScalarFunction`](crate::ScalarFunction)) to `inputs` and records the result.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tapegrad::{ScalarFunction, Tape};
    /// struct Square;
    /// impl ScalarFunction for Square {
    ///     fn name(&self) -> &str { "square" }
    ///     fn value(&self, x: f64) -> f64 { x * x }
    ///     fn derivative(&self, x: f64) -> f64 { 2.0 * x }
    /// }
    /// let tape = Tape::new();
    /// let x = tape.var(3.0);
    /// let y = tape.apply(&Arc::new(Square), &[x])?;
    /// assert_eq!(y.item()?, 9.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    #[track_caller]
    pub fn apply<'t>(&'t self, f: &impl AsFunction, inputs: &[Var<'t>]) -> Result<Var<'t>> {
        let f: UserFunction = f.as_function();
        self.record(Op::Custom(f), inputs)
    }

    /// Records `op` applied to `inputs`: checks the tape and shapes, computes the value
    /// into the arena, appends the node. On error nothing is recorded.
    #[inline]
    #[track_caller]
    pub(crate) fn record<'t>(&'t self, op: Op, inputs: &[Var<'t>]) -> Result<Var<'t>> {
        self.record_general(op, inputs)
    }

    /// Records the unary elementwise built-in op `f` on `a`. Inlined into each op's
    /// method, so that on a scalar of this tape it compiles to that op's arithmetic and
    /// three appends: the value, dy/da with the op's parameter, if any, in `aux`, and the
    /// node (an op whose parameter is not one number takes the general path).
    #[inline(always)]
    #[track_caller]
    #[allow(unsafe_code)]
    pub(crate) fn record_unary<'t, U: Unary + Registered>(
        &'t self,
        f: U,
        a: Var<'t>,
    ) -> Result<Var<'t>> {
        match self.hinted_unary(&f, a) {
            // SAFETY: `a` is a variable of this tape with a hint (`hinted_unary`).
            Some(param) => Ok(unsafe { self.record_scalar_unary(f, param, a.id(), a.hint()) }),
            None => self.record_unary_unhinted(f, a),
        }
    }

    /// [`record_unary`](Tape::record_unary) for the methods that cannot fail on a
    /// variable of this tape: no `Result` on the scalar path, so that the variable
    /// stays in registers; any error (a foreign variable) panics with its message.
    #[inline(always)]
    #[track_caller]
    #[allow(unsafe_code)]
    pub(crate) fn unary_or_panic<'t, U: Unary + Registered>(&'t self, f: U, a: Var<'t>) -> Var<'t> {
        match self.hinted_unary(&f, a) {
            // SAFETY: `a` is a variable of this tape with a hint (`hinted_unary`).
            Some(param) => unsafe { self.record_scalar_unary(f, param, a.id(), a.hint()) },
            None => match self.record_unary_unhinted(f, a) {
                Ok(y) => y,
                Err(e) => panic!("{e}"),
            },
        }
    }

    /// The parameter of `f` (0 for an op without one) when the inlined path can record
    /// it on `a`: a scalar of this tape with a hint, and a parameter that is one number.
    #[inline(always)]
    fn hinted_unary<U: Unary + Registered>(&self, f: &U, a: Var<'_>) -> Option<f64> {
        scalar_param(f).filter(|_| std::ptr::eq(a.tape(), self) && a.hint() != 0)
    }

    /// [`record_unary`](Tape::record_unary) on a variable without a hint: reads its
    /// node. Out of line, to keep the inlined path small.
    #[inline(never)]
    #[track_caller]
    #[allow(unsafe_code)]
    fn record_unary_unhinted<'t, U: Unary + Registered>(
        &'t self,
        f: U,
        a: Var<'t>,
    ) -> Result<Var<'t>> {
        if let (Some(param), true) = (scalar_param(&f), std::ptr::eq(a.tape(), self)) {
            let ha = self.inner.borrow().node_hint(a.id());
            if ha != 0 {
                // SAFETY: `a` is a variable of this tape, and `ha` its node's hint, made
                // from the node as it is recorded.
                return Ok(unsafe { self.record_scalar_unary(f, param, a.id(), ha) });
            }
        }
        self.record_general(f.into_op(), &[a])
    }

    /// Records unary op `f` (with parameter `param`) on the scalar node `a` of hint
    /// `ha`: the value, then a node with dy/da and the parameter.
    ///
    /// # Safety
    ///
    /// `ha` is a nonzero hint of node `a`, a variable of this tape's current recording
    /// (see [`Var::with_hint`]).
    #[allow(unsafe_code)]
    #[inline(always)]
    #[track_caller]
    unsafe fn record_scalar_unary<U: Unary + Registered>(
        &self,
        f: U,
        param: f64,
        a: NodeId,
        ha: u32,
    ) -> Var<'_> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        // SAFETY: `ha` is a hint of this recording, the caller's promise.
        let (y, da) = f.value_and_derivative(unsafe { hinted_value(inner, ha) });
        let at = if std::mem::size_of::<U>() != 0 {
            inner.push_aux([da, param])
        } else {
            inner.push_aux([da])
        };
        let node = Node {
            args: [a, at],
            code: U::CODE,
            kind: Kind::Unary,
            flags: ha as u8 & (IS_SCALAR | REQUIRES_GRAD),
        };
        self.push_scalar_node(inner, y, node)
    }

    /// Records the binary elementwise built-in op `f` on `a` and `b`, as
    /// [`record_unary`](Tape::record_unary) does: on two scalars of this tape only the
    /// value and the node, whose partials backward computes from the values.
    #[inline(always)]
    #[track_caller]
    #[allow(unsafe_code)]
    pub(crate) fn record_binary<'t, B: Binary + Registered>(
        &'t self,
        f: B,
        a: Var<'t>,
        b: Var<'t>,
    ) -> Result<Var<'t>> {
        if self.hinted_binary::<B>(a, b) {
            // SAFETY: `a` and `b` are variables of this tape with hints (`hinted_binary`).
            let y = unsafe { self.record_scalar_binary(f, [a.id(), b.id()], a.hint(), b.hint()) };
            return Ok(y);
        }
        self.record_binary_unhinted(f, a, b)
    }

    /// [`record_binary`](Tape::record_binary) for the operators: no `Result` on the
    /// scalar path, as for [`unary_or_panic`](Tape::unary_or_panic); errors (shapes
    /// that do not broadcast, a foreign variable) panic with their message.
    #[inline(always)]
    #[track_caller]
    #[allow(unsafe_code)]
    pub(crate) fn binary_or_panic<'t, B: Binary + Registered>(
        &'t self,
        f: B,
        a: Var<'t>,
        b: Var<'t>,
    ) -> Var<'t> {
        if self.hinted_binary::<B>(a, b) {
            // SAFETY: `a` and `b` are variables of this tape with hints (`hinted_binary`).
            return unsafe { self.record_scalar_binary(f, [a.id(), b.id()], a.hint(), b.hint()) };
        }
        match self.record_binary_unhinted(f, a, b) {
            Ok(y) => y,
            // The caller's line, through the operator's `#[track_caller]`.
            Err(e) => panic!("{e}"),
        }
    }

    /// True when the inlined path can record `B` on `a` and `b`: scalars of this tape
    /// with hints, and an op without parameters.
    #[inline(always)]
    fn hinted_binary<B: Binary>(&self, a: Var<'_>, b: Var<'_>) -> bool {
        std::mem::size_of::<B>() == 0
            && std::ptr::eq(a.tape(), self)
            && std::ptr::eq(b.tape(), self)
            // A hint is 0 or has `IS_SCALAR` set: one test for both.
            && a.hint() & b.hint() & u32::from(IS_SCALAR) != 0
    }

    /// [`record_binary`](Tape::record_binary) on variables without hints: reads their
    /// nodes. Out of line, to keep the inlined path small.
    #[inline(never)]
    #[track_caller]
    #[allow(unsafe_code)]
    fn record_binary_unhinted<'t, B: Binary + Registered>(
        &'t self,
        f: B,
        a: Var<'t>,
        b: Var<'t>,
    ) -> Result<Var<'t>> {
        if std::mem::size_of::<B>() == 0
            && std::ptr::eq(a.tape(), self)
            && std::ptr::eq(b.tape(), self)
        {
            let (ha, hb) = {
                let inner = self.inner.borrow();
                (inner.node_hint(a.id()), inner.node_hint(b.id()))
            };
            if ha != 0 && hb != 0 {
                // SAFETY: `a` and `b` are variables of this tape, and `ha` and `hb` their
                // nodes' hints, made from the nodes as they are recorded.
                return Ok(unsafe { self.record_scalar_binary(f, [a.id(), b.id()], ha, hb) });
            }
        }
        self.record_general(f.into_op(), &[a, b])
    }

    /// Records binary op `f` on the scalar nodes `args` of hints `ha` and `hb`: the
    /// value, then a node (backward computes the partials from the values).
    ///
    /// # Safety
    ///
    /// `ha` and `hb` are nonzero hints of nodes `args`, variables of this tape's
    /// current recording (see [`Var::with_hint`]).
    #[allow(unsafe_code)]
    #[inline(always)]
    #[track_caller]
    unsafe fn record_scalar_binary<B: Binary + Registered>(
        &self,
        f: B,
        args: [NodeId; 2],
        ha: u32,
        hb: u32,
    ) -> Var<'_> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        // SAFETY: `ha` and `hb` are hints of this recording, the caller's promise.
        let y = unsafe { f.value(hinted_value(inner, ha), hinted_value(inner, hb)) };
        let node = Node {
            args,
            code: B::CODE,
            kind: const { Kind::binary(B::PARTIALS) },
            // Gradients flow into the node if they flow into either input.
            flags: (ha | hb) as u8 & (IS_SCALAR | REQUIRES_GRAD),
        };
        self.push_scalar_node(inner, y, node)
    }

    /// Appends scalar node `node` of value `y` as the next node, `id`. Its flags
    /// are the inputs' (see the callers): the no-grad mask, and the freezing of a node
    /// without gradient, are applied here, on the slow path.
    ///
    /// Below [`fast_end`](Tape::fast_end), the node takes slot `id`, no arena grows,
    /// and no scope masks gradients: three stores, whose checks never fail. Past it,
    /// the node goes through the checked appends, out of line, which then set
    /// `fast_end` again.
    #[allow(unsafe_code)]
    #[inline(always)]
    #[track_caller]
    fn push_scalar_node(&self, inner: &mut Inner, y: f64, node: Node) -> Var<'_> {
        let id = inner.nodes.len();
        if id >= self.fast_end.get() {
            // The node by its fields: as one argument it would go through memory.
            let Node {
                args,
                code,
                kind,
                flags,
            } = node;
            return self.push_scalar_node_slow(inner, y, args, code, kind, flags);
        }
        debug_assert!(id == inner.nodes.len() && id == inner.used && inner.dense());
        debug_assert!(node.kind == Kind::Unary || (node.args[1] as usize) < id);
        debug_assert!((node.args[0] as usize) < id);
        let (values, nodes) = (&mut inner.values, &mut inner.nodes);
        // Below `fast_end` these hold; checked here all the same, so that the stores'
        // safety rests on nothing kept elsewhere.
        if id >= values.len() || id >= nodes.capacity() {
            stale_fast_end();
        }
        // SAFETY: `id < values.len()`, and `id == nodes.len() < nodes.capacity()` (the
        // length read at the top, through the `&mut Inner` held since), so
        // slot `id` of each arena is allocated, and the node at `id` is the first past
        // the initialized ones: writing it and setting the length to `id + 1` keeps
        // every node below the length initialized.
        unsafe {
            *values.get_unchecked_mut(id) = y;
            nodes.as_mut_ptr().add(id).write(node);
            nodes.set_len(id + 1);
        }
        inner.used = id + 1;
        // Below `fast_end`, so below 2^30: the id and the hint fit.
        let id = id as NodeId;
        // SAFETY: node `id` was just written, with its value at slot `id`.
        unsafe { Var::with_hint(self, id, id << 2 | u32::from(node.flags)) }
    }

    /// [`push_scalar_node`](Tape::push_scalar_node) past `fast_end`: grows the arenas,
    /// keeps the node's slot on a tape that is not dense, masks the node's flags in
    /// a no-grad scope and freezes the node if it then takes no gradient (see
    /// [`Kind::FrozenUnary`]), then sets `fast_end` again.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn push_scalar_node_slow(
        &self,
        inner: &mut Inner,
        y: f64,
        args: [NodeId; 2],
        code: OpCode,
        kind: Kind,
        flags: u8,
    ) -> Var<'_> {
        self.room_for_a_node(inner);
        let flags = flags & (IS_SCALAR | self.grad_mask.get());
        let node = Node {
            args,
            code,
            kind: if flags & REQUIRES_GRAD == 0 {
                kind.frozen()
            } else {
                kind
            },
            flags,
        };
        let offset = inner.push_scalar(y);
        let var = self.push(inner, node, offset);
        if self.anomaly.get() {
            inner.keep_site(var.id() as usize, Location::caller());
        }
        self.refresh_fast_end(inner);
        var
    }

    /// Sets [`fast_end`](Tape::fast_end) for the tape as it is now.
    #[inline]
    fn refresh_fast_end(&self, inner: &Inner) {
        // Anomaly mode keeps every scalar node on the slow path, which keeps its site.
        let end = if self.anomaly.get() {
            0
        } else {
            fast_end(inner, self.grad_mask.get())
        };
        self.fast_end.set(end);
    }

    /// Records any op as a general node: tensors, general ops, user functions, and the
    /// elementwise ops that the typed paths hand over; errors leave the tape unchanged.
    #[inline(never)]
    #[track_caller]
    fn record_general<'t>(&'t self, op: Op, inputs: &[Var<'t>]) -> Result<Var<'t>> {
        for x in inputs {
            if x.tape().id() != self.id {
                return Err(Error::ForeignVariable {
                    op: op.name().to_string(),
                });
            }
        }
        let site = Location::caller();
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;

        let mut requires_grad = false;
        let mut all_scalar = true;
        let mut ids: SmallVec<[NodeId; 4]> = SmallVec::new();
        let mut input_shapes: SmallVec<[ShapeId; 4]> = SmallVec::new();
        for x in inputs {
            let node = &inner.nodes[x.id() as usize];
            requires_grad |= node.requires_grad();
            all_scalar &= node.is_scalar();
            ids.push(x.id());
            input_shapes.push(node.shape());
        }

        let elementwise = op.is_elementwise() && !inputs.is_empty();
        let shape_id = if all_scalar && elementwise {
            SCALAR
        } else if elementwise && input_shapes.iter().all(|&id| id == input_shapes[0]) {
            // Interned shapes are equal exactly when their ids are.
            input_shapes[0]
        } else {
            let mut shapes: SmallVec<[&Shape; 4]> = SmallVec::new();
            for &id in &input_shapes {
                shapes.push(inner.shape(id));
            }
            let shape = op.output_shape(&shapes)?;
            drop(shapes);
            // Most outputs have the shape of an input: no need to hash it again.
            match input_shapes.iter().find(|&&id| *inner.shape(id) == shape) {
                Some(&id) => id,
                None => inner.intern(&shape),
            }
        };

        let n = inner.shapes.numel(shape_id);
        let mark = inner.mark();
        let Some(offset) = inner.slot(n) else {
            return Err(Error::Invalid {
                op: op.name().to_string(),
                reason: format!(
                    "its value of {n} numbers does not fit on the tape, which holds at \
                     most 2^32 values and holds {} already",
                    inner.used
                ),
            });
        };
        // A panic from here on (a user function's forward, an arena that cannot grow)
        // takes the node back off the tape before it goes on, so that a caller who
        // catches it finds the tape as it was.
        let recorded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let var = self.push_general(inner, op, &ids, offset, shape_id, requires_grad);
            // The node is recorded first, so that computing its value is replay's code.
            let (graph, values, _) = inner.split();
            forward_general(&graph, values, var.id() as usize);
            var
        }));
        match recorded {
            Ok(var) => {
                if self.anomaly.get() {
                    inner.keep_site(var.id() as usize, site);
                }
                Ok(var)
            }
            Err(panic) => {
                inner.truncate(mark);
                self.refresh_fast_end(inner);
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Recomputes every recorded node from its inputs, in recording order, after leaf
    /// values were changed with [`Var::set_value`] or [`Var::set_scalar`]: the forward
    /// pass again, without recording anything.
    ///
    /// This is tape replay: record a computation once, then evaluate it (and
    /// backpropagate through it) at new inputs as often as needed. The graph is frozen
    /// as it was recorded, like a JAX trace: a branch taken on a value (an `if` in the
    /// code that built the graph) is not taken again, so replay only computations
    /// whose structure does not depend on the inputs' values. Results are bit-identical
    /// to recording the same computation afresh.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.var(1.0);
    /// let y = (x * x).sin();
    /// for v in [0.5, 2.0, 3.0] {
    ///     x.set_scalar(v)?;
    ///     tape.replay();
    ///     assert_eq!(y.item()?, (v * v).sin());
    ///     assert_eq!(y.backward()?.wrt_scalar(x)?, (v * v).cos() * 2.0 * v);
    /// }
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn replay(&self) {
        let mut guard = self.inner.borrow_mut();
        let (dense, start) = (guard.dense(), guard.leaf_prefix);
        let (graph, values, aux) = guard.split();
        if dense {
            replay_dense(&graph, start, (values, aux));
        } else {
            replay_nodes::<false>(&graph, start, (values, aux));
        }
    }

    /// Sets many scalar leaves at once, `xs[i]` to `values[i]`, for
    /// [`replay`](Tape::replay): [`Var::set_scalar`] for each, with one look at the tape. An
    /// error, with nothing changed, if the lengths differ or a variable is not a scalar
    /// leaf of this tape.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let xs = [tape.var(1.0), tape.var(2.0)];
    /// let y = xs[0] * xs[1];
    /// tape.set_scalars(&xs, &[3.0, 4.0])?;
    /// tape.replay();
    /// assert_eq!(y.item()?, 12.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn set_scalars(&self, xs: &[Var<'_>], values: &[f64]) -> Result<()> {
        if xs.len() != values.len() {
            return Err(Error::Invalid {
                op: "set_scalars".into(),
                reason: format!("{} variables but {} values", xs.len(), values.len()),
            });
        }
        let mut inner = self.inner.borrow_mut();
        // One pass checks everything; the error path looks again to report a foreign
        // variable first.
        if let Some(x) = xs.iter().find(|x| {
            !std::ptr::eq(x.tape(), self) || {
                let node = &inner.nodes[x.id() as usize];
                !(node.is_leaf() && node.is_scalar())
            }
        }) {
            if xs.iter().any(|x| !std::ptr::eq(x.tape(), self)) {
                return Err(Error::ForeignVariable {
                    op: "set_scalars".into(),
                });
            }
            let node = &inner.nodes[x.id() as usize];
            return Err(if node.is_leaf() {
                Error::NotScalar {
                    op: "set_scalars".into(),
                    shape: inner.shape(node.shape()).clone(),
                }
            } else {
                Error::NotALeaf {
                    op: inner.op(node).name().to_string(),
                }
            });
        }
        let Inner {
            offsets,
            values: arena,
            ..
        } = &mut *inner;
        for (x, &value) in xs.iter().zip(values) {
            arena[slot_of(offsets, x.id() as usize)] = value;
        }
        Ok(())
    }

    /// The block of the `count` consecutive leaves from node `first` when their values
    /// lie one after another in the arena and all of them take gradients (a parameter
    /// store bound outside any no-grad scope); else `None`. Their gradients then lie
    /// one after another too: [`set_leaf_block`](Tape::set_leaf_block) writes the
    /// values and [`Gradients::leaf_block`](crate::Gradients::leaf_block) reads the
    /// gradients, each in one copy, for as long as this recording lasts.
    pub(crate) fn leaf_block(&self, first: usize, count: usize) -> Option<LeafBlock> {
        let inner = self.inner.borrow();
        let nodes = inner.nodes.get(first..first + count)?;
        let at = if count == 0 {
            inner.used
        } else {
            inner.offset(first)
        };
        let mut len = 0;
        for (id, node) in (first..).zip(nodes) {
            if !node.is_leaf() || !node.requires_grad() || inner.offset(id) != at + len {
                return None;
            }
            len += inner.numel(node);
        }
        Some(LeafBlock {
            tape: self.id,
            generation: inner.generation,
            at,
            len,
        })
    }

    /// Writes `chunks`, one after another, as the values of the leaves of `block`, for
    /// replay. An error, changing nothing, when `block` belongs to another tape or an
    /// earlier recording, or when the chunks do not hold exactly its number of values.
    pub(crate) fn set_leaf_block<'v>(
        &self,
        block: &LeafBlock,
        chunks: impl Iterator<Item = &'v [f64]> + Clone,
    ) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        block.check(self.id, inner.generation, "set_leaf_block")?;
        let total: usize = chunks.clone().map(<[f64]>::len).sum();
        if total != block.len {
            return Err(Error::Invalid {
                op: "set_leaf_block".into(),
                reason: format!("{} values for a block of {}", total, block.len),
            });
        }
        let mut to = block.at;
        for chunk in chunks {
            shared_copy(&mut inner.values[to..to + chunk.len()], chunk);
            to += chunk.len();
        }
        Ok(())
    }

    /// Sets the values of the consecutive leaves `first, first + 1, …` from `values`, in
    /// order, with one look at the tape: a parameter store's tensors, for replay. The
    /// errors are [`Var::set_value`]'s, and leave every value unchanged.
    pub(crate) fn set_consecutive_leaves<'v, I>(&self, first: usize, values: I) -> Result<()>
    where
        I: Iterator<Item = &'v Tensor> + Clone,
    {
        let mut inner = self.inner.borrow_mut();
        for (id, value) in (first..).zip(values.clone()) {
            inner.settable_leaf(id, value)?;
        }
        let Inner {
            offsets,
            values: arena,
            ..
        } = &mut *inner;
        for (id, value) in (first..).zip(values) {
            let offset = slot_of(offsets, id);
            shared_copy(&mut arena[offset..offset + value.numel()], value.data());
        }
        Ok(())
    }

    /// Records values computed under this guard without gradient: nodes made while a
    /// [`NoGrad`] guard lives are constants to backward. Guards nest. Keep the guard in a
    /// named binding (`let _guard = …`): `let _ = tape.no_grad();` drops it at once.
    /// [`no_grad_scope`](Tape::no_grad_scope) takes a closure instead and cannot end
    /// early.
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.var(2.0);
    /// let frozen = {
    ///     let _guard = tape.no_grad();
    ///     x * 3.0
    /// };
    /// let y = x * frozen; // frozen is 6, a constant
    /// assert_eq!(y.backward()?.wrt_scalar(x)?, 6.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn no_grad(&self) -> NoGrad<'_> {
        self.no_grad.set(self.no_grad.get() + 1);
        self.grad_mask.set(0);
        // The fast path records with gradients; the slow path sets it again.
        self.fast_end.set(0);
        NoGrad { tape: self }
    }

    /// Runs `f` with gradients off: every node it records is a constant to backward,
    /// as under [`no_grad`](Tape::no_grad), and the scope ends when `f` returns, so it
    /// cannot end by accident (as `let _ = tape.no_grad();` does, at once).
    ///
    /// ```
    /// use tapegrad::Tape;
    /// let tape = Tape::new();
    /// let x = tape.var(2.0);
    /// let frozen = tape.no_grad_scope(|| x * 3.0);
    /// let y = x * frozen; // frozen is 6, a constant
    /// assert_eq!(y.backward()?.wrt_scalar(x)?, 6.0);
    /// assert!(!tape.is_no_grad());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn no_grad_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.no_grad();
        f()
    }

    /// True while a [`NoGrad`] guard of this tape lives.
    pub fn is_no_grad(&self) -> bool {
        self.no_grad.get() > 0
    }

    /// Turns anomaly mode on or off for this tape. Off by default.
    ///
    /// While it is on, every node recorded keeps the file and line of the code that
    /// recorded it (the caller of the op's method or operator), and the backward calls
    /// ([`Var::backward`] and its `_with`/`_into` forms, [`Var::grad_graph`]) check
    /// every value the output depends on and every gradient the sweep computes: the
    /// first NaN or ±∞ found, forward values first, then gradients in the sweep's
    /// order, returns [`Error::NonFinite`], which names the op, the phase, the line and,
    /// for a tensor, the element. Values made by [`replay`](Tape::replay) are checked
    /// the same way. [`check_finite`](Tape::check_finite) checks the forward values at
    /// any time.
    ///
    /// The mode costs time only while it is on: scalar ops then record through the
    /// slow path, and the sweep checks each gradient it writes.
    ///
    /// ```
    /// use tapegrad::{Error, Phase, Tape};
    /// let tape = Tape::new();
    /// tape.detect_anomaly(true);
    /// let x = tape.var(0.0);
    /// let y = x.sqrt() * 2.0; // sqrt is 0 at 0, but its derivative is +∞
    /// let err = y.backward().unwrap_err();
    /// assert!(matches!(err, Error::NonFinite { phase: Phase::Backward, .. }));
    /// // "sqrt at src/main.rs:7:9 produced inf in backward (gradient of input 0)"
    /// assert!(err.to_string().starts_with("sqrt at "));
    /// assert!(err.to_string().ends_with("produced inf in backward (gradient of input 0)"));
    /// ```
    pub fn detect_anomaly(&self, on: bool) {
        self.anomaly.set(on);
        match self.inner.try_borrow() {
            Ok(inner) => self.refresh_fast_end(&inner),
            // Recording runs now (a user function's forward): the slow path sets the
            // end again after it.
            Err(_) => self.fast_end.set(0),
        }
    }

    /// True while anomaly mode is on (see [`detect_anomaly`](Tape::detect_anomaly)).
    pub fn is_detecting_anomaly(&self) -> bool {
        self.anomaly.get()
    }

    /// Checks every value recorded, in recording order: the first NaN or ±∞ returns
    /// [`Error::NonFinite`] in the forward phase, with the line that recorded its node
    /// when anomaly mode was on then (see [`detect_anomaly`](Tape::detect_anomaly)).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// tape.detect_anomaly(true);
    /// let x = tape.tensor(&Tensor::vector([1.0, 0.0, 4.0]));
    /// let y = x.ln();
    /// let err = tape.check_finite().unwrap_err();
    /// assert!(err.to_string().starts_with("ln at "));
    /// assert!(err.to_string().ends_with("produced -inf in forward (element 1)"));
    /// ```
    pub fn check_finite(&self) -> Result<()> {
        self.inner.borrow().first_non_finite_value(None)
    }

    /// True while anomaly mode is on, for the sweep.
    pub(crate) fn anomaly(&self) -> bool {
        self.anomaly.get()
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("Tape")
            .field("nodes", &inner.nodes.len())
            .field("values", &inner.used)
            .finish()
    }
}

/// Guard returned by [`Tape::no_grad`]; recording is gradient-free until it drops.
#[must_use = "the no-grad scope ends when the guard is dropped"]
pub struct NoGrad<'t> {
    tape: &'t Tape,
}

impl Drop for NoGrad<'_> {
    fn drop(&mut self) {
        let depth = self.tape.no_grad.get() - 1;
        self.tape.no_grad.set(depth);
        if depth == 0 {
            self.tape.grad_mask.set(REQUIRES_GRAD);
        }
    }
}

/// Consecutive leaves whose values, and gradients, lie in one block of their arenas,
/// found by [`Tape::leaf_block`] for one recording of one tape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeafBlock {
    tape: u64,
    generation: u64,
    /// Where the block starts in both arenas, and its number of values.
    at: usize,
    len: usize,
}

impl LeafBlock {
    /// An error unless the block was found on recording `generation` of tape `tape`.
    fn check(&self, tape: u64, generation: u64, op: &str) -> Result<()> {
        if tape != self.tape {
            return Err(Error::ForeignVariable { op: op.into() });
        }
        if generation != self.generation {
            return Err(Error::Invalid {
                op: op.into(),
                reason: "the block belongs to an earlier recording of the tape".into(),
            });
        }
        Ok(())
    }
}

/// One node as the tape recorded it: what the `trace` and `dot` modules read.
pub(crate) struct Recorded {
    /// The node's id: its position in recording order.
    pub(crate) id: u32,
    /// The op that made the node.
    pub(crate) op: Op,
    /// The ids of the node's inputs, in order.
    pub(crate) inputs: Vec<u32>,
    /// True when gradients flow through the node.
    pub(crate) requires_grad: bool,
    /// The node's value from the forward pass.
    pub(crate) value: Tensor,
}

/// Every node recorded up to and including `output`, in recording order (element `k` is
/// node `k`), copied out of the tape in one borrow.
pub(crate) fn recorded(output: Var<'_>) -> Vec<Recorded> {
    let inner = output.tape().inner.borrow();
    (0..=output.id())
        .map(|id| {
            let node = &inner.nodes[id as usize];
            Recorded {
                id,
                op: inner.op(node),
                inputs: inner.inputs(node).to_vec(),
                requires_grad: node.requires_grad(),
                value: inner.value(id).to_tensor(),
            }
        })
        .collect()
}

/// What a scalar node of unary op `f` stores beside dy/da: its parameter, 0 for an op
/// without one, or `None` when the parameter is not one number (then the op takes the
/// general path).
#[inline(always)]
fn scalar_param<U: Unary>(f: &U) -> Option<f64> {
    if std::mem::size_of::<U>() == 0 {
        Some(0.0)
    } else {
        f.param()
    }
}

/// The parameter of unary scalar node `node`'s op, read from the tape's `aux`: stored
/// after its derivative when the op has one, else 0.
#[inline(always)]
fn unary_param(node: &Node, aux: &[f64]) -> f64 {
    if node.code.has_params() {
        aux[node.args[1] as usize + 1]
    } else {
        0.0
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Partials;

    #[test]
    fn a_node_takes_12_bytes_and_a_variable_two_words() {
        assert_eq!(std::mem::size_of::<Node>(), 12);
        assert_eq!(std::mem::size_of::<Var<'_>>(), 16);
    }

    /// A chain of scalar ops of every kind, with a stretch in a no-grad scope: its
    /// output's value and the gradients of its two inputs.
    fn mixed_chain(tape: &Tape, steps: usize) -> (f64, f64, f64) {
        let (x, y) = (tape.var(0.75), tape.var(-1.25));
        let mut z = x;
        for i in 0..steps {
            z = (z * y).sin() + x;
            z = (z - y).tanh() / (x + 2.0);
            if i % 7 == 3 {
                let _frozen = tape.no_grad();
                z = z * 0.5 + (z * z).exp();
            }
        }
        let grads = z.backward().unwrap();
        (
            z.item().unwrap(),
            grads.wrt_scalar(x).unwrap(),
            grads.wrt_scalar(y).unwrap(),
        )
    }

    /// Scalar nodes appended without checks (below `fast_end`) and through the checked
    /// appends record the same computation, bit for bit: on a new tape, which grows
    /// its arenas as it goes and so leaves the fast path at each growth; on a tape
    /// cleared and recorded again, where nearly every node takes the fast path; and
    /// on a tape that stopped being dense, where none does.
    #[test]
    fn the_fast_path_and_the_checked_appends_record_the_same_tape() {
        let steps = 300;
        let mut fresh = Tape::new();
        let grown = mixed_chain(&fresh, steps);
        let nodes = fresh.len();
        assert!(nodes > 2000);
        fresh.clear();
        assert!(
            fresh.fast_end.get() >= nodes,
            "a cleared tape keeps its room"
        );
        let again = mixed_chain(&fresh, steps);
        assert_eq!(fresh.len(), nodes);

        let sparse = Tape::new();
        let _t = sparse.tensor(&Tensor::vector([1.0, 2.0]));
        assert!(!sparse.inner.borrow().dense());
        let kept = mixed_chain(&sparse, steps);
        assert_eq!(sparse.fast_end.get(), 0);

        let bits = |(v, gx, gy): (f64, f64, f64)| [v.to_bits(), gx.to_bits(), gy.to_bits()];
        assert_eq!(bits(grown), bits(again));
        assert_eq!(bits(grown), bits(kept));
        // The no-grad stretches cut the path through `z`, so a gradient flows only
        // through the last stretch: still not zero.
        assert!(grown.1 != 0.0 && grown.2 != 0.0);
    }

    /// A no-grad scope ends the fast path until the next node, and nodes recorded in
    /// it (on either path) carry no gradient; the first node after it takes the fast
    /// path again once the checked append has set `fast_end`.
    #[test]
    fn a_no_grad_scope_leaves_the_fast_path_and_its_nodes_frozen() {
        let tape = Tape::with_capacity(16, 16);
        let x = tape.var(3.0);
        let a = x * x;
        assert!(tape.fast_end.get() > tape.len());
        let frozen = {
            let _guard = tape.no_grad();
            assert_eq!(tape.fast_end.get(), 0);
            x.sin() * x
        };
        assert!(a.requires_grad() && !frozen.requires_grad());
        let b = a + frozen;
        assert!(b.requires_grad());
        assert!(
            tape.fast_end.get() > tape.len(),
            "set again after the scope"
        );
        let c = b * x;
        let grads = c.backward().unwrap();
        // c = (x² + k)·x with k = sin(x)·x frozen: dc/dx = 3x² + k.
        let k = 3.0f64.sin() * 3.0;
        assert_eq!(frozen.item().unwrap(), k);
        assert!((grads.wrt_scalar(x).unwrap() - (27.0 + k)).abs() < 1e-12);
    }

    /// Scalar nodes that take no gradient. Past the fast path (here in a no-grad scope)
    /// they are frozen, and backward passes them by although later nodes write into
    /// their slots; on the fast path from constants only they keep their kinds, and
    /// backward runs through them into constants alone. Replay recomputes both.
    #[test]
    fn nodes_without_gradient_stop_it_frozen_or_not() {
        let tape = Tape::with_capacity(64, 64);
        let (x, c) = (tape.var(0.5), tape.constant(2.0));
        // The first node grows the arenas; the next ones take the fast path.
        let w = x + 1.0;
        assert!(tape.fast_end.get() > tape.len() + 3);
        let (p, s) = (c * c, c.sin());
        let k = p * s + c;
        let (e, frozen) = {
            let _guard = tape.no_grad();
            let e = (x * x).exp();
            (e, e - x)
        };
        let y = x * k + frozen * x + frozen * 3.0 + w;
        let kind = |v: Var<'_>| tape.inner.borrow().nodes[v.id() as usize].kind;
        assert_eq!(
            [kind(p), kind(s), kind(k)],
            [Kind::Product, Kind::Unary, Kind::Sum]
        );
        assert_eq!(
            [kind(e), kind(frozen)],
            [Kind::FrozenUnary, Kind::FrozenBinary]
        );
        assert!(Kind::Unary.is_unary() && Kind::FrozenUnary.is_unary());
        assert!(!Kind::FrozenBinary.is_unary() && !Kind::Product.is_unary());

        // y = x·k + f·x + 3f + x + 1 with k and f = exp(x²) − x constants:
        // dy/dx = k + f + 1.
        let check = |v: f64| {
            let (kv, f) = (4.0 * 2.0f64.sin() + 2.0, (v * v).exp() - v);
            assert_eq!(y.item().unwrap(), v * kv + f * v + f * 3.0 + (v + 1.0));
            let grads = y.backward().unwrap();
            assert!((grads.wrt_scalar(x).unwrap() - (kv + f + 1.0)).abs() < 1e-12);
            for v in [c, p, s, k, e, frozen] {
                assert_eq!(grads.wrt_scalar(v).unwrap(), 0.0);
            }
        };
        check(0.5);
        x.set_value(&Tensor::scalar(-1.25)).unwrap();
        tape.replay();
        check(-1.25);
    }

    /// A tape that stops being dense partway (a tensor, then an empty tensor, after
    /// scalars) keeps every node's slot: values, gradients, replay and reading the
    /// slots back all agree with the same function computed by hand. Its list of slots
    /// has room for as many nodes as the tape was made for.
    #[test]
    fn slots_survive_the_end_of_a_dense_recording() {
        let tape = Tape::with_capacity(64, 64);
        let (a, b) = (tape.var(1.5), tape.var(-0.5));
        let p = a * b; // dense so far: slots 0, 1, 2
        assert!(tape.inner.borrow().dense());
        let t = tape.tensor(&Tensor::vector([2.0, 3.0, 4.0]));
        let empty = tape.constant_tensor(&Tensor::new(vec![], [0]).unwrap());
        assert!(!tape.inner.borrow().dense());
        let s = (t * p).sum();
        let y = (s + a).sin() * b; // scalars again, after the tensor's three slots
        let expected = |a: f64, b: f64| ((9.0 * a * b + a).sin() * b, 9.0 * b + 1.0);
        let check = |a_value: f64, b_value: f64| {
            let (value, inner) = expected(a_value, b_value);
            assert!((y.item().unwrap() - value).abs() < 1e-12);
            let grads = y.backward().unwrap();
            let outer = (9.0 * a_value * b_value + a_value).cos() * b_value;
            assert!((grads.wrt_scalar(a).unwrap() - outer * inner).abs() < 1e-12);
            let gt = grads.wrt(t).unwrap();
            assert!((gt.data()[1] - outer * a_value * b_value).abs() < 1e-12);
            assert_eq!(grads.wrt(empty).unwrap().data(), &[] as &[f64]);
        };
        check(1.5, -0.5);
        a.set_scalar(0.25).unwrap();
        tape.set_scalars(&[b], &[2.0]).unwrap();
        tape.replay();
        check(0.25, 2.0);
        let inner = tape.inner.borrow();
        assert!(inner.offsets.capacity() >= 64);
        let slots: Vec<usize> = (0..inner.nodes.len()).map(|id| inner.offset(id)).collect();
        assert_eq!(&slots[..5], &[0, 1, 2, 3, 6]);
        assert_eq!(slots.len(), inner.nodes.len());
    }

    /// Backward's partials of each binary kind are the op's own rule, bit for bit: as
    /// the sweep's arm for the kind computes them, and through the sweep itself, with
    /// a gradient of `c` flowing in.
    #[test]
    fn binary_kinds_follow_the_rules_partials() {
        // The partials each kind's arm of the sweep uses, against the rule's form. That
        // every binary op's arm gives its rule's bits is tested op by op, through every
        // path, in tests/ops.rs.
        assert_eq!((Kind::Sum as u8, Kind::Difference as u8), (0, 1));
        let arms = [
            (Partials::Constant(1.0, 1.0), Kind::Sum),
            (Partials::Constant(1.0, -1.0), Kind::Difference),
            (Partials::Swapped, Kind::Product),
            (Partials::Constant(2.0, 1.0), Kind::Binary),
            (Partials::Computed, Kind::Binary),
        ];
        for (partials, kind) in arms {
            assert_eq!(Kind::binary(partials), kind);
            for (a, b) in [(0.5, -2.0), (-1.25, 0.1), (0.0, -0.0)] {
                let arm = match kind {
                    Kind::Sum => Some((1.0, 1.0)),
                    Kind::Difference => Some((1.0, -1.0)),
                    Kind::Product => Some((b, a)),
                    _ => None,
                };
                if let Some(arm) = arm {
                    assert_eq!(arm, partials.at(a, b), "{kind:?}");
                }
            }
        }
    }

    #[test]
    fn a_leaf_block_is_checked_against_its_tape_and_recording() {
        let mut tape = Tape::new();
        let a = tape.tensor(&Tensor::vector([1.0, 2.0]));
        let b = tape.var(3.0);
        let block = tape.leaf_block(0, 2).unwrap();
        // A constant, or a node that is not a leaf, breaks a block.
        let _ = tape.constant(1.0);
        assert!(tape.leaf_block(0, 3).is_none());
        let y = (a * b).sum();
        assert!(tape.leaf_block(0, 4).is_none());

        // Values in, gradients out, in one block each.
        let chunks = [&[0.5, -1.0][..], &[2.0][..]];
        tape.set_leaf_block(&block, chunks.into_iter()).unwrap();
        tape.replay();
        assert_eq!(y.item().unwrap(), -1.0);
        let grads = y.backward().unwrap();
        assert_eq!(grads.leaf_block(&block).unwrap(), [2.0, 2.0, -0.5]);

        // Too few values, or too many: an error, and the values stay.
        let short = [&[9.0][..], &[9.0][..]];
        assert!(tape.set_leaf_block(&block, short.into_iter()).is_err());
        let long = [&[9.0, 9.0, 9.0][..], &[9.0][..]];
        assert!(tape.set_leaf_block(&block, long.into_iter()).is_err());
        assert_eq!(b.item().unwrap(), 2.0);

        // Another tape's block, or an earlier recording's, is refused.
        let other = Tape::new();
        let _ = other.tensor(&Tensor::vector([1.0, 2.0]));
        let _ = other.var(3.0);
        assert!(other.set_leaf_block(&block, chunks.into_iter()).is_err());
        let other_block = other.leaf_block(0, 2).unwrap();
        assert!(grads.leaf_block(&other_block).is_err());
        tape.clear();
        let _ = tape.tensor(&Tensor::vector([1.0, 2.0]));
        let _ = tape.var(3.0);
        assert!(tape.set_leaf_block(&block, chunks.into_iter()).is_err());
        assert!(grads.leaf_block(&tape.leaf_block(0, 2).unwrap()).is_err());
    }
}
