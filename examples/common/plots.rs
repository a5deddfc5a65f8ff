//! The examples' pictures: SVG plots drawn with `plotters`, shared by the examples
//! (each includes this file with `#[path]`) and by `tests/pictures.rs`, which parses what
//! these functions draw.
//!
//! Every function here draws numbers it is given; the numbers themselves — values and
//! derivatives — come from the tape, in the examples and in the functions below that
//! compute them (`activation_curves`, `optimizer_paths`, …).
#![allow(dead_code)]

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::error::Error;
use std::path::{Path, PathBuf};
use tapegrad::nn::{Params, Trainer};
use tapegrad::optim::{AdaGrad, Adam, Momentum, Nesterov, Optimizer, RmsProp, Sgd};
use tapegrad::{Tape, Tensor, Var};

/// What drawing and writing a picture can fail with.
pub type PlotResult<T> = std::result::Result<T, Box<dyn Error>>;

/// The lecture's two colours (its sigmoid plot's `#307EC7` and `#9621E2`).
pub const BLUE: RGBColor = RGBColor(0x30, 0x7E, 0xC7);
/// The derivative's colour.
pub const PURPLE: RGBColor = RGBColor(0x96, 0x21, 0xE2);
/// Six distinguishable series colours (for the optimizers and the batching modes).
pub const SERIES: [RGBColor; 6] = [
    RGBColor(0x1F, 0x77, 0xB4),
    RGBColor(0xFF, 0x7F, 0x0E),
    RGBColor(0x2C, 0xA0, 0x2C),
    RGBColor(0xD6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xBD),
    RGBColor(0x8C, 0x56, 0x4B),
];
const GREY: RGBColor = RGBColor(0xBB, 0xBB, 0xBB);
const FONT: &str = "sans-serif";

/// `target/plots` of this crate: where the examples write their pictures.
pub fn plot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("plots")
}

/// Writes `text` to `dir/name` (making `dir`), and returns the path.
pub fn write_to(dir: &Path, name: &str, text: &str) -> PlotResult<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Writes `text` to `target/plots/name` and says so in one line.
pub fn save(name: &str, text: &str) -> PlotResult<()> {
    write_to(&plot_dir(), name, text)?;
    println!("wrote target/plots/{name}");
    Ok(())
}

/// `n` evenly spaced numbers from `a` to `b`, both included.
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
        .collect()
}

/// The smallest and largest of `values`, widened by `pad` of their span on each side.
fn range_of<'a>(values: impl IntoIterator<Item = &'a f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let span = (hi - lo).max(1e-9);
    (lo - pad * span, hi + pad * span)
}

/// An axis label: integers without decimals, no "-0", small and large numbers in
/// scientific notation.
pub fn tick(v: &f64) -> String {
    let v = *v;
    if v.abs() < 1e-9 {
        "0".into()
    } else if v.abs() >= 1e5 || v.abs() < 1e-2 {
        format!("{v:e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A line 2 px wide in `color`.
fn line(color: RGBColor, width: u32) -> ShapeStyle {
    color.stroke_width(width)
}

/// The legend's short sample of a series in `color`.
fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line(color, 3))
}

// ---------------------------------------------------------------------------------------
// Activation functions

/// One activation function sampled on a grid: its values and its derivative, both read
/// off the tape.
pub struct ActivationCurve {
    /// The name shown above its panel.
    pub name: &'static str,
    /// The points x.
    pub x: Vec<f64>,
    /// f(x).
    pub y: Vec<f64>,
    /// f′(x), the gradient of Σ f(xᵢ) with respect to each xᵢ: one backward pass.
    pub dy: Vec<f64>,
}

/// f and f′ of `f` at `x`: f recorded on a tape of the whole grid at once, f′ from one
/// backward pass of the sum (an elementwise function's gradient is its derivative).
pub fn on_tape(
    x: &[f64],
    f: impl for<'t> Fn(Var<'t>) -> tapegrad::Result<Var<'t>>,
) -> tapegrad::Result<(Vec<f64>, Vec<f64>)> {
    let tape = Tape::new();
    let xs = tape.tensor(&Tensor::vector(x.to_vec()));
    let ys = f(xs)?;
    let grads = ys.sum().backward()?;
    Ok((ys.value().data().to_vec(), grads.wrt(xs)?.data().to_vec()))
}

