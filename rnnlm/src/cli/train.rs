//! `rnnlm train`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use rnnlm::checkpoint;
use rnnlm::corpus::Corpus;
use rnnlm::error::ConfigError;
use rnnlm::eval::{Evaluator, Protocol};
use rnnlm::fetch::{FetchError, FetchOptions, ensure_ptb, known_ptb_mismatches};
use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::runtime::{init_threads, kernels_from_env};
use rnnlm::step::Compute;
use rnnlm::train::{LrSchedule, TrainError, TrainOptions, TrainState, Trainer};
use rnnlm::workspace::Dropout;

use super::observer::{CliObserver, STATE_KEY, VALID_PPL_KEY, resume_path};
use super::{CliResult, ExitError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DropoutMode {
    /// One mask per sequence window, shared by all its steps.
    Variational,
    /// A fresh mask for every element at every step.
    Standard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitKind {
    /// E ~ N(0,1)/100, Wx ~ N(0,1)/sqrt(In), Wh ~ N(0,1)/sqrt(H), biases 0.
    Book,
    /// Every weight ~ uniform(-r, r), r = --init-range.
    Uniform,
}

#[derive(Args, Debug)]
// A mistyped negative value then reaches the range check, which names it.
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Directory with ptb.train.txt, ptb.valid.txt, ptb.test.txt; fetched there when missing.
    #[arg(long, default_value = "data/ptb")]
    data: PathBuf,
    /// Do not download missing data; fail with instructions instead.
    #[arg(long)]
    offline: bool,
    /// Output file for the best model (by validation perplexity).
    #[arg(long, default_value = "rnnlm-best.safetensors")]
    save: PathBuf,
    /// Append JSON lines with progress and per-epoch results to this file.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Start a new run even though an earlier run with the same --save left a
    /// resume file. Both of its files are replaced after the first epoch.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Continue the run saved at --save from its last saved state (its
    /// resume file, e.g. rnnlm-best.resume.safetensors). Repeat the flags of
    /// the first run. --epochs, --threads, --metrics and --save-every may
    /// change, and an --lr or --clip other than the first run's sets the
    /// rate or the clip norm from there on.
    #[arg(long)]
    resume: bool,
    /// Minutes between writes of the resume file within an epoch (it is
    /// also written after every epoch and on Ctrl-C); 0 writes it at epoch
    /// ends only.
    #[arg(long, default_value_t = 10.0, value_name = "MINUTES")]
    save_every: f64,

    /// Hidden size H of each LSTM layer.
    #[arg(long, default_value_t = 650)]
    hidden: usize,
    /// Embedding size (default: the hidden size; tying needs them equal).
    #[arg(long)]
    embed: Option<usize>,
    /// Number of stacked LSTM layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Use a separate output projection instead of the embedding matrix.
    #[arg(long)]
    no_tie: bool,
    /// Weight initialisation.
    #[arg(long, value_enum, default_value_t = InitKind::Book)]
    init: InitKind,
    /// Range r of --init uniform.
    #[arg(long, default_value_t = 0.1)]
    init_range: f32,

    /// Dropout probability at all three sites (embedding, between layers, output).
    #[arg(long, default_value_t = 0.5)]
    dropout: f32,
    /// Override the dropout probability on the embedding output.
    #[arg(long)]
    dropout_embed: Option<f32>,
    /// Override the dropout probability between layers.
    #[arg(long)]
    dropout_between: Option<f32>,
    /// Override the dropout probability before the output projection.
    #[arg(long)]
    dropout_output: Option<f32>,
    /// Mask mode: one mask per window or one per step.
    #[arg(long, value_enum, default_value_t = DropoutMode::Variational)]
    dropout_mode: DropoutMode,

    /// Initial SGD learning rate (on the mean loss of a window) [default: 20].
    #[arg(long)]
    lr: Option<f32>,
    /// Divide the learning rate by this factor when it decays.
    #[arg(long, default_value_t = 4.0)]
    lr_decay: f32,
    /// Decay after every epoch from this one (1-based) on, instead of when
    /// the validation perplexity did not improve.
    #[arg(long)]
    lr_decay_after: Option<usize>,
    /// Clip the global gradient L2 norm to this value [default: 0.25].
    #[arg(long)]
    clip: Option<f32>,
    /// Number of epochs.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Parallel streams per window (B).
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Steps per window: the truncated BPTT length (T).
    #[arg(long, default_value_t = 35)]
    bptt: usize,
    /// End each epoch after this many windows (for smoke runs and benchmarks).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Streams of the validation and test passes.
    #[arg(long, default_value_t = 10)]
    eval_batch: usize,
    /// Worker threads (0: one per logical CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed of the initial weights and of the dropout masks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Upper end of --save-every: one year, in minutes.
const MAX_SAVE_EVERY_MINUTES: f64 = 365.0 * 24.0 * 60.0;

/// The book's learning rate and clip norm, the defaults of --lr and --clip.
const DEFAULT_LR: f32 = 20.0;
const DEFAULT_CLIP: f32 = 0.25;

impl TrainArgs {
    fn model_config(&self, vocab: usize) -> ModelConfig {
        ModelConfig {
            vocab,
            embed: self.embed.unwrap_or(self.hidden),
            hidden: self.hidden,
            layers: self.layers,
            tied: !self.no_tie,
        }
    }

    fn train_options(&self) -> TrainOptions {
        let schedule = match self.lr_decay_after {
            Some(after) => LrSchedule::AfterEpoch {
                after,
                factor: self.lr_decay,
            },
            None => LrSchedule::Plateau {
                factor: self.lr_decay,
            },
        };
        TrainOptions {
            batch: self.batch,
            bptt: self.bptt,
            lr: self.lr.unwrap_or(DEFAULT_LR),
            schedule,
            clip: self.clip.unwrap_or(DEFAULT_CLIP),
            epochs: self.epochs,
            dropout: Dropout {
                embed: self.dropout_embed.unwrap_or(self.dropout),
                between: self.dropout_between.unwrap_or(self.dropout),
                output: self.dropout_output.unwrap_or(self.dropout),
                variational: self.dropout_mode == DropoutMode::Variational,
            },
            max_steps: self.max_steps,
            seed: self.seed,
            eval_batch: self.eval_batch,
        }
    }

    fn init(&self) -> Init {
        match self.init {
            InitKind::Book => Init::Book,
            InitKind::Uniform => Init::Uniform(self.init_range),
        }
    }

    /// Returns the time between resume-file writes within an epoch.
    fn save_every(&self) -> Option<Duration> {
        (self.save_every > 0.0).then(|| Duration::from_secs_f64(self.save_every * 60.0))
    }

    /// Rejects impossible settings that do not depend on the data.
    fn validate(&self) -> Result<(), ConfigError> {
        // Duration::from_secs_f64 panics on infinite and huge values, and a
        // value above a year is a mistyped flag rather than a plan.
        if !(0.0..=MAX_SAVE_EVERY_MINUTES).contains(&self.save_every) {
            return Err(ConfigError::new(
                "--save-every",
                self.save_every,
                format!("minutes from 0 (epoch ends only) to {MAX_SAVE_EVERY_MINUTES}"),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ConfigError::new(
                "--dropout",
                self.dropout,
                "a probability in [0, 1)",
            ));
        }
        if let Some(after) = self.lr_decay_after
            && after == 0
        {
            return Err(ConfigError::new(
                "--lr-decay-after",
                after,
                "an epoch number of at least 1",
            ));
        }
        // The vocabulary size is not known yet; 2 passes its check.
        self.model_config(2).validate()?;
        self.train_options().validate(usize::MAX)
    }
}

pub fn run(args: TrainArgs) -> CliResult {
    args.validate()?;
    let kernels = kernels_from_env()?;
    let threads = init_threads(args.threads)?;

    if args.offline {
        tracing::info!(
            "--offline: using the files in {} as they are",
            args.data.display()
        );
    } else {
        ensure_ptb(&args.data, &FetchOptions::from_env())?;
    }
    let corpus = Corpus::load(&args.data)?;
    for mismatch in known_ptb_mismatches(&args.data) {
        match mismatch {
            FetchError::ExistingMismatch {
                path,
                expected,
                actual,
            } => tracing::warn!(
                "{} differs from the published PTB file (SHA-256 {actual}, expected \
                 {expected}): its perplexities are not comparable with published PTB figures. \
                 If it is meant to be PTB, delete it and run again without --offline to \
                 download it",
                path.display()
            ),
            other => tracing::warn!("{other}"),
        }
    }
    let eos = corpus
        .vocab
        .eos()
        .ok_or("the training file has no lines, so the vocabulary has no <eos>")?;
    let mut options = args.train_options();
    options.validate(corpus.train.len())?;
    let config = args.model_config(corpus.vocab.len());
    let fingerprint = corpus_fingerprint(&corpus);
    let (model, state) = if args.resume {
        let resumed = load_resume(&args, &config, &corpus, &fingerprint)?;
        options = resumed.options;
        options.validate(corpus.train.len())?;
        (resumed.model, Some(resumed.state))
    } else {
        reject_replacing_run(&args)?;
        (Model::new(config.clone(), args.init(), args.seed)?, None)
    };
    tracing::info!(
        "model: V {} Emb {} H {} L {} tied {}: {} parameters; kernels {}, {threads} threads",
        config.vocab,
        config.embed,
        config.hidden,
        config.layers,
        config.tied,
        model.layout.total,
        kernels.isa()
    );
    tracing::info!(
        "data: {} train, {} valid, {} test tokens from {}",
        corpus.train.len(),
        corpus.valid.len(),
        corpus.test.len(),
        args.data.display()
    );

    let mut info = HashMap::new();
    info.insert(
        "train_options".to_string(),
        serde_json::to_string(&options)?,
    );
    info.insert(CORPUS_KEY.to_string(), fingerprint);
    let mut observer = CliObserver::new(
        args.metrics.as_deref(),
        args.save.clone(),
        corpus.vocab.clone(),
        info,
        args.save_every(),
    )?;
    let resume_file = resume_path(&args.save);
    tracing::info!(
        "after each epoch the best model so far goes to {}. The state to continue from \
         with --resume goes to {} after each epoch, {}and on Ctrl-C",
        args.save.display(),
        resume_file.display(),
        if args.save_every > 0.0 {
            format!("every {} minutes within an epoch ", args.save_every)
        } else {
            String::new()
        }
    );
    stop_on_signal(observer.stop_flag())?;
    let mut trainer = Trainer::new(model, options, kernels, threads);
    if let Some(state) = state {
        let position = match &state.partial_epoch {
            Some(partial) => format!(
                "in epoch {} after window {}",
                state.epochs_done + 1,
                partial.windows_done
            ),
            None => format!("after epoch {}", state.epochs_done),
        };
        let best = match state.best_valid_ppl {
            ppl if ppl.is_finite() => format!("best valid ppl {ppl:.2}"),
            _ => "no validation yet".to_string(),
        };
        tracing::info!(
            "resuming {position} at lr {}, clip {} ({best})",
            state.lr,
            trainer.options.clip,
        );
        if let Some(partial) = &state.partial_epoch
            && partial.carried_state.len() != trainer.carried_state_len()
        {
            return Err(format!(
                "--resume: the training state in {} carries {} LSTM state values, but this \
                 model and batch size carry {}; pass --overwrite instead of --resume to start \
                 a new run over it",
                resume_file.display(),
                partial.carried_state.len(),
                trainer.carried_state_len()
            )
            .into());
        }
        observer.resumed(&state);
        trainer.resume(state);
    }
    // The observer writes the best model to disk at every improvement, so
    // holding a second copy of the parameters in memory would only raise
    // the peak resident size.
    trainer.keep_best_in_memory(false);
    match trainer.run(&corpus.train, &corpus.valid, eos, &mut observer) {
        Ok(_) => {}
        Err(error @ TrainError::Interrupted { .. }) => {
            return Err(Box::new(ExitError {
                code: EXIT_INTERRUPTED,
                message: format!(
                    "{error}. The state is saved in {}: the same command with --resume \
                     continues from there",
                    resume_file.display()
                ),
            }));
        }
        Err(error) => return Err(error.into()),
    }
    let best_valid = trainer.best_valid_ppl();
    drop(trainer);

    let best = checkpoint::load(&args.save)?;
    let cx = Compute::new(kernels, threads);
    let mut evaluator = Evaluator::new(&best.model, args.eval_batch, args.bptt);
    let test = evaluator.evaluate(cx, &best.model, &corpus.test, eos, Protocol::Full);
    println!(
        "best valid ppl {best_valid:.2} | test ppl {:.2} ({} tokens) | saved to {}",
        test.perplexity(),
        test.tokens,
        args.save.display()
    );
    observer.finish(best_valid, test.perplexity())?;
    Ok(())
}

/// Exit status after a stop on SIGINT or SIGTERM, by the shell convention
/// of 128 + the number of SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// Makes SIGINT (Ctrl-C) and SIGTERM set `stop`, so that training saves its
/// state and stops after the current window. A second signal exits at once.
fn stop_on_signal(stop: Arc<AtomicBool>) -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("rnnlm: second interrupt, exiting without saving the current window");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
        eprintln!(
            "rnnlm: stopping after this window to save the state; interrupt again to exit at once"
        );
    })
}

