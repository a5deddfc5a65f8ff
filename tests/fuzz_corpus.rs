//! The fuzzer's corpus, replayed on stable: every program under `fuzz/corpus/programs/`
//! is decoded and checked exactly as the fuzz target (`fuzz/fuzz_targets/programs.rs`)
//! checks it — no panic but the ones made on purpose, a reused tape and a replay give
//! the same bits as a fresh recording, the gradients equal those of the program pruned
//! to the output's ancestors, and `grad_graph` agrees with `backward`. The decoder and
//! the checks are in `fuzz/src/program.rs`, shared with the fuzz target.

#[path = "../fuzz/src/program.rs"]
mod program;

use std::path::Path;

#[test]
fn every_program_of_the_fuzz_corpus_passes_the_fuzz_checks() {
    program::install_panic_hook();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/programs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let (mut nodes, mut errors, mut panics, mut dead, mut backward_ok, mut graphs) =
        (0, 0, 0, 0, 0, 0);
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        match program::check(&data) {
            Ok(report) => {
                nodes += report.nodes;
                errors += report.errors;
                panics += report.panics;
                dead += report.dead;
                backward_ok += usize::from(report.backward_ok);
                graphs += usize::from(report.grad_graph_compared);
            }
            Err(message) => failures.push(format!("{}: {message}", file.display())),
        }
    }
    println!(
        "{} programs: {nodes} nodes, {errors} steps that returned an error, {panics} \
         calls that panicked on purpose, {dead} nodes off the output's path, backward \
         succeeded in {backward_ok}, grad_graph compared in {graphs}",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(files.len() >= 10, "the corpus has {} programs", files.len());
}

/// A function whose backward fails: it must never be asked, off the output's path.
struct FailingBackward;

impl tapegrad::Function for FailingBackward {
    fn name(&self) -> &str {
        "failing_backward"
    }
    fn forward(&self, inputs: &[tapegrad::TensorRef<'_>], out: &mut [f64]) {
        out.copy_from_slice(inputs[0].data());
    }
    fn backward(
        &self,
        _inputs: &[tapegrad::TensorRef<'_>],
        _y: tapegrad::TensorRef<'_>,
        _gy: tapegrad::TensorRef<'_>,
    ) -> tapegrad::Result<Vec<tapegrad::Tensor>> {
        Err(tapegrad::Error::Invalid {
            op: "failing_backward".into(),
            reason: "asked for its backward".into(),
        })
    }
}

/// Found by the fuzzer: a general node of no elements, off the output's path, had its
/// backward run. Its gradient slot is where the next node's starts, and the sweep read
/// that node's gradient as the first number of its own.
#[test]
fn an_empty_node_off_the_outputs_path_is_passed_by() {
    use tapegrad::{Tape, Tensor};
    let f = std::sync::Arc::new(FailingBackward);
    let tape = Tape::new();
    let x = tape.tensor(&Tensor::new(vec![], [2, 0]).unwrap());
    let a = x.relu();
    let _off_the_path = a.apply(&f).unwrap();
    let y = a.sum();
    let grads = y.backward().unwrap();
    assert_eq!(grads.wrt(x).unwrap(), Tensor::new(vec![], [2, 0]).unwrap());
    // On the path, the same function is asked, and its error is backward's.
    let z = x.apply(&f).unwrap().sum();
    assert!(z.backward().is_err());
}

/// Found by the fuzzer: `grad_graph` differentiated through a node recorded in a
/// no-grad scope, which backward (rightly) treats as a constant.
#[test]
fn grad_graph_stops_at_a_node_recorded_without_gradient() {
    use tapegrad::{Tape, Tensor};
    let tape = Tape::new();
    let x = tape.var(0.5);
    let frozen = {
        let _guard = tape.no_grad();
        x.exp().sigmoid()
    };
    let y = x * 3.0 + frozen;
    let dy = y.grad_graph(&[x]).unwrap()[0];
    assert_eq!(dy.item().unwrap(), 3.0);
    assert_eq!(y.backward().unwrap().wrt_scalar(x).unwrap(), 3.0);
    // The same with tensors, whose frozen node is a general one.
    let v = tape.tensor(&Tensor::vector([0.5, -1.5]));
    let frozen = {
        let _guard = tape.no_grad();
        v.softmax(0)
    };
    let z = v.try_mul(frozen).unwrap().sum();
    let dz = z.grad_graph(&[v]).unwrap()[0].value();
    assert_eq!(dz, z.backward().unwrap().wrt(v).unwrap());
    assert_eq!(dz, frozen.value());
}
