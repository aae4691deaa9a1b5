//! Element-wise kernels and reductions on every path: mul, add, SGD, scale,
//! sum of squares, dropout, embedding gather and scatter-add, row bias and
//! column sums.
//!
//! mul, add and scale round once, so every path must return the correctly
//! rounded f32 of the exact result. That is the f64 result rounded to f32,
//! because f64 has more than twice the precision of f32 plus two bits, and
//! then rounding twice gives the same result as rounding once. The SIMD paths keep the scalar operation
//! order, so they must also return the scalar path's bits.

use rnnlm_kernels::{Kernels, dropout_rng};

use crate::common::{SIZES, paths, rng, uniform_vec};

fn assert_same_bits(what: &str, kernels: &Kernels, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (j, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || g.is_nan() && w.is_nan(),
            "{what} on {}, len {}: element {j} = {g:e}, expected {w:e}",
            kernels.isa(),
            got.len()
        );
    }
}

#[test]
fn mul_add_scale_round_once_at_odd_sizes() {
    for (seed, &len) in SIZES.iter().enumerate() {
        let mut rng = rng(seed as u64);
        let x = uniform_vec(&mut rng, len, -3.0, 3.0);
        let y = uniform_vec(&mut rng, len, -3.0, 3.0);
        let factor = 0.37f32;
        let rounded = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f32> {
            x.iter()
                .zip(&y)
                .map(|(&a, &b)| f(a as f64, b as f64) as f32)
                .collect()
        };
        let want_mul = rounded(&|a, b| a * b);
        let want_add = rounded(&|a, b| a + b);
        let want_scale = rounded(&|a, _| a * factor as f64);

        for kernels in paths() {
            let mut got = x.clone();
            kernels.mul_in_place(&mut got, &y);
            assert_same_bits("mul_in_place", &kernels, &got, &want_mul);

            let mut got = x.clone();
            kernels.add_in_place(&mut got, &y);
            assert_same_bits("add_in_place", &kernels, &got, &want_add);

            let mut got = x.clone();
            kernels.scale_in_place(&mut got, factor);
            assert_same_bits("scale_in_place", &kernels, &got, &want_scale);
        }
    }
}

#[test]
fn sgd_update_matches_scalar_bits_and_f64() {
    let scalar = Kernels::scalar();
    for (seed, &len) in SIZES.iter().enumerate() {
        let mut rng = rng(100 + seed as u64);
        let params = uniform_vec(&mut rng, len, -1.0, 1.0);
        let grads = uniform_vec(&mut rng, len, -0.1, 0.1);
        let lr = 20.0f32;
        let mut want = params.clone();
        scalar.sgd_update(&mut want, &grads, lr);

        for kernels in paths() {
            let mut got = params.clone();
            kernels.sgd_update(&mut got, &grads, lr);
            assert_same_bits("sgd_update", &kernels, &got, &want);
            for (j, ((&p, &g), &new)) in params.iter().zip(&grads).zip(&got).enumerate() {
                let exact = p as f64 - lr as f64 * g as f64;
                // Two roundings (lr * g, then the subtraction), each within
                // 2^-24 of the magnitude it rounds.
                let tolerance = 2.0 / 16_777_216.0 * (p.abs() as f64 + (lr * g).abs() as f64);
                assert!(
                    (new as f64 - exact).abs() <= tolerance,
                    "sgd_update on {}: element {j} = {new:e}, expected {exact:e}",
                    kernels.isa()
                );
            }
        }
    }
}

/// A kernel name and a call of it on one slice.
type NamedRun<'a> = (&'a str, &'a dyn Fn(&mut [f32]));

