//! AVX-512F path: 16 f32 lanes, with masked loads and stores for the
//! columns left over after the last full vector.
//!
//! Every `pub(crate)` function here is safe to call but is reached only
//! through a `Kernels` whose ISA is `Avx512`, and `Kernels::new` grants that
//! only after CPUID reported AVX-512F. Each one enters a
//! `#[target_feature(enable = "avx512f")]` function (AVX-512F implies AVX2
//! and FMA) that evaluates the same formulas as its scalar twin.
//!
//! Element-wise kernels without a transcendental (mul, add, SGD, scale) use
//! the scalar operation order and no fused multiply-add, so they return the
//! same bits as the scalar path.

use core::arch::x86_64::*;

use crate::activation::{
    EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_C6, EXP_C7, EXP_MAX_INPUT, EXP_MIN_INPUT, LN2_HI, LN2_LO,
    LOG2_E, ROUND_MAGIC, TANH_CLAMP, scalar_exp,
};
use crate::packed_gemm::{PANEL, Tile, for_each_tile};

const LANES: usize = 16;

/// A run of `len` columns starting at column `at`, with 1 <= len <= 16.
/// A full run uses plain loads and stores. A shorter one masks the lanes
/// from `len` on, so it never touches memory past the end of a slice.
#[derive(Clone, Copy)]
struct Cols {
    at: usize,
    len: usize,
}

impl Cols {
    fn mask(self) -> __mmask16 {
        ((1u32 << self.len) - 1) as __mmask16
    }

    /// Loads columns `at..at + len` of `src[offset..]`; masked lanes are 0.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(self, src: &[f32], offset: usize) -> __m512 {
        let src = &src[offset + self.at..offset + self.at + self.len];
        if self.len == LANES {
            // SAFETY: `src` has exactly 16 elements and loadu needs no alignment.
            unsafe { _mm512_loadu_ps(src.as_ptr()) }
        } else {
            // SAFETY: the mask selects lanes 0..len, all inside `src`; masked
            // lanes are neither read nor able to fault.
            unsafe { _mm512_maskz_loadu_ps(self.mask(), src.as_ptr()) }
        }
    }

    /// Stores the first `len` lanes of `v` to columns `at..at + len` of
    /// `dst[offset..]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store(self, dst: &mut [f32], offset: usize, v: __m512) {
        let dst = &mut dst[offset + self.at..offset + self.at + self.len];
        if self.len == LANES {
            // SAFETY: `dst` has exactly 16 elements and storeu needs no alignment.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), v) }
        } else {
            // SAFETY: the mask selects lanes 0..len, all inside `dst`; masked
            // lanes are not written.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), self.mask(), v) }
        }
    }
}

/// Splits `0..len` into runs of 16 columns and one shorter last run.
fn runs(len: usize) -> impl Iterator<Item = Cols> {
    (0..len).step_by(LANES).map(move |at| Cols {
        at,
        len: LANES.min(len - at),
    })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(v: f32) -> __m512 {
    _mm512_set1_ps(v)
}

/// Splits x into n and r with x = n ln2 + r, as `activation::reduce` does,
/// but returns n as a float for `_mm512_scalef_ps`.
///
/// The rounding step fuses x log2(e) + 1.5 * 2^23 into one FMA, so n can
/// differ from the scalar twin's at a tie. r then absorbs the difference
/// and stays within ln2/2 plus a rounding.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce(x: __m512) -> (__m512, __m512) {
    let magic = splat(ROUND_MAGIC);
    let n = _mm512_sub_ps(_mm512_fmadd_ps(x, splat(LOG2_E), magic), magic);
    let r = _mm512_fnmadd_ps(n, splat(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, splat(LN2_LO), r);
    (n, r)
}

/// e^r - 1 for |r| <= ln2/2, as `activation::expm1_reduced` does.
#[inline]
#[target_feature(enable = "avx512f")]
fn expm1_reduced(r: __m512) -> __m512 {
    let p = _mm512_fmadd_ps(r, splat(EXP_C7), splat(EXP_C6));
    let p = _mm512_fmadd_ps(r, p, splat(EXP_C5));
    let p = _mm512_fmadd_ps(r, p, splat(EXP_C4));
    let p = _mm512_fmadd_ps(r, p, splat(EXP_C3));
    let p = _mm512_fmadd_ps(r, p, splat(EXP_C2));
    _mm512_fmadd_ps(_mm512_mul_ps(r, r), p, r)
}

/// e^x lane-wise, as `activation::scalar_exp` computes it.
///
/// `_mm512_scalef_ps` multiplies by 2^n in one rounding, which replaces the
/// scalar twin's two factors: it returns subnormal results rounded once and
/// overflows to +inf past f32::MAX.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    // max and min return their second operand when either is NaN, so a NaN
    // lane passes both clamps.
    let x = _mm512_max_ps(splat(EXP_MIN_INPUT), x);
    let x = _mm512_min_ps(splat(EXP_MAX_INPUT), x);
    let (n, r) = reduce(x);
    let p = _mm512_add_ps(splat(1.0), expm1_reduced(r));
    _mm512_scalef_ps(p, n)
}

