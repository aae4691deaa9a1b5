//! Regression check of a run against a saved `results.json`.
//!
//! Each figure is compared median against median: tokens/s and product
//! rates regress when they fall, peak RSS when it grows, by more than the
//! threshold. Spreads are shown so a reader can tell a regression from noise
//! (two runs whose min-max ranges overlap are within the noise).

use std::fmt::Write;

use crate::results::{Results, SCHEMA_VERSION};
use crate::stats::Summary;

/// Relative change past which a figure counts as a regression: 5%.
pub const THRESHOLD: f64 = 0.05;

/// One figure measured in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Label of the figure, e.g. `train H=650 2t rnnlm tokens/s`.
    pub name: String,
    pub baseline: Summary,
    pub current: Summary,
    pub higher_is_better: bool,
}

impl Figure {
    /// Relative change of the median, positive when the figure grew.
    pub fn change(&self) -> f64 {
        self.current.median / self.baseline.median - 1.0
    }

    /// Checks whether the median moved the wrong way by more than `threshold`.
    pub fn regressed(&self, threshold: f64) -> bool {
        if self.higher_is_better {
            self.current.median < self.baseline.median * (1.0 - threshold)
        } else {
            self.current.median > self.baseline.median * (1.0 + threshold)
        }
    }
}

/// The figures both runs have, and notes on what could not be compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Comparison {
    /// Returns the figures that regressed by more than `threshold`.
    pub fn regressions(&self, threshold: f64) -> Vec<&Figure> {
        self.figures
            .iter()
            .filter(|figure| figure.regressed(threshold))
            .collect()
    }
}

/// Error for a baseline that cannot be compared at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "the baseline has results schema {found}, this build writes {SCHEMA_VERSION}; \
     record a new baseline with this build"
)]
pub struct SchemaMismatch {
    pub found: u32,
}

/// Pairs every figure of `current` with the same figure of `baseline`.
///
/// Cases are matched by mode, hidden size and thread count. A case whose
/// batch, steps or vocabulary differ is skipped with a note, and so is a
/// case that only one of the runs has.
pub fn compare(baseline: &Results, current: &Results) -> Result<Comparison, SchemaMismatch> {
    if baseline.schema != SCHEMA_VERSION {
        return Err(SchemaMismatch {
            found: baseline.schema,
        });
    }
    let mut comparison = Comparison::default();
    if baseline.settings.windows != current.settings.windows {
        comparison.notes.push(format!(
            "the baseline timed {} windows per run and this run {}: shorter runs are noisier",
            baseline.settings.windows, current.settings.windows
        ));
    }

    for case in &current.cases {
        let matching = baseline.cases.iter().find(|old| {
            old.mode == case.mode && old.hidden == case.hidden && old.threads == case.threads
        });
        let Some(old) = matching else {
            comparison
                .notes
                .push(format!("{}: not in the baseline", case.label()));
            continue;
        };
        if (old.batch, old.bptt, old.vocab) != (case.batch, case.bptt, case.vocab) {
            comparison.notes.push(format!(
                "{}: skipped, the baseline ran B={} T={} V={} and this run B={} T={} V={}",
                case.label(),
                old.batch,
                old.bptt,
                old.vocab,
                case.batch,
                case.bptt,
                case.vocab
            ));
            continue;
        }
        for result in &case.impls {
            let Some(old_result) = old.result(result.implementation) else {
                comparison.notes.push(format!(
                    "{} {}: not in the baseline",
                    case.label(),
                    result.implementation
                ));
                continue;
            };
            let prefix = format!("{} {}", case.label(), result.implementation);
            comparison.figures.push(Figure {
                name: format!("{prefix} tokens/s"),
                baseline: old_result.tokens_per_sec.clone(),
                current: result.tokens_per_sec.clone(),
                higher_is_better: true,
            });
            comparison.figures.push(Figure {
                name: format!("{prefix} peak RSS MiB"),
                baseline: old_result.peak_rss_mb.clone(),
                current: result.peak_rss_mb.clone(),
                higher_is_better: false,
            });
        }
    }

    for rate in &current.gemm {
        let matching = baseline.gemm.iter().find(|old| {
            old.kind == rate.kind && old.threads == rate.threads && old.shape == rate.shape
        });
        let name = format!(
            "{}t {} {} GFLOP/s",
            rate.threads,
            rate.kind,
            rate.shape.label()
        );
        match matching {
            Some(old) => comparison.figures.push(Figure {
                name,
                baseline: old.gflops.clone(),
                current: rate.gflops.clone(),
                higher_is_better: true,
            }),
            None => comparison
                .notes
                .push(format!("{name}: not in the baseline")),
        }
    }
    Ok(comparison)
}

