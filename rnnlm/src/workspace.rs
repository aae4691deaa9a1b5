//! Activation and gradient buffers of one window, allocated once.

use std::ops::{Deref, DerefMut};

use rnnlm_kernels::packed_len;

use crate::model::ModelConfig;

/// A zeroed f32 buffer whose first element starts a 64-byte cache line.
///
/// glibc's malloc returns large (mmap'd) blocks 16 bytes past a line, so
/// every 512-bit access to a plain `Vec<f32>` spans two lines. For the logits
/// that cost the fused softmax cross-entropy 8% (criterion, 700 x 10 000:
/// 2.46 ms against 2.26 ms on a line-aligned copy, one Zen 4 core).
#[derive(Debug)]
pub struct LineAligned {
    storage: Vec<f32>,
    start: usize,
    len: usize,
}

impl LineAligned {
    /// Floats in a 64-byte line.
    const LINE: usize = 16;

    pub fn zeroed(len: usize) -> LineAligned {
        let storage = vec![0.0f32; len + Self::LINE - 1];
        // The buffer never grows, so its address and this offset stay fixed.
        let past_line = storage.as_ptr() as usize % 64;
        let start = (64 - past_line) % 64 / std::mem::size_of::<f32>();
        LineAligned {
            storage,
            start,
            len,
        }
    }
}

impl Deref for LineAligned {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl DerefMut for LineAligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Dropout probabilities of the three sites, and the mask mode.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dropout {
    /// On the embedding output (the first layer's input).
    pub embed: f32,
    /// Between stacked layers (the input of every layer above the first).
    pub between: f32,
    /// On the last layer's output, before the projection.
    pub output: f32,
    /// One `(B, In)` mask per site per window, shared by all its steps;
    /// otherwise a fresh mask per element per step.
    pub variational: bool,
}

impl Dropout {
    /// No dropout at any site.
    pub const OFF: Dropout = Dropout {
        embed: 0.0,
        between: 0.0,
        output: 0.0,
        variational: true,
    };

    /// The same probability `p` at all three sites, variational masks.
    pub fn uniform(p: f32) -> Dropout {
        Dropout {
            embed: p,
            between: p,
            output: p,
            variational: true,
        }
    }

    /// Returns the probability at the input of layer `layer`.
    pub fn at_input(&self, layer: usize) -> f32 {
        if layer == 0 { self.embed } else { self.between }
    }
}

/// Every buffer a window of B streams by up to T steps needs, for forward
/// and backward. Rows are time-major: row `t * B + b` is stream b at step t.
#[derive(Debug)]
pub struct Workspace {
    /// B: streams per window.
    pub batch: usize,
    /// T: the maximum number of steps per window.
    pub steps: usize,
    pub(crate) config: ModelConfig,
    /// Per layer, its input `(T B, In_l)` after dropout.
    pub(crate) inputs: Vec<Vec<f32>>,
    /// Per layer, the activated gates `(T B, 4H)`.
    pub(crate) gates: Vec<Vec<f32>>,
    /// Per layer, hidden states `((T + 1) B, H)`: block 0 is the state carried
    /// in, block t + 1 the output of step t.
    pub(crate) h: Vec<Vec<f32>>,
    /// Per layer, cell states, laid out like `h`.
    pub(crate) c: Vec<Vec<f32>>,
    /// Per layer, tanh of the cell states `(T B, H)`.
    pub(crate) tanh_c: Vec<Vec<f32>>,
    /// Per layer, the dropout mask on its input: `(B, In_l)` when variational,
    /// `(T B, In_l)` otherwise.
    pub(crate) input_masks: Vec<Vec<f32>>,
    /// Mask on the last layer's output, sized like the input masks.
    pub(crate) output_mask: Vec<f32>,
    /// The last layer's output after dropout `(T B, H)`.
    pub(crate) top: Vec<f32>,
    /// Logits `(T B, V)`; after a training forward, the loss gradient.
    pub(crate) logits: LineAligned,
    /// log p(target) of each row after an evaluation forward `(T B)`.
    pub(crate) log_probs: Vec<f32>,
    /// Gradient with respect to a layer's output `(T B, H)`.
    pub(crate) d_h: Vec<f32>,
    /// Gradient with respect to a layer's input `(T B, max(Emb, H))`.
    pub(crate) d_x: Vec<f32>,
    /// Gate gradients of one layer `(T B, 4H)`.
    pub(crate) d_gates: Vec<f32>,
    /// Cell-state gradient carried backwards through time `(B, H)`.
    pub(crate) d_c: Vec<f32>,
    /// `(T B)` ones: bias gradients are column sums, computed as products.
    pub(crate) ones: Vec<f32>,
    /// One layer's Wh (forward) or Wh^T (backward) packed for the recurrent
    /// products; both packed forms have the same length.
    pub(crate) packed_wh: Vec<f32>,
}

impl Workspace {
    /// Allocates every buffer for `batch` streams and up to `steps` steps.
    /// `training` adds the dropout masks and backward buffers.
    pub fn new(config: &ModelConfig, batch: usize, steps: usize, training: bool) -> Workspace {
        let (h, v) = (config.hidden, config.vocab);
        let rows = batch * steps;
        let mask_rows = |variational_rows: usize| if training { variational_rows } else { 0 };
        let train_len = |len: usize| if training { len } else { 0 };
        let max_input = config.embed.max(h);
        Workspace {
            batch,
            steps,
            config: config.clone(),
            inputs: (0..config.layers)
                .map(|l| vec![0.0; rows * config.layer_input(l)])
                .collect(),
            gates: (0..config.layers)
                .map(|_| vec![0.0; rows * 4 * h])
                .collect(),
            h: (0..config.layers)
                .map(|_| vec![0.0; (rows + batch) * h])
                .collect(),
            c: (0..config.layers)
                .map(|_| vec![0.0; (rows + batch) * h])
                .collect(),
            tanh_c: (0..config.layers).map(|_| vec![0.0; rows * h]).collect(),
            input_masks: (0..config.layers)
                .map(|l| vec![0.0; mask_rows(rows) * config.layer_input(l)])
                .collect(),
            output_mask: vec![0.0; mask_rows(rows) * h],
            top: vec![0.0; rows * h],
            logits: LineAligned::zeroed(rows * v),
            log_probs: vec![0.0; rows],
            d_h: vec![0.0; train_len(rows * h)],
            d_x: vec![0.0; train_len(rows * max_input)],
            d_gates: vec![0.0; train_len(rows * 4 * h)],
            d_c: vec![0.0; train_len(batch * h)],
            ones: vec![1.0; train_len(rows)],
            packed_wh: vec![0.0; packed_len(h, 4 * h).max(packed_len(4 * h, h))],
        }
    }

