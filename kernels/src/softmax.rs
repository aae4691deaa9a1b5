//! Softmax cross-entropy over rows of logits, and forward-only scoring.
//!
//! Shapes: `logits` is `(N, V)` row-major, `targets` is `(N)` with every
//! target below V. Rows are independent, so a caller may split them across
//! threads and add the returned sums.
//!
//! Each row is read in blocks of [`BLOCK`] columns. The first pass keeps a
//! running maximum m and a running sum s of e^(x - m) (rescaling s when a
//! block raises m), reading each block twice while it sits in L1. The
//! second pass writes the gradient. Subtracting the maximum keeps logits of
//! any finite magnitude (1e4 and beyond) from overflowing.
//!
//! The scalar path evaluates e^(x - max) again in the second pass. The SIMD
//! paths evaluate it once: the first pass stores e^(x - m_k) in place, where
//! m_k is the running maximum after block k, and the second pass multiplies
//! block k by e^(m_k - max) / sum. Each element then costs one exponential
//! instead of two.

use crate::activation::{scalar_exp, scalar_ln_f64};
use crate::dispatch::{Isa, Kernels};

/// Columns per block: 2048 f32 are 8 KiB, which fits in any L1 data cache
/// alongside the other operands.
pub const BLOCK: usize = 2048;

/// Max number of blocks per row in the single-exponential gradient of the
/// SIMD paths, which keep one running maximum per block on the stack.
/// Rows longer than `MAX_BLOCKS * BLOCK` (131 072 columns) use longer
/// blocks instead (see `gradient_block_len`).
const MAX_BLOCKS: usize = 64;

/// Returns the block length of the single-exponential gradient for rows
/// of `vocab` columns: [`BLOCK`], or more when the row would otherwise
/// have more than `MAX_BLOCKS` blocks.
fn gradient_block_len(vocab: usize) -> usize {
    BLOCK.max(vocab.div_ceil(MAX_BLOCKS))
}

/// e^(a - b) for a <= b, with the difference taken exactly.
///
/// Rounding a - b to f32 can move it by half an ulp of the difference,
/// which costs up to 3.8e-6 relative in the result when |a - b| is near
/// 100. The exact difference is head + tail in f32, and e^tail is
/// 1 + tail to within 2^-37. Returns NaN when a or b is NaN.
pub(crate) fn exp_difference(a: f32, b: f32) -> f32 {
    let difference = a as f64 - b as f64;
    let head = difference as f32;
    let e = scalar_exp(head);
    if !difference.is_finite() {
        return e;
    }
    let tail = (difference - head as f64) as f32;
    e + e * tail
}

fn check_shapes(name: &str, rows: usize, vocab: usize, logits: usize, targets: &[u32]) {
    assert_eq!(
        logits,
        rows * vocab,
        "{name}: logits must be (N, V) = {rows} x {vocab}"
    );
    assert_eq!(
        targets.len(),
        rows,
        "{name}: targets must have N = {rows} elements"
    );
    assert!(vocab > 0 || rows == 0, "{name}: V must be positive");
    for (r, &t) in targets.iter().enumerate() {
        assert!(
            (t as usize) < vocab,
            "{name}: target {t} of row {r} is not below V = {vocab}"
        );
    }
}

/// Scalar twins; the SIMD paths implement `row_max_sum` and `row_gradient`
/// and share `row_loss`.
pub(crate) mod scalar {
    use super::*;

    /// Running maximum and sum of e^(x - max) over one row.
    pub fn row_max_sum(row: &[f32]) -> (f32, f32) {
        let mut m = f32::NEG_INFINITY;
        let mut s = 0.0f32;
        for block in row.chunks(BLOCK) {
            let mut block_max = f32::NEG_INFINITY;
            for &x in block {
                // A NaN is taken as the maximum so that it propagates.
                if x > block_max || x.is_nan() {
                    block_max = x;
                }
            }
            if block_max > m || block_max.is_nan() {
                s *= scalar_exp(m - block_max);
                m = block_max;
            }
            // One f32 accumulator over a row of 10 000 columns drifted by up
            // to 1e-5 relative (measured), far more than the 8 or 16 f32
            // lanes of the SIMD paths, so the scalar reference adds in f64.
            let mut block_sum = 0.0f64;
            for &x in block {
                block_sum += scalar_exp(x - m) as f64;
            }
            s += block_sum as f32;
        }
        (m, s)
    }

    /// Writes (softmax - onehot(target)) * scale over one row in place.
    pub fn row_gradient(row: &mut [f32], target: usize, max: f32, sum: f32, scale: f32) {
        let factor = scale / sum;
        for x in row.iter_mut() {
            *x = scalar_exp(*x - max) * factor;
        }
        row[target] -= scale;
    }
}

