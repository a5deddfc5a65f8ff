//! Workload W3 of `docs/performance.md`: one SGD step of a 784-256-10 ReLU network
//! with softmax cross-entropy on a batch of 128, in f64, as the benchmark's
//! `w3_mlp_step` group trains it.
//!
//! `cargo run --release --example w3_step` prints the step time the way the benchmark
//! reports it: the median over 60 rounds of the fastest of 3 steps.
//!
//! With `--mean <steps>` it prints the mean time of that many steps in a row instead,
//! slow steps included, as a training loop meets them.
//!
//! With `--rounds-from-stdin` it times one round for each line it reads (the fastest of
//! as many steps as the line says, 3 if it is empty) and prints that time in
//! milliseconds, one line per round. `scripts/compare.py` uses this to alternate rounds
//! with PyTorch in one run, so that both tools meet the same phases of a shared machine
//! and the ratio is taken within each round.

use std::io::{BufRead, Write};
use std::time::Instant;
use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
use tapegrad::optim::Sgd;
use tapegrad::{Result, Tensor};

/// Steps per round (unless a line of `--rounds-from-stdin` asks for another number);
/// the round's time is the fastest of them.
const CALLS: usize = 3;
/// Rounds of the printed median.
const ROUNDS: usize = 60;

/// The network, its data and the training state.
struct Workload {
    params: Params,
    net: Mlp,
    x: Tensor,
    labels: Vec<usize>,
    trainer: Trainer,
    sgd: Sgd,
}

impl Workload {
    fn new() -> Result<Workload> {
        let mut params = Params::new();
        let net = Mlp::builder(784)
            .layer(256, Activation::Relu)
            .layer(10, Activation::Identity)
            .build(&mut params, &mut init::rng(7))?;
        let x = Tensor::new(
            (0..128 * 784)
                .map(|k| ((k * 31 % 97) as f64) / 97.0)
                .collect(),
            [128, 784],
        )?;
        Ok(Workload {
            params,
            net,
            x,
            labels: (0..128).map(|k| k % 10).collect(),
            trainer: Trainer::new(),
            sgd: Sgd::new(0.01),
        })
    }

    /// One training step; returns the loss before the update.
    fn step(&mut self) -> Result<f64> {
        let (net, x, labels) = (&self.net, &self.x, &self.labels);
        self.trainer.step(&mut self.params, &mut self.sgd, |p| {
            let logits = net.forward(p, p.tape().constant_tensor(x))?;
            logits.try_softmax_cross_entropy(labels)
        })
    }

    /// The fastest of `calls` steps, in seconds.
    fn round(&mut self, calls: usize) -> Result<f64> {
        let mut fastest = f64::INFINITY;
        for _ in 0..calls {
            let start = Instant::now();
            std::hint::black_box(self.step()?);
            fastest = fastest.min(start.elapsed().as_secs_f64());
        }
        Ok(fastest)
    }
}

/// A positive number of steps, read from `text`.
fn count(text: Option<&str>) -> Option<usize> {
    text?.parse().ok().filter(|&n| n > 0)
}

fn main() -> Result<()> {
    let mut workload = Workload::new()?;
    let first = workload.step()?;
    for _ in 0..20 {
        workload.step()?;
    }
    let later = workload.step()?;
    assert!(
        later < first,
        "training lowers the loss ({first} → {later})"
    );

    if std::env::args().any(|a| a == "--rounds-from-stdin") {
        let mut out = std::io::stdout().lock();
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let calls = match line.trim() {
                "" => CALLS,
                n => count(Some(n)).unwrap_or_else(|| {
                    eprintln!("w3_step: a round's line holds a number of steps, not {n:?}");
                    std::process::exit(2);
                }),
            };
            writeln!(out, "{:.6}", workload.round(calls)? * 1e3).expect("stdout is open");
            out.flush().expect("stdout is open");
        }
        return Ok(());
    }

    // `--mean N`: the mean over N steps in a row, as a training loop meets them,
    // slow ones included (a step that waits on a preempted thread, say).
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--mean") {
        let steps = count(args.get(at + 1).map(String::as_str)).unwrap_or_else(|| {
            eprintln!("usage: w3_step [--rounds-from-stdin | --mean <steps>]");
            std::process::exit(2);
        });
        let start = Instant::now();
        for _ in 0..steps {
            std::hint::black_box(workload.step()?);
        }
        println!(
            "W3 step: {:.3} ms, the mean of {steps} steps in a row",
            start.elapsed().as_secs_f64() * 1e3 / steps as f64
        );
        return Ok(());
    }

    let mut rounds = (0..ROUNDS)
        .map(|_| workload.round(CALLS))
        .collect::<Result<Vec<f64>>>()?;
    rounds.sort_by(f64::total_cmp);
    println!(
        "W3 step (784-256-10 ReLU MLP, softmax cross-entropy, batch 128, f64):\n  \
         {:.3} ms, the median of {ROUNDS} rounds of the fastest of {CALLS} steps",
        rounds[ROUNDS / 2] * 1e3
    );
    println!("loss {first:.4} at the first step, {later:.4} after 21 steps");
    Ok(())
}
