//! Fused LSTM cell, forward and backward, over a block of B rows.
//!
//! Shapes (row-major f32, H = `hidden`, B = `batch`):
//! - gate blocks `(B, 4H)`, gate order i, f, g, o (PyTorch's);
//! - bias `(4H)`;
//! - cell and hidden states `(B, H)`.
//!
//! Forward computes, per row b and unit j,
//! ```text
//! i = sigmoid(a_i + b_i)   f = sigmoid(a_f + b_f)
//! g = tanh(a_g + b_g)      o = sigmoid(a_o + b_o)
//! c = f * c_prev + i * g   h = o * tanh(c)
//! ```
//! and keeps the activated gates (in place of the pre-activations) and
//! tanh(c), which is all that backward needs besides c_prev.

use crate::activation::{scalar_sigmoid, scalar_tanh};
use crate::dispatch::{Isa, Kernels};

fn check_forward_shapes(
    batch: usize,
    hidden: usize,
    gates: usize,
    bias: usize,
    states: [usize; 4],
) {
    assert_eq!(
        gates,
        batch * 4 * hidden,
        "lstm_forward: gates must be (B, 4H) = {batch} x {}",
        4 * hidden
    );
    assert_eq!(
        bias,
        4 * hidden,
        "lstm_forward: bias must have 4H = {} elements",
        4 * hidden
    );
    for len in states {
        assert_eq!(
            len,
            batch * hidden,
            "lstm_forward: each state must be (B, H) = {batch} x {hidden}"
        );
    }
}

fn check_backward_shapes(batch: usize, hidden: usize, gate_blocks: [usize; 2], states: [usize; 4]) {
    for len in gate_blocks {
        assert_eq!(
            len,
            batch * 4 * hidden,
            "lstm_backward: gate blocks must be (B, 4H) = {batch} x {}",
            4 * hidden
        );
    }
    for len in states {
        assert_eq!(
            len,
            batch * hidden,
            "lstm_backward: each state must be (B, H) = {batch} x {hidden}"
        );
    }
}

/// Scalar twins, written per row and from a starting unit so that SIMD
/// paths can hand them the columns left over after their last full vector.
pub(crate) mod scalar {
    use super::*;

    /// Forward for units `from..H` of one row.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_row(
        hidden: usize,
        from: usize,
        gates: &mut [f32],
        bias: &[f32],
        c_prev: &[f32],
        c: &mut [f32],
        h: &mut [f32],
        tanh_c: &mut [f32],
    ) {
        for j in from..hidden {
            let i = scalar_sigmoid(gates[j] + bias[j]);
            let f = scalar_sigmoid(gates[hidden + j] + bias[hidden + j]);
            let g = scalar_tanh(gates[2 * hidden + j] + bias[2 * hidden + j]);
            let o = scalar_sigmoid(gates[3 * hidden + j] + bias[3 * hidden + j]);
            let cell = f * c_prev[j] + i * g;
            let t = scalar_tanh(cell);
            gates[j] = i;
            gates[hidden + j] = f;
            gates[2 * hidden + j] = g;
            gates[3 * hidden + j] = o;
            c[j] = cell;
            tanh_c[j] = t;
            h[j] = o * t;
        }
    }

    /// Backward for units `from..H` of one row.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_row(
        hidden: usize,
        from: usize,
        gates: &[f32],
        c_prev: &[f32],
        tanh_c: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        dgates: &mut [f32],
    ) {
        for j in from..hidden {
            let i = gates[j];
            let f = gates[hidden + j];
            let g = gates[2 * hidden + j];
            let o = gates[3 * hidden + j];
            let t = tanh_c[j];
            let dcell = dc[j] + dh[j] * o * (1.0 - t * t);
            dgates[j] = dcell * g * i * (1.0 - i);
            dgates[hidden + j] = dcell * c_prev[j] * f * (1.0 - f);
            dgates[2 * hidden + j] = dcell * i * (1.0 - g * g);
            dgates[3 * hidden + j] = dh[j] * t * o * (1.0 - o);
            dc[j] = dcell * f;
        }
    }
}

