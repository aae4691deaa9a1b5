//! Comparison harness. It runs our engine, the PyTorch reference and the
//! NumPy reference as separate processes with the same sizes and thread
//! count, alternating them round by round. It reports median tokens/s, peak
//! RSS, the ratio to PyTorch, and our engine against its product roofline.
//!
//! `cargo run --release -p bench-suite --bin compare -- --help` lists the
//! options. Output goes to `--out` (default `bench-out/`): `results.json`
//! (every number), `runs.jsonl` (every run's JSON line, written as it
//! arrives), `table.md` and `chart.png`. With `--baseline FILE` the run is
//! compared with a saved `results.json` and the process exits with status 2
//! when a figure is more than 5% worse.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use bench_suite::baseline::{self, THRESHOLD};
use bench_suite::gemm_rate::{ProductShape, RhsLayout, measure_gflops};
use bench_suite::results::{
    self, Case, GemmRate, Machine, Results, SCHEMA_VERSION, Settings, gemm_median, roofline,
    set_ratios, summarise,
};
use bench_suite::roofline::{Mode, flops_per_token};
use bench_suite::runner::{Implementation, Launcher, RunRecord, RunSpec, check_python};
use bench_suite::{chart, table};
use clap::Parser;
use rnnlm::model::ModelConfig;
use rnnlm::profile::Phase;

/// Side of the square product whose rate is the reference for efficiency:
/// large enough that faer runs at its best on the machines we target.
const SQUARE_SIDE: usize = 2048;
/// Rows of the projection product in a training window: B = 20 by T = 35.
const TRAIN_ROWS: usize = 20 * 35;
/// Vocabulary of the random ids the runs use by default, and of PTB.
const VOCAB: usize = 10_000;
/// Layers of every implementation's default model.
const LAYERS: usize = 2;
/// Exit status when a figure regressed against the baseline.
const EXIT_REGRESSION: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    about = "Run rnnlm, PyTorch and NumPy alternately with the same sizes and threads, \
             and report tokens/s, peak RSS and our product roofline"
)]
struct Args {
    /// Hidden sizes H, comma-separated (for example 200,650,1500).
    #[arg(long, value_delimiter = ',', default_value = "650")]
    hidden: Vec<usize>,
    /// Thread counts, comma-separated; `all` is one per logical CPU.
    #[arg(long, value_delimiter = ',', default_value = "all", value_parser = parse_threads)]
    threads: Vec<usize>,
    /// Timed rounds; each round runs every implementation once, after one
    /// untimed warm-up round.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Timed windows per run.
    #[arg(long, default_value_t = 10)]
    windows: usize,
    /// Untimed windows at the start of each run.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Modes, comma-separated: train, eval.
    #[arg(long, value_delimiter = ',', default_value = "train,eval", value_parser = parse_mode)]
    modes: Vec<Mode>,
    /// Implementations, comma-separated: rnnlm, pytorch, numpy.
    #[arg(long, value_delimiter = ',', default_value = "rnnlm,pytorch,numpy")]
    impls: Vec<Implementation>,
    /// Directory for results.json, runs.jsonl, table.md and chart.png.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Add one profiled run of our engine per case: phase shares, GEMM share
    /// and GEMM efficiency.
    #[arg(long)]
    profile: bool,
    /// A results.json to compare with; exits with status 2 when a figure is
    /// more than 5% worse (median against median).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Python interpreter with torch and numpy (default: .venv/bin/python
    /// at the repository root).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Engine binary (default: target/release/engine, rebuilt first when
    /// this harness runs under cargo).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// PTB directory, passed to every implementation (default: random ids).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Timed products per in-process product-rate measurement.
    #[arg(long, default_value_t = 5)]
    gemm_reps: usize,
}

fn parse_threads(value: &str) -> Result<usize, String> {
    if value == "all" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match value.parse::<usize>() {
        Ok(threads) if threads > 0 => Ok(threads),
        _ => Err(format!(
            "thread count {value:?} is not a positive integer or `all`"
        )),
    }
}

