//! The trainer on small synthetic data: repeatability, learning, the
//! learning-rate schedules, resuming and divergence handling.

use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::train::{
    EpochSummary, LrSchedule, Observer, Progress, TrainError, TrainOptions, TrainState, Trainer,
};
use rnnlm::workspace::Dropout;
use rnnlm_kernels::Kernels;

const VOCAB: usize = 30;

fn config() -> ModelConfig {
    ModelConfig {
        vocab: VOCAB,
        embed: 16,
        hidden: 16,
        layers: 2,
        tied: true,
    }
}

/// A corpus with structure to learn: a fixed cycle of token ids.
fn corpus(len: usize) -> Vec<u32> {
    (0..len).map(|i| ((i * 7) % VOCAB) as u32).collect()
}

fn options() -> TrainOptions {
    TrainOptions {
        batch: 4,
        bptt: 6,
        lr: 5.0,
        clip: 1.0,
        epochs: 3,
        dropout: Dropout::uniform(0.1),
        eval_batch: 2,
        ..TrainOptions::default()
    }
}

#[derive(Default)]
struct Recorder {
    epochs: Vec<EpochSummary>,
    progress: usize,
    /// The state and parameters at each epoch's end, as a resume file keeps them.
    resume_points: Vec<(TrainState, Vec<f32>)>,
}

impl Observer for Recorder {
    fn on_progress(&mut self, _: &Progress) {
        self.progress += 1;
    }

    fn on_epoch(
        &mut self,
        summary: &EpochSummary,
        model: &Model,
        state: &TrainState,
    ) -> Result<(), TrainError> {
        self.epochs.push(*summary);
        self.resume_points
            .push((state.clone(), model.params.clone()));
        Ok(())
    }
}

fn run(options: TrainOptions, seed: u64, threads: usize) -> (Vec<EpochSummary>, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let model = Model::new(config(), Init::Uniform(0.1), seed).unwrap();
        let mut trainer = Trainer::new(model, options, Kernels::process(), threads);
        let mut recorder = Recorder::default();
        trainer
            .run(&corpus(2000), &corpus(300), 0, &mut recorder)
            .unwrap();
        (recorder.epochs, trainer.model.params)
    })
}

#[test]
fn same_seed_and_threads_repeat_exactly() {
    let (first, params_first) = run(options(), 7, 2);
    let (second, params_second) = run(options(), 7, 2);
    assert_eq!(params_first, params_second);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.train_ppl, b.train_ppl);
        assert_eq!(a.valid_ppl, b.valid_ppl);
    }
    let (other_seed, _) = run(
        TrainOptions {
            seed: 8,
            ..options()
        },
        8,
        2,
    );
    assert_ne!(first[0].train_ppl, other_seed[0].train_ppl);
}

#[test]
fn training_learns_a_cyclic_corpus() {
    // The book's rate and clipping; on this corpus every word fixes the next.
    let options = TrainOptions {
        lr: 20.0,
        clip: 0.25,
        ..options()
    };
    let (epochs, _) = run(options, 1, 1);
    let valid: Vec<f64> = epochs.iter().map(|e| e.valid_ppl).collect();
    // Uniform guessing over 30 words is perplexity 30; a learned cycle is near 1.
    assert!(valid[0] < 30.0, "{valid:?}");
    assert!(valid[2] < 2.0, "{valid:?}");
}

#[test]
fn after_epoch_schedule_divides_every_epoch_from_the_given_one() {
    let options = TrainOptions {
        epochs: 4,
        schedule: LrSchedule::AfterEpoch {
            after: 2,
            factor: 2.0,
        },
        ..options()
    };
    let (epochs, _) = run(options, 1, 1);
    let rates: Vec<f32> = epochs.iter().map(|e| e.lr).collect();
    assert_eq!(rates, [5.0, 5.0, 2.5, 1.25]);
}

#[test]
fn plateau_schedule_divides_only_after_no_improvement() {
    let options = TrainOptions {
        epochs: 5,
        // A rate this large overshoots, so some epochs fail to improve.
        lr: 60.0,
        clip: 5.0,
        ..options()
    };
    let (epochs, _) = run(options, 3, 1);
    let mut best = f64::INFINITY;
    let mut expected_lr = 60.0f32;
    for epoch in &epochs {
        assert_eq!(epoch.lr, expected_lr, "epoch {}", epoch.epoch);
        assert_eq!(epoch.improved, epoch.valid_ppl < best);
        if epoch.valid_ppl < best {
            best = epoch.valid_ppl;
        } else {
            expected_lr /= 4.0;
        }
    }
}

/// Trains `options.epochs` epochs on 2 threads without a best-parameter copy,
/// so the model ends with the last parameters. When `from` is given, the run
/// resumes from that state and those parameters.
fn run_from(options: TrainOptions, from: Option<(TrainState, Vec<f32>)>) -> Recorder {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let mut model = Model::new(config(), Init::Uniform(0.1), 5).unwrap();
        let resume = from.map(|(state, params)| {
            model.params = params;
            state
        });
        let mut trainer = Trainer::new(model, options, Kernels::process(), 2);
        trainer.keep_best_in_memory(false);
        if let Some(state) = resume {
            trainer.resume(state);
        }
        let mut recorder = Recorder::default();
        trainer
            .run(&corpus(2000), &corpus(300), 0, &mut recorder)
            .unwrap();
        recorder
    })
}