/// Metadata key of the corpus fingerprint, which a resume compares.
const CORPUS_KEY: &str = "corpus";

/// Returns the token counts of the training and validation splits and an
/// FNV-1a hash of their token ids, which change whenever either text does.
fn corpus_fingerprint(corpus: &Corpus) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &id in corpus.train.iter().chain(&corpus.valid) {
        for byte in id.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!(
        "train {} tokens, valid {} tokens, fnv1a-64 {hash:016x}",
        corpus.train.len(),
        corpus.valid.len()
    )
}

/// The contents of a resume file: the last parameters, the training state
/// and the options that continue the run.
struct Resumed {
    model: Model,
    state: TrainState,
    options: TrainOptions,
}

/// Reads the resume file of the run at `args.save` and checks that it
/// continues the run the flags describe. The options are the first run's,
/// with --epochs, and --lr and --clip when given, from the flags.
fn load_resume(
    args: &TrainArgs,
    config: &ModelConfig,
    corpus: &Corpus,
    fingerprint: &str,
) -> Result<Resumed, Box<dyn std::error::Error>> {
    let path = resume_path(&args.save);
    if !path.exists() {
        return Err(format!(
            "--resume: no resume file at {}; a run with --save {} writes it after each epoch, \
             every --save-every minutes and when stopped with Ctrl-C; pass the --save of the \
             run to continue, or drop --resume to start a new run",
            path.display(),
            args.save.display()
        )
        .into());
    }
    let start_anew = "pass --overwrite instead of --resume to start a new run over it";
    let saved = checkpoint::load(&path).map_err(|e| format!("--resume: {e}; {start_anew}"))?;
    let metadata = |key: &str| {
        saved.info.get(key).ok_or_else(|| {
            format!(
                "--resume: {} has no `{key}` metadata, so `rnnlm train` did not write it; \
                 {start_anew}",
                path.display()
            )
        })
    };
    let invalid = |what: &str, error: &dyn std::fmt::Display| {
        format!(
            "--resume: {} has an invalid {what}: {error}; {start_anew}",
            path.display()
        )
    };
    let mut state: TrainState =
        serde_json::from_str(metadata(STATE_KEY)?).map_err(|e| invalid("training state", &e))?;
    state
        .validate()
        .map_err(|e| invalid("training state", &e))?;
    let first: TrainOptions = serde_json::from_str(metadata("train_options")?)
        .map_err(|e| invalid("record of the training options", &e))?;

    let same_data = saved.vocab.words() == corpus.vocab.words()
        && saved
            .info
            .get(CORPUS_KEY)
            .is_none_or(|saved| saved == fingerprint);
    if !same_data {
        return Err(format!(
            "--resume: the run in {} was trained on other text than the files in {} \
             (its corpus: {}; now: {fingerprint}); resume with the --data of that run",
            path.display(),
            args.data.display(),
            saved.info.get(CORPUS_KEY).map_or("unknown", String::as_str)
        )
        .into());
    }

    // --epochs, --lr and --clip may change; every other setting must be the
    // first run's.
    let requested = args.train_options();
    let differences = differing_settings(
        &settings_as_flags(&saved.model.config, &first),
        &settings_as_flags(config, &requested),
    );
    if !differences.is_empty() {
        return Err(format!(
            "--resume: the run in {} was started with other settings ({}); repeat the \
             flags of that run",
            path.display(),
            differences.join("; ")
        )
        .into());
    }
    if state.epochs_done >= requested.epochs {
        return Err(format!(
            "--resume: the run in {} has already completed {} epochs; pass --epochs above {} \
             to train it further",
            path.display(),
            state.epochs_done,
            state.epochs_done
        )
        .into());
    }

    // Repeating the recorded --lr or --clip keeps the saved values. A
    // different one replaces them and is recorded in turn, so the same
    // command run again does not undo the decays since.
    let mut lr = first.lr;
    if let Some(new) = args.lr.filter(|&new| new != first.lr) {
        tracing::info!(
            "--lr {new} replaces the saved rate {} from here on",
            state.lr
        );
        state.lr = new;
        lr = new;
    }
    let mut clip = first.clip;
    if let Some(new) = args.clip.filter(|&new| new != first.clip) {
        tracing::info!("--clip {new} replaces the first run's {clip} from here on");
        clip = new;
    }
    best_on_disk(&args.save, &mut state);
    Ok(Resumed {
        model: saved.model,
        state,
        options: TrainOptions {
            epochs: requested.epochs,
            lr,
            clip,
            ..first
        },
    })
}

