//! Charts of the reports, each written as a PNG and an SVG file (`stem.png`, `stem.svg`).
//!
//! Plain data in, files out. Every chart has its title on top, the plot on the left and a legend
//! panel on the right (outside the data, so it never hides points or lines). Text is drawn with
//! DejaVu Sans, embedded in the binary through the `dejavu` crate and registered with plotters'
//! `ab_glyph` font backend, so no system font is needed. PNG files are encoded with the `png`
//! crate from plotters' RGB buffer; SVG files name the font family `sans-serif` and leave the
//! glyphs to the viewer.

use std::fmt::Display;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::PlotError;

/// Size in pixels (width, height) of [`embedding_scatter`]'s images.
pub const SCATTER_SIZE: (u32, u32) = (1000, 820);
/// Size in pixels (width, height) of [`gates_over_time`]'s and [`lines`]' images.
pub const CHART_SIZE: (u32, u32) = (1000, 600);

/// Names of the modality markers of [`embedding_scatter`], by marker index, with their shapes as
/// in the paper's Fig. 6: 0 RGB-D (circle), 1 skeleton (square), 2 point cloud (triangle),
/// 3 fused embedding (cross). The index order is `models::data::degrade::Sensor`'s.
pub const MODALITY_NAMES: [&str; 4] = ["RGB-D", "Skeleton", "Point cloud", "Fused"];

const FONT: &str = "sans-serif";
const TITLE_PX: u32 = 26;
const LABEL_PX: u32 = 19;
const TICK_PX: u32 = 16;
const LEGEND_PX: u32 = 17;

