//! Optimizers that follow PyTorch's formulas, learning-rate schedules, resumable
//! training (optimizer state saved and loaded with the parameters) and parameter files.

use tapegrad::nn::{init, Activation, Mlp, ParamGradients, Params, Trainer};
use tapegrad::optim::{
    AdaGrad, Adam, Momentum, Nesterov, Optimizer, RmsProp, Schedule, Scheduler, Sgd,
};
use tapegrad::{Error, Tensor};

/// Runs `opt` on the quadratic ½‖w − c‖², whose gradient is w − c, with learning rate
/// `lrs[k]` at step k + 1; returns w after every step.
fn quadratic_path(opt: &mut dyn Optimizer, w0: &[f64], c: &[f64], lrs: &[f64]) -> Vec<Vec<f64>> {
    let mut params = Params::new();
    params.insert("w", Tensor::vector(w0.to_vec())).unwrap();
    let mut path = Vec::new();
    for &lr in lrs {
        let w = params.get("w").unwrap().data().to_vec();
        let g: Vec<f64> = w.iter().zip(c).map(|(w, c)| w - c).collect();
        let grads = ParamGradients::from_pairs([("w", Tensor::vector(g))]).unwrap();
        opt.set_learning_rate(lr);
        opt.step(&mut params, &grads).unwrap();
        path.push(params.get("w").unwrap().data().to_vec());
    }
    path
}

/// PyTorch's `SGD(momentum=μ, nesterov=…)` with dampening 0, written as in its
/// `_single_tensor_sgd`: `buf = g` on the first step, then `buf = μ·buf + g`; the step
/// direction is `buf`, or `g + μ·buf` for Nesterov; `w = w − lr·direction`.
fn pytorch_sgd_momentum(
    w0: &[f64],
    c: &[f64],
    lrs: &[f64],
    mu: f64,
    nesterov: bool,
) -> Vec<Vec<f64>> {
    let mut w = w0.to_vec();
    let mut buf: Option<Vec<f64>> = None;
    let mut path = Vec::new();
    for &lr in lrs {
        let g: Vec<f64> = w.iter().zip(c).map(|(w, c)| w - c).collect();
        let b = match buf.take() {
            None => g.clone(),
            Some(b) => b.iter().zip(&g).map(|(b, g)| mu * b + g).collect(),
        };
        for k in 0..w.len() {
            let direction = if nesterov { g[k] + mu * b[k] } else { b[k] };
            w[k] -= lr * direction;
        }
        buf = Some(b);
        path.push(w.clone());
    }
    path
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn momentum_and_nesterov_follow_pytorch_across_a_learning_rate_change() {
    let w0 = [1.0, -2.0, 0.5];
    let c = [3.0, 0.5, -1.0];
    // Four steps at η = 0.1, then four at η = 0.01.
    let lrs = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01];
    for (nesterov, mut opt) in [
        (false, Box::new(Momentum::new(0.1)) as Box<dyn Optimizer>),
        (true, Box::new(Nesterov::new(0.1))),
    ] {
        let got = quadratic_path(&mut opt, &w0, &c, &lrs);
        let want = pytorch_sgd_momentum(&w0, &c, &lrs, 0.9, nesterov);
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(bits(g), bits(w), "{} step {}", opt.name(), step + 1);
        }
    }

    // By hand, first coordinate, two steps at 0.1 then one at 0.01 (μ = 0.9, g = w − 3).
    // Momentum: b = −2, w = 1.2; b = −1.8 − 1.8 = −3.6, w = 1.56;
    // then g = −1.44, b = −3.24 − 1.44 = −4.68, w = 1.56 + 0.01·4.68 = 1.6068.
    // (A velocity that carries η, v ← μv − ηg, would give 1.8984 instead.)
    let lrs = [0.1, 0.1, 0.01];
    let momentum = quadratic_path(&mut Momentum::new(0.1), &w0, &c, &lrs);
    assert_eq!(momentum[1][0], 1.56);
    assert!((momentum[2][0] - 1.6068).abs() < 1e-15);
    // Nesterov: b = −2, w = 1 + 0.1·(2 + 1.8) = 1.38; g = −1.62, b = −3.42,
    // w = 1.38 + 0.1·(1.62 + 3.078) = 1.8498; then g = −1.1502, b = −4.2282,
    // w = 1.8498 + 0.01·(1.1502 + 3.80538) = 1.8993558.
    let nesterov = quadratic_path(&mut Nesterov::new(0.1), &w0, &c, &lrs);
    assert!((nesterov[0][0] - 1.38).abs() < 1e-15);
    assert!((nesterov[1][0] - 1.8498).abs() < 1e-15);
    assert!((nesterov[2][0] - 1.8993558).abs() < 1e-15);
}