/// Lowers the state's best perplexity to just above that of the best model
/// on disk when the disk's is lower. A crash between the two writes of an
/// epoch leaves the resume file one epoch behind the best model. The
/// repeated epoch must not replace that model with a worse one, and when it
/// repeats the same perplexity it still counts as an improvement, as it did
/// the first time.
fn best_on_disk(save: &Path, state: &mut TrainState) {
    // Files from before the full-precision key have the printed value only.
    let on_disk = checkpoint::read_info(save).ok().and_then(|info| {
        let ppl = info.get(VALID_PPL_KEY).or(info.get("valid_ppl"))?;
        ppl.parse::<f64>().ok()
    });
    match on_disk {
        Some(ppl) if ppl < state.best_valid_ppl => {
            tracing::info!(
                "{} has valid ppl {ppl:.2}, below the resume file's best {:.2}; \
                 later epochs must beat {ppl:.2}",
                save.display(),
                state.best_valid_ppl
            );
            state.best_valid_ppl = ppl.next_up();
        }
        Some(_) => {}
        // Within the first epoch no model has been validated yet.
        None if state.epochs_done == 0 => {}
        None => tracing::warn!(
            "no readable best model at {}; the next epoch that beats valid ppl {:.2} writes it",
            save.display(),
            state.best_valid_ppl
        ),
    }
}