/// Every activation function of the lecture, and softplus and GELU, on [−5, 5].
pub fn activation_curves() -> tapegrad::Result<Vec<ActivationCurve>> {
    type Act = for<'t> fn(Var<'t>) -> tapegrad::Result<Var<'t>>;
    let table: [(&'static str, Act); 12] = [
        ("step (f′ = 0)", |x| Ok(x.step())),
        ("sigmoid", |x| Ok(x.sigmoid())),
        ("tanh", |x| Ok(x.tanh())),
        ("ReLU", |x| Ok(x.relu())),
        ("Leaky ReLU (α = 0.1)", |x| x.try_leaky_relu(0.1)),
        ("ELU (α = 1)", |x| x.try_elu(1.0)),
        ("softsign", |x| Ok(x.softsign())),
        ("arctan", |x| Ok(x.atan())),
        ("Gaussian exp(−x²)", |x| Ok(x.gaussian())),
        ("Swish x·σ(x)", |x| x.try_swish(1.0)),
        ("softplus", |x| Ok(x.softplus())),
        ("GELU", |x| Ok(x.gelu())),
    ];
    let x = linspace(-5.0, 5.0, 201);
    table
        .into_iter()
        .map(|(name, f)| {
            let (y, dy) = on_tape(&x, f)?;
            Ok(ActivationCurve {
                name,
                x: x.clone(),
                y,
                dy,
            })
        })
        .collect()
}

/// A grid of panels, one per activation: f in blue, f′ in purple.
pub fn activations_svg(curves: &[ActivationCurve]) -> PlotResult<String> {
    let columns = 4;
    let rows = curves.len().div_ceil(columns);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1200, 60 + 270 * rows as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, grid) = root.split_vertically(60);
        top.draw(&Text::new(
            "Activation functions f(x) and their derivatives f′(x), both from the tape",
            (20, 12),
            (FONT, 22).into_font(),
        ))?;
        // The legend once for every panel.
        for (k, (color, name)) in [(BLUE, "f(x)"), (PURPLE, "f′(x)")].iter().enumerate() {
            let x = 20 + 150 * k as i32;
            top.draw(&PathElement::new(
                vec![(x, 46), (x + 30, 46)],
                line(*color, 3),
            ))?;
            top.draw(&Text::new(*name, (x + 38, 38), (FONT, 16).into_font()))?;
        }
        let panels = grid.split_evenly((rows, columns));
        for (curve, area) in curves.iter().zip(&panels) {
            let (lo, hi) = range_of(curve.y.iter().chain(&curve.dy), 0.08);
            let mut chart = ChartBuilder::on(area)
                .caption(curve.name, (FONT, 18))
                .margin(8)
                .x_label_area_size(24)
                .y_label_area_size(36)
                .build_cartesian_2d(-5.0..5.0, lo..hi)?;
            chart
                .configure_mesh()
                .max_light_lines(0)
                .bold_line_style(RGBColor(0xE4, 0xE4, 0xE4))
                .x_labels(6)
                .y_labels(5)
                .label_style((FONT, 12))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            // The axes through the origin.
            chart.draw_series(LineSeries::new([(-5.0, 0.0), (5.0, 0.0)], line(GREY, 1)))?;
            if lo < 0.0 && hi > 0.0 {
                chart.draw_series(LineSeries::new([(0.0, lo), (0.0, hi)], line(GREY, 1)))?;
            }
            let points = |ys: &[f64]| -> Vec<(f64, f64)> {
                curve.x.iter().copied().zip(ys.iter().copied()).collect()
            };
            chart.draw_series(std::iter::once(PathElement::new(
                points(&curve.dy),
                line(PURPLE, 2),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                points(&curve.y),
                line(BLUE, 2),
            )))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// σ and σ′ on centred axes, as the lecture draws them, with σ′'s peak marked.
pub fn sigmoid_svg(x: &[f64], s: &[f64], ds: &[f64]) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "The sigmoid σ(x) = 1/(1 + e^−x) and its derivative σ′(x) = σ(x)(1 − σ(x))",
                (FONT, 20),
            )
            .margin(20)
            .build_cartesian_2d(-6.2..6.2, -0.08..1.08)?;
        // Centred axes: the y axis at x = 0, the x axis at y = 0, ticks on them.
        chart.draw_series(LineSeries::new([(-6.2, 0.0), (6.2, 0.0)], line(BLACK, 1)))?;
        chart.draw_series(LineSeries::new([(0.0, -0.08), (0.0, 1.08)], line(BLACK, 1)))?;
        for t in [-6, -4, -2, 2, 4, 6] {
            let t = f64::from(t);
            chart.draw_series(LineSeries::new([(t, 0.0), (t, -0.015)], line(BLACK, 1)))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{t}"),
                (t - 0.12, -0.025),
                (FONT, 14).into_font(),
            )))?;
        }
        for t in [0.25, 0.5, 0.75, 1.0] {
            chart.draw_series(LineSeries::new([(0.0, t), (-0.1, t)], line(BLACK, 1)))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{t}"),
                (-1.0, t + 0.015),
                (FONT, 14).into_font(),
            )))?;
        }
        let points =
            |ys: &[f64]| -> Vec<(f64, f64)> { x.iter().copied().zip(ys.iter().copied()).collect() };
        chart
            .draw_series(LineSeries::new(points(s), line(BLUE, 3)))?
            .label("sigmoid")
            .legend(legend_line(BLUE));
        chart
            .draw_series(LineSeries::new(points(ds), line(PURPLE, 3)))?
            .label("derivative (from the tape)")
            .legend(legend_line(PURPLE));
        // σ′ is largest at 0, where it is 0.25: the most a sigmoid passes back.
        let peak = ds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        chart.draw_series(std::iter::once(Circle::new(
            (0.0, peak),
            4,
            PURPLE.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("σ′(0) = {peak}"),
            (0.2, peak + 0.05),
            (FONT, 15).into_font(),
        )))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 16))
            .background_style(WHITE)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------------
