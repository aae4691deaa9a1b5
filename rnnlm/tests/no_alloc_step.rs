//! A training step after the first performs no heap allocation.
//!
//! This file contains a single test so that no other test allocates on another
//! thread while the counter is read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rnnlm::batch::Streams;
use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::train::{TrainOptions, Trainer};
use rnnlm::workspace::Dropout;
use rnnlm_kernels::Kernels;

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn training_step_after_first_does_not_allocate() {
    // Large enough that the matrix products split across threads, with a
    // batch of 8 rows so that the LSTM steps split their rows too.
    let config = ModelConfig {
        vocab: 500,
        embed: 64,
        hidden: 64,
        layers: 2,
        tied: true,
    };
    let tokens: Vec<u32> = (0..2000u32).map(|i| (i * 7919 + 13) % 500).collect();
    let batch = 8;
    let streams = Streams::new(&tokens, batch).unwrap();

    // Every pool lives to the end: a pool's threads starting or exiting
    // while another case is counted would allocate.
    let pools: Vec<rayon::ThreadPool> = (1..=2)
        .map(|threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        })
        .collect();
    // Worker threads allocate while they start; wait until every one runs.
    for pool in &pools {
        pool.broadcast(|_| ());
    }
    for (variational, threads) in [(true, 1), (false, 1), (true, 2)] {
        let pool = &pools[threads - 1];
        let options = TrainOptions {
            batch,
            bptt: 7,
            dropout: Dropout {
                variational,
                ..Dropout::uniform(0.3)
            },
            ..TrainOptions::default()
        };
        let model = Model::new(config.clone(), Init::Book, 5).unwrap();
        let mut trainer = Trainer::new(model, options, Kernels::process(), threads);
        pool.install(|| {
            // The first window may allocate: faer sets up per-thread scratch
            // memory and rayon its thread-local state.
            let steps = trainer.load_window(&streams, 0);
            trainer.train_window(steps);

            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for window in 1..6 {
                let steps = trainer.load_window(&streams, window);
                trainer.train_window(steps);
            }
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            assert_eq!(
                allocations, 0,
                "variational {variational}, {threads} threads: heap allocations in 5 steps"
            );
        });
    }
}
