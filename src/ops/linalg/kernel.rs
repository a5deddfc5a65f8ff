//! The blocked matrix product behind [`Matmul`](super::Matmul): `C ← A·B + β·C` for
//! row-major `C`, with `A` and `B` read through strides (so a transposed operand needs
//! no copy), allocation-free once warm.
//!
//! The loops follow the usual cache blocking. `B` is packed into panels of `NR`
//! columns and `A` into panels of `MR` rows, at most `KC` deep; a register tile of
//! MR×NR accumulators then runs down the shared depth (an AVX2/FMA tile where the
//! processor has it, a portable loop elsewhere). The packing buffers are per thread,
//! start on a cache line and grow to their working size on the first products, so that
//! a training loop's later steps allocate nothing.
//!
//! A large product is shared with the process-wide helper thread of
//! [`parallel`](crate::parallel): `B` is packed once, and both threads take row blocks
//! of `C` from a common queue until none is left.
//!
//! The tile is the one place here that needs `unsafe`: intrinsics behind a run-time
//! feature check, 3–4× the portable tile on W3's 128×784·784×256 and 784×128·128×256
//! products.

use crate::parallel::{has_helper, lock, run_shared};
use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile.
const NR: usize = 8;
/// The deepest block of the shared dimension packed at once.
const KC: usize = 256;
/// The tallest block of `A` packed at once.
const MC: usize = 96;
/// The widest block of `B` packed at once.
const NC: usize = 512;
/// Products of at least this many multiply-adds are shared with the helper thread.
/// W3's narrow products (128×256·256×10 and the two of its backward, 327,680 each)
/// are shared too: each takes tens of microseconds on one thread, and together with
/// the small ops around them they left the helper idle long enough to fall asleep in
/// every step. Sharing them made the step 2–5% faster than with a bound of 2²⁰ (the
/// median ratio within rounds of one program alternating the two bounds: 0.95–0.98).
const PARALLEL_PRODUCT: usize = 1 << 18;
/// Numbers of packed `B` the parallel product packs before it computes (4 MiB).
const SHARED_B: usize = 1 << 19;

/// A matrix read through strides: element (i, j) is `data[i·rows + j·cols]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
}

impl Strided<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.rows + j * self.cols]
    }
}

/// `C ← op(A)·op(B) + β·C` for row-major `c: [m, n]`, where `op(A)` is `[m, k]` and
/// `op(B)` is `[k, n]`. `a` holds `op(A)`, or its transpose `[k, m]` when
/// `a_transposed`; `b` holds `op(B)`, or its transpose `[n, k]` when `b_transposed`.
/// With β = 0, `C`'s old contents are never read (NaN included).
///
/// # Panics
/// If a slice is shorter than its matrix.
pub(super) fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f64],
    a_transposed: bool,
    b: &[f64],
    b_transposed: bool,
    beta: f64,
    c: &mut [f64],
) {
    let c = &mut c[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for v in c.iter_mut() {
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
        return;
    }
    let (a_rows, a_cols) = if a_transposed { (1, m) } else { (k, 1) };
    let (b_rows, b_cols) = if b_transposed { (1, k) } else { (n, 1) };
    let a = Strided {
        data: &a[..m * k],
        rows: a_rows,
        cols: a_cols,
    };
    let b = Strided {
        data: &b[..k * n],
        rows: b_rows,
        cols: b_cols,
    };
    let product = Product {
        m,
        k,
        n,
        a,
        b,
        beta,
    };
    if m * k * n >= PARALLEL_PRODUCT && has_helper() {
        product.parallel(c);
    } else {
        product.serial(c);
    }
}

/// One call's operands and sizes.
#[derive(Clone, Copy)]
struct Product<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: Strided<'a>,
    b: Strided<'a>,
    beta: f64,
}

/// `len` split into blocks of at most `max`, all about as long, each a multiple of
/// `unit`: the block length.
fn even_blocks(len: usize, max: usize, unit: usize) -> usize {
    len.div_ceil(len.div_ceil(max)).div_ceil(unit) * unit
}

