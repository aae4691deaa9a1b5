//! Optional wall-clock breakdown of a training step by kind of work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The kinds of work a step is split into for profiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// X Wx, its weight gradient and the input gradient: one large product per layer.
    InputProducts,
    /// h_{t-1} Wh and dgates Wh^T: one small product per step.
    RecurrentProducts,
    /// The recurrent weight gradient over all steps.
    RecurrentWeightGradient,
    /// Logits, the projection gradient and the gradient into the top layer.
    ProjectionProducts,
    /// The fused LSTM cell, forward and backward.
    LstmCell,
    /// Softmax cross-entropy or scoring.
    Softmax,
    /// Mask generation and application.
    Dropout,
    /// Gather and scatter-add.
    Embedding,
    /// Gradient norm, clipping and the SGD update.
    Optimizer,
    /// Bias adds, column sums and copies.
    Other,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::InputProducts,
        Phase::RecurrentProducts,
        Phase::RecurrentWeightGradient,
        Phase::ProjectionProducts,
        Phase::LstmCell,
        Phase::Softmax,
        Phase::Dropout,
        Phase::Embedding,
        Phase::Optimizer,
        Phase::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::InputProducts => "input products",
            Phase::RecurrentProducts => "recurrent products",
            Phase::RecurrentWeightGradient => "recurrent weight gradient",
            Phase::ProjectionProducts => "projection products",
            Phase::LstmCell => "fused LSTM cell",
            Phase::Softmax => "softmax cross-entropy",
            Phase::Dropout => "dropout",
            Phase::Embedding => "embedding",
            Phase::Optimizer => "optimizer",
            Phase::Other => "other",
        }
    }

    /// Whether the phase is a matrix product.
    pub fn is_product(self) -> bool {
        matches!(
            self,
            Phase::InputProducts
                | Phase::RecurrentProducts
                | Phase::RecurrentWeightGradient
                | Phase::ProjectionProducts
        )
    }
}

/// Nanoseconds spent in each phase, summed over the calls it timed.
#[derive(Debug, Default)]
pub struct Profiler {
    nanos: [AtomicU64; Phase::ALL.len()],
}

impl Profiler {
    pub fn new() -> Profiler {
        Profiler::default()
    }

    /// Runs `work` and adds its wall-clock time to `phase`.
    pub fn time<R>(&self, phase: Phase, work: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let result = work();
        self.nanos[phase as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    /// Adds `elapsed` to `phase`, for work timed by the caller.
    pub fn add(&self, phase: Phase, elapsed: std::time::Duration) {
        self.nanos[phase as usize].fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Seconds spent in each phase so far.
    pub fn seconds(&self) -> Vec<(Phase, f64)> {
        Phase::ALL
            .iter()
            .map(|&phase| {
                (
                    phase,
                    self.nanos[phase as usize].load(Ordering::Relaxed) as f64 * 1e-9,
                )
            })
            .collect()
    }

    pub fn reset(&self) {
        for counter in &self.nanos {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
