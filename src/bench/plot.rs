//! The recall–throughput plot: recall@10 against one-thread queries per second (log scale),
//! one series per system and family, the Pareto front over all rows marked, as SVG and PNG.
//!
//! Text is drawn with an embedded subset of DejaVu Sans (`font/`, licence beside it), so the
//! PNG renders the same on a machine without system fonts.

use super::row::{io_err, Row};
use super::BenchError;
use crate::atomic::write_atomic;
use crate::Error;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Plot width in pixels.
pub const PLOT_WIDTH: u32 = 1100;
/// Plot height in pixels.
pub const PLOT_HEIGHT: u32 = 700;

static FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> Result<(), Error> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(BenchError::Plot("the embedded plot font does not load".into()).into())
    }
}

/// Colours of the series (Tableau 10), cycled.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One plotted series: its rows' points (qps, recall@10).
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    marker: usize,
}

/// The point of a row, if it has a positive one-thread qps and a recall@10.
fn point(r: &Row) -> Option<(f64, f64)> {
    match (r.qps_1_thread, r.recall_at_10) {
        (Some(q), Some(rec)) if q > 0.0 && q.is_finite() && rec.is_finite() => Some((q, rec)),
        _ => None,
    }
}

/// The points no other point beats on both axes (higher qps and higher recall), by
/// increasing qps.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for p in sorted {
        if p.1 > best {
            front.push(p);
            best = p.1;
        }
    }
    front.reverse();
    front
}

/// Whether the rows come from more than one data set.
fn several_datasets(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.dataset != rows[0].dataset)
}

/// One series per system and family (and data set, when the rows hold several).
fn series_of(rows: &[Row]) -> Vec<Series> {
    let several = several_datasets(rows);
    let mut by: BTreeMap<(String, String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        if let Some(p) = point(r) {
            let dataset = if several {
                r.dataset.clone()
            } else {
                String::new()
            };
            by.entry((r.system.clone(), r.family.clone(), dataset))
                .or_default()
                .push(p);
        }
    }
    let mut systems: Vec<String> = by.keys().map(|(s, _, _)| s.clone()).collect();
    systems.dedup();
    by.into_iter()
        .enumerate()
        .map(|(i, ((system, family, dataset), points))| Series {
            name: if dataset.is_empty() {
                format!("{system} / {family}")
            } else {
                format!("{system} / {family} ({dataset})")
            },
            points,
            colour: PALETTE[i % PALETTE.len()],
            marker: systems.iter().position(|s| *s == system).unwrap_or(0),
        })
        .collect()
}

/// The Pareto front of each data set's rows.
fn fronts(rows: &[Row]) -> Vec<Vec<(f64, f64)>> {
    let mut by: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        if let Some(p) = point(r) {
            by.entry(r.dataset.as_str()).or_default().push(p);
        }
    }
    by.values().map(|pts| pareto_front(pts)).collect()
}

