//! Packing and the packed matrix product on every path. The tests check the
//! packed layout element by element, and products against an f64 reference
//! at sizes with every row and column tail, with both packings and both
//! write modes. They also check the row splits that callers use for threads.
//!
//! Tolerance: every path sums the products of an element in K order,
//! starting from 0 or from C, and rounds at most twice per step (product
//! and sum, or once with a fused multiply-add). The usual forward error
//! bound then gives |c - exact| <= (K + 1) u (|C| + sum_kk |A_ikk B_kkj|)
//! with u = 2^-24, |C| counted only when accumulating. The check uses
//! K + 2 for slack. A product that drops or repeats one term, or reads a
//! wrong element, is off by about (sum |A B|) / K, which is hundreds of
//! times larger at every K tested.

use rnnlm_kernels::{Kernels, PANEL, packed_len};

use crate::common::{paths, rng, simd_paths, uniform_vec};

/// f32 unit roundoff.
const U: f64 = 1.0 / 16_777_216.0;

/// Row counts: one row, tails of every tile height (AVX-512 tiles hold up
/// to 12 rows, AVX2 and NEON tiles 6), and the batch sizes of training (20)
/// and evaluation (10).
const ROWS: [usize; 7] = [1, 3, 7, 10, 13, 20, 24];

/// Inner dimensions: one step, around one panel width, and the book's
/// hidden size.
const DEPTHS: [usize; 6] = [1, 15, 16, 17, 33, 650];

/// Column counts: a partial panel, one panel and one past it, a pair of
/// panels (one AVX-512 strip), a pair plus a single panel, and 650 = 40
/// panels plus 10 columns.
const COLUMNS: [usize; 8] = [1, 15, 16, 17, 32, 33, 48, 650];

/// Returns B (K x N, row-major) and its transpose (N x K, row-major).
fn matrix_and_transpose(seed: u64, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let b = uniform_vec(&mut rng(seed), k * n, -1.0, 1.0);
    let mut b_t = vec![0.0; n * k];
    for kk in 0..k {
        for j in 0..n {
            b_t[j * k + kk] = b[kk * n + j];
        }
    }
    (b, b_t)
}

/// Returns the f64 product `c0 + A B` (or `A B` without `c0`) and, per
/// element, the magnitude `|c0| + sum |A B|` that its error bound scales.
fn reference(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    c0: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let mut exact = vec![0.0; m * n];
    let mut magnitude = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut sum, mut size) = match c0 {
                Some(c0) => (c0[i * n + j] as f64, (c0[i * n + j] as f64).abs()),
                None => (0.0, 0.0),
            };
            for kk in 0..k {
                let product = a[i * k + kk] as f64 * b[kk * n + j] as f64;
                sum += product;
                size += product.abs();
            }
            exact[i * n + j] = sum;
            magnitude[i * n + j] = size;
        }
    }
    (exact, magnitude)
}

fn pack(kernels: &Kernels, k: usize, n: usize, b: &[f32], transposed: bool) -> Vec<f32> {
    let mut packed = vec![f32::NAN; packed_len(k, n)];
    kernels.pack_b(k, n, b, transposed, &mut packed);
    packed
}

#[test]
fn packed_len_rounds_columns_up_to_panels() {
    assert_eq!(PANEL, 16);
    assert_eq!(packed_len(650, 2600), 650 * 2608);
    assert_eq!(packed_len(2600, 650), 2600 * 656);
    assert_eq!(packed_len(3, 16), 48);
    assert_eq!(packed_len(3, 17), 96);
    assert_eq!(packed_len(1, 1), 16);
    assert_eq!(packed_len(0, 17), 0);
    assert_eq!(packed_len(5, 0), 0);
}

