//! Command-line interface: argument parsing and dispatch to subcommands.

mod eval;
mod export;
mod generate;
mod observer;
mod plot;
mod score;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rnnlm",
    version,
    about = "Train and run LSTM language models on CPUs, fast"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on the Penn Treebank (fetched when missing) and keep the best.
    Train(train::TrainArgs),
    /// Print the perplexity of a checkpoint on a split.
    Eval(eval::EvalArgs),
    /// Generate text from a checkpoint, optionally after a prompt.
    Generate(generate::GenerateArgs),
    /// Print the log probability and perplexity of each line of a text.
    Score(score::ScoreArgs),
    /// Write a checkpoint as a PyTorch state dict, vocab.txt and config.json.
    Export(export::ExportArgs),
    /// Draw training and validation perplexity from a metrics file as a PNG.
    Plot(plot::PlotArgs),
}

/// Runs the CLI and turns an error into a message on stderr and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RNNLM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Score(args) => score::run(args),
        Command::Export(args) => export::run(args),
        Command::Plot(args) => plot::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<ExitError>() {
            Some(exit) => {
                eprintln!("{}", exit.message);
                ExitCode::from(exit.code)
            }
            None => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Errors of any subcommand, printed as one message.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// An end that is not a failure of the command, such as a stop the user
/// requested: its message is printed without the `error:` prefix and the
/// process exits with `code` instead of 1.
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// Counts the words of input text that the model's vocabulary lacks, which
/// the model reads as `<unk>`, to warn about them once at the end.
#[derive(Default)]
pub struct UnknownWords {
    words: usize,
    unknown: usize,
    /// The first few unknown words, for the warning.
    examples: Vec<String>,
}

impl UnknownWords {
    /// Number of unknown words the warning quotes.
    const EXAMPLES: usize = 5;

    /// Counts the whitespace-separated words of `text` and those `vocab` lacks.
    pub fn count(&mut self, vocab: &rnnlm::corpus::Vocab, text: &str) {
        for word in text.split_whitespace() {
            self.words += 1;
            if vocab.id(word).is_none() {
                self.unknown += 1;
                if self.examples.len() < Self::EXAMPLES {
                    self.examples.push(format!("{word:?}"));
                }
            }
        }
    }

    /// Logs a warning when any word was unknown.
    pub fn warn(&self) {
        if self.unknown > 0 {
            tracing::warn!(
                "{} of {} words are not in the model's vocabulary and count as <unk> (first: {}); \
                 a model trained on PTB knows lower-case words, with numbers written as N",
                self.unknown,
                self.words,
                self.examples.join(", ")
            );
        }
    }
}
