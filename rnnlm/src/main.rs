//! The `rnnlm` command: train, eval, generate, score, export.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
