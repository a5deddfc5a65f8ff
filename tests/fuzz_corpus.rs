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