// Paths on a function of two variables

/// One path of an optimizer or a learning rate on a function of (x0, x1).
pub struct Path2 {
    /// The legend's name.
    pub name: String,
    /// The points visited, the start first.
    pub points: Vec<(f64, f64)>,
}

/// The part of the segment from `a` to `b` inside the box, if any (Liang–Barsky).
pub fn clip(
    a: (f64, f64),
    b: (f64, f64),
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - x0),
        (dx, x1 - a.0),
        (-dy, a.1 - y0),
        (dy, y1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some({
        (
            (a.0 + t0 * dx, a.1 + t0 * dy),
            (a.0 + t1 * dx, a.1 + t1 * dy),
        )
    })
}

/// Draws `path` on `chart`: the points inside the frame with a line through them, and
/// where the path leaves the frame, the line up to the edge and a red cross there
/// labelled with the point outside. Returns whether the path left the frame.
fn draw_path<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    path: &Path2,
    color: RGBColor,
    (xr, yr): ((f64, f64), (f64, f64)),
) -> PlotResult<bool>
where
    DB::ErrorType: 'static,
{
    let inside = |p: &(f64, f64)| p.0 >= xr.0 && p.0 <= xr.1 && p.1 >= yr.0 && p.1 <= yr.1;
    let stay = path.points.iter().take_while(|p| inside(p)).count();
    let mut shown: Vec<(f64, f64)> = path.points[..stay].to_vec();
    let mut left = None;
    if stay < path.points.len() && stay > 0 {
        if let Some((_, exit)) = clip(path.points[stay - 1], path.points[stay], xr, yr) {
            shown.push(exit);
            left = Some((exit, path.points[stay], stay));
        }
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            shown.clone(),
            line(color, 2),
        )))?
        .label(path.name.clone())
        .legend(legend_line(color));
    chart.draw_series(
        path.points[..stay]
            .iter()
            .map(|&p| Circle::new(p, 3, color.filled())),
    )?;
    if let Some((exit, outside, k)) = left {
        chart.draw_series(std::iter::once(Cross::new(exit, 7, line(RED, 3))))?;
        let (dx, dy) = ((xr.1 - xr.0) * 0.02, (yr.1 - yr.0) * 0.09);
        let anchor = (
            (exit.0 - (xr.1 - xr.0) * 0.5).max(xr.0 + dx),
            (exit.1 + dy).min(yr.1 - dy),
        );
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "step {k}: ({}, {}), off the frame",
                compact(outside.0),
                compact(outside.1)
            ),
            anchor,
            (FONT, 13).into_font().color(&RED),
        )))?;
    }
    Ok(left.is_some())
}

