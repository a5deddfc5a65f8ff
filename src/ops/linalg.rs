//! Linear algebra: `matmul` (2-D, batched over leading axes, and with 1-D operands as
//! NumPy multiplies them), `transpose`, `permute` and `reshape`.
//!
//! Matrix products run through tapegrad's own blocked kernel (`linalg/kernel.rs`:
//! packed panels, an AVX-512 or AVX2/FMA register tile where the processor has one,
//! large products shared with one helper thread); its `C ← A·B + β·C` form lets
//! backward add `gy·bᵀ` and `aᵀ·gy` straight into the gradient arena, with the
//! transposes expressed as strides rather than copies. The kernel packs into per-thread buffers that it keeps,
//! so after a warm-up step a product allocates nothing. Products too small for blocking
//! to pay (fewer than [`SMALL_PRODUCT`] multiply-adds) use loops that keep up to four
//! sums in registers, compiled for each transpose flag.

mod kernel;

use super::{sum_to, Op};
use crate::error::{Error, Result};
use crate::function::{Function, InputGrads};
use crate::shape::{BroadcastIndex, Shape};
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;
use smallvec::SmallVec;

/// Below this many multiply-adds (m·k·n) a product uses simple loops: packing panels
/// for the blocked kernel costs more than it saves on tiny matrices.
pub const SMALL_PRODUCT: usize = 4096;

/// `c ← op(a)·op(b) + beta·c` for row-major matrices, where `op(a)` is `[m, k]` and
/// `op(b)` is `[k, n]`. When `a_transposed`, `a` holds `op(a)ᵀ`, stored `[k, m]`; when
/// `b_transposed`, `b` holds `op(b)ᵀ`, stored `[n, k]`.
///
/// # Panics
/// If a slice is shorter than its matrix.
#[inline]
pub(crate) fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f64],
    a_transposed: bool,
    b: &[f64],
    b_transposed: bool,
    beta: f64,
    c: &mut [f64],
) {
    // The narrow products of small networks go straight to their own loop: one look-up
    // and one call, so that their cost is the arithmetic.
    if (1..=4).contains(&m) && (1..=4).contains(&n) && m * k * n < SMALL_PRODUCT {
        let transposes = usize::from(a_transposed) * 2 + usize::from(b_transposed);
        return BLOCKS[transposes][(m - 1) * 4 + n - 1](k, a, b, beta, c);
    }
    gemm_any((m, k, n), a, a_transposed, b, b_transposed, beta, c);
}

/// [`gemm`] for every other shape.
#[inline(never)]
fn gemm_any(
    (m, k, n): (usize, usize, usize),
    a: &[f64],
    a_transposed: bool,
    b: &[f64],
    b_transposed: bool,
    beta: f64,
    c: &mut [f64],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m * k * n >= SMALL_PRODUCT {
        return kernel::gemm((m, k, n), a, a_transposed, b, b_transposed, beta, c);
    }
    let (a, b, c) = (&a[..m * k], &b[..k * n], &mut c[..m * n]);
    match (a_transposed, b_transposed) {
        (false, false) => small::<false, false>((m, k, n), a, b, beta, c),
        (true, false) => small::<true, false>((m, k, n), a, b, beta, c),
        (false, true) => small::<false, true>((m, k, n), a, b, beta, c),
        (true, true) => small::<true, true>((m, k, n), a, b, beta, c),
    }
}

/// A product of a `c` of at most 4×4 ([`block`]), given its depth, operands, β and `c`.
type BlockFn = fn(usize, &[f64], &[f64], f64, &mut [f64]);

/// [`block`] for every shape up to 4×4, by the transpose flags (`a` then `b`) and then
/// by (m − 1)·4 + n − 1.
static BLOCKS: [[BlockFn; 16]; 4] = {
    macro_rules! shapes {
        ($at:literal, $bt:literal) => {
            [
                block::<$at, $bt, 1, 1>,
                block::<$at, $bt, 1, 2>,
                block::<$at, $bt, 1, 3>,
                block::<$at, $bt, 1, 4>,
                block::<$at, $bt, 2, 1>,
                block::<$at, $bt, 2, 2>,
                block::<$at, $bt, 2, 3>,
                block::<$at, $bt, 2, 4>,
                block::<$at, $bt, 3, 1>,
                block::<$at, $bt, 3, 2>,
                block::<$at, $bt, 3, 3>,
                block::<$at, $bt, 3, 4>,
                block::<$at, $bt, 4, 1>,
                block::<$at, $bt, 4, 2>,
                block::<$at, $bt, 4, 3>,
                block::<$at, $bt, 4, 4>,
            ]
        };
    }
    [
        shapes!(false, false),
        shapes!(false, true),
        shapes!(true, false),
        shapes!(true, true),
    ]
};

/// A small product, up to four columns of `c` at a time, with the transposes known at
/// compile time, and `c`'s width too when it is at most 4 (a network's narrow layers).
#[inline(always)]
fn small<const AT: bool, const BT: bool>(
    mkn: (usize, usize, usize),
    a: &[f64],
    b: &[f64],
    beta: f64,
    c: &mut [f64],
) {
    match mkn.2 {
        1 => columns::<AT, BT, 1, 1>(mkn, a, b, beta, c, 0),
        2 => columns::<AT, BT, 2, 2>(mkn, a, b, beta, c, 0),
        3 => columns::<AT, BT, 3, 3>(mkn, a, b, beta, c, 0),
        4 => columns::<AT, BT, 4, 4>(mkn, a, b, beta, c, 0),
        n => {
            let mut j0 = 0;
            while j0 + 4 <= n {
                columns::<AT, BT, 4, 0>(mkn, a, b, beta, c, j0);
                j0 += 4;
            }
            match n - j0 {
                1 => columns::<AT, BT, 1, 0>(mkn, a, b, beta, c, j0),
                2 => columns::<AT, BT, 2, 0>(mkn, a, b, beta, c, j0),
                3 => columns::<AT, BT, 3, 0>(mkn, a, b, beta, c, j0),
                _ => {}
            }
        }
    }
}

