//! Advanced SIMD (NEON) kernels: 4 lanes of f32.
//!
//! Each kernel evaluates its scalar twin's formula lane by lane and hands the
//! last `len % 4` elements to that twin. The exp and tanh polynomials and the
//! range reduction use fused multiply-adds, so activations (and the LSTM
//! forward and softmax outputs built on them) differ from the scalar ones by
//! that rounding, a few ulp. LSTM backward, the element-wise products and
//! sums, scaling and the SGD update round exactly as their twins do. The
//! softmax sums and `sum_squares` add in a different order than the scalar
//! loops. `gemm_packed` works on whole zero-padded panels instead of handing
//! a tail to its twin, and its fused multiply-adds round differently.
//!
//! NEON's `vmaxq_f32` and `vminq_f32` (FMAX, FMIN) return NaN when either
//! operand is NaN, so the input clamps pass NaN through as the scalar
//! comparisons do.
//!
//! Each `pub(crate)` entry point is a safe wrapper that calls a
//! `#[target_feature(enable = "neon")]` function. Rust requires that
//! attribute for safe calls to the intrinsics even though the standard
//! aarch64 targets enable NEON globally. Inside those functions only the load
//! and store helpers need `unsafe`.

use core::arch::aarch64::*;

use crate::activation::{
    EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_C6, EXP_C7, EXP_MAX_INPUT, EXP_MIN_INPUT, LN2_HI, LN2_LO,
    LOG2_E, ROUND_MAGIC, TANH_CLAMP, scalar_exp,
};
use crate::packed_gemm::{PANEL, Tile, for_each_tile};
use crate::{activation, dropout, embedding, lstm, vector};

const LANES: usize = 4;

#[inline]
#[target_feature(enable = "neon")]
fn load(src: &[f32; LANES]) -> float32x4_t {
    // SAFETY: `src` is a reference to 4 initialised f32, and `vld1q_f32` reads
    // exactly those 16 bytes with no alignment requirement beyond f32's.
    unsafe { vld1q_f32(src.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn store(dst: &mut [f32; LANES], v: float32x4_t) {
    // SAFETY: `dst` is an exclusive reference to 4 f32, and `vst1q_f32` writes
    // exactly those 16 bytes with no alignment requirement beyond f32's.
    unsafe { vst1q_f32(dst.as_mut_ptr(), v) }
}

/// Splits `x` into whole vectors and a tail shorter than a vector.
#[inline]
fn vectors(x: &[f32]) -> (&[[f32; LANES]], &[f32]) {
    x.as_chunks::<LANES>()
}

#[inline]
fn vectors_mut(x: &mut [f32]) -> (&mut [[f32; LANES]], &mut [f32]) {
    x.as_chunks_mut::<LANES>()
}

/// Returns 2^n in each lane for n in -126..=127.
#[inline]
#[target_feature(enable = "neon")]
fn pow2i(n: int32x4_t) -> float32x4_t {
    let biased = vaddq_s32(n, vdupq_n_s32(127));
    vreinterpretq_f32_s32(vshlq_n_s32::<23>(biased))
}

/// Splits x into n and r with x = n ln2 + r, |r| <= ln2/2 (plus rounding).
#[inline]
#[target_feature(enable = "neon")]
fn reduce(x: float32x4_t) -> (int32x4_t, float32x4_t) {
    // The multiply and the two additions round separately, as in the scalar
    // twin, so both paths pick the same n.
    let magic = vdupq_n_f32(ROUND_MAGIC);
    let n = vsubq_f32(vaddq_f32(vmulq_n_f32(x, LOG2_E), magic), magic);
    let r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
    let r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));

    // n is already integral, so the truncating conversion is exact. A NaN
    // lane converts to 0, as `n as i32` does in the scalar twin.
    (vcvtq_s32_f32(n), r)
}

/// e^r - 1 for |r| <= ln2/2.
#[inline]
#[target_feature(enable = "neon")]
fn expm1_reduced(r: float32x4_t) -> float32x4_t {
    let p = vfmaq_f32(vdupq_n_f32(EXP_C6), r, vdupq_n_f32(EXP_C7));
    let p = vfmaq_f32(vdupq_n_f32(EXP_C5), r, p);
    let p = vfmaq_f32(vdupq_n_f32(EXP_C4), r, p);
    let p = vfmaq_f32(vdupq_n_f32(EXP_C3), r, p);
    let p = vfmaq_f32(vdupq_n_f32(EXP_C2), r, p);
    vfmaq_f32(r, vmulq_f32(r, r), p)
}

#[inline]
#[target_feature(enable = "neon")]
fn exp(x: float32x4_t) -> float32x4_t {
    let x = vmaxq_f32(x, vdupq_n_f32(EXP_MIN_INPUT));
    let x = vminq_f32(x, vdupq_n_f32(EXP_MAX_INPUT));
    let (n, r) = reduce(x);
    let p = vaddq_f32(vdupq_n_f32(1.0), expm1_reduced(r));

    // Two factors 2^n1 * 2^n2 keep each factor normal for n in -150..=129.
    let n1 = vshrq_n_s32::<1>(n);
    let n2 = vsubq_s32(n, n1);
    vmulq_f32(vmulq_f32(p, pow2i(n1)), pow2i(n2))
}

#[inline]
#[target_feature(enable = "neon")]
fn tanh(x: float32x4_t) -> float32x4_t {
    let a = vminq_f32(vabsq_f32(x), vdupq_n_f32(TANH_CLAMP));

    // tanh(a) = -expm1(-2a) / (2 + expm1(-2a)), as in the scalar twin.
    let (n, r) = reduce(vmulq_n_f32(a, -2.0));
    let scale = pow2i(n);
    let em1 = vfmaq_f32(vsubq_f32(scale, vdupq_n_f32(1.0)), scale, expm1_reduced(r));
    let t = vdivq_f32(vnegq_f32(em1), vaddq_f32(vdupq_n_f32(2.0), em1));

    // Copy the sign of x onto t, so tanh(-0.0) is -0.0 as in the scalar twin.
    let sign = vdupq_n_u32(0x8000_0000);
    vbslq_f32(sign, x, t)
}

#[inline]
#[target_feature(enable = "neon")]
fn sigmoid(x: float32x4_t) -> float32x4_t {
    let one = vdupq_n_f32(1.0);
    vdivq_f32(one, vaddq_f32(one, exp(vnegq_f32(x))))
}

pub(crate) fn exp_in_place(x: &mut [f32]) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { exp_in_place_neon(x) }
}

