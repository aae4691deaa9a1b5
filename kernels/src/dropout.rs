//! Inverted dropout: mask generation from a xoshiro256++ stream, and the
//! element-wise product used both forward and backward.

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::dispatch::{Isa, Kernels};

/// The random stream dropout masks are drawn from.
pub type DropoutRng = Xoshiro256PlusPlus;

/// 2^-24: turns the top 24 bits of a random u32 into a uniform f32 in [0, 1).
const UNIT_24: f32 = 1.0 / 16_777_216.0;

impl Kernels {
    /// Fills `mask` with a dropout mask: each element is 1/(1 - p) with
    /// probability 1 - p (kept) and 0 otherwise (dropped), one uniform number
    /// per element taken from `rng` in order. With `p == 0` every element is 1
    /// and `rng` is left untouched.
    ///
    /// The stream is sequential, so every path fills the mask with the same
    /// scalar loop and draws the same mask from the same `rng` state.
    ///
    /// # Panics
    /// When `p` is not in [0, 1).
    pub fn dropout_mask(&self, rng: &mut DropoutRng, p: f32, mask: &mut [f32]) {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout_mask: p = {p} must be in [0, 1)"
        );
        if p == 0.0 {
            mask.fill(1.0);
            return;
        }
        let keep_scale = 1.0 / (1.0 - p);

        // Each u64 gives two 32-bit draws; a trailing odd element uses half of one.
        let mut pairs = mask.chunks_exact_mut(2);
        for pair in &mut pairs {
            let bits = rng.next_u64();
            pair[0] = keep_value((bits as u32) >> 8, p, keep_scale);
            pair[1] = keep_value(((bits >> 32) as u32) >> 8, p, keep_scale);
        }
        if let [last] = pairs.into_remainder() {
            let bits = rng.next_u64();
            *last = keep_value((bits as u32) >> 8, p, keep_scale);
        }
    }

    /// Multiplies `x` element-wise by `mask`, repeated along `x`: element k of
    /// `x` is multiplied by `mask[k % mask.len()]`.
    ///
    /// With a `(B, H)` mask and `x` of shape `(T, B, H)` this applies one
    /// variational mask to every step of a window; with a mask as long as `x`
    /// it applies a fresh mask per element. The backward pass is the same
    /// product applied to the gradient.
    ///
    /// # Panics
    /// When `mask` is empty while `x` is not, or `x.len()` is not a multiple of
    /// `mask.len()`.
    pub fn dropout_apply(&self, x: &mut [f32], mask: &[f32]) {
        if x.is_empty() {
            return;
        }
        assert!(
            !mask.is_empty() && x.len().is_multiple_of(mask.len()),
            "dropout_apply: x has {} elements, which is not a multiple of the mask's {}",
            x.len(),
            mask.len()
        );
        for chunk in x.chunks_exact_mut(mask.len()) {
            self.mul_in_place(chunk, mask);
        }
    }
}

fn keep_value(top24: u32, p: f32, keep_scale: f32) -> f32 {
    if top24 as f32 * UNIT_24 >= p {
        keep_scale
    } else {
        0.0
    }
}

/// Returns a dropout stream seeded from a u64 (splitmix64 expansion).
pub fn dropout_rng(seed: u64) -> DropoutRng {
    DropoutRng::seed_from_u64(seed)
}

/// Scalar twin of the element-wise product.
pub(crate) mod scalar {
    pub fn mul_in_place(x: &mut [f32], y: &[f32]) {
        for (a, &b) in x.iter_mut().zip(y) {
            *a *= b;
        }
    }
}

impl Kernels {
    /// Multiplies `x` element-wise by `y` in place.
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn mul_in_place(&self, x: &mut [f32], y: &[f32]) {
        assert_eq!(
            x.len(),
            y.len(),
            "mul_in_place: lengths differ ({} and {})",
            x.len(),
            y.len()
        );
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::mul_in_place(x, y),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::mul_in_place(x, y),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::mul_in_place(x, y),
            _ => scalar::mul_in_place(x, y),
        }
    }
}
