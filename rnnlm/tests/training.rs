//! The trainer on small synthetic data: repeatability, learning, the
//! learning-rate schedules, resuming and divergence handling.

use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::train::{
    EpochSummary, LrSchedule, Observer, PartialEpoch, Progress, TrainError, TrainOptions,
    TrainState, Trainer, WindowAction,
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
    /// `(global_step, train_ppl)` of each progress report.
    reports: Vec<(usize, f64)>,
    /// The state and parameters at each epoch's end, as a resume file keeps them.
    resume_points: Vec<(TrainState, Vec<f32>)>,
    /// Windows trained in this run, counted by `after_window`.
    windows: usize,
    /// Ask for a checkpoint after these windows of this run (1-based).
    checkpoint_after: Vec<usize>,
    /// Ask to stop after this window of this run.
    stop_after: Option<usize>,
    /// The states and parameters handed to `on_checkpoint`.
    checkpoints: Vec<(TrainState, Vec<f32>)>,
}

impl Observer for Recorder {
    fn on_progress(&mut self, progress: &Progress) {
        self.progress += 1;
        self.reports
            .push((progress.global_step, progress.train_ppl));
    }

    fn after_window(&mut self) -> WindowAction {
        self.windows += 1;
        if self.stop_after == Some(self.windows) {
            WindowAction::Stop
        } else if self.checkpoint_after.contains(&self.windows) {
            WindowAction::Checkpoint
        } else {
            WindowAction::Continue
        }
    }

    fn on_checkpoint(&mut self, model: &Model, state: &TrainState) -> Result<(), TrainError> {
        self.checkpoints.push((state.clone(), model.params.clone()));
        Ok(())
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
    let (recorder, result) = run_observed(options, from, Recorder::default());
    result.unwrap();
    recorder
}

/// As `run_from`, with `recorder` as the observer, returning it and the
/// run's result.
fn run_observed(
    options: TrainOptions,
    from: Option<(TrainState, Vec<f32>)>,
    mut recorder: Recorder,
) -> (Recorder, Result<Vec<EpochSummary>, TrainError>) {
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
        let result = trainer.run(&corpus(2000), &corpus(300), 0, &mut recorder);
        (recorder, result)
    })
}