/// Registers the embedded DejaVu Sans with plotters once per process.
fn ensure_fonts() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let regular = dejavu::sans::regular();
        let bold = dejavu::sans::bold();
        for family in [FONT, "serif", "monospace"] {
            plotters::style::register_font(family, FontStyle::Normal, regular)
                .map_err(|_| "embedded DejaVu Sans could not be parsed".to_string())?;
            plotters::style::register_font(family, FontStyle::Bold, bold)
                .map_err(|_| "embedded DejaVu Sans Bold could not be parsed".to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(PlotError::Draw)
}

/// Colour of class `i` as RGB: a palette of 22 well-separated colours (Tableau 10 followed by
/// Kelly's colours of maximum contrast that differ from them), then golden-angle hues at three
/// lightness levels, so any number of classes gets distinct, deterministic colours.
pub fn class_color(i: usize) -> [u8; 3] {
    const BASE: [[u8; 3]; 22] = [
        [0x1f, 0x77, 0xb4],
        [0xff, 0x7f, 0x0e],
        [0x2c, 0xa0, 0x2c],
        [0xd6, 0x27, 0x28],
        [0x94, 0x67, 0xbd],
        [0x8c, 0x56, 0x4b],
        [0xe3, 0x77, 0xc2],
        [0x7f, 0x7f, 0x7f],
        [0xbc, 0xbd, 0x22],
        [0x17, 0xbe, 0xcf],
        [0xf3, 0xc3, 0x00],
        [0x87, 0x56, 0x92],
        [0xa1, 0xca, 0xf1],
        [0xbe, 0x00, 0x32],
        [0xc2, 0xb2, 0x80],
        [0x00, 0x88, 0x56],
        [0x00, 0x67, 0xa5],
        [0xf9, 0x93, 0x79],
        [0x60, 0x4e, 0x97],
        [0x88, 0x2d, 0x17],
        [0x8d, 0xb6, 0x00],
        [0x2b, 0x3d, 0x26],
    ];
    if i < BASE.len() {
        return BASE[i];
    }
    let k = i - BASE.len();
    let hue = (k as f64 * 137.507_764_050_037_85 + 15.0) % 360.0;
    let light = [0.45, 0.62, 0.32][(k / 7) % 3];
    let sat = [0.75, 0.6, 0.85][(k / 3) % 3];
    hsl_to_rgb(hue, sat, light)
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> [u8; 3] {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let q = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [q(r), q(g), q(b)]
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

fn draw_err<E: Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Marker shapes (scatter points, line-chart points, legend entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Cross,
}

impl Marker {
    /// The shape of modality marker `m` (paper Fig. 6: circle RGB-D, square skeleton, triangle
    /// point cloud; a cross for the fused embedding).
    fn of_modality(m: usize) -> Marker {
        [
            Marker::Circle,
            Marker::Square,
            Marker::Triangle,
            Marker::Cross,
        ][m]
    }

    fn of_series(i: usize) -> Marker {
        [
            Marker::Circle,
            Marker::Triangle,
            Marker::Square,
            Marker::Cross,
        ][i % 4]
    }
}

/// Draws a marker of half-size `r` pixels at `at` on any drawing area.
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    marker: Marker,
    at: CT::From,
    r: i32,
    color: RGBColor,
    alpha: f64,
) -> Result<(), PlotError>
where
    CT::From: Clone,
{
    let fill = color.mix(alpha).filled();
    match marker {
        Marker::Circle => area.draw(&Circle::new(at, r, fill)),
        Marker::Square => area.draw(
            &(EmptyElement::at(at) + Rectangle::new([(-r + 1, -r + 1), (r - 1, r - 1)], fill)),
        ),
        Marker::Triangle => area.draw(&TriangleMarker::new(at, r + 1, fill)),
        Marker::Cross => area.draw(&Cross::new(at, r - 1, color.mix(alpha).stroke_width(2))),
    }
    .map_err(draw_err)
}

/// One line of a legend panel.
struct LegendEntry {
    label: String,
    color: RGBColor,
    marker: Option<Marker>,
    line: bool,
}

/// Width in pixels the legend panel needs for these labels.
fn legend_width<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    heading: &[&str],
    labels: &[String],
) -> Result<u32, PlotError> {
    let font = TextStyle::from((FONT, LEGEND_PX).into_font());
    let mut w = 0;
    for l in heading
        .iter()
        .copied()
        .chain(labels.iter().map(|s| s.as_str()))
    {
        w = w.max(root.estimate_text_size(l, &font).map_err(draw_err)?.0);
    }
    Ok((w + 70).clamp(140, 360))
}

/// Draws a legend block in `area` (backend pixels relative to it) from `y`, returns the next `y`.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    heading: Option<&str>,
    entries: &[LegendEntry],
    mut y: i32,
) -> Result<i32, PlotError> {
    let font = (FONT, LEGEND_PX).into_font();
    let left = font.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    if let Some(h) = heading {
        let bold = (FONT, LEGEND_PX, FontStyle::Bold)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw_text(h, &bold, (12, y)).map_err(draw_err)?;
        y += 28;
    }
    for e in entries {
        if e.line {
            area.draw(&PathElement::new(
                vec![(14, y), (44, y)],
                e.color.stroke_width(3),
            ))
            .map_err(draw_err)?;
        }
        if let Some(m) = e.marker {
            draw_marker(area, m, (29, y), 6, e.color, 1.0)?;
        }
        let x = if e.line || e.marker.is_some() { 54 } else { 14 };
        area.draw_text(&e.label, &left, (x, y)).map_err(draw_err)?;
        y += 26;
    }
    Ok(y + 12)
}

/// A chart that can be drawn on any plotters backend.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>;
}

fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn io_err(path: &Path, e: impl Display) -> PlotError {
    PlotError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Draws `fig` twice and writes `stem.png` and `stem.svg`; creates the parent folder if needed.
fn write_chart<F: Figure>(fig: &F, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    ensure_fonts()?;
    let (w, h) = fig.size();
    if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }

    let png_path = with_suffix(stem, "png");
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        fig.draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    let file = std::fs::File::create(&png_path).map_err(|e| io_err(&png_path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| io_err(&png_path, e))?;
    writer
        .write_image_data(&buf)
        .map_err(|e| io_err(&png_path, e))?;
    writer.finish().map_err(|e| io_err(&png_path, e))?;

    let svg_path = with_suffix(stem, "svg");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        fig.draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    std::fs::write(&svg_path, svg).map_err(|e| io_err(&svg_path, e))?;
    Ok(vec![png_path, svg_path])
}

/// A short, readable tick label.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `lo..hi` padded by `frac` of the span on both sides (a unit span when degenerate).
fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let d = 0.5 * lo.abs().max(1.0);
        return (lo - d, hi + d);
    }
    (lo - frac * span, hi + frac * span)
}

