//! In-process rate of `rnnlm::matmul::gemm`, the reference figure that the
//! products inside a training step are measured against.

use std::time::Instant;

use faer::Accum;
use rnnlm::matmul::{gemm, view, view_mut};
use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// Storage of the right-hand operand of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RhsLayout {
    /// `(K, N)` row-major.
    RowMajor,
    /// The transpose of an `(N, K)` row-major matrix, as the tied projection
    /// `top E^T` reads the embedding.
    Transposed,
}

/// A product `(M, K) x (K, N)` to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub rhs: RhsLayout,
}

impl ProductShape {
    /// FLOPs of one product, a multiply-add counted as 2.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.k as f64 * self.n as f64
    }

    /// Formats the shape as `(M x K) @ (K x N)`, marking a transposed rhs.
    pub fn label(&self) -> String {
        let transposed = match self.rhs {
            RhsLayout::RowMajor => "",
            RhsLayout::Transposed => "^T",
        };
        format!(
            "({} x {}) @ ({} x {}){transposed}",
            self.m, self.k, self.k, self.n
        )
    }
}

/// Deterministic values in [-1, 1) with no short period, so no cache or
/// branch effect depends on the data.
fn fill(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

/// Times `reps` products of `shape` on a pool of `threads` threads, after
/// one untimed product, and returns the GFLOP/s of each.
///
/// # Errors
/// When rayon cannot start the pool.
pub fn measure_gflops(
    shape: ProductShape,
    threads: usize,
    reps: usize,
) -> Result<Summary, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let ProductShape { m, k, n, rhs } = shape;
    let lhs = fill(m * k, 1);
    let rhs_data = fill(k * n, 2);
    let mut dst = vec![0.0f32; m * n];

    let samples: Vec<f64> = pool.install(|| {
        let mut run = || {
            let rhs_view = match rhs {
                RhsLayout::RowMajor => view(&rhs_data, k, n),
                RhsLayout::Transposed => view(&rhs_data, n, k).transpose(),
            };
            let start = Instant::now();
            gemm(
                threads,
                view_mut(&mut dst, m, n),
                Accum::Replace,
                view(&lhs, m, k),
                rhs_view,
            );
            start.elapsed().as_secs_f64()
        };
        run();
        (0..reps.max(1))
            .map(|_| shape.flops() / run() / 1e9)
            .collect()
    });
    std::hint::black_box(&dst);
    Ok(Summary::of(&samples).expect("at least one finite sample"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_shape_flops_and_label() {
        let shape = ProductShape {
            m: 700,
            k: 650,
            n: 10_000,
            rhs: RhsLayout::Transposed,
        };
        assert_eq!(shape.flops(), 9_100_000_000.0);
        assert_eq!(shape.label(), "(700 x 650) @ (650 x 10000)^T");
    }

    #[test]
    fn measure_gflops_returns_one_sample_per_rep() {
        let shape = ProductShape {
            m: 64,
            k: 48,
            n: 80,
            rhs: RhsLayout::RowMajor,
        };
        let summary = measure_gflops(shape, 2, 3).unwrap();
        assert_eq!(summary.samples.len(), 3);
        assert!(summary.min > 0.0, "{summary:?}");
        assert!(summary.max.is_finite(), "{summary:?}");
    }
}
