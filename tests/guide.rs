//! `docs/adding-an-op.md` shows the code of one op in the three places an op is added.
//! Each block it marks `<!-- from: path -->` must be that file's code, line for line
//! (indentation and runs of spaces aside): so the guide's example is compiled with the
//! crate and passes the suite as written, and an edit to either shows here.

use std::path::Path;

/// The guide's marked blocks: (path, lines of code).
fn marked_blocks(guide: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix("<!-- from: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next(), Some("```text"), "a code block follows {line}");
        let code: Vec<String> = lines
            .by_ref()
            .take_while(|l| *l != "```")
            .map(normalize)
            .collect();
        blocks.push((path.to_string(), code));
    }
    blocks
}

/// A line without its indentation, runs of spaces made one.
fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_guides_example_is_the_crates_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/adding-an-op.md")).unwrap();
    let blocks = marked_blocks(&guide);
    let paths: Vec<&str> = blocks.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["src/ops/activation.rs", "src/ops/mod.rs", "tests/ops.rs"],
        "the op's block, its registry line and its closed-form row"
    );
    for (path, code) in &blocks {
        assert!(!code.is_empty(), "an empty block from {path}");
        let file: Vec<String> = std::fs::read_to_string(root.join(path))
            .unwrap()
            .lines()
            .map(normalize)
            .collect();
        let found = file.windows(code.len()).any(|w| w == &code[..]);
        assert!(
            found,
            "the guide's block from {path} is not in that file:\n{}",
            code.join("\n")
        );
    }
}

/// The guide names the failure a missing row gives, so that a contributor who meets it
/// finds the way out.
#[test]
fn the_guide_names_the_message_of_a_missing_closed_form() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/adding-an-op.md")).unwrap();
    let tests = std::fs::read_to_string(root.join("tests/ops.rs")).unwrap();
    let message = "no closed form written for registered op";
    assert!(guide.contains(message) && tests.contains(message));
}
