//! Networks and training: matrix ops, softmax and losses, parameters, layers,
//! optimizers, batching, and the lecture's XOR network trained to its numbers.

use rand::{Rng, RngExt};
use std::cell::RefCell;
use std::collections::HashSet;
use tapegrad::data::{two_moons, Batches, Batching, Dataset};
use tapegrad::nn::{accuracy, init, Activation, Init, Mlp, ParamGradients, Params, Trainer};
use tapegrad::optim::{AdaGrad, Adam, Momentum, Nesterov, Optimizer, RmsProp, Sgd};
use tapegrad::{Error, Function, Result, Tape, Tensor};

fn xor_data() -> (Tensor, Tensor) {
    let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).unwrap();
    let y = Tensor::matrix(&[[0.0], [1.0], [1.0], [0.0]]).unwrap();
    (x, y)
}

/// The lecture's 2-4-1 network with weights from N(0, 1) and zero biases.
fn xor_network(activation: Activation, seed: u64) -> (Mlp, Params) {
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(4, activation.clone())
        .layer(1, activation)
        .init(Init::Normal {
            mean: 0.0,
            std: 1.0,
        })
        .build(&mut params, &mut init::rng(seed))
        .unwrap();
    (net, params)
}

/// Trains the lecture's way: full batch, plain gradient descent with lr 0.1 on
/// ½Σ(t − o)². Returns the mean squared error the lecture prints, after training.
fn train_xor(net: &Mlp, params: &mut Params, epochs: usize) -> f64 {
    let (x, y) = xor_data();
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    for _ in 0..epochs {
        trainer
            .step(params, &mut sgd, |p| {
                let o = net.forward(p, p.tape().constant_tensor(&x))?;
                o.try_half_sse(p.tape().constant_tensor(&y))
            })
            .unwrap();
    }
    let o = net.predict(params, &x).unwrap();
    mean_squared_error(o.data(), y.data())
}

fn mean_squared_error(o: &[f64], y: &[f64]) -> f64 {
    o.iter().zip(y).map(|(o, y)| (y - o) * (y - o)).sum::<f64>() / o.len() as f64
}

#[test]
fn xor_is_learned_with_sigmoids_and_not_by_linear_layers() {
    let (x, y) = xor_data();
    let (net, mut params) = xor_network(Activation::Sigmoid, 42);
    let mse = train_xor(&net, &mut params, 10_000);
    assert!(mse < 0.01, "mse {mse}");
    let o = net.predict(&params, &x).unwrap();
    for (o, t) in o.data().iter().zip(y.data()) {
        assert_eq!(*o > 0.5, *t > 0.5, "prediction {o} for target {t}");
    }

    // Without activations the network is one affine map, whose best fit of XOR
    // predicts 0.5 everywhere: MSE 0.25.
    let (net, mut params) = xor_network(Activation::Identity, 42);
    let mse = train_xor(&net, &mut params, 10_000);
    assert!(mse.is_finite() && mse >= 0.2, "mse {mse}");
}

/// The lecture's NumPy backward pass, transcribed into plain Rust loops.
struct LectureXor {
    w1: Vec<f64>, // [2, 4]
    b1: Vec<f64>, // [1, 4]
    w2: Vec<f64>, // [4, 1]
    b2: f64,
}

impl LectureXor {
    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    // Index loops on purpose: each line reads as the matrix formula it transcribes.
    #[allow(clippy::needless_range_loop)]
    fn train_epoch(&mut self, x: &[[f64; 2]; 4], y: &[f64; 4], lr: f64) {
        // feedforward
        let mut hidden = [[0.0; 4]; 4];
        let mut output = [0.0; 4];
        for r in 0..4 {
            for j in 0..4 {
                let a = x[r][0] * self.w1[j] + x[r][1] * self.w1[4 + j] + self.b1[j];
                hidden[r][j] = Self::sigmoid(a);
            }
            let a: f64 = (0..4).map(|j| hidden[r][j] * self.w2[j]).sum::<f64>() + self.b2;
            output[r] = Self::sigmoid(a);
        }
        // backward
        let mut output_delta = [0.0; 4];
        let mut hidden_delta = [[0.0; 4]; 4];
        for r in 0..4 {
            let output_error = y[r] - output[r];
            output_delta[r] = output_error * output[r] * (1.0 - output[r]);
            for j in 0..4 {
                let hidden_error = output_delta[r] * self.w2[j];
                hidden_delta[r][j] = hidden_error * hidden[r][j] * (1.0 - hidden[r][j]);
            }
        }
        for j in 0..4 {
            self.w2[j] += (0..4).map(|r| hidden[r][j] * output_delta[r]).sum::<f64>() * lr;
        }
        self.b2 += output_delta.iter().sum::<f64>() * lr;
        for i in 0..2 {
            for j in 0..4 {
                self.w1[i * 4 + j] +=
                    (0..4).map(|r| x[r][i] * hidden_delta[r][j]).sum::<f64>() * lr;
            }
        }
        for j in 0..4 {
            self.b1[j] += (0..4).map(|r| hidden_delta[r][j]).sum::<f64>() * lr;
        }
    }
}

#[test]
fn xor_weights_follow_the_lectures_backward_formulas() {
    let (x, y) = xor_data();
    let (net, mut params) = xor_network(Activation::Sigmoid, 7);
    let get = |p: &Params, name: &str| p.get(name).unwrap().data().to_vec();
    let mut lecture = LectureXor {
        w1: get(&params, "layer1.weight"),
        b1: get(&params, "layer1.bias"),
        w2: get(&params, "layer2.weight"),
        b2: get(&params, "layer2.bias")[0],
    };
    let rows = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let targets = [0.0, 1.0, 1.0, 0.0];
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    for epoch in 0..10 {
        trainer
            .step(&mut params, &mut sgd, |p| {
                let o = net.forward(p, p.tape().constant_tensor(&x))?;
                o.try_half_sse(p.tape().constant_tensor(&y))
            })
            .unwrap();
        lecture.train_epoch(&rows, &targets, 0.1);
        let pairs = [
            ("layer1.weight", lecture.w1.clone()),
            ("layer1.bias", lecture.b1.clone()),
            ("layer2.weight", lecture.w2.clone()),
            ("layer2.bias", vec![lecture.b2]),
        ];
        for (name, want) in pairs {
            let got = get(&params, name);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "epoch {epoch} {name}: {g} vs {w}");
            }
        }
    }
    // The weights did move: the comparison is not between two untouched copies.
    assert!(lecture.w2.iter().all(|w| w.is_finite()));
    let start = xor_network(Activation::Sigmoid, 7).1;
    assert!((get(&params, "layer2.weight")[0] - get(&start, "layer2.weight")[0]).abs() > 1e-4);
}

/// Three steps of `optimizer` on f(w) = ½‖w − c‖², whose gradient is w − c; the
/// gradient comes from the tape.
fn three_steps(optimizer: &mut dyn Optimizer, w0: &[f64], c: &[f64]) -> Vec<Vec<f64>> {
    let mut params = Params::new();
    params.insert("w", Tensor::vector(w0.to_vec())).unwrap();
    let c = Tensor::vector(c.to_vec());
    let mut trainer = Trainer::new();
    let mut path = Vec::new();
    for _ in 0..3 {
        trainer
            .step(&mut params, optimizer, |p| {
                p.get("w")?.try_half_sse(p.tape().constant_tensor(&c))
            })
            .unwrap();
        path.push(params.get("w").unwrap().data().to_vec());
    }
    path
}

fn assert_path(name: &str, got: &[Vec<f64>], want: &[Vec<f64>]) {
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        for (g, w) in g.iter().zip(w) {
            assert!(
                (g - w).abs() < 1e-12,
                "{name} step {}: {g} vs {w}",
                step + 1
            );
        }
    }
}

/// The hand computation: each formula on each coordinate, with g = w − c.
fn reference(
    w0: &[f64],
    c: &[f64],
    mut update: impl FnMut(usize, f64, f64, &mut [f64; 2]) -> f64,
) -> Vec<Vec<f64>> {
    let mut w = w0.to_vec();
    let mut state = vec![[0.0; 2]; w.len()];
    let mut path = Vec::new();
    for t in 1..=3 {
        for k in 0..w.len() {
            let g = w[k] - c[k];
            w[k] = update(t, w[k], g, &mut state[k]);
        }
        path.push(w.clone());
    }
    path
}

/// Momentum on one coordinate: v ← μv − ηg, w ← w + v.
fn momentum_rule(lr: f64, mu: f64) -> impl FnMut(usize, f64, f64, &mut [f64; 2]) -> f64 {
    move |_, w, g, s| {
        s[0] = mu * s[0] - lr * g;
        w + s[0]
    }
}