/// tanh(x) lane-wise, as `activation::scalar_tanh` computes it.
#[inline]
#[target_feature(enable = "avx512f")]
fn tanh(x: __m512) -> __m512 {
    // A NaN lane survives the clamp because min returns its second operand.
    let a = _mm512_min_ps(splat(TANH_CLAMP), _mm512_abs_ps(x));
    let (n, r) = reduce(_mm512_mul_ps(splat(-2.0), a));
    // n is in -26..=0 here, so 2^n is a normal f32.
    let scale = _mm512_scalef_ps(splat(1.0), n);
    // -expm1(-2a), so that tanh(a) = minus_em1 / (2 - minus_em1) needs no
    // negation. It is in [0, 1), so the quotient has a clear sign bit.
    let minus_em1 = _mm512_fnmsub_ps(scale, expm1_reduced(r), _mm512_sub_ps(scale, splat(1.0)));
    // A division, not a reciprocal estimate and a Newton step: on one Zen 4
    // core the divider runs beside the FMA pipes, and sigmoid_in_place
    // took 20% longer with _mm512_rcp14_ps, an FMA correction and the
    // compare that +inf needs.
    let t = _mm512_div_ps(minus_em1, _mm512_sub_ps(splat(2.0), minus_em1));

    // copysign(t, x) in one bitwise select: the sign bit from x, the other
    // bits from t (imm 0xCA is "a ? b : c" bit by bit).
    let sign = _mm512_set1_epi32(i32::MIN);
    _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xCA>(
        sign,
        _mm512_castps_si512(x),
        _mm512_castps_si512(t),
    ))
}

/// 1 / (1 + e^-x) lane-wise.
#[inline]
#[target_feature(enable = "avx512f")]
fn sigmoid(x: __m512) -> __m512 {
    let e = exp_negated(x);
    _mm512_div_ps(splat(1.0), _mm512_add_ps(splat(1.0), e))
}

/// e^-x lane-wise, as `exp` computes e^y for y = -x but without the
/// negation: the clamps are mirrored and the reduction uses -x in its
/// fused multiply-adds.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_negated(x: __m512) -> __m512 {
    // As in `exp`, a NaN lane passes both clamps.
    let x = _mm512_max_ps(splat(-EXP_MAX_INPUT), x);
    let x = _mm512_min_ps(splat(-EXP_MIN_INPUT), x);
    let magic = splat(ROUND_MAGIC);
    let n = _mm512_sub_ps(_mm512_fnmadd_ps(x, splat(LOG2_E), magic), magic);
    let r = _mm512_fnmsub_ps(n, splat(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, splat(LN2_LO), r);
    let p = _mm512_add_ps(splat(1.0), expm1_reduced(r));
    _mm512_scalef_ps(p, n)
}

