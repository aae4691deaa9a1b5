//! `rnnlm train`.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rnnlm::checkpoint;
use rnnlm::corpus::Corpus;
use rnnlm::error::ConfigError;
use rnnlm::eval::{Evaluator, Protocol};
use rnnlm::fetch::{FetchOptions, ensure_ptb};
use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::runtime::{init_threads, kernels_from_env};
use rnnlm::step::Compute;
use rnnlm::train::{LrSchedule, TrainOptions, TrainState, Trainer};
use rnnlm::workspace::Dropout;

use super::CliResult;
use super::observer::{CliObserver, STATE_KEY, resume_path};

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
    /// Continue the run saved at --save from its last completed epoch (its
    /// resume file, e.g. rnnlm-best.resume.safetensors). Give the flags of
    /// the first run; only --epochs, --threads, --metrics and --data may change.
    #[arg(long)]
    resume: bool,

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

    /// Initial SGD learning rate (on the mean loss of a window).
    #[arg(long, default_value_t = 20.0)]
    lr: f32,
    /// Divide the learning rate by this factor when it decays.
    #[arg(long, default_value_t = 4.0)]
    lr_decay: f32,
    /// Decay after every epoch from this one (1-based) on, instead of when
    /// the validation perplexity did not improve.
    #[arg(long)]
    lr_decay_after: Option<usize>,
    /// Clip the global gradient L2 norm to this value.
    #[arg(long, default_value_t = 0.25)]
    clip: f32,
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
            lr: self.lr,
            schedule,
            clip: self.clip,
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

    /// Rejects impossible settings that do not depend on the data.
    fn validate(&self) -> Result<(), ConfigError> {
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
    let eos = corpus
        .vocab
        .eos()
        .ok_or("the training file has no lines, so the vocabulary has no <eos>")?;
    let options = args.train_options();
    options.validate(corpus.train.len())?;
    let config = args.model_config(corpus.vocab.len());
    let (model, state) = if args.resume {
        let (model, state) = load_resume(&args, &options, &config, &corpus)?;
        (model, Some(state))
    } else {
        warn_before_replacing(&args.save);
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
    let mut observer = CliObserver::new(
        args.metrics.as_deref(),
        args.save.clone(),
        corpus.vocab.clone(),
        info,
    )?;
    let mut trainer = Trainer::new(model, options, kernels, threads);
    if let Some(state) = state {
        tracing::info!(
            "resuming after epoch {} at lr {} (best valid ppl {:.2})",
            state.epochs_done,
            state.lr,
            state.best_valid_ppl
        );
        trainer.resume(state);
    }
    // The observer writes the best model to disk at every improvement, so
    // holding a second copy of the parameters in memory would only raise
    // the peak resident size.
    trainer.keep_best_in_memory(false);
    trainer.run(&corpus.train, &corpus.valid, eos, &mut observer)?;
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

/// Reads the resume file of the run at `args.save` and checks that it
/// continues the run the flags describe. Returns its last parameters and
/// the training state.
fn load_resume(
    args: &TrainArgs,
    options: &TrainOptions,
    config: &ModelConfig,
    corpus: &Corpus,
) -> Result<(Model, TrainState), Box<dyn std::error::Error>> {
    let path = resume_path(&args.save);
    if !path.exists() {
        return Err(format!(
            "--resume: no resume file at {}; it is written after each epoch of a run with \
             --save {}; pass the --save of the run to continue, or drop --resume to start anew",
            path.display(),
            args.save.display()
        )
        .into());
    }
    let saved = checkpoint::load(&path)?;
    let broken = |what: &str| {
        format!(
            "--resume: {} has no valid {what}; it was not written by `rnnlm train`, \
             or by an older version; drop --resume to start anew",
            path.display()
        )
    };
    let state: TrainState = saved
        .info
        .get(STATE_KEY)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| broken("training state"))?;
    let first: TrainOptions = saved
        .info
        .get("train_options")
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| broken("training options"))?;

    let mut differences = differing_fields(&saved.model.config, config);
    differences.extend(differing_fields(
        &TrainOptions {
            epochs: options.epochs,
            ..first
        },
        options,
    ));
    if !differences.is_empty() {
        return Err(format!(
            "--resume: the run in {} was started with other settings ({}); give the flags \
             of that run, changing only --epochs, --threads, --metrics or --data",
            path.display(),
            differences.join("; ")
        )
        .into());
    }
    if saved.vocab.words() != corpus.vocab.words() {
        return Err(format!(
            "--resume: the vocabulary in {} differs from the one of {}; \
             resume with the training data of the first run",
            path.display(),
            args.data.join("ptb.train.txt").display()
        )
        .into());
    }
    if state.epochs_done >= options.epochs {
        return Err(format!(
            "--resume: the run in {} has already completed {} of {} epochs; \
             pass --epochs above {} to train it further",
            path.display(),
            state.epochs_done,
            options.epochs,
            state.epochs_done
        )
        .into());
    }
    Ok((saved.model, state))
}

/// Lists "NAME: FIRST then, NOW now" for every top-level field where two
/// values serialise differently.
fn differing_fields<T: serde::Serialize>(first: &T, now: &T) -> Vec<String> {
    let as_map = |value: &T| match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("settings serialise to a JSON object"),
    };
    let (first, now) = (as_map(first), as_map(now));
    first
        .iter()
        .filter(|(name, value)| now.get(*name) != Some(*value))
        .map(|(name, value)| {
            let current = now.get(name).map_or("none".to_string(), |v| v.to_string());
            format!("{name}: {value} then, {current} now")
        })
        .collect()
}

/// Says so when a new run is about to replace the files of an earlier one.
fn warn_before_replacing(save: &std::path::Path) {
    let resume = resume_path(save);
    if resume.exists() {
        tracing::warn!(
            "starting a new run: {} and {} will be replaced after its first epoch; \
             stop now and pass --resume to continue the earlier run instead",
            save.display(),
            resume.display()
        );
    }
}