/// Adam on one coordinate at step t (β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸), with the bias
/// corrections.
fn adam_rule(lr: f64) -> impl FnMut(usize, f64, f64, &mut [f64; 2]) -> f64 {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    move |t, w, g, s| {
        s[0] = b1 * s[0] + (1.0 - b1) * g;
        s[1] = b2 * s[1] + (1.0 - b2) * g * g;
        let m_hat = s[0] / (1.0 - b1.powi(t as i32));
        let v_hat = s[1] / (1.0 - b2.powi(t as i32));
        w - lr * m_hat / (v_hat.sqrt() + eps)
    }
}

#[test]
fn each_optimizer_follows_its_formula_for_three_steps() {
    let w0 = [1.0, -2.0, 0.5];
    let c = [3.0, 0.5, -1.0];
    let lr = 0.1;

    // SGD in closed form: w_k = c + (1 − η)^k (w0 − c).
    let want: Vec<Vec<f64>> = (1..=3)
        .map(|k| {
            w0.iter()
                .zip(&c)
                .map(|(w, c)| c + 0.9f64.powi(k) * (w - c))
                .collect()
        })
        .collect();
    assert_path("sgd", &three_steps(&mut Sgd::new(lr), &w0, &c), &want);
    // First coordinate by hand: 1 − 0.1·(1 − 3) = 1.2, then 1.38, then 1.542.
    let sgd = three_steps(&mut Sgd::new(lr), &w0, &c);
    assert!((sgd[0][0] - 1.2).abs() < 1e-15 && (sgd[2][0] - 1.542).abs() < 1e-12);

    let mu = 0.9;
    let want = reference(&w0, &c, momentum_rule(lr, mu));
    assert_path(
        "momentum",
        &three_steps(&mut Momentum::new(lr), &w0, &c),
        &want,
    );
    // By hand, first coordinate (g = −2): v = 0.2, w = 1.2; g = −1.8: v = 0.36, w = 1.56.
    let momentum = three_steps(&mut Momentum::new(lr), &w0, &c);
    assert!((momentum[1][0] - 1.56).abs() < 1e-12);

    let want = reference(&w0, &c, |_, w, g, s| {
        s[0] = mu * s[0] - lr * g;
        w + mu * s[0] - lr * g
    });
    assert_path(
        "nesterov",
        &three_steps(&mut Nesterov::new(lr), &w0, &c),
        &want,
    );
    // By hand: v = 0.2, w = 1 + 0.18 + 0.2 = 1.38.
    let nesterov = three_steps(&mut Nesterov::new(lr), &w0, &c);
    assert!((nesterov[0][0] - 1.38).abs() < 1e-12);

    let eps = 1e-8;
    let want = reference(&w0, &c, |_, w, g, s| {
        s[0] += g * g;
        w - lr * g / (s[0].sqrt() + 1e-10) // AdaGrad's ε is PyTorch's 1e-10
    });
    assert_path(
        "adagrad",
        &three_steps(&mut AdaGrad::new(lr), &w0, &c),
        &want,
    );

    let rho = 0.99;
    let want = reference(&w0, &c, |_, w, g, s| {
        s[0] = rho * s[0] + (1.0 - rho) * g * g;
        w - lr * g / (s[0].sqrt() + eps)
    });
    assert_path(
        "rmsprop",
        &three_steps(&mut RmsProp::new(lr), &w0, &c),
        &want,
    );

    let want = reference(&w0, &c, adam_rule(lr));
    assert_path("adam", &three_steps(&mut Adam::new(lr), &w0, &c), &want);
    // Adam's first step moves each coordinate by η against the gradient's sign.
    let adam = three_steps(&mut Adam::new(lr), &w0, &c);
    assert!((adam[0][0] - 1.1).abs() < 1e-8 && (adam[0][2] - 0.4).abs() < 1e-8);
}

/// A parameter large enough to be updated in pieces on two threads follows the same
/// formulas at every coordinate, for optimizers with no, one and two state buffers.
#[test]
fn optimizers_update_a_large_parameter_everywhere() {
    let n = 150_001;
    let w0: Vec<f64> = (0..n)
        .map(|k| ((k * 37 % 101) as f64 - 50.0) / 25.0)
        .collect();
    let c: Vec<f64> = (0..n)
        .map(|k| ((k * 53 % 89) as f64 - 44.0) / 30.0)
        .collect();
    let lr = 0.1;

    let want = reference(&w0, &c, |_, w, g, _| w - lr * g);
    assert_path("sgd", &three_steps(&mut Sgd::new(lr), &w0, &c), &want);
    let want = reference(&w0, &c, momentum_rule(lr, 0.9));
    let momentum = three_steps(&mut Momentum::new(lr), &w0, &c);
    assert_path("momentum", &momentum, &want);
    let want = reference(&w0, &c, adam_rule(lr));
    assert_path("adam", &three_steps(&mut Adam::new(lr), &w0, &c), &want);
}

#[test]
fn a_refused_optimizer_step_changes_nothing() {
    let mut params = Params::new();
    params.insert("w", Tensor::vector([1.0, 2.0])).unwrap();
    let good = ParamGradients::from_pairs([("w", Tensor::vector([1.0, 1.0]))]).unwrap();
    let wrong = ParamGradients::from_pairs([("v", Tensor::vector([1.0, 1.0]))]).unwrap();
    let before = params.clone();
    let mut adam = Adam::new(0.1);
    assert!(matches!(
        adam.step(&mut params, &wrong),
        Err(Error::Invalid { .. })
    ));
    assert!(Adam::new(0.1)
        .betas(1.0, 0.999)
        .step(&mut params, &good)
        .is_err());
    assert!(Momentum::new(f64::NAN).step(&mut params, &good).is_err());
    assert!(RmsProp::new(0.1)
        .decay(-0.5)
        .step(&mut params, &good)
        .is_err());
    assert!(AdaGrad::new(0.1)
        .epsilon(0.0)
        .step(&mut params, &good)
        .is_err());
    assert_eq!(params, before);
    assert_eq!(adam.steps(), 0);
    adam.step(&mut params, &good).unwrap();
    assert_eq!(adam.steps(), 1);
}

#[test]
fn half_sse_gives_the_lectures_second_example() {
    let tape = Tape::new();
    let o = tape.tensor(&Tensor::vector([0.609, 0.633]));
    let t = tape.constant_tensor(&Tensor::vector([0.3, 0.9]));
    let e_tot = o.half_sse(t);
    // ((0.3 − 0.609)² + (0.9 − 0.633)²)/2 = (0.095481 + 0.071289)/2
    assert!((e_tot.item().unwrap() - 0.083385).abs() < 1e-15);
    let g = e_tot.backward().unwrap().wrt(o).unwrap();
    // ∂E/∂a20 = (0.3 − 0.609)·(−1) = 0.309, and likewise −0.267 for a21.
    assert!((g.data()[0] - 0.309).abs() < 1e-15);
    assert!((g.data()[1] - -0.267).abs() < 1e-15);
    assert!(o
        .try_half_sse(tape.constant_tensor(&Tensor::vector([0.3])))
        .is_err());
}

#[test]
fn cross_entropies_stay_finite_at_logits_of_a_thousand() {
    let tape = Tape::new();
    let z =
        tape.tensor(&Tensor::matrix(&[[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]]).unwrap());
    for labels in [[0, 1], [1, 0], [2, 2]] {
        let loss = z.softmax_cross_entropy(&labels);
        let value = loss.item().unwrap();
        let g = loss.backward().unwrap().wrt(z).unwrap();
        assert!(value.is_finite() && g.data().iter().all(|g| g.is_finite()));
    }
    // Row 0 labelled 1: ln Σ exp = 1000, loss 2000; row 1 labelled 0: ln(2e1000) + 1000.
    let loss = z.softmax_cross_entropy(&[1, 0]).item().unwrap();
    assert!((loss - (2000.0 + 2000.0 + 2f64.ln()) / 2.0).abs() < 1e-9);

    let z = tape.tensor(&Tensor::vector([1000.0, -1000.0, 1000.0, -1000.0]));
    let t = tape.constant_tensor(&Tensor::vector([1.0, 0.0, 0.0, 1.0]));
    let loss = z.bce_with_logits(t);
    assert!((loss.item().unwrap() - 500.0).abs() < 1e-9); // two right, two off by 1000
    let g = loss.backward().unwrap().wrt(z).unwrap();
    assert_eq!(g, Tensor::vector([0.0, 0.0, 0.25, -0.25]));
}

#[test]
fn two_moons_are_separated_by_a_relu_network() {
    let data = two_moons(500, 0.1, 2024).unwrap();
    let labels = data.labels().unwrap().to_vec();
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(16, Activation::Relu)
        .layer(16, Activation::Relu)
        .layer(2, Activation::Identity)
        .build(&mut params, &mut init::rng(5))
        .unwrap();
    let mut batches = Batches::new(data.len(), Batching::MiniBatch(32), 11).unwrap();
    let history = Trainer::new()
        .fit(
            &mut params,
            &mut Adam::new(0.01),
            &data,
            &mut batches,
            150,
            |p, b| {
                net.forward(p, b.inputs)?
                    .try_softmax_cross_entropy(b.labels)
            },
        )
        .unwrap();
    let scores = net.predict(&params, data.inputs()).unwrap();
    let acc = accuracy(&scores, &labels).unwrap();
    assert!(acc >= 0.97, "training accuracy {acc}");
    assert!(history.epochs.last().unwrap() < &history.epochs[0]);
}

