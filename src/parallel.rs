//! Work shared between the calling thread and one process-wide helper thread: large
//! fills, copies and elementwise updates here, and the matrix product's row blocks
//! (through [`run_shared`]). Depends on nothing else in tapegrad.
//!
//! The helper is started on first use and kept (unless the environment sets
//! `TAPEGRAD_NUM_THREADS=1`, or the machine has one core). Work is handed to it as a
//! borrowed closure that takes items from a queue shared by both threads: the caller
//! works through the queue itself, so a helper that is late (another process holds the
//! other core) or busy with another thread's work only means the caller does more of
//! the items; the caller never waits for a helper that has not started. Handing over a
//! borrowed closure, rather than an owned job, is what keeps the hand-off free of
//! allocation, and needs `unsafe` (erasing the closure's lifetime) argued in
//! [`run_shared_after`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the helper watches for the next job after finishing one before it sleeps:
/// long enough to catch the second half of a product (packing, then computing) and the
/// large products and memory work that follow each other closely in a training step,
/// so that it does not pay the tens of microseconds a sleeping thread takes to wake.
/// Not longer: a thread that spins holds a core, and when another process wants the
/// cores too, the scheduler takes that time from the caller (a W3 step with a busy
/// process beside it took 1.2–1.8× as long with a 500 µs watch as with this one).
const HELPER_SPIN: Duration = Duration::from_micros(100);

/// Locks a mutex, ignoring poisoning: the queues hold no invariant a panic could break.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when work can be shared: the helper thread runs (or will be started now).
pub(crate) fn has_helper() -> bool {
    helper().is_some()
}

// ---------------------------------------------------------------------------------------
// Large fills and copies, shared with the helper thread.

/// Fills, copies and updates of at least this many numbers (512 KiB) are shared with
/// the helper thread: a training step's gradient arena, parameters and data batch,
/// which two cores zero, copy or update in about half the time one takes.
const PARALLEL_MEMORY: usize = 1 << 16;
/// The piece of a shared fill, copy or update that a thread takes at a time (128 KiB).
const MEMORY_CHUNK: usize = 1 << 14;

/// Sets every number of `out` to zero; a large `out` on both threads. (Zero, not any
/// value: a constant zero lets the compiler call `memset` on small slices too.)
#[inline]
pub(crate) fn zero(out: &mut [f64]) {
    if out.len() < PARALLEL_MEMORY {
        out.fill(0.0);
    } else {
        zero_shared(out);
    }
}

/// [`zero`] on a large slice, kept out of line so that the small case inlines to a
/// `memset`.
#[inline(never)]
fn zero_shared(out: &mut [f64]) {
    if helper().is_none() {
        out.fill(0.0);
        return;
    }
    let queue = Mutex::new(out.chunks_mut(MEMORY_CHUNK));
    run_shared(&|| loop {
        let next = lock(&queue).next();
        let Some(chunk) = next else { break };
        chunk.fill(0.0);
    });
}

/// Copies `src` into `out`; a large copy on both threads.
///
/// # Panics
/// If the two lengths differ.
#[inline]
pub(crate) fn copy(out: &mut [f64], src: &[f64]) {
    if out.len() < PARALLEL_MEMORY {
        out.copy_from_slice(src);
    } else {
        // A copy is an update of `out` from `src`, position by position.
        update_shared(out, src, [], &|out: &mut [f64], src: &[f64], []| {
            out.copy_from_slice(src)
        });
    }
}

/// [`copy`], telling also whether every number copied is finite (no NaN, no ±∞). Each
/// piece is tested right after it is copied, while it is in cache, so that the test
/// costs no second pass over memory.
///
/// # Panics
/// If the two lengths differ.
pub(crate) fn copy_finite(out: &mut [f64], src: &[f64]) -> bool {
    // A piece of 32 KiB or less: at once.
    const PIECE: usize = 1 << 12;
    if out.len() <= PIECE {
        out.copy_from_slice(src);
        return all_finite(out);
    }
    assert_eq!(out.len(), src.len(), "a copy between slices of one length");
    let bad = AtomicBool::new(false);
    let piece = |out: &mut [f64], src: &[f64], []: [&mut [f64]; 0]| {
        // Copied, then tested from the first level of cache.
        for (out, src) in out.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
            out.copy_from_slice(src);
            if !all_finite(out) {
                bad.store(true, Ordering::Relaxed);
            }
        }
    };
    if out.len() < PARALLEL_MEMORY {
        piece(out, src, []);
    } else {
        update_shared(out, src, [], &piece);
    }
    !bad.load(Ordering::Relaxed)
}

