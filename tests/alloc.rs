//! After a warm-up step, recording on a cleared tape and backpropagating into reused
//! gradients touch the heap not once. A counting global allocator proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use tapegrad::{Gradients, Result, Tape, Var};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measuring thread counts, so the test harness cannot disturb the count.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only an atomic and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by `f` on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.load(Ordering::Relaxed))
}

/// 10,000 scalar ops of several kinds: leaves, constants, binary and unary ops.
fn record(tape: &Tape) -> (Var<'_>, Var<'_>) {
    let x = tape.var(0.3);
    let mut acc = x;
    for k in 0..2_000 {
        let c = tape.constant(k as f64 * 1e-4);
        acc = (acc * 0.999 + c).sin().sigmoid() - x;
    }
    (x, acc)
}

#[test]
fn recording_and_backward_after_warm_up_allocate_nothing() -> Result<()> {
    let mut tape = Tape::new();
    let mut grads = Gradients::new();

    // Warm-up: the arenas and the gradient buffer grow to their working size.
    {
        let (_, y) = record(&tape);
        y.backward_into(&mut grads)?;
    }
    tape.clear();

    let ((x, y), recorded) = allocations(|| record(&tape));
    assert_eq!(tape.len(), 1 + 2_000 * 6);
    assert_eq!(
        recorded, 0,
        "recording 12,001 nodes allocated {recorded} times"
    );

    let (result, swept) = allocations(|| y.backward_into(&mut grads));
    result?;
    assert_eq!(swept, 0, "backward allocated {swept} times");

    let (g, read) = allocations(|| grads.wrt_scalar(x));
    assert!(g?.is_finite());
    assert_eq!(read, 0);

    // The allocator really counts: a fresh tape must allocate.
    let (_, fresh) = allocations(|| {
        let t = Tape::new();
        let v = t.var(1.0);
        (v * 2.0).item()
    });
    assert!(fresh > 0);
    Ok(())
}

#[test]
fn a_replayed_training_step_allocates_nothing_after_the_first() -> Result<()> {
    use tapegrad::nn::{Params, Trainer};
    use tapegrad::optim::Sgd;
    use tapegrad::Tensor;
    let mut params = Params::new();
    params.insert(
        "w1",
        Tensor::new(vec![0.5, -0.3, 0.8, -0.6, -0.4, 0.7, 0.2, 0.9], [2, 4])?,
    )?;
    params.insert("b1", Tensor::zeros([1, 4]))?;
    params.insert("w2", Tensor::new(vec![0.6, -0.8, 0.3, 0.5], [4, 1])?)?;
    params.insert("b2", Tensor::zeros([1, 1]))?;
    let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])?;
    let y = Tensor::matrix(&[[0.0], [1.0], [1.0], [0.0]])?;
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    trainer.record(&params, |p| {
        let t = p.tape();
        let h = t
            .constant_tensor(&x)
            .matmul(p.get("w1")?)?
            .try_add(p.get("b1")?)?
            .sigmoid();
        let o = h.matmul(p.get("w2")?)?.try_add(p.get("b2")?)?.sigmoid();
        o.half_sse(t.constant_tensor(&y))
    })?;
    let first = trainer.replay_step(&mut params, &mut sgd)?;
    let (second, count) = allocations(|| trainer.replay_step(&mut params, &mut sgd));
    assert!(second? < first);
    assert_eq!(count, 0, "a replayed step allocated {count} times");
    Ok(())
}