/// A number in at most 3 significant digits, plainly written when it is not tiny.
pub fn compact(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// Contour lines of `f` as closed polylines: for f = x0²/a² + x1²/b² style bowls, the
/// level sets are ellipses; `levels` are the radii along x0 and x1 of each.
fn draw_ellipses<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    radii: &[(f64, f64)],
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    for &(rx, ry) in radii {
        let ring: Vec<(f64, f64)> = (0..=120)
            .map(|i| {
                let t = std::f64::consts::TAU * i as f64 / 120.0;
                (rx * t.cos(), ry * t.sin())
            })
            .collect();
        chart.draw_series(std::iter::once(PathElement::new(ring, line(GREY, 1))))?;
    }
    Ok(())
}

/// One panel of gradient descent on x0² + x1²: the contour lines f = 1, 4, 9, 16, 25,
/// the dashed axes, and the path.
pub struct DescentPanel {
    /// The panel's title (the learning rate).
    pub title: String,
    /// The path.
    pub path: Path2,
    /// A note drawn under the path (what happened).
    pub note: String,
}

/// The gradient-descent pictures side by side, each framed like the lecture's
/// (x0 from −5 to 5, x1 from −5 to 5).
pub fn gradient_descent_svg(panels: &[DescentPanel]) -> PlotResult<String> {
    let mut svg = String::new();
    let frame = ((-5.0, 5.0), (-5.0, 5.0));
    {
        let root =
            SVGBackend::with_string(&mut svg, (440 * panels.len() as u32, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(40);
        top.draw(&Text::new(
            "Gradient descent on f(x0, x1) = x0² + x1² from (−3, 4), the gradient from the tape",
            (16, 10),
            (FONT, 19).into_font(),
        ))?;
        for (k, (panel, area)) in panels
            .iter()
            .zip(rest.split_evenly((1, panels.len())))
            .enumerate()
        {
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FONT, 18))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(frame.0 .0..frame.0 .1, frame.1 .0..frame.1 .1)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("x0")
                .y_desc("x1")
                .label_style((FONT, 13))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            draw_ellipses(
                &mut chart,
                &[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0), (5.0, 5.0)],
            )?;
            for d in [vec![(-5.0, 0.0), (5.0, 0.0)], vec![(0.0, -5.0), (0.0, 5.0)]] {
                chart.draw_series(DashedLineSeries::new(d, 6, 4, line(BLUE, 1)))?;
            }
            draw_path(&mut chart, &panel.path, SERIES[k % SERIES.len()], frame)?;
            chart.draw_series(std::iter::once(Text::new(
                panel.note.clone(),
                (-4.8, 4.85),
                (FONT, 13).into_font(),
            )))?;
        }
        root.present()?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------------
// The optimizers

/// The six optimizers with the learning rates the pictures use, in the order of the
/// lecture's family tree.
pub fn optimizers(lrs: [f64; 6]) -> Vec<Box<dyn Optimizer>> {
    vec![
        Box::new(Sgd::new(lrs[0])),
        Box::new(Momentum::new(lrs[1])),
        Box::new(Nesterov::new(lrs[2])),
        Box::new(AdaGrad::new(lrs[3])),
        Box::new(RmsProp::new(lrs[4])),
        Box::new(Adam::new(lrs[5])),
    ]
}

/// The optimizers' display names, in the order of [`optimizers`].
pub const OPTIMIZER_NAMES: [&str; 6] =
    ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam"];

/// The bowl f(x0, x1) = x0²/20 + x1², long along x0: steep across, flat along.
pub fn bowl<'t>(x: Var<'t>) -> tapegrad::Result<Var<'t>> {
    let scale = x.tape().constant_tensor(&Tensor::vector([0.05, 1.0]));
    Ok((x.powi(2) * scale).sum())
}

