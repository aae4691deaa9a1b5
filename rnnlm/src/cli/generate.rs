//! `rnnlm generate`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use rnnlm::api::LanguageModel;
use rnnlm::runtime::{init_threads, kernels_from_env};

use super::{CliResult, UnknownWords};

#[derive(Args, Debug)]
// A negative --temperature then reaches the range check, which names it.
#[command(allow_negative_numbers = true)]
pub struct GenerateArgs {
    /// Checkpoint written by `rnnlm train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Words the text starts with (read after an implicit <eos>); words outside
    /// the vocabulary become <unk>.
    #[arg(long, default_value = "")]
    prompt: String,
    /// Tokens to generate after the prompt; each <eos> counts as one and is
    /// printed as a line break.
    #[arg(long, default_value_t = 50)]
    words: usize,
    /// Softmax temperature: below 1 sharpens the distribution, above 1
    /// flattens it, 0 always takes the most likely word.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Seed of the sampler (default: from the clock, printed on stderr).
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0: one per logical CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: GenerateArgs) -> CliResult {
    kernels_from_env()?;
    init_threads(args.threads)?;
    let mut lm = LanguageModel::load(&args.checkpoint)?;
    let seed = args.seed.unwrap_or_else(|| {
        let seed = clock_seed();
        tracing::info!("no --seed given; sampling with --seed {seed}");
        seed
    });

    let text = lm.generate(&args.prompt, args.words, args.temperature, seed)?;
    if lm.vocab().unk().is_some() {
        let mut unknown = UnknownWords::default();
        unknown.count(lm.vocab(), &args.prompt);
        unknown.warn();
    }
    let prompt = args.prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let separator = if prompt.is_empty() || text.is_empty() || text.starts_with('\n') {
        ""
    } else {
        " "
    };
    print!("{prompt}{separator}{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// Returns a seed from the wall clock's nanoseconds.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}
