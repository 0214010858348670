//! SVG plots per workload: the latency percentile curve and throughput over time, one
//! colour per label. SVG only, so no font or image libraries are needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::table::format_value;
use super::ByLabel;
use crate::load::output::SecondPoint;
use crate::load::stats::LatencySummary;

const PLOT_SIZE: (u32, u32) = (900, 540);
/// The percentile axis spans 1/(1-q) from 1 (q = 0) to 10^5 (q = 0.99999).
const PERCENTILE_AXIS_MAX: f64 = 1e5;
const DASH_SIZE: u32 = 6;
const DASH_SPACING: u32 = 4;

/// Curve points as (1/(1-q), latency ms); the x of the plot's log-scaled percentile axis.
pub fn latency_points(summary: &LatencySummary) -> Vec<(f64, f64)> {
    summary
        .curve
        .iter()
        .filter(|p| p.quantile < 1.0)
        .map(|p| (1.0 / (1.0 - p.quantile), p.latency_us as f64 / 1_000.0))
        .collect()
}

/// Axis label for x = 1/(1-q): the percentile 100·q, e.g. 10 -> "90%", 1000 -> "99.9%".
pub fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let text = format!("{percent:.5}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// One plotted line: solid or dashed, coloured by its label.
struct Line {
    name: String,
    label_index: usize,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn colour(index: usize) -> RGBColor {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
    ];
    COLOURS[index % COLOURS.len()]
}

/// Ack (solid) and end-to-end (dashed) latency by percentile, log-log.
pub fn latency(path: &Path, workload: &str, by_label: &ByLabel) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for (label_index, (label, result)) in by_label.iter().enumerate() {
        for (kind, summary, dashed) in [
            ("ack", &result.latency.ack, false),
            ("e2e", &result.latency.e2e, true),
        ] {
            if let Some(summary) = summary {
                lines.push(Line {
                    name: format!("{label} {kind}"),
                    label_index,
                    dashed,
                    points: latency_points(summary),
                });
            }
        }
    }
    let all_ms = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.1));
    let (low_ms, high_ms) = all_ms.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low_ms, high_ms) = if high_ms > 0.0 {
        ((low_ms * 0.8).max(0.001), high_ms * 1.25)
    } else {
        (0.001, 1.0)
    };

    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{workload}: latency by percentile"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (1.0..PERCENTILE_AXIS_MAX).log_scale(),
            (low_ms..high_ms).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format_value(Some(*y)))
        .draw()
        .map_err(plot_error)?;
    draw_lines(chart, root, lines)
}

/// Produce (solid) and consume (dashed) MB/s for each measured second.
pub fn throughput(path: &Path, workload: &str, by_label: &ByLabel) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for (label_index, (label, result)) in by_label.iter().enumerate() {
        let per_second = |rate: fn(&SecondPoint) -> f64| {
            result
                .series
                .iter()
                .map(|p| (p.second as f64, rate(p)))
                .collect()
        };
        lines.push(Line {
            name: format!("{label} produce"),
            label_index,
            dashed: false,
            points: per_second(|p| p.produce_mb_per_second),
        });
        if result.series.iter().any(|p| p.consume_records > 0) {
            lines.push(Line {
                name: format!("{label} consume"),
                label_index,
                dashed: true,
                points: per_second(|p| p.consume_mb_per_second),
            });
        }
    }
    let points = || lines.iter().flat_map(|line| line.points.iter());
    let seconds_max = points().map(|p| p.0).fold(1.0f64, f64::max);
    let mb_per_second_max = points().map(|p| p.1).fold(0.0f64, f64::max).max(1.0) * 1.1;

    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{workload}: throughput over time"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds_max, 0.0..mb_per_second_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measurement")
        .y_desc("MB/s")
        .draw()
        .map_err(plot_error)?;
    draw_lines(chart, root, lines)
}

/// Ack (solid) and end-to-end (dashed) p99 of each measured second, log-scaled: whether the
/// tail grows over a long run (the soak workload).
pub fn tail_over_time(path: &Path, workload: &str, by_label: &ByLabel) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for (label_index, (label, result)) in by_label.iter().enumerate() {
        for (kind, pick, dashed) in [
            (
                "ack p99",
                (|p: &SecondPoint| p.ack_p99_us) as fn(&SecondPoint) -> Option<u64>,
                false,
            ),
            ("e2e p99", |p: &SecondPoint| p.e2e_p99_us, true),
        ] {
            let points: Vec<(f64, f64)> = result
                .series
                .iter()
                .filter_map(|p| pick(p).map(|us| (p.second as f64, us as f64 / 1_000.0)))
                .collect();
            if !points.is_empty() {
                lines.push(Line {
                    name: format!("{label} {kind}"),
                    label_index,
                    dashed,
                    points,
                });
            }
        }
    }
    let points = || lines.iter().flat_map(|line| line.points.iter());
    let seconds_max = points().map(|p| p.0).fold(1.0f64, f64::max);
    let high_ms = points().map(|p| p.1).fold(0.0f64, f64::max).max(1.0) * 1.5;
    let low_ms = points()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        .min(high_ms / 10.0)
        / 1.5;

    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{workload}: p99 latency of each second"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds_max, (low_ms.max(0.001)..high_ms).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measurement")
        .y_desc("latency (ms)")
        .y_label_formatter(&|v| format_value(Some(*v)))
        .draw()
        .map_err(plot_error)?;
    draw_lines(chart, root, lines)
}

/// Draws the lines with a legend and writes the file.
fn draw_lines<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    root: DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    lines: Vec<Line>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for line in lines {
        let style = colour(line.label_index).stroke_width(2);
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(
                line.points,
                DASH_SIZE,
                DASH_SPACING,
                style,
            ))
        } else {
            chart.draw_series(LineSeries::new(line.points, style))
        };
        series
            .map_err(plot_error)?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::CurvePoint;

    #[test]
    fn percentile_axis_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1_000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn curve_points_map_quantiles_to_the_log_axis() {
        let summary = LatencySummary {
            count: 1,
            mean_us: 0.0,
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            p9999_us: 0,
            max_us: 0,
            curve: vec![
                CurvePoint {
                    quantile: 0.0,
                    latency_us: 500,
                },
                CurvePoint {
                    quantile: 0.99,
                    latency_us: 2_000,
                },
                CurvePoint {
                    quantile: 1.0,
                    latency_us: 9_000,
                },
            ],
        };
        let points = latency_points(&summary);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0], (1.0, 0.5));
        assert!((points[1].0 - 100.0).abs() < 1e-9);
        assert_eq!(points[1].1, 2.0);
    }
}