/// Columns `j0..j0 + W` of a small product, their sums in registers. `N` is the width
/// of `c` when it is known at compile time, else 0. Each element sums its products in
/// the order p = 0, 1, …, k − 1, starting from 0, and then adds `beta·c`: the order
/// the product has always used, so results keep their bits.
#[inline(always)]
fn columns<const AT: bool, const BT: bool, const W: usize, const N: usize>(
    (m, k, n): (usize, usize, usize),
    a: &[f64],
    b: &[f64],
    beta: f64,
    c: &mut [f64],
    j0: usize,
) {
    let n = if N == 0 { n } else { N };
    // With `b` transposed, column j of op(b) is row j of `b`.
    let b_rows: [&[f64]; W] = std::array::from_fn(|jj| {
        if BT {
            &b[(j0 + jj) * k..(j0 + jj + 1) * k]
        } else {
            &[]
        }
    });
    for i in 0..m {
        let mut sums = [0.0; W];
        if BT {
            // (With k = 0, `a` is empty and the row too.)
            let a_row = if AT {
                &a[i.min(a.len())..]
            } else {
                &a[i * k..(i + 1) * k]
            };
            for p in 0..k {
                let aip = if AT { a_row[p * m] } else { a_row[p] };
                for (sum, row) in sums.iter_mut().zip(&b_rows) {
                    *sum += aip * row[p];
                }
            }
        } else {
            // Row p of `b` (and, transposed, row p of `a`) as whole chunks: no bounds
            // check inside the loop.
            let mut add = |aip: f64, b_row: &[f64]| {
                for (sum, &bv) in sums.iter_mut().zip(&b_row[j0..j0 + W]) {
                    *sum += aip * bv;
                }
            };
            if AT {
                for (a_row, b_row) in a.chunks_exact(m).zip(b.chunks_exact(n)) {
                    add(a_row[i], b_row);
                }
            } else {
                for (&aip, b_row) in a[i * k..(i + 1) * k].iter().zip(b.chunks_exact(n)) {
                    add(aip, b_row);
                }
            }
        }
        let row = &mut c[i * n + j0..i * n + j0 + W];
        for (slot, sum) in row.iter_mut().zip(sums) {
            *slot = if beta == 0.0 { sum } else { sum + beta * *slot };
        }
    }
}

/// A whole M×N product of depth `k`, its M·N sums in registers: one pass down the
/// depth, loading each number of `a` and `b` once, instead of a pass per row of `c`.
/// Each element sums its products in the order p = 0, 1, …, k − 1 from 0, then adds
/// `beta·c`, as [`columns`] does: the same bits. Out of line, one small function per
/// shape, so that each is compiled on its own.
#[inline(never)]
fn block<const AT: bool, const BT: bool, const M: usize, const N: usize>(
    k: usize,
    a: &[f64],
    b: &[f64],
    beta: f64,
    c: &mut [f64],
) {
    let (a, b, c) = (&a[..M * k], &b[..k * N], &mut c[..M * N]);
    // Rows of `a` (when not transposed) and of `b` (when transposed), each cut to
    // exactly `k` numbers, so that indexing them below `k` needs no check.
    let a_rows = rows::<M>(if AT { &[] } else { a }, k);
    let b_rows = rows::<N>(if BT { b } else { &[] }, k);
    let mut sums = [[0.0; N]; M];
    for p in 0..k {
        let mut av = [0.0; M];
        for (i, v) in av.iter_mut().enumerate() {
            *v = if AT { a[p * M + i] } else { a_rows[i][p] };
        }
        let mut bv = [0.0; N];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = if BT { b_rows[j][p] } else { b[p * N + j] };
        }
        for (row, &aip) in sums.iter_mut().zip(&av) {
            for (sum, &bpj) in row.iter_mut().zip(&bv) {
                *sum += aip * bpj;
            }
        }
    }
    let sums = sums.as_flattened();
    if beta == 0.0 {
        c.copy_from_slice(sums);
    } else {
        for (slot, sum) in c.iter_mut().zip(sums) {
            *slot = sum + beta * *slot;
        }
    }
}

/// The first `R` rows of `k` numbers of `x` (all empty when `x` is).
#[inline(always)]
fn rows<const R: usize>(x: &[f64], k: usize) -> [&[f64]; R] {
    let mut rows = [&x[..0]; R];
    if !x.is_empty() {
        for (i, row) in rows.iter_mut().enumerate() {
            *row = &x[i * k..][..k];
        }
    }
    rows
}

/// `y = a·b` for plain matrices `[m, k]·[k, n]`, overwriting `y`: the product
/// [`Matmul`] computes, so the same bits.
#[inline]
pub(crate) fn product(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], y: &mut [f64]) {
    gemm((m, k, n), a, false, b, false, 0.0, y);
}

/// Adds the gradient of `a` in `y = a·b` (`[m, k]·[k, n]`), gy·bᵀ, into `ga`.
#[inline]
pub(crate) fn add_grad_a((m, k, n): (usize, usize, usize), gy: &[f64], b: &[f64], ga: &mut [f64]) {
    gemm((m, n, k), gy, false, b, true, 1.0, ga);
}

/// Adds the gradient of `b` in `y = a·b` (`[m, k]·[k, n]`), aᵀ·gy, into `gb`.
#[inline]
pub(crate) fn add_grad_b((m, k, n): (usize, usize, usize), a: &[f64], gy: &[f64], gb: &mut [f64]) {
    gemm((k, m, n), a, true, gy, false, 1.0, gb);
}