#[test]
fn defaults_and_getters_are_pytorchs() {
    assert_eq!(AdaGrad::default().eps(), 1e-10);
    assert_eq!(AdaGrad::default().learning_rate(), 0.01);
    let rms = RmsProp::default();
    assert_eq!(
        (rms.rho(), rms.eps(), rms.learning_rate()),
        (0.99, 1e-8, 0.01)
    );
    let adam = Adam::default();
    assert_eq!(
        (adam.beta1(), adam.beta2(), adam.eps(), adam.learning_rate()),
        (0.9, 0.999, 1e-8, 0.001)
    );
    assert_eq!(Momentum::default().mu(), 0.9);
    assert_eq!(Nesterov::default().mu(), 0.9);
    // The builders and the getters agree.
    let adam = Adam::new(0.1).betas(0.8, 0.95).epsilon(1e-6);
    assert_eq!((adam.beta1(), adam.beta2(), adam.eps()), (0.8, 0.95, 1e-6));
    assert_eq!(RmsProp::new(0.1).decay(0.5).rho(), 0.5);
    assert_eq!(AdaGrad::new(0.1).epsilon(1e-3).eps(), 1e-3);
    assert_eq!(Momentum::new(0.1).momentum(0.25).mu(), 0.25);
    assert_eq!(Nesterov::new(0.1).momentum(0.75).mu(), 0.75);

    // AdaGrad with ε = 1e-10 on its first step: w = 0 − 0.1·2/(2 + 1e-10).
    let mut params = Params::new();
    params.insert("w", Tensor::scalar(0.0)).unwrap();
    let grads = ParamGradients::from_pairs([("w", Tensor::scalar(2.0))]).unwrap();
    AdaGrad::new(0.1).step(&mut params, &grads).unwrap();
    assert_eq!(
        params.get("w").unwrap().item().unwrap(),
        -(0.1 * 2.0 / (2.0 + 1e-10))
    );
}

/// The six optimizers, each with a learning rate that moves the small network below.
fn six_optimizers() -> Vec<Box<dyn Optimizer>> {
    vec![
        Box::new(Sgd::new(0.1)),
        Box::new(Momentum::new(0.05)),
        Box::new(Nesterov::new(0.05)),
        Box::new(AdaGrad::new(0.1)),
        Box::new(RmsProp::new(0.01)),
        Box::new(Adam::new(0.01)),
    ]
}

/// A 2-3-1 tanh network; `seed` picks its initial weights.
fn network(seed: u64) -> (Mlp, Params) {
    let mut params = Params::new();
    let net = Mlp::builder(2)
        .layer(3, Activation::Tanh)
        .layer(1, Activation::Identity)
        .build(&mut params, &mut init::rng(seed))
        .unwrap();
    (net, params)
}

