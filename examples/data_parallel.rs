//! Data-parallel training on two threads: the two-moons network of `moons.rs`
//! (2-16-16-2 ReLU, softmax cross-entropy, Adam, mini-batches of 32), where each
//! mini-batch is split in two halves, each half goes through its own tape on its own
//! thread, and the two gradient sets are summed into one optimizer step.
//!
//! A tape is `Send` but not `Sync`, so each worker owns one (with its `Gradients`) and
//! reuses it from batch to batch; the parameters are shared read-only while the
//! workers run, and updated once both are done.
//!
//! The loss of a batch is the mean over its samples, so each half's loss is weighted by
//! its share of the batch (`half / batch`): the two weighted losses add up to the
//! batch's loss, and their gradients to the batch's gradient. The same training on one
//! thread, one tape per batch, must then end with the same parameters up to rounding
//! (the two halves sum the batch's rows in another order); the example checks that
//! every parameter agrees to 1e-12 and prints both runs' losses.
//!
//! Run with `cargo run --release --example data_parallel`.

use tapegrad::data::{two_moons, Batches, Batching, Dataset};
use tapegrad::nn::{accuracy, init, Activation, Mlp, ParamGradients, Params};
use tapegrad::optim::{Adam, Optimizer};
use tapegrad::{Gradients, Result, Tape, Tensor};

const EPOCHS: usize = 40;

/// One worker's tape and gradient buffers, kept from batch to batch.
#[derive(Default)]
struct Worker {
    tape: Tape,
    grads: Gradients,
    out: ParamGradients,
    inputs: Vec<f64>,
    targets: Vec<f64>,
    labels: Vec<usize>,
}

impl Worker {
    /// Records the loss of the samples `rows` weighted by `weight`, backpropagates it,
    /// and leaves the parameters' gradients in `self.out`; returns the weighted loss.
    fn run(
        &mut self,
        net: &Mlp,
        params: &Params,
        data: &Dataset,
        rows: &[usize],
        weight: f64,
    ) -> Result<f64> {
        self.tape.clear();
        let (shape, _) = data.gather(rows, &mut self.inputs, &mut self.targets, &mut self.labels);
        let x = Tensor::new(std::mem::take(&mut self.inputs), shape)?;
        let p = params.bind(&self.tape);
        let loss = net
            .forward(&p, self.tape.constant_tensor(&x))?
            .try_softmax_cross_entropy(&self.labels)?
            * weight;
        self.inputs = x.into_data();
        loss.backward_into(&mut self.grads)?;
        p.gradients_into(&self.grads, &mut self.out)?;
        loss.item()
    }
}

/// The element-wise sum of two gradient sets of the same parameters.
fn sum(a: &ParamGradients, b: &ParamGradients) -> Result<ParamGradients> {
    let mut pairs = Vec::with_capacity(a.len());
    for ((name, ga), (_, gb)) in a.iter().zip(b.iter()) {
        let data = ga
            .data()
            .iter()
            .zip(gb.data())
            .map(|(x, y)| x + y)
            .collect();
        pairs.push((name, Tensor::new(data, ga.shape().clone())?));
    }
    ParamGradients::from_pairs(pairs)
}

/// Trains from `start` on `threads` threads (1 or 2); returns the parameters and the
/// mean batch loss of every epoch.
fn train(net: &Mlp, start: &Params, data: &Dataset, threads: usize) -> Result<(Params, Vec<f64>)> {
    let mut params = start.clone();
    let mut adam = Adam::new(0.01);
    let mut batches = Batches::new(data.len(), Batching::MiniBatch(32), 11)?;
    let mut workers = [Worker::default(), Worker::default()];
    let mut losses = Vec::with_capacity(EPOCHS);
    for _ in 0..EPOCHS {
        let (mut total, mut count) = (0.0, 0);
        for batch in batches.epoch() {
            let loss = if threads == 1 {
                let loss = workers[0].run(net, &params, data, batch, 1.0)?;
                adam.step(&mut params, &workers[0].out)?;
                loss
            } else {
                let (left, right) = batch.split_at(batch.len() / 2);
                let n = batch.len() as f64;
                let [w0, w1] = &mut workers;
                let shared = &params;
                let (l0, l1) = std::thread::scope(|s| {
                    let h0 = s.spawn(|| w0.run(net, shared, data, left, left.len() as f64 / n));
                    let h1 = s.spawn(|| w1.run(net, shared, data, right, right.len() as f64 / n));
                    (h0.join(), h1.join())
                });
                let l0 = l0.expect("worker 0 panicked")?;
                let l1 = l1.expect("worker 1 panicked")?;
                adam.step(&mut params, &sum(&workers[0].out, &workers[1].out)?)?;
                l0 + l1
            };
            total += loss;
            count += 1;
        }
        losses.push(total / count as f64);
    }
    Ok((params, losses))
}

fn main() -> Result<()> {
    let data = two_moons(500, 0.1, 2024)?;
    let labels = data.labels().unwrap_or_default().to_vec();
    let mut start = Params::new();
    let net = Mlp::builder(2)
        .layer(16, Activation::Relu)
        .layer(16, Activation::Relu)
        .layer(2, Activation::Identity)
        .build(&mut start, &mut init::rng(5))?;

    let (one, one_losses) = train(&net, &start, &data, 1)?;
    let (two, two_losses) = train(&net, &start, &data, 2)?;

    println!("epoch   one thread   two threads");
    for (e, (a, b)) in one_losses.iter().zip(&two_losses).enumerate() {
        if e % 5 == 4 || e == 0 {
            println!("{:>5}   {a:.12}   {b:.12}", e + 1);
        }
    }
    let mut largest = 0.0_f64;
    for ((name, a), (_, b)) in one.iter().zip(two.iter()) {
        for (x, y) in a.data().iter().zip(b.data()) {
            largest = largest.max((x - y).abs());
        }
        assert_eq!(a.shape(), b.shape(), "{name}");
    }
    let loss_gap = one_losses
        .iter()
        .zip(&two_losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("largest difference: parameters {largest:.1e}, epoch losses {loss_gap:.1e}");
    assert!(largest <= 1e-12, "parameters differ by {largest:e}");
    assert!(loss_gap <= 1e-12, "epoch losses differ by {loss_gap:e}");
    for (name, params) in [("one thread", &one), ("two threads", &two)] {
        let scores = net.predict(params, data.inputs())?;
        println!(
            "{name:>11}: training accuracy {:.1}%",
            100.0 * accuracy(&scores, &labels)?
        );
    }
    Ok(())
}
