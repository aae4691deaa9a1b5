//! Throughput run of the rnnlm engine, with the same options and the same
//! one-line JSON output as the Python references in `reference/`, so the
//! comparison harness can run all three as separate processes.

use std::time::Instant;

use clap::{Parser, ValueEnum};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rnnlm::batch::Streams;
use rnnlm::corpus::Corpus;
use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::profile::{Phase, Profiler};
use rnnlm::runtime::{init_threads, kernels_from_env};
use rnnlm::step::{Compute, Mode, forward};
use rnnlm::train::{TrainOptions, Trainer};
use rnnlm::workspace::Workspace;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RunMode {
    Train,
    Eval,
}

#[derive(Parser, Debug)]
#[command(
    about = "Time training or evaluation windows of the rnnlm engine and print one JSON line"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = RunMode::Train)]
    mode: RunMode,
    /// Hidden size H, also the embedding size.
    #[arg(long, default_value_t = 650)]
    hidden: usize,
    /// Vocabulary size V for random ids (with --data it comes from the training file).
    #[arg(long, default_value_t = 10_000)]
    vocab: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Streams B (default: 20 to train, 10 to evaluate).
    #[arg(long)]
    batch: Option<usize>,
    /// Steps per window T.
    #[arg(long, default_value_t = 35)]
    bptt: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed windows.
    #[arg(long, default_value_t = 10)]
    windows: usize,
    /// Untimed windows before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PTB directory: use real token ids instead of random ones.
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Add the share of time per kind of work to the JSON line.
    #[arg(long)]
    profile: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let kernels = kernels_from_env()?;
    let threads = init_threads(args.threads)?;
    let batch = args.batch.unwrap_or(match args.mode {
        RunMode::Train => 20,
        RunMode::Eval => 10,
    });
    let needed_tokens = batch * (args.bptt * (args.warmup + args.windows) + 1);
    let (tokens, vocab, ids) = match &args.data {
        Some(dir) => {
            let corpus = Corpus::load(dir)?;
            let vocab = corpus.vocab.len();
            (corpus.train, vocab, "ptb")
        }
        None => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
            let tokens = (0..needed_tokens)
                .map(|_| (rng.next_u64() % args.vocab as u64) as u32)
                .collect();
            (tokens, args.vocab, "random")
        }
    };
    let streams = Streams::new(&tokens, batch).ok_or("too few tokens for the batch size")?;
    if streams.windows(args.bptt) < args.warmup + args.windows {
        return Err(format!("the data has only {} windows", streams.windows(args.bptt)).into());
    }

    let config = ModelConfig {
        vocab,
        embed: args.hidden,
        hidden: args.hidden,
        layers: args.layers,
        tied: true,
    };
    let model = Model::new(config.clone(), Init::Book, args.seed)?;
    let profiler: Option<&'static Profiler> =
        args.profile.then(|| &*Box::leak(Box::new(Profiler::new())));
    let mut cx = Compute::new(kernels, threads);
    cx.profiler = profiler;

    let mut start = Instant::now();
    let mut last_loss = 0.0;
    match args.mode {
        RunMode::Train => {
            let options = TrainOptions {
                batch,
                bptt: args.bptt,
                seed: args.seed,
                ..TrainOptions::default()
            };
            let mut trainer = Trainer::new(model, options, kernels, threads);
            trainer.cx = cx;
            for window in 0..args.warmup + args.windows {
                if window == args.warmup {
                    profiler.inspect(|p| p.reset());
                    start = Instant::now();
                }
                let steps = trainer.load_window(&streams, window);
                last_loss = trainer.train_window(steps).loss;
            }
        }
        RunMode::Eval => {
            let mut ws = Workspace::new(&config, batch, args.bptt, false);
            let rows = batch * args.bptt;
            let mut inputs = vec![0u32; rows];
            let mut targets = vec![0u32; rows];
            for window in 0..args.warmup + args.windows {
                if window == args.warmup {
                    profiler.inspect(|p| p.reset());
                    start = Instant::now();
                }
                let steps = streams.fill(window, args.bptt, &mut inputs, &mut targets);
                let n = steps * batch;
                last_loss = forward(
                    cx,
                    &model,
                    &mut ws,
                    &inputs[..n],
                    &targets[..n],
                    steps,
                    Mode::Eval,
                ) / n as f64;
                ws.carry_state(steps);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();

    let mut record = json!({
        "impl": "rnnlm",
        "mode": match args.mode { RunMode::Train => "train", RunMode::Eval => "eval" },
        "tokens_per_sec": (args.windows * batch * args.bptt) as f64 / seconds,
        "windows": args.windows,
        "hidden": args.hidden,
        "threads": threads,
        "peak_rss_mb": peak_rss_mb(),
        "vocab": vocab,
        "batch": batch,
        "bptt": args.bptt,
        "warmup": args.warmup,
        "ids": ids,
        "seconds": seconds,
        "last_loss": last_loss,
        "isa": kernels.isa().name(),
    });
    if let Some(profiler) = profiler {
        let phases: serde_json::Map<String, serde_json::Value> = profiler
            .seconds()
            .into_iter()
            .map(|(phase, secs): (Phase, f64)| (phase.name().to_string(), json!(secs / seconds)))
            .collect();
        record["profile"] = json!(phases);
    }
    println!("{record}");
    Ok(())
}

/// Peak resident set size of this process in MiB (VmHWM), 0 where unknown.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
