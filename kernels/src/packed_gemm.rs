//! Matrix product with a packed right-hand side, for the recurrent products
//! of an LSTM step.
//!
//! Every time step computes `gates (B, 4H) += h_{t-1} (B, H) @ Wh (H, 4H)`
//! forward and `dh (B, H) += dgates (B, 4H) @ Wh^T (4H, H)` backward, with
//! B of 10 to 20 rows. Wh is the same for all steps of a window, so
//! [`Kernels::pack_b`] copies it once per window into column panels, and
//! [`Kernels::gemm_packed`] runs a register-blocked product over them at
//! every step.
//!
//! Packed layout, the same on every path: the K x N matrix B is cut into
//! `ceil(N / PANEL)` panels of [`PANEL`] columns. Panel `p` occupies
//! `packed[p * K * PANEL..(p + 1) * K * PANEL]` and stores its columns
//! k-major: element `(kk, j)` of the panel, which is `B[kk][p * PANEL + j]`,
//! sits at `p * K * PANEL + kk * PANEL + j`. Columns past N in the last panel
//! are zeros, so a kernel can load whole panels and mask only its stores.

use crate::dispatch::{Isa, Kernels};

/// Number of columns in one packed panel.
pub const PANEL: usize = 16;

/// Returns the length of the packed form of a K x N matrix: `k * n` with N
/// rounded up to whole panels of [`PANEL`] columns.
pub fn packed_len(k: usize, n: usize) -> usize {
    k * n.div_ceil(PANEL) * PANEL
}

/// Splits `0..m` into `ceil(m / max_rows)` contiguous row blocks whose
/// lengths differ by at most one, as `(start, len)`.
///
/// Balanced blocks keep every block near the tile height the kernel was
/// built for: 20 rows with a maximum of 12 become 10 + 10, not 12 + 8.
fn row_blocks(m: usize, max_rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = m.div_ceil(max_rows);
    (0..count).map(move |block| {
        let start = block * m / count;
        let end = (block + 1) * m / count;
        (start, end - start)
    })
}

/// The operands of one register tile of C: `rows` rows by `panels` panels.
pub(crate) struct Tile<'a> {
    pub rows: usize,
    pub panels: usize,
    pub k: usize,
    /// The tile's rows of A, `(rows, K)` row-major.
    pub a: &'a [f32],
    /// The tile's panels of packed B, `panels * K * PANEL` floats.
    pub b: &'a [f32],
    /// C from the tile's first element to its last, with row stride `ldc`.
    /// The tile's width is what the last row leaves: from
    /// `(panels - 1) * PANEL + 1` to `panels * PANEL` columns.
    pub c: &'a mut [f32],
    pub ldc: usize,
    /// Whether to add to C (true) or overwrite it.
    pub accumulate: bool,
    /// Start of the next strip's panels, for prefetching only: it may point
    /// past the end of packed B, so it must never be dereferenced. The NEON
    /// path does not prefetch.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub b_next: *const f32,
}

/// Bytes of A that one row block may take: a quarter of a 1 MiB L2, so the
/// block stays there next to a strip of packed B while every strip of B
/// passes over it.
///
/// NOTE: sized for the 1 MiB L2 of the Zen 4 cores it was measured on. On a
/// core with a 256-512 KiB L2 the block alone fills most of it.
const A_BLOCK_BYTES: usize = 256 * 1024;

/// Runs the loop nest of `gemm_packed` and hands each register tile to
/// `tile`. The checks of `Kernels::gemm_packed` must have passed.
///
/// Loops, outermost first: blocks of rows of A small enough to stay in L2
/// (all of A for the B = 10 to 20 rows of an LSTM step; 100 rows at
/// K = 650, 25 at K = 2600), then strips of `strip_panels` panels (the last strip may have
/// fewer), then row tiles of up to `max_rows` rows, then the tile's own loop
/// over all of K. A strip, `strip_panels * K * 64` bytes, also fits in L2 at
/// the model's sizes (83 KiB for two panels at K = 650). So after the first
/// strip of a block the tiles read A from L2, after the first row tile of a
/// strip they read B from L2, and packed B comes from L3 or memory once per
/// row block.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn for_each_tile(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    packed_b: &[f32],
    c: &mut [f32],
    accumulate: bool,
    max_rows: usize,
    strip_panels: usize,
    mut tile: impl FnMut(Tile),
) {
    let panels = n.div_ceil(PANEL);
    let panel_len = k * PANEL;
    let block_rows = (A_BLOCK_BYTES / (k * 4)).max(max_rows);
    for (block0, block_len) in row_blocks(m, block_rows) {
        for p in (0..panels).step_by(strip_panels) {
            let width = strip_panels.min(panels - p);
            let col0 = p * PANEL;
            let cols = (width * PANEL).min(n - col0);
            let b = &packed_b[p * panel_len..(p + width) * panel_len];
            let b_next = b.as_ptr().wrapping_add(b.len());
            for (tile0, rows) in row_blocks(block_len, max_rows) {
                let row0 = block0 + tile0;
                tile(Tile {
                    rows,
                    panels: width,
                    k,
                    a: &a[row0 * k..(row0 + rows) * k],
                    b,
                    c: &mut c[row0 * n + col0..(row0 + rows - 1) * n + col0 + cols],
                    ldc: n,
                    accumulate,
                    b_next,
                });
            }
        }
    }
}

