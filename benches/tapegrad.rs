//! Benchmarks of tapegrad's overhead: gradient time over plain-function time, measured
//! side by side in one run. Run with `cargo bench --bench tapegrad` (optionally a group
//! name after `--`). Each group prints the ratio of every benchmark to its plain
//! baseline at the end.

use criterion::{criterion_group, Criterion};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tapegrad::{Gradients, Tape, Var};

/// Mean time per iteration of every benchmark, by "group/name", as measured in this run.
static MEANS: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Benchmarks `routine` under criterion and records its mean time for the ratio table.
fn bench(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    name: &str,
    mut routine: impl FnMut(),
) {
    let key = format!("{group}/{name}");
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                routine();
            }
            let elapsed = start.elapsed();
            let mut means = MEANS.lock().unwrap();
            let entry = means.entry(key.clone()).or_insert((Duration::ZERO, 0));
            entry.0 += elapsed;
            entry.1 += iters;
            elapsed
        })
    });
}

fn mean(key: &str) -> Option<f64> {
    let means = MEANS.lock().unwrap();
    means.get(key).map(|(d, n)| d.as_secs_f64() / *n as f64)
}

/// Prints each benchmark of `group` as time and ratio to `baseline`, plus `extra` lines.
fn report(group: &str, baseline: &str, per: Option<(&str, f64)>) {
    let Some(base) = mean(&format!("{group}/{baseline}")) else {
        return;
    };
    println!("\n== {group}: ratios to {baseline} (this run)");
    let means = MEANS.lock().unwrap();
    for (key, (d, n)) in means
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{group}/")))
    {
        let t = d.as_secs_f64() / *n as f64;
        let per_text = per.map_or(String::new(), |(unit, count)| {
            format!("  {:8.2} ns per {unit}", t * 1e9 / count)
        });
        println!(
            "  {:<34} {:>12.3} ms  {:>6.2}x{per_text}",
            &key[group.len() + 1..],
            t * 1e3,
            t / base
        );
    }
}

// ---------------------------------------------------------------------------------------
// W1: y = Σᵢ sin(xᵢ·xᵢ₊₁) + tanh(xᵢ), i < n − 1.

const W1_N: usize = 100_000;

fn w1_inputs() -> Vec<f64> {
    (0..W1_N)
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

fn w1_record<'t>(tape: &'t Tape, x: &[f64], vars: &mut Vec<Var<'t>>) -> Var<'t> {
    vars.clear();
    vars.extend(x.iter().map(|&v| tape.var(v)));
    let mut y = tape.constant(0.0);
    for i in 0..x.len() - 1 {
        y = y + ((vars[i] * vars[i + 1]).sin() + vars[i].tanh());
    }
    y
}

fn w1_scalar(c: &mut Criterion) {
    let x = w1_inputs();
    let mut g = vec![0.0; W1_N];
    let name = "w1_scalar";
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));

    bench(&mut group, name, "plain_f64", || {
        black_box(w1_plain(black_box(&x)));
    });
    bench(&mut group, name, "hand_gradient", || {
        black_box(w1_hand_gradient(black_box(&x), &mut g));
    });

    let mut tape = Tape::with_capacity(6 * W1_N, 6 * W1_N);
    let mut grads = Gradients::new();
    bench(&mut group, name, "tapegrad_record_backward", || {
        tape.clear();
        let mut vars = Vec::with_capacity(W1_N);
        let y = w1_record(&tape, &x, &mut vars);
        y.backward_into(&mut grads).unwrap();
        for (gi, v) in g.iter_mut().zip(&vars) {
            *gi = grads.wrt_scalar(*v).unwrap();
        }
        black_box(&g);
    });

    // Replay: the graph is recorded once; each iteration sets the inputs, recomputes
    // the forward values and backpropagates.
    let replay_tape = Tape::with_capacity(6 * W1_N, 6 * W1_N);
    let mut vars = Vec::with_capacity(W1_N);
    let y = w1_record(&replay_tape, &x, &mut vars);
    bench(&mut group, name, "tapegrad_replay_backward", || {
        for (v, &xi) in vars.iter().zip(&x) {
            v.set_scalar(xi).unwrap();
        }
        replay_tape.replay();
        y.backward_into(&mut grads).unwrap();
        for (gi, v) in g.iter_mut().zip(&vars) {
            *gi = grads.wrt_scalar(*v).unwrap();
        }
        black_box(&g);
    });
    group.finish();
    report(name, "plain_f64", Some(("input", W1_N as f64)));
}

// ---------------------------------------------------------------------------------------
// Cheap ops: a chain of 10⁶ `+` and `*` nodes.

const CHEAP_NODES: usize = 1_000_000;

fn cheap_ops(c: &mut Criterion) {
    let name = "cheap_ops";
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    bench(&mut group, name, "plain_f64", || {
        let (a, b) = (black_box(0.25), black_box(0.999));
        let mut x = black_box(1.0);
        for _ in 0..CHEAP_NODES / 2 {
            x = (x + a) * b;
        }
        black_box(x);
    });
    let mut tape = Tape::with_capacity(CHEAP_NODES + 3, CHEAP_NODES + 3);
    let mut grads = Gradients::new();
    bench(&mut group, name, "tapegrad_record_backward", || {
        tape.clear();
        let (a, b) = (tape.var(0.25), tape.var(0.999));
        let mut x = tape.var(1.0);
        for _ in 0..CHEAP_NODES / 2 {
            x = (x + a) * b;
        }
        x.backward_into(&mut grads).unwrap();
        black_box(grads.wrt_scalar(a).unwrap());
    });
    group.finish();
    report(name, "plain_f64", Some(("node", CHEAP_NODES as f64)));
}

// ---------------------------------------------------------------------------------------
// W4: a 10⁶-deep chain x ← sin(x).

const CHAIN: usize = 1_000_000;

fn w4_chain(c: &mut Criterion) {
    let name = "w4_chain";
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    bench(&mut group, name, "plain_f64", || {
        let mut x = black_box(0.9f64);
        for _ in 0..CHAIN {
            x = x.sin();
        }
        black_box(x);
    });
    bench(&mut group, name, "tapegrad_fresh_tape", || {
        let tape = Tape::new();
        let x0 = tape.var(0.9);
        let mut x = x0;
        for _ in 0..CHAIN {
            x = x.sin();
        }
        black_box(x.backward().unwrap().wrt_scalar(x0).unwrap());
    });
    group.finish();
    report(name, "plain_f64", Some(("node", CHAIN as f64)));

    let tape = Tape::new();
    let x0 = tape.var(0.9);
    let mut x = x0;
    for _ in 0..CHAIN {
        x = x.sin();
    }
    let grads = x.backward().unwrap();
    let bytes = tape.heap_bytes() + grads.heap_bytes();
    println!(
        "  peak memory of tape + gradients: {:.1} bytes per node",
        bytes as f64 / (CHAIN + 1) as f64
    );
}

criterion_group!(benches, w1_scalar, cheap_ops, w4_chain);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