pub(crate) fn exp_in_place(x: &mut [f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { map_in_place(x, Activation::Exp) }
}

pub(crate) fn tanh_in_place(x: &mut [f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { map_in_place(x, Activation::Tanh) }
}

pub(crate) fn sigmoid_in_place(x: &mut [f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { map_in_place(x, Activation::Sigmoid) }
}

#[derive(Clone, Copy)]
enum Activation {
    Exp,
    Tanh,
    Sigmoid,
}

#[target_feature(enable = "avx512f")]
fn map_in_place(x: &mut [f32], activation: Activation) {
    for cols in runs(x.len()) {
        let v = cols.load(x, 0);
        let v = match activation {
            Activation::Exp => exp(v),
            Activation::Tanh => tanh(v),
            Activation::Sigmoid => sigmoid(v),
        };
        cols.store(x, 0, v);
    }
}

pub(crate) fn lstm_forward_row(
    hidden: usize,
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    tanh_c: &mut [f32],
) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { lstm_forward_row_avx512(hidden, gates, bias, c_prev, c, h, tanh_c) }
}

#[target_feature(enable = "avx512f")]
fn lstm_forward_row_avx512(
    hidden: usize,
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    tanh_c: &mut [f32],
) {
    let pre = |cols: Cols, gates: &[f32], gate: usize| {
        _mm512_add_ps(
            cols.load(gates, gate * hidden),
            cols.load(bias, gate * hidden),
        )
    };
    // Two passes over the row: the gates and the new cell state, then
    // tanh(c) and h. In one pass, tanh(c) waited for the gate
    // nonlinearities of the same 16 units, and that chain of latencies left
    // the FMA pipes idle. In two passes, no iteration depends on another.
    // The second pass reads c and o back from L1.
    for cols in runs(hidden) {
        let i = sigmoid(pre(cols, gates, 0));
        let f = sigmoid(pre(cols, gates, 1));
        let g = tanh(pre(cols, gates, 2));
        let o = sigmoid(pre(cols, gates, 3));
        let cell = _mm512_fmadd_ps(f, cols.load(c_prev, 0), _mm512_mul_ps(i, g));

        cols.store(gates, 0, i);
        cols.store(gates, hidden, f);
        cols.store(gates, 2 * hidden, g);
        cols.store(gates, 3 * hidden, o);
        cols.store(c, 0, cell);
    }
    for cols in runs(hidden) {
        let t = tanh(cols.load(c, 0));
        cols.store(tanh_c, 0, t);
        cols.store(h, 0, _mm512_mul_ps(cols.load(gates, 3 * hidden), t));
    }
}

pub(crate) fn lstm_backward_row(
    hidden: usize,
    gates: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dgates: &mut [f32],
) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { lstm_backward_row_avx512(hidden, gates, c_prev, tanh_c, dh, dc, dgates) }
}

#[target_feature(enable = "avx512f")]
fn lstm_backward_row_avx512(
    hidden: usize,
    gates: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dgates: &mut [f32],
) {
    let one = splat(1.0);
    for cols in runs(hidden) {
        let i = cols.load(gates, 0);
        let f = cols.load(gates, hidden);
        let g = cols.load(gates, 2 * hidden);
        let o = cols.load(gates, 3 * hidden);
        let t = cols.load(tanh_c, 0);
        let dh = cols.load(dh, 0);

        // dcell = dc + dh o (1 - t^2)
        let dcell = _mm512_fmadd_ps(
            _mm512_mul_ps(dh, o),
            _mm512_fnmadd_ps(t, t, one),
            cols.load(dc, 0),
        );
        let di = _mm512_mul_ps(
            _mm512_mul_ps(_mm512_mul_ps(dcell, g), i),
            _mm512_sub_ps(one, i),
        );
        let df = _mm512_mul_ps(
            _mm512_mul_ps(_mm512_mul_ps(dcell, cols.load(c_prev, 0)), f),
            _mm512_sub_ps(one, f),
        );
        let dg = _mm512_mul_ps(_mm512_mul_ps(dcell, i), _mm512_fnmadd_ps(g, g, one));
        let do_ = _mm512_mul_ps(
            _mm512_mul_ps(_mm512_mul_ps(dh, t), o),
            _mm512_sub_ps(one, o),
        );

        cols.store(dgates, 0, di);
        cols.store(dgates, hidden, df);
        cols.store(dgates, 2 * hidden, dg);
        cols.store(dgates, 3 * hidden, do_);
        cols.store(dc, 0, _mm512_mul_ps(dcell, f));
    }
}

/// Prefetches into L1 the cache line `block.len()` elements past `cols`,
/// which is in the next block of the row or, from the last block, in the
/// next row of the logits.
///
/// The max pass of a block reads it from memory and the exponential pass
/// then works from L1, so without this the two phases alternate between
/// waiting for memory and computing. One line per 16 columns covers the
/// next block in step with the exponentials. A prefetch never faults, so
/// lines past the end of the logits are harmless.
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_next_block(block: &[f32], cols: Cols) {
    let ahead = block.as_ptr().wrapping_add(block.len() + cols.at);
    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
}

/// Returns the maximum of `block`, or of all but a NaN in it.
///
/// Four accumulators, because one chained the 2-cycle latency of vmaxps
/// through every vector of the block.
#[inline]
#[target_feature(enable = "avx512f")]
fn block_max(block: &[f32]) -> f32 {
    let mut lanes = [splat(f32::NEG_INFINITY); 4];
    let mut quads = block.chunks_exact(4 * LANES);
    for quad in &mut quads {
        for (k, lanes) in lanes.iter_mut().enumerate() {
            let cols = Cols {
                at: k * LANES,
                len: LANES,
            };
            *lanes = _mm512_max_ps(*lanes, cols.load(quad, 0));
        }
    }
    let rest = quads.remainder();
    for cols in runs(rest.len()) {
        lanes[0] = _mm512_mask_max_ps(lanes[0], cols.mask(), lanes[0], cols.load(rest, 0));
    }
    let pair = [
        _mm512_max_ps(lanes[0], lanes[1]),
        _mm512_max_ps(lanes[2], lanes[3]),
    ];
    _mm512_reduce_max_ps(_mm512_max_ps(pair[0], pair[1]))
}

pub(crate) fn softmax_row_max_sum(row: &[f32], block_len: usize) -> (f32, f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { softmax_row_max_sum_avx512(row, block_len) }
}

/// The blocked online algorithm of `softmax::scalar::row_max_sum`, with the
/// sum of each block kept in 16 f32 lanes.
///
/// `max_ps` may drop a NaN, so the maximum need not be NaN for a row that
/// has one. The NaN still reaches the sum through e^(NaN - m), so the sum,
/// the row's loss and its gradient are NaN, as on the scalar path.
#[target_feature(enable = "avx512f")]
fn softmax_row_max_sum_avx512(row: &[f32], block_len: usize) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    for block in row.chunks(block_len) {
        let block_max = block_max(block);
        if block_max > m {
            s *= scalar_exp(m - block_max);
            m = block_max;
        }

        let max = splat(m);
        let mut block_sum = _mm512_setzero_ps();
        for cols in runs(block.len()) {
            prefetch_next_block(block, cols);
            let e = exp(_mm512_sub_ps(cols.load(block, 0), max));
            block_sum = _mm512_mask_add_ps(block_sum, cols.mask(), block_sum, e);
        }
        s += _mm512_reduce_add_ps(block_sum);
    }
    (m, s)
}

