//! Exponential, tanh and sigmoid in f32, shared by every path.
//!
//! The SIMD paths evaluate the same formulas as the scalar functions here,
//! lane by lane, so their results differ from the scalar ones only by the
//! rounding of fused multiply-adds.
//!
//! The bounds below are max errors against f64, in units of the f32 spacing
//! (ulp) at the exact result. They were measured over every f32 input of
//! each range on the scalar, AVX2 and AVX-512 paths on x86_64, by
//! `activation_max_error_report` in `tests/kernels/activation.rs`. The
//! regular tests check the same bounds on a grid for every path, NEON
//! included.
//! - `exp`: 1.06 ulp on [-87.33, 88.72], where results are normal. Results
//!   on [-103.97, -87.33] are subnormal, within 0.75 x 2^-149; below that
//!   they are 0, and from 88.7229 up (e^x > f32::MAX) they are +inf.
//! - `tanh`: 2.5 ulp on [-9, 9], tiny and subnormal inputs included; the
//!   sign of zero is kept, and beyond +-9 the result is exactly +-1.
//! - `sigmoid`: 2.5 ulp on [-87.33, 88.72]. Results on [-88.72, -87.33] are
//!   subnormal, within 0.99 x 2^-149; below -88.7228 e^-x overflows and the
//!   result is 0 (the exact value is below 2.9e-39). From 16.636 up the
//!   result is exactly 1.
//!
//! NaN in gives NaN out for all three.

use crate::dispatch::{Isa, Kernels};

/// log2(e), for the range reduction x = n ln2 + r.
pub(crate) const LOG2_E: f32 = core::f32::consts::LOG2_E;
/// ln 2 split in two (Cody and Waite): `LN2_HI` has few mantissa bits, so
/// `n * LN2_HI` is exact for every n the reduction produces.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding then subtracting it rounds an f32 of magnitude below
/// 2^22 to the nearest integer in the current rounding mode.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// Inputs of `exp` are clamped into this range first: below it every result
/// underflows to 0, above it every result overflows to +inf, and inside it
/// the exponent n stays small enough for the two-factor scaling.
pub(crate) const EXP_MIN_INPUT: f32 = -104.0;
pub(crate) const EXP_MAX_INPUT: f32 = 89.0;
/// `tanh(9) = 1 - 3.0e-8` rounds to 1 in f32, so larger |x| are clamped to 9.
pub(crate) const TANH_CLAMP: f32 = 9.0;

/// Taylor coefficients 1/k! for k = 2..7 of e^r on |r| <= ln2/2, where the
/// first omitted term is below 5.2e-9 relative.
pub(crate) const EXP_C2: f32 = 1.0 / 2.0;
pub(crate) const EXP_C3: f32 = 1.0 / 6.0;
pub(crate) const EXP_C4: f32 = 1.0 / 24.0;
pub(crate) const EXP_C5: f32 = 1.0 / 120.0;
pub(crate) const EXP_C6: f32 = 1.0 / 720.0;
pub(crate) const EXP_C7: f32 = 1.0 / 5040.0;

