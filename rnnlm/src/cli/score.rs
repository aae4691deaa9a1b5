//! `rnnlm score`: one line per sentence in, one row of scores per line out.
//!
//! The output is tab-separated, with a header row of the column names:
//! - `line`: the 1-based line number;
//! - `log10_prob`, `ln_prob`: the log probability of the line's words and
//!   its closing `<eos>`, base 10 and natural;
//! - `tokens`: the number of words + 1;
//! - `perplexity`: exp(-ln_prob / tokens).
//!
//! A last row with `line` = `total` sums the log probabilities and tokens of
//! all lines and gives their joint perplexity. Each line is scored on its own
//! from a zero state, `<eos>` before its first word, as in
//! `rnnlm::api::LanguageModel::score_sentences`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;
use rnnlm::api::{ApiError, DEFAULT_SCORE_BATCH, LanguageModel, SentenceScore};
use rnnlm::runtime::{init_threads, kernels_from_env};

use super::{CliResult, UnknownWords};

/// Lines read and scored per call, so memory stays bounded on long inputs.
const LINES_PER_CHUNK: usize = 4096;

/// Column names of the output.
const HEADER: &str = "line\tlog10_prob\tln_prob\ttokens\tperplexity";

#[derive(Args, Debug)]
#[command(
    after_help = "Output columns (tab-separated, after a header row): line, log10_prob, \
ln_prob, tokens, perplexity. Each line's <eos> counts as a token. A last row `total` sums all lines."
)]
pub struct ScoreArgs {
    /// Checkpoint written by `rnnlm train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text file with one sentence per line, or - for standard input.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// Sentences scored at once as parallel streams.
    #[arg(long, default_value_t = DEFAULT_SCORE_BATCH)]
    batch: usize,
    /// Worker threads (0: one per logical CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: ScoreArgs) -> CliResult {
    kernels_from_env()?;
    init_threads(args.threads)?;
    let mut lm = LanguageModel::load(&args.checkpoint)?;
    lm.set_score_batch(args.batch)
        .map_err(|e| format!("--batch: {e}"))?;

    let (source_name, reader): (String, Box<dyn BufRead>) = if args.input.as_os_str() == "-" {
        ("<stdin>".into(), Box::new(io::stdin().lock()))
    } else {
        let file = File::open(&args.input).map_err(|e| {
            format!(
                "cannot open {}: {e}; check the path of the text to score",
                args.input.display()
            )
        })?;
        (
            args.input.display().to_string(),
            Box::new(BufReader::new(file)),
        )
    };

    let mut out = BufWriter::new(io::stdout().lock());
    match score_lines(&mut lm, reader, &source_name, &mut out) {
        Ok(()) => Ok(()),
        // Only writes return a bare io::Error; read errors are messages.
        Err(error) => match error.downcast::<io::Error>() {
            // The reader of the output stopped early (`rnnlm score ... | head`).
            Ok(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Ok(error) => Err(format!("cannot write the scores: {error}").into()),
            Err(error) => Err(error),
        },
    }
}

/// Reads `reader` chunk by chunk, scores every line and writes the rows.
fn score_lines(
    lm: &mut LanguageModel,
    mut reader: Box<dyn BufRead>,
    source_name: &str,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    writeln!(out, "{HEADER}")?;
    let mut total_log_prob = 0.0;
    let mut total_tokens = 0;
    let mut line_number = 0;
    let mut unknown = UnknownWords::default();
    let mut lines: Vec<String> = Vec::with_capacity(LINES_PER_CHUNK);
    let mut buffer = Vec::new();
    loop {
        lines.clear();
        while lines.len() < LINES_PER_CHUNK {
            buffer.clear();
            let read = reader
                .read_until(b'\n', &mut buffer)
                .map_err(|e| format!("cannot read {source_name}: {e}"))?;
            if read == 0 {
                break;
            }
            let line = String::from_utf8(std::mem::take(&mut buffer)).map_err(|_| {
                format!(
                    "{source_name}: line {} is not valid UTF-8; convert the text to UTF-8",
                    line_number + lines.len() + 1
                )
            })?;
            lines.push(line);
        }
        if lines.is_empty() {
            break;
        }

        let sentences: Vec<&str> = lines.iter().map(String::as_str).collect();
        if lm.vocab().unk().is_some() {
            for sentence in &sentences {
                unknown.count(lm.vocab(), sentence);
            }
        }
        let scores = lm
            .score_sentences(&sentences)
            .map_err(|error| match error {
                ApiError::UnknownWord {
                    word,
                    sentence: Some(index),
                } => format!(
                    "{source_name}: line {}: word {word:?} is not in the vocabulary, which has no \
                 `<unk>` entry to map it to; remove the word or use a model whose vocabulary \
                 has `<unk>`",
                    line_number + index + 1
                ),
                other => format!("{source_name}: {other}"),
            })?;
        for score in &scores {
            line_number += 1;
            write_row(out, &line_number.to_string(), score)?;
            total_log_prob += score.log_prob;
            total_tokens += score.tokens;
        }
    }

    if line_number == 0 {
        return Err(format!("{source_name} is empty: it needs at least one line to score").into());
    }
    let total = SentenceScore {
        log_prob: total_log_prob,
        tokens: total_tokens,
        perplexity: (-total_log_prob / total_tokens as f64).exp(),
        token_log_probs: Vec::new(),
    };
    write_row(out, "total", &total)?;
    out.flush()?;
    unknown.warn();
    Ok(())
}

fn write_row(out: &mut impl Write, label: &str, score: &SentenceScore) -> io::Result<()> {
    writeln!(
        out,
        "{label}\t{:.6}\t{:.6}\t{}\t{:.4}",
        score.log10_prob(),
        score.log_prob,
        score.tokens,
        score.perplexity
    )
}