#[test]
fn every_sample_is_visited_once_per_epoch_in_every_mode() {
    let n = 23;
    for batching in [Batching::Full, Batching::Stochastic, Batching::MiniBatch(5)] {
        let mut batches = Batches::new(n, batching, 3).unwrap();
        let mut orders = Vec::new();
        for _ in 0..4 {
            let mut seen: Vec<usize> = batches.epoch().flatten().copied().collect();
            orders.push(seen.clone());
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{batching:?}");
        }
        let distinct: HashSet<_> = orders.iter().collect();
        match batching {
            Batching::Full => assert_eq!(distinct.len(), 1),
            _ => assert!(distinct.len() > 1, "{batching:?} must reshuffle"),
        }
    }

    // The same through the training loop, which sees the rows it is given.
    let x = Tensor::new((0..n).map(|i| i as f64).collect(), [n, 1]).unwrap();
    let data = Dataset::new(x.clone(), x).unwrap();
    for (batching, sizes) in [
        (Batching::Full, vec![23]),
        (Batching::Stochastic, vec![1; 23]),
        (Batching::MiniBatch(5), vec![5, 5, 5, 5, 3]),
    ] {
        let mut params = Params::new();
        params.insert("w", Tensor::scalar(0.0)).unwrap();
        let mut batches = Batches::new(n, batching, 9).unwrap();
        let seen = RefCell::new(Vec::new());
        let batch_sizes = RefCell::new(Vec::new());
        Trainer::new()
            .fit(
                &mut params,
                &mut Sgd::new(0.0),
                &data,
                &mut batches,
                2,
                |p, b| {
                    // The inputs on the tape are the rows of the indices (x = i).
                    let rows: Vec<f64> = b.indices.iter().map(|&i| i as f64).collect();
                    assert_eq!(b.inputs.value().data(), &rows[..]);
                    seen.borrow_mut().extend_from_slice(b.indices);
                    batch_sizes.borrow_mut().push(b.indices.len());
                    b.inputs.try_mul(p.get("w")?)?.try_mse(b.targets)
                },
            )
            .unwrap();
        let mut seen = seen.into_inner();
        seen.sort_unstable();
        let twice: Vec<usize> = (0..n).flat_map(|i| [i, i]).collect();
        assert_eq!(seen, twice, "{batching:?}");
        let want: Vec<usize> = sizes.iter().chain(&sizes).copied().collect();
        assert_eq!(batch_sizes.into_inner(), want, "{batching:?}");
    }
}

#[test]
fn batching_errors_are_reported() {
    assert!(matches!(
        Batches::new(0, Batching::Stochastic, 1),
        Err(Error::Invalid { .. })
    ));
    assert!(Batches::new(5, Batching::MiniBatch(0), 1).is_err());
    assert!(Dataset::new(Tensor::zeros([0, 2]), Tensor::zeros([0, 1])).is_err());
    let data = Dataset::new(Tensor::zeros([4, 2]), Tensor::zeros([4, 1])).unwrap();
    let mut wrong = Batches::new(5, Batching::Full, 1).unwrap();
    let mut params = Params::new();
    params.insert("w", Tensor::zeros([2, 1])).unwrap();
    let result = Trainer::new().fit(
        &mut params,
        &mut Sgd::new(0.1),
        &data,
        &mut wrong,
        1,
        |p, b| b.inputs.matmul(p.get("w")?).try_mse(b.targets),
    );
    assert!(result.is_err());
}

#[test]
fn a_diverging_loss_stops_training_before_the_update() {
    let mut params = Params::new();
    params.insert("w", Tensor::scalar(1e200)).unwrap();
    let mut trainer = Trainer::new();
    let err = trainer
        .step(&mut params, &mut Sgd::new(0.1), |p| Ok(p.get("w")?.powi(2)))
        .unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
    assert_eq!(params.get("w").unwrap().item().unwrap(), 1e200);
}

#[test]
fn parameters_bind_by_name_and_report_unknown_names() {
    let mut params = Params::new();
    params.insert("a", Tensor::vector([1.0, 2.0])).unwrap();
    params.insert("b", Tensor::scalar(3.0)).unwrap();
    assert!(params.insert("a", Tensor::scalar(0.0)).is_err());
    assert!(params.insert("with space", Tensor::scalar(0.0)).is_err());
    assert_eq!(
        params.get("c").unwrap_err(),
        Error::UnknownParameter { name: "c".into() }
    );
    let tape = Tape::new();
    let _unrelated = tape.var(5.0); // binding need not start the tape
    let bound = params.bind(&tape);
    assert!(matches!(
        bound.get("zz"),
        Err(Error::UnknownParameter { .. })
    ));
    let (a, b) = (bound.get("a").unwrap(), bound.get("b").unwrap());
    let y = (a * b).sum(); // 3·(1 + 2)
    assert_eq!(y.item().unwrap(), 9.0);
    let grads = bound.gradients(&y.backward().unwrap()).unwrap();
    assert_eq!(grads.get("a").unwrap(), &Tensor::vector([3.0, 3.0]));
    assert_eq!(grads.get("b").unwrap().item().unwrap(), 3.0);
    assert!(matches!(
        grads.get("c"),
        Err(Error::UnknownParameter { .. })
    ));
}

