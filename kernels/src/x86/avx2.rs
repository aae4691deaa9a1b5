//! AVX2+FMA path: 8 f32 lanes; the columns left over after the last full
//! vector go to the scalar twins, except in `gemm_packed`, which computes
//! whole zero-padded panels and copies out only the columns that exist.
//!
//! Every `pub(crate)` function here is safe to call but is reached only
//! through a `Kernels` whose ISA is `Avx2`, and `Kernels::new` grants that
//! only after CPUID reported AVX2 and FMA. Each one enters a
//! `#[target_feature(enable = "avx2,fma")]` function that evaluates the same
//! formulas as its scalar twin.
//!
//! Element-wise kernels without a transcendental (mul, add, SGD, scale) use
//! the scalar operation order and no fused multiply-add, so they return the
//! same bits as the scalar path.

use core::arch::x86_64::*;

use crate::activation::{
    self, EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_C6, EXP_C7, EXP_MAX_INPUT, EXP_MIN_INPUT, LN2_HI,
    LN2_LO, LOG2_E, ROUND_MAGIC, TANH_CLAMP, scalar_exp,
};
use crate::packed_gemm::{PANEL, Tile, for_each_tile};
use crate::{dropout, embedding, lstm, vector};

const LANES: usize = 8;

/// Loads `src[at..at + 8]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load(src: &[f32], at: usize) -> __m256 {
    let src = &src[at..at + LANES];
    // SAFETY: `src` has exactly 8 elements and loadu needs no alignment.
    unsafe { _mm256_loadu_ps(src.as_ptr()) }
}

/// Stores `v` to `dst[at..at + 8]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn store(dst: &mut [f32], at: usize, v: __m256) {
    let dst = &mut dst[at..at + LANES];
    // SAFETY: `dst` has exactly 8 elements and storeu needs no alignment.
    unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) }
}

/// Returns the length of the part of a `len`-element slice that full
/// vectors cover.
fn vector_part(len: usize) -> usize {
    len - len % LANES
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn splat(v: f32) -> __m256 {
    _mm256_set1_ps(v)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn horizontal_max(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    _mm_cvtss_f32(m)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn horizontal_sum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn horizontal_sum_f64(v: __m256d) -> f64 {
    let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
    let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    _mm_cvtsd_f64(s)
}

/// Returns 2^n lane-wise for n in -126..=127.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pow2i(n: __m256i) -> __m256 {
    let biased = _mm256_add_epi32(n, _mm256_set1_epi32(127));
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased))
}

/// Splits x into n and r with x = n ln2 + r, as `activation::reduce` does.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn reduce(x: __m256) -> (__m256i, __m256) {
    let magic = splat(ROUND_MAGIC);
    let n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, splat(LOG2_E)), magic), magic);
    let r = _mm256_fnmadd_ps(n, splat(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, splat(LN2_LO), r);
    // n is already an integer, so the conversion is exact; NaN becomes
    // i32::MIN, which only scales a NaN polynomial value.
    (_mm256_cvtps_epi32(n), r)
}

/// e^r - 1 for |r| <= ln2/2, as `activation::expm1_reduced` does.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn expm1_reduced(r: __m256) -> __m256 {
    let p = _mm256_fmadd_ps(r, splat(EXP_C7), splat(EXP_C6));
    let p = _mm256_fmadd_ps(r, p, splat(EXP_C5));
    let p = _mm256_fmadd_ps(r, p, splat(EXP_C4));
    let p = _mm256_fmadd_ps(r, p, splat(EXP_C3));
    let p = _mm256_fmadd_ps(r, p, splat(EXP_C2));
    _mm256_fmadd_ps(_mm256_mul_ps(r, r), p, r)
}

/// e^x lane-wise, as `activation::scalar_exp` computes it.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp(x: __m256) -> __m256 {
    // max and min return their second operand when either is NaN, so a NaN
    // lane passes both clamps.
    let x = _mm256_max_ps(splat(EXP_MIN_INPUT), x);
    let x = _mm256_min_ps(splat(EXP_MAX_INPUT), x);
    let (n, r) = reduce(x);
    let p = _mm256_add_ps(splat(1.0), expm1_reduced(r));

    let n1 = _mm256_srai_epi32::<1>(n);
    let n2 = _mm256_sub_epi32(n, n1);
    _mm256_mul_ps(_mm256_mul_ps(p, pow2i(n1)), pow2i(n2))
}