fn parse_mode(value: &str) -> Result<Mode, String> {
    match value {
        "train" => Ok(Mode::Train),
        "eval" => Ok(Mode::Eval),
        _ => Err(format!("mode {value:?} is not train or eval")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Args) -> Result<ExitCode, String> {
    validate(&mut args)?;
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench-suite sits inside the workspace")
        .to_path_buf();
    let launcher = Launcher {
        engine: locate_engine(&args, &repo_root)?,
        python: args
            .python
            .clone()
            .unwrap_or_else(|| repo_root.join(".venv/bin/python")),
        reference_dir: repo_root.join("bench-suite/reference"),
    };
    for &implementation in &args.impls {
        check_python(&launcher.python, implementation)?;
    }
    // Read the baseline before the long run, so a bad path fails at once.
    let baseline = args.baseline.as_deref().map(read_results).transpose()?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this harness is a debug build, so its in-process product rates are \
             unrepresentative; run it with `cargo run --release`"
        );
    }
    std::fs::create_dir_all(&args.out).map_err(|e| {
        format!(
            "cannot create the output directory {}: {e}",
            args.out.display()
        )
    })?;

    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let gemm = measure_product_rates(&args)?;
    let (cases, isa) = run_cases(&args, &launcher, &gemm)?;
    let results = Results {
        schema: SCHEMA_VERSION,
        machine: Machine {
            cpu: cpu_model(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa,
        },
        settings: Settings {
            reps: args.reps,
            windows: args.windows,
            warmup: args.warmup,
            gemm_reps: args.gemm_reps,
            impls: args.impls.clone(),
            data: args.data.as_ref().map(|path| path.display().to_string()),
            started_unix,
            commit: git_commit(&repo_root),
        },
        gemm,
        cases,
    };
    write_outputs(&args.out, &results)?;

    let Some(baseline) = baseline else {
        return Ok(ExitCode::SUCCESS);
    };
    let comparison = baseline::compare(&baseline, &results).map_err(|e| e.to_string())?;
    println!("\n## Against the baseline\n");
    print!("{}", baseline::render(&comparison, THRESHOLD));
    if comparison.regressions(THRESHOLD).is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_REGRESSION))
    }
}

/// Rejects empty lists and zero counts, and drops repeated list entries.
fn validate(args: &mut Args) -> Result<(), String> {
    for (name, value) in [
        ("--reps", args.reps),
        ("--windows", args.windows),
        ("--gemm-reps", args.gemm_reps),
    ] {
        if value == 0 {
            return Err(format!("{name} is 0; it must be at least 1"));
        }
    }
    if let Some(&hidden) = args.hidden.iter().find(|&&h| h == 0) {
        return Err(format!(
            "--hidden {hidden}: every hidden size must be at least 1"
        ));
    }
    dedup_in_order(&mut args.hidden);
    dedup_in_order(&mut args.threads);
    dedup_in_order(&mut args.modes);
    dedup_in_order(&mut args.impls);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &threads in &args.threads {
        if threads > cpus {
            eprintln!(
                "warning: --threads {threads} is more than the {cpus} logical CPUs, so threads \
                 will share cores"
            );
        }
    }
    Ok(())
}

fn dedup_in_order<T: PartialEq + Copy>(items: &mut Vec<T>) {
    let mut seen = Vec::with_capacity(items.len());
    items.retain(|item| {
        let new = !seen.contains(item);
        if new {
            seen.push(*item);
        }
        new
    });
}

/// Returns the engine binary. Under `cargo run` (which sets `CARGO`) it is
/// rebuilt first, so a stale engine is never timed.
fn locate_engine(args: &Args, repo_root: &Path) -> Result<PathBuf, String> {
    let build_hint =
        "build it with `cargo build --release -p bench-suite --bin engine`, or pass --engine PATH";
    if let Some(engine) = &args.engine {
        return if engine.is_file() {
            Ok(engine.clone())
        } else {
            Err(format!("--engine {}: no such file", engine.display()))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's path ({e}); pass --engine PATH"))?;
    // The harness sits in target/<profile>/; the engine is timed from the
    // release profile whatever profile the harness was built with.
    let target_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        format!(
            "{} has no target directory above it; pass --engine PATH",
            exe.display()
        )
    })?;
    let engine = target_dir
        .join("release")
        .join(format!("engine{}", std::env::consts::EXE_SUFFIX));
    if !args.impls.contains(&Implementation::Rnnlm) {
        return Ok(engine);
    }

    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("building the engine: cargo build --release -p bench-suite --bin engine");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "bench-suite", "--bin", "engine"])
            .arg("--manifest-path")
            .arg(repo_root.join("Cargo.toml"))
            .status()
            .map_err(|e| format!("cannot run cargo to build the engine ({e}); {build_hint}"))?;
        if !status.success() {
            return Err(format!(
                "building the engine failed ({status}); {build_hint}"
            ));
        }
    }
    if engine.is_file() {
        Ok(engine)
    } else {
        Err(format!(
            "the engine binary {} is missing; {build_hint}",
            engine.display()
        ))
    }
}

