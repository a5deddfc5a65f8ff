//! Benchmarks of tapegrad's overhead: gradient time over plain-function time, measured
//! side by side in one run. Run with `cargo bench --bench tapegrad` (optionally a group
//! name after `--`). Each group prints the ratio of every benchmark to its plain
//! baseline at the end. `W1_INPUTS=10000` (say) changes the size of the W1 groups.

use criterion::{criterion_group, Criterion};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tapegrad::ops::activation::tanh;
use tapegrad::{Gradients, Tape, Tensor, Var, Vars};

/// The system allocator, keeping count of the bytes live and their peak, so that W4 can
/// report peak memory. A reallocation counts its old and new blocks together, as if it
/// always moved: the peak is an upper bound.
struct PeakCounting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn count_alloc(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// atomics, which do not allocate.
unsafe impl GlobalAlloc for PeakCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakCounting = PeakCounting;

/// True when the command line selects `group` (no filter selects every group; a filter
/// is matched as `|`-separated substrings, enough for the group names).
fn selected(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.split('|').any(|part| group.contains(part)))
}

/// The benchmarks of one group: each runs under criterion, then all of them run again
/// in interleaved rounds (in each round every routine runs three times in a row, in
/// turn, and its fastest call counts, so that caches are as warm as under criterion),
/// and the group prints every routine's median time and its median ratio to the
/// baseline *within a round*. On a shared machine a slow moment then slows both sides
/// of a ratio, instead of whichever benchmark criterion happened to be timing.
struct Group<'a> {
    name: &'static str,
    routines: Vec<(&'static str, Routine<'a>)>,
    /// Pairs of routines whose ratio is printed as well (median of the rounds' ratios).
    pairs: Vec<(&'static str, &'static str)>,
}

/// One benchmarked routine.
type Routine<'a> = Box<dyn FnMut() + 'a>;