pub(crate) fn softmax_row_exp_sum(
    row: &mut [f32],
    block_len: usize,
    block_maxes: &mut [f32],
) -> (f32, f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { softmax_row_exp_sum_avx512(row, block_len, block_maxes) }
}

/// Computes the row maximum and sum as `softmax_row_max_sum_avx512` does,
/// and also writes e^(x - m) over each block and records m, the running
/// maximum after the block, in `block_maxes`.
#[target_feature(enable = "avx512f")]
fn softmax_row_exp_sum_avx512(
    row: &mut [f32],
    block_len: usize,
    block_maxes: &mut [f32],
) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    for (block, running_max) in row.chunks_mut(block_len).zip(block_maxes) {
        let block_max = block_max(block);
        if block_max > m {
            s *= scalar_exp(m - block_max);
            m = block_max;
        }
        *running_max = m;

        let max = splat(m);
        let mut block_sum = _mm512_setzero_ps();
        for cols in runs(block.len()) {
            prefetch_next_block(block, cols);
            let e = exp(_mm512_sub_ps(cols.load(block, 0), max));
            block_sum = _mm512_mask_add_ps(block_sum, cols.mask(), block_sum, e);
            cols.store(block, 0, e);
        }
        s += _mm512_reduce_add_ps(block_sum);
    }
    (m, s)
}