/// Nice linear ticks: about `n` multiples of 1, 2 or 5 times a power of ten within `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo) / n.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return vec![lo];
    }
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Ticks of a log axis over `[lo, hi]` (0 < lo < hi): labelled ticks at 1-2-5 multiples of powers
/// of ten (only powers of ten over many decades, every digit over a narrow range, nice linear
/// ticks within a single digit step), light grid lines at every digit.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let with = |mantissas: &[f64]| -> Vec<f64> {
        let mut v = Vec::new();
        for e in e0..=e1 {
            for &m in mantissas {
                let t = m * 10f64.powi(e);
                if t >= lo && t <= hi {
                    v.push(t);
                }
            }
        }
        v
    };
    let digits: Vec<f64> = (1..10).map(f64::from).collect();
    let light = with(&digits);
    let mut bold = with(&[1.0, 2.0, 5.0]);
    if bold.len() > 12 {
        bold = with(&[1.0]);
    } else if bold.len() < 3 {
        bold = light.clone();
        if bold.len() < 2 {
            bold = linear_ticks(lo, hi, 5);
        }
    }
    (bold, light)
}

fn check_title(title: &str) -> Result<(), PlotError> {
    if title.contains(['\n', '\r']) {
        return Err(PlotError::invalid("chart title must be one line"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fig. 6: embedding scatter
// ---------------------------------------------------------------------------------------------

struct Scatter<'a> {
    points: &'a [[f64; 2]],
    classes: &'a [usize],
    markers: &'a [usize],
    title: &'a str,
}

/// Most classes listed one by one in the scatter's legend; above it the legend only says how
/// many classes the colours stand for.
const MAX_CLASS_LEGEND: usize = 20;

impl Figure for Scatter<'_> {
    fn size(&self) -> (u32, u32) {
        SCATTER_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let mut modalities: Vec<usize> = self.markers.to_vec();
        modalities.sort_unstable();
        modalities.dedup();
        let mut classes: Vec<usize> = self.classes.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let class_labels: Vec<String> = if classes.len() <= MAX_CLASS_LEGEND {
            classes.iter().map(|c| format!("class {c}")).collect()
        } else {
            vec![format!("{} classes", classes.len())]
        };
        let modality_labels: Vec<String> = modalities
            .iter()
            .map(|&m| MODALITY_NAMES[m].to_string())
            .collect();
        let all_labels: Vec<String> = class_labels
            .iter()
            .chain(&modality_labels)
            .cloned()
            .collect();

        let body = root
            .margin(10, 0, 0, 0)
            .titled(self.title, (FONT, TITLE_PX).into_font())
            .map_err(draw_err)?;
        let lw = legend_width(root, &["Modality", "Class (colour)"], &all_labels)?;
        let (w, _) = body.dim_in_pixel();
        let (plot, legend) = body.split_horizontally(w.saturating_sub(lw));

        // Equal spans on both axes: t-SNE distances are isotropic.
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in self.points {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            y0 = y0.min(p[1]);
            y1 = y1.max(p[1]);
        }
        let half = 0.5 * (x1 - x0).max(y1 - y0).max(1e-12) * 1.06;
        let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_left(16)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d((cx - half)..(cx + half), (cy - half)..(cy + half))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("t-SNE 1")
            .y_desc("t-SNE 2")
            .axis_desc_style((FONT, LABEL_PX))
            .draw()
            .map_err(draw_err)?;
        let area = chart.plotting_area();
        area.draw(&Rectangle::new(
            [(cx - half, cy - half), (cx + half, cy + half)],
            BLACK.stroke_width(1),
        ))
        .map_err(draw_err)?;
        let r = if self.points.len() > 2000 { 3 } else { 5 };
        for ((p, &c), &m) in self.points.iter().zip(self.classes).zip(self.markers) {
            draw_marker(
                area,
                Marker::of_modality(m),
                (p[0], p[1]),
                r,
                rgb(class_color(c)),
                0.8,
            )?;
        }

        let gray = RGBColor(70, 70, 70);
        let entries: Vec<LegendEntry> = modalities
            .iter()
            .map(|&m| LegendEntry {
                label: MODALITY_NAMES[m].to_string(),
                color: gray,
                marker: Some(Marker::of_modality(m)),
                line: false,
            })
            .collect();
        let y = draw_legend(&legend, Some("Modality"), &entries, 24)?;
        let class_entries: Vec<LegendEntry> = if classes.len() <= MAX_CLASS_LEGEND {
            classes
                .iter()
                .zip(&class_labels)
                .map(|(&c, l)| LegendEntry {
                    label: l.clone(),
                    color: rgb(class_color(c)),
                    marker: Some(Marker::Square),
                    line: false,
                })
                .collect()
        } else {
            vec![LegendEntry {
                label: class_labels[0].clone(),
                color: gray,
                marker: None,
                line: false,
            }]
        };
        draw_legend(&legend, Some("Class (colour)"), &class_entries, y)?;
        Ok(())
    }
}

/// The embedding scatter of the paper's Fig. 6: one point per row of `points` (e.g. a t-SNE of
/// the unified embedding), coloured by `classes[i]` ([`class_color`], distinct for any number of
/// classes) and shaped by `markers[i]`, the modality the embedding came from (see
/// [`MODALITY_NAMES`]: 0 RGB-D circle, 1 skeleton square, 2 point cloud triangle, 3 fused cross).
/// The legend lists the modalities present and, for up to 20 classes, the classes.
///
/// Writes `stem.png` and `stem.svg` ([`SCATTER_SIZE`] pixels) and returns their paths. Errors for
/// no points, mismatched lengths, a non-finite coordinate, a marker above 3 or a multi-line title.
pub fn embedding_scatter(
    points: &[[f64; 2]],
    classes: &[usize],
    markers: &[usize],
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if points.is_empty() {
        return Err(PlotError::invalid("embedding_scatter: no points"));
    }
    if classes.len() != points.len() || markers.len() != points.len() {
        return Err(PlotError::invalid(format!(
            "embedding_scatter: {} points, {} classes, {} markers",
            points.len(),
            classes.len(),
            markers.len()
        )));
    }
    if let Some(i) = points
        .iter()
        .position(|p| !(p[0].is_finite() && p[1].is_finite()))
    {
        return Err(PlotError::invalid(format!(
            "embedding_scatter: point {i} is not finite ({:?})",
            points[i]
        )));
    }
    if let Some(&m) = markers.iter().find(|&&m| m >= MODALITY_NAMES.len()) {
        return Err(PlotError::invalid(format!(
            "embedding_scatter: marker {m} (0 RGB-D, 1 skeleton, 2 point cloud, 3 fused)"
        )));
    }
    check_title(title)?;
    write_chart(
        &Scatter {
            points,
            classes,
            markers,
            title,
        },
        stem,
    )
}

// ---------------------------------------------------------------------------------------------
// Line charts: Fig. 7 (gates over time), Fig. 4 (accuracy vs degradation), loss curves
// ---------------------------------------------------------------------------------------------

struct LineChart<'a> {
    series: Vec<(&'a str, Vec<(f64, f64)>)>,
    x_label: &'a str,
    y_label: &'a str,
    title: &'a str,
    log_y: bool,
    /// Fixed y range (gates: [0, 1]), else fitted to the data.
    y_range: Option<(f64, f64)>,
    /// Vertical dashed line at this x, with this label.
    event: Option<(f64, &'a str)>,
    /// Point markers on the lines (off for long series).
    markers: bool,
}

impl LineChart<'_> {
    fn x_range(&self) -> (f64, f64) {
        let mut lo = f64::MAX;
        let mut hi = f64::MIN;
        for (_, s) in &self.series {
            for &(x, _) in s {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        if let Some((e, _)) = self.event {
            lo = lo.min(e);
            hi = hi.max(e);
        }
        padded(lo, hi, 0.03)
    }

    fn y_data_range(&self) -> (f64, f64) {
        let mut lo = f64::MAX;
        let mut hi = f64::MIN;
        for (_, s) in &self.series {
            for &(_, y) in s {
                lo = lo.min(y);
                hi = hi.max(y);
            }
        }
        (lo, hi)
    }

    fn draw_on<DB, Y>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
        y_lo: f64,
        y_hi: f64,
    ) -> Result<(), PlotError>
    where
        DB: DrawingBackend,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let xf = |v: &f64| tick(*v);
        let yf = |v: &f64| tick(*v);
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .max_light_lines(4)
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .label_style((FONT, TICK_PX))
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .axis_desc_style((FONT, LABEL_PX))
            .draw()
            .map_err(draw_err)?;
        if let Some((e, label)) = self.event {
            let dark = RGBColor(60, 60, 60);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(e, y_lo), (e, y_hi)],
                    8,
                    6,
                    dark.stroke_width(2),
                ))
                .map_err(draw_err)?;
            if !label.is_empty() {
                let area = chart.plotting_area();
                let (px, _) = area.map_coordinate(&(e, y_hi));
                let ax0 = area.get_pixel_range().0.start;
                let font = (FONT, TICK_PX)
                    .into_font()
                    .color(&dark)
                    .pos(Pos::new(HPos::Left, VPos::Top));
                area.strip_coord_spec()
                    .draw_text(label, &font, (px - ax0 + 6, 6))
                    .map_err(draw_err)?;
            }
        }
        for (i, (_, pts)) in self.series.iter().enumerate() {
            let color = rgb(class_color(i));
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(3)))
                .map_err(draw_err)?;
            if self.markers {
                let area = chart.plotting_area();
                for &p in pts {
                    draw_marker(area, Marker::of_series(i), p, 5, color, 1.0)?;
                }
            }
        }
        Ok(())
    }
}