thread_local! {
    /// This thread's packed panels of `A` (and of `B`, in a serial product).
    static PANELS: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
    /// The packed `B` that a parallel product started on this thread shares.
    static SHARED_PANELS: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// `len` numbers of `buffer` starting at a cache-line boundary, so that the tile's
/// 32-byte loads of packed `B` never straddle two lines. Grows `buffer` when it is too
/// short (never shrinks it).
fn aligned(buffer: &mut Vec<f64>, len: usize) -> &mut [f64] {
    const LINE: usize = 64;
    let slack = LINE / std::mem::size_of::<f64>();
    if buffer.len() < len + slack {
        buffer.resize(len + slack, 0.0);
    }
    let start = buffer.as_ptr().align_offset(LINE).min(slack);
    &mut buffer[start..start + len]
}

impl Product<'_> {
    /// The whole product on this thread.
    fn serial(&self, c: &mut [f64]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let kc = even_blocks(k, KC, 1);
        let mc = even_blocks(m, MC, MR);
        let nc = n.min(NC).div_ceil(NR) * NR;
        PANELS.with(|panels| {
            let mut panels = panels.borrow_mut();
            // B first: its panels start on a cache line.
            let (b_panels, a_panels) = aligned(&mut panels, kc * (nc + mc)).split_at_mut(kc * nc);
            for j0 in (0..n).step_by(NC) {
                let cols = (n - j0).min(NC);
                for p0 in (0..k).step_by(kc) {
                    let depth = (k - p0).min(kc);
                    let b_block = &mut b_panels[..depth * cols.div_ceil(NR) * NR];
                    pack_b(self.b, p0, depth, j0, cols, b_block);
                    let beta = if p0 == 0 { self.beta } else { 1.0 };
                    for i0 in (0..m).step_by(mc) {
                        let rows = (m - i0).min(mc);
                        let a_block = &mut a_panels[..depth * rows.div_ceil(MR) * MR];
                        pack_a(self.a, i0, rows, p0, depth, a_block);
                        let c_rows = &mut c[i0 * n..(i0 + rows) * n];
                        multiply_packed(depth, a_block, b_block, beta, c_rows, n, j0, cols);
                    }
                }
            }
        });
    }

    /// The product shared with the helper thread: for each block of `B` (packed once,
    /// its depth blocks shared out between the threads), both threads take row blocks
    /// of `C`.
    fn parallel(&self, c: &mut [f64]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let kc = even_blocks(k, KC, 1);
        // An even number of row blocks of whole tiles, as equal as they come, so that
        // the two threads finish together.
        let blocks = m.div_ceil(MC).max(2).next_multiple_of(2);
        let nc = n.min(NC).div_ceil(NR) * NR;
        // Depth packed at once: whole KC blocks, as many as fit in SHARED_B.
        let depth_at_once = (SHARED_B / (kc * nc)).max(1) * kc;
        // Room for the packed `A` of the largest row block, whichever thread takes
        // which block: sized by the blocks this thread happened to get, its panels
        // would grow (allocate) in a later product whenever it got a larger one.
        let tiles = m.div_ceil(MR);
        let largest_block = tiles.div_ceil(blocks.min(tiles)) * MR;
        PANELS.with(|panels| {
            aligned(&mut panels.borrow_mut(), kc * largest_block);
        });
        SHARED_PANELS.with(|shared| {
            let mut shared = shared.borrow_mut();
            let shared = aligned(&mut shared, depth_at_once.min(k.div_ceil(kc) * kc) * nc);
            for j0 in (0..n).step_by(NC) {
                let cols = (n - j0).min(NC);
                let panel_cols = cols.div_ceil(NR) * NR;
                for p0 in (0..k).step_by(depth_at_once) {
                    let p1 = (p0 + depth_at_once).min(k);
                    let b_blocks = &mut shared[..(p1 - p0).div_ceil(kc) * kc * panel_cols];
                    self.pack_b_shared(b_blocks, (p0, p1), kc, (j0, cols));
                    let b_blocks: &[f64] = b_blocks;
                    let queue = Mutex::new(RowBlocks::new(&mut *c, n, blocks));
                    let work = || loop {
                        let next = lock(&queue).next();
                        let Some((i0, c_rows)) = next else { break };
                        self.row_block(i0, c_rows, b_blocks, (p0, p1), kc, (j0, cols));
                    };
                    run_shared(&work);
                }
            }
        });
    }

    /// Packs rows `p0..p1` and columns `j0..j0 + cols` of `B` into `b_blocks`, one
    /// block of `kc` rows after another, the blocks shared out between the threads.
    fn pack_b_shared(
        &self,
        b_blocks: &mut [f64],
        (p0, p1): (usize, usize),
        kc: usize,
        (j0, cols): (usize, usize),
    ) {
        let block_len = kc * cols.div_ceil(NR) * NR;
        let queue = Mutex::new(b_blocks.chunks_mut(block_len).enumerate());
        let pack = || loop {
            let next = lock(&queue).next();
            let Some((block, panels)) = next else { break };
            let depth_start = p0 + block * kc;
            let depth = (p1 - depth_start).min(kc);
            pack_b(self.b, depth_start, depth, j0, cols, panels);
        };
        // Run through the helper even when there is one block to pack: it wakes now,
        // and is ready for the row blocks that follow.
        run_shared(&pack);
    }

    /// Rows `i0..` of `C` (`c_rows`, whole rows) for depth `p0..p1` and columns
    /// `j0..j0 + cols`, against the packed `b_blocks`.
    fn row_block(
        &self,
        i0: usize,
        c_rows: &mut [f64],
        b_blocks: &[f64],
        (p0, p1): (usize, usize),
        kc: usize,
        (j0, cols): (usize, usize),
    ) {
        let n = self.n;
        let rows = c_rows.len() / n;
        let block_len = kc * cols.div_ceil(NR) * NR;
        PANELS.with(|panels| {
            let mut panels = panels.borrow_mut();
            let panels = aligned(&mut panels, kc * rows.div_ceil(MR) * MR);
            for (block, depth_start) in (p0..p1).step_by(kc).enumerate() {
                let depth = (p1 - depth_start).min(kc);
                let beta = if depth_start == 0 { self.beta } else { 1.0 };
                let a_block = &mut panels[..depth * rows.div_ceil(MR) * MR];
                pack_a(self.a, i0, rows, depth_start, depth, a_block);
                let b_block = &b_blocks[block * block_len..][..depth * cols.div_ceil(NR) * NR];
                multiply_packed(depth, a_block, b_block, beta, c_rows, n, j0, cols);
            }
        });
    }
}

