//! Embedding lookup (gather) and its gradient (scatter-add).
//!
//! Shapes: `table` is `(V, H)` row-major, `ids` is `(N)` with every id below
//! V, and the gathered rows are `(N, H)`.

use crate::dispatch::{Isa, Kernels};

fn check_shapes(name: &str, hidden: usize, table: usize, ids: &[u32], rows: usize) {
    assert!(hidden > 0, "{name}: H must be positive");
    assert_eq!(
        table % hidden,
        0,
        "{name}: table length {table} is not a multiple of H = {hidden}"
    );
    assert_eq!(
        rows,
        ids.len() * hidden,
        "{name}: rows must be (N, H) = {} x {hidden}",
        ids.len()
    );
    let vocab = table / hidden;
    for (n, &id) in ids.iter().enumerate() {
        assert!(
            (id as usize) < vocab,
            "{name}: id {id} at position {n} is not below V = {vocab}"
        );
    }
}

/// Scalar twin of the row accumulation.
pub(crate) mod scalar {
    pub fn add_in_place(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

impl Kernels {
    /// Copies row `ids[n]` of `table` into row n of `out`, for every n.
    ///
    /// # Panics
    /// When `hidden` is 0, the shapes do not match, or an id is not below V.
    pub fn embedding_gather(&self, hidden: usize, table: &[f32], ids: &[u32], out: &mut [f32]) {
        check_shapes("embedding_gather", hidden, table.len(), ids, out.len());
        for (row, &id) in out.chunks_exact_mut(hidden).zip(ids) {
            let start = id as usize * hidden;
            row.copy_from_slice(&table[start..start + hidden]);
        }
    }

    /// Adds row n of `grad_rows` to row `ids[n]` of `table_grad`, for every n
    /// in order (repeated ids accumulate).
    ///
    /// # Panics
    /// When `hidden` is 0, the shapes do not match, or an id is not below V.
    pub fn embedding_scatter_add(
        &self,
        hidden: usize,
        table_grad: &mut [f32],
        ids: &[u32],
        grad_rows: &[f32],
    ) {
        check_shapes(
            "embedding_scatter_add",
            hidden,
            table_grad.len(),
            ids,
            grad_rows.len(),
        );
        for (row, &id) in grad_rows.chunks_exact(hidden).zip(ids) {
            let start = id as usize * hidden;
            self.add_in_place(&mut table_grad[start..start + hidden], row);
        }
    }

    /// Adds `src` to `dst` element-wise.
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn add_in_place(&self, dst: &mut [f32], src: &[f32]) {
        assert_eq!(
            dst.len(),
            src.len(),
            "add_in_place: lengths differ ({} and {})",
            dst.len(),
            src.len()
        );
        match self.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::x86::avx512::add_in_place(dst, src),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::add_in_place(dst, src),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::aarch64::neon::add_in_place(dst, src),
            _ => scalar::add_in_place(dst, src),
        }
    }
}
