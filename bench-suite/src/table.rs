//! Markdown tables of a comparison run.

use std::fmt::Write;

use crate::results::Results;

/// Renders the throughput table, the roofline table of our engine and the
/// measured product rates, as markdown.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    throughput(results, &mut out);
    out.push('\n');
    roofline(results, &mut out);
    out.push('\n');
    product_rates(results, &mut out);
    out
}

fn throughput(results: &Results, out: &mut String) {
    out.push_str(
        "| mode | H | threads | impl | tokens/s median (min-max) | vs PyTorch | peak RSS MiB |\n\
         |---|---:|---:|---|---:|---:|---:|\n",
    );
    for case in &results.cases {
        for result in &case.impls {
            let ratio = result
                .ratio_to_pytorch
                .map_or("n/a".to_string(), |ratio| format!("{ratio:.2}x"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {ratio} | {:.0} |",
                case.mode.name(),
                case.hidden,
                case.threads,
                result.implementation,
                result.tokens_per_sec.display(0),
                result.peak_rss_mb.max,
            );
        }
    }
}

fn roofline(results: &Results, out: &mut String) {
    out.push_str(
        "| mode | H | threads | product MFLOP/token | faer 2048^3 GFLOP/s | ceiling tokens/s \
         | rnnlm / ceiling | GEMM share | GEMM GFLOP/s in step | GEMM efficiency |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let or_na = |value: Option<String>| value.unwrap_or_else(|| "n/a".to_string());
    for case in &results.cases {
        let figures = &case.roofline;
        let profile = case.profile.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            case.mode.name(),
            case.hidden,
            case.threads,
            figures.flops_per_token / 1e6,
            or_na(figures.square_gflops.map(|rate| format!("{rate:.1}"))),
            or_na(
                figures
                    .ceiling_tokens_per_sec
                    .map(|ceiling| format!("{ceiling:.0}"))
            ),
            or_na(figures.ours_over_ceiling.map(percent)),
            or_na(profile.map(|p| percent(p.gemm_share))),
            or_na(profile.map(|p| format!("{:.1}", p.gemm_gflops_in_step))),
            or_na(profile.and_then(|p| p.gemm_efficiency).map(percent)),
        );
    }
    if results.cases.iter().all(|case| case.profile.is_none()) {
        out.push_str("\nGEMM share and efficiency need `--profile`.\n");
    }
}

fn product_rates(results: &Results, out: &mut String) {
    out.push_str(
        "| threads | product (rnnlm::matmul::gemm) | GFLOP/s median (min-max) |\n|---:|---|---:|\n",
    );
    for rate in &results.gemm {
        let _ = writeln!(
            out,
            "| {} | {} {} | {} |",
            rate.threads,
            rate.kind,
            rate.shape.label(),
            rate.gflops.display(1)
        );
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// Renders each case's phase shares of our profiled run, phases as rows.
pub fn render_profiles(results: &Results) -> String {
    let profiled: Vec<_> = results
        .cases
        .iter()
        .filter_map(|case| Some((case, case.profile.as_ref()?)))
        .collect();
    let Some((_, first)) = profiled.first() else {
        return String::new();
    };
    let mut out = String::from("| phase |");
    for (case, _) in &profiled {
        let _ = write!(out, " {} |", case.label());
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(profiled.len()));
    out.push('\n');
    for phase in first.phases.keys() {
        let _ = write!(out, "| {phase} |");
        for (_, profile) in &profiled {
            let share = profile.phases.get(phase).copied();
            let _ = write!(
                out,
                " {} |",
                share.map_or("n/a".to_string(), |s| format!("{:.1}%", s * 100.0))
            );
        }
        out.push('\n');
    }
    out
}