/// The rows of `C` cut into `blocks` blocks of whole MR-row tiles, as equal as whole
/// tiles allow: yields each block's first row and its rows.
struct RowBlocks<'c> {
    rest: &'c mut [f64],
    n: usize,
    tiles: usize,
    blocks: usize,
    block: usize,
    row: usize,
}

impl<'c> RowBlocks<'c> {
    fn new(c: &'c mut [f64], n: usize, blocks: usize) -> Self {
        let tiles = (c.len() / n).div_ceil(MR);
        RowBlocks {
            rest: c,
            n,
            tiles,
            blocks: blocks.min(tiles),
            block: 0,
            row: 0,
        }
    }
}

impl<'c> Iterator for RowBlocks<'c> {
    type Item = (usize, &'c mut [f64]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.block == self.blocks {
            return None;
        }
        self.block += 1;
        let end =
            (self.tiles * self.block / self.blocks * MR).min(self.row + self.rest.len() / self.n);
        let rows = end - self.row;
        let (this, rest) = std::mem::take(&mut self.rest).split_at_mut(rows * self.n);
        self.rest = rest;
        let start = self.row;
        self.row = end;
        Some((start, this))
    }
}

/// Packs rows `i0..i0 + rows` and columns `p0..p0 + depth` of `A` into panels of MR
/// rows: panel after panel, each `depth` groups of MR numbers; missing rows are zero.
fn pack_a(a: Strided<'_>, i0: usize, rows: usize, p0: usize, depth: usize, out: &mut [f64]) {
    for (panel, out) in out.chunks_exact_mut(MR * depth).enumerate() {
        let r0 = i0 + panel * MR;
        let live = (rows - panel * MR).min(MR);
        pack_panel::<MR>(a, r0, live, p0, depth, out);
    }
}

/// Packs rows `p0..p0 + depth` and columns `j0..j0 + cols` of `B` into panels of NR
/// columns: panel after panel, each `depth` groups of NR numbers; missing columns are
/// zero.
fn pack_b(b: Strided<'_>, p0: usize, depth: usize, j0: usize, cols: usize, out: &mut [f64]) {
    // A panel of B's columns is a panel of Bᵀ's rows.
    let bt = Strided {
        data: b.data,
        rows: b.cols,
        cols: b.rows,
    };
    for (panel, out) in out.chunks_exact_mut(NR * depth).enumerate() {
        let c0 = j0 + panel * NR;
        let live = (cols - panel * NR).min(NR);
        pack_panel::<NR>(bt, c0, live, p0, depth, out);
    }
}

