//! The layers of docs/architecture.md, checked on the source: the tape module and
//! `function.rs` name no particular op and no kernel, nothing outside the tape module
//! reaches its storage, and the helper thread lives outside `ops/`.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively, in a fixed order.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file without its comments and its `#[cfg(test)]` module: what the
/// library builds.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the core may take from `ops`: the registry of ops, the rule traits through
/// which elementwise ops plug in, and the plan hook (`Kernel`).
const REGISTRY: &[&str] = &[
    "Op",
    "OpCode",
    "Binary",
    "Unary",
    "Registered",
    "Partials",
    "Kernel",
];

/// The names a file takes from `crate::ops`, from its `use` lines and its paths.
fn names_from_ops(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("ops::") {
        let before = &rest[..at];
        rest = &rest[at + "ops::".len()..];
        // `std::ops::…` and `core::ops::…` are the standard library's.
        if before.ends_with("std::") || before.ends_with("core::") {
            continue;
        }
        let list = if let Some(inner) = rest.strip_prefix('{') {
            &inner[..inner.find('}').unwrap()]
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            &rest[..end]
        };
        for name in list.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn the_core_names_no_particular_op_and_no_kernel() {
    let mut core = sources(&src().join("tape"));
    core.push(src().join("function.rs"));
    assert!(core.len() >= 6, "{core:?}");
    for path in &core {
        for name in names_from_ops(&code(path)) {
            assert!(
                REGISTRY.contains(&name.as_str()),
                "{} takes `ops::{name}` from ops: the core may take only {REGISTRY:?}",
                path.display()
            );
        }
    }
}

#[test]
fn the_registry_check_sees_a_particular_op() {
    // The check above must be able to fail: these are the imports the tape once had.
    let old = "use crate::ops::linalg::{gemm, plain_product};\n\
               use crate::ops::{Binary, Op};\n\
               let y = crate::ops::arith::Add;";
    let names = names_from_ops(old);
    assert_eq!(names, ["linalg::", "Binary", "Op", "arith::Add"]);
    assert!(names.iter().any(|n| !REGISTRY.contains(&n.as_str())));
    assert!(names_from_ops("use std::ops::{Add, Mul};").is_empty());
}

#[test]
fn nothing_outside_the_tape_module_reaches_its_storage() {
    for path in sources(&src()) {
        if path.starts_with(src().join("tape")) {
            continue;
        }
        let code = code(&path);
        for door in [
            ".inner.",
            "Inner",
            "slot_of",
            "gradient_block",
            "write_block",
        ] {
            assert!(!code.contains(door), "{} uses `{door}`", path.display());
        }
    }
}

#[test]
fn the_helper_thread_lives_outside_ops() {
    for path in sources(&src().join("ops")) {
        let code = code(&path);
        for helper in ["thread::spawn", "Condvar"] {
            assert!(!code.contains(helper), "{} has `{helper}`", path.display());
        }
    }
    assert!(code(&src().join("parallel.rs")).contains("thread::"));
}
