//! PNG bar chart of a comparison run: median tokens/s and peak RSS per
//! case and implementation, with the min-max spread as a whisker.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::results::{ImplResult, Results};
use crate::runner::Implementation;
use crate::stats::Summary;

/// Error of drawing or writing the chart.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart {path}: {message}")]
pub struct ChartError {
    pub path: String,
    pub message: String,
}

/// One case's bars: its label and each implementation's result.
struct Group<'a> {
    label: String,
    results: Vec<&'a ImplResult>,
}

fn color(implementation: Implementation) -> RGBColor {
    match implementation {
        Implementation::Rnnlm => RGBColor(31, 119, 180),
        Implementation::Pytorch => RGBColor(255, 127, 14),
        Implementation::Numpy => RGBColor(44, 160, 44),
    }
}

/// Draws the chart of `results` into the PNG file `path`.
pub fn draw(results: &Results, path: &Path) -> Result<(), ChartError> {
    let error = |message: String| ChartError {
        path: path.display().to_string(),
        message,
    };
    let groups: Vec<Group> = results
        .cases
        .iter()
        .map(|case| Group {
            label: case.label(),
            results: case.impls.iter().collect(),
        })
        .collect();

    let slots = slot_count(&groups);
    let width = (160 + 36 * slots as u32).max(800);
    let root = BitMapBackend::new(path, (width, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(e.to_string()))?;

    let (top, bottom) = root.split_vertically(450);
    draw_panel(
        &top,
        "tokens/s (bar: median, whisker: min-max)",
        "tokens/s",
        &groups,
        |result| &result.tokens_per_sec,
    )
    .map_err(|e| error(e.to_string()))?;
    draw_panel(
        &bottom,
        "peak RSS per process (bar: median, whisker: min-max)",
        "MiB",
        &groups,
        |result| &result.peak_rss_mb,
    )
    .map_err(|e| error(e.to_string()))?;
    root.present().map_err(|e| error(e.to_string()))
}

/// Bars of all groups plus one empty slot between neighbouring groups.
fn slot_count(groups: &[Group]) -> usize {
    let bars: usize = groups.iter().map(|group| group.results.len()).sum();
    (bars + groups.len().saturating_sub(1)).max(1)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    y_label: &str,
    groups: &[Group],
    value: impl Fn(&ImplResult) -> &Summary,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let slots = slot_count(groups);
    let y_max = groups
        .iter()
        .flat_map(|group| &group.results)
        .map(|result| value(result).max)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.15;

    // The slot under each group's label: its middle bar.
    let mut label_slots = Vec::new();
    let mut next = 0i32;
    for group in groups {
        label_slots.push((next + group.results.len() as i32 / 2, group.label.clone()));
        next += group.results.len() as i32 + 1;
    }

    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..slots as i32).into_segmented(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots)
        .x_label_formatter(&|slot| match slot {
            SegmentValue::CenterOf(slot) => label_slots
                .iter()
                .find(|(at, _)| at == slot)
                .map_or(String::new(), |(_, label)| label.clone()),
            _ => String::new(),
        })
        .y_label_formatter(&|value| format!("{value:.0}"))
        .y_desc(y_label)
        .draw()?;

    let implementations: Vec<Implementation> = {
        let mut all: Vec<Implementation> = groups
            .iter()
            .flat_map(|group| group.results.iter().map(|result| result.implementation))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    for implementation in implementations {
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        let mut slot = 0i32;
        for group in groups {
            for result in &group.results {
                if result.implementation == implementation {
                    let summary = value(result);
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(slot), 0.0),
                            (SegmentValue::Exact(slot + 1), summary.median),
                        ],
                        color(implementation).filled(),
                    );
                    bar.set_margin(0, 0, 3, 3);
                    bars.push(bar);
                    whiskers.push(PathElement::new(
                        vec![
                            (SegmentValue::CenterOf(slot), summary.min),
                            (SegmentValue::CenterOf(slot), summary.max),
                        ],
                        BLACK.stroke_width(2),
                    ));
                }
                slot += 1;
            }
            slot += 1;
        }
        let fill = color(implementation);
        chart
            .draw_series(bars)?
            .label(implementation.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], fill.filled()));
        chart.draw_series(whiskers)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::sample_results;

    #[test]
    fn draw_writes_png() {
        let dir = std::env::temp_dir().join(format!("bench-suite-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        draw(&sample_results(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "not a PNG signature"
        );
        assert!(
            bytes.len() > 1000,
            "PNG of {} bytes is too small for a chart",
            bytes.len()
        );
    }
}