#[test]
fn parameters_survive_a_save_and_load_and_refuse_bad_files() {
    let dir = std::env::temp_dir().join(format!("tapegrad-training-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xor.params");
    let (_, params) = xor_network(Activation::Sigmoid, 1);
    params.save(&path).unwrap();

    let (_, mut other) = xor_network(Activation::Sigmoid, 2);
    assert_ne!(other, params);
    other.load(&path).unwrap();
    assert_eq!(other, params); // bit for bit

    let text = std::fs::read_to_string(&path).unwrap();
    let before = other.clone();
    let corrupt = [
        text.replacen("tapegrad-params 1", "tapegrad-params 9", 1),
        text.replacen("layer1.bias 2 1 4", "layer1.bias 2 1 5", 1),
        text.replacen("layer2.bias 2 1 1", "layer2.bias 2 1", 1),
        text.replacen("layer2.weight", "layer9.weight", 1),
        text.lines().take(5).collect::<Vec<_>>().join("\n"),
        text.replacen('e', "x", 3),
    ];
    for bad in &corrupt {
        std::fs::write(&path, bad).unwrap();
        assert!(other.load(&path).is_err(), "accepted:\n{bad}");
        assert_eq!(other, before);
    }
    // A different network does not load into this one.
    let mut small = Params::new();
    small
        .insert("layer1.weight", Tensor::zeros([2, 4]))
        .unwrap();
    assert!(small.load_text(&text).is_err());
    assert!(other.load(dir.join("missing.params")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_same_seed_builds_the_same_network() {
    let build = |seed| xor_network(Activation::Sigmoid, seed).1;
    assert_eq!(build(9), build(9));
    assert_ne!(build(9), build(10));

    // The normal draws are the Box–Muller transform of the generator's raw bits.
    let mut a = init::rng(123);
    let mut b = init::rng(123);
    let scale = 1.0 / (1u64 << 53) as f64;
    for _ in 0..100 {
        let u1 = 1.0 - (b.next_u64() >> 11) as f64 * scale;
        let u2 = (b.next_u64() >> 11) as f64 * scale;
        let want = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let got = init::standard_normal(&mut a);
        assert!((got - want).abs() <= 1e-14 * want.abs().max(1.0));
    }

    // Xavier and He draw at their documented scales.
    let mut rng = init::rng(4);
    let var = |t: &Tensor| t.data().iter().map(|v| v * v).sum::<f64>() / t.numel() as f64;
    let xavier = Init::XavierNormal.tensor([300, 100], &mut rng).unwrap();
    assert!((var(&xavier) / (2.0 / 400.0) - 1.0).abs() < 0.05);
    let uniform = Init::XavierUniform.tensor([300, 100], &mut rng).unwrap();
    let bound = (6.0f64 / 400.0).sqrt();
    assert!(uniform.data().iter().all(|v| v.abs() < bound));
    assert!((var(&uniform) / (bound * bound / 3.0) - 1.0).abs() < 0.05);
    let he = Init::HeUniform.tensor([300, 100], &mut rng).unwrap();
    assert!((var(&he) / (2.0 / 300.0) - 1.0).abs() < 0.05);
}

#[test]
fn layers_refuse_bad_shapes_and_leave_parameters_alone() {
    let mut params = Params::new();
    let net = Mlp::builder(3)
        .layer(2, Activation::Tanh)
        .build(&mut params, &mut init::rng(0))
        .unwrap();
    let before = params.clone();
    // Same names again: refused, nothing added.
    let again = Mlp::builder(3)
        .layer(2, Activation::Tanh)
        .build(&mut params, &mut init::rng(0));
    assert!(again.is_err());
    assert!(Mlp::builder(3)
        .build(&mut params, &mut init::rng(0))
        .is_err());
    assert!(Mlp::builder(3)
        .name("other")
        .layer(4, Activation::Relu)
        .layer(0, Activation::Relu)
        .build(&mut params, &mut init::rng(0))
        .is_err());
    assert_eq!(params, before);
    // Two input columns for a three-input layer.
    assert!(net.predict(&params, &Tensor::zeros([5, 2])).is_err());
    assert_eq!(
        net.predict(&params, &Tensor::zeros([5, 3]))
            .unwrap()
            .shape()
            .dims(),
        &[5, 2]
    );
}

/// Central differences of a registered op, one input element at a time, against its
/// analytic backward, at every registered check point.
fn check_registered_op(f: &dyn Function) {
    let h = 1e-6;
    let value = |inputs: &[Tensor]| -> Vec<f64> {
        let shapes: Vec<&tapegrad::Shape> = inputs.iter().map(|t| t.shape()).collect();
        let shape = f.output_shape(&shapes).unwrap();
        let mut out = vec![0.0; shape.numel()];
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        f.forward(&views, &mut out);
        out
    };
    let points = f.check_at();
    assert!(!points.is_empty(), "{} has no check points", f.name());
    assert_eq!(f.domain().len(), points[0].len(), "{}", f.name());
    for point in points {
        let shapes: Vec<&tapegrad::Shape> = point.iter().map(|t| t.shape()).collect();
        let y_shape = f.output_shape(&shapes).unwrap();
        let y = Tensor::new(value(&point), y_shape.clone()).unwrap();
        // A fixed, uneven upstream gradient so that every output element counts.
        let gy = Tensor::new(
            (0..y.numel()).map(|k| 0.5 + 0.25 * k as f64).collect(),
            y_shape,
        )
        .unwrap();
        let views: Vec<_> = point.iter().map(|t| t.view()).collect();
        let grads = f.backward(&views, y.view(), gy.view()).unwrap();
        for (i, x) in point.iter().enumerate() {
            for k in 0..x.numel() {
                let mut plus = point.clone();
                plus[i].data_mut()[k] += h;
                let mut minus = point.clone();
                minus[i].data_mut()[k] -= h;
                let dot = |v: Vec<f64>| v.iter().zip(gy.data()).map(|(a, b)| a * b).sum::<f64>();
                let numeric = (dot(value(&plus)) - dot(value(&minus))) / (2.0 * h);
                let analytic = grads[i].data()[k];
                assert!(
                    (numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()),
                    "{} input {i} element {k}: analytic {analytic}, numeric {numeric}",
                    f.name()
                );
            }
        }
    }
}

#[test]
fn matrix_softmax_and_loss_ops_match_central_differences() {
    let mine = [
        "matmul",
        "transpose",
        "reshape",
        "softmax",
        "log_softmax",
        "mse",
        "half_sse",
        "bce",
        "bce_with_logits",
        "softmax_cross_entropy",
    ];
    let registry = tapegrad::ops::registry();
    for name in mine {
        let op = registry
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} is not registered"));
        check_registered_op(op.as_ref());
    }
}

#[test]
fn graph_backward_rules_agree_with_the_first_order_ones() {
    // The graph-building rules give the same numbers as the fused kernels.
    let registry = tapegrad::ops::registry();
    for f in registry.iter().filter(|f| {
        [
            "matmul",
            "transpose",
            "reshape",
            "softmax",
            "log_softmax",
            "mse",
            "half_sse",
            "bce",
            "bce_with_logits",
            "softmax_cross_entropy",
        ]
        .contains(&f.name())
    }) {
        for point in f.check_at() {
            let tape = Tape::new();
            let inputs: Vec<_> = point.iter().map(|t| tape.tensor(t)).collect();
            let y = tape.apply(f, &inputs).unwrap();
            let gy = tape.constant_tensor(&y.value().map(|_| 0.75));
            let graph = f.backward_graph(&inputs, y, gy).unwrap();
            let views: Vec<_> = point.iter().map(|t| t.view()).collect();
            let fused = f
                .backward(&views, y.value().view(), gy.value().view())
                .unwrap();
            for (g, want) in graph.iter().zip(&fused) {
                for (a, b) in g.value().data().iter().zip(want.data()) {
                    assert!((a - b).abs() < 1e-12, "{}: {a} vs {b}", f.name());
                }
            }
        }
    }
}

/// The squared-error losses run on raw slices when recorded as built-ins; recorded
/// through their `Function` impls (as user functions) they run on views. Both give the
/// same bits, whichever operands need gradients and when both operands are one node.
#[test]
fn squared_error_slices_agree_with_their_function_rules_bit_for_bit() -> Result<()> {
    let o = Tensor::new(vec![0.609, 0.633, -1.25, 2.5, 0.1, 0.75], [3, 2])?;
    let t = Tensor::new(vec![0.3, 0.9, 1.0, -0.5, 0.0, 0.75], [3, 2])?;
    let registry = tapegrad::ops::registry();
    for name in ["mse", "half_sse"] {
        let f = registry.iter().find(|f| f.name() == name).expect(name);
        for case in ["constant targets", "variable targets", "one node"] {
            let run = |builtin: bool| -> Result<(f64, Vec<Tensor>)> {
                let tape = Tape::new();
                let vo = tape.tensor(&o);
                let vt = match case {
                    "constant targets" => tape.constant_tensor(&t),
                    "variable targets" => tape.tensor(&t),
                    _ => vo,
                };
                let y = match (builtin, name) {
                    (true, "mse") => vo.mse(vt),
                    (true, _) => vo.half_sse(vt),
                    (false, _) => tape.apply(f, &[vo, vt])?,
                };
                let y = y * 1.5;
                let grads = y.backward()?;
                Ok((y.item()?, vec![grads.wrt(vo)?, grads.wrt(vt)?]))
            };
            let (slices, views) = (run(true)?, run(false)?);
            assert_eq!(slices.0.to_bits(), views.0.to_bits(), "{name}, {case}");
            for (a, b) in slices.1.iter().zip(&views.1) {
                let bits = |x: &Tensor| x.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "{name}, {case}");
            }
            assert!(slices.1[0].data().iter().any(|&g| g != 0.0) || case == "one node");
        }
    }
    Ok(())
}

#[test]
fn batched_matmul_matches_a_loop_of_matrix_products() {
    let mut rng = init::rng(8);
    let a = Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor([3, 4, 5], &mut rng)
    .unwrap();
    let b = Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor([3, 5, 2], &mut rng)
    .unwrap();
    let shared = Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor([5, 2], &mut rng)
    .unwrap();
    let tape = Tape::new();
    let (va, vb, vs) = (tape.tensor(&a), tape.tensor(&b), tape.tensor(&shared));
    let y = va.matmul(vb).value();
    let ys = va.matmul(vs).value();
    assert_eq!(y.shape().dims(), &[3, 4, 2]);
    for batch in 0..3 {
        for i in 0..4 {
            for j in 0..2 {
                let dot = |b: &Tensor, batched: bool| -> f64 {
                    (0..5)
                        .map(|p| {
                            let bv = if batched {
                                b.get(&[batch, p, j]).unwrap()
                            } else {
                                b.get(&[p, j]).unwrap()
                            };
                            a.get(&[batch, i, p]).unwrap() * bv
                        })
                        .sum()
                };
                assert!((y.get(&[batch, i, j]).unwrap() - dot(&b, true)).abs() < 1e-12);
                assert!((ys.get(&[batch, i, j]).unwrap() - dot(&shared, false)).abs() < 1e-12);
            }
        }
    }
    assert!(va.try_matmul(va).is_err());
    assert!(tape.tensor(&Tensor::vector([1.0])).try_matmul(vs).is_err());
}

/// Ad-hoc timing of the GEMM kernel against a naive triple loop at 128×784×256 (a
/// digits-sized layer). Run by hand:
/// `cargo test --release --test training -- --ignored --nocapture gemm_speed`.
#[test]
#[ignore = "timing, run by hand"]
fn gemm_speed_against_a_naive_triple_loop() {
    let (m, k, n) = (128, 784, 256);
    let mut rng = init::rng(0);
    let a: Vec<f64> = (0..m * k).map(|_| rng.random::<f64>()).collect();
    let b: Vec<f64> = (0..k * n).map(|_| rng.random::<f64>()).collect();
    let (ta, tb) = (
        Tensor::new(a.clone(), [m, k]).unwrap(),
        Tensor::new(b.clone(), [k, n]).unwrap(),
    );
    let repeats = 10;
    let mut tape = Tape::new();
    let start = std::time::Instant::now();
    let mut check = 0.0;
    for _ in 0..repeats {
        tape.clear();
        let y = tape.constant_tensor(&ta).matmul(tape.constant_tensor(&tb));
        check += y.value().data()[0];
    }
    let gemm = start.elapsed().as_secs_f64() / repeats as f64;
    let start = std::time::Instant::now();
    let mut c = vec![0.0; m * n];
    for _ in 0..repeats {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[i * k + p] * b[p * n + j];
                }
                c[i * n + j] = s;
            }
        }
        check -= c[0];
    }
    let naive = start.elapsed().as_secs_f64() / repeats as f64;
    // The cache-friendly order (i, p, j), which the compiler can vectorise.
    let start = std::time::Instant::now();
    for _ in 0..repeats {
        c.fill(0.0);
        for i in 0..m {
            for p in 0..k {
                let x = a[i * k + p];
                for (c, b) in c[i * n..(i + 1) * n].iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *c += x * b;
                }
            }
        }
        check -= c[0] - check_row(&a, &b, k, n);
    }
    let ordered = start.elapsed().as_secs_f64() / repeats as f64;
    assert!(check.abs() < 1e-6);
    println!(
        "128x784x256: matmul op {:.3} ms; naive i-j-p loop {:.3} ms ({:.1}x); \
         i-p-j loop {:.3} ms ({:.1}x)",
        gemm * 1e3,
        naive * 1e3,
        naive / gemm,
        ordered * 1e3,
        ordered / gemm
    );
}

