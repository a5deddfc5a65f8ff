//! The pictures: every SVG the examples draw parses as XML and holds its series (one
//! line per curve, the legend's and panels' names), the derivatives drawn are the
//! tape's, and the worked example's DOT graph has its nodes, names and edges.
//!
//! The drawing code is the examples' own (`examples/common/plots.rs`); the files go to a
//! temporary directory under `target/`, and nothing here needs Graphviz.

#[path = "../examples/common/plots.rs"]
mod plots;

use plots::*;
use plotters::style::RGBColor;
use roxmltree::{Document, Node};
use std::path::PathBuf;
use tapegrad::dot::{escape, Graph};
use tapegrad::optim::descent::GradientDescent;
use tapegrad::trace::trace;
use tapegrad::{Tape, Tensor};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pictures")
}

/// Parses `svg` (after writing it where a reader of a failing test can open it).
fn parse<'a>(name: &str, svg: &'a str) -> Result<Document<'a>, Box<dyn std::error::Error>> {
    write_to(&out_dir(), name, svg)?;
    Ok(Document::parse(svg)?)
}

/// The polylines drawn in `color` (`#RRGGBB`), and how many points each has.
fn lines(doc: &Document<'_>, color: RGBColor) -> Vec<usize> {
    let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(hex.as_str()))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect()
}