/// Returns `state` after a trip through JSON, as the CLI's resume file
/// stores it.
fn through_json(state: &TrainState) -> TrainState {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

/// Returns a state and parameters with the wall time left out, which is
/// all that may differ between a resumed and an uninterrupted run.
fn untimed((state, params): &(TrainState, Vec<f32>)) -> (TrainState, Vec<f32>) {
    let mut state = state.clone();
    state.elapsed_secs = 0.0;
    if let Some(partial) = &mut state.partial_epoch {
        partial.train_secs = 0.0;
    }
    (state, params.clone())
}

/// Checks that `resumed`, continued from a state taken after global window
/// `from_step`, saw what `straight` saw from there on: the progress
/// reports, every later epoch and the state and parameters at the end.
fn assert_continues(straight: &Recorder, resumed: &Recorder, from_step: usize, case: &str) {
    let later: Vec<_> = straight
        .reports
        .iter()
        .filter(|(step, _)| *step > from_step)
        .copied()
        .collect();
    assert_eq!(resumed.reports, later, "{case}: progress reports");
    let skipped = straight.epochs.len() - resumed.epochs.len();
    for (a, b) in straight.epochs[skipped..].iter().zip(&resumed.epochs) {
        assert_eq!(a.epoch, b.epoch, "{case}");
        assert_eq!(a.train_ppl, b.train_ppl, "{case}, epoch {}", a.epoch);
        assert_eq!(a.valid_ppl, b.valid_ppl, "{case}, epoch {}", a.epoch);
        assert_eq!(a.improved, b.improved, "{case}, epoch {}", a.epoch);
        assert_eq!(a.lr, b.lr, "{case}, epoch {}", a.epoch);
        assert_eq!(a.tokens_seen, b.tokens_seen, "{case}");
        assert_eq!(a.global_step, b.global_step, "{case}");
    }
    assert_eq!(
        untimed(straight.resume_points.last().unwrap()),
        untimed(resumed.resume_points.last().unwrap()),
        "{case}: state and parameters after the last epoch"
    );
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
        let state = through_json(&state);
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

/// Windows per epoch of `options()` on `corpus(2000)`: 500 tokens per
/// stream give 499 targets, in windows of 6 steps.
const WINDOWS_PER_EPOCH: usize = 84;

#[test]
fn resume_within_epoch_matches_run() {
    let options = TrainOptions {
        epochs: 3,
        // Overshoots, so the best perplexity and the rate both change.
        lr: 60.0,
        clip: 5.0,
        ..options()
    };
    let plain = run_from(options.clone(), None);
    // After the first window, mid-epoch, after an epoch's last window
    // (before its validation) and in a later epoch.
    let points = vec![1, 50, WINDOWS_PER_EPOCH, 130, 2 * WINDOWS_PER_EPOCH - 1];
    let (straight, result) = run_observed(
        options.clone(),
        None,
        Recorder {
            checkpoint_after: points.clone(),
            ..Recorder::default()
        },
    );
    result.unwrap();
    // Taking checkpoints changes nothing.
    assert_eq!(straight.reports, plain.reports);
    assert_eq!(
        untimed(straight.resume_points.last().unwrap()),
        untimed(plain.resume_points.last().unwrap())
    );
    assert_eq!(straight.checkpoints.len(), points.len());

    for ((state, params), &after) in straight.checkpoints.iter().zip(&points) {
        let partial = state.partial_epoch.as_ref().expect("a mid-epoch state");
        assert_eq!(state.epochs_done, (after - 1) / WINDOWS_PER_EPOCH);
        assert_eq!(
            partial.windows_done,
            after - state.epochs_done * WINDOWS_PER_EPOCH
        );
        assert_eq!(state.global_step, after);
        // Two layers, h and c, (B, H) each.
        assert_eq!(partial.carried_state.len(), 2 * 2 * 4 * 16);
        assert!(partial.carried_state.iter().any(|&v| v != 0.0));

        let resumed = run_from(options.clone(), Some((through_json(state), params.clone())));
        assert_continues(
            &straight,
            &resumed,
            after,
            &format!("resumed after window {after}"),
        );
    }
}

#[test]
fn stop_request_saves_state_and_resumes() {
    let options = TrainOptions {
        epochs: 2,
        ..options()
    };
    let straight = run_from(options.clone(), None);
    let (stopped, result) = run_observed(
        options.clone(),
        None,
        Recorder {
            stop_after: Some(100),
            ..Recorder::default()
        },
    );
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            TrainError::Interrupted {
                epoch: 2,
                window: 16,
                windows: WINDOWS_PER_EPOCH
            }
        ),
        "{error}"
    );
    assert_eq!(stopped.epochs.len(), 1);
    assert_eq!(stopped.checkpoints.len(), 1);
    let (state, params) = &stopped.checkpoints[0];
    assert_eq!(state.epochs_done, 1);
    assert_eq!(state.partial_epoch.as_ref().unwrap().windows_done, 16);

    let resumed = run_from(options, Some((through_json(state), params.clone())));
    assert_continues(&straight, &resumed, 100, "resumed after a stop");
}

#[test]
fn resume_within_epoch_needs_carried_state() {
    let options = TrainOptions {
        epochs: 1,
        ..options()
    };
    let (straight, result) = run_observed(
        options.clone(),
        None,
        Recorder {
            checkpoint_after: vec![40],
            ..Recorder::default()
        },
    );
    result.unwrap();
    let (mut state, params) = straight.checkpoints[0].clone();
    let partial = state.partial_epoch.as_mut().unwrap();
    partial.carried_state.fill(0.0);
    let zeroed = run_from(options, Some((state, params)));
    assert_ne!(zeroed.epochs[0].train_ppl, straight.epochs[0].train_ppl);
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
    let partial = PartialEpoch {
        windows_done: 5,
        tokens: 120,
        loss_sum: 15.0,
        report_loss_sum: 3.0,
        report_windows: 1,
        train_secs: 0.5,
        carried_state: vec![0.5, -0.25],
    };
    let with_partial = |partial: PartialEpoch| TrainState {
        partial_epoch: Some(partial),
        ..state.clone()
    };
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
        (
            "epochs_done",
            TrainState {
                epochs_done: 0,
                partial_epoch: Some(PartialEpoch::default()),
                ..state.clone()
            },
        ),
        (
            "partial_epoch.loss_sum",
            with_partial(PartialEpoch {
                loss_sum: f64::NAN,
                ..partial.clone()
            }),
        ),
        (
            "partial_epoch.train_secs",
            with_partial(PartialEpoch {
                train_secs: -2.0,
                ..partial.clone()
            }),
        ),
        (
            "partial_epoch.report_windows",
            with_partial(PartialEpoch {
                report_windows: 6,
                ..partial.clone()
            }),
        ),
        (
            "partial_epoch.carried_state",
            with_partial(PartialEpoch {
                carried_state: vec![0.5, f32::INFINITY],
                ..partial.clone()
            }),
        ),
    ];
    assert!(with_partial(partial.clone()).validate().is_ok());
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
