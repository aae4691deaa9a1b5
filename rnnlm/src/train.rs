//! Training with truncated BPTT and SGD, by the textbook's recipe.

use std::time::Instant;

use rayon::prelude::*;
use rnnlm_kernels::{DropoutRng, Kernels, dropout_rng};

use crate::batch::Streams;
use crate::error::ConfigError;
use crate::eval::{EvalResult, Evaluator, Protocol};
use crate::model::Model;
use crate::profile::Phase;
use crate::step::{Compute, Mode, backward, forward};
use crate::workspace::{Dropout, Workspace};

/// When the learning rate is divided.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LrSchedule {
    /// Divide by `factor` after each epoch whose validation perplexity did not
    /// improve on the best so far (the textbook's rule, factor 4).
    Plateau { factor: f32 },
    /// Divide by `factor` after every epoch from epoch `after` on (1-based),
    /// whatever the validation perplexity (Zaremba et al.'s schedule).
    AfterEpoch { after: usize, factor: f32 },
}

/// Hyperparameters of a training run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// B: parallel streams per window.
    pub batch: usize,
    /// T: steps per window (truncated BPTT length).
    pub bptt: usize,
    /// Initial SGD learning rate, on the mean loss of a window.
    pub lr: f32,
    pub schedule: LrSchedule,
    /// Maximum global L2 norm of the gradient.
    pub clip: f32,
    pub epochs: usize,
    pub dropout: Dropout,
    /// End each epoch after this many windows (smoke runs, benchmarks).
    pub max_steps: Option<usize>,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Streams of the validation pass.
    pub eval_batch: usize,
}

impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            batch: 20,
            bptt: 35,
            lr: 20.0,
            schedule: LrSchedule::Plateau { factor: 4.0 },
            clip: 0.25,
            epochs: 40,
            dropout: Dropout::uniform(0.5),
            max_steps: None,
            seed: 1,
            eval_batch: 10,
        }
    }
}

impl TrainOptions {
    /// Checks every option against its allowed range and against the corpus
    /// length, naming the flag on error.
    pub fn validate(&self, train_tokens: usize) -> Result<(), ConfigError> {
        if self.batch == 0 {
            return Err(ConfigError::new("--batch", self.batch, "at least 1"));
        }
        if self.bptt == 0 {
            return Err(ConfigError::new("--bptt", self.bptt, "at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ConfigError::new("--lr", self.lr, "a finite number above 0"));
        }
        if self.clip.is_nan() || self.clip <= 0.0 {
            return Err(ConfigError::new(
                "--clip",
                self.clip,
                "a number above 0 (inf disables clipping)",
            ));
        }
        if self.epochs == 0 {
            return Err(ConfigError::new("--epochs", self.epochs, "at least 1"));
        }
        if self.eval_batch == 0 {
            return Err(ConfigError::new(
                "--eval-batch",
                self.eval_batch,
                "at least 1",
            ));
        }
        if self.max_steps == Some(0) {
            return Err(ConfigError::new("--max-steps", 0, "at least 1"));
        }
        for (flag, p) in [
            ("--dropout-embed", self.dropout.embed),
            ("--dropout-between", self.dropout.between),
            ("--dropout-output", self.dropout.output),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ConfigError::new(flag, p, "a probability in [0, 1)"));
            }
        }
        match self.schedule {
            LrSchedule::Plateau { factor } | LrSchedule::AfterEpoch { factor, .. }
                if !(factor >= 1.0 && factor.is_finite()) =>
            {
                return Err(ConfigError::new(
                    "--lr-decay",
                    factor,
                    "a finite factor of at least 1",
                ));
            }
            _ => {}
        }
        if train_tokens / self.batch < 2 {
            return Err(ConfigError::new(
                "--batch",
                self.batch,
                format!(
                    "at most {} for a training corpus of {train_tokens} tokens (each stream needs 2)",
                    train_tokens / 2
                ),
            ));
        }
        Ok(())
    }
}

/// A progress report sent while an epoch runs.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Progress {
    /// 1-based epoch.
    pub epoch: usize,
    /// Windows done in this epoch and in the whole epoch.
    pub step: usize,
    pub steps_in_epoch: usize,
    /// Windows done since training started.
    pub global_step: usize,
    /// Training tokens processed since training started.
    pub tokens_seen: usize,
    /// exp(mean training loss) over the windows since the last report.
    pub train_ppl: f64,
    pub lr: f32,
    /// Training tokens per second since the epoch started.
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    /// Estimated seconds until the epoch's last window, at the epoch's pace
    /// so far (validation not included).
    pub epoch_eta_secs: f64,
}

