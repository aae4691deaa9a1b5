//! The numbers of one comparison run, as written to `results.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gemm_rate::ProductShape;
use crate::roofline::{Mode, ceiling_tokens_per_sec};
use crate::runner::{Implementation, RunRecord};
use crate::stats::Summary;

/// Version of the layout below; a baseline with another version is rejected.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one `compare` run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    pub machine: Machine,
    pub settings: Settings,
    /// In-process product rates, per thread count and shape.
    pub gemm: Vec<GemmRate>,
    /// One entry per mode, hidden size and thread count.
    pub cases: Vec<Case>,
}

/// The machine the run was on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    pub logical_cpus: usize,
    /// Kernel path the engine reported (`avx512`, `avx2`, `neon`, `scalar`).
    pub isa: Option<String>,
}

/// The options the run was made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub reps: usize,
    pub windows: usize,
    pub warmup: usize,
    pub gemm_reps: usize,
    pub impls: Vec<Implementation>,
    pub data: Option<String>,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// `git rev-parse --short HEAD` of the repository, with `+dirty` when
    /// tracked files had uncommitted changes; `None` outside a git checkout.
    #[serde(default)]
    pub commit: Option<String>,
}

/// The rate of one product shape at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmRate {
    /// `square` for the 2048^3 product, `projection` for the model's logits product.
    pub kind: String,
    pub threads: usize,
    pub shape: ProductShape,
    pub gflops: Summary,
}

/// One mode, hidden size and thread count, with every implementation's runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub mode: Mode,
    pub hidden: usize,
    pub threads: usize,
    pub vocab: usize,
    pub batch: usize,
    pub bptt: usize,
    pub impls: Vec<ImplResult>,
    pub roofline: Roofline,
    /// Our engine's profiled run, when `--profile` was given.
    pub profile: Option<Profile>,
}

/// The timed runs of one implementation in one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImplResult {
    pub implementation: Implementation,
    pub tokens_per_sec: Summary,
    pub peak_rss_mb: Summary,
    /// Median tokens/s over PyTorch's median, when PyTorch ran.
    pub ratio_to_pytorch: Option<f64>,
    pub runs: Vec<RunRecord>,
}

/// Our engine against the ceiling its matrix products set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// Matrix-product FLOPs per token (see `roofline::flops_per_token`).
    pub flops_per_token: f64,
    /// Median rate of the 2048^3 product at this thread count.
    pub square_gflops: Option<f64>,
    /// Tokens/s if every product ran at `square_gflops` and nothing else took time.
    pub ceiling_tokens_per_sec: Option<f64>,
    /// Median rate of the projection product of this hidden size.
    pub projection_gflops: Option<f64>,
    /// Our median tokens/s over `ceiling_tokens_per_sec`.
    pub ours_over_ceiling: Option<f64>,
}

/// Time breakdown of our engine's profiled run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Phase name to share of the timed wall time.
    pub phases: BTreeMap<String, f64>,
    /// Sum of the shares of the matrix-product phases.
    pub gemm_share: f64,
    /// Tokens/s of the profiled run itself.
    pub tokens_per_sec: f64,
    /// Product FLOPs over the time spent in product phases, in GFLOP/s.
    pub gemm_gflops_in_step: f64,
    /// `gemm_gflops_in_step` over the 2048^3 rate at the same thread count.
    pub gemm_efficiency: Option<f64>,
}

/// Returns the median rate of `kind` at `threads`; for `projection`, also of the
/// hidden size `hidden` (the product's inner dimension).
pub fn gemm_median(
    gemm: &[GemmRate],
    kind: &str,
    threads: usize,
    hidden: Option<usize>,
) -> Option<f64> {
    gemm.iter()
        .find(|rate| {
            rate.kind == kind && rate.threads == threads && hidden.is_none_or(|h| rate.shape.k == h)
        })
        .map(|rate| rate.gflops.median)
}

impl Case {
    /// Returns the timed runs of `implementation`, if it ran in this case.
    pub fn result(&self, implementation: Implementation) -> Option<&ImplResult> {
        self.impls
            .iter()
            .find(|result| result.implementation == implementation)
    }

    /// Short label for tables and charts, e.g. `train H=650 2t`.
    pub fn label(&self) -> String {
        format!("{} H={} {}t", self.mode.name(), self.hidden, self.threads)
    }
}