#[target_feature(enable = "neon")]
fn exp_in_place_neon(x: &mut [f32]) {
    let (whole, tail) = vectors_mut(x);
    for v in whole {
        store(v, exp(load(v)));
    }
    activation::scalar::exp_in_place(tail);
}

pub(crate) fn tanh_in_place(x: &mut [f32]) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { tanh_in_place_neon(x) }
}

#[target_feature(enable = "neon")]
fn tanh_in_place_neon(x: &mut [f32]) {
    let (whole, tail) = vectors_mut(x);
    for v in whole {
        store(v, tanh(load(v)));
    }
    activation::scalar::tanh_in_place(tail);
}

pub(crate) fn sigmoid_in_place(x: &mut [f32]) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { sigmoid_in_place_neon(x) }
}

#[target_feature(enable = "neon")]
fn sigmoid_in_place_neon(x: &mut [f32]) {
    let (whole, tail) = vectors_mut(x);
    for v in whole {
        store(v, sigmoid(load(v)));
    }
    activation::scalar::sigmoid_in_place(tail);
}

/// Splits a `(4H)` gate row into its i, f, g, o parts.
fn split_gates(gates: &[f32], hidden: usize) -> [&[f32]; 4] {
    let (i, rest) = gates.split_at(hidden);
    let (f, rest) = rest.split_at(hidden);
    let (g, o) = rest.split_at(hidden);
    [i, f, g, o]
}

fn split_gates_mut(gates: &mut [f32], hidden: usize) -> [&mut [f32]; 4] {
    let (i, rest) = gates.split_at_mut(hidden);
    let (f, rest) = rest.split_at_mut(hidden);
    let (g, o) = rest.split_at_mut(hidden);
    [i, f, g, o]
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
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { lstm_forward_row_neon(hidden, gates, bias, c_prev, c, h, tanh_c) }
}

