//! Alternates two builds of tapegrad (see scripts/alternate.sh) on W1 record, W1 replay,
//! W2 replay_step, W3 and W4, and prints the median ratio new/old of each.
//! `alternate phases N` times W1 record's recording, backward and copy-out apart
//! (N runs of each build); `alternate count old|new w1|w1r|w2|w3|w4 N` runs one
//! workload of one build, for an instruction count.
use std::hint::black_box;
use std::time::Instant;

macro_rules! workloads {
    ($m:ident, $tg:ident) => {
        mod $m {
            use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
            use tapegrad::optim::Sgd;
            use tapegrad::{Gradients, Tape, Tensor, Var, Vars};
            use $tg as tapegrad;

            /// A `Var` or a `Result` of one as a `Result`: op methods that can fail
            /// returned `Result` before the crate's fallibility rule and `Var` after it.
            trait Lift<'t> {
                fn lift(self) -> tapegrad::Result<Var<'t>>;
            }
            impl<'t> Lift<'t> for Var<'t> {
                fn lift(self) -> tapegrad::Result<Var<'t>> {
                    Ok(self)
                }
            }
            impl<'t> Lift<'t> for tapegrad::Result<Var<'t>> {
                fn lift(self) -> tapegrad::Result<Var<'t>> {
                    self
                }
            }

            pub fn w1_inputs() -> Vec<f64> {
                (0..100_000)
                    .map(|i| ((i * 37 % 101) as f64 / 101.0 - 0.5) * 2.0)
                    .collect()
            }
            fn w1_record<'t>(tape: &'t Tape, x: &[f64]) -> (Vars<'t>, Var<'t>) {
                let xs = tape.vars(x);
                let mut y = tape.constant(0.0);
                for (a, b) in xs.iter().zip(xs.iter().skip(1)) {
                    y = y + ((a * b).sin() + a.tanh());
                }
                (xs, y)
            }
            pub struct W1 {
                tape: Tape,
                grads: Gradients,
                g: Vec<f64>,
                x: Vec<f64>,
            }
            impl W1 {
                pub fn new() -> W1 {
                    let x = w1_inputs();
                    W1 {
                        tape: Tape::with_capacity(600_000, 600_000),
                        grads: Gradients::new(),
                        g: vec![0.0; x.len()],
                        x,
                    }
                }
                pub fn run(&mut self) -> f64 {
                    self.tape.clear();
                    let (xs, y) = w1_record(&self.tape, &self.x);
                    y.backward_into(&mut self.grads).unwrap();
                    self.grads.wrt_vars(xs, &mut self.g).unwrap();
                    self.g[7]
                }
            }
            impl W1 {
                /// One run timed in three phases: recording, backward, and the copy of
                /// the gradients out.
                pub fn phases(&mut self) -> [f64; 3] {
                    let t0 = std::time::Instant::now();
                    self.tape.clear();
                    let (xs, y) = w1_record(&self.tape, &self.x);
                    let t1 = std::time::Instant::now();
                    y.backward_into(&mut self.grads).unwrap();
                    let t2 = std::time::Instant::now();
                    self.grads.wrt_vars(xs, &mut self.g).unwrap();
                    let t3 = std::time::Instant::now();
                    [
                        (t1 - t0).as_secs_f64(),
                        (t2 - t1).as_secs_f64(),
                        (t3 - t2).as_secs_f64(),
                    ]
                }
            }
            pub fn w1_replay(rounds: usize) -> Vec<f64> {
                let x = w1_inputs();
                let tape = Tape::with_capacity(600_000, 600_000);
                let (xs, y) = w1_record(&tape, &x);
                let (mut grads, mut g) = (Gradients::new(), vec![0.0; x.len()]);
                let mut out = Vec::new();
                for _ in 0..rounds {
                    let s = std::time::Instant::now();
                    for _ in 0..5 {
                        xs.set(&x).unwrap();
                        tape.replay();
                        y.backward_into(&mut grads).unwrap();
                        grads.wrt_vars(xs, &mut g).unwrap();
                    }
                    out.push(s.elapsed().as_secs_f64() / 5.0);
                }
                out
            }
            const XOR_X: [[f64; 2]; 4] = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
            fn xor_loss<'t>(
                p: &tapegrad::nn::Bound<'t, '_>,
                x: &Tensor,
                y: &Tensor,
            ) -> tapegrad::Result<Var<'t>> {
                let tape = p.tape();
                let h = tape
                    .constant_tensor(x)
                    .matmul(p.get("w1")?)
                    .lift()?
                    .try_add(p.get("b1")?)?
                    .sigmoid();
                let o = h
                    .matmul(p.get("w2")?)
                    .lift()?
                    .try_add(p.get("b2")?)?
                    .sigmoid();
                o.half_sse(tape.constant_tensor(y)).lift()
            }
            pub fn w2() -> f64 {
                let mut params = Params::new();
                params
                    .insert(
                        "w1",
                        Tensor::new((0..8).map(|k| (k as f64 * 0.37).sin()).collect(), [2, 4])
                            .unwrap(),
                    )
                    .unwrap();
                params
                    .insert("b1", Tensor::new(vec![0.0; 4], [1, 4]).unwrap())
                    .unwrap();
                params
                    .insert(
                        "w2",
                        Tensor::new((0..4).map(|k| (k as f64 * 0.71).cos()).collect(), [4, 1])
                            .unwrap(),
                    )
                    .unwrap();
                params
                    .insert("b2", Tensor::new(vec![0.0], [1, 1]).unwrap())
                    .unwrap();
                let x = Tensor::new(XOR_X.iter().flatten().copied().collect(), [4, 2]).unwrap();
                let y = Tensor::new(vec![0.0, 1.0, 1.0, 0.0], [4, 1]).unwrap();
                let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.1));
                trainer.record(&params, |p| xor_loss(p, &x, &y)).unwrap();
                for _ in 0..2_000 {
                    trainer.replay_step(&mut params, &mut sgd).unwrap();
                }
                params.get("w2").unwrap().data()[0]
            }
            pub struct W3 {
                params: Params,
                net: Mlp,
                x: Tensor,
                labels: Vec<usize>,
                trainer: Trainer,
                sgd: Sgd,
            }
            impl W3 {
                pub fn new() -> W3 {
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
                    W3 {
                        params,
                        net,
                        x,
                        labels: (0..128).map(|k| k % 10).collect(),
                        trainer: Trainer::new(),
                        sgd: Sgd::new(0.01),
                    }
                }
                pub fn run(&mut self) -> f64 {
                    let (net, x, labels) = (&self.net, &self.x, &self.labels);
                    self.trainer
                        .step(&mut self.params, &mut self.sgd, |p| {
                            let logits = net.forward(p, p.tape().constant_tensor(x))?;
                            logits.softmax_cross_entropy(labels).lift()
                        })
                        .unwrap()
                }
            }
            pub fn w4() -> f64 {
                let tape = Tape::new();
                let x0 = tape.var(0.9);
                let mut x = x0;
                for _ in 0..1_000_000 {
                    x = x.sin();
                }
                x.backward().unwrap().wrt_scalar(x0).unwrap()
            }
        }
    };
}
workloads!(old, tapegrad_old);
workloads!(new, tapegrad_new);