/// -log softmax(x)[target] = max + ln(sum) - x[target], in f64.
pub(crate) fn row_loss(target_logit: f32, max: f32, sum: f32) -> f64 {
    max as f64 + scalar_ln_f64(sum as f64) - target_logit as f64
}

impl Kernels {
    /// Returns the maximum of `row` and the sum of e^(x - max) over it. The
    /// SIMD paths go in blocks of `gradient_block_len`, as the gradient
    /// does, so both entry points return the same bits for the same row.
    fn row_max_sum(&self, row: &[f32]) -> (f32, f32) {
        let block_len = gradient_block_len(row.len());
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::softmax_row_max_sum(row, block_len),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::softmax_row_max_sum(row, block_len),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::softmax_row_max_sum(row, block_len),
            _ => scalar::row_max_sum(row),
        }
    }

    /// Runs the first pass of the single-exponential gradient on a SIMD
    /// path: writes e^(x - m_k) over block k of `row` (blocks of `block_len`),
    /// stores m_k, the running maximum after block k, in `block_maxes[k]`,
    /// and returns the row's maximum and sum of e^(x - max).
    fn row_exp_sum(
        &self,
        row: &mut [f32],
        block_len: usize,
        block_maxes: &mut [f32; MAX_BLOCKS],
    ) -> (f32, f32) {
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::softmax_row_exp_sum(row, block_len, block_maxes),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::softmax_row_exp_sum(row, block_len, block_maxes),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::softmax_row_exp_sum(row, block_len, block_maxes),
            _ => unreachable!("the scalar path computes the gradient with two exponentials"),
        }
    }

    /// Softmax cross-entropy, fused: returns the summed loss and writes the
    /// gradient in place.
    ///
    /// - `logits`: `(N, V)`; on return `(softmax(row) - onehot(target)) * scale`.
    /// - `targets`: `(N)`, each below V.
    /// - `scale`: usually 1/(number of targets in the whole batch), so the
    ///   gradient is that of the mean loss.
    ///
    /// Returns the sum over rows of -log softmax(row)[target], accumulated in
    /// f64. A NaN logit makes that row's loss and gradient NaN.
    ///
    /// # Panics
    /// When the lengths do not match `rows` and `vocab`, or a target is not
    /// below `vocab`.
    pub fn softmax_cross_entropy(
        &self,
        rows: usize,
        vocab: usize,
        logits: &mut [f32],
        targets: &[u32],
        scale: f32,
    ) -> f64 {
        check_shapes("softmax_cross_entropy", rows, vocab, logits.len(), targets);
        let mut loss = 0.0f64;
        for (row, &target) in logits.chunks_exact_mut(vocab.max(1)).zip(targets) {
            let target = target as usize;
            if self.isa() == Isa::Scalar {
                let (max, sum) = scalar::row_max_sum(row);
                loss += row_loss(row[target], max, sum);
                scalar::row_gradient(row, target, max, sum, scale);
                continue;
            }

            let target_logit = row[target];
            let block_len = gradient_block_len(vocab);
            let mut block_maxes = [0.0f32; MAX_BLOCKS];
            let (max, sum) = self.row_exp_sum(row, block_len, &mut block_maxes);
            loss += row_loss(target_logit, max, sum);

            let base = scale / sum;
            for (block, &block_max) in row.chunks_mut(block_len).zip(&block_maxes) {
                self.scale_in_place(block, exp_difference(block_max, max) * base);
            }
            row[target] -= scale;
        }
        loss
    }

    /// Forward-only scoring: writes log softmax(row)[target] of each row to
    /// `log_probs` (`(N)`) and returns their sum in f64. Nothing else is
    /// written, so the same logits can be scored again.
    ///
    /// # Panics
    /// When the lengths do not match `rows` and `vocab`, or a target is not
    /// below `vocab`.
    pub fn log_softmax_at(
        &self,
        rows: usize,
        vocab: usize,
        logits: &[f32],
        targets: &[u32],
        log_probs: &mut [f32],
    ) -> f64 {
        check_shapes("log_softmax_at", rows, vocab, logits.len(), targets);
        assert_eq!(
            log_probs.len(),
            rows,
            "log_softmax_at: log_probs must have N = {rows} elements"
        );
        let mut total = 0.0f64;
        for ((row, &target), out) in logits
            .chunks_exact(vocab.max(1))
            .zip(targets)
            .zip(log_probs)
        {
            let (max, sum) = self.row_max_sum(row);
            let log_prob = -row_loss(row[target as usize], max, sum);
            *out = log_prob as f32;
            total += log_prob;
        }
        total
    }
}