/// Element (0, 0) of the product, for the timing's sanity check.
fn check_row(a: &[f64], b: &[f64], k: usize, n: usize) -> f64 {
    (0..k).map(|p| a[p] * b[p * n]).sum()
}

/// The sigmoid written by a user, the lecture's way, as a `ScalarFunction`.
struct UserSigmoid;

impl tapegrad::ScalarFunction for UserSigmoid {
    fn name(&self) -> &str {
        "user_sigmoid"
    }
    fn value(&self, x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    fn derivative(&self, x: f64) -> f64 {
        let s = self.value(x);
        s * (1.0 - s)
    }
}

#[test]
fn a_user_activation_trains_like_the_built_in_one() {
    let (builtin, mut builtin_params) = xor_network(Activation::Sigmoid, 5);
    let (user, mut user_params) = xor_network(Activation::custom(UserSigmoid), 5);
    assert_eq!(user.layers()[0].1.name(), "user_sigmoid");
    assert_eq!(builtin_params, user_params);
    train_xor(&builtin, &mut builtin_params, 50);
    train_xor(&user, &mut user_params, 50);
    for ((name, a), (_, b)) in builtin_params.iter().zip(user_params.iter()) {
        for (a, b) in a.data().iter().zip(b.data()) {
            assert!((a - b).abs() < 1e-12, "{name}: {a} vs {b}");
        }
    }
    assert_ne!(builtin_params, xor_network(Activation::Sigmoid, 5).1);
}

#[test]
fn a_replayed_xor_training_matches_recording_every_step_bit_for_bit() -> Result<()> {
    let (x, y) = xor_data();
    let (net, mut recorded) = xor_network(Activation::Sigmoid, 42);
    let mut replayed = recorded.clone();
    let (mut a, mut b) = (Trainer::new(), Trainer::new());
    let (mut sgd_a, mut sgd_b) = (Sgd::new(0.1), Sgd::new(0.1));
    b.record(&replayed, |p| {
        let o = net.forward(p, p.tape().constant_tensor(&x))?;
        o.try_half_sse(p.tape().constant_tensor(&y))
    })?;
    for _ in 0..500 {
        let la = a.step(&mut recorded, &mut sgd_a, |p| {
            let o = net.forward(p, p.tape().constant_tensor(&x))?;
            o.try_half_sse(p.tape().constant_tensor(&y))
        })?;
        let lb = b.replay_step(&mut replayed, &mut sgd_b)?;
        assert_eq!(la.to_bits(), lb.to_bits());
    }
    for ((name, wa), (_, wb)) in recorded.iter().zip(replayed.iter()) {
        assert_eq!(wa, wb, "{name}");
        assert_eq!(a.gradients().get(name)?, b.gradients().get(name)?, "{name}");
    }
    Ok(())
}

#[test]
fn replay_steps_refuse_a_missing_recording_a_changed_store_and_a_bad_loss() -> Result<()> {
    let mut params = Params::new();
    params.insert("w", Tensor::scalar(2.0))?;
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    let nothing = trainer.replay_step(&mut params, &mut sgd).unwrap_err();
    assert!(
        nothing.to_string().contains("nothing is recorded"),
        "{nothing}"
    );

    // ln(w) turns NaN once w < 0: the step stops before the update.
    trainer.record(&params, |p| Ok(p.get("w")?.ln()))?;
    assert_eq!(trainer.replay_step(&mut params, &mut sgd)?, 2f64.ln());
    params.get_mut("w")?.data_mut()[0] = -1.0;
    let nan = trainer.replay_step(&mut params, &mut sgd).unwrap_err();
    assert!(nan.to_string().contains("diverged"), "{nan}");
    assert_eq!(params.get("w")?.item()?, -1.0);

    // A vector loss cannot be recorded.
    let bad = trainer
        .record(&params, |p| {
            Ok(p.get("w")? * p.tape().constant_tensor(&Tensor::vector([1.0, 2.0])))
        })
        .unwrap_err();
    assert!(matches!(bad, Error::NonScalarBackward { .. }), "{bad}");

    trainer.record(&params, |p| Ok(p.get("w")?.powi(2)))?;
    params.insert("b", Tensor::scalar(0.0))?;
    let changed = trainer.replay_step(&mut params, &mut sgd).unwrap_err();
    assert!(changed.to_string().contains("record it again"), "{changed}");
    assert_eq!(params.get("w")?.item()?, -1.0);

    // A recording step drops the recording.
    trainer.step(&mut params, &mut sgd, |p| Ok(p.get("w")?.powi(2)))?;
    assert!(trainer.replay_step(&mut params, &mut sgd).is_err());
    Ok(())
}

/// A replayed recording binds frozen parameters as constants, like a recording step;
/// freezing or unfreezing after the recording asks for a new one.
#[test]
fn replay_steps_with_frozen_parameters_follow_recording_steps() -> Result<()> {
    let (x, y) = xor_data();
    let (net, mut recorded) = xor_network(Activation::Sigmoid, 7);
    recorded.freeze("layer1.bias")?;
    recorded.freeze("layer2.weight")?;
    let start = recorded.clone();
    let mut replayed = recorded.clone();
    let (mut a, mut b) = (Trainer::new(), Trainer::new());
    let (mut adam_a, mut adam_b) = (Adam::new(0.05), Adam::new(0.05));
    fn loss<'t>(
        net: &Mlp,
        (x, y): (&Tensor, &Tensor),
        p: &tapegrad::nn::Bound<'t, '_>,
    ) -> Result<tapegrad::Var<'t>> {
        let o = net.forward(p, p.tape().constant_tensor(x))?;
        o.try_half_sse(p.tape().constant_tensor(y))
    }
    b.record(&replayed, |p| loss(&net, (&x, &y), p))?;
    for _ in 0..50 {
        let la = a.step(&mut recorded, &mut adam_a, |p| loss(&net, (&x, &y), p))?;
        let lb = b.replay_step(&mut replayed, &mut adam_b)?;
        assert_eq!(la.to_bits(), lb.to_bits());
    }
    assert_eq!(recorded, replayed);
    for frozen in ["layer1.bias", "layer2.weight"] {
        assert_eq!(replayed.get(frozen)?, start.get(frozen)?, "{frozen}");
        assert!(b.gradients().get(frozen)?.data().iter().all(|&g| g == 0.0));
    }
    assert_ne!(replayed.get("layer1.weight")?, start.get("layer1.weight")?);

    // The recording bound layer2.weight as a constant: unfrozen, it would read a zero
    // gradient, so the replay refuses and changes nothing.
    replayed.unfreeze("layer2.weight")?;
    let kept = replayed.clone();
    let err = b.replay_step(&mut replayed, &mut adam_b).unwrap_err();
    assert!(err.to_string().contains("record it again"), "{err}");
    assert_eq!(replayed, kept);
    b.record(&replayed, |p| loss(&net, (&x, &y), p))?;
    b.replay_step(&mut replayed, &mut adam_b)?;
    assert_ne!(replayed.get("layer2.weight")?, kept.get("layer2.weight")?);
    Ok(())
}