/// True if no number of `x` is NaN or ±∞: `|v| ≤ f64::MAX` holds for every finite
/// `v` and fails for ±∞ and NaN. Without an early exit, the test runs as vector code.
pub(crate) fn all_finite(x: &[f64]) -> bool {
    x.iter()
        .fold(true, |finite, v| finite & (v.abs() <= f64::MAX))
}

/// Runs the elementwise `update` over `w`, `g` and `state` (slices of one length): on
/// the whole slices, or, when they are large, on pieces of them at the same places,
/// taken by both threads. `update` must treat each position on its own (an optimizer's
/// step), so that the pieces give what the whole would.
///
/// # Panics
/// If the lengths differ and the slices are large enough to be shared.
#[inline]
pub(crate) fn update_in_pieces<const N: usize, F>(
    w: &mut [f64],
    g: &[f64],
    state: [&mut [f64]; N],
    update: &F,
) where
    F: Fn(&mut [f64], &[f64], [&mut [f64]; N]) + Sync,
{
    if w.len() < PARALLEL_MEMORY {
        update(w, g, state);
    } else {
        update_shared(w, g, state, update);
    }
}

/// [`update_in_pieces`] on large slices, out of line.
#[inline(never)]
fn update_shared<const N: usize, F>(w: &mut [f64], g: &[f64], state: [&mut [f64]; N], update: &F)
where
    F: Fn(&mut [f64], &[f64], [&mut [f64]; N]) + Sync,
{
    assert!(
        g.len() == w.len() && state.iter().all(|s| s.len() == w.len()),
        "an update over slices of one length"
    );
    if helper().is_none() {
        update(w, g, state);
        return;
    }
    /// The pieces not yet taken.
    struct Pieces<'a, const N: usize> {
        w: std::slice::ChunksMut<'a, f64>,
        g: std::slice::Chunks<'a, f64>,
        state: [std::slice::ChunksMut<'a, f64>; N],
    }
    let queue = Mutex::new(Pieces {
        w: w.chunks_mut(MEMORY_CHUNK),
        g: g.chunks(MEMORY_CHUNK),
        state: state.map(|s| s.chunks_mut(MEMORY_CHUNK)),
    });
    run_shared(&|| loop {
        let next = {
            let mut pieces = lock(&queue);
            match (pieces.w.next(), pieces.g.next()) {
                (Some(w), Some(g)) => {
                    let state = pieces
                        .state
                        .each_mut()
                        .map(|s| s.next().expect("as long as w"));
                    Some((w, g, state))
                }
                _ => None,
            }
        };
        let Some((w, g, state)) = next else { break };
        update(w, g, state);
    });
}

// ---------------------------------------------------------------------------------------
// The helper thread.

/// A job for the helper: the caller's closure with its lifetime erased.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn() + Sync + 'static));

// SAFETY: a `Job` points at a `dyn Fn() + Sync` closure, which may be called from any
// thread; `run_shared` keeps it alive for as long as the helper may call it.
#[allow(unsafe_code)]
unsafe impl Send for Job {}

/// The helper thread's mailbox.
struct Helper {
    /// Held by the one caller that shares a product with the helper at a time.
    claimed: AtomicBool,
    /// A job is waiting in `job` (lets a spinning helper see it without the lock).
    posted: AtomicBool,
    /// The helper is running a job it took.
    running: AtomicBool,
    /// The last job panicked on the helper.
    panicked: AtomicBool,
    job: Mutex<Option<Job>>,
    wake: Condvar,
}

/// True when the environment asks for matrix products on one thread:
/// `TAPEGRAD_NUM_THREADS=1` (or 0), like `OMP_NUM_THREADS` for BLAS libraries.
fn one_thread_asked(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n <= 1)
}

/// The helper, started on first use; `None` on a single core, when the environment
/// asks for one thread (`TAPEGRAD_NUM_THREADS=1`, read once), or if no thread could be
/// started.
fn helper() -> Option<&'static Helper> {
    static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();
    *HELPER.get_or_init(|| {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2
            || one_thread_asked(std::env::var("TAPEGRAD_NUM_THREADS").ok().as_deref())
        {
            return None;
        }
        let helper: &'static Helper = Box::leak(Box::new(Helper {
            claimed: AtomicBool::new(false),
            posted: AtomicBool::new(false),
            running: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            job: Mutex::new(None),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("tapegrad-helper".into())
            .spawn(move || helper.serve())
            .ok()?;
        Some(helper)
    })
}