/// tanh(x) lane-wise, as `activation::scalar_tanh` computes it.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn tanh(x: __m256) -> __m256 {
    let sign = splat(-0.0);
    // A NaN lane survives the clamp because min returns its second operand.
    let a = _mm256_min_ps(splat(TANH_CLAMP), _mm256_andnot_ps(sign, x));
    let (n, r) = reduce(_mm256_mul_ps(splat(-2.0), a));
    let scale = pow2i(n);
    let em1 = _mm256_fmadd_ps(scale, expm1_reduced(r), _mm256_sub_ps(scale, splat(1.0)));
    let t = _mm256_div_ps(
        _mm256_sub_ps(_mm256_setzero_ps(), em1),
        _mm256_add_ps(splat(2.0), em1),
    );

    // copysign(t, x)
    _mm256_or_ps(_mm256_andnot_ps(sign, t), _mm256_and_ps(sign, x))
}

/// 1 / (1 + e^-x) lane-wise.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sigmoid(x: __m256) -> __m256 {
    let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(splat(1.0), _mm256_add_ps(splat(1.0), e))
}

pub(crate) fn exp_in_place(x: &mut [f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { map_in_place(x, Activation::Exp) }
}

pub(crate) fn tanh_in_place(x: &mut [f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { map_in_place(x, Activation::Tanh) }
}

pub(crate) fn sigmoid_in_place(x: &mut [f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { map_in_place(x, Activation::Sigmoid) }
}

#[derive(Clone, Copy)]
enum Activation {
    Exp,
    Tanh,
    Sigmoid,
}

#[target_feature(enable = "avx2,fma")]
fn map_in_place(x: &mut [f32], activation: Activation) {
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        let v = load(chunk, 0);
        let v = match activation {
            Activation::Exp => exp(v),
            Activation::Tanh => tanh(v),
            Activation::Sigmoid => sigmoid(v),
        };
        store(chunk, 0, v);
    }

    let tail = chunks.into_remainder();
    match activation {
        Activation::Exp => activation::scalar::exp_in_place(tail),
        Activation::Tanh => activation::scalar::tanh_in_place(tail),
        Activation::Sigmoid => activation::scalar::sigmoid_in_place(tail),
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
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { lstm_forward_row_avx2(hidden, gates, bias, c_prev, c, h, tanh_c) }
}

#[target_feature(enable = "avx2,fma")]
fn lstm_forward_row_avx2(
    hidden: usize,
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    tanh_c: &mut [f32],
) {
    let full = vector_part(hidden);
    let pre = |gates: &[f32], at: usize| _mm256_add_ps(load(gates, at), load(bias, at));
    // Two passes, as on AVX-512: the gates and c first, then tanh(c) and
    // h, so that no iteration waits on a chain of nonlinearities.
    for j in (0..full).step_by(LANES) {
        let i = sigmoid(pre(gates, j));
        let f = sigmoid(pre(gates, hidden + j));
        let g = tanh(pre(gates, 2 * hidden + j));
        let o = sigmoid(pre(gates, 3 * hidden + j));
        let cell = _mm256_fmadd_ps(f, load(c_prev, j), _mm256_mul_ps(i, g));

        store(gates, j, i);
        store(gates, hidden + j, f);
        store(gates, 2 * hidden + j, g);
        store(gates, 3 * hidden + j, o);
        store(c, j, cell);
    }
    for j in (0..full).step_by(LANES) {
        let t = tanh(load(c, j));
        store(tanh_c, j, t);
        store(h, j, _mm256_mul_ps(load(gates, 3 * hidden + j), t));
    }
    lstm::scalar::forward_row(hidden, full, gates, bias, c_prev, c, h, tanh_c);
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
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { lstm_backward_row_avx2(hidden, gates, c_prev, tanh_c, dh, dc, dgates) }
}

#[target_feature(enable = "avx2,fma")]
fn lstm_backward_row_avx2(
    hidden: usize,
    gates: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dgates: &mut [f32],
) {
    let full = vector_part(hidden);
    let one = splat(1.0);
    for j in (0..full).step_by(LANES) {
        let i = load(gates, j);
        let f = load(gates, hidden + j);
        let g = load(gates, 2 * hidden + j);
        let o = load(gates, 3 * hidden + j);
        let t = load(tanh_c, j);
        let dh = load(dh, j);

        // dcell = dc + dh o (1 - t^2)
        let dcell = _mm256_fmadd_ps(
            _mm256_mul_ps(dh, o),
            _mm256_fnmadd_ps(t, t, one),
            load(dc, j),
        );
        let di = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_mul_ps(dcell, g), i),
            _mm256_sub_ps(one, i),
        );
        let df = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_mul_ps(dcell, load(c_prev, j)), f),
            _mm256_sub_ps(one, f),
        );
        let dg = _mm256_mul_ps(_mm256_mul_ps(dcell, i), _mm256_fnmadd_ps(g, g, one));
        let do_ = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_mul_ps(dh, t), o),
            _mm256_sub_ps(one, o),
        );

        store(dgates, j, di);
        store(dgates, hidden + j, df);
        store(dgates, 2 * hidden + j, dg);
        store(dgates, 3 * hidden + j, do_);
        store(dc, j, _mm256_mul_ps(dcell, f));
    }
    lstm::scalar::backward_row(hidden, full, gates, c_prev, tanh_c, dh, dc, dgates);
}

