//! Training progress for people and programs: a progress bar on a terminal
//! (plain lines otherwise), one summary line per epoch, JSON metrics lines,
//! the best checkpoint written whenever validation improves, and a resume
//! file with the last parameters and the training state after every epoch,
//! every `--save-every` minutes and when a stop is requested.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rnnlm::checkpoint;
use rnnlm::corpus::Vocab;
use rnnlm::model::Model;
use rnnlm::train::{EpochSummary, Observer, Progress, TrainError, TrainState, WindowAction};
use serde_json::json;

pub struct CliObserver {
    metrics: Option<File>,
    save: PathBuf,
    resume: PathBuf,
    vocab: Vocab,
    info: HashMap<String, String>,
    bar: Option<ProgressBar>,
    /// Time between resume-file writes within an epoch; `None` writes it
    /// at epoch ends only.
    save_every: Option<Duration>,
    last_save: Instant,
    /// Set by a signal handler: save the state and stop after this window.
    stop_requested: Arc<AtomicBool>,
}

/// Returns the path of the resume file (last parameters and training state)
/// of a run whose best model goes to `save`: beside it, the file name with a
/// `.safetensors` ending replaced by, or any other name followed by,
/// `.resume.safetensors`.
pub fn resume_path(save: &Path) -> PathBuf {
    let name = save.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    save.with_file_name(format!("{stem}.resume.safetensors"))
}

/// Metadata key of the serialised [`TrainState`] in a resume file.
pub const STATE_KEY: &str = "train_state";

/// Metadata key of the validation perplexity at full precision. The
/// `valid_ppl` key has it as printed.
pub const VALID_PPL_KEY: &str = "valid_ppl_full";

impl CliObserver {
    pub fn new(
        metrics: Option<&Path>,
        save: PathBuf,
        vocab: Vocab,
        info: HashMap<String, String>,
        save_every: Option<Duration>,
    ) -> std::io::Result<CliObserver> {
        let metrics = match metrics {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot open metrics file {}: {e}", path.display()),
                        )
                    })?,
            ),
            None => None,
        };
        Ok(CliObserver {
            metrics,
            resume: resume_path(&save),
            save,
            vocab,
            info,
            bar: None,
            save_every,
            last_save: Instant::now(),
            stop_requested: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Returns the flag that makes training save its state and stop after
    /// the current window, for a signal handler to set.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop_requested)
    }

    /// Writes the resume file: the parameters of `model` and `state`.
    fn save_resume(
        &mut self,
        model: &Model,
        state: &TrainState,
        mut info: HashMap<String, String>,
    ) -> Result<(), TrainError> {
        info.insert(
            STATE_KEY.into(),
            serde_json::to_string(state).expect("training state serialises"),
        );
        checkpoint::save(&self.resume, model, &self.vocab, &info)
            .map_err(|e| TrainError::Observer(e.to_string()))?;
        self.last_save = Instant::now();
        Ok(())
    }

    fn write_metrics(&mut self, record: serde_json::Value) {
        if let Some(file) = &mut self.metrics
            && let Err(error) = writeln!(file, "{record}")
        {
            tracing::warn!(
                "cannot write the metrics file: {error}; metrics are no longer recorded"
            );
            self.metrics = None;
        }
    }

    /// Writes a `resume` record: the run continues from `state`, and records
    /// after the state's `tokens_seen` that are already in the file belong to
    /// an interrupted epoch that is trained again.
    pub fn resumed(&mut self, state: &TrainState) {
        self.write_metrics(json!({
            "event": "resume",
            "epoch": state.epochs_done,
            "step": state.global_step,
            "tokens_seen": state.tokens_seen,
            "lr": state.lr,
            "best_valid_ppl": state.best_valid_ppl,
        }));
    }

    /// Writes the closing metrics record.
    pub fn finish(&mut self, best_valid_ppl: f64, test_ppl: f64) -> std::io::Result<()> {
        self.write_metrics(
            json!({"event": "end", "best_valid_ppl": best_valid_ppl, "test_ppl": test_ppl}),
        );
        if let Some(file) = &mut self.metrics {
            file.sync_all()?;
        }
        Ok(())
    }

    fn bar_for(&mut self, progress: &Progress) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(progress.steps_in_epoch as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("static template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(progress.epoch.to_string());
            bar
        })
    }
}

