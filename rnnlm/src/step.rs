//! Forward and backward passes over one window of B streams by T steps.
//!
//! Rows are time-major (row `t * B + b`). Forward: embed, then per layer one
//! large input product for all steps followed by the recurrent steps, then
//! the projection and the loss. Backward runs the same in reverse; the
//! weight gradients of a layer are each one large product over all steps.

use faer::Accum;
use rayon::prelude::*;
use rnnlm_kernels::{DropoutRng, Kernels, packed_len};

use crate::matmul::{gemm, pack_b, view, view_mut};
use crate::model::Model;
use crate::profile::{Phase, Profiler};
use crate::recurrence::{BackwardStep, ForwardStep, backward_step, forward_step};
use crate::workspace::{Dropout, Workspace};

/// The work a forward pass does after the logits.
pub enum Mode<'a> {
    /// Dropout on, masks drawn from `rng`; the loss gradient (of the mean
    /// over the window's targets) replaces the logits for `backward`.
    Train {
        dropout: &'a Dropout,
        rng: &'a mut DropoutRng,
    },
    /// Dropout off; the log-probability of each target is kept.
    Eval,
}

/// Shared context of a pass: the kernel path, the thread count and an
/// optional profiler (the benchmark harness leaks one for the process).
#[derive(Clone, Copy, Debug)]
pub struct Compute {
    pub kernels: Kernels,
    pub threads: usize,
    pub profiler: Option<&'static Profiler>,
}

impl Compute {
    pub fn new(kernels: Kernels, threads: usize) -> Compute {
        Compute {
            kernels,
            threads: threads.max(1),
            profiler: None,
        }
    }

    /// Runs `work`, adding its time to `phase` when profiling.
    pub fn time<R>(&self, phase: Phase, work: impl FnOnce() -> R) -> R {
        match self.profiler {
            Some(profiler) => profiler.time(phase, work),
            None => work(),
        }
    }
}

