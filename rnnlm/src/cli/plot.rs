//! `rnnlm plot`: training and validation perplexity against tokens seen,
//! from the JSON-lines metrics file of `rnnlm train --metrics`, as a PNG.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;
use plotters::prelude::*;
use serde_json::Value;

use super::CliResult;

/// Image size in pixels.
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 640;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Metrics file written by `rnnlm train --metrics`.
    #[arg(long)]
    metrics: PathBuf,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
}

/// The curves of one training run: (tokens seen, perplexity) points.
#[derive(Debug, Default, PartialEq)]
struct Curves {
    /// From `progress` records: the running training perplexity.
    train: Vec<(f64, f64)>,
    /// From `epoch` records: the training perplexity of each whole epoch.
    epoch_train: Vec<(f64, f64)>,
    /// From `epoch` records.
    valid: Vec<(f64, f64)>,
}

pub fn run(args: PlotArgs) -> CliResult {
    let is_png = args
        .out
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(format!(
            "--out {}: the plot is written as PNG only; give a name ending in .png",
            args.out.display()
        )
        .into());
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(format!(
            "--out {}: the directory {} does not exist; create it first",
            args.out.display(),
            dir.display()
        )
        .into());
    }
    let text = fs::read_to_string(&args.metrics).map_err(|e| {
        format!(
            "cannot read metrics file {}: {e}; pass the file written by `rnnlm train --metrics`",
            args.metrics.display()
        )
    })?;
    let curves = parse_metrics(&text, &args.metrics)?;
    // The backend writes its file even when drawing fails part-way, so it
    // draws into a temporary file that replaces --out only on success.
    let partial = partial_path(&args.out);
    let drawn = draw(&curves, &partial)
        .map_err(|e| e.to_string())
        .and_then(|()| fs::rename(&partial, &args.out).map_err(|e| e.to_string()));
    if let Err(error) = drawn {
        let _ = fs::remove_file(&partial);
        return Err(format!(
            "cannot draw the plot to {}: {error}; check that the directory exists and that a \
             TrueType font is installed (Debian: fonts-dejavu-core)",
            args.out.display()
        )
        .into());
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Returns `.NAME.partial.png` beside `out`: the backend picks the image
/// format from the extension.
fn partial_path(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!(".{name}.partial.png"))
}

/// Reads the records of the last run in `text`: a run starts again when
/// `tokens_seen` goes down, as when a second training appends to the file.
/// A `resume` record continues the run from its `tokens_seen` instead and
/// drops the points after it, which the resumed run trains again. Records
/// of other events are skipped, and so are perplexities written as `null`
/// (a diverged run's NaN or infinity).
fn parse_metrics(text: &str, path: &Path) -> Result<Curves, String> {
    let mut curves = Curves::default();
    let mut last_tokens = 0.0;
    let mut earlier_runs = 0;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |what: String| {
            format!(
                "metrics file {}: line {}: {what}; each line must be one JSON object as \
                 `rnnlm train --metrics` writes",
                path.display(),
                index + 1
            )
        };
        let record: Value =
            serde_json::from_str(line).map_err(|e| invalid(format!("not valid JSON ({e})")))?;
        let event = record
            .get("event")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no string field `event`".into()))?;
        if event == "resume" {
            let tokens = record
                .get("tokens_seen")
                .and_then(Value::as_f64)
                .ok_or_else(|| invalid("resume record has no number `tokens_seen`".into()))?;
            for points in [
                &mut curves.train,
                &mut curves.epoch_train,
                &mut curves.valid,
            ] {
                points.retain(|&(seen, _)| seen <= tokens);
            }
            last_tokens = tokens;
            continue;
        }
        if event != "progress" && event != "epoch" {
            continue;
        }
        let number = |field: &str| -> Result<Option<f64>, String> {
            match record.get(field) {
                Some(Value::Null) => Ok(None),
                Some(value) => value
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| invalid(format!("field `{field}` is not a number"))),
                None => Err(invalid(format!("{event} record has no field `{field}`"))),
            }
        };

        let tokens =
            number("tokens_seen")?.ok_or_else(|| invalid("field `tokens_seen` is null".into()))?;
        if tokens < last_tokens {
            earlier_runs += 1;
            curves = Curves::default();
        }
        last_tokens = tokens;

        let train = number("train_ppl")?;
        if event == "progress" {
            curves.train.extend(train.map(|ppl| (tokens, ppl)));
        } else {
            curves.epoch_train.extend(train.map(|ppl| (tokens, ppl)));
            let valid = number("valid_ppl")?;
            curves.valid.extend(valid.map(|ppl| (tokens, ppl)));
        }
    }

    if earlier_runs > 0 {
        tracing::warn!(
            "metrics file {} holds {} runs (tokens_seen starts again); plotting the last one",
            path.display(),
            earlier_runs + 1
        );
    }
    if curves.train.is_empty() {
        curves.train = std::mem::take(&mut curves.epoch_train);
    }
    if curves.train.is_empty() && curves.valid.is_empty() {
        return Err(format!(
            "metrics file {} has no progress or epoch records with a perplexity to plot",
            path.display()
        ));
    }
    Ok(curves)
}