#[test]
fn elementwise_kernels_propagate_nan() {
    for &len in &SIZES {
        for nan_at in [0, len / 2, len - 1] {
            let mut x = uniform_vec(&mut rng(len as u64), len, -1.0, 1.0);
            x[nan_at] = f32::NAN;
            let y = vec![0.5f32; len];
            for kernels in paths() {
                let path = kernels.isa();
                let runs: [NamedRun; 5] = [
                    ("mul_in_place", &|v| kernels.mul_in_place(v, &y)),
                    ("add_in_place", &|v| kernels.add_in_place(v, &y)),
                    ("scale_in_place", &|v| kernels.scale_in_place(v, 3.0)),
                    ("sgd_update", &|v| kernels.sgd_update(v, &y, 0.1)),
                    ("dropout_apply", &|v| kernels.dropout_apply(v, &y)),
                ];
                for (name, run) in runs {
                    let mut v = x.clone();
                    run(&mut v);
                    for (j, &out) in v.iter().enumerate() {
                        assert_eq!(
                            out.is_nan(),
                            j == nan_at,
                            "{name} on {path}, len {len}: [{j}]"
                        );
                    }
                }
                assert!(
                    kernels.sum_squares(&x).is_nan(),
                    "sum_squares on {path}, len {len}"
                );
            }
        }
    }
}

#[test]
fn sum_squares_matches_f64_at_odd_sizes() {
    for (seed, &len) in SIZES.iter().enumerate() {
        let x = uniform_vec(&mut rng(200 + seed as u64), len, -2.0, 2.0);
        let exact: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
        for kernels in paths() {
            let got = kernels.sum_squares(&x);
            // Every square is exact in f64 and the terms are positive, so
            // summing in any order is within len * 2^-53 relative.
            let tolerance = len as f64 * f64::EPSILON * exact;
            assert!(
                (got - exact).abs() <= tolerance,
                "sum_squares on {}, len {len}: {got}, expected {exact}",
                kernels.isa()
            );
        }
    }
}

#[test]
fn sum_squares_of_f32_max_does_not_overflow() {
    for &len in &SIZES {
        let x = vec![-f32::MAX; len];
        let exact = len as f64 * (f32::MAX as f64).powi(2);
        for kernels in paths() {
            let got = kernels.sum_squares(&x);
            assert!(
                (got - exact).abs() <= len as f64 * f64::EPSILON * exact,
                "sum_squares on {}, len {len}: {got:e}, expected {exact:e}",
                kernels.isa()
            );
            let mut with_inf = x.clone();
            with_inf[len - 1] = f32::INFINITY;
            assert_eq!(kernels.sum_squares(&with_inf), f64::INFINITY);
        }
    }
}

#[test]
fn dropout_mask_is_the_same_on_every_path() {
    let len = 10_000;
    let p = 0.65f32;
    let mut want = vec![0.0f32; len];
    Kernels::scalar().dropout_mask(&mut dropout_rng(7), p, &mut want);

    // Kept elements are exactly 1/(1-p); the kept count is binomial with
    // mean 3500 and standard deviation 47.7, so 5 deviations is 239.
    let keep = 1.0 / (1.0 - p);
    assert!(want.iter().all(|&m| m == 0.0 || m == keep));
    let kept = want.iter().filter(|&&m| m == keep).count();
    assert!(
        kept.abs_diff(3500) <= 239,
        "kept {kept} of {len} at p = {p}"
    );

    for kernels in paths() {
        let mut got = vec![f32::NAN; len];
        kernels.dropout_mask(&mut dropout_rng(7), p, &mut got);
        assert_same_bits("dropout_mask", &kernels, &got, &want);
    }
}

#[test]
fn dropout_apply_repeats_mask_along_time() {
    // x is (T, B, H) = (5, 2, 33) and the mask (B, H): one variational mask
    // for all five steps.
    let (steps, units) = (5, 2 * 33);
    let mut rng = rng(300);
    let x = uniform_vec(&mut rng, steps * units, -1.0, 1.0);
    let mut mask = vec![0.0f32; units];
    Kernels::scalar().dropout_mask(&mut dropout_rng(8), 0.5, &mut mask);
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(k, &v)| v * mask[k % units])
        .collect();
    for kernels in paths() {
        let mut got = x.clone();
        kernels.dropout_apply(&mut got, &mask);
        assert_same_bits("dropout_apply", &kernels, &got, &want);
    }
}