#[target_feature(enable = "neon")]
fn lstm_forward_row_neon(
    hidden: usize,
    gates: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    h: &mut [f32],
    tanh_c: &mut [f32],
) {
    let whole = hidden / LANES;
    {
        let [gi, gf, gg, go] = split_gates_mut(gates, hidden).map(|g| vectors_mut(g).0);
        let [bi, bf, bg, bo] = split_gates(bias, hidden).map(|b| vectors(b).0);
        let c_prev = vectors(c_prev).0;
        let c = vectors_mut(c).0;
        let h = vectors_mut(h).0;
        let tanh_c = vectors_mut(tanh_c).0;
        for k in 0..whole {
            let i = sigmoid(vaddq_f32(load(&gi[k]), load(&bi[k])));
            let f = sigmoid(vaddq_f32(load(&gf[k]), load(&bf[k])));
            let g = tanh(vaddq_f32(load(&gg[k]), load(&bg[k])));
            let o = sigmoid(vaddq_f32(load(&go[k]), load(&bo[k])));
            let cell = vaddq_f32(vmulq_f32(f, load(&c_prev[k])), vmulq_f32(i, g));
            let t = tanh(cell);
            store(&mut gi[k], i);
            store(&mut gf[k], f);
            store(&mut gg[k], g);
            store(&mut go[k], o);
            store(&mut c[k], cell);
            store(&mut tanh_c[k], t);
            store(&mut h[k], vmulq_f32(o, t));
        }
    }
    lstm::scalar::forward_row(hidden, whole * LANES, gates, bias, c_prev, c, h, tanh_c);
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
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { lstm_backward_row_neon(hidden, gates, c_prev, tanh_c, dh, dc, dgates) }
}

#[target_feature(enable = "neon")]
fn lstm_backward_row_neon(
    hidden: usize,
    gates: &[f32],
    c_prev: &[f32],
    tanh_c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dgates: &mut [f32],
) {
    let whole = hidden / LANES;
    {
        let [gi, gf, gg, go] = split_gates(gates, hidden).map(|g| vectors(g).0);
        let [di, df, dg, do_] = split_gates_mut(dgates, hidden).map(|d| vectors_mut(d).0);
        let c_prev = vectors(c_prev).0;
        let tanh_c = vectors(tanh_c).0;
        let dh = vectors(dh).0;
        let dc = vectors_mut(dc).0;
        let one = vdupq_n_f32(1.0);
        for k in 0..whole {
            let i = load(&gi[k]);
            let f = load(&gf[k]);
            let g = load(&gg[k]);
            let o = load(&go[k]);
            let t = load(&tanh_c[k]);
            let dh_k = load(&dh[k]);

            // Same products in the same order as the scalar twin, unfused.
            let dtanh = vsubq_f32(one, vmulq_f32(t, t));
            let dcell = vaddq_f32(load(&dc[k]), vmulq_f32(vmulq_f32(dh_k, o), dtanh));
            let d_i = vmulq_f32(vmulq_f32(vmulq_f32(dcell, g), i), vsubq_f32(one, i));
            let d_f = vmulq_f32(
                vmulq_f32(vmulq_f32(dcell, load(&c_prev[k])), f),
                vsubq_f32(one, f),
            );
            let d_g = vmulq_f32(vmulq_f32(dcell, i), vsubq_f32(one, vmulq_f32(g, g)));
            let d_o = vmulq_f32(vmulq_f32(vmulq_f32(dh_k, t), o), vsubq_f32(one, o));
            store(&mut di[k], d_i);
            store(&mut df[k], d_f);
            store(&mut dg[k], d_g);
            store(&mut do_[k], d_o);
            store(&mut dc[k], vmulq_f32(dcell, f));
        }
    }
    lstm::scalar::backward_row(hidden, whole * LANES, gates, c_prev, tanh_c, dh, dc, dgates);
}

/// Returns the maximum of `block`, NaN when any element is NaN, and
/// -inf when `block` is empty.
#[target_feature(enable = "neon")]
fn block_max(block: &[f32]) -> f32 {
    let (whole, tail) = vectors(block);
    let mut acc = vdupq_n_f32(f32::NEG_INFINITY);
    for v in whole {
        acc = vmaxq_f32(acc, load(v));
    }
    let mut max = vmaxvq_f32(acc);
    for &x in tail {
        if x.is_nan() || max.is_nan() {
            max = f32::NAN;
        } else if x > max {
            max = x;
        }
    }
    max
}

/// Returns the sum of e^(x - max) over `block`.
#[target_feature(enable = "neon")]
fn block_exp_sum(block: &[f32], max: f32) -> f32 {
    let (whole, tail) = vectors(block);
    let max_v = vdupq_n_f32(max);
    let mut acc = vdupq_n_f32(0.0);
    for v in whole {
        acc = vaddq_f32(acc, exp(vsubq_f32(load(v), max_v)));
    }
    let mut sum = vaddvq_f32(acc);
    for &x in tail {
        sum += scalar_exp(x - max);
    }
    sum
}