fn read_results(path: &Path) -> Result<Results, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the baseline {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "the baseline {} is not a results.json of this harness: {e}",
            path.display()
        )
    })
}

/// Measures the square product and each hidden size's projection product
/// at every thread count, in this process, before any run starts.
fn measure_product_rates(args: &Args) -> Result<Vec<GemmRate>, String> {
    let mut rates = Vec::new();
    for &threads in &args.threads {
        let mut shapes = vec![(
            "square",
            ProductShape {
                m: SQUARE_SIDE,
                k: SQUARE_SIDE,
                n: SQUARE_SIDE,
                rhs: RhsLayout::RowMajor,
            },
        )];
        // The logits product as the model runs it: top (B T, H) times the
        // transposed (V, H) embedding.
        for &hidden in &args.hidden {
            shapes.push((
                "projection",
                ProductShape {
                    m: TRAIN_ROWS,
                    k: hidden,
                    n: VOCAB,
                    rhs: RhsLayout::Transposed,
                },
            ));
        }
        for (kind, shape) in shapes {
            let gflops = measure_gflops(shape, threads, args.gemm_reps)
                .map_err(|e| format!("cannot start {threads} threads for the product rate: {e}"))?;
            eprintln!(
                "product rate, {threads} threads, {kind} {}: {} GFLOP/s",
                shape.label(),
                gflops.display(1)
            );
            rates.push(GemmRate {
                kind: kind.to_string(),
                threads,
                shape,
                gflops,
            });
        }
    }
    Ok(rates)
}

/// Runs every case and returns them with the kernel path the engine used.
fn run_cases(
    args: &Args,
    launcher: &Launcher,
    gemm: &[GemmRate],
) -> Result<(Vec<Case>, Option<String>), String> {
    let runs_path = args.out.join("runs.jsonl");
    let mut log = File::create(&runs_path)
        .map_err(|e| format!("cannot create {}: {e}", runs_path.display()))?;
    let profiled = args.profile && args.impls.contains(&Implementation::Rnnlm);
    let per_case = (args.reps + 1) * args.impls.len() + usize::from(profiled);
    let total = per_case * args.modes.len() * args.hidden.len() * args.threads.len();
    let mut done = 0;
    let mut isa = None;
    let mut cases = Vec::new();

    for &mode in &args.modes {
        for &hidden in &args.hidden {
            for &threads in &args.threads {
                let spec = RunSpec {
                    mode,
                    hidden,
                    threads,
                    windows: args.windows,
                    warmup: args.warmup,
                    data: args.data.clone(),
                    profile: false,
                };
                let label = format!("{} H={hidden} {threads}t", mode.name());
                let mut runs: Vec<Vec<RunRecord>> = vec![Vec::new(); args.impls.len()];

                // Round 0 is the warm-up; its runs are logged but not counted.
                for round in 0..=args.reps {
                    for (index, &implementation) in args.impls.iter().enumerate() {
                        done += 1;
                        let record = launcher
                            .run(implementation, &spec)
                            .map_err(|e| e.to_string())?;
                        let round_name = if round == 0 {
                            "warm-up".to_string()
                        } else {
                            round.to_string()
                        };
                        eprintln!(
                            "[{done}/{total}] {label} round {round_name} {implementation}: {:.1} tokens/s, {:.0} MiB",
                            record.tokens_per_sec, record.peak_rss_mb
                        );
                        log_run(&mut log, &label, &round_name, implementation, &record)?;
                        if implementation == Implementation::Rnnlm {
                            isa = record
                                .raw
                                .get("isa")
                                .and_then(|v| v.as_str())
                                .map(str::to_string);
                        }
                        if round > 0 {
                            runs[index].push(record);
                        }
                    }
                }

                let profile_run = if profiled {
                    done += 1;
                    let spec = RunSpec {
                        profile: true,
                        ..spec.clone()
                    };
                    let record = launcher
                        .run(Implementation::Rnnlm, &spec)
                        .map_err(|e| e.to_string())?;
                    eprintln!(
                        "[{done}/{total}] {label} profiled rnnlm: {:.1} tokens/s",
                        record.tokens_per_sec
                    );
                    log_run(&mut log, &label, "profile", Implementation::Rnnlm, &record)?;
                    Some(record)
                } else {
                    None
                };
                cases.push(build_case(
                    mode,
                    hidden,
                    threads,
                    &args.impls,
                    runs,
                    profile_run,
                    gemm,
                )?);
            }
        }
    }
    Ok((cases, isa))
}