pub(crate) fn softmax_row_max_sum(row: &[f32], block_len: usize) -> (f32, f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { softmax_row_max_sum_avx2(row, block_len) }
}

/// The blocked online algorithm of `softmax::scalar::row_max_sum`, with the
/// sum of each block kept in 8 f32 lanes.
///
/// `max_ps` and `f32::max` may drop a NaN, so the maximum need not be NaN
/// for a row that has one. The NaN still reaches the sum through
/// e^(NaN - m), so the sum, the row's loss and its gradient are NaN, as on
/// the scalar path.
#[target_feature(enable = "avx2,fma")]
fn softmax_row_max_sum_avx2(row: &[f32], block_len: usize) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    for block in row.chunks(block_len) {
        let full = vector_part(block.len());
        let (vectors, tail) = block.split_at(full);

        let mut lanes_max = splat(f32::NEG_INFINITY);
        for chunk in vectors.chunks_exact(LANES) {
            lanes_max = _mm256_max_ps(lanes_max, load(chunk, 0));
        }
        let mut block_max = horizontal_max(lanes_max);
        for &x in tail {
            block_max = block_max.max(x);
        }
        if block_max > m {
            s *= scalar_exp(m - block_max);
            m = block_max;
        }

        let max = splat(m);
        let mut lanes_sum = _mm256_setzero_ps();
        for chunk in vectors.chunks_exact(LANES) {
            lanes_sum = _mm256_add_ps(lanes_sum, exp(_mm256_sub_ps(load(chunk, 0), max)));
        }
        s += horizontal_sum(lanes_sum);
        for &x in tail {
            s += scalar_exp(x - m);
        }
    }
    (m, s)
}

pub(crate) fn softmax_row_exp_sum(
    row: &mut [f32],
    block_len: usize,
    block_maxes: &mut [f32],
) -> (f32, f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { softmax_row_exp_sum_avx2(row, block_len, block_maxes) }
}

/// Computes the row maximum and sum as `softmax_row_max_sum_avx2` does,
/// and also writes e^(x - m) over each block and records m, the running
/// maximum after the block, in `block_maxes`.
#[target_feature(enable = "avx2,fma")]
fn softmax_row_exp_sum_avx2(
    row: &mut [f32],
    block_len: usize,
    block_maxes: &mut [f32],
) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    for (block, running_max) in row.chunks_mut(block_len).zip(block_maxes) {
        let full = vector_part(block.len());

        let mut lanes_max = splat(f32::NEG_INFINITY);
        for at in (0..full).step_by(LANES) {
            lanes_max = _mm256_max_ps(lanes_max, load(block, at));
        }
        let mut block_max = horizontal_max(lanes_max);
        for &x in &block[full..] {
            block_max = block_max.max(x);
        }
        if block_max > m {
            s *= scalar_exp(m - block_max);
            m = block_max;
        }
        *running_max = m;

        let max = splat(m);
        let mut lanes_sum = _mm256_setzero_ps();
        for at in (0..full).step_by(LANES) {
            let e = exp(_mm256_sub_ps(load(block, at), max));
            lanes_sum = _mm256_add_ps(lanes_sum, e);
            store(block, at, e);
        }
        s += horizontal_sum(lanes_sum);
        for x in &mut block[full..] {
            *x = scalar_exp(*x - m);
            s += *x;
        }
    }
    (m, s)
}

