//! The blocked matrix product behind [`Matmul`](super::Matmul): `C ← A·B + β·C` for
//! row-major `C`, with `A` and `B` read through strides (so a transposed operand needs
//! no copy), allocation-free once warm.
//!
//! The loops follow the usual cache blocking. `B` is packed into panels of `NR`
//! columns and `A` into panels of `MR` rows, at most `KC` deep; a register tile of
//! MR×NR accumulators then runs down the shared depth. The tile is chosen at run time,
//! once per product: 8×16 with AVX-512 intrinsics where the processor has AVX-512F and
//! `C` is at least 16 columns wide, else 6×8 with AVX2/FMA intrinsics where it has
//! those, else a portable 6×8 loop (always under Miri). The packing buffers are per
//! thread, start on a cache line and grow to their working size on the first products,
//! so that a training loop's later steps allocate nothing.
//!
//! A large product is shared with the process-wide helper thread of
//! [`parallel`](crate::parallel): `B` is packed once, and both threads take row blocks
//! of `C` from a common queue until none is left.
//!
//! The vector tiles are the one place here that needs `unsafe`: intrinsics behind a
//! run-time feature check, whose proof travels as a value ([`isa`]). On an Intel Xeon
//! (family 6, model 207, one core) the AVX-512 tile runs W3's 128×784·784×256 and
//! 784×128·128×256 products at 69–73 GFLOP/s and the AVX2 tile at 37–41 (see
//! `docs/decisions/0001-matrix-product.md`).