/// Summarises one case's runs and derives its roofline and profile figures.
fn build_case(
    mode: Mode,
    hidden: usize,
    threads: usize,
    impls: &[Implementation],
    runs: Vec<Vec<RunRecord>>,
    profile_run: Option<RunRecord>,
    gemm: &[GemmRate],
) -> Result<Case, String> {
    let first = &runs[0][0];
    let (vocab, batch, bptt) = (first.vocab, first.batch, first.bptt);
    for (implementation, records) in impls.iter().zip(&runs) {
        for record in records {
            if (record.vocab, record.batch, record.bptt) != (vocab, batch, bptt) {
                return Err(format!(
                    "{implementation} ran V={} B={} T={} but {} ran V={vocab} B={batch} T={bptt}, \
                     so their speeds are not comparable",
                    record.vocab, record.batch, record.bptt, impls[0]
                ));
            }
        }
    }

    let mut impl_results: Vec<_> = impls
        .iter()
        .zip(runs)
        .map(|(&implementation, records)| summarise(implementation, records))
        .collect();
    set_ratios(&mut impl_results);

    let config = ModelConfig {
        vocab,
        embed: hidden,
        hidden,
        layers: LAYERS,
        tied: true,
    };
    let flops = flops_per_token(&config, mode);
    let square = gemm_median(gemm, "square", threads, None);
    let projection = gemm_median(gemm, "projection", threads, Some(hidden));
    let ours = impl_results
        .iter()
        .find(|result| result.implementation == Implementation::Rnnlm)
        .map(|result| result.tokens_per_sec.median);
    let is_product = |name: &str| {
        Phase::ALL
            .iter()
            .any(|phase| phase.name() == name && phase.is_product())
    };

    Ok(Case {
        mode,
        hidden,
        threads,
        vocab,
        batch,
        bptt,
        impls: impl_results,
        roofline: roofline(flops, square, projection, ours),
        profile: profile_run.and_then(|run| results::profile(&run, is_product, flops, square)),
    })
}

fn log_run(
    log: &mut File,
    case: &str,
    round: &str,
    implementation: Implementation,
    record: &RunRecord,
) -> Result<(), String> {
    let line = serde_json::json!({
        "case": case,
        "round": round,
        "impl": implementation.name(),
        "record": record.raw,
    });
    writeln!(log, "{line}").map_err(|e| format!("cannot write runs.jsonl: {e}"))
}

/// Writes results.json, table.md and chart.png, and prints the tables.
fn write_outputs(out: &Path, results: &Results) -> Result<(), String> {
    let json = serde_json::to_string_pretty(results).expect("results serialise to JSON");
    let json_path = out.join("results.json");
    std::fs::write(&json_path, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;

    let mut markdown = format!(
        "{} ({} logical CPUs, kernels {}), commit {}, {} timed rounds of {} windows after a \
         warm-up round\n\n",
        results.machine.cpu,
        results.machine.logical_cpus,
        results.machine.isa.as_deref().unwrap_or("n/a"),
        results.settings.commit.as_deref().unwrap_or("unknown"),
        results.settings.reps,
        results.settings.windows,
    );
    markdown.push_str(&table::render(results));
    let profiles = table::render_profiles(results);
    if !profiles.is_empty() {
        markdown
            .push_str("\nShare of wall time per phase (one profiled run of rnnlm per case):\n\n");
        markdown.push_str(&profiles);
    }
    let table_path = out.join("table.md");
    std::fs::write(&table_path, &markdown)
        .map_err(|e| format!("cannot write {}: {e}", table_path.display()))?;

    let chart_path = out.join("chart.png");
    chart::draw(results, &chart_path).map_err(|e| e.to_string())?;
    print!("{markdown}");
    eprintln!(
        "wrote {}, {}, {} and {}",
        json_path.display(),
        out.join("runs.jsonl").display(),
        table_path.display(),
        chart_path.display()
    );
    Ok(())
}

/// Returns the short commit of `repo_root`, with `+dirty` when tracked
/// files have uncommitted changes, or `None` when git cannot tell.
fn git_commit(repo_root: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .arg("-C")
            .arg(repo_root)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let changes = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(if changes.is_empty() {
        commit
    } else {
        format!("{commit}+dirty")
    })
}

/// `model name` of the first CPU in /proc/cpuinfo, or `unknown CPU`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
