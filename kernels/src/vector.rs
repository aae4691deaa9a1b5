//! Optimiser and reduction kernels: SGD update, sum of squares, scaling,
//! and the row-bias add and column sums around matrix products.

use crate::dispatch::{Isa, Kernels};

/// Scalar twins.
pub(crate) mod scalar {
    pub fn sgd_update(params: &mut [f32], grads: &[f32], lr: f32) {
        for (p, &g) in params.iter_mut().zip(grads) {
            *p -= lr * g;
        }
    }

    pub fn sum_squares(x: &[f32]) -> f64 {
        let mut total = 0.0f64;
        for &v in x {
            let v = v as f64;
            total += v * v;
        }
        total
    }

    pub fn scale_in_place(x: &mut [f32], factor: f32) {
        for v in x {
            *v *= factor;
        }
    }
}

impl Kernels {
    /// SGD step: `params -= lr * grads`, element-wise.
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn sgd_update(&self, params: &mut [f32], grads: &[f32], lr: f32) {
        assert_eq!(
            params.len(),
            grads.len(),
            "sgd_update: params and grads lengths differ ({} and {})",
            params.len(),
            grads.len()
        );
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::sgd_update(params, grads, lr),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::sgd_update(params, grads, lr),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::sgd_update(params, grads, lr),
            _ => scalar::sgd_update(params, grads, lr),
        }
    }

    /// Returns the sum of squares of `x`, each square formed and added in
    /// f64, for the global gradient norm. NaN anywhere gives NaN.
    pub fn sum_squares(&self, x: &[f32]) -> f64 {
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::sum_squares(x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::sum_squares(x),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::sum_squares(x),
            _ => scalar::sum_squares(x),
        }
    }

    /// Multiplies every element of `x` by `factor` (gradient clipping).
    pub fn scale_in_place(&self, x: &mut [f32], factor: f32) {
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::scale_in_place(x, factor),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::scale_in_place(x, factor),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::scale_in_place(x, factor),
            _ => scalar::scale_in_place(x, factor),
        }
    }

    /// Adds `bias` (`(C)`) to every row of `x` (`(R, C)` row-major).
    ///
    /// # Panics
    /// When `x.len()` is not a multiple of `bias.len()`.
    pub fn add_row_bias(&self, x: &mut [f32], bias: &[f32]) {
        if x.is_empty() {
            return;
        }
        assert!(
            !bias.is_empty() && x.len().is_multiple_of(bias.len()),
            "add_row_bias: x has {} elements, not a whole number of rows of {}",
            x.len(),
            bias.len()
        );
        for row in x.chunks_exact_mut(bias.len()) {
            self.add_in_place(row, bias);
        }
    }

    /// Adds the column sums of `x` (`(R, C)` row-major) to `sums` (`(C)`):
    /// the bias gradient of a layer whose output gradient is `x`.
    ///
    /// # Panics
    /// When `x.len()` is not a multiple of `sums.len()`.
    pub fn add_column_sums(&self, x: &[f32], sums: &mut [f32]) {
        if x.is_empty() {
            return;
        }
        assert!(
            !sums.is_empty() && x.len().is_multiple_of(sums.len()),
            "add_column_sums: x has {} elements, not a whole number of rows of {}",
            x.len(),
            sums.len()
        );
        for row in x.chunks_exact(sums.len()) {
            self.add_in_place(sums, row);
        }
    }
}
