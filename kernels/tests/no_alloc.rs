//! Every kernel on every path this CPU can run performs no heap allocation:
//! a counting global allocator records none while they run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rnnlm_kernels::{Isa, Kernels, dropout_rng, packed_len};

/// Counts allocations per thread, so that the test harness's own threads
/// do not disturb the count of the thread under test.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    // A const-initialised Cell has no destructor, so the slot is always
    // accessible; `try_with` only guards against that changing.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so its guarantees are those of `System`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Buffers for one call of every kernel, allocated before counting starts.
struct Buffers {
    batch: usize,
    hidden: usize,
    vocab: usize,
    activations: Vec<f32>,
    gates: Vec<f32>,
    bias: Vec<f32>,
    state: [Vec<f32>; 5],
    dgates: Vec<f32>,
    logits: Vec<f32>,
    targets: Vec<u32>,
    log_probs: Vec<f32>,
    mask: Vec<f32>,
    table: Vec<f32>,
    table_grad: Vec<f32>,
    ids: Vec<u32>,
    rows: Vec<f32>,
    sums: Vec<f32>,
    /// A recurrent weight Wh, `(H, 4H)`, and its packed forms as B = Wh
    /// (K = H, N = 4H) and as B = Wh^T (K = 4H, N = H).
    recurrent: Vec<f32>,
    packed_forward: Vec<f32>,
    packed_backward: Vec<f32>,
}

impl Buffers {
    fn new(batch: usize, hidden: usize, vocab: usize) -> Buffers {
        let filled = |len: usize| (0..len).map(|k| (k % 13) as f32 * 0.1 - 0.6).collect();
        let state = || filled(batch * hidden);
        Buffers {
            batch,
            hidden,
            vocab,
            activations: filled(1000),
            gates: filled(batch * 4 * hidden),
            bias: filled(4 * hidden),
            state: [state(), state(), state(), state(), state()],
            dgates: filled(batch * 4 * hidden),
            logits: filled(batch * vocab),
            targets: (0..batch).map(|b| (b * 7 % vocab) as u32).collect(),
            log_probs: filled(batch),
            mask: filled(batch * hidden),
            table: filled(vocab * hidden),
            table_grad: filled(vocab * hidden),
            ids: (0..batch).map(|b| (b * 3 % vocab) as u32).collect(),
            rows: filled(batch * hidden),
            sums: filled(hidden),
            recurrent: filled(hidden * 4 * hidden),
            packed_forward: filled(packed_len(hidden, 4 * hidden)),
            packed_backward: filled(packed_len(4 * hidden, hidden)),
        }
    }

    fn run_every_kernel(&mut self, kernels: &Kernels) {
        let (batch, hidden, vocab) = (self.batch, self.hidden, self.vocab);
        kernels.exp_in_place(&mut self.activations);
        kernels.tanh_in_place(&mut self.activations);
        kernels.sigmoid_in_place(&mut self.activations);

        let [c_prev, c, h, tanh_c, dc] = &mut self.state;
        kernels.lstm_forward(
            batch,
            hidden,
            &mut self.gates,
            &self.bias,
            c_prev,
            c,
            h,
            tanh_c,
        );
        kernels.lstm_backward(
            batch,
            hidden,
            &self.gates,
            c_prev,
            tanh_c,
            h,
            dc,
            &mut self.dgates,
        );

        kernels.log_softmax_at(
            batch,
            vocab,
            &self.logits,
            &self.targets,
            &mut self.log_probs,
        );
        kernels.softmax_cross_entropy(batch, vocab, &mut self.logits, &self.targets, 0.5);

        let mut rng = dropout_rng(1);
        kernels.dropout_mask(&mut rng, 0.5, &mut self.mask);
        kernels.dropout_apply(&mut self.rows, &self.mask);
        kernels.mul_in_place(&mut self.rows, &self.mask);

        kernels.embedding_gather(hidden, &self.table, &self.ids, &mut self.rows);
        kernels.embedding_scatter_add(hidden, &mut self.table_grad, &self.ids, &self.rows);
        kernels.add_in_place(&mut self.sums, &self.bias[..hidden]);

        kernels.sum_squares(&self.table_grad);
        kernels.scale_in_place(&mut self.table_grad, 0.5);
        kernels.sgd_update(&mut self.table, &self.table_grad, 20.0);
        kernels.add_row_bias(&mut self.rows, &self.sums);
        kernels.add_column_sums(&self.rows, &mut self.sums);

        // The recurrent products of one LSTM step: gates += h Wh, then
        // dh += dgates Wh^T.
        let recurrent = &self.recurrent;
        kernels.pack_b(
            hidden,
            4 * hidden,
            recurrent,
            false,
            &mut self.packed_forward,
        );
        kernels.pack_b(
            4 * hidden,
            hidden,
            recurrent,
            true,
            &mut self.packed_backward,
        );
        kernels.gemm_packed(
            batch,
            hidden,
            4 * hidden,
            &self.rows,
            &self.packed_forward,
            &mut self.gates,
            true,
        );
        kernels.gemm_packed(
            batch,
            4 * hidden,
            hidden,
            &self.dgates,
            &self.packed_backward,
            &mut self.rows,
            false,
        );
    }
}

#[test]
fn allocator_counts_allocations_on_this_thread() {
    let before = allocations();
    let boxed = std::hint::black_box(Box::new(17u64));
    assert_eq!(*boxed, 17);
    assert_eq!(allocations(), before + 1);
}

#[test]
fn kernels_do_not_allocate_on_any_path() {
    let paths: Vec<Kernels> = Isa::ALL
        .iter()
        .filter(|isa| isa.is_available())
        .map(|&isa| Kernels::new(isa).expect("an available path must construct"))
        .collect();
    // Odd sizes with tails on every path, and a vocabulary of several
    // softmax blocks.
    let mut buffers = [Buffers::new(3, 33, 5000), Buffers::new(2, 650, 10000)];

    for kernels in &paths {
        for buffers in &mut buffers {
            let before = allocations();
            buffers.run_every_kernel(kernels);
            let after = allocations();
            // The message is formatted only when the assertion fails.
            assert_eq!(after - before, 0, "allocations on {}", kernels.isa());
        }
    }
}