fn two_inputs<'s>(name: &str, inputs: &[&'s Shape]) -> Result<(&'s Shape, &'s Shape)> {
    match inputs {
        [a, b] => Ok((a, b)),
        _ => Err(Error::Arity {
            op: name.to_string(),
            expected: 2,
            got: inputs.len(),
        }),
    }
}

fn one_input<'s>(name: &str, inputs: &[&'s Shape]) -> Result<&'s Shape> {
    match inputs {
        [x] => Ok(x),
        _ => Err(Error::Arity {
            op: name.to_string(),
            expected: 1,
            got: inputs.len(),
        }),
    }
}

// ---------------------------------------------------------------------------------------
/// How a batched product `[…, m, k]·[…, k, n]` is laid out.
struct Layout {
    m: usize,
    k: usize,
    n: usize,
    a_batch: Shape,
    b_batch: Shape,
    batch: Shape,
}

/// `(m, k, n)` of a product of two plain matrices `[m, k]·[k, n]`: the common case,
/// which needs no batch layout.
#[inline]
pub(crate) fn plain_product(a: &Shape, b: &Shape) -> Option<(usize, usize, usize)> {
    match (a.dims(), b.dims()) {
        (&[m, k], &[k2, n]) if k == k2 => Some((m, k, n)),
        _ => None,
    }
}

impl Layout {
    fn new(a: &Shape, b: &Shape) -> Result<Layout> {
        let invalid = |reason: String| Error::Invalid {
            op: "matmul".into(),
            reason,
        };
        if a.rank() < 2 || b.rank() < 2 {
            return Err(invalid(format!(
                "both operands need at least two axes, got shapes {a} and {b}"
            )));
        }
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = (a.dims()[ra - 2], a.dims()[ra - 1]);
        let (k2, n) = (b.dims()[rb - 2], b.dims()[rb - 1]);
        if k != k2 {
            return Err(invalid(format!(
                "shapes {a} and {b} cannot be multiplied: {k} columns against {k2} rows"
            )));
        }
        let a_batch = Shape::new(&a.dims()[..ra - 2]);
        let b_batch = Shape::new(&b.dims()[..rb - 2]);
        let batch = a_batch.broadcast(&b_batch).ok_or_else(|| {
            invalid(format!(
                "the batch axes of shapes {a} and {b} cannot be broadcast together"
            ))
        })?;
        Ok(Layout {
            m,
            k,
            n,
            a_batch,
            b_batch,
            batch,
        })
    }

    fn output(&self) -> Shape {
        // Inline storage: no heap allocation up to rank four.
        let mut dims: SmallVec<[usize; 4]> = SmallVec::from_slice(self.batch.dims());
        dims.extend([self.m, self.n]);
        Shape::new(&dims)
    }

    /// Calls `f(o, ia, ib)` for every product: output matrix `o` is `a`'s matrix `ia`
    /// times `b`'s matrix `ib`.
    fn for_each(&self, f: impl FnMut(usize, usize, usize)) {
        BroadcastIndex::new(&self.a_batch, &self.b_batch, &self.batch).for_each(f);
    }
}

/// The matrix product `y = a·b` of `a: [m, k]` and `b: [k, n]`, giving `[m, n]`.
///
/// Leading axes are batch axes and broadcast like NumPy's `matmul`: `[B, m, k]·[k, n]`
/// multiplies each of the B matrices by the same `b`. Both operands need at least two
/// axes. ∂L/∂a = gy·bᵀ and ∂L/∂b = aᵀ·gy (summed over batches that were broadcast).
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let a = tape.tensor(&Tensor::matrix(&[[1.0, 2.0], [3.0, 4.0]])?);
/// let b = tape.tensor(&Tensor::matrix(&[[5.0], [6.0]])?);
/// let y = a.matmul(b);
/// assert_eq!(y.value(), Tensor::matrix(&[[17.0], [39.0]])?);
/// let g = y.sum().backward()?;
/// assert_eq!(g.wrt(a)?, Tensor::matrix(&[[5.0, 6.0], [5.0, 6.0]])?); // gy·bᵀ
/// assert_eq!(g.wrt(b)?, Tensor::matrix(&[[4.0], [6.0]])?); // aᵀ·gy
/// assert!(b.try_matmul(b).is_err()); // [2, 1]·[2, 1]
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Matmul;