impl Figure for LineChart<'_> {
    fn size(&self) -> (u32, u32) {
        CHART_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let labels: Vec<String> = self.series.iter().map(|(n, _)| n.to_string()).collect();
        let body = root
            .margin(10, 0, 0, 0)
            .titled(self.title, (FONT, TITLE_PX).into_font())
            .map_err(draw_err)?;
        let lw = legend_width(root, &[], &labels)?;
        let (w, _) = body.dim_in_pixel();
        let (plot, legend) = body.split_horizontally(w.saturating_sub(lw));

        let (x0, x1) = self.x_range();
        let (dlo, dhi) = self.y_data_range();
        let mut builder = ChartBuilder::on(&plot);
        builder
            .margin(12)
            .margin_right(20)
            .x_label_area_size(56)
            .y_label_area_size(78);
        if self.log_y {
            let (lo, hi) = if dhi / dlo < 1.0 + 1e-9 {
                (dlo / 2.0, dhi * 2.0)
            } else {
                let f = (dhi / dlo).powf(0.04);
                (dlo / f, dhi * f)
            };
            let (bold, light) = log_ticks(lo, hi);
            let mut chart = builder
                .build_cartesian_2d(
                    x0..x1,
                    (lo..hi)
                        .log_scale()
                        .with_key_points(bold)
                        .with_light_points(light),
                )
                .map_err(draw_err)?;
            self.draw_on(&mut chart, lo, hi)?;
        } else {
            let (lo, hi) = self.y_range.unwrap_or_else(|| padded(dlo, dhi, 0.07));
            let mut chart = builder
                .build_cartesian_2d(x0..x1, lo..hi)
                .map_err(draw_err)?;
            self.draw_on(&mut chart, lo, hi)?;
        }

        let entries: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, (n, _))| LegendEntry {
                label: n.to_string(),
                color: rgb(class_color(i)),
                marker: self.markers.then(|| Marker::of_series(i)),
                line: true,
            })
            .collect();
        draw_legend(&legend, None, &entries, 40)?;
        Ok(())
    }
}