impl Helper {
    /// The helper thread's loop: take a job, run it, repeat.
    fn serve(&self) -> ! {
        let mut just_ran = false;
        loop {
            if just_ran {
                let start = Instant::now();
                while !self.posted.load(Ordering::Acquire) && start.elapsed() < HELPER_SPIN {
                    std::hint::spin_loop();
                }
            }
            let job = {
                let mut slot = lock(&self.job);
                loop {
                    if let Some(job) = slot.take() {
                        self.posted.store(false, Ordering::Relaxed);
                        // Set under the lock: a caller that finds the slot empty knows
                        // the helper is running its job.
                        self.running.store(true, Ordering::Relaxed);
                        break job;
                    }
                    slot = self.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
            };
            // SAFETY: the caller that posted the job waits in `run_shared` until
            // `running` is false again, so the closure outlives this call.
            #[allow(unsafe_code)]
            let work = unsafe { &*job.0 };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            self.panicked.store(outcome.is_err(), Ordering::Relaxed);
            self.running.store(false, Ordering::Release);
            just_ran = true;
        }
    }
}

/// Runs `work` on this thread and, if the helper is free, on the helper at the same
/// time; returns once neither runs it. `work` shares its work out itself (both threads
/// take items from one queue), so running it once here must be enough to finish.
pub(crate) fn run_shared(work: &(dyn Fn() + Sync)) {
    run_shared_after(work, || ())
}

/// [`run_shared`], with `first` run on this thread before it joins in `work`.
pub(crate) fn run_shared_after<R>(work: &(dyn Fn() + Sync), first: impl FnOnce() -> R) -> R {
    let Some(helper) = helper() else {
        let result = first();
        work();
        return result;
    };
    if helper
        .claimed
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // Another thread's product has the helper: do this one alone.
        let result = first();
        work();
        return result;
    }

    /// Withdraws the job if the helper has not taken it, else waits until it is done,
    /// even when `work` panics here: the closure must outlive the helper's use of it.
    struct Withdraw(&'static Helper);
    impl Drop for Withdraw {
        fn drop(&mut self) {
            if lock(&self.0.job).take().is_some() {
                self.0.posted.store(false, Ordering::Relaxed);
            }
            // The helper is running its last row block: short, unless it was preempted,
            // and then this thread had better give its core away.
            let mut spins = 0u32;
            while self.0.running.load(Ordering::Acquire) {
                if spins < 1 << 12 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            self.0.claimed.store(false, Ordering::Release);
        }
    }

    let job: *const (dyn Fn() + Sync + '_) = work;
    // SAFETY: only the lifetime changes. The helper dereferences the pointer between
    // taking the job and clearing `running`, and `Withdraw` does not let this function
    // return (or unwind) before the job is withdrawn untaken or `running` is clear.
    #[allow(unsafe_code)]
    let job = Job(unsafe {
        std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const (dyn Fn() + Sync + 'static)>(
            job,
        )
    });
    *lock(&helper.job) = Some(job);
    helper.posted.store(true, Ordering::Release);
    helper.wake.notify_one();
    let withdraw = Withdraw(helper);
    let result = first();
    work();
    drop(withdraw);
    assert!(
        !helper.panicked.swap(false, Ordering::Relaxed),
        "work shared with the helper thread panicked"
    );
    result
}

#[cfg(test)]
mod tests {
    use super::{copy, one_thread_asked, zero, MEMORY_CHUNK, PARALLEL_MEMORY};

    /// Fills and copies below, at and above the size shared with the helper, with a
    /// last chunk that is short, reach every number and nothing past the slice.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "slices of 10^5 numbers take too long to interpret; the kernel's small \
                  shared products go through the same hand-off"
    )]
    fn shared_fills_and_copies_cover_the_slice() {
        for len in [
            PARALLEL_MEMORY - 1,
            PARALLEL_MEMORY,
            5 * MEMORY_CHUNK + 7 + PARALLEL_MEMORY,
        ] {
            let src: Vec<f64> = (0..len).map(|i| i as f64).collect();
            let mut buffer = vec![-1.0; len + 3];
            copy(&mut buffer[1..=len], &src);
            assert_eq!(buffer[1..=len], src[..], "copy of {len}");
            zero(&mut buffer[1..=len]);
            assert!(
                buffer[1..=len].iter().all(|&v| v == 0.0),
                "zeroing of {len}"
            );
            assert_eq!([buffer[0], buffer[len + 1], buffer[len + 2]], [-1.0; 3]);
        }
    }

    #[test]
    fn the_environment_can_keep_products_on_one_thread() {
        for (value, one) in [
            (None, false),
            (Some("1"), true),
            (Some(" 0 "), true),
            (Some("2"), false),
            (Some("many"), false),
        ] {
            assert_eq!(one_thread_asked(value), one, "{value:?}");
        }
    }
}