impl Function for Matmul {
    fn name(&self) -> &str {
        "matmul"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let (a, b) = two_inputs("matmul", inputs)?;
        // Two plain matrices need no batch layout.
        if let Some((m, _, n)) = plain_product(a, b) {
            return Ok(Shape::new(&[m, n]));
        }
        Ok(Layout::new(a, b)?.output())
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let (a, b) = (inputs[0], inputs[1]);
        if let Some((m, k, n)) = plain_product(a.shape(), b.shape()) {
            product(m, k, n, a.data(), b.data(), out);
            return;
        }
        let l = Layout::new(a.shape(), b.shape()).expect("checked when recorded");
        let (m, k, n) = (l.m, l.k, l.n);
        if l.b_batch.is_scalar() {
            // One right-hand matrix: the batches of `a` stack into one tall product.
            let rows = l.batch.numel() * m;
            gemm((rows, k, n), a.data(), false, b.data(), false, 0.0, out);
            return;
        }
        let (a, b) = (a.data(), b.data());
        l.for_each(|o, ia, ib| {
            gemm(
                (m, k, n),
                &a[ia * m * k..],
                false,
                &b[ib * k * n..],
                false,
                0.0,
                &mut out[o * m * n..],
            )
        });
    }
    // d/da (a·b) = gy·bᵀ, d/db (a·b) = aᵀ·gy
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (a, b) = (inputs[0], inputs[1]);
        let (av, bv, gy) = (a.data(), b.data(), gy.data());
        // A constant operand (the data of a layer) needs no gradient: skip its product.
        let (need_a, need_b) = (gx.needs(0), gx.needs(1));
        if let Some((m, k, n)) = plain_product(a.shape(), b.shape()) {
            if need_a {
                add_grad_a((m, k, n), gy, bv, gx.get_mut(0));
            }
            if need_b {
                add_grad_b((m, k, n), av, gy, gx.get_mut(1));
            }
            return Ok(());
        }
        let l = Layout::new(a.shape(), b.shape())?;
        let (m, k, n) = (l.m, l.k, l.n);
        if l.b_batch.is_scalar() {
            let rows = l.batch.numel() * m;
            if need_a {
                add_grad_a((rows, k, n), gy, bv, gx.get_mut(0));
            }
            if need_b {
                add_grad_b((rows, k, n), av, gy, gx.get_mut(1));
            }
            return Ok(());
        }
        if need_a {
            let ga = gx.get_mut(0);
            l.for_each(|o, ia, ib| {
                gemm(
                    (m, n, k),
                    &gy[o * m * n..],
                    false,
                    &bv[ib * k * n..],
                    true,
                    1.0,
                    &mut ga[ia * m * k..],
                )
            });
        }
        if need_b {
            let gb = gx.get_mut(1);
            l.for_each(|o, ia, ib| {
                gemm(
                    (k, m, n),
                    &av[ia * m * k..],
                    true,
                    &gy[o * m * n..],
                    false,
                    1.0,
                    &mut gb[ib * k * n..],
                )
            });
        }
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let (a, b) = (inputs[0], inputs[1]);
        let ga = gy.try_matmul(b.try_transpose()?)?;
        let gb = a.try_transpose()?.try_matmul(gy)?;
        Ok(vec![sum_to(ga, &a.shape())?, sum_to(gb, &b.shape())?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        let t = |data: &[f64], shape: &[usize]| Tensor::new(data.to_vec(), shape).expect("fits");
        let six = [0.5, -1.0, 2.0, 1.5, 0.25, -2.0];
        let twelve = [
            0.3, -0.7, 1.1, 2.0, -1.5, 0.4, 0.9, 0.1, -0.6, 1.3, -2.2, 0.8,
        ];
        vec![
            vec![
                t(&six, &[2, 3]),
                t(&[1.0, -0.5, 2.0, 0.75, -1.25, 0.5], &[3, 2]),
            ],
            vec![t(&twelve, &[2, 2, 3]), t(&six, &[3, 2])],
            vec![t(&twelve, &[2, 2, 3]), t(&twelve, &[2, 3, 2])],
        ]
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0), (-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The matrix product `self · other`, batched over leading axes (see [`Matmul`]),
    /// with NumPy's rule for a 1-D operand: a vector on the left is a row `[1, k]`, on
    /// the right a column `[k, 1]`, and the axis it gained is removed from the product.
    /// So `[m, k]·[k]` is `[m]` (matrix–vector), `[k]·[k, n]` is `[n]` (vector–matrix),
    /// `[k]·[k]` is the dot product, a scalar, and `[B, m, k]·[k]` is `[B, m]`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let a = tape.tensor(&Tensor::matrix(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])?);
    /// let v = tape.tensor(&Tensor::vector([1.0, -1.0]));
    /// let av = a.matmul(v); // [3, 2]·[2] = [3]
    /// assert_eq!(av.value(), Tensor::vector([-1.0, -1.0, -1.0]));
    /// let g = av.sum().backward()?;
    /// assert_eq!(g.wrt(v)?, Tensor::vector([9.0, 12.0])); // aᵀ·1
    /// let u = tape.tensor(&Tensor::vector([1.0, 0.0, 2.0]));
    /// assert_eq!(u.matmul(a).value(), Tensor::vector([11.0, 14.0])); // [3]·[3, 2]
    /// assert_eq!(v.matmul(v).value(), Tensor::scalar(2.0)); // the dot product
    /// assert!(u.try_matmul(v).is_err()); // [3]·[2]
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When the shapes cannot be multiplied, with the error's message;
    /// [`try_matmul`](Var::try_matmul) returns the error.
    #[track_caller]
    pub fn matmul(self, other: Var<'t>) -> Var<'t> {
        super::or_panic(self.try_matmul(other))
    }

    /// The matrix product `self · other`, batched over leading axes, with NumPy's rule
    /// for 1-D operands (see [`matmul`](Var::matmul)); an error when the shapes cannot
    /// be multiplied, with nothing recorded.
    #[track_caller]
    pub fn try_matmul(self, other: Var<'t>) -> Result<Var<'t>> {
        let (a, b) = (self.shape(), other.shape());
        let (a_vector, b_vector) = (a.rank() == 1, b.rank() == 1);
        if !(a_vector || b_vector) || !std::ptr::eq(self.tape(), other.tape()) {
            return self.record(Op::Matmul(Matmul), &[self, other]);
        }
        // A vector on the left is a row, on the right a column; the product's shape is
        // checked before anything is recorded.
        let a2 = if a_vector {
            Shape::new(&[1, a.dims()[0]])
        } else {
            a.clone()
        };
        let b2 = if b_vector {
            Shape::new(&[b.dims()[0], 1])
        } else {
            b.clone()
        };
        let product = Matmul
            .output_shape(&[&a2, &b2])
            .map_err(|_| Error::Invalid {
                op: "matmul".into(),
                reason: format!(
                    "shapes {a} and {b} cannot be multiplied (a vector is taken as a row on \
                 the left, a column on the right)"
                ),
            })?;
        let mut dims: SmallVec<[usize; 4]> = SmallVec::from_slice(product.dims());
        let r = dims.len();
        match (a_vector, b_vector) {
            (true, true) => dims.truncate(r - 2),
            (true, false) => {
                dims.remove(r - 2);
            }
            _ => dims.truncate(r - 1),
        }
        let x = if a_vector {
            self.try_reshape(a2)?
        } else {
            self
        };
        let w = if b_vector {
            other.try_reshape(b2)?
        } else {
            other
        };
        x.record(Op::Matmul(Matmul), &[x, w])?
            .try_reshape(Shape::new(&dims))
    }
}

// ---------------------------------------------------------------------------------------
/// Swaps the last two axes: `y[…, j, i] = x[…, i, j]` (the matrix transpose, done for
/// every matrix of a batch). The gradient is the upstream gradient transposed back.
/// The input needs at least two axes.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])?);
/// let y = x.transpose();
/// assert_eq!(y.value(), Tensor::matrix(&[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])?);
/// assert!(tape.tensor(&Tensor::vector([1.0, 2.0])).try_transpose().is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Transpose;

/// `(batch, rows, cols)` of a shape seen as a stack of matrices.
fn matrices(shape: &Shape) -> (usize, usize, usize) {
    let r = shape.rank();
    let (rows, cols) = (shape.dims()[r - 2], shape.dims()[r - 1]);
    (shape.dims()[..r - 2].iter().product(), rows, cols)
}

impl Function for Transpose {
    fn name(&self) -> &str {
        "transpose"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let x = one_input("transpose", inputs)?;
        if x.rank() < 2 {
            return Err(Error::Invalid {
                op: "transpose".into(),
                reason: format!("needs at least two axes, got shape {x}"),
            });
        }
        let mut dims: SmallVec<[usize; 4]> = SmallVec::from_slice(x.dims());
        let r = dims.len();
        dims.swap(r - 2, r - 1);
        Ok(Shape::new(&dims))
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        let (batch, rows, cols) = matrices(inputs[0].shape());
        for b in 0..batch {
            let (x, y) = (&x[b * rows * cols..], &mut out[b * rows * cols..]);
            for i in 0..rows {
                for j in 0..cols {
                    y[j * rows + i] = x[i * cols + j];
                }
            }
        }
    }
    // d/dx_ij y_ji = 1: the gradient is gy transposed back
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (batch, rows, cols) = matrices(inputs[0].shape());
        let (gy, g) = (gy.data(), gx.get_mut(0));
        for b in 0..batch {
            let (gy, g) = (&gy[b * rows * cols..], &mut g[b * rows * cols..]);
            for i in 0..rows {
                for j in 0..cols {
                    g[i * cols + j] += gy[j * rows + i];
                }
            }
        }
        Ok(())
    }
    backward_via_accumulate!();
    fn backward_graph<'t>(
        &self,
        _inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        Ok(vec![gy.try_transpose()?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        vec![
            vec![Tensor::new(vec![0.5, -1.0, 2.0, 3.5, 0.25, -2.0], [2, 3]).expect("fits")],
            vec![
                Tensor::new((0..12).map(|v| v as f64 * 0.3 - 1.0).collect(), [2, 3, 2])
                    .expect("fits"),
            ],
        ]
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The last two axes swapped (see [`Transpose`]).
    ///
    /// # Panics
    ///
    /// Below two axes, with the error's message; [`try_transpose`](Var::try_transpose)
    /// returns the error.
    #[track_caller]
    pub fn transpose(self) -> Var<'t> {
        super::or_panic(self.try_transpose())
    }

    /// The last two axes swapped (see [`Transpose`]); an error below two axes.
    #[track_caller]
    pub fn try_transpose(self) -> Result<Var<'t>> {
        self.record(Op::Transpose(Transpose), &[self])
    }
}

// ---------------------------------------------------------------------------------------
/// Reorders the axes: output axis k is input axis `axes[k]`, so `y[i₀, …, iₙ₋₁] =
/// x[j]` with `j[axes[k]] = iₖ` (PyTorch's `permute`, NumPy's `transpose(axes)`).
/// `axes` holds each of `0..rank` once. The gradient is the upstream gradient permuted
/// back by the inverse order. [`Transpose`] is the permutation that swaps the last two
/// axes.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::new((0..6).map(f64::from).collect(), [1, 2, 3])?);
/// let y = x.permute(&[2, 0, 1]);
/// assert_eq!(y.shape().dims(), &[3, 1, 2]);
/// assert_eq!(y.value().data(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
/// let w = tape.constant_tensor(&Tensor::new((1..=6).map(f64::from).collect(), [3, 1, 2])?);
/// // Each element's gradient is the weight its value was moved next to.
/// let g = (y * w).sum().backward()?.wrt(x)?;
/// assert_eq!(g.data(), &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
/// assert!(x.try_permute(&[0, 1]).is_err()); // not one axis each
/// assert!(x.try_permute(&[0, 1, 1]).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Permute {
    axes: [u8; 16],
    rank: u8,
}

impl Permute {
    /// The permutation `axes`; an error unless it holds each of `0..axes.len()` once,
    /// or for more than 16 axes (the order is kept inline in the op).
    pub fn new(axes: &[usize]) -> Result<Permute> {
        let mut inline = [0u8; 16];
        if axes.len() > inline.len() {
            return Err(Error::Invalid {
                op: "permute".into(),
                reason: format!("{} axes: permute takes at most 16", axes.len()),
            });
        }
        let mut seen: SmallVec<[bool; 8]> = SmallVec::from_elem(false, axes.len());
        for &a in axes {
            match seen.get_mut(a) {
                Some(slot) if !*slot => *slot = true,
                _ => {
                    return Err(Error::Invalid {
                        op: "permute".into(),
                        reason: format!(
                            "axes {axes:?} must hold each of 0..{} exactly once",
                            axes.len()
                        ),
                    })
                }
            }
        }
        for (slot, &a) in inline.iter_mut().zip(axes) {
            *slot = a as u8; // below 16, checked above
        }
        Ok(Permute {
            axes: inline,
            rank: axes.len() as u8,
        })
    }

    /// The order of the axes: output axis k is input axis `axes()[k]`.
    pub fn axes(&self) -> SmallVec<[usize; 4]> {
        self.axes[..self.rank as usize]
            .iter()
            .map(|&a| usize::from(a))
            .collect()
    }
}

impl Default for Permute {
    fn default() -> Self {
        Permute::new(&[2, 0, 1]).expect("a permutation")
    }
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> SmallVec<[usize; 4]> {
    let mut strides: SmallVec<[usize; 4]> = SmallVec::from_elem(1, dims.len());
    for k in (0..dims.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * dims[k + 1];
    }
    strides
}

/// Calls `f(out, inp)` for every element of a permuted tensor: its position `out` in
/// the output and the position `inp` of the input element it came from.
fn for_each_permuted(x: &Shape, axes: &[usize], mut f: impl FnMut(usize, usize)) {
    let x_strides = strides(x.dims());
    let dims: SmallVec<[usize; 4]> = axes.iter().map(|&a| x.dims()[a]).collect();
    // The input stride of each output axis.
    let step: SmallVec<[usize; 4]> = axes.iter().map(|&a| x_strides[a]).collect();
    let mut index: SmallVec<[usize; 4]> = SmallVec::from_elem(0, dims.len());
    let mut inp = 0;
    for out in 0..x.numel() {
        f(out, inp);
        // The next output position, the last axis fastest.
        for k in (0..dims.len()).rev() {
            index[k] += 1;
            inp += step[k];
            if index[k] < dims[k] {
                break;
            }
            inp -= step[k] * dims[k];
            index[k] = 0;
        }
    }
}

impl Function for Permute {
    fn name(&self) -> &str {
        "permute"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let x = one_input("permute", inputs)?;
        let axes = self.axes();
        if axes.len() != x.rank() {
            return Err(Error::Invalid {
                op: "permute".into(),
                reason: format!(
                    "axes {:?} give an order for {} axes, but the shape {x} has {}",
                    &axes[..],
                    axes.len(),
                    x.rank()
                ),
            });
        }
        let dims: SmallVec<[usize; 4]> = axes.iter().map(|&a| x.dims()[a]).collect();
        Ok(Shape::new(&dims))
    }
    fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
        let x = inputs[0].data();
        for_each_permuted(inputs[0].shape(), &self.axes(), |o, i| out[o] = x[i]);
    }
    // d/dx_j y_i = 1 where element j moved to i: the gradient is gy permuted back
    fn backward_accumulate(
        &self,
        inputs: &[TensorRef<'_>],
        _y: TensorRef<'_>,
        gy: TensorRef<'_>,
        gx: &mut InputGrads<'_>,
    ) -> Result<()> {
        let (gy, g) = (gy.data(), gx.get_mut(0));
        for_each_permuted(inputs[0].shape(), &self.axes(), |o, i| g[i] += gy[o]);
        Ok(())
    }
    backward_via_accumulate!();
    // gy permuted by the inverse order
    fn backward_graph<'t>(
        &self,
        _inputs: &[Var<'t>],
        _y: Var<'t>,
        gy: Var<'t>,
    ) -> Result<Vec<Var<'t>>> {
        let axes = self.axes();
        let mut inverse: SmallVec<[usize; 4]> = SmallVec::from_elem(0, axes.len());
        for (k, &a) in axes.iter().enumerate() {
            inverse[a] = k;
        }
        Ok(vec![gy.try_permute(&inverse)?])
    }
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        vec![vec![Tensor::new(
            (0..24).map(|v| v as f64 * 0.3 - 3.0).collect(),
            [2, 3, 4],
        )
        .expect("fits")]]
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The axes reordered: output axis k is input axis `axes[k]` (see [`Permute`]).
    ///
    /// # Panics
    ///
    /// Unless `axes` holds each of `0..rank` once (at most 16 axes), with the error's
    /// message; [`try_permute`](Var::try_permute) returns the error.
    #[track_caller]
    pub fn permute(self, axes: &[usize]) -> Var<'t> {
        super::or_panic(self.try_permute(axes))
    }

    /// The axes reordered (see [`Permute`]); an error unless `axes` holds each of
    /// `0..rank` once (at most 16 axes).
    #[track_caller]
    pub fn try_permute(self, axes: &[usize]) -> Result<Var<'t>> {
        let op = Permute::new(axes)?;
        self.record(Op::Permute(op), &[self])
    }
}