pub(crate) fn softmax_row_max_sum(row: &[f32], block_len: usize) -> (f32, f32) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { softmax_row_max_sum_neon(row, block_len) }
}

#[target_feature(enable = "neon")]
fn softmax_row_max_sum_neon(row: &[f32], block_len: usize) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    for block in row.chunks(block_len) {
        let block_max = block_max(block);
        // A NaN maximum also replaces m, so the NaN reaches the sum.
        if block_max > m || block_max.is_nan() || m.is_nan() {
            s *= scalar_exp(m - block_max);
            m = block_max;
        }
        s += block_exp_sum(block, m);
    }
    (m, s)
}

/// Writes e^(x - max) over `block` and returns their sum.
#[target_feature(enable = "neon")]
fn block_exp_sum_in_place(block: &mut [f32], max: f32) -> f32 {
    let (whole, tail) = vectors_mut(block);
    let max_v = vdupq_n_f32(max);
    let mut acc = vdupq_n_f32(0.0);
    for v in whole {
        let e = exp(vsubq_f32(load(v), max_v));
        acc = vaddq_f32(acc, e);
        store(v, e);
    }
    let mut sum = vaddvq_f32(acc);
    for x in tail {
        *x = scalar_exp(*x - max);
        sum += *x;
    }
    sum
}

pub(crate) fn softmax_row_exp_sum(
    row: &mut [f32],
    block_len: usize,
    block_maxes: &mut [f32],
) -> (f32, f32) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { softmax_row_exp_sum_neon(row, block_len, block_maxes) }
}

/// Computes the row maximum and sum as `softmax_row_max_sum_neon` does,
/// and also writes e^(x - m) over each block and records m, the running
/// maximum after the block, in `block_maxes`.
#[target_feature(enable = "neon")]
fn softmax_row_exp_sum_neon(
    row: &mut [f32],
    block_len: usize,
    block_maxes: &mut [f32],
) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    let mut s = 0.0f32;
    for (block, running_max) in row.chunks_mut(block_len).zip(block_maxes) {
        let block_max = block_max(block);
        // A NaN maximum also replaces m, so the NaN reaches the sum.
        if block_max > m || block_max.is_nan() || m.is_nan() {
            s *= scalar_exp(m - block_max);
            m = block_max;
        }
        *running_max = m;
        s += block_exp_sum_in_place(block, m);
    }
    (m, s)
}

pub(crate) fn mul_in_place(x: &mut [f32], y: &[f32]) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { mul_in_place_neon(x, y) }
}

#[target_feature(enable = "neon")]
fn mul_in_place_neon(x: &mut [f32], y: &[f32]) {
    let (xs, x_tail) = vectors_mut(x);
    let (ys, y_tail) = vectors(y);
    for (a, b) in xs.iter_mut().zip(ys) {
        store(a, vmulq_f32(load(a), load(b)));
    }
    dropout::scalar::mul_in_place(x_tail, y_tail);
}

pub(crate) fn add_in_place(dst: &mut [f32], src: &[f32]) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { add_in_place_neon(dst, src) }
}

#[target_feature(enable = "neon")]
fn add_in_place_neon(dst: &mut [f32], src: &[f32]) {
    let (ds, d_tail) = vectors_mut(dst);
    let (ss, s_tail) = vectors(src);
    for (d, s) in ds.iter_mut().zip(ss) {
        store(d, vaddq_f32(load(d), load(s)));
    }
    embedding::scalar::add_in_place(d_tail, s_tail);
}

pub(crate) fn sgd_update(params: &mut [f32], grads: &[f32], lr: f32) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { sgd_update_neon(params, grads, lr) }
}

#[target_feature(enable = "neon")]
fn sgd_update_neon(params: &mut [f32], grads: &[f32], lr: f32) {
    let (ps, p_tail) = vectors_mut(params);
    let (gs, g_tail) = vectors(grads);
    for (p, g) in ps.iter_mut().zip(gs) {
        // Unfused, so the update rounds exactly as the scalar twin's.
        store(p, vsubq_f32(load(p), vmulq_n_f32(load(g), lr)));
    }
    vector::scalar::sgd_update(p_tail, g_tail, lr);
}

pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { sum_squares_neon(x) }
}