/// Each optimizer's path on [`bowl`] from (−7, 2), `steps` steps, with the learning
/// rates `lrs`: the gradient of every step from the tape.
pub fn optimizer_paths(lrs: [f64; 6], steps: usize) -> tapegrad::Result<Vec<Path2>> {
    let mut paths = Vec::new();
    for (name, mut optimizer) in OPTIMIZER_NAMES.iter().zip(optimizers(lrs)) {
        let mut params = Params::new();
        params.insert("x", Tensor::vector([-7.0, 2.0]))?;
        let mut trainer = Trainer::new();
        let mut points = vec![(-7.0, 2.0)];
        for _ in 0..steps {
            trainer.step(&mut params, optimizer.as_mut(), |p| bowl(p.get("x")?))?;
            let x = params.get("x")?.data();
            points.push((x[0], x[1]));
        }
        paths.push(Path2 {
            name: format!("{name} (lr {})", optimizer.learning_rate()),
            points,
        });
    }
    Ok(paths)
}

/// Each optimizer's loss curve on one task: fit y = sin(πx) on 200 points of [−1, 1]
/// with a 1-16-1 tanh network (the `minibatch` example's task), mini-batches of 16,
/// `epochs` epochs, the same start for all, learning rates `lrs`.
pub fn optimizer_losses(lrs: [f64; 6], epochs: usize) -> tapegrad::Result<Vec<Curve>> {
    use tapegrad::data::{Batches, Batching, Dataset};
    use tapegrad::nn::{init, Activation, Mlp};
    let n = 200;
    let x = linspace(-1.0, 1.0, n);
    let y: Vec<f64> = x.iter().map(|x| (std::f64::consts::PI * x).sin()).collect();
    let data = Dataset::new(Tensor::new(x, [n, 1])?, Tensor::new(y, [n, 1])?)?;
    let mut start = Params::new();
    let net = Mlp::builder(1)
        .layer(16, Activation::Tanh)
        .layer(1, Activation::Identity)
        .build(&mut start, &mut init::rng(1))?;
    let mut curves = Vec::new();
    for (name, mut optimizer) in OPTIMIZER_NAMES.iter().zip(optimizers(lrs)) {
        let mut params = start.clone();
        let mut batches = Batches::new(data.len(), Batching::MiniBatch(16), 7)?;
        let history = Trainer::new().fit(
            &mut params,
            optimizer.as_mut(),
            &data,
            &mut batches,
            epochs,
            |p, b| net.forward(p, b.inputs)?.try_mse(b.targets),
        )?;
        curves.push(Curve {
            name: format!("{name} (lr {})", optimizer.learning_rate()),
            x: (1..=epochs).map(|e| e as f64).collect(),
            loss: history.epochs,
        });
    }
    Ok(curves)
}

/// A loss curve: its name and one loss per step or epoch.
pub struct Curve {
    /// The legend's name.
    pub name: String,
    /// The x of each point.
    pub x: Vec<f64>,
    /// The loss at each point.
    pub loss: Vec<f64>,
}

/// Draws `curves` on a log-scale loss axis, one colour each, with a legend.
#[allow(clippy::too_many_arguments)]
fn loss_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    curves: &[Curve],
    colors: &[RGBColor],
    log_x: bool,
    legend: SeriesLabelPosition,
) -> PlotResult<()>
where
    DB::ErrorType: 'static,
{
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    let mut x_hi = 1.0f64;
    for c in curves {
        for (&x, &l) in c.x.iter().zip(&c.loss) {
            if l.is_finite() && l > 0.0 {
                lo = lo.min(l);
                hi = hi.max(l);
            }
            x_hi = x_hi.max(x);
        }
    }
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("loss (log scale)")
                .label_style((FONT, 13))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .max_light_lines(0)
                .bold_line_style(RGBColor(0xE8, 0xE8, 0xE8))
                .draw()?;
            for (c, &color) in curves.iter().zip(colors) {
                let points: Vec<(f64, f64)> =
                    c.x.iter()
                        .copied()
                        .zip(c.loss.iter().copied())
                        .filter(|(_, l)| l.is_finite() && *l > 0.0)
                        .collect();
                chart
                    .draw_series(std::iter::once(PathElement::new(points, line(color, 2))))?
                    .label(c.name.clone())
                    .legend(legend_line(color));
            }
            chart
                .configure_series_labels()
                .position(legend)
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(GREY)
                .draw()?;
        }};
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, (FONT, 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60);
    if log_x {
        draw!(builder.build_cartesian_2d((1.0..x_hi).log_scale(), (lo..hi).log_scale())?);
    } else {
        draw!(builder.build_cartesian_2d(0.0..x_hi, (lo..hi).log_scale())?);
    }
    Ok(())
}

