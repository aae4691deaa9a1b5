//! Matrix products for the model's shapes, through faer.
//!
//! Every product runs faer's sequential kernel on each thread's share of the
//! output, and the shares are spread with `rayon::join`. faer's own rayon
//! mode allocates task state on every call (about a dozen allocations per
//! product, measured with a counting allocator on faer 0.24), which would
//! break the no-allocation training step; `join` keeps its jobs on the stack.
//!
//! NOTE: the no-allocation step holds only where faer uses its own x86
//! kernel (AVX2+FMA or AVX-512). Elsewhere, aarch64 included, faer 0.24.4
//! hands f32 products to the `gemm` crate, whose 0.19 driver allocates
//! packing buffers on every product. The allocation test runs on x86 only.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rnnlm_kernels::{Kernels, PANEL, packed_len};

/// Output columns or rows are split at multiples of this, so each thread's
/// share starts on a whole AVX-512 vector of f32.
const SPLIT_ALIGN: usize = 16;

/// Views a row-major slice as an `rows x cols` matrix.
pub fn view(data: &[f32], rows: usize, cols: usize) -> MatRef<'_, f32> {
    MatRef::from_row_major_slice(data, rows, cols)
}

/// Views a row-major slice as a mutable `rows x cols` matrix.
pub fn view_mut(data: &mut [f32], rows: usize, cols: usize) -> MatMut<'_, f32> {
    MatMut::from_row_major_slice_mut(data, rows, cols)
}

/// Computes `dst = lhs * rhs` (`Accum::Replace`) or `dst += lhs * rhs`
/// (`Accum::Add`) on up to `threads` threads of the current rayon pool.
///
/// Shapes: `dst` is `(M, N)`, `lhs` `(M, K)`, `rhs` `(K, N)`, in any layout
/// faer accepts (transposed views included).
///
/// # Panics
/// When the shapes do not match.
pub fn gemm(
    threads: usize,
    dst: MatMut<'_, f32>,
    accum: Accum,
    lhs: MatRef<'_, f32>,
    rhs: MatRef<'_, f32>,
) {
    let (m, n) = (dst.nrows(), dst.ncols());
    let work_per_thread_is_tiny = m * n * lhs.ncols() < 64 * 64 * 64;
    if threads <= 1 || work_per_thread_is_tiny {
        matmul(dst, accum, lhs, rhs, 1.0f32, Par::Seq);
        return;
    }

    let left_threads = threads / 2;
    let right_threads = threads - left_threads;

    // Split the longer side of the output, in proportion to the threads
    // each half gets.
    if n >= m {
        let split = aligned_split(n, left_threads, threads);
        let (dst_left, dst_right) = dst.split_at_col_mut(split);
        let (rhs_left, rhs_right) = rhs.split_at_col(split);
        rayon::join(
            || gemm(left_threads, dst_left, accum, lhs, rhs_left),
            || gemm(right_threads, dst_right, accum, lhs, rhs_right),
        );
    } else {
        let split = aligned_split(m, left_threads, threads);
        let (dst_top, dst_bottom) = dst.split_at_row_mut(split);
        let (lhs_top, lhs_bottom) = lhs.split_at_row(split);
        rayon::join(
            || gemm(left_threads, dst_top, accum, lhs_top, rhs),
            || gemm(right_threads, dst_bottom, accum, lhs_bottom, rhs),
        );
    }
}

/// Runs one small product through faer on every thread of the current rayon
/// pool, so that each thread sets up faer's per-thread scratch memory now.
///
/// faer's x86 kernel allocates that scratch (two L3-sized buffers) the first
/// time a thread runs a product above its small-size threshold. Which thread
/// runs which half of a split product depends on work stealing, so without
/// this a thread could first run a product, and allocate, in any later step.
pub fn prepare_threads() {
    // Above faer's 16^3 small-product threshold, so the x86 kernel runs.
    const SIDE: usize = 17;
    rayon::broadcast(|_| {
        let a = [1.0f32; SIDE * SIDE];
        let mut c = [0.0f32; SIDE * SIDE];
        matmul(
            view_mut(&mut c, SIDE, SIDE),
            Accum::Replace,
            view(&a, SIDE, SIDE),
            view(&a, SIDE, SIDE),
            1.0f32,
            Par::Seq,
        );
    });
}

/// Returns where to cut `len` so the first part gets `part / whole` of it,
/// rounded to a multiple of `SPLIT_ALIGN` when `len` allows.
fn aligned_split(len: usize, part: usize, whole: usize) -> usize {
    let exact = len * part / whole;
    let aligned = (exact + SPLIT_ALIGN / 2) / SPLIT_ALIGN * SPLIT_ALIGN;
    if aligned > 0 && aligned < len {
        aligned
    } else {
        exact
    }
}

/// Packs B for `Kernels::gemm_packed`, as `Kernels::pack_b` does, with its
/// panels split across up to `threads` threads. Each thread writes its own
/// contiguous run of panels, so the result is the same on any thread count.
pub fn pack_b(
    threads: usize,
    kernels: Kernels,
    k: usize,
    n: usize,
    b: &[f32],
    transposed: bool,
    packed: &mut [f32],
) {
    let panels = n.div_ceil(PANEL);
    if threads <= 1 || panels < 2 || k == 0 {
        kernels.pack_b(k, n, b, transposed, packed);
        return;
    }
    // Each part's own checks would accept a buffer short by whole panels.
    assert_eq!(
        packed.len(),
        packed_len(k, n),
        "pack_b: packed has {} elements, expected packed_len({k}, {n}) = {}",
        packed.len(),
        packed_len(k, n)
    );
    pack_panels(threads, kernels, k, n, b, transposed, 0, packed);
}