/// A no-grad guard leaked while recording leaves the trainer's tape without gradients:
/// the parameters bound afterwards are constants, so a replayed step reads zero
/// gradients (as a recording step would) and changes nothing.
#[test]
fn replay_after_a_leaked_no_grad_guard_reads_zero_gradients() -> Result<()> {
    let mut params = Params::new();
    params.insert("w", Tensor::vector([1.0, 2.0]))?;
    params.insert("b", Tensor::scalar(0.5))?;
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    trainer.record(&params, |p| {
        std::mem::forget(p.tape().no_grad());
        p.get("b")
    })?;
    trainer.record(&params, |p| Ok(p.get("w")?.powi(2).sum() + p.get("b")?))?;
    let before = params.clone();
    assert_eq!(trainer.replay_step(&mut params, &mut sgd)?, 5.5);
    assert_eq!(params, before);
    assert_eq!(trainer.gradients().get("w")?, &Tensor::vector([0.0, 0.0]));
    assert_eq!(trainer.gradients().get("b")?.item()?, 0.0);
    Ok(())
}

/// The trainer and the optimizers check names and shapes in O(1) while a store keeps
/// its layout stamp; every way of changing a shape must still be caught.
#[test]
fn layout_checks_see_every_change_of_names_or_shapes() -> Result<()> {
    let fresh = || -> Result<Params> {
        let mut params = Params::new();
        params.insert("w", Tensor::vector([1.0, 2.0]))?;
        params.insert("b", Tensor::scalar(0.5))?;
        Ok(params)
    };
    fn loss<'t>(p: &tapegrad::nn::Bound<'t, '_>) -> Result<tapegrad::Var<'t>> {
        Ok(p.get("w")?.powi(2).sum() + p.get("b")?)
    }
    let reshapes: [fn(&mut Params) -> Result<()>; 3] = [
        |p| {
            *p.get_mut("w")? = Tensor::vector([1.0, 2.0, 3.0]);
            Ok(())
        },
        |p| {
            for (_, t) in p.iter_mut() {
                *t = Tensor::scalar(1.0);
            }
            Ok(())
        },
        |p| p.insert("c", Tensor::scalar(0.0)),
    ];
    for reshape in reshapes {
        let mut params = fresh()?;
        let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
        trainer.record(&params, loss)?;
        trainer.replay_step(&mut params, &mut sgd)?;
        let grads = trainer.gradients().clone();
        assert!(grads.matches(&params));
        reshape(&mut params)?;
        assert!(!grads.matches(&params));
        let before = params.clone();
        let refused = trainer.replay_step(&mut params, &mut sgd).unwrap_err();
        assert!(refused.to_string().contains("record it again"), "{refused}");
        assert!(sgd.step(&mut params, &grads).is_err());
        assert_eq!(params, before);
    }

    // Values may change in every way without a new recording.
    let mut params = fresh()?;
    let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
    trainer.record(&params, loss)?;
    params.set("b", Tensor::scalar(3.0))?;
    params.get_mut("w")?.data_mut()[0] = 4.0;
    for (_, t) in params.iter_mut() {
        t.data_mut()[0] += 1.0;
    }
    // w = (5, 2), b = 4: loss 33, dw = (10, 4), db = 1.
    assert_eq!(trainer.replay_step(&mut params, &mut sgd)?, 33.0);
    assert_eq!(params.get("w")?, &Tensor::vector([4.0, 1.6]));
    assert_eq!(params.get("b")?.item()?, 3.9);
    // A clone has the same layout; gradients read for one store fit its clone.
    let grads = trainer.gradients().clone();
    assert!(grads.matches(&params.clone()));
    Ok(())
}

/// A metric the loss does not use, NaN-prone at the start (√ of a zero sum has an
/// infinite derivative), leaves the loss's gradients alone.
#[test]
fn a_metric_off_the_losss_path_leaves_the_step_alone() -> Result<()> {
    let x = Tensor::matrix(&[[1.0], [2.0]])?;
    let y = Tensor::matrix(&[[3.0], [5.0]])?;
    let mut params = Params::new();
    params.insert("l.weight", Tensor::matrix(&[[0.5]])?)?;
    params.insert("l.bias", Tensor::vector([0.0]))?;
    let mut trainer = Trainer::new();
    let loss = trainer.step(&mut params, &mut Sgd::new(0.0), |b| {
        let (w, bias) = (b.get("l.weight")?, b.get("l.bias")?);
        let _bias_norm = bias.square().sum().sqrt();
        let xs = b.tape().constant_tensor(&x);
        let ys = b.tape().constant_tensor(&y);
        (xs.matmul(w) + bias).try_mse(ys)
    })?;
    // o = (0.5, 1.0), o − y = (−2.5, −4); the mean of squares and its gradients.
    assert_eq!(loss, (6.25 + 16.0) / 2.0);
    let g = trainer.gradients();
    assert_eq!(g.get("l.bias")?, &Tensor::vector([-2.5 - 4.0]));
    assert_eq!(g.get("l.weight")?, &Tensor::matrix(&[[-2.5 - 8.0]])?);
    Ok(())
}

/// Every optimizer, given a gradient with NaN or ±∞, refuses the step with an error
/// that names the parameter, and leaves the parameters and its own state as they were:
/// the next good step gives, bit for bit, what it gives without the refused one.
#[test]
fn optimizers_refuse_non_finite_gradients_and_change_nothing() -> Result<()> {
    let optimizers: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::new(0.1)),
        Box::new(Momentum::new(0.1)),
        Box::new(Nesterov::new(0.1)),
        Box::new(AdaGrad::new(0.1)),
        Box::new(RmsProp::new(0.1)),
        Box::new(Adam::new(0.1)),
    ];
    let good = ParamGradients::from_pairs([
        ("w", Tensor::vector([0.5, -1.0])),
        ("b", Tensor::scalar(2.0)),
    ])?;
    for mut optimizer in optimizers {
        for bad_value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut params = Params::new();
            params.insert("w", Tensor::vector([1.0, 2.0]))?;
            params.insert("b", Tensor::scalar(-1.0))?;
            // Some state first, so that there is state to keep.
            optimizer.step(&mut params, &good)?;
            let mut untouched = params.clone();
            let bad = ParamGradients::from_pairs([
                ("w", Tensor::vector([0.5, -1.0])),
                ("b", Tensor::scalar(bad_value)),
            ])?;
            let before = params.clone();
            let err = optimizer.step(&mut params, &bad).unwrap_err();
            let name = optimizer.name().to_string();
            match &err {
                Error::NonFiniteGradient {
                    name: param, index, ..
                } => assert_eq!((param.as_str(), *index), ("b", 0), "{name}"),
                other => panic!("{name}: {other}"),
            }
            assert!(err.to_string().contains("\"b\""), "{err}");
            assert_eq!(params, before, "{name}");
            // The state is as it was: a good step now does what it did before.
            let mut twin = optimizer_twin(&*optimizer);
            optimizer.step(&mut params, &good)?;
            twin.step(&mut untouched, &good)?;
            assert_eq!(params, untouched, "{name}");
            optimizer.reset();
        }
    }
    Ok(())
}

/// An optimizer of the same kind that has taken the same one good step as the ones in
/// `optimizers_refuse_non_finite_gradients_and_change_nothing`.
fn optimizer_twin(kind: &dyn Optimizer) -> Box<dyn Optimizer> {
    let mut twin: Box<dyn Optimizer> = match kind.name() {
        "sgd" => Box::new(Sgd::new(0.1)),
        "momentum" => Box::new(Momentum::new(0.1)),
        "nesterov" => Box::new(Nesterov::new(0.1)),
        "adagrad" => Box::new(AdaGrad::new(0.1)),
        "rmsprop" => Box::new(RmsProp::new(0.1)),
        _ => Box::new(Adam::new(0.1)),
    };
    let mut params = Params::new();
    params.insert("w", Tensor::vector([1.0, 2.0])).unwrap();
    params.insert("b", Tensor::scalar(-1.0)).unwrap();
    let good = ParamGradients::from_pairs([
        ("w", Tensor::vector([0.5, -1.0])),
        ("b", Tensor::scalar(2.0)),
    ])
    .unwrap();
    twin.step(&mut params, &good).unwrap();
    twin
}

/// A finite loss with an infinite gradient (√ at 0) stops a training step, recorded or
/// replayed, before the update: the parameter is not set to −∞.
#[test]
fn a_trainer_refuses_a_finite_loss_with_an_infinite_gradient() -> Result<()> {
    let mut params = Params::new();
    params.insert("w", Tensor::scalar(0.0))?;
    let mut trainer = Trainer::new();
    let mut sgd = Sgd::new(0.1);
    let err = trainer
        .step(&mut params, &mut sgd, |p| Ok(p.get("w")?.sqrt()))
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFiniteGradient { name, value, .. } if name == "w" && *value == f64::INFINITY),
        "{err}"
    );
    assert_eq!(params.get("w")?.item()?, 0.0);
    trainer.record(&params, |p| Ok(p.get("w")?.sqrt()))?;
    let err = trainer.replay_step(&mut params, &mut sgd).unwrap_err();
    assert!(matches!(err, Error::NonFiniteGradient { .. }), "{err}");
    assert_eq!(params.get("w")?.item()?, 0.0);
    Ok(())
}

