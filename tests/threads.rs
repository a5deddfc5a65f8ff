//! Data-parallel training through the public API: each of two threads records half of
//! every mini-batch on its own tape, the two gradient sets are summed, and one optimizer
//! step follows. It must match the same training on one thread to 1e-12.

use tapegrad::data::{two_moons, Batches, Batching, Dataset};
use tapegrad::nn::{init, Activation, Mlp, ParamGradients, Params};
use tapegrad::optim::{Adam, Optimizer};
use tapegrad::{Result, Tape, Tensor};

/// The gradients of the loss of the samples `rows`, weighted by `weight`, recorded on
/// `tape`; with the weighted loss.
fn half(
    tape: &mut Tape,
    net: &Mlp,
    params: &Params,
    data: &Dataset,
    rows: &[usize],
    weight: f64,
) -> Result<(f64, ParamGradients)> {
    tape.clear();
    let (mut inputs, mut targets, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let (shape, _) = data.gather(rows, &mut inputs, &mut targets, &mut labels);
    let x = Tensor::new(inputs, shape)?;
    let p = params.bind(tape);
    let loss = net
        .forward(&p, tape.constant_tensor(&x))?
        .try_softmax_cross_entropy(&labels)?
        * weight;
    let grads = loss.backward()?;
    Ok((loss.item()?, p.gradients(&grads)?))
}

fn sum(a: &ParamGradients, b: &ParamGradients) -> Result<ParamGradients> {
    let mut pairs = Vec::new();
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

fn largest_difference(a: &Params, b: &Params) -> f64 {
    assert_eq!(a.names().collect::<Vec<_>>(), b.names().collect::<Vec<_>>());
    a.iter()
        .zip(b.iter())
        .flat_map(|((_, x), (_, y))| x.data().iter().zip(y.data()).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max)
}

/// Trains for `steps` mini-batches on `threads` threads; the parameters, every step's
/// loss, and the gradients of the first step.
fn train(
    net: &Mlp,
    start: &Params,
    data: &Dataset,
    threads: usize,
    steps: usize,
) -> Result<(Params, Vec<f64>, ParamGradients)> {
    let mut params = start.clone();
    let mut adam = Adam::new(0.01);
    // Batches of 30 over 100 samples: three of 30 and one of 10 per epoch.
    let mut batches = Batches::new(data.len(), Batching::MiniBatch(30), 3)?;
    let mut tapes = [Tape::new(), Tape::new()];
    let (mut losses, mut first) = (Vec::new(), None);
    while losses.len() < steps {
        for batch in batches.epoch() {
            if losses.len() == steps {
                break;
            }
            let (loss, grads) = if threads == 1 {
                half(&mut tapes[0], net, &params, data, batch, 1.0)?
            } else {
                let (left, right) = batch.split_at(batch.len() / 2);
                let n = batch.len() as f64;
                let [t0, t1] = &mut tapes;
                let shared = &params;
                let (a, b) = std::thread::scope(|s| {
                    let a = s.spawn(|| half(t0, net, shared, data, left, left.len() as f64 / n));
                    let b = s.spawn(|| half(t1, net, shared, data, right, right.len() as f64 / n));
                    (a.join().unwrap(), b.join().unwrap())
                });
                let ((la, ga), (lb, gb)) = (a?, b?);
                (la + lb, sum(&ga, &gb)?)
            };
            adam.step(&mut params, &grads)?;
            losses.push(loss);
            first.get_or_insert(grads);
        }
    }
    Ok((params, losses, first.unwrap()))
}

#[test]
fn two_threads_with_summed_gradients_match_one_thread() -> Result<()> {
    let data = two_moons(100, 0.1, 9)?;
    let mut start = Params::new();
    let net = Mlp::builder(2)
        .layer(8, Activation::Tanh)
        .layer(2, Activation::Identity)
        .build(&mut start, &mut init::rng(4))?;
    let steps = 10;
    let (one, one_losses, one_grads) = train(&net, &start, &data, 1, steps)?;
    let (two, two_losses, two_grads) = train(&net, &start, &data, 2, steps)?;

    assert_eq!(one_losses.len(), steps);
    for (a, b) in one_losses.iter().zip(&two_losses) {
        assert!((a - b).abs() <= 1e-12, "losses {a} and {b}");
    }
    // The first step's summed gradients are the whole batch's.
    assert_eq!(one_grads.len(), two_grads.len());
    for ((name, a), (_, b)) in one_grads.iter().zip(two_grads.iter()) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.data().iter().zip(b.data()) {
            assert!((x - y).abs() <= 1e-12, "{name}: {x} against {y}");
        }
    }
    assert!(one_grads.norm() > 1e-3, "a gradient that moves the weights");
    assert!(largest_difference(&one, &two) <= 1e-12);
    // Training moved the weights and lowered the loss.
    assert!(largest_difference(&one, &start) > 1e-3);
    assert!(one_losses[steps - 1] < one_losses[0]);
    Ok(())
}

#[test]
fn one_half_alone_is_not_the_batch_gradient() -> Result<()> {
    // The sum matters: half of a batch gives another gradient than the whole.
    let data = two_moons(100, 0.1, 9)?;
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(8, Activation::Tanh)
        .layer(2, Activation::Identity)
        .build(&mut params, &mut init::rng(4))?;
    let rows: Vec<usize> = (0..30).collect();
    let mut tape = Tape::new();
    let (whole, gw) = half(&mut tape, &net, &params, &data, &rows, 1.0)?;
    let (a, ga) = half(&mut tape, &net, &params, &data, &rows[..15], 0.5)?;
    let (b, gb) = half(&mut tape, &net, &params, &data, &rows[15..], 0.5)?;
    assert!((whole - (a + b)).abs() <= 1e-12);
    let gap = |x: &ParamGradients, y: &ParamGradients| {
        x.iter()
            .zip(y.iter())
            .flat_map(|((_, p), (_, q))| p.data().iter().zip(q.data()).map(|(u, v)| (u - v).abs()))
            .fold(0.0, f64::max)
    };
    assert!(gap(&gw, &ga) > 1e-3);
    assert!(gap(&gw, &sum(&ga, &gb)?) <= 1e-12);
    Ok(())
}