// ---------------------------------------------------------------------------------------
/// The same values in row-major order under a new shape with as many elements. The
/// gradient is the upstream gradient read back under the input's shape.
///
/// [`Var::reshape`] takes a shape of any number of axes. Up to four, each shorter than
/// 2³², this op keeps it inline, so that recording such a reshape allocates nothing and
/// the op stays as small as the others; a longer shape is recorded as a [`ReshapeAny`],
/// which keeps it behind a shared pointer.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
/// let y = x.reshape([2, 3]);
/// assert_eq!(y.value(), Tensor::matrix(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])?);
/// assert!(x.try_reshape([4, 2]).is_err());
/// let five = x.reshape([1, 1, 1, 1, 6]); // any rank
/// assert_eq!(five.shape().dims(), &[1, 1, 1, 1, 6]);
/// assert_eq!(five.sum().backward()?.wrt(x)?, Tensor::vector([1.0; 6]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Reshape {
    dims: [u32; 4],
    rank: u8,
}

impl Reshape {
    /// A reshape to `shape`, as a registered op keeps it: an error for more than four
    /// axes, an axis of 2³² or more, or a shape too large for any tensor.
    /// [`Var::reshape`] takes any shape (it records a longer one as a [`ReshapeAny`]).
    pub fn new(shape: &Shape) -> Result<Reshape> {
        shape.check_size("reshape")?;
        let mut dims = [0u32; 4];
        if shape.rank() > dims.len() {
            return Err(Error::Invalid {
                op: "reshape".into(),
                reason: format!("the new shape {shape} has more than four axes"),
            });
        }
        for (slot, &d) in dims.iter_mut().zip(shape.dims()) {
            *slot = u32::try_from(d).map_err(|_| Error::Invalid {
                op: "reshape".into(),
                reason: format!("the new shape {shape} has an axis of 2³² or more"),
            })?;
        }
        Ok(Reshape {
            dims,
            rank: shape.rank() as u8,
        })
    }

