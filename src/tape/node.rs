//! The node encoding: what one recorded operation takes on the tape.

use crate::ops::{OpCode, Partials};
use crate::shape::Shape;
use indexmap::IndexSet;
use rustc_hash::FxBuildHasher;

/// The interned shapes of a tape, each with its number of elements. Shapes are short
/// lists of small numbers, so a fast non-cryptographic hash suffices.
pub(super) struct ShapeSet {
    pub(super) set: IndexSet<Shape, FxBuildHasher>,
    pub(super) numels: Vec<usize>,
}

impl ShapeSet {
    /// A set holding the scalar shape, as id `SCALAR`.
    pub(super) fn new() -> ShapeSet {
        let mut shapes = ShapeSet {
            set: IndexSet::default(),
            numels: Vec::new(),
        };
        shapes.intern(&Shape::scalar());
        shapes
    }

    /// The number of elements of shape `id`.
    #[inline]
    pub(super) fn numel(&self, id: ShapeId) -> usize {
        self.numels[id as usize]
    }

    /// The id of `shape`, interning it if it is new.
    pub(super) fn intern(&mut self, shape: &Shape) -> ShapeId {
        let id = match self.set.get_index_of(shape) {
            Some(id) => id,
            None => {
                self.numels.push(shape.numel());
                self.set.insert_full(shape.clone()).0
            }
        };
        ShapeId::try_from(id).expect("a tape holds at most 2^32 shapes")
    }

    /// The bytes the set holds: the map's entries (each shape with its hash), its
    /// hash table (an index and a control byte per bucket, of which at most 7 in 8
    /// are used), and the numbers of elements.
    pub(super) fn heap_bytes(&self) -> usize {
        let word = std::mem::size_of::<usize>();
        let entries = self.set.capacity();
        let buckets = (entries * 8).div_ceil(7).next_power_of_two();
        entries * (std::mem::size_of::<Shape>() + word)
            + buckets * (word + 1)
            + self.numels.capacity() * word
    }
}

impl std::ops::Index<usize> for ShapeSet {
    type Output = Shape;
    #[inline]
    fn index(&self, id: usize) -> &Shape {
        &self.set[id]
    }
}

/// Index of a node on its tape.
pub(crate) type NodeId = u32;

/// Index of an interned shape; the scalar shape is always 0.
pub(super) type ShapeId = u32;

pub(super) const SCALAR: ShapeId = 0;

/// How the tape treats a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// A binary op of two scalars whose rule ([`Binary::PARTIALS`](crate::ops::Binary::PARTIALS)) gives partials of
    /// 1 and 1 (`a + b`). Sums and differences are numbered 0 and 1, first, so that the
    /// sweep tells them from the rest by one comparison and takes the second partial's
    /// sign from the number's bit.
    Sum,
    /// A binary op of two scalars whose rule gives partials of 1 and −1 (`a − b`).
    Difference,
    /// A built-in elementwise op of one scalar: its derivative (and the op's parameter,
    /// if it has one) is stored in `Inner::aux`.
    Unary,
    /// A binary op of two scalars whose rule gives the partials `b` and `a` (`a · b`),
    /// read from the values.
    Product,
    /// Any other built-in elementwise op of two scalars: backward computes its partials
    /// from the values of its inputs and output, by its op code.
    Binary,
    /// An input or a constant.
    Leaf,
    /// Everything else (tensors, reductions, user functions): the op sits in
    /// `Inner::ops` and runs its own rules.
    General,
    /// A unary scalar node that takes no gradient, recorded past the fast path (in a
    /// no-grad scope, or from inputs that take none): backward passes it by, so that
    /// a gradient written into its slot flows no further. Numbered so that it differs
    /// from `Unary` by one bit.
    FrozenUnary = 10,
    /// A binary scalar node that takes no gradient, recorded so.
    FrozenBinary = 12,
}

impl Kind {
    /// The kind of a scalar node of kind `self` that takes no gradient.
    pub(super) fn frozen(self) -> Kind {
        match self {
            Kind::Unary => Kind::FrozenUnary,
            _ => Kind::FrozenBinary,
        }
    }

    /// True for unary scalar nodes, frozen or not.
    #[inline(always)]
    pub(super) fn is_unary(self) -> bool {
        // Unary and FrozenUnary differ by bit 3 alone: one test in replay's walk.
        self as u8 & 7 == Kind::Unary as u8
    }

    /// The kind of a scalar node of a binary op whose partials have the form
    /// `partials` (the op's [`Binary::PARTIALS`](crate::ops::Binary::PARTIALS)): partials of 1 and ±1 make a sum or a
    /// difference, swapped operands a product, so that backward reads no op code for
    /// them; any other op is `Binary`, whose partials its op computes.
    #[inline(always)]
    pub(super) const fn binary(partials: Partials) -> Kind {
        match partials {
            Partials::Constant(1.0, 1.0) => Kind::Sum,
            Partials::Constant(1.0, -1.0) => Kind::Difference,
            Partials::Swapped => Kind::Product,
            _ => Kind::Binary,
        }
    }
}