/// Returns the settings that a resume must repeat, as `(flag, value)` in
/// the form the command line takes them.
fn settings_as_flags(config: &ModelConfig, options: &TrainOptions) -> Vec<(&'static str, String)> {
    let (decay, decay_after) = match options.schedule {
        LrSchedule::Plateau { factor } => (factor, "none".to_string()),
        LrSchedule::AfterEpoch { after, factor } => (factor, after.to_string()),
    };
    let dropout = &options.dropout;
    let mode = if dropout.variational {
        "variational"
    } else {
        "standard"
    };
    vec![
        ("--embed", config.embed.to_string()),
        ("--hidden", config.hidden.to_string()),
        ("--layers", config.layers.to_string()),
        ("--no-tie", (!config.tied).to_string()),
        ("--batch", options.batch.to_string()),
        ("--bptt", options.bptt.to_string()),
        ("--lr-decay", decay.to_string()),
        ("--lr-decay-after", decay_after),
        ("--dropout-embed", dropout.embed.to_string()),
        ("--dropout-between", dropout.between.to_string()),
        ("--dropout-output", dropout.output.to_string()),
        ("--dropout-mode", mode.to_string()),
        (
            "--max-steps",
            options.max_steps.map_or("none".into(), |n| n.to_string()),
        ),
        ("--seed", options.seed.to_string()),
        ("--eval-batch", options.eval_batch.to_string()),
    ]
}