// Data helpers: seeded shuffling, train/test splits, CSV tables.

#[test]
fn seeded_shuffles_are_reproducible_and_uniform() {
    use tapegrad::data::{permutation, shuffle};
    assert_eq!(permutation(50, 9), permutation(50, 9));
    assert_ne!(permutation(50, 9), permutation(50, 10));
    let mut letters = ['a', 'b', 'c', 'd', 'e'];
    shuffle(&mut letters, 4);
    let order = permutation(5, 4);
    // shuffle and permutation draw the same order from the same seed.
    assert_eq!(
        letters,
        std::array::from_fn(|k| ['a', 'b', 'c', 'd', 'e'][order[k]])
    );
    // Each of the 6 orders of 3 items comes up about 1/6 of the time over 6000 seeds
    // (standard deviation √(6000·(1/6)·(5/6)) ≈ 29 per order).
    let mut counts = std::collections::HashMap::new();
    for seed in 0..6000 {
        *counts.entry(permutation(3, seed)).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 6);
    for (order, count) in counts {
        assert!((850..=1150).contains(&count), "{order:?}: {count}");
    }
    assert!(permutation(0, 1).is_empty());
}

#[test]
fn train_test_split_follows_scikit_learns_sizes_and_keeps_rows_whole() -> Result<()> {
    use tapegrad::data::{permutation, train_test_split, TestSize};
    let n = 7;
    let x = Tensor::new((0..2 * n).map(|v| v as f64).collect(), [n, 2])?;
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let data = Dataset::classification(x, labels.clone())?;

    // ⌈0.5·7⌉ = 4 test rows, ⌈0.1·7⌉ = 1, ⌈0.8·7⌉ = 6; a count is taken as it is.
    for (size, want) in [
        (TestSize::Fraction(0.5), 4),
        (TestSize::Fraction(0.1), 1),
        (TestSize::Fraction(0.8), 6),
        (TestSize::Count(2), 2),
    ] {
        let (train, test) = train_test_split(&data, size, 5)?;
        assert_eq!((train.len(), test.len()), (n - want, want), "{size:?}");
        // The test rows are the first of permutation(n, seed), the training rows the
        // rest, each row with its own label.
        let order = permutation(n, 5);
        let row_of = |d: &Dataset, k: usize| d.inputs().data()[2 * k] as usize / 2;
        for (k, &i) in order.iter().enumerate() {
            let (part, at) = if k < want {
                (&test, k)
            } else {
                (&train, k - want)
            };
            assert_eq!(row_of(part, at), i, "{size:?}: row {k}");
            assert_eq!(part.inputs().data()[2 * at + 1], (2 * i + 1) as f64);
            assert_eq!(part.labels().unwrap()[at], labels[i]);
            assert_eq!(part.targets().data()[at], labels[i] as f64);
        }
    }
    assert_eq!(
        train_test_split(&data, TestSize::Fraction(0.3), 1)?,
        train_test_split(&data, TestSize::Fraction(0.3), 1)?
    );

    for bad in [
        TestSize::Fraction(0.0),
        TestSize::Fraction(1.0),
        TestSize::Fraction(-0.2),
        TestSize::Fraction(f64::NAN),
        TestSize::Fraction(f64::INFINITY),
        TestSize::Fraction(0.99), // ⌈6.93⌉ = 7 test rows leave none to train
        TestSize::Count(0),
        TestSize::Count(n),
        TestSize::Count(n + 1),
    ] {
        let err = train_test_split(&data, bad, 1).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { op, .. } if op == "train_test_split"),
            "{bad:?}: {err}"
        );
    }
    // One row cannot be split.
    let one = Dataset::new(Tensor::zeros([1, 1]), Tensor::zeros([1, 1]))?;
    assert!(train_test_split(&one, TestSize::Fraction(0.5), 0).is_err());
    Ok(())
}

#[test]
fn csv_tables_read_by_label_index_or_name() -> Result<()> {
    use tapegrad::data::Csv;
    let text = "\"sepal length\", width ,class\n\n5.1, 3.5, 0\n4.9,3.0,1\r\n  6.2 ,2.9, 2 \n\n";
    let by_name = Csv::new().header(true).label("class").read_str(text)?;
    let by_index = Csv::new().header(true).label(2).read_str(text)?;
    let by_default = Csv::new().header(true).read_str(text)?;
    assert_eq!(by_name, by_index);
    assert_eq!(by_name, by_default);
    assert_eq!(
        by_name.inputs(),
        &Tensor::matrix(&[[5.1, 3.5], [4.9, 3.0], [6.2, 2.9]])?
    );
    assert_eq!(by_name.targets(), &Tensor::matrix(&[[0.0], [1.0], [2.0]])?);
    assert_eq!(by_name.labels(), None);

    // A feature column by name: the label may be any column, the features keep their
    // order.
    let first = Csv::new()
        .header(true)
        .label("sepal length")
        .read_str(text)?;
    assert_eq!(
        first.inputs(),
        &Tensor::matrix(&[[3.5, 0.0], [3.0, 1.0], [2.9, 2.0]])?
    );
    assert_eq!(first.targets().data(), &[5.1, 4.9, 6.2]);

    let classes = Csv::new()
        .header(true)
        .label("class")
        .read_classes_str(text)?;
    assert_eq!(classes.labels(), Some(&[0, 1, 2][..]));

    // Other delimiters; numbers in any of Rust's forms; the round trip of written
    // values is exact.
    let moons = two_moons(20, 0.1, 3)?;
    let mut written = String::from("x\ty\tlabel\n");
    for (row, label) in moons.inputs().data().chunks(2).zip(moons.labels().unwrap()) {
        written += &format!("{:e}\t{}\t{label}\n", row[0], row[1]);
    }
    let read = Csv::new()
        .header(true)
        .delimiter('\t')
        .read_classes_str(&written)?;
    assert_eq!(read, moons);
    let semicolons = Csv::new()
        .delimiter(';')
        .read_str("1e3;-2.5E-1;+4\n.5;7;-0\n")?;
    assert_eq!(semicolons.inputs().data(), &[1000.0, -0.25, 0.5, 7.0]);
    assert_eq!(semicolons.targets().data(), &[4.0, -0.0]);

    // From a file.
    let path = std::env::temp_dir().join(format!("tapegrad-test-{}.csv", std::process::id()));
    std::fs::write(&path, text).unwrap();
    assert_eq!(Csv::new().header(true).read(&path)?, by_name);
    assert_eq!(Csv::new().header(true).read_classes(&path)?, classes);
    std::fs::remove_file(&path).ok();
    let missing = Csv::new().read(&path).unwrap_err();
    assert!(missing.to_string().contains("tapegrad-test-"), "{missing}");
    Ok(())
}

#[test]
fn csv_errors_name_the_line_and_the_column() {
    use tapegrad::data::Csv;
    let csv_error = |reader: &Csv, text: &str| match reader.read_str(text) {
        Err(Error::Csv {
            line,
            column,
            reason,
        }) => (line, column, reason),
        other => panic!("{text:?}: expected a CSV error, got {other:?}"),
    };
    let at = |reader: &Csv, text: &str| {
        let (line, column, _) = csv_error(reader, text);
        (line, column)
    };
    let plain = Csv::new();
    let header = Csv::new().header(true);
    // Not a number, empty, not finite.
    assert_eq!(
        csv_error(&header, "a,b\n1,2\n3,x4\n"),
        (3, 2, "\"x4\" is not a number".to_string())
    );
    assert_eq!(
        csv_error(&plain, "1,,3\n"),
        (1, 2, "the field is empty".to_string())
    );
    assert_eq!(at(&plain, "1,2\n\n3,NaN\n"), (3, 2));
    assert_eq!(at(&plain, "inf,2\n"), (1, 1));
    // Ragged rows: one short (the first missing field), one long (the first extra).
    let (line, column, reason) = csv_error(&header, "a,b,c\n1,2,3\n4,5\n");
    assert_eq!((line, column), (3, 3));
    assert!(reason.contains("2 of the table's 3 fields"), "{reason}");
    assert_eq!(at(&plain, "1,2\n3,4,5\n"), (2, 3));
    // The message says where.
    let err = header.read_str("a,b\n1,2\n3,x4\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "csv: line 3, column 2: \"x4\" is not a number"
    );
    // A class label must be a whole number ≥ 0.
    match plain.read_classes_str("0.5,1\n0.25,1.5\n") {
        Err(Error::Csv {
            line: 2, column: 2, ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(plain.read_classes_str("0.5,-1\n").is_err());

    // Tables that do not fit the reader.
    let invalid = |reader: Csv, text: &str| {
        let err = reader.read_str(text).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref op, .. } if op == "csv"),
            "{text:?}: {err}"
        );
        err.to_string()
    };
    assert!(invalid(Csv::new().label("y"), "1,2\n").contains("no header"));
    assert!(invalid(Csv::new().header(true).label("y"), "a,b\n1,2\n").contains("no column \"y\""));
    assert!(invalid(Csv::new().label(2), "1,2\n").contains("column 2"));
    assert!(invalid(Csv::new(), "").contains("columns"));
    assert!(invalid(Csv::new().header(true), "a,b\n\n").contains("no rows"));
    assert!(invalid(Csv::new(), "1\n2\n").contains("feature"));
}