/// The optimizers' picture: on the left their loss curves on one training task, on the
/// right each one's path on [`bowl`] over its contour lines, one small panel each.
pub fn optimizers_svg(task: &str, losses: &[Curve], paths: &[Path2]) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1400, 680)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(580);
        loss_panel(
            &left,
            task,
            "epoch",
            losses,
            &SERIES,
            false,
            SeriesLabelPosition::UpperRight,
        )?;
        let (title, right) = right.split_vertically(36);
        title.draw(&Text::new(
            "Paths on f(x0, x1) = x0²/20 + x1² from (−7, 2), 30 steps (×: the minimum)",
            (10, 10),
            (FONT, 18).into_font(),
        ))?;
        let frame = ((-7.8, 2.2), (-2.2, 2.2));
        let levels: Vec<(f64, f64)> = [0.25, 0.5, 1.0, 1.5, 2.0, 2.45]
            .iter()
            .map(|&c: &f64| ((20.0 * c).sqrt(), c.sqrt()))
            .collect();
        for (k, (path, area)) in paths.iter().zip(right.split_evenly((3, 2))).enumerate() {
            let mut chart = ChartBuilder::on(&area)
                .caption(&path.name, (FONT, 15))
                .margin(6)
                .x_label_area_size(22)
                .y_label_area_size(30)
                .build_cartesian_2d(frame.0 .0..frame.0 .1, frame.1 .0..frame.1 .1)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(6)
                .y_labels(5)
                .label_style((FONT, 11))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            draw_ellipses(&mut chart, &levels)?;
            chart.draw_series(std::iter::once(Cross::new((0.0, 0.0), 5, line(BLACK, 2))))?;
            draw_path(&mut chart, path, SERIES[k % SERIES.len()], frame)?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// The batching picture: the loss of each mode against epochs (left) and against
/// updates (right, log scale: stochastic makes 200 updates an epoch, batch 1).
pub fn batching_svg(by_epoch: &[Curve], by_update: &[Curve]) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(600);
        loss_panel(
            &left,
            "Loss against epochs",
            "epoch",
            by_epoch,
            &SERIES,
            false,
            SeriesLabelPosition::UpperRight,
        )?;
        loss_panel(
            &right,
            "Loss against updates",
            "updates (log scale)",
            by_update,
            &SERIES,
            true,
            SeriesLabelPosition::LowerLeft,
        )?;
        root.present()?;
    }
    Ok(svg)
}

/// A loss picture of one or more runs against epochs: the first curve red, the second
/// blue (drawn over the first).
pub fn loss_svg(title: &str, curves: &[Curve]) -> PlotResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        loss_panel(
            &root,
            title,
            "epoch",
            curves,
            &[SERIES[3], BLUE],
            false,
            SeriesLabelPosition::UpperRight,
        )?;
        root.present()?;
    }
    Ok(svg)
}

// ---------------------------------------------------------------------------------------
// Decision regions

