//! `rnnlm eval`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rnnlm::checkpoint;
use rnnlm::corpus::encode_file;
use rnnlm::error::ConfigError;
use rnnlm::eval::{Evaluator, Protocol};
use rnnlm::runtime::{init_threads, kernels_from_env};
use rnnlm::step::Compute;

use super::CliResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Split {
    Train,
    Valid,
    Test,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint written by `rnnlm train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// PTB split to score.
    #[arg(long, value_enum, default_value_t = Split::Valid)]
    split: Split,
    /// Directory with the PTB files.
    #[arg(long, default_value = "data/ptb")]
    data: PathBuf,
    /// full: every token predicted once; book: the textbook's variant.
    #[arg(long, value_enum, default_value_t = Protocol::Full)]
    protocol: Protocol,
    /// Parallel streams.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Steps per window.
    #[arg(long, default_value_t = 35)]
    bptt: usize,
    /// Worker threads (0: one per logical CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: EvalArgs) -> CliResult {
    if args.batch == 0 {
        return Err(ConfigError::new("--batch", 0, "at least 1").into());
    }
    if args.bptt == 0 {
        return Err(ConfigError::new("--bptt", 0, "at least 1").into());
    }
    let kernels = kernels_from_env()?;
    let threads = init_threads(args.threads)?;
    let loaded = checkpoint::load(&args.checkpoint)?;
    let file = match args.split {
        Split::Train => "ptb.train.txt",
        Split::Valid => "ptb.valid.txt",
        Split::Test => "ptb.test.txt",
    };
    let path = args.data.join(file);
    if !path.exists() {
        return Err(format!(
            "{} not found: pass --data DIR with the PTB files (eval does not download them; \
             `rnnlm train` does)",
            path.display()
        )
        .into());
    }
    let tokens = encode_file(&loaded.vocab, &path)?;
    let eos = loaded
        .vocab
        .eos()
        .ok_or("the checkpoint's vocabulary has no <eos>")?;
    let batch = if args.protocol == Protocol::Book {
        10
    } else {
        args.batch
    };
    let mut evaluator = Evaluator::new(&loaded.model, batch, args.bptt);
    let result = evaluator.evaluate(
        Compute::new(kernels, threads),
        &loaded.model,
        &tokens,
        eos,
        args.protocol,
    );
    println!(
        "{file}: perplexity {:.2} over {} predicted tokens ({:?} protocol)",
        result.perplexity(),
        result.tokens,
        args.protocol
    );
    Ok(())
}