#[test]
fn embedding_gather_scatter_at_odd_sizes() {
    for (seed, &hidden) in SIZES.iter().enumerate() {
        let vocab = 5;
        let mut rng = rng(400 + seed as u64);
        let table = uniform_vec(&mut rng, vocab * hidden, -1.0, 1.0);
        // Repeated ids must accumulate in the scatter-add.
        let ids = [3u32, 0, 3, 4, 3];
        let grads = uniform_vec(&mut rng, ids.len() * hidden, -1.0, 1.0);
        let mut want_table_grad = vec![0.25f32; vocab * hidden];
        for (n, &id) in ids.iter().enumerate() {
            for j in 0..hidden {
                want_table_grad[id as usize * hidden + j] += grads[n * hidden + j];
            }
        }

        for kernels in paths() {
            let mut rows = vec![f32::NAN; ids.len() * hidden];
            kernels.embedding_gather(hidden, &table, &ids, &mut rows);
            for (n, &id) in ids.iter().enumerate() {
                let start = id as usize * hidden;
                assert_eq!(
                    rows[n * hidden..(n + 1) * hidden],
                    table[start..start + hidden],
                    "embedding_gather on {}, H = {hidden}: row {n}",
                    kernels.isa()
                );
            }

            let mut table_grad = vec![0.25f32; vocab * hidden];
            kernels.embedding_scatter_add(hidden, &mut table_grad, &ids, &grads);
            assert_same_bits(
                "embedding_scatter_add",
                &kernels,
                &table_grad,
                &want_table_grad,
            );
        }
    }
}

#[test]
fn row_bias_and_column_sums_at_odd_sizes() {
    for (seed, &cols) in SIZES.iter().enumerate() {
        let rows = 3;
        let mut rng = rng(500 + seed as u64);
        let x = uniform_vec(&mut rng, rows * cols, -1.0, 1.0);
        let bias = uniform_vec(&mut rng, cols, -1.0, 1.0);
        let want_biased: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(k, &v)| v + bias[k % cols])
            .collect();
        // Column sums accumulate row by row into the existing values.
        let mut want_sums = bias.clone();
        for row in x.chunks_exact(cols) {
            for (s, &v) in want_sums.iter_mut().zip(row) {
                *s += v;
            }
        }

        for kernels in paths() {
            let mut biased = x.clone();
            kernels.add_row_bias(&mut biased, &bias);
            assert_same_bits("add_row_bias", &kernels, &biased, &want_biased);

            let mut sums = bias.clone();
            kernels.add_column_sums(&x, &mut sums);
            assert_same_bits("add_column_sums", &kernels, &sums, &want_sums);
        }
    }
}

#[test]
fn elementwise_kernels_accept_empty_slices() {
    for kernels in paths() {
        kernels.mul_in_place(&mut [], &[]);
        kernels.add_in_place(&mut [], &[]);
        kernels.sgd_update(&mut [], &[], 1.0);
        kernels.scale_in_place(&mut [], 2.0);
        assert_eq!(kernels.sum_squares(&[]), 0.0);
        kernels.dropout_apply(&mut [], &[]);
        kernels.add_row_bias(&mut [], &[1.0]);
        kernels.add_column_sums(&[], &mut [1.0]);
        kernels.embedding_gather(4, &[0.0; 8], &[], &mut []);
    }
}

#[test]
#[should_panic(expected = "mul_in_place: lengths differ (3 and 2)")]
fn mul_in_place_rejects_length_mismatch() {
    Kernels::scalar().mul_in_place(&mut [1.0; 3], &[1.0; 2]);
}

#[test]
#[should_panic(expected = "embedding_gather: id 4 at position 1 is not below V = 4")]
fn embedding_gather_rejects_id_out_of_range() {
    let table = [0.0f32; 4 * 3];
    let mut rows = [0.0f32; 2 * 3];
    Kernels::scalar().embedding_gather(3, &table, &[3, 4], &mut rows);
}