/// Summarises the runs of one implementation.
///
/// # Panics
/// When `runs` is empty.
pub fn summarise(implementation: Implementation, runs: Vec<RunRecord>) -> ImplResult {
    let speeds: Vec<f64> = runs.iter().map(|run| run.tokens_per_sec).collect();
    let rss: Vec<f64> = runs.iter().map(|run| run.peak_rss_mb).collect();
    ImplResult {
        implementation,
        tokens_per_sec: Summary::of(&speeds).expect("at least one run with a finite speed"),
        peak_rss_mb: Summary::of(&rss).expect("at least one run with a finite peak RSS"),
        ratio_to_pytorch: None,
        runs,
    }
}

/// Fills each result's ratio to PyTorch's median tokens/s.
pub fn set_ratios(impls: &mut [ImplResult]) {
    let pytorch = impls
        .iter()
        .find(|result| result.implementation == Implementation::Pytorch)
        .map(|result| result.tokens_per_sec.median);
    for result in impls {
        result.ratio_to_pytorch = pytorch.map(|base| result.tokens_per_sec.median / base);
    }
}

/// Builds the roofline figures of a case from the measured product rates
/// and our median tokens/s.
pub fn roofline(
    flops_per_token: f64,
    square_gflops: Option<f64>,
    projection_gflops: Option<f64>,
    ours_tokens_per_sec: Option<f64>,
) -> Roofline {
    let ceiling = square_gflops.map(|rate| ceiling_tokens_per_sec(rate, flops_per_token));
    Roofline {
        flops_per_token,
        square_gflops,
        ceiling_tokens_per_sec: ceiling,
        projection_gflops,
        ours_over_ceiling: ours_tokens_per_sec
            .zip(ceiling)
            .map(|(ours, top)| ours / top),
    }
}

/// Reads the phase shares of a profiled engine run and derives the rate of
/// its products: product FLOPs per token times tokens/s, over the share of
/// the time the products took.
///
/// `is_product` selects the phase names that are matrix products. Returns `None`
/// when the run has no profile or the products took no time.
pub fn profile(
    run: &RunRecord,
    is_product: impl Fn(&str) -> bool,
    flops_per_token: f64,
    square_gflops: Option<f64>,
) -> Option<Profile> {
    let phases: BTreeMap<String, f64> = run
        .profile()?
        .iter()
        .filter_map(|(name, share)| Some((name.clone(), share.as_f64()?)))
        .collect();
    let gemm_share: f64 = phases
        .iter()
        .filter(|(name, _)| is_product(name))
        .map(|(_, share)| share)
        .sum();
    if gemm_share <= 0.0 {
        return None;
    }
    let gemm_gflops_in_step = flops_per_token * run.tokens_per_sec / gemm_share / 1e9;
    Some(Profile {
        phases,
        gemm_share,
        tokens_per_sec: run.tokens_per_sec,
        gemm_gflops_in_step,
        gemm_efficiency: square_gflops.map(|rate| gemm_gflops_in_step / rate),
    })
}

