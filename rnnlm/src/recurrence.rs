//! One time step of an LSTM layer, with its rows split across threads.
//!
//! The rows of a step are the B streams of the batch, and no stream's step
//! reads another's. So each thread takes a contiguous block of rows and runs
//! both halves of the step on it: the recurrent product for those rows, then
//! the fused cell for the same rows. A step costs one fork-join, and the
//! cell reads gate values from the cache of the core that just wrote them.
//!
//! Evaluation runs B = 10, so two threads get 5 rows each, half the
//! AVX-512 kernel's 10-row tile, and each reads all of the packed Wh. A
//! column split was tried for such steps (each thread all rows times half
//! of Wh, then a row split to add the halves and run the cell). It needs a
//! second fork-join and a scratch buffer, and it evaluated at 6,660-6,740
//! tokens/s against 6,770-6,860 for this row split (`engine --mode eval
//! --threads 2`, alternating runs on 2 Zen 4 cores), so it was removed.

use std::time::{Duration, Instant};

use crate::matmul::MIN_SPLIT_ROWS;
use crate::profile::Phase;
use crate::step::Compute;

/// Runs `leaf` on the rows of `step`, split into blocks over up to
/// `threads` threads, and returns what the calling thread's block returned.
///
/// Each split gives the first part `threads / 2` of the threads and the same
/// share of the rows. Splitting stops below `MIN_SPLIT_ROWS` rows, so with
/// more threads than rows / 4 some threads stay idle.
fn split_rows<S: RowBlock>(
    threads: usize,
    hidden: usize,
    step: S,
    leaf: &(impl Fn(S) -> Duration + Sync),
) -> Duration {
    let rows = step.rows(hidden);
    if threads <= 1 || rows < MIN_SPLIT_ROWS {
        return leaf(step);
    }
    let left_threads = threads / 2;
    let (top, bottom) = step.split(rows * left_threads / threads, hidden);
    let (calling, _) = rayon::join(
        || split_rows(left_threads, hidden, top, leaf),
        || split_rows(threads - left_threads, hidden, bottom, leaf),
    );
    calling
}

/// The slices of a step that can be cut into blocks of rows.
trait RowBlock: Send + Sized {
    fn rows(&self, hidden: usize) -> usize;
    /// Splits after the first `rows` rows.
    fn split(self, rows: usize, hidden: usize) -> (Self, Self);
}

/// Returns how long `work` took when profiling, and zero otherwise.
fn cell_time(cx: Compute, work: impl FnOnce()) -> Duration {
    let start = cx.profiler.map(|_| Instant::now());
    work();
    start.map_or(Duration::ZERO, |start| start.elapsed())
}

/// The slices of one forward step, for a block of `rows` rows.
pub struct ForwardStep<'a> {
    /// `(rows, H)`: h_{t-1}.
    pub h_prev: &'a [f32],
    /// `(rows, 4H)`: on entry the input contribution X Wx of this step, on
    /// return the activated gates.
    pub gates: &'a mut [f32],
    /// `(rows, H)`: c_{t-1}.
    pub c_prev: &'a [f32],
    /// `(rows, H)`: written with c_t.
    pub c: &'a mut [f32],
    /// `(rows, H)`: written with h_t.
    pub h: &'a mut [f32],
    /// `(rows, H)`: written with tanh(c_t).
    pub tanh_c: &'a mut [f32],
}

impl RowBlock for ForwardStep<'_> {
    fn rows(&self, hidden: usize) -> usize {
        self.h_prev.len() / hidden.max(1)
    }

    fn split(self, rows: usize, hidden: usize) -> (Self, Self) {
        let state = rows * hidden;
        let (h_prev_top, h_prev_bottom) = self.h_prev.split_at(state);
        let (gates_top, gates_bottom) = self.gates.split_at_mut(4 * state);
        let (c_prev_top, c_prev_bottom) = self.c_prev.split_at(state);
        let (c_top, c_bottom) = self.c.split_at_mut(state);
        let (h_top, h_bottom) = self.h.split_at_mut(state);
        let (tanh_c_top, tanh_c_bottom) = self.tanh_c.split_at_mut(state);
        (
            ForwardStep {
                h_prev: h_prev_top,
                gates: gates_top,
                c_prev: c_prev_top,
                c: c_top,
                h: h_top,
                tanh_c: tanh_c_top,
            },
            ForwardStep {
                h_prev: h_prev_bottom,
                gates: gates_bottom,
                c_prev: c_prev_bottom,
                c: c_bottom,
                h: h_bottom,
                tanh_c: tanh_c_bottom,
            },
        )
    }
}