/// The end of an epoch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EpochSummary {
    pub epoch: usize,
    pub train_ppl: f64,
    pub valid_ppl: f64,
    /// The learning rate the epoch used.
    pub lr: f32,
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    pub tokens_seen: usize,
    pub global_step: usize,
    /// Whether this epoch's parameters are the best so far.
    pub improved: bool,
}

/// What the trainer does after a window, as its observer decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowAction {
    Continue,
    /// Hand the state to [`Observer::on_checkpoint`], then continue.
    Checkpoint,
    /// Hand the state to [`Observer::on_checkpoint`], then stop with
    /// [`TrainError::Interrupted`].
    Stop,
}

/// Receives progress; the CLI draws a bar and writes metrics and checkpoints.
pub trait Observer {
    /// About every `report_every` windows.
    fn on_progress(&mut self, progress: &Progress);
    /// After each epoch's validation, with the model as it is then and the
    /// state that [`Trainer::resume`] needs to continue from here.
    fn on_epoch(
        &mut self,
        summary: &EpochSummary,
        model: &Model,
        state: &TrainState,
    ) -> Result<(), TrainError>;
    /// Returns the number of windows between progress reports.
    fn report_every(&self) -> usize {
        50
    }
    /// Called after every window. The default never checkpoints or stops.
    fn after_window(&mut self) -> WindowAction {
        WindowAction::Continue
    }
    /// Receives the model and the state to continue from in the middle of an
    /// epoch, when [`Observer::after_window`] requested them.
    fn on_checkpoint(&mut self, _model: &Model, _state: &TrainState) -> Result<(), TrainError> {
        Ok(())
    }
}

/// The progress of a run after an epoch or, with `partial_epoch`, after any
/// window. With the parameters of that moment, it is everything
/// [`Trainer::resume`] needs to continue the run as if it had not stopped
/// (same seed and thread count, same numbers).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epochs completed, validation included.
    pub epochs_done: usize,
    /// How far the run got into epoch `epochs_done + 1`; `None` at an
    /// epoch's end.
    #[serde(default)]
    pub partial_epoch: Option<PartialEpoch>,
    /// The learning rate of the next window.
    pub lr: f32,
    /// Best validation perplexity so far: infinite before the first
    /// validation, which JSON stores as `null`.
    #[serde(with = "infinity_as_null")]
    pub best_valid_ppl: f64,
    /// Windows trained since the run started.
    pub global_step: usize,
    /// Training tokens seen since the run started.
    pub tokens_seen: usize,
    /// Seconds spent by the run so far, summed over its sessions.
    pub elapsed_secs: f64,
    /// The dropout generator, positioned for the next window.
    pub rng: DropoutRng,
}

/// The part of an epoch that a run trained before it saved its state:
/// the position, the sums behind the epoch's figures, and the LSTM states
/// carried into the next window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialEpoch {
    /// Windows of the epoch trained.
    pub windows_done: usize,
    /// Training tokens in those windows.
    pub tokens: usize,
    /// Sum of the windows' mean losses.
    pub loss_sum: f64,
    /// Sum of the mean losses, and the number of windows, since the last
    /// progress report.
    pub report_loss_sum: f64,
    pub report_windows: usize,
    /// Seconds spent training those windows.
    pub train_secs: f64,
    /// The hidden and cell states `(B, H)` carried into the next window:
    /// h then c of layer 0, then of layer 1, and so on.
    pub carried_state: Vec<f32>,
}