impl Observer for CliObserver {
    fn report_every(&self) -> usize {
        // A terminal bar wants frequent updates; a log file wants fewer lines,
        // about one every 15 s at the default size on 2 cores.
        if std::io::stderr().is_terminal() {
            5
        } else {
            50
        }
    }

    fn on_progress(&mut self, progress: &Progress) {
        let message = format!(
            "{:.0} tok/s | ppl {:.2} | lr {}",
            progress.tokens_per_sec, progress.train_ppl, progress.lr
        );
        if std::io::stderr().is_terminal() {
            let bar = self.bar_for(progress);
            bar.set_position(progress.step as u64);
            bar.set_message(message);
        } else {
            let eta = progress.epoch_eta_secs.round() as u64;
            eprintln!(
                "epoch {} window {}/{} | {message} | epoch ends in {}m{:02}s",
                progress.epoch,
                progress.step,
                progress.steps_in_epoch,
                eta / 60,
                eta % 60
            );
        }
        self.write_metrics(json!({
            "event": "progress",
            "epoch": progress.epoch,
            "step": progress.global_step,
            "tokens_seen": progress.tokens_seen,
            "tokens_per_sec": progress.tokens_per_sec,
            "train_ppl": progress.train_ppl,
            "lr": progress.lr,
            "elapsed_secs": progress.elapsed_secs,
        }));
    }

    fn on_epoch(
        &mut self,
        summary: &EpochSummary,
        model: &Model,
        state: &TrainState,
    ) -> Result<(), TrainError> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let valid = format!("{:.2}", summary.valid_ppl);
        println!(
            "epoch {:>3} | train ppl {:8.2} | valid ppl {valid:>8} | lr {:<8} | {:6.0} tok/s | {:7.1}s elapsed{}",
            summary.epoch,
            summary.train_ppl,
            summary.lr,
            summary.tokens_per_sec,
            summary.elapsed_secs,
            if summary.improved { " | saved" } else { "" }
        );
        self.write_metrics(json!({
            "event": "epoch",
            "epoch": summary.epoch,
            "step": summary.global_step,
            "tokens_seen": summary.tokens_seen,
            "tokens_per_sec": summary.tokens_per_sec,
            "train_ppl": summary.train_ppl,
            "valid_ppl": summary.valid_ppl,
            "lr": summary.lr,
            "elapsed_secs": summary.elapsed_secs,
            "improved": summary.improved,
        }));
        let mut info = self.info.clone();
        info.insert("valid_ppl".into(), valid);
        info.insert(VALID_PPL_KEY.into(), summary.valid_ppl.to_string());
        info.insert("epoch".into(), summary.epoch.to_string());
        // The best model first: a crash between the two writes then leaves
        // a resume file one epoch behind, which only repeats that epoch.
        if summary.improved {
            checkpoint::save(&self.save, model, &self.vocab, &info)
                .map_err(|e| TrainError::Observer(e.to_string()))?;
        }
        self.save_resume(model, state, info)
    }

    fn after_window(&mut self) -> WindowAction {
        if self.stop_requested.load(Ordering::Relaxed) {
            return WindowAction::Stop;
        }
        match self.save_every {
            Some(every) if self.last_save.elapsed() >= every => WindowAction::Checkpoint,
            _ => WindowAction::Continue,
        }
    }

    fn on_checkpoint(&mut self, model: &Model, state: &TrainState) -> Result<(), TrainError> {
        self.save_resume(model, state, self.info.clone())?;
        let windows = state.partial_epoch.as_ref().map_or(0, |p| p.windows_done);
        let message = format!(
            "saved the state after window {windows} of epoch {} to {}",
            state.epochs_done + 1,
            self.resume.display()
        );
        match &self.bar {
            Some(bar) => bar.suspend(|| tracing::info!("{message}")),
            None => tracing::info!("{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_path_keeps_each_name_apart() {
        let cases = [
            ("rnnlm-best.safetensors", "rnnlm-best.resume.safetensors"),
            ("runs/a.safetensors", "runs/a.resume.safetensors"),
            ("run.v1", "run.v1.resume.safetensors"),
            ("run.v2", "run.v2.resume.safetensors"),
            ("model", "model.resume.safetensors"),
        ];
        for (save, resume) in cases {
            assert_eq!(resume_path(Path::new(save)), Path::new(resume), "{save}");
        }
    }
}