impl Kernels {
    /// LSTM cell forward for one time step of B rows.
    ///
    /// - `gates`: `(B, 4H)`; on entry the pre-activations x Wx + h Wh without
    ///   bias, on return the activated gates i, f, g, o.
    /// - `bias`: `(4H)`, added to every row before the nonlinearities.
    /// - `c_prev`: `(B, H)`, the cell state of the previous step.
    /// - `c`, `h`, `tanh_c`: `(B, H)`, written with the new cell state, the
    ///   new hidden state and tanh of the new cell state.
    ///
    /// One pass: each gate value is read once and each output written once.
    ///
    /// # Panics
    /// When a slice length does not match `batch` and `hidden`.
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_forward(
        &self,
        batch: usize,
        hidden: usize,
        gates: &mut [f32],
        bias: &[f32],
        c_prev: &[f32],
        c: &mut [f32],
        h: &mut [f32],
        tanh_c: &mut [f32],
    ) {
        check_forward_shapes(
            batch,
            hidden,
            gates.len(),
            bias.len(),
            [c_prev.len(), c.len(), h.len(), tanh_c.len()],
        );
        if hidden == 0 {
            return;
        }
        let rows = gates
            .chunks_exact_mut(4 * hidden)
            .zip(c_prev.chunks_exact(hidden))
            .zip(c.chunks_exact_mut(hidden))
            .zip(h.chunks_exact_mut(hidden))
            .zip(tanh_c.chunks_exact_mut(hidden));
        for ((((g, cp), c), h), t) in rows {
            match self.isa() {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => crate::x86::avx512::lstm_forward_row(hidden, g, bias, cp, c, h, t),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => crate::x86::avx2::lstm_forward_row(hidden, g, bias, cp, c, h, t),
                #[cfg(target_arch = "aarch64")]
                Isa::Neon => crate::aarch64::neon::lstm_forward_row(hidden, g, bias, cp, c, h, t),
                _ => scalar::forward_row(hidden, 0, g, bias, cp, c, h, t),
            }
        }
    }

    /// LSTM cell backward for one time step of B rows.
    ///
    /// - `gates`: `(B, 4H)`, the activated gates that forward left.
    /// - `c_prev`: `(B, H)`, the cell state forward started from.
    /// - `tanh_c`: `(B, H)`, tanh of the cell state forward computed.
    /// - `dh`: `(B, H)`, the loss gradient with respect to h_t (from the
    ///   layer above and from step t + 1).
    /// - `dc`: `(B, H)`; on entry dL/dc_t carried from step t + 1 (zeros at
    ///   the last step of a window), on return dL/dc_{t-1}.
    /// - `dgates`: `(B, 4H)`, written with dL/d(pre-activation) of i, f, g, o;
    ///   the same block is the bias gradient of this step, row by row.
    ///
    /// # Panics
    /// When a slice length does not match `batch` and `hidden`.
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_backward(
        &self,
        batch: usize,
        hidden: usize,
        gates: &[f32],
        c_prev: &[f32],
        tanh_c: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        dgates: &mut [f32],
    ) {
        check_backward_shapes(
            batch,
            hidden,
            [gates.len(), dgates.len()],
            [c_prev.len(), tanh_c.len(), dh.len(), dc.len()],
        );
        if hidden == 0 {
            return;
        }
        let rows = gates
            .chunks_exact(4 * hidden)
            .zip(c_prev.chunks_exact(hidden))
            .zip(tanh_c.chunks_exact(hidden))
            .zip(dh.chunks_exact(hidden))
            .zip(dc.chunks_exact_mut(hidden))
            .zip(dgates.chunks_exact_mut(4 * hidden));
        for (((((g, cp), t), dh), dc), dg) in rows {
            match self.isa() {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => crate::x86::avx512::lstm_backward_row(hidden, g, cp, t, dh, dc, dg),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => crate::x86::avx2::lstm_backward_row(hidden, g, cp, t, dh, dc, dg),
                #[cfg(target_arch = "aarch64")]
                Isa::Neon => crate::aarch64::neon::lstm_backward_row(hidden, g, cp, t, dh, dc, dg),
                _ => scalar::backward_row(hidden, 0, g, cp, t, dh, dc, dg),
            }
        }
    }
}
