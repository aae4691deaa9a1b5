//! Launching one throughput run of an implementation as its own process and
//! reading the JSON line it prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::roofline::Mode;

/// An implementation of the model that the harness can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// This repository's engine (`bench-suite/src/bin/engine.rs`).
    Rnnlm,
    /// `bench-suite/reference/torch_rnnlm.py`.
    Pytorch,
    /// `bench-suite/reference/numpy_rnnlm.py`.
    Numpy,
}

impl Implementation {
    /// Returns the name used on the command line and in the `impl` field of the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Rnnlm => "rnnlm",
            Implementation::Pytorch => "pytorch",
            Implementation::Numpy => "numpy",
        }
    }

    /// Whether the implementation runs on the Python environment.
    pub fn needs_python(self) -> bool {
        !matches!(self, Implementation::Rnnlm)
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Implementation {
    type Err = String;

    fn from_str(s: &str) -> Result<Implementation, String> {
        match s {
            "rnnlm" => Ok(Implementation::Rnnlm),
            "pytorch" => Ok(Implementation::Pytorch),
            "numpy" => Ok(Implementation::Numpy),
            _ => Err(format!(
                "unknown implementation {s:?}: use rnnlm, pytorch or numpy"
            )),
        }
    }
}

/// The settings of one throughput run, shared by every implementation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub mode: Mode,
    pub hidden: usize,
    pub threads: usize,
    pub windows: usize,
    pub warmup: usize,
    /// PTB directory; random token ids when `None`.
    pub data: Option<PathBuf>,
    /// Ask the engine for its per-phase profile (ignored by the references).
    pub profile: bool,
}

/// Output of one run: the parsed figures and the raw JSON line for the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub tokens_per_sec: f64,
    pub peak_rss_mb: f64,
    pub vocab: usize,
    pub batch: usize,
    pub bptt: usize,
    pub raw: serde_json::Value,
}

impl RunRecord {
    /// Returns the engine's share of wall time per phase, when it was profiled.
    pub fn profile(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.raw.get("profile")?.as_object()
    }
}

/// Error of one run, with the command line so it can be repeated by hand.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` exited with {status}; its stderr ends with:\n{stderr_tail}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr_tail: String,
    },
    #[error(
        "`{command}` printed no valid JSON line ({reason}); its stdout ends with:\n{stdout_tail}"
    )]
    BadOutput {
        command: String,
        reason: String,
        stdout_tail: String,
    },
}

/// The programs that run each implementation.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The release build of `bench-suite/src/bin/engine.rs`.
    pub engine: PathBuf,
    /// The Python interpreter of the references' environment.
    pub python: PathBuf,
    /// `bench-suite/reference`.
    pub reference_dir: PathBuf,
}

impl Launcher {
    /// Builds the command line of one run. Thread-count variables of the
    /// common math libraries are set too, so no library starts more threads
    /// than `spec.threads` behind the implementation's back.
    pub fn command(&self, implementation: Implementation, spec: &RunSpec) -> Command {
        let mut command = match implementation {
            Implementation::Rnnlm => Command::new(&self.engine),
            Implementation::Pytorch => self.python_command("torch_rnnlm.py"),
            Implementation::Numpy => self.python_command("numpy_rnnlm.py"),
        };
        command
            .arg("--mode")
            .arg(spec.mode.name())
            .arg("--hidden")
            .arg(spec.hidden.to_string())
            .arg("--threads")
            .arg(spec.threads.to_string())
            .arg("--windows")
            .arg(spec.windows.to_string())
            .arg("--warmup")
            .arg(spec.warmup.to_string());
        if let Some(data) = &spec.data {
            command.arg("--data").arg(data);
        }
        if spec.profile && implementation == Implementation::Rnnlm {
            command.arg("--profile");
        }
        let threads = spec.threads.to_string();
        for variable in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
            command.env(variable, &threads);
        }
        command
    }

    fn python_command(&self, script: &str) -> Command {
        let mut command = Command::new(&self.python);
        command.arg(self.reference_dir.join(script));
        command
    }

    /// Runs one throughput run to completion and parses its JSON line.
    pub fn run(
        &self,
        implementation: Implementation,
        spec: &RunSpec,
    ) -> Result<RunRecord, RunError> {
        let mut command = self.command(implementation, spec);
        let command_line = describe(&command);
        let output = command.output().map_err(|source| RunError::Spawn {
            command: command_line.clone(),
            source,
        })?;
        if !output.status.success() {
            return Err(RunError::Failed {
                command: command_line,
                status: output.status,
                stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        parse_run_line(&stdout).map_err(|reason| RunError::BadOutput {
            command: command_line,
            reason,
            stdout_tail: tail(&stdout, 5),
        })
    }
}

/// Parses the last non-empty line of a run's stdout.
pub fn parse_run_line(stdout: &str) -> Result<RunRecord, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or("stdout is empty")?;
    let raw: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("last line is not JSON: {e}"))?;
    let number = |field: &str| {
        raw.get(field)
            .and_then(serde_json::Value::as_f64)
            .ok_or(format!("field {field:?} is missing or not a number"))
    };
    let count = |field: &str| {
        raw.get(field)
            .and_then(serde_json::Value::as_u64)
            .map(|value| value as usize)
            .ok_or(format!("field {field:?} is missing or not a whole number"))
    };
    Ok(RunRecord {
        tokens_per_sec: number("tokens_per_sec")?,
        peak_rss_mb: number("peak_rss_mb")?,
        vocab: count("vocab")?,
        batch: count("batch")?,
        bptt: count("bptt")?,
        raw,
    })
}