/// Runs the forward pass over `steps` steps (at most `ws.steps`) and returns
/// the summed negative log-likelihood of the `steps * B` targets.
///
/// `inputs` and `targets` are `(steps, B)` time-major token ids below V.
/// The hidden state starts from what `ws` carries and is not advanced: call
/// `Workspace::carry_state` afterwards to carry it to the next window.
pub fn forward(
    cx: Compute,
    model: &Model,
    ws: &mut Workspace,
    inputs: &[u32],
    targets: &[u32],
    steps: usize,
    mode: Mode<'_>,
) -> f64 {
    let k = cx.kernels;
    let config = &model.config;
    let layout = &model.layout;
    let params = &model.params;
    let (batch, hidden, vocab) = (ws.batch, config.hidden, config.vocab);
    let rows = steps * batch;
    assert!(
        steps <= ws.steps,
        "forward: {steps} steps do not fit a workspace of {}",
        ws.steps
    );
    assert_eq!(
        inputs.len(),
        rows,
        "forward: inputs must be (steps, B) = {steps} x {batch}"
    );
    assert_eq!(
        targets.len(),
        rows,
        "forward: targets must be (steps, B) = {steps} x {batch}"
    );

    let (dropout, mut rng) = match mode {
        Mode::Train { dropout, rng } => (Some(dropout), Some(rng)),
        Mode::Eval => (None, None),
    };

    // Embedding lookup into the first layer's input.
    let embed = config.embed;
    cx.time(Phase::Embedding, || {
        k.embedding_gather(
            embed,
            &params[layout.embedding.clone()],
            inputs,
            &mut ws.inputs[0][..rows * embed],
        )
    });

    for (l, ranges) in layout.layers.iter().enumerate() {
        let input_size = config.layer_input(l);
        let input = &mut ws.inputs[l][..rows * input_size];
        if let (Some(dropout), Some(rng)) = (dropout, rng.as_deref_mut())
            && dropout.at_input(l) > 0.0
        {
            let mask = mask_for(
                &mut ws.input_masks[l],
                dropout.variational,
                batch,
                rows,
                input_size,
            );
            cx.time(Phase::Dropout, || {
                k.dropout_mask(rng, dropout.at_input(l), mask)
            });
            cx.time(Phase::Dropout, || k.dropout_apply(input, mask));
        }

        // Input contribution of every step at once: gates = X Wx.
        let gates = &mut ws.gates[l][..rows * 4 * hidden];
        cx.time(Phase::InputProducts, || {
            gemm(
                cx.threads,
                view_mut(gates, rows, 4 * hidden),
                Accum::Replace,
                view(input, rows, input_size),
                view(&params[ranges.wx.clone()], input_size, 4 * hidden),
            )
        });

        // Recurrent steps: gates_t += h_{t-1} Wh, then the fused cell. Wh is
        // packed once for all steps of the window.
        let wh = &params[ranges.wh.clone()];
        let packed_wh = &mut ws.packed_wh[..packed_len(hidden, 4 * hidden)];
        cx.time(Phase::RecurrentProducts, || {
            pack_b(cx.threads, k, hidden, 4 * hidden, wh, false, packed_wh)
        });
        let bias = &params[ranges.bias.clone()];
        let state = batch * hidden;
        for t in 0..steps {
            let (h_prev, h_next) = ws.h[l].split_at_mut((t + 1) * state);
            let (c_prev, c_next) = ws.c[l].split_at_mut((t + 1) * state);
            let step = ForwardStep {
                h_prev: &h_prev[t * state..],
                gates: &mut gates[t * 4 * state..(t + 1) * 4 * state],
                c_prev: &c_prev[t * state..],
                c: &mut c_next[..state],
                h: &mut h_next[..state],
                tanh_c: &mut ws.tanh_c[l][t * state..(t + 1) * state],
            };
            forward_step(cx, hidden, packed_wh, bias, step);
        }

        // The layer's output feeds the next layer (dropout applied there) or
        // the projection.
        let output = &ws.h[l][state..state + rows * hidden];
        if l + 1 < config.layers {
            ws.inputs[l + 1][..rows * hidden].copy_from_slice(output);
        } else {
            ws.top[..rows * hidden].copy_from_slice(output);
        }
    }

    let top = &mut ws.top[..rows * hidden];
    if let (Some(dropout), Some(rng)) = (dropout, rng)
        && dropout.output > 0.0
    {
        let mask = mask_for(
            &mut ws.output_mask,
            dropout.variational,
            batch,
            rows,
            hidden,
        );
        cx.time(Phase::Dropout, || k.dropout_mask(rng, dropout.output, mask));
        cx.time(Phase::Dropout, || k.dropout_apply(top, mask));
    }

    // Projection: logits = top P^T + out_bias, with P = E when tied.
    let logits = &mut ws.logits[..rows * vocab];
    cx.time(Phase::ProjectionProducts, || {
        gemm(
            cx.threads,
            view_mut(logits, rows, vocab),
            Accum::Replace,
            view(top, rows, hidden),
            view(&params[layout.projection()], vocab, hidden).transpose(),
        )
    });

    // Bias and loss, rows split across threads.
    let rows_per_task = rows.div_ceil(cx.threads.max(1)).max(1);
    let out_bias = &params[layout.out_bias.clone()];
    cx.time(Phase::Other, || {
        logits
            .par_chunks_mut(rows_per_task * vocab)
            .for_each(|block| k.add_row_bias(block, out_bias))
    });
    cx.time(Phase::Softmax, || {
        if dropout.is_some() {
            let scale = 1.0 / rows as f32;
            logits
                .par_chunks_mut(rows_per_task * vocab)
                .zip(targets.par_chunks(rows_per_task))
                .map(|(block, block_targets)| {
                    k.softmax_cross_entropy(block_targets.len(), vocab, block, block_targets, scale)
                })
                .sum()
        } else {
            let log_probs = &mut ws.log_probs[..rows];
            let log_likelihood: f64 = logits
                .par_chunks(rows_per_task * vocab)
                .zip(targets.par_chunks(rows_per_task))
                .zip(log_probs.par_chunks_mut(rows_per_task))
                .map(|((block, block_targets), out)| {
                    k.log_softmax_at(block_targets.len(), vocab, block, block_targets, out)
                })
                .sum();
            -log_likelihood
        }
    })
}

/// Writes the column sums of `x` (`(R, C)` with R = `ones.len()`) to `sums`
/// (`(C)`) as the product `ones^T x`, which spreads over threads without
/// per-thread partial buffers.
fn column_sums(threads: usize, ones: &[f32], x: &[f32], sums: &mut [f32]) {
    let (rows, cols) = (ones.len(), sums.len());
    gemm(
        threads,
        view_mut(sums, 1, cols),
        Accum::Replace,
        view(ones, 1, rows),
        view(x, rows, cols),
    );
}