/// Every text the picture shows.
fn texts(doc: &Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n: &Node<'_, '_>| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn has_text(doc: &Document<'_>, text: &str) -> bool {
    texts(doc).iter().any(|t| t == text)
}

#[test]
fn activations_draw_every_function_and_its_derivative_from_the_tape() -> TestResult {
    let curves = activation_curves()?;
    assert_eq!(curves.len(), 12);
    // The derivative drawn is the tape's: σ′ = σ(1 − σ), tanh′ = 1 − tanh², ReLU′ = [x > 0].
    let by_name = |name: &str| curves.iter().find(|c| c.name == name).unwrap();
    let (sigmoid, tanh, relu) = (by_name("sigmoid"), by_name("tanh"), by_name("ReLU"));
    for i in 0..sigmoid.x.len() {
        let s = sigmoid.y[i];
        assert!((sigmoid.dy[i] - s * (1.0 - s)).abs() < 1e-15);
        let t = tanh.y[i];
        assert!((tanh.dy[i] - (1.0 - t * t)).abs() < 1e-15);
        assert_eq!(relu.dy[i], if relu.x[i] > 0.0 { 1.0 } else { 0.0 });
    }
    assert_eq!(sigmoid.dy[100], 0.25); // x = 0
    let svg = activations_svg(&curves)?;
    let doc = parse("activations.svg", &svg)?;
    // One line per function and one per derivative (201 points each), plus the legend's.
    let (f, df) = (lines(&doc, BLUE), lines(&doc, PURPLE));
    assert_eq!(f.iter().filter(|&&n| n == 201).count(), 12);
    assert_eq!(df.iter().filter(|&&n| n == 201).count(), 12);
    assert_eq!((f.len(), df.len()), (13, 13));
    for curve in &curves {
        assert!(has_text(&doc, curve.name), "no panel named {}", curve.name);
    }
    assert!(has_text(&doc, "f(x)") && has_text(&doc, "f′(x)"));
    Ok(())
}

#[test]
fn the_sigmoid_picture_has_both_curves_its_legend_and_the_peak() -> TestResult {
    let x = linspace(-6.0, 6.0, 1201);
    let (s, ds) = on_tape(&x, |x| Ok(x.sigmoid()))?;
    let svg = sigmoid_svg(&x, &s, &ds)?;
    let doc = parse("sigmoid.svg", &svg)?;
    assert!(lines(&doc, BLUE).contains(&1201));
    assert!(lines(&doc, PURPLE).contains(&1201));
    assert!(has_text(&doc, "sigmoid"));
    assert!(has_text(&doc, "derivative (from the tape)"));
    assert!(has_text(&doc, "σ′(0) = 0.25"));
    Ok(())
}

#[test]
fn gradient_descent_draws_three_paths_and_marks_the_one_that_leaves() -> TestResult {
    let init = Tensor::vector([-3.0, 4.0]);
    let mut panels = Vec::new();
    for lr in [0.1, 10.0, 1e-10] {
        let run = GradientDescent {
            lr,
            steps: 100,
            ..GradientDescent::default()
        }
        .run(|x| Ok(x.powi(2).sum()), &init)?;
        panels.push(DescentPanel {
            title: format!("lr = {lr}"),
            path: Path2 {
                name: format!("lr = {lr}"),
                points: run
                    .path
                    .iter()
                    .map(|x| (x.data()[0], x.data()[1]))
                    .collect(),
            },
            note: format!("{} steps", run.path.len() - 1),
        });
    }
    assert_eq!(panels[0].path.points[1], (-2.4, 3.2)); // 0.8·(−3, 4)
    let svg = gradient_descent_svg(&panels)?;
    let doc = parse("gradient_descent.svg", &svg)?;
    // lr = 0.1: all 101 points lie in the frame; lr = 10: the start and the edge where
    // step 1 leaves; lr = 1e-10: 101 points that barely move.
    assert_eq!(lines(&doc, SERIES[0]), [101]);
    assert_eq!(lines(&doc, SERIES[1]), [2]);
    assert_eq!(lines(&doc, SERIES[2]), [101]);
    assert!(has_text(&doc, "step 1: (57, -76), off the frame"));
    // The red cross: two strokes.
    let red = doc
        .descendants()
        .filter(|n| n.has_tag_name("line") && n.attribute("stroke") == Some("#FF0000"))
        .count();
    assert_eq!(red, 2);
    for title in ["lr = 0.1", "lr = 10", "lr = 0.0000000001"] {
        assert!(has_text(&doc, title), "no panel {title}");
    }
    Ok(())
}

#[test]
fn clipping_keeps_the_part_of_a_segment_inside_the_frame() {
    let frame = ((-5.0, 5.0), (-5.0, 5.0));
    let (a, b) = clip((-3.0, 4.0), (57.0, -76.0), frame.0, frame.1).unwrap();
    assert_eq!(a, (-3.0, 4.0));
    assert!((b.1 - -5.0).abs() < 1e-12 && (b.0 - 3.75).abs() < 1e-12);
    assert_eq!(clip((6.0, 6.0), (7.0, 9.0), frame.0, frame.1), None);
}

#[test]
fn optimizers_draw_six_loss_curves_and_six_paths() -> TestResult {
    let paths = optimizer_paths([0.95, 0.1, 0.1, 1.5, 0.15, 0.3], 30)?;
    // Plain SGD on x0²/20 + x1²: x1 ← x1(1 − 2·0.95) = −0.9·x1 each step.
    assert!((paths[0].points[1].1 - -1.8).abs() < 1e-12);
    let losses = optimizer_losses([0.1, 0.05, 0.05, 0.05, 0.005, 0.01], 3)?;
    assert!(losses.iter().all(|c| c.loss.len() == 3 && c.loss[0] > 0.0));
    let svg = optimizers_svg("task", &losses, &paths)?;
    let doc = parse("optimizers.svg", &svg)?;
    for (k, name) in OPTIMIZER_NAMES.iter().enumerate() {
        let drawn = lines(&doc, SERIES[k]);
        // The loss curve (3 epochs), its legend sample, and the path.
        assert!(drawn.contains(&3), "{name}: {drawn:?}");
        assert!(drawn.iter().any(|&n| n >= 20), "{name}: {drawn:?}");
        let named = texts(&doc).iter().filter(|t| t.starts_with(name)).count();
        assert_eq!(named, 2, "{name} in the legend and above its path");
    }
    Ok(())
}

fn curve(name: &str, x: Vec<f64>, loss: Vec<f64>) -> Curve {
    Curve {
        name: name.into(),
        x,
        loss,
    }
}

#[test]
fn batching_draws_each_mode_against_epochs_and_updates() -> TestResult {
    let epochs: Vec<f64> = (1..=10).map(f64::from).collect();
    let modes = [
        ("batch", 1.0),
        ("stochastic", 200.0),
        ("mini-batch 16", 13.0),
    ];
    let loss: Vec<f64> = epochs.iter().map(|e| 0.2 / e).collect();
    let by_epoch: Vec<Curve> = modes
        .iter()
        .map(|(name, _)| curve(name, epochs.clone(), loss.clone()))
        .collect();
    let by_update: Vec<Curve> = modes
        .iter()
        .map(|(name, u)| curve(name, epochs.iter().map(|e| e * u).collect(), loss.clone()))
        .collect();
    let svg = batching_svg(&by_epoch, &by_update)?;
    let doc = parse("batching.svg", &svg)?;
    for color in &SERIES[..3] {
        // Two panels: two curves of 10 points and two legend samples.
        assert_eq!(lines(&doc, *color).iter().filter(|&&n| n == 10).count(), 2);
    }
    for (name, _) in modes {
        assert_eq!(texts(&doc).iter().filter(|t| *t == name).count(), 2);
    }
    assert!(has_text(&doc, "Loss against epochs") && has_text(&doc, "Loss against updates"));
    Ok(())
}

#[test]
fn loss_and_regions_pictures_hold_their_curves_and_points() -> TestResult {
    let epochs: Vec<f64> = (1..=50).map(f64::from).collect();
    let curves = [
        curve("no activation", epochs.clone(), vec![0.25; 50]),
        curve(
            "sigmoid",
            epochs.clone(),
            epochs.iter().map(|e| 0.3 / e).collect(),
        ),
    ];
    let svg = loss_svg("XOR", &curves)?;
    let doc = parse("xor_loss.svg", &svg)?;
    assert!(lines(&doc, SERIES[3]).contains(&50) && lines(&doc, BLUE).contains(&50));
    assert!(has_text(&doc, "no activation") && has_text(&doc, "sigmoid"));

    // Regions of the rule "class 1 when x + y > 1", with the four XOR corners.
    let n = 20;
    let cells = grid((-0.5, 1.5), (-0.5, 1.5), n)?;
    let p = cells
        .data()
        .chunks(2)
        .map(|c| if c[0] + c[1] > 1.0 { 0.9 } else { 0.1 })
        .collect();
    let points = vec![(0.0, 0.0, 0), (0.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0)];
    let panel = Regions {
        title: "a line".into(),
        x: (-0.5, 1.5),
        y: (-0.5, 1.5),
        n,
        p,
        points,
        axes: ["input A", "input B"],
    };
    let svg = regions_svg("XOR", &[panel])?;
    let doc = parse("regions.svg", &svg)?;
    // Each point is a filled disc and its outline; the legend adds two discs.
    let circles = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(circles, 4 * 2 + 2);
    // Runs of equal cells are merged: at most two colours' runs per row, plus the frame.
    let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!((n..=3 * n + 4).contains(&rects), "{rects} rectangles");
    for t in ["a line", "class 0", "class 1", "input A", "input B"] {
        assert!(has_text(&doc, t), "no text {t}");
    }
    Ok(())
}

#[test]
fn the_worked_example_graph_has_its_nodes_names_and_edges() -> TestResult {
    let tape = Tape::new();
    let (w1, w2) = (tape.var(0.7), tape.var(0.5));
    let x = tape.constant(0.5);
    let z1 = w1 * x;
    let h1 = z1.sigmoid();
    let z2 = w2 * h1;
    let o = z2.sigmoid();
    let error = o - 1.0;
    let cost = error.powi(2);
    let grads = cost.backward()?;
    let table = trace(cost, &grads)?
        .label(w1, "W1")?
        .label(w2, "W2")?
        .label(x, "X")?
        .label(z1, "Z1")?
        .label(h1, "h1")?
        .label(z2, "Z2")?
        .label(o, "O")?
        .label(error, "O-Y")?
        .label(cost, "C")?;
    let dot = Graph::new(cost).trace(&table)?.to_dot();
    write_to(&out_dir(), "worked_example.dot", &dot)?;

    let records: Vec<&str> = dot.lines().filter(|l| l.contains("[label=")).collect();
    assert_eq!(records.len(), 9);
    for (id, record) in [
        (0, "W1|leaf|value 0.7|grad -0.0127"),
        (1, "W2|leaf|value 0.5|grad -0.1226"),
        (2, "X|constant|value 0.5"),
        (3, "Z1|mul|value 0.35|grad -0.0253"),
        (4, "h1|sigmoid|value 0.5866|grad -0.1045"),
        (5, "Z2|mul|value 0.2933|grad -0.2091"),
        (6, "O|sigmoid|value 0.5728|grad -0.8544"),
        (7, "O-Y|add_scalar|value -0.4272|grad -0.8544"),
        (8, "C|powi|value 0.1825|grad 1"),
    ] {
        let line = format!("  n{id} [label=\"{record}\"");
        assert!(dot.contains(&line), "no {line} in\n{dot}");
    }
    let edges: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("->"))
        .map(str::trim)
        .collect();
    assert_eq!(
        edges,
        [
            "n0 -> n3;",
            "n2 -> n3;",
            "n3 -> n4;",
            "n1 -> n5;",
            "n4 -> n5;",
            "n5 -> n6;",
            "n6 -> n7;",
            "n7 -> n8;"
        ]
    );
    // The same graph from labels given directly.
    let direct = tapegrad::dot::to_dot(cost, Some(&grads), &[(w1, "W1"), (h1, "h1")])?;
    assert!(direct.contains("n4 [label=\"h1|sigmoid|value 0.5866|grad -0.1045\""));
    assert!(direct.contains("n3 [label=\"mul|value 0.35|grad -0.0253\""));
    Ok(())
}

#[test]
fn record_labels_are_escaped_for_graphviz() -> TestResult {
    let tape = Tape::new();
    let a = tape.var(1.0);
    let b = a * 2.0;
    let dot = Graph::new(b).label(a, "a|{b}<c>\"d\"")?.to_dot();
    assert!(dot.contains(r#"n0 [label="a\|\{b\}\<c\>\"d\"|leaf|value 1""#));
    assert_eq!(escape("x\\y"), "x\\\\y");
    // A graph of a tensor shows its shape and first elements.
    let t = tape.tensor(&Tensor::vector([1.0, 2.0, 3.0, 4.0, 5.0]));
    let dot = Graph::new(t.sum()).to_dot();
    assert!(dot.contains("value [5] [1, 2, 3, 4, …]"), "{dot}");
    Ok(())
}