/// One panel: rows `r0..r0 + live` (live ≤ W) of `x`, columns `p0..p0 + depth`, stored
/// as `depth` groups of W numbers (column p of the panel, rows past `live` zero).
#[inline]
fn pack_panel<const W: usize>(
    x: Strided<'_>,
    r0: usize,
    live: usize,
    p0: usize,
    depth: usize,
    out: &mut [f64],
) {
    let groups = out.chunks_exact_mut(W).take(depth);
    if x.rows == 1 {
        // Each column of the panel is contiguous: copy W numbers at a time.
        for (p, group) in groups.enumerate() {
            let column = &x.data[(p0 + p) * x.cols + r0..];
            if live == W {
                let group: &mut [f64; W] = group.try_into().expect("W numbers");
                *group = column[..W].try_into().expect("W numbers");
            } else {
                group[..live].copy_from_slice(&column[..live]);
                group[live..].fill(0.0);
            }
        }
    } else if x.cols == 1 && live == W {
        // Each row is contiguous: walk the W rows side by side.
        let rows: [&[f64]; W] = std::array::from_fn(|i| &x.data[(r0 + i) * x.rows + p0..][..depth]);
        for (p, group) in groups.enumerate() {
            let group: &mut [f64; W] = group.try_into().expect("W numbers");
            for (v, row) in group.iter_mut().zip(&rows) {
                *v = row[p];
            }
        }
    } else {
        for (p, group) in groups.enumerate() {
            for (i, v) in group.iter_mut().enumerate() {
                *v = if i < live { x.at(r0 + i, p0 + p) } else { 0.0 };
            }
        }
    }
}

/// `C[.., j0..j0 + cols] ← a_block·b_block + β·C` for the rows in `c_rows` (row length
/// `n`), from panels packed `depth` deep.
#[allow(clippy::too_many_arguments)]
fn multiply_packed(
    depth: usize,
    a_block: &[f64],
    b_block: &[f64],
    beta: f64,
    c_rows: &mut [f64],
    n: usize,
    j0: usize,
    cols: usize,
) {
    let rows = c_rows.len() / n;
    let avx2 = has_avx2_fma();
    let mut scratch = [[0.0; NR]; MR];
    for (jp, b_panel) in b_block.chunks_exact(NR * depth).enumerate() {
        let j = j0 + jp * NR;
        let live_cols = (cols - jp * NR).min(NR);
        for (ip, a_panel) in a_block.chunks_exact(MR * depth).enumerate() {
            let i = ip * MR;
            let live_rows = (rows - i).min(MR);
            if live_rows == MR && live_cols == NR {
                let out = TileOut::C {
                    c: &mut c_rows[i * n + j..],
                    ldc: n,
                    beta,
                };
                multiply_tile(depth, a_panel, b_panel, out, avx2);
                continue;
            }
            multiply_tile(
                depth,
                a_panel,
                b_panel,
                TileOut::Scratch(&mut scratch),
                avx2,
            );
            for (r, sums) in scratch.iter().enumerate().take(live_rows) {
                add_row(
                    &mut c_rows[(i + r) * n + j..][..live_cols],
                    &sums[..live_cols],
                    beta,
                );
            }
        }
    }
}

/// Where the sums of a tile go.
enum TileOut<'a> {
    /// Into `C` as `c ← sums + β·c`: a whole MR×NR tile at the start of `c`, its rows
    /// `ldc` apart.
    C {
        c: &'a mut [f64],
        ldc: usize,
        beta: f64,
    },
    /// Into a scratch tile (at the edges of `C`), for the caller to add.
    Scratch(&'a mut [[f64; NR]; MR]),
}

/// `out ← sums + β·out`, reading `out` only when β ≠ 0.
#[inline(always)]
fn add_row(out: &mut [f64], sums: &[f64], beta: f64) {
    if beta == 0.0 {
        out.copy_from_slice(sums);
    } else if beta == 1.0 {
        for (c, &s) in out.iter_mut().zip(sums) {
            *c += s;
        }
    } else {
        for (c, &s) in out.iter_mut().zip(sums) {
            *c = beta * *c + s;
        }
    }
}

/// True when this processor has AVX2 and FMA (checked once). Never under Miri, which
/// cannot run the intrinsics: the portable tile, with the same bits, stands in.
fn has_avx2_fma() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        static YES: OnceLock<bool> = OnceLock::new();
        *YES.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    false
}