/// Steps `steps` of training, step k on rows {k mod 4, (k + 1) mod 4} of a fixed data
/// set, so that each step sees other data.
fn train(net: &Mlp, params: &mut Params, opt: &mut dyn Optimizer, steps: std::ops::Range<usize>) {
    let rows = [[0.0, 1.0], [1.0, -1.0], [0.5, 0.5], [-1.0, 2.0]];
    let targets = [1.0, -0.5, 0.25, 2.0];
    let mut trainer = Trainer::new();
    for k in steps {
        let (a, b) = (k % 4, (k + 1) % 4);
        let x = Tensor::matrix(&[rows[a], rows[b]]).unwrap();
        let y = Tensor::new(vec![targets[a], targets[b]], [2, 1]).unwrap();
        trainer
            .step(params, opt, |p| {
                let o = net.forward(p, p.tape().constant_tensor(&x))?;
                o.try_mse(p.tape().constant_tensor(&y))
            })
            .unwrap();
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tapegrad-test-{}-{name}", std::process::id()))
}

fn assert_same_bits(a: &Params, b: &Params, what: &str) {
    assert_eq!(
        a.names().collect::<Vec<_>>(),
        b.names().collect::<Vec<_>>(),
        "{what}"
    );
    for ((name, x), (_, y)) in a.iter().zip(b.iter()) {
        assert_eq!(x.shape(), y.shape(), "{what}: {name}");
        assert_eq!(bits(x.data()), bits(y.data()), "{what}: {name}");
    }
}

#[test]
fn every_optimizer_resumes_from_saved_state_bit_for_bit() {
    for (mut straight, mut first) in six_optimizers().into_iter().zip(six_optimizers()) {
        let name = straight.name().to_string();
        // 20 steps without a break.
        let (net, mut uninterrupted) = network(3);
        train(&net, &mut uninterrupted, &mut straight, 0..20);

        // 10 steps, then the parameters and the optimizer's state go to files.
        let (_, mut params) = network(3);
        train(&net, &mut params, &mut first, 0..10);
        let (params_file, state_file) = (
            temp_path(&format!("{name}.params")),
            temp_path(&format!("{name}.state")),
        );
        params.save(&params_file).unwrap();
        first.state().save(&state_file).unwrap();
        let saved_state = first.state();
        drop((params, first));

        // A fresh start: other initial weights, a new optimizer, a new trainer.
        let (net, mut params) = network(99);
        params.load(&params_file).unwrap();
        let mut resumed = six_optimizers()
            .into_iter()
            .find(|o| o.name() == name)
            .unwrap();
        let state_text = std::fs::read_to_string(&state_file).unwrap();
        resumed
            .load_state(&Params::from_text(&state_text).unwrap())
            .unwrap();
        assert_same_bits(&resumed.state(), &saved_state, &name);
        train(&net, &mut params, &mut resumed, 10..20);

        assert_same_bits(&params, &uninterrupted, &name);
        assert_same_bits(&resumed.state(), &straight.state(), &name);
        assert_ne!(params, network(3).1, "{name} trained");
        std::fs::remove_file(params_file).ok();
        std::fs::remove_file(state_file).ok();
    }
}

#[test]
fn optimizer_state_names_its_buffers_like_pytorch() {
    let (net, mut params) = network(1);
    let expected: [(&str, &[&str]); 6] = [
        ("sgd", &[]),
        ("momentum", &["momentum_buffer"]),
        ("nesterov", &["momentum_buffer"]),
        ("adagrad", &["sum"]),
        ("rmsprop", &["square_avg"]),
        ("adam", &["exp_avg", "exp_avg_sq"]),
    ];
    for (mut opt, (name, keys)) in six_optimizers().into_iter().zip(expected) {
        assert_eq!(opt.name(), name);
        assert!(opt.state().is_empty(), "{name} before its first step");
        train(&net, &mut params, &mut opt, 0..3);
        let state = opt.state();
        let mut want: Vec<String> = params
            .names()
            .flat_map(|p| keys.iter().map(move |k| format!("{p}.{k}")))
            .collect();
        if name == "adam" {
            want.push("step".into());
            assert_eq!(state.get("step").unwrap().item().unwrap(), 3.0);
        }
        assert_eq!(state.names().collect::<Vec<_>>(), want, "{name}");
        for (p, value) in params.iter() {
            for k in keys {
                assert_eq!(
                    state.get(&format!("{p}.{k}")).unwrap().shape(),
                    value.shape()
                );
            }
        }
        opt.reset();
        assert!(opt.state().is_empty(), "{name} after reset");
    }
}

#[test]
fn loading_a_bad_state_is_an_error_and_changes_nothing() {
    let (net, mut params) = network(1);
    let mut adam = Adam::new(0.01);
    train(&net, &mut params, &mut adam, 0..2);
    let before = adam.state();
    let mut broken = Params::new();
    for (name, value) in before.iter() {
        broken.insert(name, value.clone()).unwrap();
    }
    let load = |adam: &mut Adam, state: &Params| adam.load_state(state);

    // The step count missing, negative or fractional.
    let mut no_step = Params::new();
    for (name, value) in before.iter().filter(|(n, _)| *n != "step") {
        no_step.insert(name, value.clone()).unwrap();
    }
    assert!(matches!(
        load(&mut adam, &no_step),
        Err(Error::Invalid { .. })
    ));
    broken.set("step", Tensor::scalar(1.5)).unwrap();
    assert!(load(&mut adam, &broken).is_err());
    broken.set("step", Tensor::scalar(2.0)).unwrap();
    // A non-finite moment.
    let first = before.names().next().unwrap().to_string();
    let mut bad = before.get(&first).unwrap().clone();
    bad.data_mut()[0] = f64::NAN;
    broken.set(&first, bad).unwrap();
    assert!(load(&mut adam, &broken).is_err());
    // Another optimizer's buffers.
    assert!(load(&mut adam, &Momentum::default().state()).is_ok());
    assert!(adam.state().is_empty());
    adam.load_state(&before).unwrap();
    let mut momentum = Momentum::new(0.1);
    assert!(momentum.load_state(&before).is_err());
    assert!(Sgd::new(0.1).load_state(&before).is_err());
    assert!(momentum.state().is_empty());
    assert_same_bits(&adam.state(), &before, "adam");

    // A state for other parameters is refused at the next step, changing nothing.
    let (_, mut other) = {
        let mut params = Params::new();
        let net = Mlp::builder(2)
            .layer(5, Activation::Tanh)
            .layer(1, Activation::Identity)
            .build(&mut params, &mut init::rng(0))
            .unwrap();
        (net, params)
    };
    let grads = ParamGradients::from_pairs(
        other
            .iter()
            .map(|(n, v)| (n.to_string(), Tensor::ones(v.shape().clone()))),
    )
    .unwrap();
    let kept = other.clone();
    assert!(adam.step(&mut other, &grads).is_err());
    assert_eq!(other, kept);
    assert_same_bits(&adam.state(), &before, "adam after a refused step");
}

#[test]
fn schedules_give_pytorchs_learning_rates() {
    let step = Scheduler::new(
        0.1,
        Schedule::StepDecay {
            every: 3,
            gamma: 0.1,
        },
    )
    .unwrap();
    let rates: Vec<f64> = (0..7).map(|e| step.learning_rate(e)).collect();
    // PyTorch's StepLR multiplies by γ at epochs 3 and 6.
    assert_eq!(
        rates,
        [
            0.1,
            0.1,
            0.1,
            0.1 * 0.1,
            0.1 * 0.1,
            0.1 * 0.1,
            0.1 * 0.1 * 0.1
        ]
    );

    let exponential = Scheduler::new(0.5, Schedule::Exponential { gamma: 0.9 }).unwrap();
    assert_eq!(exponential.learning_rate(0), 0.5);
    assert_eq!(exponential.learning_rate(3), 0.5 * 0.9 * 0.9 * 0.9);

    // Cosine from 1 to 0 over 4 epochs: 1, (1 + √½)/2, ½, (1 − √½)/2, 0, then back up.
    let cosine = Scheduler::new(
        1.0,
        Schedule::Cosine {
            period: 4,
            min: 0.0,
        },
    )
    .unwrap();
    let half = std::f64::consts::FRAC_1_SQRT_2;
    let want = [
        1.0,
        (1.0 + half) / 2.0,
        0.5,
        (1.0 - half) / 2.0,
        0.0,
        (1.0 - half) / 2.0,
    ];
    for (e, want) in want.iter().enumerate() {
        assert!((cosine.learning_rate(e) - want).abs() < 1e-15, "epoch {e}");
    }

    let constant = Scheduler::new(0.3, Schedule::Constant).unwrap();
    assert_eq!(constant.learning_rate(1000), 0.3);

    // step() moves one epoch and sets the optimizer's rate.
    let mut scheduler = Scheduler::new(
        0.1,
        Schedule::StepDecay {
            every: 2,
            gamma: 0.5,
        },
    )
    .unwrap();
    let mut opt = Nesterov::new(0.1);
    assert_eq!(scheduler.step(&mut opt), 0.1);
    assert_eq!(scheduler.step(&mut opt), 0.05);
    assert_eq!(opt.learning_rate(), 0.05);
    assert_eq!(scheduler.epoch(), 2);
    scheduler.set_epoch(6);
    assert_eq!(scheduler.step(&mut opt), 0.0125);

    for bad in [
        Scheduler::new(-0.1, Schedule::Constant),
        Scheduler::new(f64::NAN, Schedule::Constant),
        Scheduler::new(0.1, Schedule::Exponential { gamma: -1.0 }),
        Scheduler::new(
            0.1,
            Schedule::Cosine {
                period: 0,
                min: 0.0,
            },
        ),
        Scheduler::new(
            0.1,
            Schedule::Cosine {
                period: 5,
                min: f64::INFINITY,
            },
        ),
    ] {
        assert!(matches!(bad, Err(Error::Invalid { .. })));
    }
}

#[cfg(feature = "safetensors")]
/// A safetensors file by hand: the 8-byte little-endian header length, the JSON
/// header, the data.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

#[cfg(feature = "safetensors")]
#[test]
fn safetensors_round_trip_follows_the_format() {
    let mut params = Params::new();
    params
        .insert(
            "layer1.weight",
            Tensor::matrix(&[
                [0.1, -2.5, 1.0 / 3.0],
                [1e-300, -0.0, f64::MIN_POSITIVE / 4.0],
            ])
            .unwrap(),
        )
        .unwrap();
    params
        .insert("layer1.bias", Tensor::vector([0.5, -0.25]))
        .unwrap();
    params.insert("a_scalar", Tensor::scalar(-7.0)).unwrap();
    let path = temp_path("round-trip.safetensors");
    params.save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    // The specification: 8 bytes, a little-endian u64 N; N bytes of UTF-8 JSON that
    // start with `{` (padding with spaces allowed); then the data, where each tensor's
    // `data_offsets` [begin, end) are relative to the start of the data and the tensors
    // cover it with no gap.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.starts_with('{'));
    let header: serde_json::Value = serde_json::from_str(header.trim_end_matches(' ')).unwrap();
    let data = &bytes[8 + n..];
    let entries = header.as_object().unwrap();
    assert_eq!(
        entries["__metadata__"]["tapegrad.order"],
        "layer1.weight layer1.bias a_scalar"
    );
    let mut covered = 0;
    for (name, value) in params.iter() {
        let entry = &entries[name];
        assert_eq!(entry["dtype"], "F64", "{name}");
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, value.shape().dims(), "{name}");
        let (begin, end) = (
            entry["data_offsets"][0].as_u64().unwrap() as usize,
            entry["data_offsets"][1].as_u64().unwrap() as usize,
        );
        assert_eq!(end - begin, 8 * value.numel(), "{name}");
        let stored: Vec<u64> = data[begin..end]
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(stored, bits(value.data()), "{name}");
        covered += end - begin;
    }
    assert_eq!(entries.len(), params.len() + 1); // and __metadata__
    assert_eq!(covered, data.len());
    assert_eq!(entries["a_scalar"]["shape"], serde_json::json!([]));

    // Back, bit for bit and in order, into a new store and into an existing one.
    let back = Params::read_safetensors(&path).unwrap();
    assert_same_bits(&back, &params, "round trip");
    let mut existing = params.clone();
    for (_, value) in existing.iter_mut() {
        value.data_mut().fill(9.0);
    }
    existing.load_safetensors(&path).unwrap();
    assert_same_bits(&existing, &params, "load");
    std::fs::remove_file(path).ok();
}

