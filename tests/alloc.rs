//! After a warm-up step, recording on a cleared tape and backpropagating into reused
//! gradients touch the heap not once. A counting global allocator proves it.
//!
//! A training step of the W3 network — a 784-256-10 ReLU MLP, softmax cross-entropy,
//! batch 128, one SGD step on a reused tape — touches the heap not once after two
//! warm-up steps, and still computes the right loss, gradients and update. A counting
//! global allocator proves the first; a backward pass written out by hand, in plain
//! loops, checks the second.
//!
//! The network's products (128×784·784×256 and its transposes, 128×256·256×10) are far
//! above the size where matrix products go through the blocked kernel and its helper
//! thread, so the step exercises the packing buffers and the hand-off too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::{Gradients, Result, Tape, Tensor, Var};

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
            .matmul(p.get("w1")?)
            .try_add(p.get("b1")?)?
            .sigmoid();
        let o = h.matmul(p.get("w2")?).try_add(p.get("b2")?)?.sigmoid();
        o.try_half_sse(t.constant_tensor(&y))
    })?;
    let first = trainer.replay_step(&mut params, &mut sgd)?;
    let (second, count) = allocations(|| trainer.replay_step(&mut params, &mut sgd));
    assert!(second? < first);
    assert_eq!(count, 0, "a replayed step allocated {count} times");
    Ok(())
}

const BATCH: usize = 128;
const INPUTS: usize = 784;
const HIDDEN: usize = 256;
const CLASSES: usize = 10;
const LEARNING_RATE: f64 = 0.01;

/// The loss and the gradients of W3's loss with respect to its four parameters, written
/// out by hand: h = relu(x·W1 + b1), z = h·W2 + b2,
/// L = (1/N)·Σᵢ [ln Σⱼ exp zᵢⱼ − zᵢ,labelᵢ]; then ∂L/∂z = (softmax(z) − onehot)/N,
/// ∂L/∂W2 = hᵀ·∂L/∂z, ∂L/∂b2 = Σᵢ ∂L/∂zᵢ, ∂L/∂h = ∂L/∂z·W2ᵀ masked where the ReLU was
/// off, ∂L/∂W1 = xᵀ·∂L/∂h, ∂L/∂b1 = Σᵢ ∂L/∂hᵢ.
struct ByHand {
    loss: f64,
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: Vec<f64>,
}

fn by_hand(params: &Params, x: &[f64], labels: &[usize]) -> Result<ByHand> {
    let (w1, b1) = (
        params.get("layer1.weight")?.data(),
        params.get("layer1.bias")?.data(),
    );
    let (w2, b2) = (
        params.get("layer2.weight")?.data(),
        params.get("layer2.bias")?.data(),
    );
    let n = BATCH as f64;
    let mut h = vec![0.0; BATCH * HIDDEN];
    for i in 0..BATCH {
        for j in 0..HIDDEN {
            let pre: f64 = b1[j]
                + (0..INPUTS)
                    .map(|p| x[i * INPUTS + p] * w1[p * HIDDEN + j])
                    .sum::<f64>();
            h[i * HIDDEN + j] = pre.max(0.0);
        }
    }
    let mut dz = vec![0.0; BATCH * CLASSES];
    let mut loss = 0.0;
    for i in 0..BATCH {
        let z: Vec<f64> = (0..CLASSES)
            .map(|j| {
                b2[j]
                    + (0..HIDDEN)
                        .map(|p| h[i * HIDDEN + p] * w2[p * CLASSES + j])
                        .sum::<f64>()
            })
            .collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + z.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
        loss += lse - z[labels[i]];
        for j in 0..CLASSES {
            let onehot = if j == labels[i] { 1.0 } else { 0.0 };
            dz[i * CLASSES + j] = ((z[j] - lse).exp() - onehot) / n;
        }
    }
    let mut g = ByHand {
        loss: loss / n,
        w1: vec![0.0; INPUTS * HIDDEN],
        b1: vec![0.0; HIDDEN],
        w2: vec![0.0; HIDDEN * CLASSES],
        b2: vec![0.0; CLASSES],
    };
    let mut dh = vec![0.0; BATCH * HIDDEN];
    for i in 0..BATCH {
        for j in 0..CLASSES {
            let d = dz[i * CLASSES + j];
            g.b2[j] += d;
            for p in 0..HIDDEN {
                g.w2[p * CLASSES + j] += h[i * HIDDEN + p] * d;
                dh[i * HIDDEN + p] += d * w2[p * CLASSES + j];
            }
        }
    }
    for i in 0..BATCH {
        for j in 0..HIDDEN {
            // h > 0 exactly where the ReLU was on (at 0 its derivative is 0).
            let d = if h[i * HIDDEN + j] > 0.0 {
                dh[i * HIDDEN + j]
            } else {
                0.0
            };
            g.b1[j] += d;
            for p in 0..INPUTS {
                g.w1[p * HIDDEN + j] += x[i * INPUTS + p] * d;
            }
        }
    }
    Ok(g)
}