fn title(rows: &[Row]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in rows {
        let mut p = if r.dataset.is_empty() {
            "data set".to_string()
        } else {
            r.dataset.clone()
        };
        if let Some(n) = r.n_items {
            p.push_str(&format!(", n = {}", thousands(n)));
        }
        if let Some(d) = r.dim {
            p.push_str(&format!(", dim = {d}"));
        }
        if let Some(k) = r.k {
            p.push_str(&format!(", k = {k}"));
        }
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    match parts.len() {
        0 => "recall@10 against queries per second (no rows)".into(),
        1 => format!("recall@10 vs queries/s — {}", parts[0]),
        n => format!("recall@10 vs queries/s — {n} data sets (named in the legend)"),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn qps_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    BenchError::Plot(e.to_string()).into()
}

/// Draws the chart on any plotters backend.
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rows: &[Row]) -> Result<(), Error>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let series = series_of(rows);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let (xmin, xmax) = if all.is_empty() {
        (1.0, 10.0)
    } else {
        let lo = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(|p| p.0).fold(0.0, f64::max);
        (lo / 1.4, hi * 1.4)
    };
    let ymin = all
        .iter()
        .map(|p| p.1)
        .fold(1.0f64, f64::min)
        .clamp(0.0, 1.0);
    let ylo = ((ymin - 0.03) * 10.0).floor().max(0.0) / 10.0;
    let title = title(rows);
    // A long title gets a smaller font rather than running off the image.
    let title_size = (22.0 * (80.0 / title.chars().count().max(1) as f64).min(1.0)).max(12.0);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, title_size))
        .margin(18)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), ylo..1.005f64)
        .map_err(plot_err)?;
    let fmt_x = |v: &f64| qps_label(*v);
    let fmt_y = |v: &f64| format!("{v:.2}");
    chart
        .configure_mesh()
        .x_desc("queries per second, one thread (log scale)")
        .y_desc("recall@10")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .y_max_light_lines(1)
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(plot_err)?;

    for s in &series {
        let colour = s.colour;
        // The line joins the series' own Pareto-optimal points; every point gets a marker.
        let line = pareto_front(&s.points);
        let anno = chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(plot_err)?;
        match s.marker % 4 {
            0 => {
                anno.label(s.name.clone()).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-12, 0), (12, 0)], colour.stroke_width(2))
                        + Circle::new((0, 0), 5, colour.filled())
                });
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 5, colour.filled())))
                    .map_err(plot_err)?;
            }
            1 => {
                anno.label(s.name.clone()).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-12, 0), (12, 0)], colour.stroke_width(2))
                        + TriangleMarker::new((0, 0), 6, colour.filled())
                });
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 6, colour.filled())),
                    )
                    .map_err(plot_err)?;
            }
            2 => {
                anno.label(s.name.clone()).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-12, 0), (12, 0)], colour.stroke_width(2))
                        + Rectangle::new([(-4, -4), (4, 4)], colour.filled())
                });
                chart
                    .draw_series(s.points.iter().map(|&p| {
                        EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], colour.filled())
                    }))
                    .map_err(plot_err)?;
            }
            _ => {
                anno.label(s.name.clone()).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-12, 0), (12, 0)], colour.stroke_width(2))
                        + Cross::new((0, 0), 5, colour.stroke_width(2))
                });
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&p| Cross::new(p, 5, colour.stroke_width(2))),
                    )
                    .map_err(plot_err)?;
            }
        }
    }

    for (i, front) in fronts(rows).into_iter().enumerate() {
        let anno = chart
            .draw_series(DashedLineSeries::new(
                front.clone(),
                7,
                5,
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
        if i == 0 {
            anno.label(if several_datasets(rows) {
                "Pareto front (all rows of a data set)"
            } else {
                "Pareto front (all rows)"
            })
            .legend(|(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(-12, 0), (-5, 0)], BLACK.stroke_width(1))
                    + PathElement::new(vec![(5, 0), (12, 0)], BLACK.stroke_width(1))
                    + Circle::new((0, 0), 8, BLACK.stroke_width(1))
            });
        }
        chart
            .draw_series(
                front
                    .iter()
                    .map(|&p| Circle::new(p, 9, BLACK.stroke_width(1))),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .margin(12)
        .legend_area_size(34)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.88))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The plot as an SVG document.
pub fn render_svg(rows: &[Row]) -> Result<String, Error> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        draw(&root, rows)?;
    }
    Ok(svg)
}

/// The plot as a PNG image (RGB, [`PLOT_WIDTH`] × [`PLOT_HEIGHT`]).
pub fn render_png(rows: &[Row]) -> Result<Vec<u8>, Error> {
    register_font()?;
    let (w, h) = (PLOT_WIDTH, PLOT_HEIGHT);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, rows)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(plot_err)?;
        writer.write_image_data(&rgb).map_err(plot_err)?;
    }
    Ok(png_bytes)
}

/// Plots recall@10 against one-thread queries per second for `rows` (any systems), writing
/// `path` with its extension replaced by `.svg` and by `.png` (both, atomically), and returns
/// the two paths. Rows without a positive `qps_1_thread` or without `recall_at_10` are left
/// out. Each system+family (and data set, when the rows hold several) is one series with its
/// own colour and a marker shape per system; its line joins its own Pareto-optimal points;
/// the Pareto front over all rows of a data set is a dashed black line with rings.
pub fn plot_rows(rows: &[Row], path: &Path) -> Result<Vec<PathBuf>, Error> {
    let svg_path = path.with_extension("svg");
    let png_path = path.with_extension("png");
    let svg = render_svg(rows)?;
    write_atomic(&svg_path, svg.as_bytes()).map_err(|e| io_err(&svg_path, e))?;
    let png_bytes = render_png(rows)?;
    write_atomic(&png_path, &png_bytes).map_err(|e| io_err(&png_path, e))?;
    Ok(vec![svg_path, png_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_keeps_only_undominated_points() {
        let pts = [
            (100.0, 0.99),
            (1000.0, 0.9),
            (500.0, 0.8),
            (2000.0, 0.5),
            (50.0, 0.95),
        ];
        assert_eq!(
            pareto_front(&pts),
            vec![(100.0, 0.99), (1000.0, 0.9), (2000.0, 0.5)]
        );
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn labels() {
        assert_eq!(qps_label(1500.0), "1.5k");
        assert_eq!(qps_label(20000.0), "20k");
        assert_eq!(qps_label(50.0), "50");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