impl TrainState {
    /// Checks the values a hand-edited or damaged file could get wrong,
    /// naming the field on error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let windows_done = self.partial_epoch.as_ref().map_or(0, |p| p.windows_done);
        if self.epochs_done == 0 && windows_done == 0 {
            return Err(ConfigError::new(
                "epochs_done",
                0,
                "at least 1, or a partial epoch of at least 1 window (a state is saved \
                 after a window)",
            ));
        }
        if let Some(partial) = &self.partial_epoch {
            for (field, value) in [
                ("partial_epoch.loss_sum", partial.loss_sum),
                ("partial_epoch.report_loss_sum", partial.report_loss_sum),
                ("partial_epoch.train_secs", partial.train_secs),
            ] {
                if !(value >= 0.0 && value.is_finite()) {
                    return Err(ConfigError::new(
                        field,
                        value,
                        "a finite number of at least 0",
                    ));
                }
            }
            if partial.report_windows > partial.windows_done {
                return Err(ConfigError::new(
                    "partial_epoch.report_windows",
                    partial.report_windows,
                    format!("at most windows_done ({})", partial.windows_done),
                ));
            }
            if let Some(value) = partial.carried_state.iter().find(|v| !v.is_finite()) {
                return Err(ConfigError::new(
                    "partial_epoch.carried_state",
                    value,
                    "finite numbers",
                ));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ConfigError::new("lr", self.lr, "a finite number above 0"));
        }
        // Only a state within the first epoch has no validation behind it.
        let unvalidated = self.epochs_done == 0 && self.best_valid_ppl == f64::INFINITY;
        if !(self.best_valid_ppl >= 1.0 && self.best_valid_ppl.is_finite() || unvalidated) {
            return Err(ConfigError::new(
                "best_valid_ppl",
                self.best_valid_ppl,
                "a finite perplexity of at least 1 after the first epoch",
            ));
        }
        if !(self.elapsed_secs >= 0.0 && self.elapsed_secs.is_finite()) {
            return Err(ConfigError::new(
                "elapsed_secs",
                self.elapsed_secs,
                "a finite number of seconds",
            ));
        }
        Ok(())
    }
}

/// Serde format of an `f64` that may be infinite, such as a best
/// perplexity before the first validation: JSON has no infinity, so it is
/// written as `null`.
mod infinity_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        let finite = (*value != f64::INFINITY).then_some(*value);
        finite.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
    }
}

/// Returns how to continue after a divergence in `epoch`: from the last
/// saved state, which exists for certain after a completed epoch.
fn resume_hint(epoch: usize) -> &'static str {
    if epoch > 1 {
        ", and --resume with a lower --lr continues from the last saved state"
    } else {
        ""
    }
}

/// Failures during training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "training diverged at epoch {epoch}, window {step}: the {what} is {value}; \
         lower --lr (now {lr}) or --clip, or check the data; the best model so far was kept{}",
        resume_hint(*epoch)
    )]
    Diverged {
        epoch: usize,
        step: usize,
        what: &'static str,
        value: f64,
        lr: f32,
    },
    #[error("{0}")]
    Observer(String),
    /// The observer requested a stop, after it received the state.
    #[error("training stopped on request after window {window} of {windows} in epoch {epoch}")]
    Interrupted {
        epoch: usize,
        window: usize,
        windows: usize,
    },
}

/// The state of one training run: the model, its gradient buffer, the best
/// parameters so far and every buffer a step needs, all allocated up front.
pub struct Trainer {
    pub cx: Compute,
    pub model: Model,
    pub options: TrainOptions,
    grads: Vec<f32>,
    /// Whether `run` keeps a copy of the best parameters.
    keep_best: bool,
    /// The best parameters so far; empty until `run` starts, and always
    /// when `keep_best` is off.
    best_params: Vec<f32>,
    best_valid_ppl: f64,
    ws: Workspace,
    evaluator: Evaluator,
    rng: DropoutRng,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    lr: f32,
    /// Epochs completed, windows and training tokens since the run started,
    /// and seconds spent in earlier sessions of a resumed run.
    epochs_done: usize,
    global_step: usize,
    tokens_seen: usize,
    earlier_secs: f64,
    /// The trained part of the first epoch of `run`, after a resume from
    /// the middle of an epoch.
    partial_epoch: Option<PartialEpoch>,
    /// Whether the pool of the first window has run a faer product on every
    /// thread, so faer's per-thread scratch exists (`prepare_threads`).
    faer_scratch_ready: bool,
}

