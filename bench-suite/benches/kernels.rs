//! Criterion benches of every kernel on every kernel path this CPU has, at
//! the book shapes: B = 20 streams, T = 35 steps, H = 650, V = 10 000, so
//! N = B * T = 700 rows per window and 13.3M parameters.
//!
//! Run with `cargo bench -p bench-suite --bench kernels`; add a filter such
//! as `-- softmax` to run part of it. Throughput is in bytes for kernels
//! that stream memory (the figure to hold against bandwidth) and in
//! elements for those that compute per element (activations, the cell).
//! `memory/copy_64MiB` measures the copy bandwidth those figures are read
//! against. BENCHMARKS.md has the roofline of each kernel.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use rnnlm::model::{ModelConfig, ParamLayout};
use rnnlm::workspace::LineAligned;
use rnnlm_kernels::{Isa, Kernels, dropout_rng, packed_len};

const BATCH: usize = 20;
const STEPS: usize = 35;
const HIDDEN: usize = 650;
const VOCAB: usize = 10_000;
const ROWS: usize = BATCH * STEPS;
const F32: u64 = size_of::<f32>() as u64;

/// Returns the kernel paths this CPU can run, scalar first.
fn paths() -> Vec<Kernels> {
    Isa::ALL
        .iter()
        .filter(|isa| isa.is_available())
        .map(|&isa| Kernels::new(isa).expect("available path"))
        .collect()
}

/// Deterministic values in [-scale, scale), without a short period.
fn values(len: usize, salt: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.5 - 1.0) * scale)
        .collect()
}

/// Token ids below `vocab`, spread over the whole table.
fn ids(len: usize, vocab: usize) -> Vec<u32> {
    (0..len).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// Parameter count of the book model (tied, two layers): about 13.3M.
fn book_parameters() -> usize {
    ParamLayout::new(&ModelConfig {
        vocab: VOCAB,
        embed: HIDDEN,
        hidden: HIDDEN,
        layers: 2,
        tied: true,
    })
    .total
}

/// Creates a group with short timing, so the whole file runs in a few
/// minutes on two cores. Flat sampling suits benches whose iterations take milliseconds.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    throughput: Throughput,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sampling_mode(SamplingMode::Flat)
        .throughput(throughput);
    group
}

fn softmax(c: &mut Criterion) {
    // Logits of magnitude up to 10, as a trained model produces, in a
    // buffer that starts on a cache line like the workspace's.
    let mut logits = LineAligned::zeroed(ROWS * VOCAB);
    logits.copy_from_slice(&values(ROWS * VOCAB, 1, 10.0));
    let targets = ids(ROWS, VOCAB);
    let scale = 1.0 / ROWS as f32;

    // Training: read the logits, write the gradient over them.
    let mut train = group(
        c,
        "softmax_cross_entropy_700x10000",
        Throughput::Bytes(2 * (ROWS * VOCAB) as u64 * F32),
    );
    for k in paths() {
        train.bench_function(k.isa().name(), |b| {
            b.iter_batched_ref(
                || {
                    let mut block = LineAligned::zeroed(ROWS * VOCAB);
                    block.copy_from_slice(&logits);
                    block
                },
                |block| k.softmax_cross_entropy(ROWS, VOCAB, block, &targets, scale),
                BatchSize::PerIteration,
            )
        });
    }
    train.finish();

    // Evaluation: read only.
    let mut eval = group(
        c,
        "log_softmax_at_700x10000",
        Throughput::Bytes((ROWS * VOCAB) as u64 * F32),
    );
    let mut log_probs = vec![0.0f32; ROWS];
    for k in paths() {
        eval.bench_function(k.isa().name(), |b| {
            b.iter(|| k.log_softmax_at(ROWS, VOCAB, &logits, &targets, &mut log_probs))
        });
    }
    eval.finish();
}