pub(crate) fn mul_in_place(x: &mut [f32], y: &[f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { mul_in_place_avx512(x, y) }
}

#[target_feature(enable = "avx512f")]
fn mul_in_place_avx512(x: &mut [f32], y: &[f32]) {
    for cols in runs(x.len()) {
        cols.store(x, 0, _mm512_mul_ps(cols.load(x, 0), cols.load(y, 0)));
    }
}

pub(crate) fn add_in_place(dst: &mut [f32], src: &[f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { add_in_place_avx512(dst, src) }
}

#[target_feature(enable = "avx512f")]
fn add_in_place_avx512(dst: &mut [f32], src: &[f32]) {
    for cols in runs(dst.len()) {
        cols.store(dst, 0, _mm512_add_ps(cols.load(dst, 0), cols.load(src, 0)));
    }
}

pub(crate) fn sgd_update(params: &mut [f32], grads: &[f32], lr: f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { sgd_update_avx512(params, grads, lr) }
}

#[target_feature(enable = "avx512f")]
fn sgd_update_avx512(params: &mut [f32], grads: &[f32], lr: f32) {
    let lr = splat(lr);
    for cols in runs(params.len()) {
        // p - (lr g), rounded twice as the scalar twin does.
        let step = _mm512_mul_ps(lr, cols.load(grads, 0));
        cols.store(params, 0, _mm512_sub_ps(cols.load(params, 0), step));
    }
}

pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { sum_squares_avx512(x) }
}

#[target_feature(enable = "avx512f")]
fn sum_squares_avx512(x: &[f32]) -> f64 {
    // Two accumulators of 8 f64 lanes, one per half of each 16-lane load.
    // A square of an f32 is exact in f64, so the fused multiply-add rounds
    // only the addition, as the scalar twin's separate add does.
    let mut low_sum = _mm512_setzero_pd();
    let mut high_sum = _mm512_setzero_pd();
    for cols in runs(x.len()) {
        let v = cols.load(x, 0);
        let low = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(v),
        )));
        low_sum = _mm512_fmadd_pd(low, low, low_sum);
        high_sum = _mm512_fmadd_pd(high, high, high_sum);
    }
    _mm512_reduce_add_pd(_mm512_add_pd(low_sum, high_sum))
}

pub(crate) fn scale_in_place(x: &mut [f32], factor: f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { scale_in_place_avx512(x, factor) }
}

#[target_feature(enable = "avx512f")]
fn scale_in_place_avx512(x: &mut [f32], factor: f32) {
    let factor = splat(factor);
    for cols in runs(x.len()) {
        cols.store(x, 0, _mm512_mul_ps(cols.load(x, 0), factor));
    }
}

/// Rows in the tallest tile of `gemm_packed`.
///
/// A tile of R rows by two panels (32 columns) keeps 2R accumulators in zmm
/// registers for the whole K loop. Each k step loads two panel vectors,
/// broadcasts R elements of A and issues 2R fused multiply-adds, so every
/// loaded vector of B feeds R FMAs and every broadcast feeds two. With R =
/// 10 that is 20 accumulators, 2 panel vectors and a broadcast register:
/// 23 of the 32 zmm registers.
///
/// Per k step the tile issues 2R FMAs against R + 2 loads and 2 prefetches.
/// Zen 4 executes one 512-bit FMA per cycle and Intel server cores two, and
/// both execute two or more loads per cycle, so from R = 4 on the FMAs set
/// the pace. The 2R independent accumulators also cover the 4-cycle FMA
/// latency at two FMAs per cycle from R = 4 on. Rows are split into
/// balanced tiles of at most 10, so the training batch of 20 rows runs as
/// two tiles of 10.
///
/// Taller tiles are slower here even though their registers fit: on one
/// Zen 4 core (criterion, `gemm_packed_add`, K = 650, N = 2600), tiles of
/// 9 and 10 rows ran at 112 GFLOP/s and tiles of 11 and 12 rows at
/// 45 GFLOP/s.
const GEMM_MAX_ROWS: usize = 10;

/// Steps of K between prefetching a line of packed B and loading it. 32
/// steps are 2 KiB ahead in each panel. A step of a 10-row tile takes about
/// 20 cycles, so the line has some 600 cycles to arrive, which covers the
/// latency of memory. On one Zen 4 core, with M of 10 and 20 and K and N of
/// 650 and 2600, 16 and 24 steps were slower than 32.
const GEMM_PREFETCH_STEPS: usize = 32;

pub(crate) fn gemm_packed(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx512, which was
    // verified at construction.
    unsafe { gemm_packed_avx512(m, k, n, a, packed_b, c, accumulate) }
}

