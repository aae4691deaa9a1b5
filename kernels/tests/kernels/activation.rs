//! exp, tanh and sigmoid on every path: accuracy against f64, agreement with
//! the scalar path, saturation, signed zeros and NaN.
//!
//! The bounds below are the ones the module documentation of
//! `activation.rs` states. They were measured over every f32 of each range
//! by `activation_max_error_report` (ignored; run it with
//! `cargo test --release -p rnnlm-kernels --test kernels -- --ignored --nocapture activation_max_error_report`).
//! The regular tests check them on every 127th f32 of each range.

use rnnlm_kernels::Kernels;

use crate::common::{SIZES, f32_ulp, paths, rng, simd_paths, ulp_error, uniform_vec};

#[derive(Clone, Copy, Debug)]
enum Function {
    Exp,
    Tanh,
    Sigmoid,
}

impl Function {
    const ALL: [Function; 3] = [Function::Exp, Function::Tanh, Function::Sigmoid];

    fn run(self, kernels: &Kernels, x: &mut [f32]) {
        match self {
            Function::Exp => kernels.exp_in_place(x),
            Function::Tanh => kernels.tanh_in_place(x),
            Function::Sigmoid => kernels.sigmoid_in_place(x),
        }
    }

    fn reference(self, x: f64) -> f64 {
        match self {
            Function::Exp => x.exp(),
            Function::Tanh => x.tanh(),
            Function::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }

    /// Returns the input range where the result is a normal f32 (for tanh,
    /// not yet rounded to +-1) and `max_ulp` applies.
    fn accurate_range(self) -> (f32, f32) {
        match self {
            // e^-87.33 = 1.18e-38 is just above the smallest normal f32;
            // e^88.72 = 3.39e38 is just below f32::MAX.
            Function::Exp => (-87.33, 88.72),
            Function::Tanh => (-9.0, 9.0),
            Function::Sigmoid => (-87.33, 88.72),
        }
    }

    /// Max error in f32 ulp of the result over `accurate_range`, on every
    /// path (the module documentation of `activation.rs` states the same).
    fn max_ulp(self) -> f64 {
        match self {
            Function::Exp => 1.06,
            Function::Tanh => 2.5,
            Function::Sigmoid => 2.5,
        }
    }
}

/// Returns every `stride`-th f32 in [lo, hi], walking the bit patterns
/// outward from zero so that small magnitudes are sampled as densely as
/// large ones.
fn f32_grid(lo: f32, hi: f32, stride: u32) -> Vec<f32> {
    let mut grid = Vec::new();
    let mut bits = 0u32;
    while f32::from_bits(bits) <= hi {
        grid.push(f32::from_bits(bits));
        bits += stride;
    }
    let mut bits = 0x8000_0000u32 + stride;
    while f32::from_bits(bits) >= lo {
        grid.push(f32::from_bits(bits));
        bits += stride;
    }
    grid
}

struct MaxError {
    ulp: f64,
    at: f32,
}

fn max_ulp_error(kernels: &Kernels, function: Function, inputs: &[f32]) -> MaxError {
    let mut outputs = inputs.to_vec();
    function.run(kernels, &mut outputs);
    let mut worst = MaxError { ulp: 0.0, at: 0.0 };
    for (&x, &y) in inputs.iter().zip(&outputs) {
        let ulp = ulp_error(y, function.reference(x as f64));
        if ulp.is_nan() || ulp > worst.ulp {
            worst = MaxError { ulp, at: x };
        }
    }
    worst
}

#[test]
fn activations_within_stated_ulp_on_grid() {
    for kernels in paths() {
        for function in Function::ALL {
            let (lo, hi) = function.accurate_range();
            let grid = f32_grid(lo, hi, 127);
            let worst = max_ulp_error(&kernels, function, &grid);
            assert!(
                worst.ulp <= function.max_ulp(),
                "{function:?} on {}: {} ulp at x = {:e}, stated bound {} ulp",
                kernels.isa(),
                worst.ulp,
                worst.at,
                function.max_ulp()
            );
        }
    }
}

/// Prints the max error of each function on each path over every f32 of
/// its accurate range, and over the ranges where results leave it.
#[test]
#[ignore = "scans about 6.5e9 inputs per path; run in release mode to measure the bounds"]
fn activation_max_error_report() {
    const BATCH: usize = 1 << 22;
    for function in Function::ALL {
        let (lo, hi) = function.accurate_range();
        for kernels in paths() {
            let mut worst = MaxError { ulp: 0.0, at: 0.0 };
            let mut batch = Vec::with_capacity(BATCH);
            let mut flush = |batch: &mut Vec<f32>| {
                let w = max_ulp_error(&kernels, function, batch);
                if w.ulp > worst.ulp {
                    worst = w;
                }
                batch.clear();
            };
            for sign in [0u32, 0x8000_0000] {
                let mut bits = sign;
                loop {
                    let x = f32::from_bits(bits);
                    if !(lo..=hi).contains(&x) {
                        break;
                    }
                    batch.push(x);
                    if batch.len() == BATCH {
                        flush(&mut batch);
                    }
                    bits += 1;
                }
            }
            flush(&mut batch);
            println!(
                "{function:?} {}: max {:.3} ulp at x = {:e} over [{lo}, {hi}]",
                kernels.isa(),
                worst.ulp,
                worst.at
            );
        }
    }

    // Outside the accurate ranges: subnormal results of exp and sigmoid,
    // as absolute errors in units of the smallest subnormal 2^-149.
    let tiny = 2f64.powi(-149);
    for (function, lo, hi) in [
        (Function::Exp, -104.0f32, -87.33f32),
        (Function::Sigmoid, -104.0f32, -87.33f32),
    ] {
        for kernels in paths() {
            let grid = f32_grid(lo, hi, 1);
            let grid: Vec<f32> = grid.into_iter().filter(|&x| x <= hi).collect();
            let mut out = grid.clone();
            function.run(&kernels, &mut out);
            let mut worst = (0.0f64, 0.0f32);
            for (&x, &y) in grid.iter().zip(&out) {
                let error = (y as f64 - function.reference(x as f64)).abs() / tiny;
                if error > worst.0 {
                    worst = (error, x);
                }
            }
            println!(
                "{function:?} {}: max absolute error {:.3} x 2^-149 at x = {:e} over [{lo}, {hi}]",
                kernels.isa(),
                worst.0,
                worst.1
            );
        }
    }
}

/// Max distance in ulp between a SIMD path and the scalar path. Both are
/// within `max_ulp` of the exact value, so within twice that of each other
/// (measured on x86_64 over every third f32 of [-110, 110]: exp 1, tanh 3,
/// sigmoid 4 ulp). Subnormal and saturated results are compared in the
/// same units, where the f64 bound does not apply but the paths still agree
/// to within a few subnormal steps.
fn simd_vs_scalar_ulp(function: Function) -> f64 {
    2.0 * function.max_ulp()
}

#[test]
fn simd_activations_near_scalar_on_grid() {
    let scalar = Kernels::scalar();
    let grid = f32_grid(-110.0, 110.0, 127);
    for kernels in simd_paths() {
        for function in Function::ALL {
            let mut want = grid.clone();
            function.run(&scalar, &mut want);
            let mut got = grid.clone();
            function.run(&kernels, &mut got);
            let mut worst = (0.0, 0.0f32);
            for ((&x, &g), &w) in grid.iter().zip(&got).zip(&want) {
                let ulp = ulp_error(g, w as f64);
                if ulp.is_nan() || ulp > worst.0 {
                    worst = (ulp, x);
                }
            }
            assert!(
                worst.0 <= simd_vs_scalar_ulp(function),
                "{function:?} on {}: {} ulp from scalar at x = {:e}",
                kernels.isa(),
                worst.0,
                worst.1
            );
        }
    }
}

#[test]
fn activations_match_scalar_and_f64_at_odd_sizes() {
    let scalar = Kernels::scalar();
    for kernels in paths() {
        for function in Function::ALL {
            let (lo, hi) = function.accurate_range();
            for (case, &len) in SIZES.iter().enumerate() {
                // Inputs beyond the accurate range on both sides, so that
                // saturated lanes sit next to accurate ones in a vector.
                let input = uniform_vec(&mut rng(case as u64), len, -100.0, 100.0);
                let mut want = input.clone();
                function.run(&scalar, &mut want);
                let mut got = input.clone();
                function.run(&kernels, &mut got);

                for (j, ((&x, &g), &w)) in input.iter().zip(&got).zip(&want).enumerate() {
                    let to_scalar = ulp_error(g, w as f64);
                    assert!(
                        to_scalar <= simd_vs_scalar_ulp(function),
                        "{function:?} on {}, len {len}, x[{j}] = {x:e}: {g:e} vs scalar {w:e}",
                        kernels.isa()
                    );
                    if (lo..=hi).contains(&x) {
                        let to_f64 = ulp_error(g, function.reference(x as f64));
                        assert!(
                            to_f64 <= function.max_ulp(),
                            "{function:?} on {}, len {len}, x[{j}] = {x:e}: {to_f64} ulp from f64",
                            kernels.isa()
                        );
                    }
                }
            }
        }
    }
}

/// An input and what every path must return for it.
#[derive(Clone, Copy)]
enum Expected {
    /// These exact bits (so +0 and -0 differ).
    Bits(f32),
    /// Within `max_ulp` of the f64 reference.
    Accurate,
    /// Within this many multiples of 2^-149 of the f64 reference: a
    /// subnormal result, rounded once.
    Subnormal(f64),
}

fn check_special_values(function: Function, cases: &[(f32, Expected)]) {
    // Repeat the cases to 37 elements so each one lands in full vectors and
    // in the tail of every path.
    let input: Vec<f32> = cases.iter().map(|c| c.0).cycle().take(37).collect();
    for kernels in paths() {
        let mut got = input.clone();
        function.run(&kernels, &mut got);
        for (j, (&x, &y)) in input.iter().zip(&got).enumerate() {
            let want = function.reference(x as f64);
            match cases[j % cases.len()].1 {
                Expected::Bits(bits) => assert_eq!(
                    y.to_bits(),
                    bits.to_bits(),
                    "{function:?} on {} at x = {x:e}: got {y:e}, expected exactly {bits:e}",
                    kernels.isa()
                ),
                Expected::Accurate => assert!(
                    ulp_error(y, want) <= function.max_ulp(),
                    "{function:?} on {} at x = {x:e}: got {y:e}, expected {want:e}",
                    kernels.isa()
                ),
                Expected::Subnormal(steps) => assert!(
                    (y as f64 - want).abs() <= steps * f32_ulp(0.0),
                    "{function:?} on {} at x = {x:e}: got {y:e}, expected {want:e} within \
                     {steps} x 2^-149",
                    kernels.isa()
                ),
            }
        }
    }
}

#[test]
fn exp_saturates_and_keeps_subnormal_results() {
    use Expected::*;
    check_special_values(
        Function::Exp,
        &[
            (0.0, Bits(1.0)),
            (-0.0, Bits(1.0)),
            (88.0, Accurate),
            (88.72, Accurate),
            (88.73, Bits(f32::INFINITY)),
            (89.0, Bits(f32::INFINITY)),
            (1e30, Bits(f32::INFINITY)),
            (f32::INFINITY, Bits(f32::INFINITY)),
            (-87.0, Accurate),
            (-87.33, Accurate),
            (-88.0, Subnormal(1.0)),
            (-100.0, Subnormal(1.0)),
            (-103.5, Subnormal(1.0)),
            (-103.9, Subnormal(1.0)),
            (-103.98, Bits(0.0)),
            (-104.0, Bits(0.0)),
            (-1e30, Bits(0.0)),
            (f32::NEG_INFINITY, Bits(0.0)),
        ],
    );
}

#[test]
fn tanh_keeps_signed_zero_small_values_and_saturates() {
    use Expected::*;
    let smallest_subnormal = f32::from_bits(1);
    check_special_values(
        Function::Tanh,
        &[
            (0.0, Bits(0.0)),
            (-0.0, Bits(-0.0)),
            (smallest_subnormal, Bits(smallest_subnormal)),
            (-smallest_subnormal, Bits(-smallest_subnormal)),
            (f32::MIN_POSITIVE, Bits(f32::MIN_POSITIVE)),
            (1e-30, Accurate),
            (-1e-7, Accurate),
            (0.01, Accurate),
            (-0.5, Accurate),
            (8.9, Accurate),
            (9.0, Bits(1.0)),
            (-9.0, Bits(-1.0)),
            (9.01, Bits(1.0)),
            (-100.0, Bits(-1.0)),
            (f32::INFINITY, Bits(1.0)),
            (f32::NEG_INFINITY, Bits(-1.0)),
        ],
    );
}

#[test]
fn sigmoid_saturates_to_zero_and_one() {
    use Expected::*;
    check_special_values(
        Function::Sigmoid,
        &[
            (0.0, Bits(0.5)),
            (-0.0, Bits(0.5)),
            (-87.0, Accurate),
            (-88.0, Subnormal(1.0)),
            (-88.7, Subnormal(1.0)),
            (-88.8, Bits(0.0)),
            (-100.0, Bits(0.0)),
            (f32::NEG_INFINITY, Bits(0.0)),
            (16.63, Accurate),
            (16.64, Bits(1.0)),
            (17.4, Bits(1.0)),
            (100.0, Bits(1.0)),
            (f32::INFINITY, Bits(1.0)),
        ],
    );
}

#[test]
fn activations_propagate_nan_at_every_position() {
    for kernels in paths() {
        for function in Function::ALL {
            for (case, &len) in SIZES.iter().enumerate() {
                let input = uniform_vec(&mut rng(100 + case as u64), len, -5.0, 5.0);
                let positions: Vec<usize> = if len <= 33 {
                    (0..len).collect()
                } else {
                    vec![0, 15, 16, len / 2, len - 1]
                };
                for &nan_at in &positions {
                    let mut x = input.clone();
                    x[nan_at] = f32::NAN;
                    function.run(&kernels, &mut x);
                    for (j, &y) in x.iter().enumerate() {
                        assert_eq!(
                            y.is_nan(),
                            j == nan_at,
                            "{function:?} on {}, len {len}, NaN input at {nan_at}: output[{j}] = {y}",
                            kernels.isa()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn activations_accept_empty_slice() {
    for kernels in paths() {
        for function in Function::ALL {
            function.run(&kernels, &mut []);
        }
    }
}