fn lstm_cell(c: &mut Criterion) {
    let state = BATCH * HIDDEN;
    let pre_activations = values(4 * state, 2, 3.0);
    let bias = values(4 * HIDDEN, 3, 0.1);
    let c_prev = values(state, 4, 1.0);
    let mut c_next = vec![0.0f32; state];
    let mut h = vec![0.0f32; state];
    let mut tanh_c = vec![0.0f32; state];

    // The cell kernels get a fresh copy of their in-place input before each
    // call (`PerIteration`), so it sits in L2 as it does after the gate
    // product of a training step. With batched setup, hundreds of copies
    // were made first, so the timed calls read them from memory. On one
    // Zen 4 core that added about 3.5 us to the backward step (9.5 against
    // 6.0 us) and about 2 us to the forward.
    let mut forward = group(
        c,
        "lstm_forward_20x2600",
        Throughput::Elements(state as u64),
    );
    for k in paths() {
        forward.bench_function(k.isa().name(), |b| {
            b.iter_batched_ref(
                || pre_activations.clone(),
                |gates| {
                    k.lstm_forward(
                        BATCH,
                        HIDDEN,
                        gates,
                        &bias,
                        &c_prev,
                        &mut c_next,
                        &mut h,
                        &mut tanh_c,
                    )
                },
                BatchSize::PerIteration,
            )
        });
    }
    forward.finish();

    // Activated gates in (0, 1) for i, f, o and (-1, 1) for g, as forward leaves them.
    let gates: Vec<f32> = values(4 * state, 5, 1.0)
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (i / HIDDEN) % 4 == 2 {
                x
            } else {
                0.5 + 0.49 * x
            }
        })
        .collect();
    let tanh_c = values(state, 6, 0.9);
    let dh = values(state, 7, 0.01);
    let dc = values(state, 8, 0.01);
    let mut dgates = vec![0.0f32; 4 * state];
    let mut backward = group(
        c,
        "lstm_backward_20x650",
        Throughput::Elements(state as u64),
    );
    for k in paths() {
        backward.bench_function(k.isa().name(), |b| {
            b.iter_batched_ref(
                || dc.clone(),
                |dc| {
                    k.lstm_backward(
                        BATCH,
                        HIDDEN,
                        &gates,
                        &c_prev,
                        &tanh_c,
                        &dh,
                        dc,
                        &mut dgates,
                    )
                },
                BatchSize::PerIteration,
            )
        });
    }
    backward.finish();
}