/// Scalar twins.
pub(crate) mod scalar {
    use super::PANEL;

    /// `C = A B` or `C += A B` one row and one panel at a time, with the
    /// same operation order as the SIMD paths: each element starts from 0
    /// or its value in C and adds `A[i][kk] * B[kk][j]` for kk = 0, 1, ...
    /// The scalar path rounds the product and the sum separately, where the
    /// SIMD paths use fused multiply-adds.
    pub fn gemm_packed(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        packed_b: &[f32],
        c: &mut [f32],
        accumulate: bool,
    ) {
        for i in 0..m {
            let a_row = &a[i * k..(i + 1) * k];
            let c_row = &mut c[i * n..(i + 1) * n];
            for (c_part, panel) in c_row
                .chunks_mut(PANEL)
                .zip(packed_b.chunks_exact(k * PANEL))
            {
                let mut acc = [0f32; PANEL];
                if accumulate {
                    acc[..c_part.len()].copy_from_slice(c_part);
                }
                for (&a_ik, b_row) in a_row.iter().zip(panel.chunks_exact(PANEL)) {
                    for (acc, &b) in acc.iter_mut().zip(b_row) {
                        *acc += a_ik * b;
                    }
                }
                c_part.copy_from_slice(&acc[..c_part.len()]);
            }
        }
    }
}

impl Kernels {
    /// Packs the K x N right-hand matrix B of [`Kernels::gemm_packed`] into
    /// column panels (layout in the module documentation).
    ///
    /// - `b`: when `transposed` is false, B itself, `(K, N)` row-major; when
    ///   `transposed` is true, B^T, `(N, K)` row-major, and B is its
    ///   transpose. So the recurrent weight Wh `(H, 4H)` packs as B = Wh
    ///   with `transposed = false` and as B = Wh^T with `transposed = true`.
    /// - `packed`: `packed_len(k, n)` elements, all overwritten.
    ///
    /// Every path runs the same scalar copy, which is bound by memory
    /// traffic. It runs once per window per matrix: on one Zen 4 core a
    /// 650 x 2600 matrix took 0.3 to 1.3 ms either way, about one or two
    /// calls of `gemm_packed` with 20 rows, against 35 such calls per window.
    ///
    /// # Panics
    /// When `b.len() != k * n` or `packed.len() != packed_len(k, n)`.
    pub fn pack_b(&self, k: usize, n: usize, b: &[f32], transposed: bool, packed: &mut [f32]) {
        assert_eq!(
            packed.len(),
            packed_len(k, n),
            "pack_b: packed has {} elements, expected packed_len({k}, {n}) = {}",
            packed.len(),
            packed_len(k, n)
        );
        self.pack_b_panels(k, n, b, transposed, 0, packed);
    }