    /// The new shape.
    pub fn shape(&self) -> Shape {
        let dims: SmallVec<[usize; 4]> = self.dims[..self.rank as usize]
            .iter()
            .map(|&d| d as usize)
            .collect();
        Shape::new(&dims)
    }
}

impl Default for Reshape {
    fn default() -> Self {
        Reshape {
            dims: [3, 2, 0, 0],
            rank: 2,
        }
    }
}

/// The forward and backward of a reshape, whatever keeps the new shape.
fn reshape_output(x: &Shape, shape: Shape) -> Result<Shape> {
    if x.numel() != shape.numel() {
        return Err(Error::Invalid {
            op: "reshape".into(),
            reason: format!(
                "shape {x} holds {} values, shape {shape} holds {}",
                x.numel(),
                shape.numel()
            ),
        });
    }
    Ok(shape)
}

fn add_into(g: &mut [f64], gy: &[f64]) {
    for (g, &gy) in g.iter_mut().zip(gy) {
        *g += gy;
    }
}

/// A reshape to a shape of more than four axes, or with an axis of 2³² or more: the
/// same rule as [`Reshape`], keeping its shape behind a shared pointer, recorded as a
/// user function (the ops a node holds stay three words).
#[derive(Clone, Debug)]
pub struct ReshapeAny {
    shape: Shape,
}