fn activations(c: &mut Criterion) {
    let len = BATCH * HIDDEN;
    let input = values(len, 9, 8.0);
    type Activation = fn(&Kernels, &mut [f32]);
    let kernels: [(&str, Activation); 3] = [
        ("exp_in_place_13000", Kernels::exp_in_place),
        ("tanh_in_place_13000", Kernels::tanh_in_place),
        ("sigmoid_in_place_13000", Kernels::sigmoid_in_place),
    ];
    for (name, activation) in kernels {
        let mut group = group(c, name, Throughput::Elements(len as u64));
        for k in paths() {
            group.bench_function(k.isa().name(), |b| {
                b.iter_batched_ref(
                    || input.clone(),
                    |x| activation(&k, x),
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

fn dropout(c: &mut Criterion) {
    let state = BATCH * HIDDEN;
    let mut mask = vec![0.0f32; state];
    let mut rng = dropout_rng(1);

    let mut draw = group(c, "dropout_mask_13000", Throughput::Elements(state as u64));
    for k in paths() {
        draw.bench_function(k.isa().name(), |b| {
            b.iter(|| k.dropout_mask(&mut rng, 0.5, &mut mask))
        });
    }
    draw.finish();

    // One variational (B, H) mask over a window's (T B, H) activations.
    let activations = values(ROWS * HIDDEN, 10, 1.0);
    Kernels::scalar().dropout_mask(&mut rng, 0.5, &mut mask);
    let mut apply = group(
        c,
        "dropout_apply_700x650",
        Throughput::Bytes(2 * (ROWS * HIDDEN) as u64 * F32),
    );
    for k in paths() {
        apply.bench_function(k.isa().name(), |b| {
            b.iter_batched_ref(
                || activations.clone(),
                |x| k.dropout_apply(x, &mask),
                BatchSize::SmallInput,
            )
        });
    }
    apply.finish();
}

fn embedding(c: &mut Criterion) {
    let table = values(VOCAB * HIDDEN, 11, 0.01);
    let token_ids = ids(ROWS, VOCAB);
    let rows = values(ROWS * HIDDEN, 12, 0.01);
    let mut out = vec![0.0f32; ROWS * HIDDEN];
    let mut table_grad = vec![0.0f32; VOCAB * HIDDEN];
    let row_bytes = (ROWS * HIDDEN) as u64 * F32;

    // A gather is a row copy on every path.
    let mut gather = group(
        c,
        "embedding_gather_700x650",
        Throughput::Bytes(2 * row_bytes),
    );
    let k = Kernels::process();
    gather.bench_function(k.isa().name(), |b| {
        b.iter(|| k.embedding_gather(HIDDEN, &table, &token_ids, &mut out))
    });
    gather.finish();

    // Reads the gradient rows and the table rows, writes the table rows.
    let mut scatter = group(
        c,
        "embedding_scatter_add_700x650",
        Throughput::Bytes(3 * row_bytes),
    );
    for k in paths() {
        scatter.bench_function(k.isa().name(), |b| {
            b.iter(|| k.embedding_scatter_add(HIDDEN, &mut table_grad, &token_ids, &rows))
        });
    }
    scatter.finish();
}

fn optimizer(c: &mut Criterion) {
    let count = book_parameters();
    let bytes = count as u64 * F32;
    let mut params = values(count, 13, 0.1);
    let grads = values(count, 14, 0.001);

    // Reads params and grads, writes params.
    let mut sgd = group(c, "sgd_update_13.3M", Throughput::Bytes(3 * bytes));
    for k in paths() {
        sgd.bench_function(k.isa().name(), |b| {
            b.iter(|| k.sgd_update(&mut params, &grads, 1e-6))
        });
    }
    sgd.finish();

    let mut norm = group(c, "sum_squares_13.3M", Throughput::Bytes(bytes));
    for k in paths() {
        norm.bench_function(k.isa().name(), |b| {
            b.iter(|| k.sum_squares(black_box(&grads)))
        });
    }
    norm.finish();

    // A factor of 1 keeps the values fixed from one iteration to the next.
    let mut scale = group(c, "scale_in_place_13.3M", Throughput::Bytes(2 * bytes));
    for k in paths() {
        scale.bench_function(k.isa().name(), |b| {
            b.iter(|| k.scale_in_place(&mut params, black_box(1.0)))
        });
    }
    scale.finish();
}

fn bias(c: &mut Criterion) {
    let mut logits = values(ROWS * VOCAB, 15, 1.0);
    let out_bias = values(VOCAB, 16, 1e-6);
    let mut add = group(
        c,
        "add_row_bias_700x10000",
        Throughput::Bytes(2 * (ROWS * VOCAB) as u64 * F32),
    );
    for k in paths() {
        add.bench_function(k.isa().name(), |b| {
            b.iter(|| k.add_row_bias(&mut logits, &out_bias))
        });
    }
    add.finish();

    for (name, cols) in [
        ("add_column_sums_700x2600", 4 * HIDDEN),
        ("add_column_sums_700x10000", VOCAB),
    ] {
        let x = values(ROWS * cols, 17, 1e-3);
        let mut sums = vec![0.0f32; cols];
        let mut group = group(c, name, Throughput::Bytes((ROWS * cols) as u64 * F32));
        for k in paths() {
            group.bench_function(k.isa().name(), |b| {
                b.iter(|| k.add_column_sums(&x, &mut sums))
            });
        }
        group.finish();
    }
}

/// Times the bandwidth-bound kernels again at a size that stays in L1
/// (8 KiB per array), where the instruction stream rather than memory sets
/// their speed, to show what the SIMD paths gain once memory is out of the
/// way.
/// At the book's sizes every path runs at the same memory bandwidth.
fn cache_resident(c: &mut Criterion) {
    const LEN: usize = 2048;
    const COLS: usize = 512;
    let bytes = LEN as u64 * F32;
    let mut x = values(LEN, 20, 0.1);
    let y = values(LEN, 21, 0.001);
    let row = values(COLS, 22, 0.001);
    let mut sums = vec![0.0f32; COLS];

    let mut sgd = group(c, "l1_sgd_update_2048", Throughput::Bytes(3 * bytes));
    for k in paths() {
        sgd.bench_function(k.isa().name(), |b| {
            b.iter(|| k.sgd_update(&mut x, &y, 1e-6))
        });
    }
    sgd.finish();

    let mut norm = group(c, "l1_sum_squares_2048", Throughput::Bytes(bytes));
    for k in paths() {
        norm.bench_function(k.isa().name(), |b| b.iter(|| k.sum_squares(black_box(&y))));
    }
    norm.finish();

    let mut scale = group(c, "l1_scale_in_place_2048", Throughput::Bytes(2 * bytes));
    for k in paths() {
        scale.bench_function(k.isa().name(), |b| {
            b.iter(|| k.scale_in_place(&mut x, black_box(1.0)))
        });
    }
    scale.finish();

    let mut mul = group(c, "l1_mul_in_place_2048", Throughput::Bytes(3 * bytes));
    for k in paths() {
        mul.bench_function(k.isa().name(), |b| b.iter(|| k.mul_in_place(&mut x, &y)));
    }
    mul.finish();

    let mut add = group(c, "l1_add_in_place_2048", Throughput::Bytes(3 * bytes));
    for k in paths() {
        add.bench_function(k.isa().name(), |b| b.iter(|| k.add_in_place(&mut x, &y)));
    }
    add.finish();

    // The same on arrays that start on a 64-byte cache line, where no
    // 512-bit access spans two lines.
    let mut x_store = values(LEN + 16, 20, 0.1);
    let y_store = values(LEN + 16, 21, 0.001);
    let line_start = |p: *const f32| (64 - p as usize % 64) % 64 / 4;
    let (xo, yo) = (line_start(x_store.as_ptr()), line_start(y_store.as_ptr()));
    let x_aligned = &mut x_store[xo..xo + LEN];
    let y_aligned = &y_store[yo..yo + LEN];
    let mut aligned = group(
        c,
        "l1_add_in_place_2048_aligned",
        Throughput::Bytes(3 * bytes),
    );
    for k in paths() {
        aligned.bench_function(k.isa().name(), |b| {
            b.iter(|| k.add_in_place(x_aligned, y_aligned))
        });
    }
    aligned.finish();

    let mut bias = group(c, "l1_add_row_bias_4x512", Throughput::Bytes(2 * bytes));
    for k in paths() {
        bias.bench_function(k.isa().name(), |b| b.iter(|| k.add_row_bias(&mut x, &row)));
    }
    bias.finish();

    let mut columns = group(c, "l1_add_column_sums_4x512", Throughput::Bytes(bytes));
    for k in paths() {
        columns.bench_function(k.isa().name(), |b| {
            b.iter(|| k.add_column_sums(&y, &mut sums))
        });
    }
    columns.finish();
}

/// Times the recurrent products on one thread with the packed weight: forward
/// h_{t-1} Wh (20 x 650)(650 x 2600) and backward dgates Wh^T
/// (20 x 2600)(2600 x 650), plus packing Wh, which runs once per window.
/// Throughput is in elements where one element is one FLOP.
fn packed_gemm(c: &mut Criterion) {
    let gates = 4 * HIDDEN;
    let wh = values(HIDDEN * gates, 19, 0.04);
    for (name, k_dim, n_dim, transposed) in [
        ("gemm_packed_20x650x2600", HIDDEN, gates, false),
        ("gemm_packed_20x2600x650", gates, HIDDEN, true),
    ] {
        let mut packed = vec![0.0f32; packed_len(k_dim, n_dim)];
        Kernels::scalar().pack_b(k_dim, n_dim, &wh, transposed, &mut packed);
        let a = values(BATCH * k_dim, 20, 1.0);
        let mut out = vec![0.0f32; BATCH * n_dim];
        let flops = 2 * (BATCH * k_dim * n_dim) as u64;
        let mut group = group(c, name, Throughput::Elements(flops));
        for k in paths() {
            group.bench_function(k.isa().name(), |b| {
                b.iter(|| k.gemm_packed(BATCH, k_dim, n_dim, &a, &packed, &mut out, false))
            });
        }
        group.finish();
    }

    let mut packed = vec![0.0f32; packed_len(HIDDEN, gates)];
    let mut pack = group(
        c,
        "pack_b_650x2600",
        Throughput::Bytes(2 * (HIDDEN * gates) as u64 * F32),
    );
    for k in paths() {
        pack.bench_function(k.isa().name(), |b| {
            b.iter(|| k.pack_b(HIDDEN, gates, &wh, false, &mut packed))
        });
    }
    pack.finish();
}

/// Single-thread streams over 64 MiB, far past the L3 cache: the memory
/// bandwidth the streaming kernels are compared with.
///
/// `copy_64MiB` counts the bytes read plus the bytes written. The
/// write-allocate read of the destination is extra traffic that is not
/// counted, so the hardware moves 1.5 times the figure. `read_64MiB` sums
/// the buffer into 16 independent lanes, which the compiler turns into
/// vector adds, so the add latency does not limit it.
fn memory(c: &mut Criterion) {
    let len = (64 << 20) / size_of::<f32>();
    let source = values(len, 18, 1.0);
    let mut destination = vec![0.0f32; len];

    let mut copy = group(c, "memory", Throughput::Bytes(2 * len as u64 * F32));
    copy.bench_function("copy_64MiB", |b| {
        b.iter(|| destination.copy_from_slice(black_box(&source)))
    });
    copy.throughput(Throughput::Bytes(len as u64 * F32));
    copy.bench_function("read_64MiB", |b| {
        b.iter(|| {
            let mut lanes = [0.0f32; 16];
            for chunk in black_box(&source).chunks_exact(16) {
                for (lane, &x) in lanes.iter_mut().zip(chunk) {
                    *lane += x;
                }
            }
            lanes.iter().sum::<f32>()
        })
    });
    copy.finish();
}

criterion_group!(
    benches,
    softmax,
    lstm_cell,
    activations,
    dropout,
    embedding,
    optimizer,
    bias,
    cache_resident,
    packed_gemm,
    memory
);
criterion_main!(benches);