/// Packs the panels from `first_panel` on that `packed` holds, on up to
/// `threads` threads.
#[allow(clippy::too_many_arguments)]
fn pack_panels(
    threads: usize,
    kernels: Kernels,
    k: usize,
    n: usize,
    b: &[f32],
    transposed: bool,
    first_panel: usize,
    packed: &mut [f32],
) {
    let panels = packed.len() / (k * PANEL);
    if threads <= 1 || panels < 2 {
        kernels.pack_b_panels(k, n, b, transposed, first_panel, packed);
        return;
    }
    let left_threads = threads / 2;
    let left_panels = panels * left_threads / threads;
    let (left, right) = packed.split_at_mut(left_panels * k * PANEL);
    rayon::join(
        || {
            pack_panels(
                left_threads,
                kernels,
                k,
                n,
                b,
                transposed,
                first_panel,
                left,
            )
        },
        || {
            let first = first_panel + left_panels;
            pack_panels(
                threads - left_threads,
                kernels,
                k,
                n,
                b,
                transposed,
                first,
                right,
            )
        },
    );
}

/// Minimum rows for a product or an LSTM step to split across threads, so
/// that two threads get at least 4 rows each. A smaller share does not pay
/// for waking a thread.
pub const MIN_SPLIT_ROWS: usize = 8;

/// Computes `c += a * B` with B packed by `Kernels::pack_b`, splitting the
/// rows of `a` and `c` across up to `threads` threads.
///
/// The model's LSTM steps split their rows the same way and also run the
/// cell per block (`recurrence`). The benchmarks use this function to time
/// the packed product alone.
///
/// Shapes: `a` is `(M, K)` and `c` is `(M, N)`, both row-major, with
/// M = `a.len() / k`. Rows are split rather than columns because a row block
/// of a row-major matrix is one contiguous slice; every thread reads the
/// whole packed B, which stays in the shared L3 cache for the model's sizes.
pub fn gemm_packed_add(
    threads: usize,
    kernels: Kernels,
    k: usize,
    n: usize,
    a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
) {
    let m = c.len() / n.max(1);
    if threads <= 1 || m < MIN_SPLIT_ROWS {
        kernels.gemm_packed(m, k, n, a, packed_b, c, true);
        return;
    }
    let left_threads = threads / 2;
    let split = m * left_threads / threads;
    let (a_top, a_bottom) = a.split_at(split * k);
    let (c_top, c_bottom) = c.split_at_mut(split * n);
    rayon::join(
        || gemm_packed_add(left_threads, kernels, k, n, a_top, packed_b, c_top),
        || {
            gemm_packed_add(
                threads - left_threads,
                kernels,
                k,
                n,
                a_bottom,
                packed_b,
                c_bottom,
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "pack_b: packed has 160 elements, expected packed_len(5, 48) = 240")]
    fn pack_b_on_threads_rejects_a_short_buffer() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let b = vec![0.0f32; 5 * 48];
        let mut packed = vec![0.0f32; packed_len(5, 48) - 5 * PANEL];
        pool.install(|| pack_b(2, Kernels::process(), 5, 48, &b, false, &mut packed));
    }

    #[test]
    fn pack_b_on_threads_matches_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let kernels = Kernels::process();
        for &(k, n) in &[(1, 1), (7, 33), (65, 260), (30, 1000)] {
            let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
            for transposed in [false, true] {
                let mut one = vec![f32::NAN; packed_len(k, n)];
                kernels.pack_b(k, n, &b, transposed, &mut one);
                for threads in [2, 3] {
                    let mut many = vec![f32::NAN; packed_len(k, n)];
                    pool.install(|| pack_b(threads, kernels, k, n, &b, transposed, &mut many));
                    assert_eq!(
                        one, many,
                        "K = {k}, N = {n}, transposed {transposed}, {threads} threads"
                    );
                }
            }
        }
    }

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_product_on_split_shapes() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for &(m, k, n) in &[
            (1, 1, 1),
            (20, 65, 260),
            (70, 33, 17),
            (300, 40, 90),
            (7, 130, 1001),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let expected = naive(m, k, n, &a, &b);
            for threads in [1, 2, 3] {
                let mut c = vec![1.0f32; m * n];
                pool.install(|| {
                    gemm(
                        threads,
                        view_mut(&mut c, m, n),
                        Accum::Add,
                        view(&a, m, k),
                        view(&b, k, n),
                    )
                });
                for (got, want) in c.iter().zip(&expected) {
                    // Products of k terms in [-1, 1]: f32 summation error is
                    // far below 1e-4 * k.
                    assert!(
                        (*got as f64 - (want + 1.0)).abs() < 1e-4 * k as f64,
                        "{m}x{k}x{n} threads {threads}"
                    );
                }
            }
        }
    }
}