/// Result of a single training window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Mean loss over the window's targets.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl Trainer {
    pub fn new(model: Model, options: TrainOptions, kernels: Kernels, threads: usize) -> Trainer {
        let rows = options.batch * options.bptt;
        Trainer {
            cx: Compute::new(kernels, threads),
            grads: vec![0.0; model.layout.total],
            keep_best: true,
            best_params: Vec::new(),
            best_valid_ppl: f64::INFINITY,
            ws: Workspace::new(&model.config, options.batch, options.bptt, true),
            evaluator: Evaluator::new(&model, options.eval_batch, options.bptt),
            rng: dropout_rng(options.seed),
            inputs: vec![0; rows],
            targets: vec![0; rows],
            lr: options.lr,
            epochs_done: 0,
            global_step: 0,
            tokens_seen: 0,
            earlier_secs: 0.0,
            partial_epoch: None,
            faer_scratch_ready: false,
            model,
            options,
        }
    }

    /// Returns the learning rate the next window uses.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Runs one training window: forward, backward, clip, SGD update. The
    /// window's ids are `(steps, B)` time-major. Carries the state on.
    pub fn train_window(&mut self, steps: usize) -> StepResult {
        if !self.faer_scratch_ready {
            // Done here rather than in `new`, which may run outside the pool.
            crate::matmul::prepare_threads();
            self.faer_scratch_ready = true;
        }
        let rows = steps * self.options.batch;
        let mode = Mode::Train {
            dropout: &self.options.dropout,
            rng: &mut self.rng,
        };
        let loss_sum = forward(
            self.cx,
            &self.model,
            &mut self.ws,
            &self.inputs[..rows],
            &self.targets[..rows],
            steps,
            mode,
        );
        backward(
            self.cx,
            &self.model,
            &mut self.ws,
            &self.inputs[..rows],
            steps,
            &self.options.dropout,
            &mut self.grads,
        );

        let cx = self.cx;
        let grad_norm = cx.time(Phase::Optimizer, || self.clip_and_update());
        self.ws.carry_state(steps);
        StepResult {
            loss: loss_sum / rows as f64,
            grad_norm,
        }
    }

    /// Takes the global gradient norm and applies the SGD update, with the
    /// step scaled down so the update's gradient has norm at most `clip`.
    /// Skips the update when the norm is not finite. Returns the norm before
    /// clipping.
    fn clip_and_update(&mut self) -> f64 {
        let k = self.cx.kernels;
        let grad_norm = self
            .grads
            .par_chunks(CHUNK)
            .map(|chunk| k.sum_squares(chunk))
            .sum::<f64>()
            .sqrt();
        let mut step_size = self.lr;
        if grad_norm > self.options.clip as f64 {
            step_size *= (self.options.clip as f64 / grad_norm) as f32;
        }
        if grad_norm.is_finite() {
            self.model
                .params
                .par_chunks_mut(CHUNK)
                .zip(self.grads.par_chunks(CHUNK))
                .for_each(|(p, g)| k.sgd_update(p, g, step_size));
        }
        grad_norm
    }

    /// Copies window `window` of `streams` into the step's id buffers and
    /// returns its number of steps.
    pub fn load_window(&mut self, streams: &Streams<'_>, window: usize) -> usize {
        streams.fill(
            window,
            self.options.bptt,
            &mut self.inputs,
            &mut self.targets,
        )
    }

    /// Validation perplexity of the current parameters by the full protocol.
    pub fn evaluate(&mut self, tokens: &[u32], eos: u32) -> EvalResult {
        self.evaluator
            .evaluate(self.cx, &self.model, tokens, eos, Protocol::Full)
    }

    /// Continues a run from `state`, which an observer received, with
    /// `self.model` holding the parameters of that moment: `run` then starts
    /// at epoch `state.epochs_done + 1`, after the windows of its partial
    /// epoch, and counts windows, tokens and time on from there. A
    /// best-parameter copy kept in memory starts from the resumed parameters,
    /// which need not be the best of the run: the CLI turns that copy off and
    /// keeps the best model on disk.
    ///
    /// # Panics
    /// When `state` fails [`TrainState::validate`] or its carried states do
    /// not fit this trainer's model and batch size.
    pub fn resume(&mut self, state: TrainState) {
        if let Err(error) = state.validate() {
            panic!("Trainer::resume: invalid training state: {error}");
        }
        if let Some(partial) = &state.partial_epoch {
            let expected = self.carried_state_len();
            assert_eq!(
                partial.carried_state.len(),
                expected,
                "Trainer::resume: the carried state has {} values, but this model and batch \
                 size carry {expected}",
                partial.carried_state.len()
            );
        }
        self.partial_epoch = state.partial_epoch;
        self.epochs_done = state.epochs_done;
        self.lr = state.lr;
        self.best_valid_ppl = state.best_valid_ppl;
        self.global_step = state.global_step;
        self.tokens_seen = state.tokens_seen;
        self.earlier_secs = state.elapsed_secs;
        self.rng = state.rng;
    }

    /// Returns the number of values in [`PartialEpoch::carried_state`]: h
    /// and c, `(B, H)` each, for every layer.
    pub fn carried_state_len(&self) -> usize {
        let config = &self.model.config;
        2 * config.layers * self.options.batch * config.hidden
    }

    /// Returns the state to continue from after the window just trained,
    /// with the LSTM states it carries into the next one.
    fn state_within_epoch(&self, mut partial: PartialEpoch, elapsed_secs: f64) -> TrainState {
        partial.carried_state.clear();
        partial.carried_state.reserve(self.carried_state_len());
        for layer in 0..self.model.config.layers {
            let (h, c) = self.ws.carried_state(layer);
            partial.carried_state.extend_from_slice(h);
            partial.carried_state.extend_from_slice(c);
        }
        TrainState {
            partial_epoch: Some(partial),
            ..self.state_after_epoch(elapsed_secs)
        }
    }

    /// Returns the state to continue from after the last completed epoch.
    fn state_after_epoch(&self, elapsed_secs: f64) -> TrainState {
        TrainState {
            epochs_done: self.epochs_done,
            partial_epoch: None,
            lr: self.lr,
            best_valid_ppl: self.best_valid_ppl,
            global_step: self.global_step,
            tokens_seen: self.tokens_seen,
            elapsed_secs,
            rng: self.rng.clone(),
        }
    }

    /// Starts an epoch: from its beginning with zero states, or where a
    /// resumed state left it.
    fn start_epoch(&mut self) -> PartialEpoch {
        match self.partial_epoch.take() {
            Some(mut partial) => {
                let state = self.options.batch * self.model.config.hidden;
                let carried = std::mem::take(&mut partial.carried_state);
                for (layer, hc) in carried.chunks_exact(2 * state).enumerate() {
                    let (h, c) = hc.split_at(state);
                    self.ws.set_carried_state(layer, h, c);
                }
                partial
            }
            None => {
                self.ws.reset_state();
                PartialEpoch::default()
            }
        }
    }

    /// Epochs completed so far, counting those before a resume.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// Trains from epoch `epochs_done() + 1` to `options.epochs`, validating
    /// after each. Leaves the best parameters in `self.model`: of this call's
    /// epochs and the starting ones, or the last ones when the best are not
    /// kept in memory. Returns the summaries of the epochs it ran.
    pub fn run(
        &mut self,
        train: &[u32],
        valid: &[u32],
        eos: u32,
        observer: &mut dyn Observer,
    ) -> Result<Vec<EpochSummary>, TrainError> {
        self.options.validate(train.len())?;
        if self.keep_best && self.best_params.is_empty() {
            self.best_params = self.model.params.clone();
        }
        let streams = Streams::new(train, self.options.batch).ok_or_else(|| {
            ConfigError::new(
                "--batch",
                self.options.batch,
                "small enough that every stream has 2 tokens",
            )
        })?;
        let windows = streams.windows(self.options.bptt);
        let steps_in_epoch = self
            .options
            .max_steps
            .map_or(windows, |max| max.min(windows));
        let start = Instant::now();
        let earlier_secs = self.earlier_secs;
        let elapsed = |start: Instant| earlier_secs + start.elapsed().as_secs_f64();
        let mut summaries = Vec::new();

        for epoch in self.epochs_done + 1..=self.options.epochs {
            let epoch_start = Instant::now();
            let mut sums = self.start_epoch();
            if sums.windows_done > steps_in_epoch {
                return Err(ConfigError::new(
                    "--max-steps",
                    steps_in_epoch,
                    format!(
                        "at least the {} windows of epoch {epoch} that the resumed state \
                         has already trained",
                        sums.windows_done
                    ),
                )
                .into());
            }
            let resumed_secs = sums.train_secs;
            let epoch_secs =
                |epoch_start: Instant| resumed_secs + epoch_start.elapsed().as_secs_f64();

            for window in sums.windows_done..steps_in_epoch {
                let steps = self.load_window(&streams, window);
                let result = self.train_window(steps);
                if !result.loss.is_finite() || !result.grad_norm.is_finite() {
                    self.restore_best();
                    let (what, value) = if result.loss.is_finite() {
                        ("gradient norm", result.grad_norm)
                    } else {
                        ("loss", result.loss)
                    };
                    return Err(TrainError::Diverged {
                        epoch,
                        step: window + 1,
                        what,
                        value,
                        lr: self.lr,
                    });
                }
                let tokens = steps * self.options.batch;
                sums.tokens += tokens;
                self.tokens_seen += tokens;
                self.global_step += 1;
                sums.windows_done += 1;
                sums.loss_sum += result.loss;
                sums.report_loss_sum += result.loss;
                sums.report_windows += 1;

                if sums.report_windows == observer.report_every() || window + 1 == steps_in_epoch {
                    let secs = epoch_secs(epoch_start);
                    observer.on_progress(&Progress {
                        epoch,
                        step: window + 1,
                        steps_in_epoch,
                        global_step: self.global_step,
                        tokens_seen: self.tokens_seen,
                        train_ppl: (sums.report_loss_sum / sums.report_windows as f64).exp(),
                        lr: self.lr,
                        tokens_per_sec: sums.tokens as f64 / secs,
                        elapsed_secs: elapsed(start),
                        epoch_eta_secs: secs / (window + 1) as f64
                            * (steps_in_epoch - window - 1) as f64,
                    });
                    sums.report_loss_sum = 0.0;
                    sums.report_windows = 0;
                }

                let action = observer.after_window();
                if action != WindowAction::Continue {
                    sums.train_secs = epoch_secs(epoch_start);
                    let state = self.state_within_epoch(sums.clone(), elapsed(start));
                    observer.on_checkpoint(&self.model, &state)?;
                    if action == WindowAction::Stop {
                        self.restore_best();
                        return Err(TrainError::Interrupted {
                            epoch,
                            window: window + 1,
                            windows: steps_in_epoch,
                        });
                    }
                }
            }
            let train_secs = epoch_secs(epoch_start);

            let valid_ppl = self.evaluate(valid, eos).perplexity();
            if !valid_ppl.is_finite() {
                self.restore_best();
                return Err(TrainError::Diverged {
                    epoch,
                    step: steps_in_epoch,
                    what: "validation perplexity",
                    value: valid_ppl,
                    lr: self.lr,
                });
            }
            let improved = valid_ppl < self.best_valid_ppl;
            let summary = EpochSummary {
                epoch,
                train_ppl: (sums.loss_sum / sums.windows_done as f64).exp(),
                valid_ppl,
                lr: self.lr,
                tokens_per_sec: sums.tokens as f64 / train_secs,
                elapsed_secs: elapsed(start),
                tokens_seen: self.tokens_seen,
                global_step: self.global_step,
                improved,
            };
            if improved {
                self.best_valid_ppl = valid_ppl;
                if !self.best_params.is_empty() {
                    self.best_params.copy_from_slice(&self.model.params);
                }
            }
            match self.options.schedule {
                LrSchedule::Plateau { factor } if !improved => self.lr /= factor,
                LrSchedule::AfterEpoch { after, factor } if epoch >= after => self.lr /= factor,
                _ => {}
            }
            self.epochs_done = epoch;
            self.earlier_secs = summary.elapsed_secs;
            let state = self.state_after_epoch(summary.elapsed_secs);
            observer.on_epoch(&summary, &self.model, &state)?;
            summaries.push(summary);
        }
        self.restore_best();
        Ok(summaries)
    }

    /// Chooses whether the trainer keeps a copy of the best parameters (one
    /// parameter-sized buffer, on by default) and restores it when training
    /// ends or diverges. A caller that writes a checkpoint at every
    /// improvement can turn it off to save that memory, and reload the
    /// checkpoint instead: the model then ends with the last parameters.
    pub fn keep_best_in_memory(&mut self, keep: bool) {
        self.keep_best = keep;
        if !keep {
            self.best_params = Vec::new();
        }
    }

    fn restore_best(&mut self) {
        if !self.best_params.is_empty() {
            self.model.params.copy_from_slice(&self.best_params);
        }
    }

    /// Best validation perplexity so far (infinite before the first epoch).
    pub fn best_valid_ppl(&self) -> f64 {
        self.best_valid_ppl
    }
}

/// Elements per parallel task of the whole-buffer passes (norm, update):
/// 256 KiB of f32, large enough that task overhead is negligible.
const CHUNK: usize = 1 << 16;