impl<'a> Group<'a> {
    fn new(name: &'static str) -> Self {
        Group {
            name,
            routines: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Also prints the ratio of routine `a` to routine `b` within each round.
    fn compare(&mut self, a: &'static str, b: &'static str) {
        self.pairs.push((a, b));
    }

    /// Adds a routine; the first one added is the baseline of the ratios.
    fn add(&mut self, name: &'static str, routine: impl FnMut() + 'a) {
        self.routines.push((name, Box::new(routine)));
    }

    /// Runs the group: criterion with `samples` samples over `seconds` per routine, then
    /// `rounds` interleaved rounds. `per` divides the times into a per-unit cost.
    fn run(
        mut self,
        c: &mut Criterion,
        samples: usize,
        seconds: u64,
        rounds: usize,
        per: Option<(&str, f64)>,
    ) {
        let mut group = c.benchmark_group(self.name);
        group
            .sample_size(samples)
            .measurement_time(Duration::from_secs(seconds));
        for (name, routine) in &mut self.routines {
            group.bench_function(*name, |b| b.iter(&mut *routine));
        }
        group.finish();
        if !selected(self.name) {
            return;
        }
        for (_, routine) in &mut self.routines {
            routine(); // warm-up
        }
        let mut times = vec![Vec::with_capacity(rounds); self.routines.len()];
        for _ in 0..rounds {
            for (k, (_, routine)) in self.routines.iter_mut().enumerate() {
                let mut fastest = f64::INFINITY;
                for _ in 0..3 {
                    let start = Instant::now();
                    routine();
                    fastest = fastest.min(start.elapsed().as_secs_f64());
                }
                times[k].push(fastest);
            }
        }
        let (base_name, base) = (self.routines[0].0, &times[0]);
        println!(
            "\n== {}: median of {rounds} interleaved rounds (fastest of 3 calls each), ratio to {base_name} in the same round",
            self.name
        );
        for ((name, _), t) in self.routines.iter().zip(&times) {
            let ratios: Vec<f64> = t.iter().zip(base).map(|(t, b)| t / b).collect();
            let time = median(t);
            let per_text = per.map_or(String::new(), |(unit, count)| {
                format!("  {:8.2} ns per {unit}", time * 1e9 / count)
            });
            println!(
                "  {name:<34} {:>9.3} ms  {:>6.2}x{per_text}",
                time * 1e3,
                median(&ratios)
            );
        }
        let times_of = |name: &str| {
            let k = self.routines.iter().position(|(n, _)| *n == name);
            &times[k.expect("a routine of the group")]
        };
        for (a, b) in &self.pairs {
            let ratios: Vec<f64> = times_of(a)
                .iter()
                .zip(times_of(b))
                .map(|(a, b)| a / b)
                .collect();
            println!("  {a} / {b}: {:.2}x", median(&ratios));
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------
// W1: y = Σᵢ sin(xᵢ·xᵢ₊₁) + tanh(xᵢ), i < n − 1.

/// The number of W1 inputs: 100,000, or `W1_INPUTS` from the environment (to see how
/// the ratios change once the tape no longer fits in the caches).
fn w1_n() -> usize {
    std::env::var("W1_INPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(100_000)
}

fn w1_inputs() -> Vec<f64> {
    (0..w1_n())
        .map(|i| ((i * 37 % 101) as f64 / 101.0 - 0.5) * 2.0)
        .collect()
}

fn w1_plain(x: &[f64]) -> f64 {
    let mut y = 0.0;
    for i in 0..x.len() - 1 {
        y += (x[i] * x[i + 1]).sin() + x[i].tanh();
    }
    y
}

/// The plain function with the scalar math tapegrad uses: libm's sine (the same bits
/// on every platform) and tapegrad's own tanh. Both are faster than std's on glibc
/// systems, so this row shows how much of tapegrad's ratio that accounts for.
fn w1_plain_same_math(x: &[f64]) -> f64 {
    let mut y = 0.0;
    for i in 0..x.len() - 1 {
        y += libm::sin(x[i] * x[i + 1]) + tanh(x[i]);
    }
    y
}

fn w1_hand_gradient(x: &[f64], g: &mut [f64]) -> f64 {
    g.fill(0.0);
    let mut y = 0.0;
    for i in 0..x.len() - 1 {
        let p = x[i] * x[i + 1];
        let t = x[i].tanh();
        y += p.sin() + t;
        let c = p.cos();
        g[i] += c * x[i + 1] + (1.0 - t * t);
        g[i + 1] += c * x[i];
    }
    y
}

/// W1 recorded on `tape`, its inputs one block of scalar variables.
fn w1_record<'t>(tape: &'t Tape, x: &[f64]) -> (Vars<'t>, Var<'t>) {
    let xs = tape.vars(x);
    let mut y = tape.constant(0.0);
    for (a, b) in xs.iter().zip(xs.iter().skip(1)) {
        y = y + ((a * b).sin() + a.tanh());
    }
    (xs, y)
}

fn w1_scalar(c: &mut Criterion) {
    let n = w1_n();
    let x = w1_inputs();
    let x = &x;
    // Declared before the group, whose routines borrow it.
    let replay_tape = Tape::with_capacity(6 * n, 6 * n);
    let mut group = Group::new("w1_scalar");
    group.add("plain_f64", || {
        black_box(w1_plain(black_box(x)));
    });
    group.add("plain_f64_same_math", || {
        black_box(w1_plain_same_math(black_box(x)));
    });
    let mut g = vec![0.0; n];
    group.add("hand_gradient", move || {
        black_box(w1_hand_gradient(black_box(x), &mut g));
    });

    let (mut tape, mut grads) = (Tape::with_capacity(6 * n, 6 * n), Gradients::new());
    let mut g = vec![0.0; n];
    group.add("tapegrad_record_backward", move || {
        tape.clear();
        let (xs, y) = w1_record(&tape, x);
        y.backward_into(&mut grads).unwrap();
        grads.wrt_vars(xs, &mut g).unwrap();
        black_box(&g);
    });

    // The same with the `reverse` crate (0.2), a scalar reverse-mode tape from crates.io:
    // 32-byte nodes holding both partials, values in the variables.
    let reference_tape = reverse::Tape::new();
    let mut g = vec![0.0; n];
    let mut check = vec![0.0; n];
    w1_by_reverse(&reference_tape, x, &mut check);
    let (mut tape, mut grads) = (Tape::new(), Gradients::new());
    let (xs, y) = w1_record(&tape, x);
    y.backward_into(&mut grads).unwrap();
    grads.wrt_vars(xs, &mut g).unwrap();
    let worst = g
        .iter()
        .zip(&check)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-12, "tapegrad and `reverse` agree ({worst:e})");
    tape.clear();
    group.add("reverse_0_2_record_backward", move || {
        w1_by_reverse(&reference_tape, x, &mut g);
        black_box(&g);
    });

    // Replay: the graph is recorded once; each iteration sets the inputs, recomputes
    // the forward values and backpropagates.
    let (xs, y) = w1_record(&replay_tape, x);
    let (mut grads, mut g) = (Gradients::new(), vec![0.0; n]);
    group.add("tapegrad_replay_backward", move || {
        xs.set(x).unwrap();
        y.tape().replay();
        y.backward_into(&mut grads).unwrap();
        grads.wrt_vars(xs, &mut g).unwrap();
        black_box(&g);
    });
    group.compare("tapegrad_record_backward", "reverse_0_2_record_backward");
    group.run(c, 20, 4, 40, Some(("input", n as f64)));
}

/// W1's value and gradient (into `g`) with the `reverse` crate, on a reused tape.
fn w1_by_reverse(tape: &reverse::Tape, x: &[f64], g: &mut [f64]) -> f64 {
    tape.clear();
    let xs = tape.add_vars(x);
    let mut y = tape.add_var(0.0);
    for (a, b) in xs.iter().zip(xs.iter().skip(1)) {
        y = y + ((*a * *b).sin() + a.tanh());
    }
    // The inputs are the tape's first nodes.
    g.copy_from_slice(&y.grad()[..x.len()]);
    y.val()
}

fn w1_tensor(c: &mut Criterion) {
    let n = w1_n();
    let x = w1_inputs();
    let xt = Tensor::vector(x.clone());
    let (x, xt) = (&x, &xt);
    let mut group = Group::new("w1_tensor");
    group.add("plain_f64", || {
        black_box(w1_plain(black_box(x)));
    });
    let mut g = vec![0.0; n];
    group.add("hand_gradient", move || {
        black_box(w1_hand_gradient(black_box(x), &mut g));
    });
    let (mut tape, mut grads, mut g) = (Tape::new(), Gradients::new(), vec![0.0; n]);
    group.add("tapegrad_record_backward", move || {
        tape.clear();
        let xv = tape.tensor(xt);
        let head = xv.narrow(0, 0, n - 1);
        let tail = xv.narrow(0, 1, n - 1);
        let y = (head * tail).sin().sum() + head.tanh().sum();
        y.backward_into(&mut grads).unwrap();
        grads.wrt_into(xv, &mut g).unwrap();
        black_box(&g);
    });
    group.run(c, 20, 4, 40, Some(("input", n as f64)));
}

// ---------------------------------------------------------------------------------------
// Cheap ops: a chain of 10⁶ `+` and `*` nodes.

const CHEAP_NODES: usize = 1_000_000;

fn cheap_ops(c: &mut Criterion) {
    let mut group = Group::new("cheap_ops");
    group.add("plain_f64", || {
        let (a, b) = (black_box(0.25), black_box(0.999));
        let mut x = black_box(1.0);
        for _ in 0..CHEAP_NODES / 2 {
            x = (x + a) * b;
        }
        black_box(x);
    });
    let (mut tape, mut grads) = (
        Tape::with_capacity(CHEAP_NODES + 3, CHEAP_NODES + 3),
        Gradients::new(),
    );
    group.add("tapegrad_record_backward", move || {
        tape.clear();
        let (a, b) = (tape.var(0.25), tape.var(0.999));
        let mut x = tape.var(1.0);
        for _ in 0..CHEAP_NODES / 2 {
            x = (x + a) * b;
        }
        x.backward_into(&mut grads).unwrap();
        black_box(grads.wrt_scalar(a).unwrap());
    });
    // The same chain with the two operands as plain numbers: every gradient then flows
    // down the chain, instead of also piling up in two shared variables.
    let (mut tape, mut grads) = (
        Tape::with_capacity(CHEAP_NODES + 3, CHEAP_NODES + 3),
        Gradients::new(),
    );
    group.add("tapegrad_f64_operands", move || {
        tape.clear();
        let x0 = tape.var(1.0);
        let mut x = x0;
        for _ in 0..CHEAP_NODES / 2 {
            x = (x + 0.25) * 0.999;
        }
        x.backward_into(&mut grads).unwrap();
        black_box(grads.wrt_scalar(x0).unwrap());
    });
    group.run(c, 10, 4, 30, Some(("node", CHEAP_NODES as f64)));
}

// ---------------------------------------------------------------------------------------
// W4: a 10⁶-deep chain x ← sin(x).

const CHAIN: usize = 1_000_000;

fn w4_chain(c: &mut Criterion) {
    let name = "w4_chain";
    let mut group = Group::new(name);
    group.add("plain_f64", || {
        let mut x = black_box(0.9f64);
        for _ in 0..CHAIN {
            x = x.sin();
        }
        black_box(x);
    });
    group.add("tapegrad_fresh_tape", || {
        let tape = Tape::new();
        let x0 = tape.var(0.9);
        let mut x = x0;
        for _ in 0..CHAIN {
            x = x.sin();
        }
        black_box(x.backward().unwrap().wrt_scalar(x0).unwrap());
    });
    group.run(c, 10, 4, 15, Some(("node", CHAIN as f64)));

    // Peak heap memory while a fresh tape records the chain and backpropagates, and the
    // memory held at the end by a tape sized up front.
    if !selected(name) {
        return;
    }
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    {
        let tape = Tape::new();
        let x0 = tape.var(0.9);
        let mut x = x0;
        for _ in 0..CHAIN {
            x = x.sin();
        }
        black_box(x.backward().unwrap().wrt_scalar(x0).unwrap());
    }
    let peak = PEAK.load(Ordering::Relaxed) - before;
    println!(
        "  peak memory of a fresh tape, recording and backward: {:.1} bytes per node",
        peak as f64 / (CHAIN + 1) as f64
    );
    let tape = Tape::with_capacity(CHAIN + 1, CHAIN + 1);
    let x0 = tape.var(0.9);
    let mut x = x0;
    for _ in 0..CHAIN {
        x = x.sin();
    }
    let grads = x.backward().unwrap();
    println!(
        "  memory held by a tape made with_capacity and its gradients: {:.1} bytes per node",
        (tape.heap_bytes() + grads.heap_bytes()) as f64 / (CHAIN + 1) as f64
    );
}

// ---------------------------------------------------------------------------------------
// W2: the lecture's XOR network, 2-4-1 sigmoid, full batch, lr 0.1, 10,000 epochs.

const XOR_EPOCHS: usize = 10_000;
const XOR_X: [[f64; 2]; 4] = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
const XOR_Y: [f64; 4] = [0.0, 1.0, 1.0, 0.0];

/// Deterministic starting weights shared by both implementations.
fn xor_start() -> ([[f64; 4]; 2], [f64; 4], [f64; 4], f64) {
    let w1 = [[0.5, -0.3, 0.8, -0.6], [-0.4, 0.7, 0.2, 0.9]];
    let w2 = [0.6, -0.8, 0.3, 0.5];
    (w1, [0.0; 4], w2, 0.0)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The lecture's NumPy training loop, written out in plain Rust.
fn xor_by_hand() -> f64 {
    let (mut w1, mut b1, mut w2, mut b2) = xor_start();
    let lr = 0.1;
    for _ in 0..XOR_EPOCHS {
        let mut h = [[0.0; 4]; 4];
        let mut o = [0.0; 4];
        for r in 0..4 {
            for j in 0..4 {
                h[r][j] = sigmoid(XOR_X[r][0] * w1[0][j] + XOR_X[r][1] * w1[1][j] + b1[j]);
            }
            o[r] = sigmoid((0..4).map(|j| h[r][j] * w2[j]).sum::<f64>() + b2);
        }
        let mut dw1 = [[0.0; 4]; 2];
        let (mut db1, mut dw2, mut db2) = ([0.0; 4], [0.0; 4], 0.0);
        for r in 0..4 {
            let od = (XOR_Y[r] - o[r]) * o[r] * (1.0 - o[r]);
            db2 += od;
            for j in 0..4 {
                dw2[j] += h[r][j] * od;
                let hd = od * w2[j] * h[r][j] * (1.0 - h[r][j]);
                db1[j] += hd;
                dw1[0][j] += XOR_X[r][0] * hd;
                dw1[1][j] += XOR_X[r][1] * hd;
            }
        }
        for j in 0..4 {
            w2[j] += lr * dw2[j];
            b1[j] += lr * db1[j];
            w1[0][j] += lr * dw1[0][j];
            w1[1][j] += lr * dw1[1][j];
        }
        b2 += lr * db2;
    }
    w2[0] + b2
}

/// The lecture's starting weights in a parameter store, with the data.
fn xor_params() -> (tapegrad::nn::Params, Tensor, Tensor) {
    let (w1, b1, w2, b2) = xor_start();
    let mut params = tapegrad::nn::Params::new();
    let flat: Vec<f64> = w1.iter().flatten().copied().collect();
    params
        .insert("w1", Tensor::new(flat, [2, 4]).unwrap())
        .unwrap();
    params
        .insert("b1", Tensor::new(b1.to_vec(), [1, 4]).unwrap())
        .unwrap();
    params
        .insert("w2", Tensor::new(w2.to_vec(), [4, 1]).unwrap())
        .unwrap();
    params
        .insert("b2", Tensor::new(vec![b2], [1, 1]).unwrap())
        .unwrap();
    let x = Tensor::new(XOR_X.iter().flatten().copied().collect(), [4, 2]).unwrap();
    let y = Tensor::new(XOR_Y.to_vec(), [4, 1]).unwrap();
    (params, x, y)
}

/// The lecture's XOR loss, ½Σ(t − o)², of the 2-4-1 sigmoid network.
fn xor_loss<'t>(
    p: &tapegrad::nn::Bound<'t, '_>,
    x: &Tensor,
    y: &Tensor,
) -> tapegrad::Result<Var<'t>> {
    let tape = p.tape();
    let h = tape
        .constant_tensor(x)
        .matmul(p.get("w1")?)
        .try_add(p.get("b1")?)?
        .sigmoid();
    let o = h.matmul(p.get("w2")?).try_add(p.get("b2")?)?.sigmoid();
    o.try_half_sse(tape.constant_tensor(y))
}

fn xor_by_tapegrad() -> f64 {
    use tapegrad::nn::Trainer;
    use tapegrad::optim::Sgd;
    let (mut params, x, y) = xor_params();
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    for _ in 0..XOR_EPOCHS {
        trainer
            .step(&mut params, &mut sgd, |p| xor_loss(p, &x, &y))
            .unwrap();
    }
    params.get("w2").unwrap().data()[0] + params.get("b2").unwrap().data()[0]
}

/// The same training through `Trainer::record` and `Trainer::replay_step`: the loss is
/// recorded once and replayed at every epoch.
fn xor_by_trainer_replay() -> f64 {
    use tapegrad::nn::Trainer;
    use tapegrad::optim::Sgd;
    let (mut params, x, y) = xor_params();
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    trainer.record(&params, |p| xor_loss(p, &x, &y)).unwrap();
    for _ in 0..XOR_EPOCHS {
        trainer.replay_step(&mut params, &mut sgd).unwrap();
    }
    params.get("w2").unwrap().data()[0] + params.get("b2").unwrap().data()[0]
}

/// The same training with the graph recorded once and replayed every epoch, through the
/// public API: set the weights, replay, backward, read the gradients, update.
fn xor_by_replay() -> f64 {
    let (w1, b1, w2, b2) = xor_start();
    let mut weights = [
        Tensor::new(w1.iter().flatten().copied().collect(), [2, 4]).unwrap(),
        Tensor::new(b1.to_vec(), [1, 4]).unwrap(),
        Tensor::new(w2.to_vec(), [4, 1]).unwrap(),
        Tensor::new(vec![b2], [1, 1]).unwrap(),
    ];
    let x = Tensor::new(XOR_X.iter().flatten().copied().collect(), [4, 2]).unwrap();
    let y = Tensor::new(XOR_Y.to_vec(), [4, 1]).unwrap();
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = weights.iter().map(|w| tape.tensor(w)).collect();
    let h = tape
        .constant_tensor(&x)
        .matmul(vars[0])
        .try_add(vars[1])
        .unwrap()
        .sigmoid();
    let o = h.matmul(vars[2]).try_add(vars[3]).unwrap().sigmoid();
    let loss = o.half_sse(tape.constant_tensor(&y));
    let (mut grads, mut g) = (Gradients::new(), [0.0; 8]);
    for epoch in 0..XOR_EPOCHS {
        if epoch > 0 {
            for (v, w) in vars.iter().zip(&weights) {
                v.set_value(w).unwrap();
            }
            tape.replay();
        }
        loss.backward_into(&mut grads).unwrap();
        for (v, w) in vars.iter().zip(weights.iter_mut()) {
            let g = &mut g[..w.numel()];
            grads.wrt_into(*v, g).unwrap();
            for (w, d) in w.data_mut().iter_mut().zip(g.iter()) {
                *w -= 0.1 * d;
            }
        }
    }
    weights[2].data()[0] + weights[3].data()[0]
}

fn w2_xor(c: &mut Criterion) {
    for (name, train) in [
        ("the recording trainer", xor_by_tapegrad as fn() -> f64),
        ("the replaying trainer", xor_by_trainer_replay),
        ("replay through the tape", xor_by_replay),
    ] {
        assert!((xor_by_hand() - train()).abs() < 1e-9, "{name} agrees");
    }
    let mut group = Group::new("w2_xor");
    group.add("hand_written_rust", || {
        black_box(xor_by_hand());
    });
    group.add("tapegrad_trainer", || {
        black_box(xor_by_tapegrad());
    });
    group.add("tapegrad_trainer_replay_step", || {
        black_box(xor_by_trainer_replay());
    });
    group.add("tapegrad_replay", || {
        black_box(xor_by_replay());
    });
    group.run(c, 10, 5, 30, Some(("epoch", XOR_EPOCHS as f64)));
}

// ---------------------------------------------------------------------------------------
// W3: one SGD step of a 784-256-10 ReLU MLP with softmax cross-entropy, batch 128.

fn w3_mlp_step(c: &mut Criterion) {
    use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
    use tapegrad::optim::Sgd;
    let name = "w3_mlp_step";
    let mut params = Params::new();
    let net = Mlp::builder(784)
        .layer(256, Activation::Relu)
        .layer(10, Activation::Identity)
        .build(&mut params, &mut init::rng(7))
        .unwrap();
    let x = Tensor::new(
        (0..128 * 784)
            .map(|k| ((k * 31 % 97) as f64) / 97.0)
            .collect(),
        [128, 784],
    )
    .unwrap();
    let labels: Vec<usize> = (0..128).map(|k| k % 10).collect();
    let (x, labels, net) = (&x, &labels, &net);
    let mut group = Group::new(name);
    let (forward_params, mut forward_tape) = (params.clone(), Tape::new());
    group.add("tapegrad_forward_only", move || {
        // A fresh recording each time, as a training step makes, without backward.
        forward_tape.clear();
        let bound = forward_params.bind(&forward_tape);
        let logits = net
            .forward(&bound, forward_tape.constant_tensor(x))
            .unwrap();
        black_box(logits.softmax_cross_entropy(labels).item().unwrap());
    });
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.01));
    group.add("tapegrad_step", move || {
        black_box(
            trainer
                .step(&mut params, &mut sgd, |p| {
                    let logits = net.forward(p, p.tape().constant_tensor(x))?;
                    logits.try_softmax_cross_entropy(labels)
                })
                .unwrap(),
        );
    });
    group.run(c, 20, 5, 60, None);
}

// ---------------------------------------------------------------------------------------
// hvp: one gradient, one Hessian-vector product and one dense Hessian of a random
// smooth function of 50 inputs (two random 30×50 layers, a log-softmax, sines, a
// softplus and a quartic term). An hvp should cost a small constant times one
// gradient; a Hessian about 50 backward passes more.

const HVP_N: usize = 50;

/// The random function's constants, fixed by a seed.
struct Random50 {
    w1: Tensor,
    w2: Tensor,
    c: Tensor,
}

impl Random50 {
    fn new(seed: u64) -> Random50 {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut random = |shape: &[usize], scale: f64| {
            let n = shape.iter().product();
            let data = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
            Tensor::new(data, shape).unwrap()
        };
        Random50 {
            w1: random(&[30, HVP_N], 0.3),
            w2: random(&[30, HVP_N], 0.3),
            c: random(&[HVP_N], 1.5),
        }
    }