#[cfg(feature = "safetensors")]
/// `tests/data/reference.safetensors` was written once by the reference Python
/// library, safetensors 0.8.0 with NumPy 2.4:
///
/// ```python
/// import numpy as np
/// from safetensors.numpy import save_file
/// save_file({
///     "layer1.weight": np.array([[0.1, -2.5, 1.0 / 3.0], [1e-300, -0.0, 4.0]], dtype=np.float64),
///     "layer1.bias": np.array([0.5, -0.25], dtype=np.float64),
///     "scale": np.array(1.5, dtype=np.float64),
///     "half.precision": np.array([0.1, -3.0], dtype=np.float32),
/// }, "reference.safetensors", metadata={"source": "numpy"})
/// ```
#[test]
fn a_file_written_by_the_python_library_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference.safetensors"
    );
    let params = Params::read_safetensors(path).unwrap();
    // No recorded order: the order of the values in the file.
    assert_eq!(
        params.names().collect::<Vec<_>>(),
        ["layer1.bias", "layer1.weight", "scale", "half.precision"]
    );
    let weight = params.get("layer1.weight").unwrap();
    assert_eq!(weight.shape().dims(), &[2, 3]);
    assert_eq!(
        bits(weight.data()),
        bits(&[0.1, -2.5, 1.0 / 3.0, 1e-300, -0.0, 4.0])
    );
    assert_eq!(
        params.get("layer1.bias").unwrap(),
        &Tensor::vector([0.5, -0.25])
    );
    let scale = params.get("scale").unwrap();
    assert!(scale.shape().is_scalar());
    assert_eq!(scale.item().unwrap(), 1.5);
    // F32 is widened exactly.
    assert_eq!(
        params.get("half.precision").unwrap().data(),
        &[f64::from(0.1f32), -3.0]
    );

    // Into an existing store of the same names and shapes, in another order.
    let mut store = Params::new();
    store.insert("scale", Tensor::scalar(0.0)).unwrap();
    store.insert("half.precision", Tensor::zeros([2])).unwrap();
    store
        .insert("layer1.weight", Tensor::zeros([2, 3]))
        .unwrap();
    store.insert("layer1.bias", Tensor::zeros([2])).unwrap();
    store.load_safetensors(path).unwrap();
    assert_eq!(store.names().next(), Some("scale"));
    assert_eq!(store.get("scale").unwrap().item().unwrap(), 1.5);
    assert_eq!(store, params);
}