/// Returns the part of `buffer` one site's mask uses: `(B, In)` shared by all
/// steps when variational, `(T B, In)` otherwise.
fn mask_for(
    buffer: &mut [f32],
    variational: bool,
    batch: usize,
    rows: usize,
    width: usize,
) -> &mut [f32] {
    let len = if variational {
        batch * width
    } else {
        rows * width
    };
    &mut buffer[..len]
}

/// Runs the backward pass of the last training `forward` over `steps` steps
/// and writes the gradient of the mean loss into `grads` (same layout as the
/// parameters). Every gradient entry is overwritten, none accumulated.
pub fn backward(
    cx: Compute,
    model: &Model,
    ws: &mut Workspace,
    inputs: &[u32],
    steps: usize,
    dropout: &Dropout,
    grads: &mut [f32],
) {
    let k = cx.kernels;
    let config = &model.config;
    let layout = &model.layout;
    let params = &model.params;
    let (batch, hidden, vocab) = (ws.batch, config.hidden, config.vocab);
    let rows = steps * batch;
    assert_eq!(
        grads.len(),
        layout.total,
        "backward: grads must have {} elements",
        layout.total
    );
    let state = batch * hidden;

    // Projection: d_out_bias = column sums, dP = dlogits^T top, d_top = dlogits P.
    let d_logits = &ws.logits[..rows * vocab];
    let top = &ws.top[..rows * hidden];
    let ones = &ws.ones[..rows];
    cx.time(Phase::Other, || {
        column_sums(
            cx.threads,
            ones,
            d_logits,
            &mut grads[layout.out_bias.clone()],
        )
    });
    cx.time(Phase::ProjectionProducts, || {
        gemm(
            cx.threads,
            view_mut(&mut grads[layout.projection()], vocab, hidden),
            Accum::Replace,
            view(d_logits, rows, vocab).transpose(),
            view(top, rows, hidden),
        )
    });
    let d_h = &mut ws.d_h[..rows * hidden];
    cx.time(Phase::ProjectionProducts, || {
        gemm(
            cx.threads,
            view_mut(d_h, rows, hidden),
            Accum::Replace,
            view(d_logits, rows, vocab),
            view(&params[layout.projection()], vocab, hidden),
        )
    });
    if dropout.output > 0.0 {
        cx.time(Phase::Dropout, || {
            k.dropout_apply(
                d_h,
                mask_for(
                    &mut ws.output_mask,
                    dropout.variational,
                    batch,
                    rows,
                    hidden,
                ),
            )
        });
    }

    for (l, ranges) in layout.layers.iter().enumerate().rev() {
        let input_size = config.layer_input(l);
        let d_gates = &mut ws.d_gates[..rows * 4 * hidden];
        let d_h = &mut ws.d_h[..rows * hidden];
        let wh = &params[ranges.wh.clone()];
        let packed_wh_t = &mut ws.packed_wh[..packed_len(4 * hidden, hidden)];
        cx.time(Phase::RecurrentProducts, || {
            pack_b(cx.threads, k, 4 * hidden, hidden, wh, true, packed_wh_t)
        });

        // Through time, last step first: dh_t gets dgates_{t+1} Wh^T from the
        // step after it; the cell gradient dc flows from step to step.
        let d_c = &mut ws.d_c[..];
        d_c.fill(0.0);
        for t in (0..steps).rev() {
            let (d_gates_t, d_gates_later) = d_gates[t * 4 * state..].split_at_mut(4 * state);
            let step = BackwardStep {
                d_gates_next: (t + 1 < steps).then(|| &d_gates_later[..4 * state]),
                d_h: &mut d_h[t * state..(t + 1) * state],
                gates: &ws.gates[l][t * 4 * state..(t + 1) * 4 * state],
                c_prev: &ws.c[l][t * state..(t + 1) * state],
                tanh_c: &ws.tanh_c[l][t * state..(t + 1) * state],
                d_c: &mut *d_c,
                d_gates: d_gates_t,
            };
            backward_step(cx, hidden, packed_wh_t, step);
        }

        // Weight gradients over all steps at once.
        let ones = &ws.ones[..rows];
        cx.time(Phase::Other, || {
            column_sums(cx.threads, ones, d_gates, &mut grads[ranges.bias.clone()])
        });
        cx.time(Phase::RecurrentWeightGradient, || {
            gemm(
                cx.threads,
                view_mut(&mut grads[ranges.wh.clone()], hidden, 4 * hidden),
                Accum::Replace,
                view(&ws.h[l][..rows * hidden], rows, hidden).transpose(),
                view(d_gates, rows, 4 * hidden),
            )
        });
        let input = &ws.inputs[l][..rows * input_size];
        cx.time(Phase::InputProducts, || {
            gemm(
                cx.threads,
                view_mut(&mut grads[ranges.wx.clone()], input_size, 4 * hidden),
                Accum::Replace,
                view(input, rows, input_size).transpose(),
                view(d_gates, rows, 4 * hidden),
            )
        });

        // Gradient with respect to the layer's input, through its dropout.
        let d_x = &mut ws.d_x[..rows * input_size];
        cx.time(Phase::InputProducts, || {
            gemm(
                cx.threads,
                view_mut(d_x, rows, input_size),
                Accum::Replace,
                view(d_gates, rows, 4 * hidden),
                view(&params[ranges.wx.clone()], input_size, 4 * hidden).transpose(),
            )
        });
        if dropout.at_input(l) > 0.0 {
            let mask = mask_for(
                &mut ws.input_masks[l],
                dropout.variational,
                batch,
                rows,
                input_size,
            );
            cx.time(Phase::Dropout, || k.dropout_apply(d_x, mask));
        }
        if l > 0 {
            ws.d_h[..rows * hidden].copy_from_slice(&ws.d_x[..rows * hidden]);
        }
    }

    // Embedding: scatter the first layer's input gradient into its rows. When
    // tied, these add to the projection gradient written above.
    let embedding_grad = &mut grads[layout.embedding.clone()];
    if layout.decoder.is_some() {
        embedding_grad.fill(0.0);
    }
    cx.time(Phase::Embedding, || {
        k.embedding_scatter_add(
            config.embed,
            embedding_grad,
            inputs,
            &ws.d_x[..rows * config.embed],
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Init, ModelConfig};

    const BATCH: usize = 3;
    const STEPS: usize = 5;

    /// Runs two training windows and returns, per window, which elements of
    /// the first layer's input (the embedding after dropout) were dropped,
    /// as `(T B, Emb)` booleans.
    fn dropped_inputs(variational: bool) -> Vec<Vec<bool>> {
        let config = ModelConfig {
            vocab: 13,
            embed: 8,
            hidden: 8,
            layers: 2,
            tied: true,
        };
        // Uniform init: no embedding entry is exactly 0 before dropout.
        let model = Model::new(config.clone(), Init::Uniform(0.5), 1).unwrap();
        let dropout = Dropout {
            variational,
            ..Dropout::uniform(0.5)
        };
        let cx = Compute::new(Kernels::scalar(), 1);
        let mut ws = Workspace::new(&config, BATCH, STEPS, true);
        let mut rng = rnnlm_kernels::dropout_rng(9);
        let inputs: Vec<u32> = (0..BATCH * STEPS).map(|i| (i % 13) as u32).collect();
        let mut windows = Vec::new();
        for _ in 0..2 {
            let mode = Mode::Train {
                dropout: &dropout,
                rng: &mut rng,
            };
            forward(cx, &model, &mut ws, &inputs, &inputs, STEPS, mode);
            windows.push(ws.inputs[0].iter().map(|&x| x == 0.0).collect());
        }
        windows
    }

    #[test]
    fn variational_masks_are_shared_along_time() {
        let windows = dropped_inputs(true);
        let width = BATCH * 8;
        for window in &windows {
            let first_step = &window[..width];
            assert!(first_step.iter().any(|&d| d), "no unit dropped");
            assert!(first_step.iter().any(|&d| !d), "every unit dropped");
            for t in 1..STEPS {
                assert_eq!(
                    &window[t * width..(t + 1) * width],
                    first_step,
                    "step {t} differs from step 0"
                );
            }
        }
        assert_ne!(
            windows[0][..width],
            windows[1][..width],
            "two windows drew the same mask"
        );
    }

    #[test]
    fn standard_masks_differ_between_steps() {
        let windows = dropped_inputs(false);
        let width = BATCH * 8;
        let window = &windows[0];
        let differing_steps = (1..STEPS)
            .filter(|&t| window[t * width..(t + 1) * width] != window[..width])
            .count();
        assert_eq!(differing_steps, STEPS - 1);
    }
}