/// Lists "FLAG FIRST then, NOW now" for every setting that differs.
fn differing_settings(first: &[(&str, String)], now: &[(&str, String)]) -> Vec<String> {
    first
        .iter()
        .zip(now)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((flag, a), (_, b))| format!("{flag} {a} then, {b} now"))
        .collect()
}

/// Rejects a new run whose --save would replace the files of an earlier
/// run that can still be resumed, unless --overwrite is given.
fn reject_replacing_run(args: &TrainArgs) -> Result<(), String> {
    let resume = resume_path(&args.save);
    if !resume.exists() {
        return Ok(());
    }
    if args.overwrite {
        tracing::warn!(
            "--overwrite: {} and {} of the earlier run are replaced after the first epoch",
            args.save.display(),
            resume.display()
        );
        return Ok(());
    }
    Err(format!(
        "{} holds an earlier run that can be continued: pass --resume to continue it, \
         --overwrite to start a new run that replaces its files after the first epoch, \
         or another --save",
        resume.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use rnnlm::corpus::Vocab;

    fn state(best_valid_ppl: f64) -> TrainState {
        TrainState {
            epochs_done: 2,
            partial_epoch: None,
            lr: 5.0,
            best_valid_ppl,
            global_step: 10,
            tokens_seen: 100,
            elapsed_secs: 1.0,
            rng: rnnlm_kernels::dropout_rng(1),
        }
    }

    #[test]
    fn best_on_disk_lowers_only_a_higher_best() {
        let dir = tempfile::tempdir().unwrap();
        let save = dir.path().join("best.safetensors");
        let config = ModelConfig {
            vocab: 3,
            embed: 4,
            hidden: 4,
            layers: 1,
            tied: true,
        };
        let model = Model::new(config, Init::Uniform(0.1), 1).unwrap();
        let vocab = Vocab::from_words(vec!["a".into(), "b".into(), "<eos>".into()]).unwrap();
        let info = HashMap::from([(VALID_PPL_KEY.to_string(), "10.5".to_string())]);
        checkpoint::save(&save, &model, &vocab, &info).unwrap();

        // Just above the disk's, so that an epoch repeating 10.5 exactly still
        // counts as an improvement and anything worse does not.
        let mut higher = state(12.0);
        best_on_disk(&save, &mut higher);
        assert_eq!(higher.best_valid_ppl, 10.5f64.next_up());
        let mut lower = state(9.0);
        best_on_disk(&save, &mut lower);
        assert_eq!(lower.best_valid_ppl, 9.0);
        let mut missing = state(12.0);
        best_on_disk(&dir.path().join("none.safetensors"), &mut missing);
        assert_eq!(missing.best_valid_ppl, 12.0);
    }

    #[test]
    fn differing_settings_name_flags() {
        let config = ModelConfig {
            vocab: 10,
            embed: 8,
            hidden: 8,
            layers: 2,
            tied: true,
        };
        let first = TrainOptions::default();
        let now = TrainOptions {
            batch: 10,
            dropout: Dropout {
                variational: false,
                ..Dropout::uniform(0.3)
            },
            schedule: LrSchedule::AfterEpoch {
                after: 6,
                factor: 1.2,
            },
            ..TrainOptions::default()
        };
        let differences = differing_settings(
            &settings_as_flags(&config, &first),
            &settings_as_flags(&config, &now),
        );
        assert_eq!(
            differences,
            [
                "--batch 20 then, 10 now",
                "--lr-decay 4 then, 1.2 now",
                "--lr-decay-after none then, 6 now",
                "--dropout-embed 0.5 then, 0.3 now",
                "--dropout-between 0.5 then, 0.3 now",
                "--dropout-output 0.5 then, 0.3 now",
                "--dropout-mode variational then, standard now",
            ]
        );
    }
}