/// Builds a small but complete result set for the tests of the modules that read
/// results: one training case with our engine and PyTorch, and two rates.
#[cfg(test)]
pub(crate) fn sample_results() -> Results {
    use crate::gemm_rate::RhsLayout;
    use crate::runner::parse_run_line;

    let run = |speed: f64, rss: f64| {
        parse_run_line(&format!(
            "{{\"tokens_per_sec\": {speed}, \"peak_rss_mb\": {rss}, \"vocab\": 10000, \
             \"batch\": 20, \"bptt\": 35}}"
        ))
        .unwrap()
    };
    let mut impls = vec![
        summarise(
            Implementation::Rnnlm,
            vec![run(400.0, 240.0), run(420.0, 241.0), run(410.0, 240.5)],
        ),
        summarise(
            Implementation::Pytorch,
            vec![run(160.0, 899.0), run(170.0, 900.0), run(165.0, 901.0)],
        ),
    ];
    set_ratios(&mut impls);
    let rate = |kind: &str, shape: ProductShape, samples: &[f64]| GemmRate {
        kind: kind.to_string(),
        threads: 2,
        shape,
        gflops: Summary::of(samples).unwrap(),
    };
    Results {
        schema: SCHEMA_VERSION,
        machine: Machine {
            cpu: "test CPU".to_string(),
            logical_cpus: 2,
            isa: Some("avx512".to_string()),
        },
        settings: Settings {
            reps: 3,
            windows: 10,
            warmup: 2,
            gemm_reps: 3,
            impls: vec![Implementation::Rnnlm, Implementation::Pytorch],
            data: None,
            started_unix: 0,
            commit: Some("0123abc".to_string()),
        },
        gemm: vec![
            rate(
                "square",
                ProductShape {
                    m: 2048,
                    k: 2048,
                    n: 2048,
                    rhs: RhsLayout::RowMajor,
                },
                &[150.0, 155.0, 152.0],
            ),
            rate(
                "projection",
                ProductShape {
                    m: 700,
                    k: 650,
                    n: 10_000,
                    rhs: RhsLayout::Transposed,
                },
                &[120.0, 125.0, 118.0],
            ),
        ],
        cases: vec![Case {
            mode: Mode::Train,
            hidden: 650,
            threads: 2,
            vocab: 10_000,
            batch: 20,
            bptt: 35,
            impls,
            roofline: roofline(79_560_000.0, Some(152.0), Some(120.0), Some(410.0)),
            profile: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::parse_run_line;

    fn run(speed: f64, rss: f64) -> RunRecord {
        parse_run_line(&format!(
            "{{\"tokens_per_sec\": {speed}, \"peak_rss_mb\": {rss}, \"vocab\": 10000, \"batch\": 20, \
             \"bptt\": 35, \"profile\": {{\"input products\": 0.25, \"projection products\": 0.35, \
             \"softmax cross-entropy\": 0.1}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn results_json_round_trip() {
        let results = sample_results();
        let json = serde_json::to_string(&results).unwrap();
        let back: Results = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);
    }

    #[test]
    fn results_without_commit_still_load() {
        let mut value = serde_json::to_value(sample_results()).unwrap();
        value["settings"].as_object_mut().unwrap().remove("commit");
        let back: Results = serde_json::from_value(value).unwrap();
        assert_eq!(back.settings.commit, None);
    }

    #[test]
    fn summarise_and_ratio_to_pytorch() {
        let mut impls = vec![
            summarise(
                Implementation::Rnnlm,
                vec![run(400.0, 240.0), run(500.0, 250.0), run(450.0, 245.0)],
            ),
            summarise(
                Implementation::Pytorch,
                vec![run(150.0, 900.0), run(200.0, 910.0)],
            ),
        ];
        set_ratios(&mut impls);
        assert_eq!(impls[0].tokens_per_sec.median, 450.0);
        assert_eq!(impls[0].peak_rss_mb.max, 250.0);
        assert_eq!(impls[1].tokens_per_sec.median, 175.0);
        assert!((impls[0].ratio_to_pytorch.unwrap() - 450.0 / 175.0).abs() < 1e-12);
        assert_eq!(impls[1].ratio_to_pytorch, Some(1.0));
    }

    #[test]
    fn ratios_absent_without_pytorch() {
        let mut impls = vec![summarise(Implementation::Rnnlm, vec![run(400.0, 240.0)])];
        set_ratios(&mut impls);
        assert_eq!(impls[0].ratio_to_pytorch, None);
    }

    #[test]
    fn roofline_ceiling_and_fraction() {
        let figures = roofline(79_560_000.0, Some(159.12), Some(120.0), Some(500.0));
        // 159.12e9 / 79.56e6 = 2000 tokens/s.
        assert!((figures.ceiling_tokens_per_sec.unwrap() - 2000.0).abs() < 1e-9);
        assert!((figures.ours_over_ceiling.unwrap() - 0.25).abs() < 1e-12);
        let unknown = roofline(79_560_000.0, None, None, Some(500.0));
        assert_eq!(unknown.ceiling_tokens_per_sec, None);
        assert_eq!(unknown.ours_over_ceiling, None);
    }

    #[test]
    fn profile_sums_product_shares() {
        let record = run(600.0, 240.0);
        let is_product = |name: &str| name.ends_with("products");
        let figures = profile(&record, is_product, 79_560_000.0, Some(100.0)).unwrap();
        assert!((figures.gemm_share - 0.6).abs() < 1e-12);
        // 79.56e6 FLOPs * 600 tokens/s / 0.6 = 79.56 GFLOP/s in the products.
        assert!((figures.gemm_gflops_in_step - 79.56).abs() < 1e-9);
        assert!((figures.gemm_efficiency.unwrap() - 0.7956).abs() < 1e-12);
        assert_eq!(figures.phases.len(), 3);
    }

    #[test]
    fn profile_absent_without_phases() {
        let record = parse_run_line(
            "{\"tokens_per_sec\": 1, \"peak_rss_mb\": 1, \"vocab\": 2, \"batch\": 1, \"bptt\": 1}",
        )
        .unwrap();
        assert!(profile(&record, |_| true, 1.0, None).is_none());
    }
}