#[target_feature(enable = "neon")]
fn sum_squares_neon(x: &[f32]) -> f64 {
    let (whole, tail) = vectors(x);
    let mut low = vdupq_n_f64(0.0);
    let mut high = vdupq_n_f64(0.0);
    for v in whole {
        let v = load(v);
        let v_low = vcvt_f64_f32(vget_low_f32(v));
        let v_high = vcvt_high_f64_f32(v);
        // The square of an f32 is exact in f64, so fusing changes no rounding.
        low = vfmaq_f64(low, v_low, v_low);
        high = vfmaq_f64(high, v_high, v_high);
    }
    vaddvq_f64(vaddq_f64(low, high)) + vector::scalar::sum_squares(tail)
}

pub(crate) fn scale_in_place(x: &mut [f32], factor: f32) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { scale_in_place_neon(x, factor) }
}

#[target_feature(enable = "neon")]
fn scale_in_place_neon(x: &mut [f32], factor: f32) {
    let (whole, tail) = vectors_mut(x);
    for v in whole {
        store(v, vmulq_n_f32(load(v), factor));
    }
    vector::scalar::scale_in_place(tail, factor);
}

/// Rows in the tallest tile of `gemm_packed`.
///
/// A tile of R rows by one panel (16 columns, four q vectors) keeps 4R
/// accumulators in registers for the whole K loop. Each k step loads the
/// panel's four vectors and issues 4R fused multiply-adds, each taking its
/// A element as a scalar operand. With R = 6 that is 24 accumulators and
/// 4 panel vectors, 28 of the 32 vector registers, plus the A elements.
/// Per k step 4 vector loads and R scalar loads feed 4R FMAs, so the FMA
/// units set the pace on cores with two or more of them. Rows are split
/// into balanced tiles of at most 6 (20 rows become 4 x 5).
///
/// NOTE: unlike the x86 paths this one issues no software prefetch
/// (`core::arch::aarch64::_prefetch` is unstable), and its speed has not
/// been measured on aarch64 hardware; qemu checks only its results.
const GEMM_MAX_ROWS: usize = 6;

pub(crate) fn gemm_packed(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    // SAFETY: only a `Kernels` of `Isa::Neon` calls this, and its constructor checked
    // that this CPU has NEON.
    unsafe { gemm_packed_neon(m, k, n, a, packed_b, c, accumulate) }
}

/// Runs `packed_gemm::for_each_tile` with strips of one panel.
#[target_feature(enable = "neon")]
fn gemm_packed_neon(
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
#[target_feature(enable = "neon")]
fn gemm_tile<const MR: usize>(tile: Tile) {
    const QUADS: usize = PANEL / LANES;
    let Tile {
        panels,
        k,
        a,
        b,
        c,
        ldc,
        accumulate,
        ..
    } = tile;
    assert_eq!(panels, 1, "gemm tile: NEON tiles are one panel wide");
    let cols = c.len() - (MR - 1) * ldc;
    assert!(
        (1..=PANEL).contains(&cols),
        "gemm tile: {cols} columns do not fit one panel"
    );
    // Slicing to exactly K elements (or K steps) lets the compiler drop the
    // bounds checks of the K loop.
    let a_rows: [&[f32]; MR] = core::array::from_fn(|r| &a[r * k..(r + 1) * k]);
    let b_steps = &b.as_chunks::<PANEL>().0[..k];

    // A partial last panel goes through a zero-padded copy of its rows, so
    // that the loads and stores below always cover 16 columns.
    let mut acc = [[vdupq_n_f32(0.0); QUADS]; MR];
    if accumulate {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let mut row = [0f32; PANEL];
            row[..cols].copy_from_slice(&c[r * ldc..r * ldc + cols]);
            for (acc, quad) in acc_row.iter_mut().zip(row.as_chunks::<LANES>().0) {
                *acc = load(quad);
            }
        }
    }

    for (kk, b_k) in b_steps.iter().enumerate() {
        let mut b_quads = [vdupq_n_f32(0.0); QUADS];
        for (b_quad, quad) in b_quads.iter_mut().zip(b_k.as_chunks::<LANES>().0) {
            *b_quad = load(quad);
        }
        for (acc_row, a_row) in acc.iter_mut().zip(&a_rows) {
            let a_rk = a_row[kk];
            for (acc, &b_quad) in acc_row.iter_mut().zip(&b_quads) {
                *acc = vfmaq_n_f32(*acc, b_quad, a_rk);
            }
        }
    }

    for (r, acc_row) in acc.iter().enumerate() {
        let mut row = [0f32; PANEL];
        for (&acc, quad) in acc_row.iter().zip(row.as_chunks_mut::<LANES>().0) {
            store(quad, acc);
        }
        c[r * ldc..r * ldc + cols].copy_from_slice(&row[..cols]);
    }
}