/// A classifier's output on a grid and the data points over it.
pub struct Regions {
    /// The panel's title.
    pub title: String,
    /// The x range of the grid.
    pub x: (f64, f64),
    /// The y range of the grid.
    pub y: (f64, f64),
    /// Cells along each axis.
    pub n: usize,
    /// The probability of class 1 at each cell's centre, row by row from the bottom.
    pub p: Vec<f64>,
    /// The data: (x, y, class).
    pub points: Vec<(f64, f64, usize)>,
    /// The names of the two axes.
    pub axes: [&'static str; 2],
}

/// The centres of an `n`×`n` grid over the box, row by row from the bottom, as an
/// `[n·n, 2]` tensor for a network's input.
pub fn grid(x: (f64, f64), y: (f64, f64), n: usize) -> tapegrad::Result<Tensor> {
    let mut data = Vec::with_capacity(2 * n * n);
    for r in 0..n {
        for c in 0..n {
            data.push(x.0 + (x.1 - x.0) * (c as f64 + 0.5) / n as f64);
            data.push(y.0 + (y.1 - y.0) * (r as f64 + 0.5) / n as f64);
        }
    }
    Tensor::new(data, [n * n, 2])
}

/// The colour of cells the network gives about 0.5.
const UNDECIDED: RGBColor = RGBColor(0xE6, 0xE6, 0xE6);

const CLASS: [RGBColor; 2] = [RGBColor(0x30, 0x7E, 0xC7), RGBColor(0xE0, 0x6C, 0x1F)];

/// The colour of a cell with probability `p` of class 1: the class it is given, paler
/// the less sure the network is.
fn region_color(p: f64) -> RGBColor {
    if (p - 0.5).abs() < 0.005 {
        return UNDECIDED;
    }
    let class = usize::from(p >= 0.5);
    let sure = ((p - 0.5).abs() * 2.0).clamp(0.0, 1.0);
    // Quantised, so that runs of equal cells merge into one rectangle.
    let level = (sure * 5.0).round() / 5.0;
    let mix = 0.12 + 0.33 * level;
    let c = CLASS[class];
    let blend = |v: u8| (255.0 - (255.0 - f64::from(v)) * mix).round() as u8;
    RGBColor(blend(c.0), blend(c.1), blend(c.2))
}

/// Decision-region panels side by side: each cell coloured by the class the network
/// gives it, the boundary where the colour changes, the data points on top.
pub fn regions_svg(title: &str, panels: &[Regions]) -> PlotResult<String> {
    let mut svg = String::new();
    {
        // Each panel as wide as its box is, for a plot area 440 px high.
        let widths: Vec<u32> = panels
            .iter()
            .map(|p| {
                let aspect = (p.x.1 - p.x.0) / (p.y.1 - p.y.0);
                (440.0 * aspect).clamp(360.0, 900.0) as u32 + 80
            })
            .collect();
        let width = widths.iter().sum::<u32>().max(560);
        let root = SVGBackend::with_string(&mut svg, (width, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, mut rest) = root.split_vertically(64);
        top.draw(&Text::new(title, (16, 8), (FONT, 19).into_font()))?;
        // The legend: the two classes, and cells the network leaves at about 0.5.
        for (k, name) in ["class 0", "class 1"].iter().enumerate() {
            let x = 22 + 110 * k as i32;
            top.draw(&Circle::new((x, 46), 6, CLASS[k].filled()))?;
            top.draw(&Text::new(*name, (x + 12, 38), (FONT, 15).into_font()))?;
        }
        let x = 22 + 220;
        top.draw(&Rectangle::new(
            [(x - 6, 40), (x + 6, 52)],
            UNDECIDED.filled(),
        ))?;
        top.draw(&Text::new(
            "output ≈ 0.5 (paler: less sure)",
            (x + 12, 38),
            (FONT, 15).into_font(),
        ))?;
        for (panel, &w) in panels.iter().zip(&widths) {
            let (area, next) = rest.split_horizontally(w);
            rest = next;
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, (FONT, 17))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(50)
                .build_cartesian_2d(panel.x.0..panel.x.1, panel.y.0..panel.y.1)?;
            let (w, h) = (
                (panel.x.1 - panel.x.0) / panel.n as f64,
                (panel.y.1 - panel.y.0) / panel.n as f64,
            );
            let mut cells = Vec::new();
            for r in 0..panel.n {
                let row = &panel.p[r * panel.n..(r + 1) * panel.n];
                let mut c = 0;
                while c < panel.n {
                    let color = region_color(row[c]);
                    let mut end = c + 1;
                    while end < panel.n && region_color(row[end]) == color {
                        end += 1;
                    }
                    let y0 = panel.y.0 + h * r as f64;
                    cells.push(Rectangle::new(
                        [
                            (panel.x.0 + w * c as f64, y0),
                            (panel.x.0 + w * end as f64, y0 + h),
                        ],
                        color.filled(),
                    ));
                    c = end;
                }
            }
            chart.draw_series(cells)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(panel.axes[0])
                .y_desc(panel.axes[1])
                .label_style((FONT, 13))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()?;
            let radius = if panel.points.len() > 50 { 4 } else { 6 };
            chart.draw_series(panel.points.iter().map(|&(x, y, class)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), radius, CLASS[class.min(1)].filled())
                    + Circle::new((0, 0), radius, line(BLACK, 1))
            }))?;
        }
        root.present()?;
    }
    Ok(svg)
}