fn check_series_names<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), PlotError> {
    for n in names {
        if n.contains(['\n', '\r']) {
            return Err(PlotError::invalid(format!(
                "series name {n:?} must be one line"
            )));
        }
    }
    Ok(())
}

/// Gate values over time, as in the paper's Fig. 7: one line per series (e.g. `("G_R", ..)`,
/// `("G_S", ..)`, `("G_P", ..)`), value `k` of a series plotted at frame `k`, y axis [0, 1]
/// (widened if a value lies outside), and a dashed vertical line labelled "sensor dropped" at
/// `event_at` (the frame where a modality was removed), if given.
///
/// Writes `stem.png` and `stem.svg` ([`CHART_SIZE`] pixels) and returns their paths. Errors for
/// no series, an empty series, a non-finite value or `event_at`, or a multi-line title or name.
pub fn gates_over_time(
    series: &[(String, Vec<f64>)],
    event_at: Option<f64>,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if series.is_empty() {
        return Err(PlotError::invalid("gates_over_time: no series"));
    }
    for (name, v) in series {
        if v.is_empty() {
            return Err(PlotError::invalid(format!(
                "gates_over_time: series {name:?} is empty"
            )));
        }
        if let Some(k) = v.iter().position(|g| !g.is_finite()) {
            return Err(PlotError::invalid(format!(
                "gates_over_time: series {name:?} value {k} is not finite ({})",
                v[k]
            )));
        }
    }
    if let Some(e) = event_at {
        if !e.is_finite() {
            return Err(PlotError::invalid(format!(
                "gates_over_time: event_at {e} is not finite"
            )));
        }
    }
    check_title(title)?;
    check_series_names(series.iter().map(|(n, _)| n))?;
    let lo = series
        .iter()
        .flat_map(|(_, v)| v)
        .fold(0.0f64, |a, &b| a.min(b));
    let hi = series
        .iter()
        .flat_map(|(_, v)| v)
        .fold(1.0f64, |a, &b| a.max(b));
    let longest = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let chart = LineChart {
        series: series
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str(),
                    v.iter().enumerate().map(|(k, &g)| (k as f64, g)).collect(),
                )
            })
            .collect(),
        x_label: "frame",
        y_label: "gate value G_M",
        title,
        log_y: false,
        y_range: Some((lo - 0.02 * (hi - lo), hi + 0.06 * (hi - lo))),
        event: event_at.map(|e| (e, "sensor dropped")),
        markers: longest <= 60,
    };
    write_chart(&chart, stem)
}