use crate::parallel::{has_helper, lock, run_shared};
use std::cell::RefCell;
use std::sync::Mutex;

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
/// The largest `C` (in numbers, 2 MiB) of a product shared by columns, half of which
/// goes through a scratch matrix.
const COLUMN_SCRATCH: usize = 1 << 18;
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
    match Kernel::for_width(n) {
        wide @ Kernel::Avx512(_) => product.run::<8, 16>(c, wide),
        kernel => product.run::<6, 8>(c, kernel),
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
    /// The columns of `C` that the second block of a product split by columns yields.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
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
    /// The product with tiles of MR×NR: shared with the helper
    /// thread when it is large and the helper runs, else on this thread.
    fn run<const MR: usize, const NR: usize>(&self, c: &mut [f64], kernel: Kernel) {
        if self.m * self.k * self.n >= PARALLEL_PRODUCT && has_helper() {
            self.parallel::<MR, NR>(c, kernel);
        } else {
            self.serial::<MR, NR>(c, kernel);
        }
    }

    /// The whole product on this thread.
    fn serial<const MR: usize, const NR: usize>(&self, c: &mut [f64], kernel: Kernel) {
        self.columns::<MR, NR>(c, self.n, (0, self.n), self.n, kernel);
    }

    /// Columns `j..j + width` of the product on this thread, into `out`, whose rows are
    /// `ldc` apart and whose column 0 is column `j` of `C`. The packing buffer is
    /// sized for a block `widest` columns wide (at least `width`), so that a thread
    /// that takes the widest of several blocks in a later product does not grow it.
    fn columns<const MR: usize, const NR: usize>(
        &self,
        out: &mut [f64],
        ldc: usize,
        (j, width): (usize, usize),
        widest: usize,
        kernel: Kernel,
    ) {
        let (m, k) = (self.m, self.k);
        let kc = even_blocks(k, KC, 1);
        let mc = even_blocks(m, MC, MR);
        let nc = widest.min(NC).div_ceil(NR) * NR;
        PANELS.with(|panels| {
            let mut panels = panels.borrow_mut();
            // B first: its panels start on a cache line.
            let (b_panels, a_panels) = aligned(&mut panels, kc * (nc + mc)).split_at_mut(kc * nc);
            for j0 in (0..width).step_by(NC) {
                let cols = (width - j0).min(NC);
                for p0 in (0..k).step_by(kc) {
                    let depth = (k - p0).min(kc);
                    let b_block = &mut b_panels[..depth * cols.div_ceil(NR) * NR];
                    pack_b::<NR>(self.b, p0, depth, j + j0, cols, b_block);
                    let beta = if p0 == 0 { self.beta } else { 1.0 };
                    for i0 in (0..m).step_by(mc) {
                        let rows = (m - i0).min(mc);
                        let a_block = &mut a_panels[..depth * rows.div_ceil(MR) * MR];
                        pack_a::<MR>(self.a, i0, rows, p0, depth, a_block);
                        let c_rows = &mut out[i0 * ldc..(i0 + rows) * ldc];
                        let block = (j0, cols);
                        multiply_packed::<MR, NR>(
                            depth, a_block, b_block, beta, c_rows, ldc, block, kernel,
                        );
                    }
                }
            }
        });
    }

    /// The product shared with the helper thread, split by columns where that moves
    /// less memory between the cores, else by rows.
    fn parallel<const MR: usize, const NR: usize>(&self, c: &mut [f64], kernel: Kernel) {
        if self.beta == 0.0 && self.n > self.m && self.m * self.n <= COLUMN_SCRATCH {
            self.parallel_columns::<MR, NR>(c, kernel);
        } else {
            self.parallel_rows::<MR, NR>(c, kernel);
        }
    }

    /// The product shared with the helper thread as two blocks of columns of `C`, each
    /// thread packing its own columns of `B` and all of `A`: for a product wider than
    /// tall, whose `B` is the larger operand, so that neither thread reads a packed `B`
    /// from the other's cache. The first block is written into `C`; the second, whose
    /// columns are not contiguous in `C`, into this thread's scratch matrix, then
    /// copied. Only for β = 0, where the two give the serial product's bits: each
    /// element goes through the same operations in either.
    fn parallel_columns<const MR: usize, const NR: usize>(&self, c: &mut [f64], kernel: Kernel) {
        let (m, n) = (self.m, self.n);
        debug_assert!(self.beta == 0.0);
        // Two blocks of whole panels, the first the wider.
        let left = (n.div_ceil(NR).div_ceil(2) * NR).min(n);
        let right = n - left;
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < m * right {
                scratch.resize(m * right, 0.0);
            }
            let scratch = &mut scratch[..m * right];
            {
                let queue = Mutex::new(
                    [
                        (&mut *c, n, (0, left)),
                        (&mut *scratch, right, (left, right)),
                    ]
                    .into_iter(),
                );
                run_shared(&|| loop {
                    let next = lock(&queue).next();
                    let Some((out, ldc, block)) = next else { break };
                    if block.1 > 0 {
                        self.columns::<MR, NR>(out, ldc, block, left, kernel);
                    }
                });
            }
            if right > 0 {
                for (row, part) in c.chunks_exact_mut(n).zip(scratch.chunks_exact(right)) {
                    row[left..].copy_from_slice(part);
                }
            }
        });
    }

    /// The product shared with the helper thread: for each block of `B` (packed once,
    /// its depth blocks shared out between the threads), both threads take row blocks
    /// of `C`.
    fn parallel_rows<const MR: usize, const NR: usize>(&self, c: &mut [f64], kernel: Kernel) {
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
                    self.pack_b_shared::<NR>(b_blocks, (p0, p1), kc, (j0, cols));
                    let b_blocks: &[f64] = b_blocks;
                    let queue = Mutex::new(RowBlocks::new(&mut *c, n, blocks, MR));
                    let work = || loop {
                        let next = lock(&queue).next();
                        let Some((i0, c_rows)) = next else { break };
                        let (depths, block) = ((p0, p1), (j0, cols));
                        self.row_block::<MR, NR>(i0, c_rows, b_blocks, depths, kc, block, kernel);
                    };
                    run_shared(&work);
                }
            }
        });
    }

    /// Packs rows `p0..p1` and columns `j0..j0 + cols` of `B` into `b_blocks`, one
    /// block of `kc` rows after another, the blocks shared out between the threads.
    fn pack_b_shared<const NR: usize>(
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
            pack_b::<NR>(self.b, depth_start, depth, j0, cols, panels);
        };
        // Run through the helper even when there is one block to pack: it wakes now,
        // and is ready for the row blocks that follow.
        run_shared(&pack);
    }

    /// Rows `i0..` of `C` (`c_rows`, whole rows) for depth `p0..p1` and columns
    /// `j0..j0 + cols`, against the packed `b_blocks`.
    #[allow(clippy::too_many_arguments)]
    fn row_block<const MR: usize, const NR: usize>(
        &self,
        i0: usize,
        c_rows: &mut [f64],
        b_blocks: &[f64],
        (p0, p1): (usize, usize),
        kc: usize,
        (j0, cols): (usize, usize),
        kernel: Kernel,
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
                pack_a::<MR>(self.a, i0, rows, depth_start, depth, a_block);
                let b_block = &b_blocks[block * block_len..][..depth * cols.div_ceil(NR) * NR];
                let block = (j0, cols);
                multiply_packed::<MR, NR>(depth, a_block, b_block, beta, c_rows, n, block, kernel);
            }
        });
    }
}