/// Checks that a run stopped after each epoch and resumed from the state
/// its observer received ends as the uninterrupted run does: every later
/// epoch's figures, improvement flag and rate, and the last parameters.
/// Returns the uninterrupted run's summaries.
fn assert_resume_repeats_run(options: TrainOptions) -> Vec<EpochSummary> {
    let straight = run_from(options.clone(), None);
    for stop in 1..options.epochs {
        let first = run_from(
            TrainOptions {
                epochs: stop,
                ..options.clone()
            },
            None,
        );
        let (state, params) = first.resume_points[stop - 1].clone();
        // Through JSON, as the CLI's resume file stores it.
        let json = serde_json::to_string(&state).unwrap();
        let state: TrainState = serde_json::from_str(&json).unwrap();
        assert_eq!(state.epochs_done, stop);
        let resumed = run_from(options.clone(), Some((state, params)));

        assert_eq!(resumed.epochs.len(), options.epochs - stop);
        for (a, b) in straight.epochs[stop..].iter().zip(&resumed.epochs) {
            assert_eq!(a.epoch, b.epoch);
            assert_eq!(a.train_ppl, b.train_ppl, "stop {stop}, epoch {}", a.epoch);
            assert_eq!(a.valid_ppl, b.valid_ppl, "stop {stop}, epoch {}", a.epoch);
            assert_eq!(a.improved, b.improved, "stop {stop}, epoch {}", a.epoch);
            assert_eq!(a.lr, b.lr, "stop {stop}, epoch {}", a.epoch);
            assert_eq!(a.tokens_seen, b.tokens_seen);
            assert_eq!(a.global_step, b.global_step);
        }
        // Everything but the wall time matches after the last epoch.
        let last = options.epochs - 1;
        let untimed = |(state, params): &(TrainState, Vec<f32>)| {
            let state = TrainState {
                elapsed_secs: 0.0,
                ..state.clone()
            };
            (state, params.clone())
        };
        assert_eq!(
            untimed(&straight.resume_points[last]),
            untimed(&resumed.resume_points[last - stop]),
            "stop {stop}: state and parameters after the last epoch"
        );
    }
    straight.epochs
}

#[test]
fn resume_matches_run_after_epoch_schedule() {
    let epochs = assert_resume_repeats_run(TrainOptions {
        epochs: 3,
        schedule: LrSchedule::AfterEpoch {
            after: 1,
            factor: 2.0,
        },
        ..options()
    });
    let rates: Vec<f32> = epochs.iter().map(|e| e.lr).collect();
    assert_eq!(rates, [5.0, 2.5, 1.25]);
}

#[test]
fn resume_matches_run_plateau_schedule() {
    let epochs = assert_resume_repeats_run(TrainOptions {
        epochs: 5,
        // A rate this large overshoots, so some epochs fail to improve and
        // the resumed run must carry both the best perplexity and the rate.
        lr: 60.0,
        clip: 5.0,
        ..options()
    });
    let improved: Vec<bool> = epochs.iter().map(|e| e.improved).collect();
    assert!(improved.contains(&false), "{improved:?}");
}

#[test]
fn resume_needs_generator_state() {
    let options = TrainOptions {
        epochs: 2,
        ..options()
    };
    let straight = run_from(options.clone(), None);
    let (mut state, params) = straight.resume_points[0].clone();
    state.rng = rnnlm_kernels::dropout_rng(1);
    let wrong_rng = run_from(options, Some((state, params)));
    assert_ne!(straight.epochs[1].train_ppl, wrong_rng.epochs[0].train_ppl);
}

#[test]
fn train_state_rejects_damaged_values() {
    let state = run_from(
        TrainOptions {
            epochs: 1,
            ..options()
        },
        None,
    )
    .resume_points[0]
        .0
        .clone();
    assert!(state.validate().is_ok());
    let cases = [
        (
            "epochs_done",
            TrainState {
                epochs_done: 0,
                ..state.clone()
            },
        ),
        (
            "lr",
            TrainState {
                lr: -5.0,
                ..state.clone()
            },
        ),
        (
            "lr",
            TrainState {
                lr: f32::NAN,
                ..state.clone()
            },
        ),
        (
            "best_valid_ppl",
            TrainState {
                best_valid_ppl: 0.0,
                ..state.clone()
            },
        ),
        (
            "best_valid_ppl",
            TrainState {
                best_valid_ppl: f64::INFINITY,
                ..state.clone()
            },
        ),
        (
            "elapsed_secs",
            TrainState {
                elapsed_secs: -1.0,
                ..state.clone()
            },
        ),
    ];
    for (field, damaged) in cases {
        let error = damaged.validate().unwrap_err().to_string();
        assert!(error.contains(field), "{field}: {error}");
    }
}

#[test]
fn nan_loss_stops_at_the_first_window() {
    let mut model = Model::new(config(), Init::Uniform(0.1), 1).unwrap();
    let out_bias = model.layout.out_bias.clone();
    model.params[out_bias][3] = f32::NAN;
    let mut trainer = Trainer::new(model, options(), Kernels::process(), 1);
    let error = trainer
        .run(&corpus(2000), &corpus(300), 0, &mut Recorder::default())
        .unwrap_err();
    assert!(
        matches!(
            error,
            TrainError::Diverged {
                epoch: 1,
                step: 1,
                what: "loss",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn divergence_stops_with_an_error_and_keeps_the_best_parameters() {
    let model = Model::new(config(), Init::Uniform(0.1), 1).unwrap();
    let initial = model.params.clone();
    let options = TrainOptions {
        lr: 1e30,
        clip: f32::INFINITY,
        ..options()
    };
    let mut trainer = Trainer::new(model, options, Kernels::process(), 1);
    let error = trainer
        .run(&corpus(2000), &corpus(300), 0, &mut Recorder::default())
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TrainError::Diverged { epoch: 1, .. }),
        "{message}"
    );
    assert!(message.contains("--lr"), "{message}");
    // No epoch finished, so the best parameters are the initial ones.
    assert_eq!(trainer.model.params, initial);
}