/// A line chart of `(x, y)` series with a legend: accuracy versus skeleton noise sigma or
/// point-cloud sparsity (the paper's Fig. 4), loss curves (`log_y = true` for a logarithmic y
/// axis). Points are marked (circle, triangle, square, cross in turn) when every series has at
/// most 60 of them.
///
/// Writes `stem.png` and `stem.svg` ([`CHART_SIZE`] pixels) and returns their paths. Errors for
/// no series, an empty series, a non-finite coordinate, `y <= 0` with `log_y`, or a multi-line
/// title or name.
pub fn lines(
    series: &[(String, Vec<(f64, f64)>)],
    x_label: &str,
    y_label: &str,
    title: &str,
    log_y: bool,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    if series.is_empty() {
        return Err(PlotError::invalid("lines: no series"));
    }
    for (name, v) in series {
        if v.is_empty() {
            return Err(PlotError::invalid(format!(
                "lines: series {name:?} is empty"
            )));
        }
        if let Some(k) = v.iter().position(|p| !(p.0.is_finite() && p.1.is_finite())) {
            return Err(PlotError::invalid(format!(
                "lines: series {name:?} point {k} is not finite ({:?})",
                v[k]
            )));
        }
        if log_y {
            if let Some(k) = v.iter().position(|p| p.1 <= 0.0) {
                return Err(PlotError::invalid(format!(
                    "lines: series {name:?} point {k} has y = {} <= 0 on a log axis",
                    v[k].1
                )));
            }
        }
    }
    check_title(title)?;
    check_series_names(series.iter().map(|(n, _)| n))?;
    if x_label.contains(['\n', '\r']) || y_label.contains(['\n', '\r']) {
        return Err(PlotError::invalid("lines: axis labels must be one line"));
    }
    let longest = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let chart = LineChart {
        series: series
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect(),
        x_label,
        y_label,
        title,
        log_y,
        y_range: None,
        event: None,
        markers: longest <= 60,
    };
    write_chart(&chart, stem)
}