/// The rules that [`Reshape`] and [`ReshapeAny`] share: the values move unchanged,
/// each gradient element back to the same row-major position.
macro_rules! reshape_rules {
    () => {
        fn forward(&self, inputs: &[TensorRef<'_>], out: &mut [f64]) {
            out.copy_from_slice(inputs[0].data());
        }
        // d/dx_k y_k = 1 (same row-major position)
        fn backward_accumulate(
            &self,
            _inputs: &[TensorRef<'_>],
            _y: TensorRef<'_>,
            gy: TensorRef<'_>,
            gx: &mut InputGrads<'_>,
        ) -> Result<()> {
            add_into(gx.get_mut(0), gy.data());
            Ok(())
        }
        backward_via_accumulate!();
        fn backward_graph<'t>(
            &self,
            inputs: &[Var<'t>],
            _y: Var<'t>,
            gy: Var<'t>,
        ) -> Result<Vec<Var<'t>>> {
            Ok(vec![gy.try_reshape(inputs[0].shape())?])
        }
    };
}

impl Function for ReshapeAny {
    fn name(&self) -> &str {
        "reshape"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        reshape_output(one_input("reshape", inputs)?, self.shape.clone())
    }
    reshape_rules!();
}

impl Function for Reshape {
    fn name(&self) -> &str {
        "reshape"
    }
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        reshape_output(one_input("reshape", inputs)?, self.shape())
    }
    reshape_rules!();
    fn check_at(&self) -> Vec<Vec<Tensor>> {
        let six = vec![0.5, -1.0, 2.0, 3.5, 0.25, -2.0];
        vec![
            vec![Tensor::new(six.clone(), [2, 3]).expect("fits")],
            vec![Tensor::vector(six)],
        ]
    }
    fn domain(&self) -> Vec<(f64, f64)> {
        vec![(-3.0, 3.0)]
    }
}

