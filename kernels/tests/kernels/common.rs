//! Helpers shared by the kernel tests: the paths to run, seeded inputs and
//! error measures against f64 references.

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rnnlm_kernels::{Isa, Kernels};

/// Lengths that cover a single element, tails shorter than every vector
/// width (4, 8, 16 lanes), exact multiples, one past them, the book's hidden
/// size, and the PTB vocabulary (several softmax blocks).
pub const SIZES: [usize; 11] = [1, 3, 7, 15, 16, 17, 31, 33, 650, 1000, 10000];

/// Kernels for every path this CPU can run, scalar first.
pub fn paths() -> Vec<Kernels> {
    Isa::ALL
        .iter()
        .filter(|isa| isa.is_available())
        .map(|&isa| Kernels::new(isa).expect("an available path must construct"))
        .collect()
}

/// Kernels for every SIMD path this CPU can run (possibly none).
pub fn simd_paths() -> Vec<Kernels> {
    paths()
        .into_iter()
        .filter(|k| k.isa() != Isa::Scalar)
        .collect()
}

pub fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Draws a uniform f32 in [lo, hi).
pub fn uniform(rng: &mut Xoshiro256PlusPlus, lo: f32, hi: f32) -> f32 {
    let unit = (rng.next_u32() >> 8) as f32 / 16_777_216.0;
    lo + (hi - lo) * unit
}

pub fn uniform_vec(rng: &mut Xoshiro256PlusPlus, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| uniform(rng, lo, hi)).collect()
}

pub fn below(rng: &mut Xoshiro256PlusPlus, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Returns the spacing of f32 values at the magnitude of `x`: 2^(e - 23)
/// for a normal x in [2^e, 2^(e+1)), and 2^-149 in the subnormal range.
pub fn f32_ulp(x: f64) -> f64 {
    let exponent = ((x.abs().to_bits() >> 52) & 0x7ff) as i32 - 1023;
    2f64.powi(exponent.max(-126) - 23)
}

/// |got - want| in units of the f32 spacing at `want`; 0 when both are the
/// same infinity, +inf when exactly one is NaN or infinite.
pub fn ulp_error(got: f32, want: f64) -> f64 {
    let got = got as f64;
    if got.is_nan() && want.is_nan() || got == want {
        return 0.0;
    }
    if !got.is_finite() || !want.is_finite() {
        return f64::INFINITY;
    }
    (got - want).abs() / f32_ulp(want)
}