/// Runs `packed_gemm::for_each_tile` with strips of two panels.
#[target_feature(enable = "avx512f")]
fn gemm_packed_avx512(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let strip_panels = 2;
    for_each_tile(
        m,
        k,
        n,
        a,
        packed_b,
        c,
        accumulate,
        GEMM_MAX_ROWS,
        strip_panels,
        |tile| {
            if tile.panels == 2 {
                gemm_rows::<2>(tile);
            } else {
                gemm_rows::<1>(tile);
            }
        },
    );
}

/// Runs `tile`, which has `NP` panels, with the register tile of its height.
#[inline]
#[target_feature(enable = "avx512f")]
fn gemm_rows<const NP: usize>(tile: Tile) {
    match tile.rows {
        1 => gemm_tile::<1, NP>(tile),
        2 => gemm_tile::<2, NP>(tile),
        3 => gemm_tile::<3, NP>(tile),
        4 => gemm_tile::<4, NP>(tile),
        5 => gemm_tile::<5, NP>(tile),
        6 => gemm_tile::<6, NP>(tile),
        7 => gemm_tile::<7, NP>(tile),
        8 => gemm_tile::<8, NP>(tile),
        9 => gemm_tile::<9, NP>(tile),
        10 => gemm_tile::<10, NP>(tile),
        rows => unreachable!("row tiles have 1 to {GEMM_MAX_ROWS} rows, got {rows}"),
    }
}

/// Computes one tile of C, `MR` rows by `NP` panels, in registers.
#[target_feature(enable = "avx512f")]
fn gemm_tile<const MR: usize, const NP: usize>(tile: Tile) {
    let Tile {
        k,
        a,
        b,
        c,
        ldc,
        accumulate,
        b_next,
        ..
    } = tile;
    assert_eq!(a.len(), MR * k, "gemm tile: a must be (MR, K)");
    let panel_len = k * PANEL;
    assert_eq!(b.len(), NP * panel_len, "gemm tile: b must hold NP panels");
    let cols = c.len() - (MR - 1) * ldc;
    assert!(
        cols > (NP - 1) * PANEL && cols <= NP * PANEL,
        "gemm tile: {cols} columns do not fill the last of {NP} panels"
    );
    let runs: [Cols; NP] = core::array::from_fn(|q| Cols {
        at: q * PANEL,
        len: PANEL.min(cols - q * PANEL),
    });

    let mut acc = [[_mm512_setzero_ps(); NP]; MR];
    if accumulate {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            for (acc, run) in acc_row.iter_mut().zip(runs) {
                *acc = run.load(c, r * ldc);
            }
        }
    }

    let a_ptr = a.as_ptr();
    let b_ptr = b.as_ptr();
    let mut step = |kk: usize, ahead: *const f32| {
        // Packed B (6.8 MB for Wh at H = 650) does not fit in L2 and comes
        // from L3 or memory. With the hardware prefetchers alone, one Zen 4
        // core ran these shapes at about 75 GFLOP/s instead of 90 to 100.
        for q in 0..NP {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(q * panel_len).cast());
        }
        let mut b_k = [_mm512_setzero_ps(); NP];
        for (q, b_k) in b_k.iter_mut().enumerate() {
            // SAFETY: q < NP and kk < K, so the 16 elements end at most at
            // NP * K * PANEL = `b.len()`, as asserted.
            *b_k = unsafe { _mm512_loadu_ps(b_ptr.add(q * panel_len + kk * PANEL)) };
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: r < MR and kk < K, so r * K + kk < MR * K = `a.len()`.
            let a_rk = splat(unsafe { *a_ptr.add(r * k + kk) });
            for (acc, &b_k) in acc_row.iter_mut().zip(&b_k) {
                *acc = _mm512_fmadd_ps(a_rk, b_k, *acc);
            }
        }
    };
    // The last GEMM_PREFETCH_STEPS steps prefetch the start of the next
    // strip instead of lines past the end of this one.
    let split = k.saturating_sub(GEMM_PREFETCH_STEPS);
    for kk in 0..split {
        step(kk, b_ptr.wrapping_add((kk + GEMM_PREFETCH_STEPS) * PANEL));
    }
    for kk in split..k {
        step(
            kk,
            b_next.wrapping_add((kk + GEMM_PREFETCH_STEPS - k) * PANEL),
        );
    }

    for (r, acc_row) in acc.iter().enumerate() {
        for (&acc, run) in acc_row.iter().zip(runs) {
            run.store(c, r * ldc, acc);
        }
    }
}
