//! What a scalar node costs in memory, measured by a global allocator that counts the
//! bytes this thread holds: a 12-byte node, its 8-byte value and 8-byte gradient, and,
//! for a unary node, the 8-byte derivative stored when it was recorded. A binary scalar
//! node (`a * b`) costs 28 bytes, a unary one (`a.sin()`) 36, plus the slack of the
//! arenas' growth.
//!
//! The ignored test records and backpropagates a chain of 10⁷ sines and prints its times
//! and bytes per node (`cargo test --release --test scale -- --ignored --nocapture`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;
use tapegrad::{Gradients, Result, Tape};

struct Counting;

// Per thread, so that tests running at once on other threads count apart: whether this
// thread counts, the bytes it holds, and the most it held since the last reset.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    if COUNTING.with(Cell::get) {
        let now = HELD.with(|h| {
            h.set(h.get() + delta);
            h.get()
        });
        PEAK.with(|p| p.set(p.get().max(now)));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only const-initialised thread-locals without destructors, none of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` counting this thread's heap: its result, the bytes it left held and the
/// most it held at once.
fn measured<T>(f: impl FnOnce() -> T) -> (T, isize, isize) {
    HELD.with(|h| h.set(0));
    PEAK.with(|p| p.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, HELD.with(Cell::get), PEAK.with(Cell::get))
}

/// A fresh tape with `n` nodes after its leaf, each `a * b` (binary) or `a.sin()`
/// (unary), backpropagated; its gradient with respect to the leaf.
fn chain(n: usize, unary: bool) -> Result<(Tape, Gradients, f64)> {
    let tape = Tape::new();
    let (grads, g) = {
        let x0 = tape.var(0.999_999);
        let mut x = x0;
        for _ in 0..n {
            x = if unary { x.sin() } else { x * x0 };
        }
        let grads = x.backward()?;
        let g = grads.wrt_scalar(x0)?;
        (grads, g)
    };
    Ok((tape, grads, g))
}

#[test]
fn a_node_and_its_value_take_twelve_and_eight_bytes() {
    // Room for n nodes, then for n values, then both: 12, 8 and 20 bytes each, besides
    // the small tables of an empty tape.
    let n = 100_000;
    let (_, empty, _) = measured(|| Tape::with_capacity(0, 0));
    for (nodes, values, bytes) in [(n, 0, 12), (0, n, 8), (n, n, 20)] {
        let (tape, held, _) = measured(|| Tape::with_capacity(nodes, values));
        assert_eq!(
            held - empty,
            bytes * n as isize,
            "{nodes} nodes, {values} values"
        );
        // The tape's own account of its memory agrees but for those tables.
        assert!((tape.heap_bytes() as isize - held).abs() < 1024);
    }
}

#[test]
fn binary_scalar_nodes_cost_28_bytes_and_unary_ones_36() -> Result<()> {
    // 10⁶ nodes: the arenas grow by doubling, to 2²⁰ places here, so a node costs a
    // little more than its share (1.05 times it for the node and its value); each
    // figure stays within 1.5 bytes of it.
    let n = 1_000_000;
    for (unary, bytes) in [(false, 28.0), (true, 36.0)] {
        let (run, held, peak) = measured(|| chain(n, unary));
        let (tape, grads, g) = run?;
        let held_per_node = held as f64 / n as f64;
        let peak_per_node = peak as f64 / n as f64;
        assert!(
            (bytes..bytes + 1.5).contains(&held_per_node),
            "unary {unary}: {held_per_node} bytes held per node, {bytes} expected"
        );
        assert!(
            (bytes..bytes + 1.5).contains(&peak_per_node),
            "unary {unary}: {peak_per_node} bytes per node at the peak"
        );
        // The allocator's count and the tape's own account agree.
        let accounted = tape.heap_bytes() + grads.heap_bytes();
        assert!(
            (accounted as isize - held).abs() < 4096,
            "tape and gradients say {accounted}, the allocator {held}"
        );
        // And the chain's gradient is right: d(x0^(n+1))/dx0 or Π cos.
        if !unary {
            let want = (n as f64 + 1.0) * 0.999_999_f64.powi(n as i32);
            assert!((g - want).abs() <= 1e-9 * want, "{g} against {want}");
        } else {
            assert!(g > 0.0 && g < 1.0, "{g}");
        }
    }
    Ok(())
}

/// Records and backpropagates x ← sin(x) `n` times on `tape`, checks the gradient
/// against the product of the cosines, and prints the times and the bytes per node
/// the tape and gradients hold.
fn sine_chain(tape: &Tape, n: usize, label: &str) {
    let start = Instant::now();
    let x0 = tape.var(0.9);
    let mut x = x0;
    for _ in 0..n {
        x = x.sin();
    }
    let recorded = start.elapsed();
    let start = Instant::now();
    let grads = x.backward().unwrap();
    let swept = start.elapsed();
    let g = grads.wrt_scalar(x0).unwrap();
    let (mut v, mut want) = (0.9_f64, 1.0_f64);
    for _ in 0..n {
        want *= v.cos();
        v = v.sin();
    }
    assert!((g - want).abs() <= 1e-9 * want, "{g} against {want}");
    println!(
        "{label}: record {:.3} s, backward {:.3} s, held {:.1} bytes per node",
        recorded.as_secs_f64(),
        swept.as_secs_f64(),
        (tape.heap_bytes() + grads.heap_bytes()) as f64 / n as f64
    );
}

#[test]
#[ignore = "a 10^7-node chain: about 550 MB; run with --release --ignored --nocapture"]
fn a_chain_of_ten_million_sines() {
    let n = 10_000_000;
    // 36 bytes per node, and the slack of arenas that grow by doubling: at 10⁷ nodes
    // each arena's capacity is 2²⁴ (1.68 times the nodes), at most twice.
    let ((), _, peak) = measured(|| sine_chain(&Tape::new(), n, "Tape::new()"));
    let per_node = peak as f64 / n as f64;
    println!("  peak {per_node:.1} bytes per node");
    assert!(
        (36.0..72.0).contains(&per_node),
        "{per_node} bytes per node"
    );
    // With the node and value arenas sized up front, only the arena of derivatives
    // grows: 12 + 8 + 8 bytes, and 8 · 2²⁴ / 10⁷ for the derivatives. The value arena
    // makes its slots ready 4,096 at a time, so it needs that much room beyond the
    // last value, or its last step doubles it.
    let ((), _, peak) = measured(|| {
        let tape = Tape::with_capacity(n + 1, n + 1 + 4096);
        sine_chain(&tape, n, "Tape::with_capacity")
    });
    let per_node = peak as f64 / n as f64;
    println!("  peak {per_node:.1} bytes per node");
    assert!(
        (36.0..42.0).contains(&per_node),
        "{per_node} bytes per node"
    );
}

#[test]
fn a_tape_of_tensor_ops_accounts_for_its_ops_and_plans() {
    // 20,000 general nodes (sums of small vectors, each its op, plan and inputs): the
    // tape's own account and the allocator's count of what the tape holds agree.
    let (tape, held, _) = measured(|| {
        let tape = Tape::new();
        {
            let a = tape.tensor(&tapegrad::Tensor::vector([1.0, 2.0, 3.0]));
            let mut x = a;
            for _ in 0..20_000 {
                x = (x + a).sum_axis(0, true);
            }
        }
        tape
    });
    assert!(!tape.is_empty());
    let accounted = tape.heap_bytes() as isize;
    assert!(
        (accounted - held).abs() < 4096,
        "the tape says {accounted}, the allocator {held}"
    );
}

#[test]
fn a_tape_of_many_shapes_accounts_for_its_shape_table() {
    // 4,000 distinct shapes, each of no elements ([0, i]), so that the shape table is
    // most of what the tape holds: its account (entries, hash table and its control
    // bytes, element counts) must come within 1% of the allocator's count.
    let (tape, held, _) = measured(|| {
        let tape = Tape::new();
        for i in 0..4_000 {
            let _ = tape.constant_tensor(&tapegrad::Tensor::zeros([0, i]));
        }
        tape
    });
    let (empty, held_empty, _) = measured(|| {
        let tape = Tape::new();
        for _ in 0..4_000 {
            let _ = tape.constant_tensor(&tapegrad::Tensor::zeros([0, 1]));
        }
        tape
    });
    let shapes_held = held - held_empty;
    let shapes_accounted = tape.heap_bytes() as isize - empty.heap_bytes() as isize;
    assert!(shapes_held > 100_000, "{shapes_held}");
    assert!(
        (shapes_accounted - shapes_held).abs() * 100 < shapes_held,
        "the tape says its shapes take {shapes_accounted} bytes, the allocator {shapes_held}"
    );
}

#[test]
fn gradients_account_for_the_marks_of_a_pass_off_the_outputs_path() -> Result<()> {
    // A chain with a node off the output's path: the pass marks the output's ancestors,
    // one byte per node, and the gradients' account must include the marks.
    let n = 100_000;
    let tape = Tape::new();
    let x0 = tape.var(0.5);
    let mut x = x0;
    for i in 0..n {
        x = x.sin();
        if i == n / 2 {
            let _off_path = x * 2.0;
        }
    }
    let (grads, held, _) = measured(|| x.backward());
    let grads = grads?;
    assert!(grads.wrt_scalar(x0)? > 0.0);
    assert!(held > (9 * n) as isize, "{held}");
    assert!(
        (grads.heap_bytes() as isize - held).abs() < 4096,
        "the gradients say {}, the allocator {held}",
        grads.heap_bytes()
    );
    Ok(())
}

#[test]
fn a_tape_in_anomaly_mode_accounts_for_the_lines_it_keeps() {
    // Anomaly mode keeps the line that recorded each node: 20,000 of them, 16 bytes
    // each, in the tape's own account as in the allocator's count.
    let (tape, held, _) = measured(|| {
        let tape = Tape::new();
        tape.detect_anomaly(true);
        {
            let x0 = tape.var(0.5);
            let mut x = x0;
            for _ in 0..20_000 {
                x = x.sin();
            }
        }
        tape
    });
    assert!(held > 20_000 * 16, "{held}");
    let accounted = tape.heap_bytes() as isize;
    assert!(
        (accounted - held).abs() < 4096,
        "the tape says {accounted}, the allocator {held}"
    );
}