// Linear layers without a bias.

#[test]
fn a_linear_layer_without_bias_computes_x_w_and_its_gradient() -> Result<()> {
    use tapegrad::check::numerical_gradient;
    use tapegrad::nn::Linear;
    let mut params = Params::new();
    let layer = Linear::without_bias(&mut params, "fc", 3, 2, Init::HeNormal, &mut init::rng(4))?;
    assert_eq!(params.names().collect::<Vec<_>>(), ["fc.weight"]);
    assert_eq!(params.get("fc.weight")?.shape().dims(), &[3, 2]);
    assert_eq!((layer.inputs(), layer.outputs()), (3, 2));
    assert_eq!(
        (layer.weight_name(), layer.bias_name()),
        ("fc.weight", None)
    );
    let w = Tensor::matrix(&[[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]])?;
    params.set("fc.weight", w.clone())?;
    let x = Tensor::matrix(&[[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]])?;

    // L = Σ (x·W)²: y = [[8, 7], [0, 2.5]] and ∂L/∂W = 2·xᵀ·y.
    let loss = |params: &Params| -> Result<(Tensor, Tensor, f64)> {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let y = layer.forward(&bound, tape.constant_tensor(&x))?;
        let loss = y.powi(2).sum();
        let grads = bound.gradients(&loss.backward()?)?;
        Ok((y.value(), grads.get("fc.weight")?.clone(), loss.item()?))
    };
    let (y, grad, value) = loss(&params)?;
    assert_eq!(y, Tensor::matrix(&[[8.0, 7.0], [0.0, 2.5]])?);
    assert_eq!(value, 64.0 + 49.0 + 6.25);
    assert_eq!(
        grad,
        Tensor::matrix(&[[16.0, 9.0], [32.0, 28.0], [48.0, 44.5]])?
    );
    let mut probe = w.clone();
    let numerical = numerical_gradient(
        |w| {
            let mut p = Params::new();
            p.insert("fc.weight", w.clone())?;
            Ok(loss(&p)?.2)
        },
        &mut probe,
        1e-4,
    )?;
    for (a, n) in grad.data().iter().zip(numerical.data()) {
        assert!((a - n).abs() < 1e-6, "{a} against {n}");
    }

    // Bad input: an error, the store unchanged.
    let kept = params.clone();
    assert!(
        Linear::without_bias(&mut params, "fc", 3, 2, Init::HeNormal, &mut init::rng(0)).is_err()
    );
    assert!(
        Linear::without_bias(&mut params, "g", 0, 2, Init::HeNormal, &mut init::rng(0)).is_err()
    );
    assert_eq!(params, kept);
    let tape = Tape::new();
    let bound = params.bind(&tape);
    let wrong = tape.constant_tensor(&Tensor::zeros([2, 4]));
    assert!(layer.forward(&bound, wrong).is_err());
    Ok(())
}

#[test]
fn a_network_without_biases_fits_a_line_through_the_origin() -> Result<()> {
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(1, Activation::Identity)
        .bias(false)
        .build(&mut params, &mut init::rng(2))?;
    assert_eq!(params.names().collect::<Vec<_>>(), ["layer1.weight"]);
    assert_eq!(net.layers()[0].0.bias_name(), None);
    // y = 3a − b, full batch: least squares gives W = [3, −1] exactly in the limit.
    let x = Tensor::matrix(&[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])?;
    let y = Tensor::matrix(&[[3.0], [-1.0], [2.0], [7.0]])?;
    let mut trainer = Trainer::new();
    let mut sgd = Sgd::new(0.1);
    for _ in 0..500 {
        trainer.step(&mut params, &mut sgd, |p| {
            let o = net.forward(p, p.tape().constant_tensor(&x))?;
            o.try_mse(p.tape().constant_tensor(&y))
        })?;
    }
    let w = params.get("layer1.weight")?.data().to_vec();
    assert!(
        (w[0] - 3.0).abs() < 1e-9 && (w[1] + 1.0).abs() < 1e-9,
        "{w:?}"
    );
    // With biases the default, the same builder adds them.
    let mut with = Params::new();
    Mlp::builder(2)
        .layer(1, Activation::Identity)
        .build(&mut with, &mut init::rng(2))?;
    assert_eq!(
        with.names().collect::<Vec<_>>(),
        ["layer1.weight", "layer1.bias"]
    );
    // The same seed draws the same weights either way.
    let mut fresh = Params::new();
    Mlp::builder(2)
        .layer(1, Activation::Identity)
        .bias(false)
        .build(&mut fresh, &mut init::rng(2))?;
    assert_eq!(with.get("layer1.weight")?, fresh.get("layer1.weight")?);
    Ok(())
}

// Activations composed of tape ops.

/// mish(v) = v·tanh(ln(1 + eᵛ)), in plain f64.
fn mish(v: f64) -> f64 {
    v * v.exp().ln_1p().tanh()
}

#[test]
fn a_composed_mish_layer_has_the_numerical_gradient() -> Result<()> {
    use tapegrad::check::numerical_gradients;
    let mish_activation = Activation::from_fn("mish", |x| Ok(x * x.softplus().tanh()));
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(3, mish_activation)
        .layer(1, Activation::Identity)
        .build(&mut params, &mut init::rng(11))?;
    assert_eq!(net.layers()[0].1.name(), "mish");
    assert_eq!(format!("{:?}", net.layers()[0].1), "mish");
    // Biases away from zero, so that every parameter matters.
    params.set("layer1.bias", Tensor::matrix(&[[0.3, -0.7, 1.1]])?)?;
    params.set("layer2.bias", Tensor::matrix(&[[-0.2]])?)?;
    let x = Tensor::matrix(&[[0.5, -1.0], [2.0, 0.25], [-1.5, -0.5]])?;
    let y = Tensor::matrix(&[[1.0], [-0.5], [0.25]])?;

    // The forward pass is mish(x·W1 + b1)·W2 + b2, computed here in plain f64.
    let (w1, b1) = (
        params.get("layer1.weight")?.data(),
        params.get("layer1.bias")?.data(),
    );
    let (w2, b2) = (
        params.get("layer2.weight")?.data(),
        params.get("layer2.bias")?.data(),
    );
    let out = net.predict(&params, &x)?;
    for (row, &o) in x.data().chunks(2).zip(out.data()) {
        let hidden = (0..3).map(|j| mish(row[0] * w1[j] + row[1] * w1[3 + j] + b1[j]));
        let want = hidden.zip(w2).map(|(h, w)| h * w).sum::<f64>() + b2[0];
        assert!((o - want).abs() < 1e-14, "{o} against {want}");
    }

    let loss_of = |params: &Params| -> Result<(f64, ParamGradients)> {
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let o = net.forward(&bound, tape.constant_tensor(&x))?;
        let loss = o.mse(tape.constant_tensor(&y));
        Ok((loss.item()?, bound.gradients(&loss.backward()?)?))
    };
    let (_, analytic) = loss_of(&params)?;
    let names: Vec<String> = params.names().map(String::from).collect();
    let mut values: Vec<Tensor> = params.iter().map(|(_, t)| t.clone()).collect();
    let numerical = numerical_gradients(
        |values| {
            let mut p = Params::new();
            for (name, value) in names.iter().zip(values) {
                p.insert(name.as_str(), value.clone())?;
            }
            Ok(loss_of(&p)?.0)
        },
        &mut values,
        1e-5,
    )?;
    for (name, numerical) in names.iter().zip(&numerical) {
        let analytic = analytic.get(name)?;
        for (a, n) in analytic.data().iter().zip(numerical.data()) {
            assert!(
                (a - n).abs() <= 1e-8 + 1e-6 * a.abs().max(n.abs()),
                "{name}: {a} against {n}"
            );
        }
        assert!(analytic.data().iter().any(|&g| g != 0.0), "{name}");
    }

    // An error from the closure stops the forward pass.
    let failing = Activation::from_fn("fails", |x| {
        x.try_add(x.tape().constant_tensor(&Tensor::zeros([7])))
    });
    let tape = Tape::new();
    assert!(matches!(
        failing.apply(tape.tensor(&Tensor::zeros([2, 3]))),
        Err(Error::ShapeMismatch { .. })
    ));
    Ok(())
}