/// Renders the figures that regressed, or a line saying none did, then the notes.
pub fn render(comparison: &Comparison, threshold: f64) -> String {
    let regressions = comparison.regressions(threshold);
    let mut out = String::new();
    if regressions.is_empty() {
        let _ = writeln!(
            out,
            "No figure is more than {:.0}% worse than the baseline ({} compared).",
            threshold * 100.0,
            comparison.figures.len()
        );
    } else {
        let _ = writeln!(
            out,
            "{} of {} figures are more than {:.0}% worse than the baseline \
             (median against median, min-max in brackets):\n",
            regressions.len(),
            comparison.figures.len(),
            threshold * 100.0
        );
        out.push_str("| figure | baseline | now | change |\n|---|---:|---:|---:|\n");
        for figure in regressions {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:+.1}% |",
                figure.name,
                figure.baseline.display(1),
                figure.current.display(1),
                figure.change() * 100.0
            );
        }
    }
    for note in &comparison.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::sample_results;

    fn scaled(summary: &Summary, factor: f64) -> Summary {
        let samples: Vec<f64> = summary.samples.iter().map(|x| x * factor).collect();
        Summary::of(&samples).unwrap()
    }

    #[test]
    fn identical_runs_have_no_regression() {
        let results = sample_results();
        let comparison = compare(&results, &results).unwrap();
        // Two implementations with two figures each, plus two product rates.
        assert_eq!(comparison.figures.len(), 6);
        assert!(comparison.regressions(THRESHOLD).is_empty());
        assert!(comparison.notes.is_empty());
        assert!(render(&comparison, THRESHOLD).starts_with("No figure is more than 5% worse"));
    }

    #[test]
    fn slower_engine_is_a_regression() {
        let baseline = sample_results();
        let mut current = baseline.clone();
        let ours = &mut current.cases[0].impls[0];
        ours.tokens_per_sec = scaled(&ours.tokens_per_sec, 0.9);
        let comparison = compare(&baseline, &current).unwrap();
        let regressions = comparison.regressions(THRESHOLD);
        assert_eq!(regressions.len(), 1);
        assert_eq!(regressions[0].name, "train H=650 2t rnnlm tokens/s");
        assert!((regressions[0].change() + 0.1).abs() < 1e-12);
        let text = render(&comparison, THRESHOLD);
        assert!(text.contains("| train H=650 2t rnnlm tokens/s |"), "{text}");
        assert!(text.contains("-10.0%"), "{text}");
    }

    #[test]
    fn small_slowdown_and_speedup_pass() {
        let baseline = sample_results();
        let mut current = baseline.clone();
        let ours = &mut current.cases[0].impls[0];
        ours.tokens_per_sec = scaled(&ours.tokens_per_sec, 0.96);
        let torch = &mut current.cases[0].impls[1];
        torch.tokens_per_sec = scaled(&torch.tokens_per_sec, 1.5);
        assert!(
            compare(&baseline, &current)
                .unwrap()
                .regressions(THRESHOLD)
                .is_empty()
        );
    }

    #[test]
    fn larger_memory_is_a_regression() {
        let baseline = sample_results();
        let mut current = baseline.clone();
        let ours = &mut current.cases[0].impls[0];
        ours.peak_rss_mb = scaled(&ours.peak_rss_mb, 1.06);
        let comparison = compare(&baseline, &current).unwrap();
        let names: Vec<&str> = comparison
            .regressions(THRESHOLD)
            .iter()
            .map(|figure| figure.name.as_str())
            .collect();
        assert_eq!(names, ["train H=650 2t rnnlm peak RSS MiB"]);
    }

    #[test]
    fn slower_product_rate_is_a_regression() {
        let baseline = sample_results();
        let mut current = baseline.clone();
        current.gemm[1].gflops = scaled(&current.gemm[1].gflops, 0.8);
        let comparison = compare(&baseline, &current).unwrap();
        assert_eq!(comparison.regressions(THRESHOLD).len(), 1);
    }

    #[test]
    fn mismatched_case_is_skipped_with_note() {
        let baseline = sample_results();
        let mut current = baseline.clone();
        current.cases[0].batch = 10;
        current.settings.windows = 4;
        let comparison = compare(&baseline, &current).unwrap();
        assert_eq!(comparison.figures.len(), 2);
        assert_eq!(comparison.notes.len(), 2, "{:?}", comparison.notes);
        assert!(
            comparison.notes[1].contains("skipped"),
            "{:?}",
            comparison.notes
        );
    }

    #[test]
    fn other_schema_is_rejected() {
        let mut baseline = sample_results();
        baseline.schema = SCHEMA_VERSION + 1;
        assert!(compare(&baseline, &sample_results()).is_err());
    }
}