#[cfg(feature = "safetensors")]
#[test]
fn a_bad_safetensors_file_is_an_error_and_changes_nothing() {
    let mut store = Params::new();
    store.insert("w", Tensor::vector([1.0, 2.0])).unwrap();
    let kept = store.clone();
    let path = temp_path("bad.safetensors");
    let refused = |store: &mut Params, bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let result = store.load_safetensors(&path);
        assert!(matches!(result, Err(Error::Invalid { .. })), "{result:?}");
        assert_eq!(*store, kept);
    };
    let two = [1.0f64, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>();
    // A well-formed file for reference.
    let good = safetensors_bytes(
        r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#,
        &two,
    );
    let mut copy = store.clone();
    std::fs::write(&path, &good).unwrap();
    copy.load_safetensors(&path).unwrap();
    assert_eq!(copy, store);
    // Cut short, a header length past the end, not JSON, offsets that do not fit.
    refused(&mut store, &good[..good.len() - 1]);
    refused(&mut store, &[255, 255, 255, 255, 0, 0, 0, 0]);
    refused(&mut store, &safetensors_bytes("not json", &[]));
    refused(
        &mut store,
        &safetensors_bytes(
            r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}"#,
            &two[..8],
        ),
    );
    // Another type, another shape, another name, one tensor too many.
    refused(
        &mut store,
        &safetensors_bytes(
            r#"{"w":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
            &two,
        ),
    );
    refused(
        &mut store,
        &safetensors_bytes(
            r#"{"w":{"dtype":"F64","shape":[1,2],"data_offsets":[0,16]}}"#,
            &two,
        ),
    );
    refused(
        &mut store,
        &safetensors_bytes(
            r#"{"v":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#,
            &two,
        ),
    );
    let mut more = Params::new();
    more.insert("w", Tensor::vector([1.0, 2.0])).unwrap();
    more.insert("b", Tensor::scalar(0.0)).unwrap();
    refused(&mut store, &more.to_safetensors().unwrap());
    // A name that tapegrad does not accept.
    let spaced = safetensors_bytes(
        r#"{"a b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#,
        &two,
    );
    assert!(Params::from_safetensors(&spaced).is_err());
    // No file at all.
    std::fs::remove_file(&path).ok();
    assert!(matches!(
        store.load_safetensors(&path),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(store, kept);
}

#[cfg(feature = "safetensors")]
#[test]
fn training_resumes_from_safetensors_files_bit_for_bit() {
    for (mut straight, mut first) in six_optimizers().into_iter().zip(six_optimizers()) {
        let name = straight.name().to_string();
        let (net, mut uninterrupted) = network(5);
        train(&net, &mut uninterrupted, &mut straight, 0..20);

        let (_, mut params) = network(5);
        train(&net, &mut params, &mut first, 0..10);
        let (params_file, state_file) = (
            temp_path(&format!("{name}.params.safetensors")),
            temp_path(&format!("{name}.state.safetensors")),
        );
        params.save_safetensors(&params_file).unwrap();
        first.state().save_safetensors(&state_file).unwrap();
        drop((params, first));

        let (net, mut params) = network(77);
        params.load_safetensors(&params_file).unwrap();
        let mut resumed = six_optimizers()
            .into_iter()
            .find(|o| o.name() == name)
            .unwrap();
        resumed
            .load_state(&Params::read_safetensors(&state_file).unwrap())
            .unwrap();
        train(&net, &mut params, &mut resumed, 10..20);
        assert_same_bits(&params, &uninterrupted, &name);
        assert_same_bits(&resumed.state(), &straight.state(), &name);
        std::fs::remove_file(params_file).ok();
        std::fs::remove_file(state_file).ok();
    }
}

#[test]
fn given_batch_orders_drive_fit_step_by_step() {
    use tapegrad::data::{Batches, Dataset};
    // w·x on four samples, plain SGD with η = 0.1 and loss Σ w·x over the batch:
    // each step moves w by −0.1·Σx, in the given order of batches.
    let x = Tensor::new(vec![1.0, 2.0, 4.0, 8.0], [4, 1]).unwrap();
    let data = Dataset::new(x, Tensor::zeros([4, 1])).unwrap();
    let orders = vec![vec![3, 1, 0, 2], vec![0, 2, 3, 1]];
    let mut batches = Batches::with_orders(3, orders).unwrap();
    assert_eq!(batches.batch_size(), 3);
    assert_eq!(batches.batches_per_epoch(), 2);
    let mut params = Params::new();
    params.insert("w", Tensor::scalar(0.0)).unwrap();
    let mut seen = Vec::new();
    let mut after = Vec::new();
    let history = Trainer::new()
        .fit(
            &mut params,
            &mut Sgd::new(0.1),
            &data,
            &mut batches,
            3,
            |p, b| {
                seen.push(b.indices.to_vec());
                after.push(b.inputs.value().data().iter().sum::<f64>());
                Ok((p.get("w")? * b.inputs).sum())
            },
        )
        .unwrap();
    assert_eq!(
        seen,
        [
            vec![3, 1, 0],
            vec![2],
            vec![0, 2, 3],
            vec![1],
            vec![3, 1, 0],
            vec![2]
        ]
    );
    // The batches' input sums: 11, 4, 13, 2, 11, 4; w is −0.1 times their running sum.
    assert_eq!(after, [11.0, 4.0, 13.0, 2.0, 11.0, 4.0]);
    let w = params.get("w").unwrap().item().unwrap();
    assert!((w - -0.1 * 45.0).abs() < 1e-12);
    assert_eq!(history.steps.len(), 6);
    assert_eq!(batches.epochs(), 3);
}

#[cfg(feature = "serde")]
#[test]
fn serde_round_trips_tensors_shapes_and_params_exactly() {
    use tapegrad::Shape;
    // Parameters and an optimizer's state through JSON, bit for bit and in order.
    let (net, mut params) = network(8);
    let mut adam = Adam::new(0.01);
    train(&net, &mut params, &mut adam, 0..5);
    let json = serde_json::to_string(&params).unwrap();
    let back: Params = serde_json::from_str(&json).unwrap();
    assert_same_bits(&back, &params, "params");
    let state: Params =
        serde_json::from_str(&serde_json::to_string(&adam.state()).unwrap()).unwrap();
    assert_same_bits(&state, &adam.state(), "adam state");
    let mut resumed = Adam::new(0.01);
    resumed.load_state(&state).unwrap();
    assert_eq!(resumed.steps(), 5);

    let odd = Tensor::new(vec![1e-300, -0.0, 0.1, f64::MAX], [2, 1, 2]).unwrap();
    let back: Tensor = serde_json::from_str(&serde_json::to_string(&odd).unwrap()).unwrap();
    assert_eq!(bits(back.data()), bits(odd.data()));
    assert_eq!(back.shape().dims(), &[2, 1, 2]);
    let shape: Shape = serde_json::from_str("[4, 0, 1]").unwrap();
    assert_eq!(shape.dims(), &[4, 0, 1]);

    // Data that do not fit the shape, a duplicate name, a missing field.
    assert!(serde_json::from_str::<Tensor>(r#"{"shape":[2,2],"data":[1.0,2.0,3.0]}"#).is_err());
    assert!(serde_json::from_str::<Params>(
        r#"{"w":{"shape":[],"data":[1.0]},"w":{"shape":[],"data":[2.0]}}"#
    )
    .is_err());
    assert!(serde_json::from_str::<Tensor>(r#"{"data":[1.0]}"#).is_err());
    // A shape too large for any tensor is an error, not an overflow.
    let huge = r#"{"shape":[4294967296,4294967296,16],"data":[]}"#;
    assert!(serde_json::from_str::<Tensor>(huge).is_err());
}

#[test]
fn a_loaded_state_must_be_for_the_same_parameters() {
    let mut params = Params::new();
    params.insert("a", Tensor::vector([1.0, 2.0])).unwrap();
    params.insert("b", Tensor::vector([3.0, 4.0])).unwrap();
    let grads = |p: &Params| {
        ParamGradients::from_pairs(p.iter().map(|(n, v)| (n.to_string(), v.map(|x| 0.5 * x))))
            .unwrap()
    };
    let mut momentum = Momentum::new(0.1);
    let g = grads(&params);
    momentum.step(&mut params, &g).unwrap();
    let state = momentum.state();

    // The same sizes under other names, or in another order: refused, nothing changes.
    for names in [["b", "a"], ["a", "c"]] {
        let mut other = Params::new();
        other.insert(names[0], Tensor::vector([1.0, 2.0])).unwrap();
        other.insert(names[1], Tensor::vector([3.0, 4.0])).unwrap();
        let mut resumed = Momentum::new(0.1);
        resumed.load_state(&state).unwrap();
        let kept = other.clone();
        let g = grads(&other);
        let refused = resumed.step(&mut other, &g);
        assert!(matches!(refused, Err(Error::Invalid { .. })), "{names:?}");
        assert_eq!(other, kept);
        assert_same_bits(&resumed.state(), &state, "after a refused step");
    }

    // The same parameters: one step of b ← 0.9·b + g, w ← w − 0.1·b from the state.
    let mut resumed = Momentum::new(0.1);
    resumed.load_state(&state).unwrap();
    let mut copy = params.clone();
    let g = grads(&copy);
    resumed.step(&mut copy, &g).unwrap();
    let b = state.get("a.momentum_buffer").unwrap().data()[0];
    let w = params.get("a").unwrap().data()[0];
    assert_eq!(b, 0.5); // the first gradient, 0.5·1
    assert_eq!(
        copy.get("a").unwrap().data()[0],
        w - 0.1 * (0.9 * b + 0.5 * w)
    );
}

// Frozen parameters.

/// The parameters of `network` that the frozen-parameter tests freeze: a weight with
/// values of its own and a zero bias.
const FROZEN: [&str; 2] = ["layer1.weight", "layer2.bias"];

/// The data of `train`, step k.
fn step_data(k: usize) -> (Tensor, Tensor) {
    let rows = [[0.0, 1.0], [1.0, -1.0], [0.5, 0.5], [-1.0, 2.0]];
    let targets = [1.0, -0.5, 0.25, 2.0];
    let (a, b) = (k % 4, (k + 1) % 4);
    (
        Tensor::matrix(&[rows[a], rows[b]]).unwrap(),
        Tensor::new(vec![targets[a], targets[b]], [2, 1]).unwrap(),
    )
}

/// `train`'s steps on a store holding only the trainable parameters of `network`
/// (`layer1.bias`, `layer2.weight`), with the frozen ones written into the forward
/// pass as constants: what training with frozen parameters must reproduce.
fn train_by_hand(
    trainable: &mut Params,
    frozen: &Params,
    opt: &mut dyn Optimizer,
    steps: std::ops::Range<usize>,
) {
    let mut trainer = Trainer::new();
    for k in steps {
        let (x, y) = step_data(k);
        trainer
            .step(trainable, opt, |p| {
                let tape = p.tape();
                let w1 = tape.constant_tensor(frozen.get("layer1.weight")?);
                let b2 = tape.constant_tensor(frozen.get("layer2.bias")?);
                let h = tape
                    .constant_tensor(&x)
                    .try_matmul(w1)?
                    .try_add(p.get("layer1.bias")?)?
                    .tanh();
                let o = h.try_matmul(p.get("layer2.weight")?)?.try_add(b2)?;
                o.try_mse(tape.constant_tensor(&y))
            })
            .unwrap();
    }
}

#[test]
fn every_optimizer_leaves_frozen_parameters_and_their_state_alone() {
    for mut opt in six_optimizers() {
        let name = opt.name().to_string();
        let (net, mut params) = network(3);
        let start = params.clone();
        for frozen in FROZEN {
            params.freeze(frozen).unwrap();
        }
        train(&net, &mut params, &mut opt, 0..10);

        for frozen in FROZEN {
            assert_eq!(
                bits(params.get(frozen).unwrap().data()),
                bits(start.get(frozen).unwrap().data()),
                "{name}: {frozen} moved"
            );
            // The optimizer's buffers for a frozen parameter were never touched.
            for (key, buffer) in opt.state().iter() {
                if key.starts_with(&format!("{frozen}.")) {
                    assert!(buffer.data().iter().all(|&v| v == 0.0), "{name}: {key}");
                }
            }
        }
        for moving in ["layer1.bias", "layer2.weight"] {
            assert_ne!(params.get(moving), start.get(moving), "{name}: {moving}");
        }

        // The trainable parameters follow exactly the path they take when the frozen
        // ones are constants of the loss and not in the store at all.
        let (mut trainable, mut frozen_values) = (Params::new(), Params::new());
        for (p, value) in start.iter() {
            let store = if FROZEN.contains(&p) {
                &mut frozen_values
            } else {
                &mut trainable
            };
            store.insert(p, value.clone()).unwrap();
        }
        let mut reference = six_optimizers()
            .into_iter()
            .find(|o| o.name() == name)
            .unwrap();
        train_by_hand(&mut trainable, &frozen_values, &mut reference, 0..10);
        for (p, value) in trainable.iter() {
            assert_eq!(
                bits(params.get(p).unwrap().data()),
                bits(value.data()),
                "{name}: {p}"
            );
        }
    }
}

#[test]
fn a_parameter_frozen_mid_run_keeps_its_momentum_for_later() {
    let (net, mut params) = network(4);
    let mut opt = Momentum::new(0.05);
    train(&net, &mut params, &mut opt, 0..3);
    let (value, buffer) = (
        params.get("layer1.weight").unwrap().clone(),
        opt.state()
            .get("layer1.weight.momentum_buffer")
            .unwrap()
            .clone(),
    );
    assert!(buffer.data().iter().any(|&b| b != 0.0));

    params.freeze("layer1.weight").unwrap();
    train(&net, &mut params, &mut opt, 3..6);
    assert_eq!(params.get("layer1.weight").unwrap(), &value);
    let state = opt.state();
    let kept = state.get("layer1.weight.momentum_buffer").unwrap();
    assert_eq!(bits(kept.data()), bits(buffer.data()));

    // Unfrozen, it moves again, from its old momentum: b ← μ·b + g; w ← w − η·b.
    params.unfreeze("layer1.weight").unwrap();
    let mut trainer = Trainer::new();
    let (x, y) = step_data(6);
    trainer
        .step(&mut params, &mut opt, |p| {
            let o = net.forward(p, p.tape().constant_tensor(&x))?;
            o.try_mse(p.tape().constant_tensor(&y))
        })
        .unwrap();
    let g = trainer.gradients().get("layer1.weight").unwrap();
    for (((w, w0), b), g) in params
        .get("layer1.weight")
        .unwrap()
        .data()
        .iter()
        .zip(value.data())
        .zip(buffer.data())
        .zip(g.data())
    {
        assert_eq!(*w, w0 - 0.05 * (0.9 * b + g));
    }
}

#[test]
fn freezing_an_unknown_parameter_is_an_error_and_changes_nothing() {
    let (_, mut params) = network(1);
    let kept = params.clone();
    for result in [params.freeze("layer9.weight"), params.unfreeze("bias")] {
        assert!(matches!(result, Err(Error::UnknownParameter { ref name }) if !name.is_empty()));
    }
    assert!(matches!(
        params.is_trainable("nope"),
        Err(Error::UnknownParameter { .. })
    ));
    assert_eq!(params, kept);
    assert_eq!(params.frozen_names().count(), 0);
    assert!(params.names().all(|n| params.is_trainable(n).unwrap()));
    // Freezing twice, and unfreezing a trainable parameter, do nothing more.
    params.freeze("layer1.bias").unwrap();
    params.freeze("layer1.bias").unwrap();
    params.unfreeze("layer2.bias").unwrap();
    assert_eq!(params.frozen_names().collect::<Vec<_>>(), ["layer1.bias"]);
}

#[test]
fn training_with_frozen_parameters_resumes_from_files_bit_for_bit() {
    for (mut straight, mut first) in six_optimizers().into_iter().zip(six_optimizers()) {
        let name = straight.name().to_string();
        let freeze = |params: &mut Params| {
            for frozen in FROZEN {
                params.freeze(frozen).unwrap();
            }
        };
        let (net, mut uninterrupted) = network(3);
        freeze(&mut uninterrupted);
        train(&net, &mut uninterrupted, &mut straight, 0..20);

        let (_, mut params) = network(3);
        freeze(&mut params);
        train(&net, &mut params, &mut first, 0..10);
        let (params_file, state_file) = (
            temp_path(&format!("{name}.frozen.params")),
            temp_path(&format!("{name}.frozen.state")),
        );
        params.save(&params_file).unwrap();
        first.state().save(&state_file).unwrap();
        drop((params, first));

        // A fresh store, frozen the same way, takes the saved values and stays frozen.
        let (net, mut params) = network(99);
        freeze(&mut params);
        params.load(&params_file).unwrap();
        assert_eq!(params.frozen_names().collect::<Vec<_>>(), FROZEN);
        let mut resumed = six_optimizers()
            .into_iter()
            .find(|o| o.name() == name)
            .unwrap();
        let state = Params::from_text(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
        resumed.load_state(&state).unwrap();
        train(&net, &mut params, &mut resumed, 10..20);

        assert_same_bits(&params, &uninterrupted, &name);
        assert_same_bits(&resumed.state(), &straight.state(), &name);
        std::fs::remove_file(params_file).ok();
        std::fs::remove_file(state_file).ok();
    }
}

#[cfg(feature = "safetensors")]
#[test]
fn loading_safetensors_keeps_parameters_frozen() {
    let (net, mut params) = network(2);
    params.freeze("layer2.weight").unwrap();
    let path = temp_path("frozen.safetensors");
    params.save_safetensors(&path).unwrap();
    let saved = params.clone();
    train(&net, &mut params, &mut Adam::new(0.01), 0..3);
    assert_ne!(params, saved);
    params.load_safetensors(&path).unwrap();
    assert_same_bits(&params, &saved, "loaded");
    assert_eq!(params.frozen_names().collect::<Vec<_>>(), ["layer2.weight"]);
    // A store read from the file is a new store: every parameter trainable.
    let read = Params::read_safetensors(&path).unwrap();
    assert_eq!(read.frozen_names().count(), 0);
    std::fs::remove_file(path).ok();
}