    /// Packs some of the panels of [`Kernels::pack_b`]: those from
    /// `first_panel` on, as many as `packed` holds, into `packed`. So the
    /// panels of one matrix can be packed by several threads, each into its
    /// own contiguous part of the packed buffer.
    ///
    /// - `b`: all of B or B^T, as for `pack_b`.
    /// - `packed`: a whole number of panels, `k * PANEL` floats each, all
    ///   overwritten with panels `first_panel..` of the packed form.
    ///
    /// # Panics
    /// When `b.len() != k * n`, `packed` is not a whole number of panels, or
    /// the panels run past the last panel of B.
    pub fn pack_b_panels(
        &self,
        k: usize,
        n: usize,
        b: &[f32],
        transposed: bool,
        first_panel: usize,
        packed: &mut [f32],
    ) {
        assert_eq!(
            b.len(),
            k * n,
            "pack_b: b has {} elements, expected K x N = {k} x {n} = {}",
            b.len(),
            k * n
        );
        if k == 0 {
            return;
        }
        let panel_len = k * PANEL;
        assert!(
            packed.len().is_multiple_of(panel_len),
            "pack_b_panels: packed has {} elements, not a whole number of panels of K x {PANEL} = {panel_len}",
            packed.len()
        );
        let panels = packed.len() / panel_len;
        assert!(
            first_panel + panels <= n.div_ceil(PANEL),
            "pack_b_panels: panels {first_panel}..{} run past the {} panels of N = {n}",
            first_panel + panels,
            n.div_ceil(PANEL)
        );

        for (at, panel) in packed.chunks_exact_mut(panel_len).enumerate() {
            let p = first_panel + at;
            let col0 = p * PANEL;
            let cols = PANEL.min(n - col0);
            let rows = panel.chunks_exact_mut(PANEL);
            if transposed {
                // Column j of B is row j of `b`. Each step reads one element
                // from each of the panel's rows of `b`, so those cache lines
                // are reused for 16 steps, and writes one whole panel row.
                let b_cols = &b[col0 * k..(col0 + cols) * k];
                for (kk, b_row) in rows.enumerate() {
                    for (value, b_col) in b_row.iter_mut().zip(b_cols.chunks_exact(k)) {
                        *value = b_col[kk];
                    }
                    b_row[cols..].fill(0.0);
                }
            } else if cols == PANEL {
                for (b_row, src) in rows.zip(b.chunks_exact(n)) {
                    b_row.copy_from_slice(&src[col0..col0 + PANEL]);
                }
            } else {
                for (b_row, src) in rows.zip(b.chunks_exact(n)) {
                    b_row[..cols].copy_from_slice(&src[col0..]);
                    b_row[cols..].fill(0.0);
                }
            }
        }
    }

    /// Matrix product with a packed right-hand side: `C = A B`, or
    /// `C += A B` when `accumulate` is true.
    ///
    /// - `a`: `(M, K)` row-major.
    /// - `packed_b`: B `(K, N)` as [`Kernels::pack_b`] packed it.
    /// - `c`: `(M, N)` row-major. With `accumulate` false it is only
    ///   written, so its previous contents do not matter (NaN included).
    ///
    /// Single-threaded and without allocation. To use several threads, give
    /// each one a contiguous block of rows of A and C and the same
    /// `packed_b`. A row's result does not depend on the block it is in.
    ///
    /// The SIMD paths keep a tile of C, up to 10 rows by 32 columns, in
    /// registers for the whole K loop. So each element of C is read and
    /// written once per call, and each element of `packed_b` is loaded once
    /// per tile of rows. `packed_b` needs no alignment beyond f32's.
    ///
    /// Every path sums over K in the same order, starting from 0 or from C.
    /// The SIMD paths fuse each multiply-add and return identical bits, which
    /// differ from the scalar path's by rounding. Every path stays within
    /// the usual bound for a dot product, `(K + 1) * 2^-24 * (|C| + |A| |B|)`
    /// per element, with `|C|` counted only when accumulating.
    ///
    /// # Panics
    /// When `a.len() != m * k`, `c.len() != m * n` or
    /// `packed_b.len() != packed_len(k, n)`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_packed(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        packed_b: &[f32],
        c: &mut [f32],
        accumulate: bool,
    ) {
        assert_eq!(
            a.len(),
            m * k,
            "gemm_packed: a has {} elements, expected (M, K) = {m} x {k} = {}",
            a.len(),
            m * k
        );
        assert_eq!(
            c.len(),
            m * n,
            "gemm_packed: c has {} elements, expected (M, N) = {m} x {n} = {}",
            c.len(),
            m * n
        );
        assert_eq!(
            packed_b.len(),
            packed_len(k, n),
            "gemm_packed: packed_b has {} elements, expected packed_len({k}, {n}) = {}; \
             pack B with pack_b for the same K and N",
            packed_b.len(),
            packed_len(k, n)
        );
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // A sum of no products is zero.
            if !accumulate {
                c.fill(0.0);
            }
            return;
        }

        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::gemm_packed(m, k, n, a, packed_b, c, accumulate),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::gemm_packed(m, k, n, a, packed_b, c, accumulate),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::gemm_packed(m, k, n, a, packed_b, c, accumulate),
            _ => scalar::gemm_packed(m, k, n, a, packed_b, c, accumulate),
        }
    }
}