/// Runs one forward step: `gates += h_prev Wh`, then the fused cell with
/// `bias`. `packed_wh` is Wh `(H, 4H)` packed by `Kernels::pack_b`.
///
/// When profiling, the cell's time on the calling thread counts as
/// [`Phase::LstmCell`] and the rest of the step's wall time as
/// [`Phase::RecurrentProducts`].
pub fn forward_step(
    cx: Compute,
    hidden: usize,
    packed_wh: &[f32],
    bias: &[f32],
    step: ForwardStep<'_>,
) {
    let start = cx.profiler.map(|_| Instant::now());
    let cell = split_rows(cx.threads, hidden, step, &|step: ForwardStep| {
        let (k, rows) = (cx.kernels, step.rows(hidden));
        k.gemm_packed(
            rows,
            hidden,
            4 * hidden,
            step.h_prev,
            packed_wh,
            step.gates,
            true,
        );
        cell_time(cx, || {
            k.lstm_forward(
                rows,
                hidden,
                step.gates,
                bias,
                step.c_prev,
                step.c,
                step.h,
                step.tanh_c,
            )
        })
    });
    record(cx, start, cell);
}

/// The slices of one backward step, for a block of `rows` rows.
pub struct BackwardStep<'a> {
    /// `(rows, 4H)`: dgates of step t + 1, or `None` at a window's last step.
    pub d_gates_next: Option<&'a [f32]>,
    /// `(rows, H)`: dL/dh_t from the layer above; `d_gates_next Wh^T` is
    /// added to it.
    pub d_h: &'a mut [f32],
    /// `(rows, 4H)`: the activated gates from the forward pass.
    pub gates: &'a [f32],
    /// `(rows, H)`: c_{t-1} from the forward pass.
    pub c_prev: &'a [f32],
    /// `(rows, H)`: tanh(c_t) from the forward pass.
    pub tanh_c: &'a [f32],
    /// `(rows, H)`: dL/dc_t on entry, dL/dc_{t-1} on return.
    pub d_c: &'a mut [f32],
    /// `(rows, 4H)`: written with this step's gate gradients.
    pub d_gates: &'a mut [f32],
}

impl RowBlock for BackwardStep<'_> {
    fn rows(&self, hidden: usize) -> usize {
        self.d_h.len() / hidden.max(1)
    }

    fn split(self, rows: usize, hidden: usize) -> (Self, Self) {
        let state = rows * hidden;
        let (next_top, next_bottom) = match self.d_gates_next {
            Some(next) => {
                let (top, bottom) = next.split_at(4 * state);
                (Some(top), Some(bottom))
            }
            None => (None, None),
        };
        let (d_h_top, d_h_bottom) = self.d_h.split_at_mut(state);
        let (gates_top, gates_bottom) = self.gates.split_at(4 * state);
        let (c_prev_top, c_prev_bottom) = self.c_prev.split_at(state);
        let (tanh_c_top, tanh_c_bottom) = self.tanh_c.split_at(state);
        let (d_c_top, d_c_bottom) = self.d_c.split_at_mut(state);
        let (d_gates_top, d_gates_bottom) = self.d_gates.split_at_mut(4 * state);
        (
            BackwardStep {
                d_gates_next: next_top,
                d_h: d_h_top,
                gates: gates_top,
                c_prev: c_prev_top,
                tanh_c: tanh_c_top,
                d_c: d_c_top,
                d_gates: d_gates_top,
            },
            BackwardStep {
                d_gates_next: next_bottom,
                d_h: d_h_bottom,
                gates: gates_bottom,
                c_prev: c_prev_bottom,
                tanh_c: tanh_c_bottom,
                d_c: d_c_bottom,
                d_gates: d_gates_bottom,
            },
        )
    }
}

/// Runs one backward step: `d_h += d_gates_next Wh^T`, then the fused cell
/// backward. `packed_wh_t` is Wh^T `(4H, H)` packed by `Kernels::pack_b`.
/// Profiled like [`forward_step`].
pub fn backward_step(cx: Compute, hidden: usize, packed_wh_t: &[f32], step: BackwardStep<'_>) {
    let start = cx.profiler.map(|_| Instant::now());
    let cell = split_rows(cx.threads, hidden, step, &|step: BackwardStep| {
        let (k, rows) = (cx.kernels, step.rows(hidden));
        if let Some(d_gates_next) = step.d_gates_next {
            k.gemm_packed(
                rows,
                4 * hidden,
                hidden,
                d_gates_next,
                packed_wh_t,
                step.d_h,
                true,
            );
        }
        cell_time(cx, || {
            k.lstm_backward(
                rows,
                hidden,
                step.gates,
                step.c_prev,
                step.tanh_c,
                step.d_h,
                step.d_c,
                step.d_gates,
            )
        })
    });
    record(cx, start, cell);
}