pub(super) const REQUIRES_GRAD: u8 = 1;
pub(super) const IS_SCALAR: u8 = 2;

/// One recorded operation: 12 bytes, so that a binary scalar node with its value and
/// gradient takes 28, and a unary one 36 with its stored derivative.
///
/// Where the node's value (and gradient) starts in the arenas is not stored in it: on a
/// dense tape (see [`Inner::dense`](super::Inner::dense)) it is the node's id, and the other tapes keep
/// every node's slot in `Inner::offsets` (see [`slot_of`](super::slot_of)).
///
/// What the two words of `args` hold depends on the kind:
/// - a binary scalar node: its two inputs. Its partial derivatives are not stored:
///   each binary op's are cheap to compute again from the values (`b` and `a` for a
///   product), which backward does, by op code.
/// - a unary scalar node: its input, then where its numbers start in `Inner::aux`: dy/da
///   computed when it was recorded (a sine's cosine comes with the sine), followed by
///   the op's parameter (the `c` of `x + c`) for an op that has one.
/// - a leaf: 0, then its shape id.
/// - a general node: where its op sits in `Inner::ops` (and its plan and inputs in
///   `Inner::plans` and `Inner::wide`), then its shape id.
#[derive(Clone, Copy)]
pub(super) struct Node {
    pub(super) args: [u32; 2],
    pub(super) code: OpCode,
    pub(super) kind: Kind,
    pub(super) flags: u8,
}

impl Node {
    /// A scalar leaf.
    #[inline(always)]
    pub(super) fn scalar_leaf(flags: u8) -> Node {
        Node {
            args: [0, SCALAR],
            code: OpCode::Leaf,
            kind: Kind::Leaf,
            flags,
        }
    }

    /// True for inputs and constants.
    #[inline(always)]
    pub(super) fn is_leaf(&self) -> bool {
        self.kind == Kind::Leaf
    }

    /// True if gradients flow into this node.
    #[inline(always)]
    pub(super) fn requires_grad(&self) -> bool {
        self.flags & REQUIRES_GRAD != 0
    }

    /// True if the node's value is a scalar (shape id `SCALAR`).
    #[inline(always)]
    pub(super) fn is_scalar(&self) -> bool {
        self.flags & IS_SCALAR != 0
    }

    /// The node's interned shape.
    #[inline(always)]
    pub(super) fn shape(&self) -> ShapeId {
        match self.kind {
            Kind::Leaf | Kind::General => self.args[1],
            _ => SCALAR,
        }
    }

    /// The two words of `args` as stored: for a scalar node, its first input and its
    /// second input (binary) or where its numbers start in `Inner::aux` (unary).
    #[inline(always)]
    pub(super) fn args(&self) -> [u32; 2] {
        self.args
    }

    /// Where a general node's op, plan and inputs sit.
    #[inline(always)]
    pub(super) fn general_index(&self) -> usize {
        self.args[0] as usize
    }
}

/// The inputs of the general nodes, one list each, end to end.
#[derive(Default)]
pub(super) struct InputLists {
    pub(super) ids: Vec<NodeId>,
    /// Where each list starts in `ids`, and its length.
    pub(super) ranges: Vec<[u32; 2]>,
}

impl InputLists {
    /// The inputs of the general node whose op sits at `index`.
    #[inline]
    pub(super) fn get(&self, index: usize) -> &[NodeId] {
        let [start, len] = self.ranges[index];
        &self.ids[start as usize..(start + len) as usize]
    }

    pub(super) fn push(&mut self, inputs: &[NodeId]) {
        let start = self.ids.len();
        u32::try_from(start + inputs.len())
            .expect("a tape holds at most 2^32 inputs of general nodes");
        self.ids.extend_from_slice(inputs);
        // Both below 2^32, as their sum is.
        self.ranges.push([start as u32, inputs.len() as u32]);
    }

    pub(super) fn clear(&mut self) {
        self.ids.clear();
        self.ranges.clear();
    }

    /// The number of lists, and of ids in them: where [`truncate`](Self::truncate)
    /// goes back to.
    pub(super) fn lens(&self) -> [usize; 2] {
        [self.ranges.len(), self.ids.len()]
    }

    /// Forgets the lists pushed since `lens` was taken.
    pub(super) fn truncate(&mut self, [ranges, ids]: [usize; 2]) {
        self.ranges.truncate(ranges);
        self.ids.truncate(ids);
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.ids.capacity() * std::mem::size_of::<NodeId>()
            + self.ranges.capacity() * std::mem::size_of::<[u32; 2]>()
    }
}