/// Draws the training curve as a line and validation as a line with
/// markers, perplexity on a log scale.
fn draw(curves: &Curves, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let all = curves
        .train
        .iter()
        .chain(&curves.epoch_train)
        .chain(&curves.valid);
    let max_tokens = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let (low, high) = all.fold((f64::INFINITY, 0.0f64), |(low, high), p| {
        (low.min(p.1), high.max(p.1))
    });
    // A margin of 10% above and below on the log axis; perplexity is >= 1.
    let (low, high) = ((low / 1.1).max(0.5), (high * 1.1).max(low * 1.5));
    let (ticks, light_ticks) = log_ticks(low, high);

    let (scale, unit) = if max_tokens >= 1e6 {
        (1e6, "M")
    } else if max_tokens >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };

    let root = BitMapBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Perplexity during training", ("sans-serif", 28))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            0.0..max_tokens * 1.02,
            (low..high)
                .log_scale()
                .with_key_points(ticks)
                .with_light_points(light_ticks),
        )?;
    let x_label = |x: &f64| {
        // Two decimals at most, so float noise in tick values stays hidden.
        let digits = format!("{:.2}", x / scale);
        let digits = digits.trim_end_matches('0').trim_end_matches('.');
        format!("{digits}{unit}")
    };
    let y_label = |y: &f64| format!("{y:.0}");
    chart
        .configure_mesh()
        .x_desc("tokens seen")
        .y_desc("perplexity (log scale)")
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 16))
        .draw()?;

    let train_color = RGBColor(31, 119, 180);
    let valid_color = RGBColor(214, 39, 40);
    for (points, color, label) in [
        (&curves.train, train_color, "train"),
        (&curves.valid, valid_color, "validation"),
    ] {
        if points.is_empty() {
            continue;
        }
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    // Validation is measured once per epoch: a marker at each measurement.
    chart.draw_series(
        curves
            .valid
            .iter()
            .map(|&point| Circle::new(point, 4, valid_color.filled())),
    )?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Returns labelled and grid-only ticks for a log axis over [low, high]:
/// 1, 2 and 5 times the powers of 10 in range when that gives at least 4
/// labels, else every integer multiple 1 to 9 of them. (plotters' own log
/// axis labels only from the first power of 10 upwards.)
fn log_ticks(low: f64, high: f64) -> (Vec<f64>, Vec<f64>) {
    let mut coarse = Vec::new();
    let mut fine = Vec::new();
    let mut decade = 10f64.powf(low.log10().floor());
    while decade <= high {
        for multiple in 1..=9 {
            let tick = decade * multiple as f64;
            if tick < low || tick > high {
                continue;
            }
            fine.push(tick);
            if matches!(multiple, 1 | 2 | 5) {
                coarse.push(tick);
            }
        }
        decade *= 10.0;
    }
    if coarse.len() >= 4 {
        (coarse, fine)
    } else {
        (fine.clone(), fine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Curves, String> {
        parse_metrics(text, Path::new("m.jsonl"))
    }

    #[test]
    fn log_ticks_pick_round_values() {
        let (ticks, light) = log_ticks(70.0, 11_000.0);
        assert_eq!(
            ticks,
            [100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0]
        );
        assert_eq!(light.len(), 3 + 9 + 9 + 1);

        let (ticks, _) = log_ticks(250.0, 1800.0);
        assert_eq!(
            ticks,
            [300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0]
        );

        let (ticks, _) = log_ticks(34.0, 61.0);
        assert_eq!(ticks, [40.0, 50.0, 60.0]);
    }

    #[test]
    fn parse_keeps_progress_and_epochs() {
        let text = r#"{"event":"progress","tokens_seen":700,"train_ppl":900.5}
{"event":"epoch","tokens_seen":1400,"train_ppl":500.0,"valid_ppl":450.0}

{"event":"progress","tokens_seen":2100,"train_ppl":300.0}
{"event":"end","best_valid_ppl":450.0,"test_ppl":440.0}
"#;
        let curves = parse(text).expect("valid metrics");
        assert_eq!(curves.train, vec![(700.0, 900.5), (2100.0, 300.0)]);
        assert_eq!(curves.epoch_train, vec![(1400.0, 500.0)]);
        assert_eq!(curves.valid, vec![(1400.0, 450.0)]);
    }

    #[test]
    fn parse_uses_epoch_train_without_progress() {
        let text = r#"{"event":"epoch","tokens_seen":10,"train_ppl":50.0,"valid_ppl":60.0}"#;
        let curves = parse(text).expect("valid metrics");
        assert_eq!(curves.train, vec![(10.0, 50.0)]);
    }

    #[test]
    fn parse_keeps_last_run_and_skips_null() {
        let text = r#"{"event":"epoch","tokens_seen":100,"train_ppl":50.0,"valid_ppl":60.0}
{"event":"epoch","tokens_seen":10,"train_ppl":null,"valid_ppl":70.0}
"#;
        let curves = parse(text).expect("valid metrics");
        assert_eq!(curves.valid, vec![(10.0, 70.0)]);
        assert!(curves.train.is_empty());
    }

    #[test]
    fn parse_continues_run_after_resume() {
        // Epoch 2 stopped after one report; the resumed run trains it again.
        let text = r#"{"event":"progress","tokens_seen":50,"train_ppl":90.0}
{"event":"epoch","tokens_seen":100,"train_ppl":80.0,"valid_ppl":85.0}
{"event":"progress","tokens_seen":150,"train_ppl":70.0}
{"event":"resume","epoch":1,"tokens_seen":100,"lr":20.0}
{"event":"progress","tokens_seen":150,"train_ppl":71.0}
{"event":"epoch","tokens_seen":200,"train_ppl":65.0,"valid_ppl":75.0}
"#;
        let curves = parse(text).expect("valid metrics");
        assert_eq!(curves.train, vec![(50.0, 90.0), (150.0, 71.0)]);
        assert_eq!(curves.valid, vec![(100.0, 85.0), (200.0, 75.0)]);
    }

    #[test]
    fn parse_names_bad_line_and_field() {
        let text = "{\"event\":\"progress\",\"tokens_seen\":1,\"train_ppl\":2}\nnot json\n";
        let message = parse(text).expect_err("line 2 is invalid");
        assert!(
            message.starts_with("metrics file m.jsonl: line 2: not valid JSON"),
            "{message}"
        );

        let text = r#"{"event":"epoch","tokens_seen":1,"train_ppl":2}"#;
        let message = parse(text).expect_err("valid_ppl is missing");
        assert!(
            message.contains("line 1: epoch record has no field `valid_ppl`"),
            "{message}"
        );

        let text = r#"{"tokens_seen":1}"#;
        let message = parse(text).expect_err("event is missing");
        assert!(message.contains("no string field `event`"), "{message}");

        let text = r#"{"event":"progress","tokens_seen":"many","train_ppl":2}"#;
        let message = parse(text).expect_err("tokens_seen is a string");
        assert!(
            message.contains("field `tokens_seen` is not a number"),
            "{message}"
        );
    }

    #[test]
    fn parse_rejects_nothing_to_plot() {
        for text in ["", "\n\n", r#"{"event":"end","test_ppl":3.0}"#] {
            let message = parse(text).expect_err("nothing to plot");
            assert!(
                message.contains("no progress or epoch records"),
                "{text:?}: {message}"
            );
        }
    }
}