pub(crate) fn mul_in_place(x: &mut [f32], y: &[f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { mul_in_place_avx2(x, y) }
}

#[target_feature(enable = "avx2,fma")]
fn mul_in_place_avx2(x: &mut [f32], y: &[f32]) {
    let full = vector_part(x.len());
    let (x_vectors, x_tail) = x.split_at_mut(full);
    let (y_vectors, y_tail) = y.split_at(full);
    for (a, b) in x_vectors
        .chunks_exact_mut(LANES)
        .zip(y_vectors.chunks_exact(LANES))
    {
        store(a, 0, _mm256_mul_ps(load(a, 0), load(b, 0)));
    }
    dropout::scalar::mul_in_place(x_tail, y_tail);
}

pub(crate) fn add_in_place(dst: &mut [f32], src: &[f32]) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { add_in_place_avx2(dst, src) }
}

#[target_feature(enable = "avx2,fma")]
fn add_in_place_avx2(dst: &mut [f32], src: &[f32]) {
    let full = vector_part(dst.len());
    let (dst_vectors, dst_tail) = dst.split_at_mut(full);
    let (src_vectors, src_tail) = src.split_at(full);
    for (d, s) in dst_vectors
        .chunks_exact_mut(LANES)
        .zip(src_vectors.chunks_exact(LANES))
    {
        store(d, 0, _mm256_add_ps(load(d, 0), load(s, 0)));
    }
    embedding::scalar::add_in_place(dst_tail, src_tail);
}

pub(crate) fn sgd_update(params: &mut [f32], grads: &[f32], lr: f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { sgd_update_avx2(params, grads, lr) }
}

#[target_feature(enable = "avx2,fma")]
fn sgd_update_avx2(params: &mut [f32], grads: &[f32], lr: f32) {
    let full = vector_part(params.len());
    let (p_vectors, p_tail) = params.split_at_mut(full);
    let (g_vectors, g_tail) = grads.split_at(full);
    let lr_lanes = splat(lr);
    for (p, g) in p_vectors
        .chunks_exact_mut(LANES)
        .zip(g_vectors.chunks_exact(LANES))
    {
        // p - (lr g), rounded twice as the scalar twin does.
        let step = _mm256_mul_ps(lr_lanes, load(g, 0));
        store(p, 0, _mm256_sub_ps(load(p, 0), step));
    }
    vector::scalar::sgd_update(p_tail, g_tail, lr);
}

pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { sum_squares_avx2(x) }
}

#[target_feature(enable = "avx2,fma")]
fn sum_squares_avx2(x: &[f32]) -> f64 {
    // Two accumulators of 4 f64 lanes, one per half of each 8-lane load.
    // A square of an f32 is exact in f64, so the fused multiply-add rounds
    // only the addition, as the scalar twin's separate add does.
    let mut low_sum = _mm256_setzero_pd();
    let mut high_sum = _mm256_setzero_pd();
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        let v = load(chunk, 0);
        let low = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        low_sum = _mm256_fmadd_pd(low, low, low_sum);
        high_sum = _mm256_fmadd_pd(high, high, high_sum);
    }
    horizontal_sum_f64(_mm256_add_pd(low_sum, high_sum))
        + vector::scalar::sum_squares(chunks.remainder())
}

pub(crate) fn scale_in_place(x: &mut [f32], factor: f32) {
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { scale_in_place_avx2(x, factor) }
}

#[target_feature(enable = "avx2,fma")]
fn scale_in_place_avx2(x: &mut [f32], factor: f32) {
    let factor_lanes = splat(factor);
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        store(chunk, 0, _mm256_mul_ps(load(chunk, 0), factor_lanes));
    }
    vector::scalar::scale_in_place(chunks.into_remainder(), factor);
}