    /// Zeroes the hidden and cell states carried into the next window.
    pub fn reset_state(&mut self) {
        let state = self.batch * self.config.hidden;
        for layer in 0..self.config.layers {
            self.h[layer][..state].fill(0.0);
            self.c[layer][..state].fill(0.0);
        }
    }

    /// Makes the states after step `steps - 1` the states carried into the
    /// next window.
    pub fn carry_state(&mut self, steps: usize) {
        let state = self.batch * self.config.hidden;
        for layer in 0..self.config.layers {
            self.h[layer].copy_within(steps * state..(steps + 1) * state, 0);
            self.c[layer].copy_within(steps * state..(steps + 1) * state, 0);
        }
    }

    /// The hidden and cell states `(B, H)` of layer `layer` carried into the
    /// next window.
    pub fn carried_state(&self, layer: usize) -> (&[f32], &[f32]) {
        let state = self.batch * self.config.hidden;
        (&self.h[layer][..state], &self.c[layer][..state])
    }

    /// Replaces the carried hidden and cell states `(B, H)` of layer `layer`.
    ///
    /// # Panics
    /// When a slice is not `(B, H)`.
    pub fn set_carried_state(&mut self, layer: usize, h: &[f32], c: &[f32]) {
        let state = self.batch * self.config.hidden;
        self.h[layer][..state].copy_from_slice(h);
        self.c[layer][..state].copy_from_slice(c);
    }

    /// The log-probabilities of the targets of the last evaluation forward,
    /// row `t * B + b`, for the first `steps` steps.
    pub fn log_probs(&self, steps: usize) -> &[f32] {
        &self.log_probs[..steps * self.batch]
    }

    /// The last layer's hidden state `(B, H)` carried into the next window.
    pub fn top_state(&self) -> &[f32] {
        let state = self.batch * self.config.hidden;
        &self.h[self.config.layers - 1][..state]
    }

    /// The logits `(T B, V)` of the last forward (before any gradient is
    /// written over them, that is after an evaluation forward).
    pub fn logits(&self, steps: usize) -> &[f32] {
        &self.logits[..steps * self.batch * self.config.vocab]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_aligned_buffer_starts_on_line() {
        for len in [0, 1, 15, 16, 17, 7000] {
            let mut buffer = LineAligned::zeroed(len);
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|&x| x == 0.0));
            if len > 0 {
                assert_eq!(buffer.as_ptr() as usize % 64, 0, "len {len}");
            }
            buffer.fill(1.5);
            assert_eq!(buffer.iter().sum::<f32>(), 1.5 * len as f32);
        }
    }
}