impl<'t> Var<'t> {
    /// The same values under `shape` (see [`Reshape`]).
    ///
    /// # Panics
    ///
    /// When the number of elements differs, with the error's message;
    /// [`try_reshape`](Var::try_reshape) returns the error.
    #[track_caller]
    pub fn reshape(self, shape: impl Into<Shape>) -> Var<'t> {
        super::or_panic(self.try_reshape(shape))
    }

    /// The same values under `shape` (see [`Reshape`]); an error when the number of
    /// elements differs.
    #[track_caller]
    pub fn try_reshape(self, shape: impl Into<Shape>) -> Result<Var<'t>> {
        let shape = shape.into();
        shape.check_size("reshape")?;
        match Reshape::new(&shape) {
            Ok(op) => self.record(Op::Reshape(op), &[self]),
            // Longer shapes go through the general path, behind a shared pointer.
            Err(_) => self
                .tape()
                .apply(&std::sync::Arc::new(ReshapeAny { shape }), &[self]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gemm;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transposed(rows: usize, cols: usize, x: &[f64]) -> Vec<f64> {
        let mut t = vec![0.0; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = x[i * cols + j];
            }
        }
        t
    }

    /// Both the blocked kernel and the small loop, with every transpose flag and with
    /// accumulation, agree with the textbook triple loop.
    #[test]
    #[cfg_attr(miri, ignore = "safe arithmetic, checked natively; slow to interpret")]
    fn gemm_matches_the_triple_loop() {
        for &(m, k, n) in &[(3, 4, 5), (1, 1, 1), (17, 33, 20), (40, 9, 31)] {
            let a: Vec<f64> = (0..m * k).map(|v| ((v * 7) % 11) as f64 - 5.0).collect();
            let b: Vec<f64> = (0..k * n).map(|v| ((v * 5) % 13) as f64 * 0.5).collect();
            let want = naive(m, k, n, &a, &b);
            let (at, bt) = (transposed(m, k, &a), transposed(k, n, &b));
            for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
                let aa = if a_t { &at } else { &a };
                let bb = if b_t { &bt } else { &b };
                let mut c = vec![1.0; m * n];
                gemm((m, k, n), aa, a_t, bb, b_t, 1.0, &mut c);
                for (got, want) in c.iter().zip(&want) {
                    assert!((got - (want + 1.0)).abs() < 1e-9, "{m}x{k}x{n} {a_t} {b_t}");
                }
            }
        }
    }

    /// The small loop, at every width from 1 to 9 (those it knows at compile time, and
    /// column blocks with each remainder), every transpose flag and β, gives exactly the
    /// bits of a triple loop that sums each element in order from 0 and then adds β·c.
    #[test]
    #[cfg_attr(miri, ignore = "safe arithmetic, checked natively; slow to interpret")]
    fn small_products_keep_the_bits_of_an_in_order_loop() {
        for (m, k) in [(1, 1), (4, 2), (2, 4), (3, 5), (5, 1), (2, 0), (4, 7)] {
            for n in 1..=9 {
                let a: Vec<f64> = (0..m * k).map(|v| (v as f64 * 0.7).sin()).collect();
                let b: Vec<f64> = (0..k * n).map(|v| (v as f64 * 0.3).cos()).collect();
                let (at, bt) = (transposed(m, k, &a), transposed(k, n, &b));
                for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
                    for beta in [0.0, 1.0, 0.5] {
                        let start: Vec<f64> = (0..m * n).map(|v| v as f64 / 3.0).collect();
                        let mut want = start.clone();
                        for i in 0..m {
                            for j in 0..n {
                                let mut sum = 0.0;
                                for p in 0..k {
                                    sum += a[i * k + p] * b[p * n + j];
                                }
                                let slot = &mut want[i * n + j];
                                *slot = if beta == 0.0 { sum } else { sum + beta * *slot };
                            }
                        }
                        let mut c = start;
                        let aa = if a_t { &at } else { &a };
                        let bb = if b_t { &bt } else { &b };
                        gemm((m, k, n), aa, a_t, bb, b_t, beta, &mut c);
                        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&c), bits(&want), "{m}x{k}x{n} {a_t} {b_t} β={beta}");
                    }
                }
            }
        }
    }

    /// Products large enough for the blocked kernel's edge tiles, its several depth and
    /// width blocks and (all but the first) the helper thread agree with the triple
    /// loop, for every transpose flag and β.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "products of 10^6 multiply-adds take too long to interpret"
    )]
    fn blocked_products_match_the_triple_loop() {
        let shapes = [
            (3, 300, 600),
            (130, 300, 70),
            (7, 600, 1100),
            (128, 784, 12),
            (1, 5000, 300),
        ];
        for &(m, k, n) in &shapes {
            let a: Vec<f64> = (0..m * k).map(|v| ((v * 7) % 11) as f64 - 5.0).collect();
            let b: Vec<f64> = (0..k * n).map(|v| ((v * 5) % 13) as f64 * 0.5).collect();
            let want = naive(m, k, n, &a, &b);
            let (at, bt) = (transposed(m, k, &a), transposed(k, n, &b));
            for (a_t, b_t, beta) in [
                (false, false, 0.0),
                (true, false, 1.0),
                (false, true, 0.5),
                (true, true, 1.0),
            ] {
                let aa = if a_t { &at } else { &a };
                let bb = if b_t { &bt } else { &b };
                let mut c = vec![f64::NAN; m * n];
                if beta != 0.0 {
                    c.fill(2.0);
                }
                gemm((m, k, n), aa, a_t, bb, b_t, beta, &mut c);
                for (got, want) in c.iter().zip(&want) {
                    let want = want + if beta == 0.0 { 0.0 } else { 2.0 * beta };
                    assert!(
                        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "{m}x{k}x{n} {a_t} {b_t} {beta}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Several threads multiplying at once share one helper thread: whichever gets it
    /// splits its product, the others multiply alone, and every result is right.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "60 products of 10^6 multiply-adds take too long to interpret"
    )]
    fn products_on_several_threads_at_once_agree() {
        let (m, k, n) = (64, 200, 100);
        let a: Vec<f64> = (0..m * k).map(|v| ((v * 7) % 11) as f64 - 5.0).collect();
        let b: Vec<f64> = (0..k * n).map(|v| ((v * 5) % 13) as f64 * 0.5).collect();
        let want = naive(m, k, n, &a, &b);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let mut c = vec![0.0; m * n];
                        gemm((m, k, n), &a, false, &b, false, 0.0, &mut c);
                        assert_eq!(c, want);
                    }
                });
            }
        });
    }

    /// Every node carries its op: the parameters of the matrix ops (a reshape's target
    /// shape included) must not make the op, and so every node, larger than
    /// three words.
    #[test]
    fn matrix_ops_keep_the_op_small() {
        assert!(std::mem::size_of::<crate::ops::Op>() <= 24);
        let shape = crate::Shape::from([2, 1, 3]);
        assert_eq!(super::Reshape::new(&shape).unwrap().shape(), shape);
    }

    #[test]
    fn empty_inner_axis_scales_c_by_beta() {
        let mut c = vec![2.0; 6];
        gemm((2, 0, 3), &[], false, &[], false, 0.0, &mut c);
        assert_eq!(c, vec![0.0; 6]);
    }
}