fn time(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    let s = Instant::now();
    for _ in 0..reps {
        black_box(f());
    }
    s.elapsed().as_secs_f64() / reps as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("phases") {
        // W1 record's three phases, each build's runs alternating: where a gap lies.
        let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
        let (mut o, mut w) = (old::W1::new(), new::W1::new());
        let mut po: Vec<[f64; 3]> = Vec::new();
        let mut pn: Vec<[f64; 3]> = Vec::new();
        for r in 0..n {
            if r % 2 == 0 {
                po.push(o.phases());
                pn.push(w.phases());
            } else {
                pn.push(w.phases());
                po.push(o.phases());
            }
        }
        let tot = |p: &[f64; 3]| p[0] + p[1] + p[2];
        let a = median(po.iter().map(tot).collect());
        let b = median(pn.iter().map(tot).collect());
        println!(
            "total: old {:.3} ms new {:.3} ms ratio {:.3}",
            a * 1e3,
            b * 1e3,
            b / a
        );
        for k in 0..3 {
            let a = median(po.iter().map(|p| p[k]).collect());
            let b = median(pn.iter().map(|p| p[k]).collect());
            println!(
                "phase {k}: old {:.3} ms new {:.3} ms ratio {:.3}",
                a * 1e3,
                b * 1e3,
                b / a
            );
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("count") {
        // One workload of one build, for an instruction count.
        let (build, w) = (args[2].as_str(), args[3].as_str());
        let n: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(10);
        match (build, w) {
            ("old", "w1") => {
                let mut x = old::W1::new();
                for _ in 0..n {
                    black_box(x.run());
                }
            }
            ("new", "w1") => {
                let mut x = new::W1::new();
                for _ in 0..n {
                    black_box(x.run());
                }
            }
            ("old", "w1r") => {
                black_box(old::w1_replay(n));
            }
            ("new", "w1r") => {
                black_box(new::w1_replay(n));
            }
            ("old", "w2") => {
                for _ in 0..n {
                    black_box(old::w2());
                }
            }
            ("new", "w2") => {
                for _ in 0..n {
                    black_box(new::w2());
                }
            }
            ("old", "w3") => {
                let mut x = old::W3::new();
                for _ in 0..n {
                    black_box(x.run());
                }
            }
            ("new", "w3") => {
                let mut x = new::W3::new();
                for _ in 0..n {
                    black_box(x.run());
                }
            }
            ("old", "w4") => {
                for _ in 0..n {
                    black_box(old::w4());
                }
            }
            ("new", "w4") => {
                for _ in 0..n {
                    black_box(new::w4());
                }
            }
            _ => panic!("count old|new w1|w1r|w2|w3|w4 [n]"),
        }
        return;
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let which: Vec<String> = std::env::args().skip(2).collect();
    let on = |w: &str| which.is_empty() || which.iter().any(|x| x == w);
    let (mut o1, mut n1) = (old::W1::new(), new::W1::new());
    let (mut o3, mut n3) = (old::W3::new(), new::W3::new());
    assert_eq!(o1.run().to_bits(), n1.run().to_bits());
    // One call of each workload of each build before the rounds: caches, the helper
    // thread and the arenas warm.
    black_box((old::w1_replay(1), new::w1_replay(1), old::w2(), new::w2()));
    black_box((o3.run(), n3.run(), old::w4(), new::w4()));
    let names = [
        "W1 record",
        "W1 replay",
        "W2 replay_step",
        "W3 step",
        "W4 chain",
    ];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); 5];
    let mut times: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 5];
    for r in 0..rounds {
        let flip = r % 2 == 1;
        let mut pair = |k: usize, a: &mut dyn FnMut() -> f64, b: &mut dyn FnMut() -> f64| {
            let (ta, tb) = if flip {
                let tb = b();
                (a(), tb)
            } else {
                let ta = a();
                (ta, b())
            };
            ratios[k].push(tb / ta);
            times[k].0.push(ta);
            times[k].1.push(tb);
        };
        if on("w1") {
            pair(0, &mut || time(5, || o1.run()), &mut || {
                time(5, || n1.run())
            });
        }
        if on("w1r") {
            pair(1, &mut || median(old::w1_replay(1)), &mut || {
                median(new::w1_replay(1))
            });
        }
        if on("w2") {
            pair(2, &mut || time(1, old::w2), &mut || time(1, new::w2));
        }
        if on("w3") {
            pair(3, &mut || time(5, || o3.run()), &mut || {
                time(5, || n3.run())
            });
        }
        if on("w4") {
            pair(4, &mut || time(1, old::w4), &mut || time(1, new::w4));
        }
    }
    println!(
        "{} rounds; new/old ratio: median [min..max of middle half]; old and new medians",
        rounds
    );
    for k in 0..5 {
        if ratios[k].is_empty() {
            continue;
        }
        let mut v = ratios[k].clone();
        v.sort_by(f64::total_cmp);
        let q = v.len() / 4;
        println!(
            "{:16} {:.3} [{:.3}..{:.3}]   old {:.3} ms, new {:.3} ms",
            names[k],
            v[v.len() / 2],
            v[q],
            v[v.len() - 1 - q],
            median(times[k].0.clone()) * 1e3,
            median(times[k].1.clone()) * 1e3
        );
    }
}