/// Formats a command as a shell-like line for messages.
pub fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Checks that `python` exists and can import what `implementation` needs,
/// returning a message with the command that creates the environment when not.
pub fn check_python(python: &Path, implementation: Implementation) -> Result<(), String> {
    let setup = "create it with `bash bench-suite/reference/setup.sh` (needs python3 3.11 or newer \
                 and PyPI), pass another interpreter with --python, or run ours alone with \
                 --impls rnnlm";
    if !python.exists() {
        return Err(format!(
            "the Python environment of the references is missing: {} does not exist; {setup}",
            python.display()
        ));
    }
    let modules = match implementation {
        Implementation::Rnnlm => return Ok(()),
        Implementation::Pytorch => "torch, numpy",
        Implementation::Numpy => "numpy, threadpoolctl",
    };
    let output = Command::new(python)
        .arg("-c")
        .arg(format!("import {modules}"))
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {setup}", python.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} cannot import {modules} for {implementation}: {}; {setup}",
            python.display(),
            tail(&String::from_utf8_lossy(&output.stderr), 1)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            mode: Mode::Eval,
            hidden: 200,
            threads: 2,
            windows: 4,
            warmup: 1,
            data: None,
            profile: true,
        }
    }

    fn launcher() -> Launcher {
        Launcher {
            engine: PathBuf::from("/opt/engine"),
            python: PathBuf::from("/venv/bin/python"),
            reference_dir: PathBuf::from("/repo/bench-suite/reference"),
        }
    }

    #[test]
    fn command_for_engine_adds_profile() {
        let command = launcher().command(Implementation::Rnnlm, &spec());
        assert_eq!(
            describe(&command),
            "/opt/engine --mode eval --hidden 200 --threads 2 --windows 4 --warmup 1 --profile"
        );
    }

    #[test]
    fn command_for_pytorch_runs_script_without_profile() {
        let mut spec = spec();
        spec.data = Some(PathBuf::from("/data/ptb"));
        let command = launcher().command(Implementation::Pytorch, &spec);
        assert_eq!(
            describe(&command),
            "/venv/bin/python /repo/bench-suite/reference/torch_rnnlm.py --mode eval --hidden 200 \
             --threads 2 --windows 4 --warmup 1 --data /data/ptb"
        );
        let omp = command
            .get_envs()
            .find(|(key, _)| *key == "OMP_NUM_THREADS")
            .and_then(|(_, value)| value);
        assert_eq!(omp, Some(std::ffi::OsStr::new("2")));
    }

    #[test]
    fn parse_run_line_reads_last_line() {
        let stdout = "log line\n{\"impl\": \"numpy\", \"tokens_per_sec\": 35.5, \"peak_rss_mb\": 1185.4, \
                      \"vocab\": 10000, \"batch\": 20, \"bptt\": 35}\n\n";
        let record = parse_run_line(stdout).unwrap();
        assert_eq!(record.tokens_per_sec, 35.5);
        assert_eq!(record.peak_rss_mb, 1185.4);
        assert_eq!((record.vocab, record.batch, record.bptt), (10_000, 20, 35));
        assert!(record.profile().is_none());
    }

    #[test]
    fn parse_run_line_names_missing_field() {
        let error = parse_run_line("{\"tokens_per_sec\": 1.0}").unwrap_err();
        assert!(error.contains("peak_rss_mb"), "{error}");
        assert!(parse_run_line("").unwrap_err().contains("empty"));
        assert!(parse_run_line("not json").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn implementation_names_round_trip() {
        for implementation in [
            Implementation::Rnnlm,
            Implementation::Pytorch,
            Implementation::Numpy,
        ] {
            assert_eq!(implementation.name().parse(), Ok(implementation));
        }
        assert!("torch".parse::<Implementation>().is_err());
    }
}