#[test]
fn pack_b_layout_and_padding() {
    for &(k, n) in &[(1, 1), (3, 17), (5, 16), (4, 40), (33, 650)] {
        let (b, b_t) = matrix_and_transpose(k as u64 * 1000 + n as u64, k, n);
        for kernels in paths() {
            for (transposed, source) in [(false, &b), (true, &b_t)] {
                let packed = pack(&kernels, k, n, source, transposed);
                for p in 0..n.div_ceil(PANEL) {
                    for kk in 0..k {
                        for j in 0..PANEL {
                            let col = p * PANEL + j;
                            let want = if col < n { b[kk * n + col] } else { 0.0 };
                            let got = packed[p * k * PANEL + kk * PANEL + j];
                            assert!(
                                got.to_bits() == want.to_bits(),
                                "{}, K = {k}, N = {n}, transposed = {transposed}: \
                                 panel {p} step {kk} lane {j} = {got}, expected {want}",
                                kernels.isa()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Checks one path's product at one size against the f64 reference, for
/// both packings and both write modes.
fn check_product(kernels: &Kernels, m: usize, k: usize, n: usize) {
    let seed = (m * 1_000_000 + k * 1000 + n) as u64;
    let mut rng = rng(seed);
    let a = uniform_vec(&mut rng, m * k, -1.0, 1.0);
    let c0 = uniform_vec(&mut rng, m * n, -4.0, 4.0);
    let (b, b_t) = matrix_and_transpose(seed + 1, k, n);
    let (exact, magnitude) = reference(m, k, n, &a, &b, None);
    let (exact_acc, magnitude_acc) = reference(m, k, n, &a, &b, Some(&c0));
    let bound = (k + 2) as f64 * U;
    let path = kernels.isa();

    let packed = pack(kernels, k, n, &b, false);
    let packed_t = pack(kernels, k, n, &b_t, true);
    assert!(
        packed
            .iter()
            .zip(&packed_t)
            .all(|(x, y)| x.to_bits() == y.to_bits()),
        "{path}: packing B and packing its transpose differ at K = {k}, N = {n}"
    );

    for (transposed, packed) in [(false, &packed), (true, &packed_t)] {
        for accumulate in [false, true] {
            // NaN shows any element that a write-only product leaves alone.
            let mut c = if accumulate {
                c0.clone()
            } else {
                vec![f32::NAN; m * n]
            };
            kernels.gemm_packed(m, k, n, &a, packed, &mut c, accumulate);

            let (exact, magnitude) = if accumulate {
                (&exact_acc, &magnitude_acc)
            } else {
                (&exact, &magnitude)
            };
            for (at, &got) in c.iter().enumerate() {
                let error = (got as f64 - exact[at]).abs();
                assert!(
                    error <= bound * magnitude[at],
                    "{path}, M = {m}, K = {k}, N = {n}, transposed = {transposed}, \
                     accumulate = {accumulate}: C[{}][{}] = {got:e}, expected {:e}",
                    at / n,
                    at % n,
                    exact[at]
                );
            }
        }
    }
}

#[test]
fn gemm_packed_matches_f64_at_odd_sizes() {
    for kernels in paths() {
        for &m in &ROWS {
            for &k in &DEPTHS {
                for &n in &COLUMNS {
                    check_product(&kernels, m, k, n);
                }
            }
        }
    }
}

#[test]
fn gemm_packed_matches_f64_at_lstm_step_sizes() {
    for kernels in paths() {
        // Forward h Wh and backward dgates Wh^T for H = 650, at the
        // evaluation batch of 10 rows.
        check_product(&kernels, 10, 650, 2600);
        check_product(&kernels, 10, 2600, 650);
    }
}

#[test]
fn pack_b_panels_in_pieces_match_pack_b() {
    for kernels in paths() {
        for &(k, n) in &[(3, 70), (5, 64), (33, 650)] {
            let (b, b_t) = matrix_and_transpose((k * n) as u64, k, n);
            for (transposed, source) in [(false, &b), (true, &b_t)] {
                let whole = pack(&kernels, k, n, source, transposed);
                let mut pieces = vec![f32::NAN; whole.len()];
                let panels = n.div_ceil(PANEL);
                // Pieces of 1, then 2, then the rest of the panels.
                let (first, rest) = pieces.split_at_mut(k * PANEL);
                let (second, third) = rest.split_at_mut(2 * k * PANEL);
                kernels.pack_b_panels(k, n, source, transposed, 0, first);
                kernels.pack_b_panels(k, n, source, transposed, 1, second);
                kernels.pack_b_panels(k, n, source, transposed, 3, third);
                assert_eq!(third.len(), (panels - 3) * k * PANEL);
                assert!(
                    whole
                        .iter()
                        .zip(&pieces)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{}: K = {k}, N = {n}, transposed = {transposed}",
                    kernels.isa()
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "pack_b_panels: panels 2..4 run past the 3 panels of N = 48")]
fn pack_b_panels_rejects_panels_past_the_end() {
    Kernels::scalar().pack_b_panels(2, 48, &[0.0; 96], false, 2, &mut [0.0; 64]);
}

#[test]
fn gemm_packed_matches_f64_across_row_blocks() {
    for kernels in paths() {
        // A of 455 x 650 and of 61 x 2600 floats exceeds the 256 KiB row
        // block (100 and 25 rows). So the loop nest runs 5 blocks of 91 rows
        // and 3 blocks of 20 or 21, which are not multiples of the tile
        // heights.
        check_product(&kernels, 455, 650, 40);
        check_product(&kernels, 61, 2600, 33);
    }
}

#[test]
fn simd_paths_return_identical_bits() {
    // All SIMD paths sum with fused multiply-adds in the same order, so
    // they must agree exactly, not just within the error bound.
    let paths = simd_paths();
    let Some((first, others)) = paths.split_first() else {
        return;
    };
    for &(m, k, n) in &[(20, 650, 650), (13, 33, 48), (7, 17, 33), (1, 1, 1)] {
        let mut rng = rng(7);
        let a = uniform_vec(&mut rng, m * k, -1.0, 1.0);
        let b = uniform_vec(&mut rng, k * n, -1.0, 1.0);
        let c0 = uniform_vec(&mut rng, m * n, -1.0, 1.0);
        let packed = pack(first, k, n, &b, false);
        let mut want = c0.clone();
        first.gemm_packed(m, k, n, &a, &packed, &mut want, true);
        for kernels in others {
            let mut got = c0.clone();
            kernels.gemm_packed(m, k, n, &a, &packed, &mut got, true);
            for (at, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{} and {} differ at element {at} for M = {m}, K = {k}, N = {n}",
                    kernels.isa(),
                    first.isa()
                );
            }
        }
    }
}

#[test]
fn gemm_packed_row_blocks_match_whole_product() {
    // Each thread takes a contiguous block of rows, so the result must not
    // depend on where the blocks start.
    let (m, k, n) = (20, 129, 100);
    let mut rng = rng(11);
    let a = uniform_vec(&mut rng, m * k, -1.0, 1.0);
    let b = uniform_vec(&mut rng, k * n, -1.0, 1.0);
    for kernels in paths() {
        let packed = pack(&kernels, k, n, &b, false);
        let mut whole = vec![0.0; m * n];
        kernels.gemm_packed(m, k, n, &a, &packed, &mut whole, false);
        for split in [1, 7, 10, 13] {
            let mut parts = vec![0.0; m * n];
            let (c_top, c_bottom) = parts.split_at_mut(split * n);
            let (a_top, a_bottom) = a.split_at(split * k);
            kernels.gemm_packed(split, k, n, a_top, &packed, c_top, false);
            kernels.gemm_packed(m - split, k, n, a_bottom, &packed, c_bottom, false);
            for (at, (p, w)) in parts.iter().zip(&whole).enumerate() {
                assert_eq!(
                    p.to_bits(),
                    w.to_bits(),
                    "{}: split after row {split} changes element {at}",
                    kernels.isa()
                );
            }
        }
    }
}

#[test]
fn gemm_packed_empty_k() {
    for kernels in paths() {
        let mut c = vec![f32::NAN; 3 * 5];
        kernels.gemm_packed(3, 0, 5, &[], &[], &mut c, false);
        assert!(c.iter().all(|&x| x == 0.0), "{}: {c:?}", kernels.isa());

        let mut c = vec![2.5f32; 3 * 5];
        kernels.gemm_packed(3, 0, 5, &[], &[], &mut c, true);
        assert!(c.iter().all(|&x| x == 2.5), "{}: {c:?}", kernels.isa());
    }
}

#[test]
fn gemm_packed_accepts_empty_m_and_n() {
    for kernels in paths() {
        let packed = pack(&kernels, 4, 3, &[1.0; 12], false);
        kernels.gemm_packed(0, 4, 3, &[], &packed, &mut [], false);
        kernels.gemm_packed(2, 4, 0, &[1.0; 8], &[], &mut [], true);
        let mut none = [];
        kernels.pack_b(4, 0, &[], false, &mut none);
    }
}

#[test]
fn gemm_packed_propagates_nan_and_infinity() {
    let (m, k, n) = (3, 20, 18);
    for kernels in paths() {
        let mut a = vec![1.0f32; m * k];
        a[k + 5] = f32::NAN; // row 1
        a[2 * k + 19] = f32::INFINITY; // row 2
        let b = vec![0.5f32; k * n];
        let packed = pack(&kernels, k, n, &b, false);
        let mut c = vec![0.0; m * n];
        kernels.gemm_packed(m, k, n, &a, &packed, &mut c, false);
        let path = kernels.isa();
        assert!(c[..n].iter().all(|&x| x == 10.0), "{path}: row 0 {c:?}");
        assert!(
            c[n..2 * n].iter().all(|x| x.is_nan()),
            "{path}: row 1 {c:?}"
        );
        assert!(
            c[2 * n..].iter().all(|&x| x == f32::INFINITY),
            "{path}: row 2 {c:?}"
        );
    }
}

#[test]
#[should_panic(expected = "gemm_packed: a has 11 elements, expected (M, K) = 3 x 4 = 12")]
fn gemm_packed_rejects_short_a() {
    let kernels = Kernels::scalar();
    let packed = vec![0.0; packed_len(4, 5)];
    kernels.gemm_packed(3, 4, 5, &[0.0; 11], &packed, &mut [0.0; 15], false);
}

#[test]
#[should_panic(expected = "gemm_packed: c has 14 elements, expected (M, N) = 3 x 5 = 15")]
fn gemm_packed_rejects_short_c() {
    let kernels = Kernels::scalar();
    let packed = vec![0.0; packed_len(4, 5)];
    kernels.gemm_packed(3, 4, 5, &[0.0; 12], &packed, &mut [0.0; 14], false);
}

#[test]
#[should_panic(expected = "gemm_packed: packed_b has 20 elements, expected packed_len(4, 5) = 64")]
fn gemm_packed_rejects_unpacked_b() {
    let kernels = Kernels::scalar();
    kernels.gemm_packed(3, 4, 5, &[0.0; 12], &[0.0; 20], &mut [0.0; 15], false);
}

#[test]
#[should_panic(expected = "pack_b: b has 19 elements, expected K x N = 4 x 5 = 20")]
fn pack_b_rejects_short_b() {
    let mut packed = vec![0.0; packed_len(4, 5)];
    Kernels::scalar().pack_b(4, 5, &[0.0; 19], true, &mut packed);
}

#[test]
#[should_panic(expected = "pack_b: packed has 20 elements, expected packed_len(4, 5) = 64")]
fn pack_b_rejects_unpadded_output() {
    Kernels::scalar().pack_b(4, 5, &[0.0; 20], false, &mut [0.0; 20]);
}