/// The rows of `C` cut into `blocks` blocks of whole MR-row tiles, as equal as whole
/// tiles allow: yields each block's first row and its rows.
struct RowBlocks<'c> {
    rest: &'c mut [f64],
    n: usize,
    /// Rows of a tile.
    mr: usize,
    tiles: usize,
    blocks: usize,
    block: usize,
    row: usize,
}

impl<'c> RowBlocks<'c> {
    fn new(c: &'c mut [f64], n: usize, blocks: usize, mr: usize) -> Self {
        let tiles = (c.len() / n).div_ceil(mr);
        RowBlocks {
            rest: c,
            n,
            mr,
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
        let end = (self.tiles * self.block / self.blocks * self.mr)
            .min(self.row + self.rest.len() / self.n);
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
fn pack_a<const MR: usize>(
    a: Strided<'_>,
    i0: usize,
    rows: usize,
    p0: usize,
    depth: usize,
    out: &mut [f64],
) {
    for (panel, out) in out.chunks_exact_mut(MR * depth).enumerate() {
        let r0 = i0 + panel * MR;
        let live = (rows - panel * MR).min(MR);
        pack_panel::<MR>(a, r0, live, p0, depth, out);
    }
}

/// Packs rows `p0..p0 + depth` and columns `j0..j0 + cols` of `B` into panels of NR
/// columns: panel after panel, each `depth` groups of NR numbers; missing columns are
/// zero.
fn pack_b<const NR: usize>(
    b: Strided<'_>,
    p0: usize,
    depth: usize,
    j0: usize,
    cols: usize,
    out: &mut [f64],
) {
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
/// `n`), from panels packed `depth` deep, with MR×NR tiles computed by `kernel`.
#[allow(clippy::too_many_arguments)]
fn multiply_packed<const MR: usize, const NR: usize>(
    depth: usize,
    a_block: &[f64],
    b_block: &[f64],
    beta: f64,
    c_rows: &mut [f64],
    n: usize,
    (j0, cols): (usize, usize),
    kernel: Kernel,
) {
    let rows = c_rows.len() / n;
    let mut scratch = [[0.0; NR]; MR];
    for (jp, b_panel) in b_block.chunks_exact(NR * depth).enumerate() {
        let j = j0 + jp * NR;
        let live_cols = (cols - jp * NR).min(NR);
        for (ip, a_panel) in a_block.chunks_exact(MR * depth).enumerate() {
            let i = ip * MR;
            let live_rows = (rows - i).min(MR);
            if live_rows == MR && live_cols == NR {
                let c = &mut c_rows[i * n + j..];
                multiply_tile::<MR, NR>(depth, a_panel, b_panel, (c, n, beta), kernel);
                continue;
            }
            // At the edges of C: a whole tile into the scratch tile (β = 0 writes it
            // without reading it), then its live part added to C.
            let tile = (scratch.as_flattened_mut(), NR, 0.0);
            multiply_tile::<MR, NR>(depth, a_panel, b_panel, tile, kernel);
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

/// The code that computes a register tile, chosen once per product.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// Plain Rust, on every processor (and under Miri): 6×8 tiles.
    Portable,
    /// AVX2 and FMA intrinsics: 6×8 tiles.
    Avx2(isa::Avx2),
    /// AVX-512 intrinsics: 8×16 tiles.
    Avx512(isa::Avx512),
}

impl Kernel {
    /// The fastest kernel this processor runs for a product `n` columns wide: the
    /// AVX-512 tile, 16 columns wide, only when `C` is at least that wide (narrower,
    /// much of its work would go on columns that are not there).
    fn for_width(n: usize) -> Kernel {
        match isa::Avx512::detect() {
            Some(avx512) if n >= 16 => Kernel::Avx512(avx512),
            _ => isa::Avx2::detect().map_or(Kernel::Portable, Kernel::Avx2),
        }
    }
}

/// Proofs that the processor has an instruction set: a value of each type exists only
/// where its `detect` found the features, so holding one is what makes calling the
/// intrinsics sound.
mod isa {
    use std::sync::OnceLock;

    /// This processor has AVX2 and FMA.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx2(());

    /// This processor has AVX-512F.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx512(());

    impl Avx2 {
        /// `Some` when this processor has AVX2 and FMA (checked once). Never under
        /// Miri, which cannot run the intrinsics: the portable tile stands in.
        pub(super) fn detect() -> Option<Avx2> {
            static YES: OnceLock<bool> = OnceLock::new();
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            let has = || {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            };
            #[cfg(any(not(target_arch = "x86_64"), miri))]
            let has = || false;
            YES.get_or_init(has).then_some(Avx2(()))
        }
    }

    impl Avx512 {
        /// `Some` when this processor has AVX-512F (checked once). Never under Miri.
        pub(super) fn detect() -> Option<Avx512> {
            static YES: OnceLock<bool> = OnceLock::new();
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            let has = || std::arch::is_x86_feature_detected!("avx512f");
            #[cfg(any(not(target_arch = "x86_64"), miri))]
            let has = || false;
            YES.get_or_init(has).then_some(Avx512(()))
        }
    }
}

/// `Σₚ a_panel[p]·b_panel[p]ᵀ`, an MR×NR tile of the product from one panel of each
/// operand `depth` deep, written into `(c, ldc, β)` as `c ← sums + β·c`: a whole tile
/// at the start of `c`, its rows `ldc` apart (`c` is read only when β ≠ 0).
///
/// `kernel` is used where it has a tile of this shape (AVX2 6×8, AVX-512 8×16); the
/// portable loop computes every other.
///
/// # Panics
/// If a panel holds fewer than `depth` groups or `c` is shorter than a tile.
#[inline]
fn multiply_tile<const MR: usize, const NR: usize>(
    depth: usize,
    a_panel: &[f64],
    b_panel: &[f64],
    (c, ldc, beta): (&mut [f64], usize, f64),
    kernel: Kernel,
) {
    let (a_panel, b_panel) = (&a_panel[..depth * MR], &b_panel[..depth * NR]);
    assert!(
        ldc >= NR && c.len() >= (MR - 1) * ldc + NR,
        "a whole tile of C"
    );
    #[cfg(target_arch = "x86_64")]
    match kernel {
        Kernel::Avx2(proof) if (MR, NR) == (6, 8) => {
            // SAFETY: `proof` exists only where `Avx2::detect` found AVX2 and FMA on
            // this processor; the function checks its slices itself.
            #[allow(unsafe_code)]
            unsafe {
                tile_avx2(proof, depth, a_panel, b_panel, c, ldc, beta)
            };
            return;
        }
        Kernel::Avx512(proof) if (MR, NR) == (8, 16) => {
            // SAFETY: `proof` exists only where `Avx512::detect` found AVX-512F on this
            // processor; the function checks its slices itself.
            #[allow(unsafe_code)]
            unsafe {
                tile_avx512(proof, depth, a_panel, b_panel, c, ldc, beta)
            };
            return;
        }
        _ => {}
    }
    let _ = kernel;
    let mut sums = [[0.0; NR]; MR];
    for (a, b) in a_panel.chunks_exact(MR).zip(b_panel.chunks_exact(NR)) {
        for (row, &a) in sums.iter_mut().zip(a) {
            for (sum, &b) in row.iter_mut().zip(b) {
                *sum += a * b;
            }
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        add_row(&mut c[r * ldc..][..NR], sums, beta);
    }
}

/// [`multiply_tile`] for a 6×8 tile, with twelve 4-wide FMA accumulators.
///
/// # Safety
/// The processor must have AVX2 and FMA (the slices are checked here).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(
    _: isa::Avx2,
    depth: usize,
    a_panel: &[f64],
    b_panel: &[f64],
    c: &mut [f64],
    ldc: usize,
    beta: f64,
) {
    use std::arch::x86_64::{
        _mm256_add_pd, _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_loadu_pd, _mm256_set1_pd,
        _mm256_setzero_pd, _mm256_storeu_pd,
    };
    const MR: usize = 6;
    const NR: usize = 8;
    const LANES: usize = NR / 4;
    assert!(a_panel.len() >= depth * MR && b_panel.len() >= depth * NR);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    let mut sums = [[_mm256_setzero_pd(); LANES]; MR];
    let (mut a, mut b) = (a_panel.as_ptr(), b_panel.as_ptr());
    for _ in 0..depth {
        // SAFETY: step p reads a[p·MR .. p·MR + MR] and b[p·NR .. p·NR + NR], inside
        // the panels (checked above) for p < depth; unaligned loads are fine.
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
    let c = c.as_mut_ptr();
    for (r, row) in sums.iter().enumerate() {
        for (l, &sum) in row.iter().enumerate() {
            // SAFETY: row r, lane l covers c[r·ldc + 4l .. r·ldc + 4l + 4], inside
            // (MR − 1)·ldc + NR (checked above).
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

/// [`multiply_tile`] for an 8×16 tile, with sixteen 8-wide FMA accumulators: per step
/// of the depth, two loads of `B` and eight broadcasts of `A` feed 16 FMAs.
///
/// # Safety
/// The processor must have AVX-512F (the slices are checked here).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(
    _: isa::Avx512,
    depth: usize,
    a_panel: &[f64],
    b_panel: &[f64],
    c: &mut [f64],
    ldc: usize,
    beta: f64,
) {
    use std::arch::x86_64::{
        _mm512_add_pd, _mm512_fmadd_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_setzero_pd,
        _mm512_storeu_pd,
    };
    const MR: usize = 8;
    const NR: usize = 16;
    const LANES: usize = NR / 8;
    assert!(a_panel.len() >= depth * MR && b_panel.len() >= depth * NR);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    let mut sums = [[_mm512_setzero_pd(); LANES]; MR];
    let (mut a, mut b) = (a_panel.as_ptr(), b_panel.as_ptr());
    for _ in 0..depth {
        // SAFETY: step p reads a[p·MR .. p·MR + MR] and b[p·NR .. p·NR + NR], inside
        // the panels (checked above) for p < depth; unaligned loads are fine.
        unsafe {
            let bv: [_; LANES] = std::array::from_fn(|l| _mm512_loadu_pd(b.add(8 * l)));
            for (i, row) in sums.iter_mut().enumerate() {
                let ai = _mm512_set1_pd(*a.add(i));
                for (sum, &bv) in row.iter_mut().zip(&bv) {
                    *sum = _mm512_fmadd_pd(ai, bv, *sum);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    let c = c.as_mut_ptr();
    for (r, row) in sums.iter().enumerate() {
        for (l, &sum) in row.iter().enumerate() {
            // SAFETY: row r, lane l covers c[r·ldc + 8l .. r·ldc + 8l + 8], inside
            // (MR − 1)·ldc + NR (checked above).
            unsafe {
                let at = c.add(r * ldc + 8 * l);
                let value = if beta == 0.0 {
                    sum
                } else if beta == 1.0 {
                    _mm512_add_pd(_mm512_loadu_pd(at), sum)
                } else {
                    _mm512_fmadd_pd(_mm512_set1_pd(beta), _mm512_loadu_pd(at), sum)
                };
                _mm512_storeu_pd(at, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{isa, multiply_tile, Kernel, Product, Strided};

    /// Every kernel this processor runs, with the tile shape it computes: the portable
    /// loop at both shapes, and the vector tiles where the processor has them.
    fn kernels() -> Vec<(Kernel, (usize, usize))> {
        let mut all = vec![(Kernel::Portable, (6, 8)), (Kernel::Portable, (8, 16))];
        all.extend(isa::Avx2::detect().map(|p| (Kernel::Avx2(p), (6, 8))));
        all.extend(isa::Avx512::detect().map(|p| (Kernel::Avx512(p), (8, 16))));
        all
    }

    /// A product shared with the helper gives the bits of the same product on one
    /// thread: each element sums its depth in the same order either way. Sizes that
    /// leave partial tiles and blocks, every transpose, and β = 0 and β ≠ 0, with every
    /// kernel.
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
        for (m, k, n) in [(9, 7, 13), (17, 3, 5), (9, 5, 30), (5, 7, 60)] {
            shared_and_serial_agree(m, k, n);
        }
    }

    /// The product on one thread and shared by rows (and, with β = 0, by columns), by
    /// `kernel` with MR×NR tiles; asserts they have the same bits and returns the first.
    fn serial_and_shared<const MR: usize, const NR: usize>(
        product: &Product<'_>,
        start: &[f64],
        kernel: Kernel,
    ) -> Vec<f64> {
        let mut serial = start.to_vec();
        product.serial::<MR, NR>(&mut serial, kernel);
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let mut rows = start.to_vec();
        product.parallel_rows::<MR, NR>(&mut rows, kernel);
        assert!(
            bits(&rows) == bits(&serial),
            "by rows, {MR}×{NR} by {kernel:?}"
        );
        if product.beta == 0.0 {
            let mut columns = start.to_vec();
            product.parallel_columns::<MR, NR>(&mut columns, kernel);
            assert!(
                bits(&columns) == bits(&serial),
                "by columns, {MR}×{NR} by {kernel:?}"
            );
        }
        serial
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
                for (kernel, shape) in kernels() {
                    let c = match shape {
                        (6, 8) => serial_and_shared::<6, 8>(&product, &start, kernel),
                        _ => serial_and_shared::<8, 16>(&product, &start, kernel),
                    };
                    // And each is the product: every element against a plain sum.
                    for (at, &got) in c.iter().enumerate() {
                        let (i, j) = (at / n, at % n);
                        let sum: f64 = (0..k)
                            .map(|p| product.a.at(i, p) * product.b.at(p, j))
                            .sum::<f64>()
                            + beta * start[at];
                        assert!(
                            (got - sum).abs() < 1e-9 * sum.abs().max(1.0),
                            "{kernel:?} {shape:?}, transposes {a_transposed} {b_transposed}, \
                             beta {beta}, ({i}, {j}): {got} against {sum}"
                        );
                    }
                }
            }
        }
    }

    /// The portable tile and the vector tiles give the exact sums (of numbers whose
    /// products and sums are exact in any order), into a tile of `C` for each kind of
    /// β, leaving the columns past the tile alone.
    #[test]
    fn portable_and_vector_tiles_agree() {
        for (kernel, shape) in kernels() {
            match shape {
                (6, 8) => tile_is_exact::<6, 8>(kernel),
                _ => tile_is_exact::<8, 16>(kernel),
            }
        }
    }

    fn tile_is_exact<const MR: usize, const NR: usize>(kernel: Kernel) {
        let depth = 37;
        let a: Vec<f64> = (0..depth * MR)
            .map(|v| ((v * 7) % 11) as f64 - 5.0)
            .collect();
        let b: Vec<f64> = (0..depth * NR)
            .map(|v| ((v * 5) % 13) as f64 * 0.5)
            .collect();
        let ldc = NR + 3;
        for beta in [0.0, 1.0, -0.5] {
            let mut c = vec![if beta == 0.0 { f64::NAN } else { 2.0 }; MR * ldc];
            multiply_tile::<MR, NR>(depth, &a, &b, (&mut c, ldc, beta), kernel);
            for i in 0..MR {
                for j in 0..NR {
                    let sum: f64 = (0..depth).map(|p| a[p * MR + i] * b[p * NR + j]).sum();
                    let old = if beta == 0.0 { 0.0 } else { 2.0 * beta };
                    assert_eq!(c[i * ldc + j], sum + old, "{kernel:?} {beta} ({i}, {j})");
                }
                // Columns past the tile are left alone.
                assert!(c[i * ldc + NR..(i + 1) * ldc]
                    .iter()
                    .all(|&v| v == 2.0 || v.is_nan()));
            }
        }
    }
}