fn assert_close(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * scale.max(1.0),
            "{name}[{k}]: tapegrad {g}, by hand {w}"
        );
    }
}

#[test]
fn a_w3_training_step_allocates_nothing_after_two_warm_up_steps() -> Result<()> {
    let mut params = Params::new();
    let net = Mlp::builder(INPUTS)
        .layer(HIDDEN, Activation::Relu)
        .layer(CLASSES, Activation::Identity)
        .build(&mut params, &mut init::rng(7))?;
    let x = Tensor::new(
        (0..BATCH * INPUTS)
            .map(|k| ((k * 31 % 97) as f64) / 97.0)
            .collect(),
        [BATCH, INPUTS],
    )?;
    let labels: Vec<usize> = (0..BATCH).map(|k| (k * 7) % CLASSES).collect();
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(LEARNING_RATE));
    let mut step = |params: &mut Params| {
        trainer.step(params, &mut sgd, |p| {
            let logits = net.forward(p, p.tape().constant_tensor(&x))?;
            logits.try_softmax_cross_entropy(&labels)
        })
    };

    // Warm-up: the tape, the gradient arena, the trainer's buffers and the packing
    // buffers grow to their working size; the helper thread starts.
    step(&mut params)?;
    step(&mut params)?;

    let before = params.clone();
    let want = by_hand(&before, x.data(), &labels)?;
    let (loss, allocated) = allocations(|| step(&mut params));
    let loss = loss?;
    assert_eq!(
        allocated, 0,
        "a warm training step allocated {allocated} times"
    );

    // The step computed what the hand-written backward pass computes…
    assert!(
        (loss - want.loss).abs() <= 1e-12 * want.loss,
        "loss: tapegrad {loss}, by hand {}",
        want.loss
    );
    let grads = trainer.gradients();
    assert_close("∂L/∂W1", grads.get("layer1.weight")?.data(), &want.w1);
    assert_close("∂L/∂b1", grads.get("layer1.bias")?.data(), &want.b1);
    assert_close("∂L/∂W2", grads.get("layer2.weight")?.data(), &want.w2);
    assert_close("∂L/∂b2", grads.get("layer2.bias")?.data(), &want.b2);
    // …and SGD moved every parameter by −η times that gradient.
    for (name, grad) in [
        ("layer1.weight", &want.w1),
        ("layer1.bias", &want.b1),
        ("layer2.weight", &want.w2),
        ("layer2.bias", &want.b2),
    ] {
        let stepped: Vec<f64> = before
            .get(name)?
            .data()
            .iter()
            .zip(grad.iter())
            .map(|(w, g)| w - LEARNING_RATE * g)
            .collect();
        assert_close(name, params.get(name)?.data(), &stepped);
    }

    // The allocator really counts: a fresh trainer's first step must allocate.
    let (_, fresh) = allocations(|| {
        let mut trainer = Trainer::new();
        trainer.step(&mut params, &mut Sgd::new(LEARNING_RATE), |p| {
            let logits = net.forward(p, p.tape().constant_tensor(&x))?;
            logits.try_softmax_cross_entropy(&labels)
        })
    });
    assert!(fresh > 0);
    Ok(())
}

/// The loss and its gradient on a case small enough to check by hand: two rows of
/// three logits, where the loss and ∂L/∂z have closed forms.
#[test]
fn softmax_cross_entropy_of_a_tiny_batch_has_its_closed_form() -> Result<()> {
    let tape = tapegrad::Tape::new();
    // Row 0: logits (0, ln 2, ln 2) labelled 0 → softmax (1/5, 2/5, 2/5), loss ln 5.
    // Row 1: logits (ln 3, 0, 0) labelled 2 → softmax (3/5, 1/5, 1/5), loss ln 5.
    let (l2, l3) = (2f64.ln(), 3f64.ln());
    let z = tape.tensor(&Tensor::matrix(&[[0.0, l2, l2], [l3, 0.0, 0.0]])?);
    let loss = z.softmax_cross_entropy(&[0, 2]);
    assert!((loss.item()? - 5f64.ln()).abs() < 1e-15);
    let g = loss.backward()?.wrt(z)?;
    // (softmax − onehot)/N with N = 2.
    let want = [-0.4, 0.2, 0.2, 0.3, 0.1, -0.4];
    for (g, w) in g.data().iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{g} vs {w}");
    }
    // The labels are a constant input of the op: two nodes, the logits and the labels,
    // then the loss.
    assert_eq!(tape.len(), 3);
    // Errors record nothing.
    assert!(z.try_softmax_cross_entropy(&[0, 3]).is_err());
    assert!(z.try_softmax_cross_entropy(&[0]).is_err());
    assert_eq!(tape.len(), 3);
    Ok(())
}
