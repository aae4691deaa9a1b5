//! Criterion benches of `rnnlm::matmul::gemm` at the model's product shapes
//! (B = 20, T = 35, H = 650, V = 10 000, so N = B * T = 700 rows per window),
//! with the operand layouts the training step uses, on one thread and on
//! every logical CPU. The recurrent products are also timed through
//! `gemm_packed_add`: the packed kernel, with rows split across threads as
//! the training step's recurrence splits them.
//!
//! Run with `cargo bench -p bench-suite --bench matmul`. Throughput is in
//! elements where one element is one FLOP (a multiply-add counts as 2), so
//! criterion's `Gelem/s` reads as GFLOP/s.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use faer::{Accum, MatRef};
use rnnlm::matmul::{gemm, gemm_packed_add, view, view_mut};
use rnnlm_kernels::{Kernels, packed_len};

const BATCH: usize = 20;
const ROWS: usize = 20 * 35;
const HIDDEN: usize = 650;
const GATES: usize = 4 * HIDDEN;
const VOCAB: usize = 10_000;

/// Storage of an operand: the matrix itself, or its transpose (row-major
/// in both cases), the way the backward pass reads saved tensors.
#[derive(Clone, Copy)]
enum Stored {
    AsIs,
    Transposed,
}

/// One product of the training step: `dst (m, n) = lhs (m, k) x rhs (k, n)`.
struct Product {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    lhs: Stored,
    rhs: Stored,
    accum: Accum,
}

const PRODUCTS: [Product; 8] = [
    // Forward.
    Product {
        name: "input_X_Wx_700x650x2600",
        m: ROWS,
        k: HIDDEN,
        n: GATES,
        lhs: Stored::AsIs,
        rhs: Stored::AsIs,
        accum: Accum::Replace,
    },
    Product {
        name: "recurrent_h_Wh_20x650x2600",
        m: BATCH,
        k: HIDDEN,
        n: GATES,
        lhs: Stored::AsIs,
        rhs: Stored::AsIs,
        accum: Accum::Add,
    },
    Product {
        name: "projection_top_Et_700x650x10000",
        m: ROWS,
        k: HIDDEN,
        n: VOCAB,
        lhs: Stored::AsIs,
        rhs: Stored::Transposed,
        accum: Accum::Replace,
    },
    // Backward.
    Product {
        name: "projection_grad_dlogitsT_top_10000x700x650",
        m: VOCAB,
        k: ROWS,
        n: HIDDEN,
        lhs: Stored::Transposed,
        rhs: Stored::AsIs,
        accum: Accum::Replace,
    },
    Product {
        name: "top_grad_dlogits_E_700x10000x650",
        m: ROWS,
        k: VOCAB,
        n: HIDDEN,
        lhs: Stored::AsIs,
        rhs: Stored::AsIs,
        accum: Accum::Replace,
    },
    Product {
        name: "recurrent_dgates_WhT_20x2600x650",
        m: BATCH,
        k: GATES,
        n: HIDDEN,
        lhs: Stored::AsIs,
        rhs: Stored::Transposed,
        accum: Accum::Add,
    },
    Product {
        name: "weight_grad_XT_dgates_650x700x2600",
        m: HIDDEN,
        k: ROWS,
        n: GATES,
        lhs: Stored::Transposed,
        rhs: Stored::AsIs,
        accum: Accum::Replace,
    },
    Product {
        name: "input_grad_dgates_WxT_700x2600x650",
        m: ROWS,
        k: GATES,
        n: HIDDEN,
        lhs: Stored::AsIs,
        rhs: Stored::Transposed,
        accum: Accum::Replace,
    },
];

/// Views `data` as a `(rows, cols)` matrix stored the way `stored` gives.
fn operand(data: &[f32], rows: usize, cols: usize, stored: Stored) -> MatRef<'_, f32> {
    match stored {
        Stored::AsIs => view(data, rows, cols),
        Stored::Transposed => view(data, cols, rows).transpose(),
    }
}

fn values(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

/// Returns the thread counts to bench, 1 and every logical CPU, after
/// sizing rayon's global pool to every CPU. The engine sizes the global
/// pool to its thread count and calls the products from outside it, and
/// the benches do the same.
fn thread_counts() -> Vec<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(cpus)
        .build_global();
    let mut counts = vec![1, cpus];
    counts.dedup();
    counts
}

/// Creates a group with short timing, so the file runs in a few minutes on
/// two cores. `flops` is the work of one product.
fn group<'a>(c: &'a mut Criterion, name: &str, flops: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(flops));
    group
}

fn products(c: &mut Criterion) {
    for product in &PRODUCTS {
        let lhs = values(product.m * product.k, 1);
        let rhs = values(product.k * product.n, 2);
        let mut dst = vec![0.0f32; product.m * product.n];
        let flops = 2 * (product.m * product.k * product.n) as u64;

        let mut group = group(c, &format!("gemm_{}", product.name), flops);
        for threads in thread_counts() {
            group.bench_function(format!("threads_{threads}"), |b| {
                b.iter(|| {
                    gemm(
                        threads,
                        view_mut(&mut dst, product.m, product.n),
                        product.accum,
                        operand(&lhs, product.m, product.k, product.lhs),
                        operand(&rhs, product.k, product.n, product.rhs),
                    )
                })
            });
        }
        group.finish();
    }
}

/// Times `gemm_packed_add` with B packed once, at the shapes where the model
/// runs it or could: the recurrent products of training (B = 20) and
/// evaluation (B = 10), forward (M x 650)(650 x 2600) and backward
/// (M x 2600)(2600 x 650) through Wh^T, and the forward products of a whole
/// window, input (700 x 650)(650 x 2600) and projection
/// (700 x 650)(650 x 10 000) through E^T.
fn packed_products(c: &mut Criterion) {
    let kernels = Kernels::process();

    for (name, m, k, n, transposed) in [
        ("recurrent_h_Wh_20x650x2600", BATCH, HIDDEN, GATES, false),
        (
            "recurrent_dgates_WhT_20x2600x650",
            BATCH,
            GATES,
            HIDDEN,
            true,
        ),
        (
            "eval_recurrent_h_Wh_10x650x2600",
            BATCH / 2,
            HIDDEN,
            GATES,
            false,
        ),
        ("input_X_Wx_700x650x2600", ROWS, HIDDEN, GATES, false),
        ("projection_top_ET_700x650x10000", ROWS, HIDDEN, VOCAB, true),
    ] {
        let b_values = values(k * n, 3);
        let mut packed = vec![0.0f32; packed_len(k, n)];
        kernels.pack_b(k, n, &b_values, transposed, &mut packed);
        let a = values(m * k, 4);
        let mut c_out = vec![0.0f32; m * n];

        let name = format!("gemm_packed_add_{name}_{}", kernels.isa().name());
        let mut group = group(c, &name, 2 * (m * k * n) as u64);
        for threads in thread_counts() {
            group.bench_function(format!("threads_{threads}"), |b| {
                b.iter(|| gemm_packed_add(threads, kernels, k, n, &a, &packed, &mut c_out))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, products, packed_products);
criterion_main!(benches);