/// Returns 2^n as an f32 for n in -126..=127.
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// Splits x into n and r with x = n ln2 + r, |r| <= ln2/2 (plus rounding).
fn reduce(x: f32) -> (i32, f32) {
    let n = (x * LOG2_E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    (n as i32, r)
}

/// e^r - 1 for |r| <= ln2/2, without the cancellation of computing e^r first.
fn expm1_reduced(r: f32) -> f32 {
    let p = EXP_C6 + r * EXP_C7;
    let p = EXP_C5 + r * p;
    let p = EXP_C4 + r * p;
    let p = EXP_C3 + r * p;
    let p = EXP_C2 + r * p;
    r + r * r * p
}

/// e^x in f32; see the module documentation for the error bound.
pub fn scalar_exp(x: f32) -> f32 {
    // Comparisons with NaN are false, so NaN passes through both clamps.
    let x = if x < EXP_MIN_INPUT { EXP_MIN_INPUT } else { x };
    let x = if x > EXP_MAX_INPUT { EXP_MAX_INPUT } else { x };
    let (n, r) = reduce(x);
    let p = 1.0 + expm1_reduced(r);

    // 2^n is applied as two factors so that n from -150 to 129 neither
    // leaves the normal exponent range in a factor nor loses subnormal results.
    let n1 = n >> 1;
    let n2 = n - n1;
    p * pow2i(n1) * pow2i(n2)
}

/// tanh(x) in f32, accurate near 0 as well as in the tails.
pub fn scalar_tanh(x: f32) -> f32 {
    let a = if x < 0.0 { -x } else { x };
    let a = if a > TANH_CLAMP { TANH_CLAMP } else { a };

    // tanh(a) = -expm1(-2a) / (2 + expm1(-2a)), with expm1 exact to a few ulp
    // even for tiny a, so tanh(a) ~ a keeps its relative accuracy.
    let (n, r) = reduce(-2.0 * a);
    let scale = pow2i(n);
    let em1 = scale * expm1_reduced(r) + (scale - 1.0);
    let t = -em1 / (2.0 + em1);
    // copysign rather than a negation for x < 0: at x = +0, em1 is +0 and
    // t is -0, which must come out as +0.
    t.copysign(x)
}

/// The logistic function 1 / (1 + e^-x) in f32.
pub fn scalar_sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + scalar_exp(-x))
}

/// Natural logarithm in f64 for finite s > 0; used once per softmax row.
///
/// With s = m 2^e and m in [sqrt(1/2), sqrt(2)), ln s = e ln2 + 2 atanh(z)
/// where z = (m - 1) / (m + 1) and |z| < 0.172; the atanh series to z^21 is
/// then accurate to below 1e-16 relative. Returns NaN for NaN or s <= 0,
/// and +inf for +inf.
pub fn scalar_ln_f64(s: f64) -> f64 {
    if s.is_nan() || s <= 0.0 {
        return f64::NAN;
    }
    if s == f64::INFINITY {
        return f64::INFINITY;
    }

    // Bring subnormals into the normal range first.
    let (s, bias) = if s < f64::MIN_POSITIVE {
        (s * 18_014_398_509_481_984.0, -54) // 2^54
    } else {
        (s, 0)
    };
    let bits = s.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023 + bias;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }

    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut series = 0.0;
    let mut k = 21.0;
    while k >= 1.0 {
        series = series * z2 + 1.0 / k;
        k -= 2.0;
    }
    exponent as f64 * core::f64::consts::LN_2 + 2.0 * z * series
}

/// Scalar twins of the slice kernels, also used for the tails of SIMD loops.
pub(crate) mod scalar {
    pub fn exp_in_place(x: &mut [f32]) {
        for v in x {
            *v = super::scalar_exp(*v);
        }
    }

    pub fn tanh_in_place(x: &mut [f32]) {
        for v in x {
            *v = super::scalar_tanh(*v);
        }
    }

    pub fn sigmoid_in_place(x: &mut [f32]) {
        for v in x {
            *v = super::scalar_sigmoid(*v);
        }
    }
}

impl Kernels {
    /// Replaces every element x of `x` with e^x.
    pub fn exp_in_place(&self, x: &mut [f32]) {
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::exp_in_place(x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::exp_in_place(x),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::exp_in_place(x),
            _ => scalar::exp_in_place(x),
        }
    }

    /// Replaces every element x of `x` with tanh(x).
    pub fn tanh_in_place(&self, x: &mut [f32]) {
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::tanh_in_place(x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::tanh_in_place(x),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::tanh_in_place(x),
            _ => scalar::tanh_in_place(x),
        }
    }

    /// Replaces every element x of `x` with 1 / (1 + e^-x).
    pub fn sigmoid_in_place(&self, x: &mut [f32]) {
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::sigmoid_in_place(x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::sigmoid_in_place(x),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::sigmoid_in_place(x),
            _ => scalar::sigmoid_in_place(x),
        }
    }
}