/// Rows in the tallest tile of `gemm_packed`.
///
/// A tile of R rows by one panel (16 columns, two ymm vectors) keeps 2R
/// accumulators in ymm registers for the whole K loop. Each k step loads
/// the panel's two vectors, broadcasts R elements of A and issues 2R fused
/// multiply-adds. With R = 6 that is 12 accumulators, 2 panel vectors and
/// a broadcast register: 15 of the 16 ymm registers. Per k step the 12 FMAs
/// take 6 cycles on cores with two FMA units (Haswell and later, Zen 2 and
/// later), and the 8 loads and one prefetch take 4.5 cycles on two load
/// ports, so the FMAs set the pace. Tiles of 4 or more rows have 8 or more
/// independent accumulators, enough to cover a 4-cycle FMA latency at two
/// FMAs per cycle. Rows are split into balanced tiles of at most 6, so the
/// training batch of 20 rows runs as four tiles of 5.
const GEMM_MAX_ROWS: usize = 6;

/// Steps of K between prefetching a line of packed B and loading it. 32
/// steps are 2 KiB ahead in the panel. A step of a 5- or 6-row tile takes 5
/// to 6 cycles, so the line has about 180 cycles to arrive, which covers
/// the latency of L3. On one Zen 4 core, with M of 10 and 20 and K and N of
/// 650 and 2600, 16 steps were slower and 64 no faster.
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
    // SAFETY: reached only through a `Kernels` whose ISA is Avx2, which was
    // verified at construction.
    unsafe { gemm_packed_avx2(m, k, n, a, packed_b, c, accumulate) }
}

/// Runs `packed_gemm::for_each_tile` with strips of one panel.
#[target_feature(enable = "avx2,fma")]
fn gemm_packed_avx2(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let strip_panels = 1;
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
        |tile| match tile.rows {
            1 => gemm_tile::<1>(tile),
            2 => gemm_tile::<2>(tile),
            3 => gemm_tile::<3>(tile),
            4 => gemm_tile::<4>(tile),
            5 => gemm_tile::<5>(tile),
            6 => gemm_tile::<6>(tile),
            rows => unreachable!("row tiles have 1 to {GEMM_MAX_ROWS} rows, got {rows}"),
        },
    );
}

/// Computes one tile of C, `MR` rows by one panel, in registers.
#[target_feature(enable = "avx2,fma")]
fn gemm_tile<const MR: usize>(tile: Tile) {
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
    assert_eq!(b.len(), k * PANEL, "gemm tile: b must hold one panel");
    let cols = c.len() - (MR - 1) * ldc;
    assert!(
        (1..=PANEL).contains(&cols),
        "gemm tile: {cols} columns do not fit one panel"
    );

    // A partial last panel goes through a zero-padded copy of its rows, so
    // that the loads and stores below always cover 16 columns.
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    if accumulate {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let mut row = [0f32; PANEL];
            row[..cols].copy_from_slice(&c[r * ldc..r * ldc + cols]);
            *acc_row = [load(&row, 0), load(&row, LANES)];
        }
    }

    let a_ptr = a.as_ptr();
    let b_ptr = b.as_ptr();
    let mut step = |kk: usize, ahead: *const f32| {
        // Packed B (6.8 MB for Wh at H = 650) does not fit in L2 and comes
        // from L3 or memory, faster with this prefetch than with the
        // hardware prefetchers alone.
        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
        // SAFETY: kk < K, so the 16 elements end at most at K * PANEL =
        // `b.len()`, as asserted.
        let b_k = unsafe {
            [
                _mm256_loadu_ps(b_ptr.add(kk * PANEL)),
                _mm256_loadu_ps(b_ptr.add(kk * PANEL + LANES)),
            ]
        };
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: r < MR and kk < K, so r * K + kk < MR * K = `a.len()`.
            let a_rk = splat(unsafe { *a_ptr.add(r * k + kk) });
            for (acc, &b_k) in acc_row.iter_mut().zip(&b_k) {
                *acc = _mm256_fmadd_ps(a_rk, b_k, *acc);
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
        if cols == PANEL {
            store(c, r * ldc, acc_row[0]);
            store(c, r * ldc + LANES, acc_row[1]);
        } else {
            let mut row = [0f32; PANEL];
            store(&mut row, 0, acc_row[0]);
            store(&mut row, LANES, acc_row[1]);
            c[r * ldc..r * ldc + cols].copy_from_slice(&row[..cols]);
        }
    }
}