/// `Σₚ a_panel[p]·b_panel[p]ᵀ`, an MR×NR tile of the product from one panel of each
/// operand `depth` deep, delivered to `out`.
#[inline]
fn multiply_tile(depth: usize, a_panel: &[f64], b_panel: &[f64], out: TileOut<'_>, avx2: bool) {
    let (a_panel, b_panel) = (&a_panel[..depth * MR], &b_panel[..depth * NR]);
    if let TileOut::C { c, ldc, .. } = &out {
        assert!(c.len() >= (MR - 1) * ldc + NR, "a whole tile of C");
    }
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` comes from `has_avx2_fma`, so the processor has both features
        // the function is compiled for; the panels were cut to `depth` groups and the
        // tile of C was checked to fit, which is all it touches.
        #[allow(unsafe_code)]
        unsafe {
            multiply_tile_avx2(depth, a_panel, b_panel, out)
        };
        return;
    }
    let _ = avx2;
    let mut sums = [[0.0; NR]; MR];
    for (a, b) in a_panel.chunks_exact(MR).zip(b_panel.chunks_exact(NR)) {
        for (row, &a) in sums.iter_mut().zip(a) {
            for (sum, &b) in row.iter_mut().zip(b) {
                *sum += a * b;
            }
        }
    }
    match out {
        TileOut::C { c, ldc, beta } => {
            for (r, sums) in sums.iter().enumerate() {
                add_row(&mut c[r * ldc..][..NR], sums, beta);
            }
        }
        TileOut::Scratch(tile) => *tile = sums,
    }
}

/// [`multiply_tile`] with twelve 4-wide FMA accumulators.
///
/// # Safety
/// The processor must have AVX2 and FMA; `a_panel` must hold `depth·MR` numbers,
/// `b_panel` `depth·NR`, and a `TileOut::C` slice at least `(MR − 1)·ldc + NR`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn multiply_tile_avx2(depth: usize, a_panel: &[f64], b_panel: &[f64], out: TileOut<'_>) {
    use std::arch::x86_64::{
        _mm256_add_pd, _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_loadu_pd, _mm256_set1_pd,
        _mm256_setzero_pd, _mm256_storeu_pd,
    };
    const LANES: usize = NR / 4;
    debug_assert!(a_panel.len() >= depth * MR && b_panel.len() >= depth * NR);
    let mut sums = [[_mm256_setzero_pd(); LANES]; MR];
    let (mut a, mut b) = (a_panel.as_ptr(), b_panel.as_ptr());
    for _ in 0..depth {
        // SAFETY: step p reads a[p·MR .. p·MR + MR] and b[p·NR .. p·NR + NR], inside
        // the panels for p < depth (the caller's contract); unaligned loads are fine.
        unsafe {
            let bv: [_; LANES] = std::array::from_fn(|l| _mm256_loadu_pd(b.add(4 * l)));
            for (i, row) in sums.iter_mut().enumerate() {
                let ai = _mm256_broadcast_sd(&*a.add(i));
                for (sum, &bv) in row.iter_mut().zip(&bv) {
                    *sum = _mm256_fmadd_pd(ai, bv, *sum);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    match out {
        TileOut::C { c, ldc, beta } => {
            let c = c.as_mut_ptr();
            for (r, row) in sums.iter().enumerate() {
                for (l, &sum) in row.iter().enumerate() {
                    // SAFETY: row r, lane l covers c[r·ldc + 4l .. r·ldc + 4l + 4], inside
                    // (MR − 1)·ldc + NR (the caller's contract).
                    unsafe {
                        let at = c.add(r * ldc + 4 * l);
                        let value = if beta == 0.0 {
                            sum
                        } else if beta == 1.0 {
                            _mm256_add_pd(_mm256_loadu_pd(at), sum)
                        } else {
                            _mm256_fmadd_pd(_mm256_set1_pd(beta), _mm256_loadu_pd(at), sum)
                        };
                        _mm256_storeu_pd(at, value);
                    }
                }
            }
        }
        TileOut::Scratch(tile) => {
            for (out, row) in tile.iter_mut().zip(&sums) {
                for (l, &sum) in row.iter().enumerate() {
                    // SAFETY: each row of the tile holds NR = 4·LANES numbers.
                    unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * l), sum) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{multiply_tile, Product, Strided, TileOut, MR, NR};

    /// A product shared with the helper gives the bits of the same product on one
    /// thread: each element sums its depth in the same order either way. Sizes that
    /// leave partial tiles and blocks, every transpose, and β = 0 and β ≠ 0.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "10^8 multiply-adds take too long to interpret; the small products below \
                  go through the same hand-off"
    )]
    fn shared_and_serial_products_agree_bit_for_bit() {
        // A large product with partial tiles and blocks, and W3's narrow ones.
        for (m, k, n) in [
            (203, 601, 517),
            (128, 256, 10),
            (256, 128, 10),
            (128, 10, 256),
        ] {
            shared_and_serial_agree(m, k, n);
        }
    }

    /// Small products shared with the helper: partial tiles on both threads, and the
    /// hand-off of the work to the helper, quick enough to run under Miri.
    #[test]
    fn small_shared_products_agree_with_serial_ones() {
        for (m, k, n) in [(9, 7, 13), (17, 3, 5)] {
            shared_and_serial_agree(m, k, n);
        }
    }

    fn shared_and_serial_agree(m: usize, k: usize, n: usize) {
        let a: Vec<f64> = (0..m * k)
            .map(|v| ((v * 7919) % 1009) as f64 / 97.0 - 5.0)
            .collect();
        let b: Vec<f64> = (0..k * n)
            .map(|v| ((v * 104_729) % 997) as f64 / 89.0 - 5.5)
            .collect();
        for (a_transposed, b_transposed) in [(false, false), (true, false), (false, true)] {
            let (a_rows, a_cols) = if a_transposed { (1, m) } else { (k, 1) };
            let (b_rows, b_cols) = if b_transposed { (1, k) } else { (n, 1) };
            for beta in [0.0, 0.5] {
                let product = Product {
                    m,
                    k,
                    n,
                    a: Strided {
                        data: &a,
                        rows: a_rows,
                        cols: a_cols,
                    },
                    b: Strided {
                        data: &b,
                        rows: b_rows,
                        cols: b_cols,
                    },
                    beta,
                };
                let start: Vec<f64> = (0..m * n).map(|v| (v % 13) as f64 - 6.0).collect();
                let (mut serial, mut shared) = (start.clone(), start);
                product.serial(&mut serial);
                product.parallel(&mut shared);
                let same = serial
                    .iter()
                    .zip(&shared)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "transposes {a_transposed} {b_transposed}, beta {beta}"
                );
                // And both are the product: one element against a plain sum.
                let (i, j) = (m - 1, n / 2);
                let sum: f64 = (0..k)
                    .map(|p| product.a.at(i, p) * product.b.at(p, j))
                    .sum::<f64>()
                    + beta * ((i * n + j) % 13) as f64
                    - beta * 6.0;
                assert!((serial[i * n + j] - sum).abs() < 1e-9 * sum.abs().max(1.0));
            }
        }
    }

    /// The portable tile and (where the processor has it) the AVX2 tile agree, into a
    /// tile of `C` for each kind of β and into the scratch tile.
    #[test]
    fn portable_and_vector_tiles_agree() {
        let depth = 37;
        let a: Vec<f64> = (0..depth * MR)
            .map(|v| ((v * 7) % 11) as f64 - 5.0)
            .collect();
        let b: Vec<f64> = (0..depth * NR)
            .map(|v| ((v * 5) % 13) as f64 * 0.5)
            .collect();
        let ldc = NR + 3;
        for avx2 in [false, super::has_avx2_fma()] {
            for beta in [0.0, 1.0, -0.5] {
                let mut c = vec![if beta == 0.0 { f64::NAN } else { 2.0 }; MR * ldc];
                let out = TileOut::C {
                    c: &mut c,
                    ldc,
                    beta,
                };
                multiply_tile(depth, &a, &b, out, avx2);
                let mut scratch = [[0.0; NR]; MR];
                multiply_tile(depth, &a, &b, TileOut::Scratch(&mut scratch), avx2);
                for i in 0..MR {
                    for j in 0..NR {
                        let sum: f64 = (0..depth).map(|p| a[p * MR + i] * b[p * NR + j]).sum();
                        let old = if beta == 0.0 { 0.0 } else { 2.0 * beta };
                        assert_eq!(c[i * ldc + j], sum + old, "{avx2} {beta} ({i}, {j})");
                        assert_eq!(scratch[i][j], sum, "{avx2} ({i}, {j})");
                    }
                    // Columns past the tile are left alone.
                    assert!(c[i * ldc + NR..(i + 1) * ldc]
                        .iter()
                        .all(|&v| v == 2.0 || v.is_nan()));
                }
            }
        }
    }
}