/// Splits the wall time since `start` (taken only when profiling) between
/// the cell and the recurrent product.
fn record(cx: Compute, start: Option<Instant>, cell: Duration) {
    if let (Some(profiler), Some(start)) = (cx.profiler, start) {
        profiler.add(Phase::LstmCell, cell);
        profiler.add(
            Phase::RecurrentProducts,
            start.elapsed().saturating_sub(cell),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlm_kernels::{Kernels, packed_len};

    const HIDDEN: usize = 24;
    const ROWS: usize = 19;

    /// Deterministic values in [-1, 1) that differ per `salt`.
    fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i + 1) * (salt + 7) * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    struct Forward {
        gates: Vec<f32>,
        c: Vec<f32>,
        h: Vec<f32>,
        tanh_c: Vec<f32>,
    }

    fn run_forward(threads: usize, pool: &rayon::ThreadPool) -> Forward {
        let k = Kernels::process();
        let (state, gates_len) = (ROWS * HIDDEN, ROWS * 4 * HIDDEN);
        let mut packed = vec![0.0; packed_len(HIDDEN, 4 * HIDDEN)];
        k.pack_b(
            HIDDEN,
            4 * HIDDEN,
            &values(HIDDEN * 4 * HIDDEN, 1),
            false,
            &mut packed,
        );
        let bias = values(4 * HIDDEN, 2);
        let h_prev = values(state, 3);
        let c_prev = values(state, 4);
        let mut out = Forward {
            gates: values(gates_len, 5),
            c: vec![f32::NAN; state],
            h: vec![f32::NAN; state],
            tanh_c: vec![f32::NAN; state],
        };
        let step = ForwardStep {
            h_prev: &h_prev,
            gates: &mut out.gates,
            c_prev: &c_prev,
            c: &mut out.c,
            h: &mut out.h,
            tanh_c: &mut out.tanh_c,
        };
        pool.install(|| forward_step(Compute::new(k, threads), HIDDEN, &packed, &bias, step));
        out
    }

    fn run_backward(threads: usize, last_step: bool, pool: &rayon::ThreadPool) -> [Vec<f32>; 3] {
        let k = Kernels::process();
        let (state, gates_len) = (ROWS * HIDDEN, ROWS * 4 * HIDDEN);
        let mut packed_t = vec![0.0; packed_len(4 * HIDDEN, HIDDEN)];
        k.pack_b(
            4 * HIDDEN,
            HIDDEN,
            &values(HIDDEN * 4 * HIDDEN, 1),
            true,
            &mut packed_t,
        );
        let d_gates_next = values(gates_len, 6);
        let gates: Vec<f32> = values(gates_len, 7).iter().map(|x| 0.5 + 0.5 * x).collect();
        let c_prev = values(state, 8);
        let tanh_c = values(state, 9);
        let mut d_h = values(state, 10);
        let mut d_c = values(state, 11);
        let mut d_gates = vec![f32::NAN; gates_len];
        let step = BackwardStep {
            d_gates_next: (!last_step).then_some(&d_gates_next[..]),
            d_h: &mut d_h,
            gates: &gates,
            c_prev: &c_prev,
            tanh_c: &tanh_c,
            d_c: &mut d_c,
            d_gates: &mut d_gates,
        };
        pool.install(|| backward_step(Compute::new(k, threads), HIDDEN, &packed_t, step));
        [d_h, d_c, d_gates]
    }

    /// Splitting rows across threads changes no bit: every row's product
    /// and cell are computed the same way whichever block holds the row.
    #[test]
    fn forward_step_same_bits_any_threads() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let one = run_forward(1, &pool);
        assert!(one.h.iter().all(|x| x.is_finite()));
        for threads in [2, 3] {
            let many = run_forward(threads, &pool);
            for (name, a, b) in [
                ("gates", &one.gates, &many.gates),
                ("c", &one.c, &many.c),
                ("h", &one.h, &many.h),
                ("tanh_c", &one.tanh_c, &many.tanh_c),
            ] {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{name} differs between 1 and {threads} threads");
            }
        }
    }

    #[test]
    fn backward_step_same_bits_any_threads() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for last_step in [false, true] {
            let one = run_backward(1, last_step, &pool);
            assert!(one[2].iter().all(|x| x.is_finite()));
            for threads in [2, 3] {
                let many = run_backward(threads, last_step, &pool);
                let names = ["d_h", "d_c", "d_gates"];
                for ((name, a), b) in names.iter().zip(&one).zip(&many) {
                    let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(
                        same,
                        "{name} differs between 1 and {threads} threads, last step {last_step}"
                    );
                }
            }
        }
    }

    /// The last step of a window adds no recurrent term: d_h reaches the
    /// cell unchanged, so the two cases must differ.
    #[test]
    fn backward_step_last_step_skips_product() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let inner = run_backward(1, false, &pool);
        let last = run_backward(1, true, &pool);
        assert_eq!(last[0], values(ROWS * HIDDEN, 10));
        assert_ne!(inner[0], last[0]);
    }
}