    fn eval<'t>(&self, x: &[Var<'t>]) -> tapegrad::Result<Var<'t>> {
        let tape = x[0].tape();
        let x = x[0];
        let column = x.reshape([HVP_N, 1]);
        let h = tape.constant_tensor(&self.w1).matmul(column).tanh();
        let s = tape.constant_tensor(&self.w2).matmul(column).sigmoid();
        let c = tape.constant_tensor(&self.c);
        let layers = h.try_mul(s)?.sum();
        let softmax = h.log_softmax(0).sum();
        let waves = x.try_mul(c)?.sin().sum();
        let soft = x.softplus().try_mul(c)?.sum();
        let quartic = (x.powi(2).sum() * 0.02).powi(2);
        Ok(layers + softmax * 0.1 + waves + soft + quartic)
    }
}

fn hvp_vs_gradient(c: &mut Criterion) {
    use tapegrad::higher::{grad, hessian, hvp};
    let f = Random50::new(7);
    let x = [Tensor::vector(
        (0..HVP_N)
            .map(|i| ((i * 37 % 101) as f64 / 101.0 - 0.5) * 2.0)
            .collect::<Vec<_>>(),
    )];
    let v = [Tensor::vector(
        (0..HVP_N)
            .map(|i| ((i * 53 % 97) as f64 / 97.0 - 0.5) * 2.0)
            .collect::<Vec<_>>(),
    )];
    // Ten calls per routine, so that one call of the interleaved rounds is long enough
    // to time.
    let (f, x, v) = (&f, &x, &v);
    let mut group = Group::new("hvp");
    group.add("gradient", || {
        for _ in 0..10 {
            black_box(grad(|x| f.eval(x), black_box(x)).unwrap());
        }
    });
    group.add("hvp", || {
        for _ in 0..10 {
            black_box(hvp(|x| f.eval(x), black_box(x), black_box(v)).unwrap());
        }
    });
    group.add("hessian", || {
        for _ in 0..10 {
            black_box(hessian(|x| f.eval(x), black_box(x)).unwrap());
        }
    });
    group.run(c, 30, 3, 30, None);
}

criterion_group!(
    benches,
    w1_scalar,
    w1_tensor,
    cheap_ops,
    w2_xor,
    w3_mlp_step,
    w4_chain,
    hvp_vs_gradient
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
