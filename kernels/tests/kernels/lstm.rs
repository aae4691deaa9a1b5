//! LSTM cell forward and backward on every path, against the scalar path and
//! against f64 references, at hidden sizes with every tail length, with
//! saturated gates and NaN.
//!
//! Tolerances follow the usual forward error bound. An expression evaluated
//! in f32 with k roundings is within about k * 2^-24 * M of the exact value,
//! where M is the same expression evaluated on absolute values. So a sum
//! that cancels is judged against the size of its terms.

use rnnlm_kernels::Kernels;

use crate::common::{SIZES, below, f32_ulp, paths, rng, uniform_vec};

/// f32 unit roundoff.
const U: f64 = 1.0 / 16_777_216.0;

/// Stated max errors of the activations in ulp (the module documentation
/// of `activation.rs`); gates and tanh(c) must be within them.
const SIGMOID_MAX_ULP: f64 = 2.5;
const TANH_MAX_ULP: f64 = 2.5;

/// Batch rows per case: enough to check that rows do not mix.
const BATCH: usize = 2;

struct ForwardInputs {
    hidden: usize,
    gates: Vec<f32>,
    bias: Vec<f32>,
    c_prev: Vec<f32>,
}

struct ForwardOutputs {
    gates: Vec<f32>,
    c: Vec<f32>,
    h: Vec<f32>,
    tanh_c: Vec<f32>,
}

fn random_forward_inputs(seed: u64, hidden: usize, gate_magnitude: f32) -> ForwardInputs {
    let mut rng = rng(seed);
    ForwardInputs {
        hidden,
        gates: uniform_vec(
            &mut rng,
            BATCH * 4 * hidden,
            -gate_magnitude,
            gate_magnitude,
        ),
        bias: uniform_vec(&mut rng, 4 * hidden, -1.0, 1.0),
        c_prev: uniform_vec(&mut rng, BATCH * hidden, -3.0, 3.0),
    }
}

fn run_forward(kernels: &Kernels, inputs: &ForwardInputs) -> ForwardOutputs {
    let n = BATCH * inputs.hidden;
    let mut out = ForwardOutputs {
        gates: inputs.gates.clone(),
        c: vec![f32::NAN; n],
        h: vec![f32::NAN; n],
        tanh_c: vec![f32::NAN; n],
    };
    kernels.lstm_forward(
        BATCH,
        inputs.hidden,
        &mut out.gates,
        &inputs.bias,
        &inputs.c_prev,
        &mut out.c,
        &mut out.h,
        &mut out.tanh_c,
    );
    out
}

fn sigmoid_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Checks every forward output of one path against f64, stage by stage:
/// the gates against f64 activations of the f32 pre-activation sums, and c,
/// tanh(c) and h against f64 evaluations of the path's own gates and c.
fn check_forward_against_f64(kernels: &Kernels, inputs: &ForwardInputs, out: &ForwardOutputs) {
    let hidden = inputs.hidden;
    let path = kernels.isa();
    for b in 0..BATCH {
        for j in 0..hidden {
            let row = 4 * hidden * b;
            let mut gate = [0f64; 4];
            for (k, value) in gate.iter_mut().enumerate() {
                let at = row + k * hidden + j;
                // The kernel adds the bias in f32 before the nonlinearity.
                let pre = (inputs.gates[at] + inputs.bias[k * hidden + j]) as f64;
                let want = if k == 2 { pre.tanh() } else { sigmoid_f64(pre) };
                let max_ulp = if k == 2 {
                    TANH_MAX_ULP
                } else {
                    SIGMOID_MAX_ULP
                };
                let got = out.gates[at];
                // Plus the smallest normal f32: sigmoid(-100) = 3.7e-44 is
                // returned as 0 because e^100 overflows f32.
                let tolerance = max_ulp * f32_ulp(want) + f32::MIN_POSITIVE as f64;
                assert!(
                    (got as f64 - want).abs() <= tolerance,
                    "{path}, H = {hidden}: gate {k} of unit {j} row {b} = {got:e}, expected {want:e}"
                );
                *value = got as f64;
            }
            let [i, f, g, o] = gate;

            let at = hidden * b + j;
            let cp = inputs.c_prev[at] as f64;
            let c_want = f * cp + i * g;
            let c_tolerance = 3.0 * U * ((f * cp).abs() + (i * g).abs());
            let c = out.c[at] as f64;
            assert!(
                (c - c_want).abs() <= c_tolerance,
                "{path}, H = {hidden}: c of unit {j} row {b} = {c:e}, expected {c_want:e}"
            );

            let t_want = c.tanh();
            let t = out.tanh_c[at] as f64;
            assert!(
                (t - t_want).abs() <= TANH_MAX_ULP * f32_ulp(t_want),
                "{path}, H = {hidden}: tanh(c) of unit {j} row {b} = {t:e}, expected {t_want:e}"
            );

            // One rounded product.
            let h_want = o * t;
            let h = out.h[at] as f64;
            assert!(
                (h - h_want).abs() <= 0.5 * f32_ulp(h_want),
                "{path}, H = {hidden}: h of unit {j} row {b} = {h:e}, expected {h_want:e}"
            );
        }
    }
}

/// Checks one path's forward outputs against the scalar path's: both are
/// within the f64 tolerances above, so they are within twice those of each
/// other (2 x 2.5 ulp for gates, and c measured against its terms).
fn check_forward_against_scalar(
    kernels: &Kernels,
    inputs: &ForwardInputs,
    out: &ForwardOutputs,
    scalar: &ForwardOutputs,
) {
    let hidden = inputs.hidden;
    let path = kernels.isa();
    let gate_tolerance = |v: f32| 2.0 * SIGMOID_MAX_ULP * f32_ulp(v as f64) + 1e-37;
    for (at, (&got, &want)) in out.gates.iter().zip(&scalar.gates).enumerate() {
        assert!(
            (got - want).abs() as f64 <= gate_tolerance(want),
            "{path}, H = {hidden}: gate element {at} = {got:e}, scalar {want:e}"
        );
    }
    for at in 0..BATCH * hidden {
        let (b, j) = (at / hidden, at % hidden);
        let cp = inputs.c_prev[at].abs() as f64;
        let terms = scalar.gates[4 * hidden * b + hidden + j].abs() as f64 * cp
            + (scalar.gates[4 * hidden * b + j] * scalar.gates[4 * hidden * b + 2 * hidden + j])
                .abs() as f64;
        // Gate errors of 2 x 2.5 ulp reach c through both terms, plus the
        // roundings of c itself on both paths.
        let c_tolerance = (2.0 * SIGMOID_MAX_ULP * 2.0 + 6.0) * U * terms + 1e-37;
        let (got, want) = (out.c[at], scalar.c[at]);
        assert!(
            (got - want).abs() as f64 <= c_tolerance,
            "{path}, H = {hidden}: c[{at}] = {got:e}, scalar {want:e}"
        );
        let t_tolerance = 2.0 * TANH_MAX_ULP * f32_ulp(scalar.tanh_c[at] as f64) + c_tolerance;
        let (got, want) = (out.tanh_c[at], scalar.tanh_c[at]);
        assert!(
            (got - want).abs() as f64 <= t_tolerance,
            "{path}, H = {hidden}: tanh_c[{at}] = {got:e}, scalar {want:e}"
        );
        let o = scalar.gates[4 * hidden * b + 3 * hidden + j].abs() as f64;
        let h_tolerance = o * t_tolerance + gate_tolerance(o as f32) + 2.0 * f32_ulp(o);
        let (got, want) = (out.h[at], scalar.h[at]);
        assert!(
            (got - want).abs() as f64 <= h_tolerance,
            "{path}, H = {hidden}: h[{at}] = {got:e}, scalar {want:e}"
        );
    }
}

#[test]
fn lstm_forward_matches_references_at_odd_sizes() {
    let scalar = Kernels::scalar();
    for (case, &hidden) in SIZES.iter().enumerate() {
        let inputs = random_forward_inputs(case as u64, hidden, 4.0);
        let scalar_out = run_forward(&scalar, &inputs);
        for kernels in paths() {
            let out = run_forward(&kernels, &inputs);
            check_forward_against_f64(&kernels, &inputs, &out);
            check_forward_against_scalar(&kernels, &inputs, &out, &scalar_out);
        }
    }
}

#[test]
fn lstm_forward_saturated_gates_at_plus_minus_100() {
    let scalar = Kernels::scalar();
    for (case, &hidden) in SIZES.iter().enumerate() {
        let mut inputs = random_forward_inputs(200 + case as u64, hidden, 1.0);
        let mut rng = rng(300 + case as u64);
        for a in &mut inputs.gates {
            *a = if below(&mut rng, 2) == 0 {
                100.0
            } else {
                -100.0
            };
        }
        inputs.bias.fill(0.0);
        let scalar_out = run_forward(&scalar, &inputs);
        for kernels in paths() {
            let out = run_forward(&kernels, &inputs);
            check_forward_against_f64(&kernels, &inputs, &out);
            check_forward_against_scalar(&kernels, &inputs, &out, &scalar_out);
            // Saturated gates are exactly 0 or 1, and g exactly -1 or 1.
            for (at, (&a, &gate)) in inputs.gates.iter().zip(&out.gates).enumerate() {
                let is_g = (at % (4 * hidden)) / hidden == 2;
                let want = match (is_g, a > 0.0) {
                    (true, true) => 1.0,
                    (true, false) => -1.0,
                    (false, true) => 1.0,
                    (false, false) => 0.0,
                };
                assert_eq!(
                    gate,
                    want,
                    "{}, H = {hidden}: gate element {at} with input {a}",
                    kernels.isa()
                );
            }
        }
    }
}

#[test]
fn lstm_forward_nan_stays_in_its_unit() {
    for kernels in paths() {
        for (case, &hidden) in SIZES.iter().enumerate() {
            let clean = random_forward_inputs(400 + case as u64, hidden, 4.0);
            let unit = below(&mut rng(500 + case as u64), hidden);
            let row = 1;
            // A NaN pre-activation of each gate in turn, then a NaN c_prev.
            for source in 0..5 {
                let mut inputs = ForwardInputs {
                    hidden,
                    gates: clean.gates.clone(),
                    bias: clean.bias.clone(),
                    c_prev: clean.c_prev.clone(),
                };
                if source < 4 {
                    inputs.gates[4 * hidden * row + source * hidden + unit] = f32::NAN;
                } else {
                    inputs.c_prev[hidden * row + unit] = f32::NAN;
                }
                let out = run_forward(&kernels, &inputs);

                for at in 0..BATCH * hidden {
                    let hit = at == hidden * row + unit;
                    // A NaN output gate reaches h but not c.
                    let c_nan = hit && source != 3;
                    let path = kernels.isa();
                    assert_eq!(out.c[at].is_nan(), c_nan, "{path}, H = {hidden}: c[{at}]");
                    assert_eq!(
                        out.tanh_c[at].is_nan(),
                        c_nan,
                        "{path}, H = {hidden}: tanh_c"
                    );
                    assert_eq!(out.h[at].is_nan(), hit, "{path}, H = {hidden}: h[{at}]");
                }
                for (at, &gate) in out.gates.iter().enumerate() {
                    let hit = source < 4 && at == 4 * hidden * row + source * hidden + unit;
                    assert_eq!(
                        gate.is_nan(),
                        hit,
                        "{}, H = {hidden}: gate element {at}, NaN source {source}",
                        kernels.isa()
                    );
                }
            }
        }
    }
}

struct BackwardInputs {
    hidden: usize,
    gates: Vec<f32>,
    c_prev: Vec<f32>,
    tanh_c: Vec<f32>,
    dh: Vec<f32>,
    dc: Vec<f32>,
}

struct BackwardOutputs {
    dc: Vec<f32>,
    dgates: Vec<f32>,
}

fn random_backward_inputs(seed: u64, hidden: usize) -> BackwardInputs {
    let mut rng = rng(seed);
    let mut gates = uniform_vec(&mut rng, BATCH * 4 * hidden, 0.0, 1.0);
    // g = tanh(.) lies in (-1, 1); i, f, o in (0, 1).
    for row in gates.chunks_exact_mut(4 * hidden) {
        for g in &mut row[2 * hidden..3 * hidden] {
            *g = 2.0 * *g - 1.0;
        }
    }
    BackwardInputs {
        hidden,
        gates,
        c_prev: uniform_vec(&mut rng, BATCH * hidden, -3.0, 3.0),
        tanh_c: uniform_vec(&mut rng, BATCH * hidden, -1.0, 1.0),
        dh: uniform_vec(&mut rng, BATCH * hidden, -1.0, 1.0),
        dc: uniform_vec(&mut rng, BATCH * hidden, -1.0, 1.0),
    }
}

fn run_backward(kernels: &Kernels, inputs: &BackwardInputs) -> BackwardOutputs {
    let mut out = BackwardOutputs {
        dc: inputs.dc.clone(),
        dgates: vec![f32::NAN; BATCH * 4 * inputs.hidden],
    };
    kernels.lstm_backward(
        BATCH,
        inputs.hidden,
        &inputs.gates,
        &inputs.c_prev,
        &inputs.tanh_c,
        &inputs.dh,
        &mut out.dc,
        &mut out.dgates,
    );
    out
}

/// Backward in f64 for one unit: (dgates i, f, g, o, dc_prev) and the same
/// formulas on absolute values with 1 - x^2 bounded by 1 + x^2, which scale
/// the tolerances.
fn backward_f64(inputs: &BackwardInputs, b: usize, j: usize) -> ([f64; 5], [f64; 5]) {
    let hidden = inputs.hidden;
    let row = 4 * hidden * b;
    let at = hidden * b + j;
    let [i, f, g, o] = [0, 1, 2, 3].map(|k| inputs.gates[row + k * hidden + j] as f64);
    let t = inputs.tanh_c[at] as f64;
    let (dh, dc, cp) = (
        inputs.dh[at] as f64,
        inputs.dc[at] as f64,
        inputs.c_prev[at] as f64,
    );

    let dcell = dc + dh * o * (1.0 - t * t);
    let value = [
        dcell * g * i * (1.0 - i),
        dcell * cp * f * (1.0 - f),
        dcell * i * (1.0 - g * g),
        dh * t * o * (1.0 - o),
        dcell * f,
    ];
    let dcell_size = dc.abs() + (dh * o).abs() * (1.0 + t * t);
    let size = [
        dcell_size * (g * i).abs() * (1.0 + i.abs()),
        dcell_size * (cp * f).abs() * (1.0 + f.abs()),
        dcell_size * i.abs() * (1.0 + g * g),
        (dh * t * o).abs() * (1.0 + o.abs()),
        dcell_size * f.abs(),
    ];
    (value, size)
}

/// Collects the outputs of unit j in row b: dgates i, f, g, o, then dc_prev.
fn unit_outputs(out: &BackwardOutputs, hidden: usize, b: usize, j: usize) -> [f32; 5] {
    let dgate = |k: usize| out.dgates[4 * hidden * b + k * hidden + j];
    [
        dgate(0),
        dgate(1),
        dgate(2),
        dgate(3),
        out.dc[hidden * b + j],
    ]
}

/// At most 10 roundings lie on any path from the inputs to an output
/// (t*t, 1 - t^2, dh*o, the product, the add, three more products and 1 - i).
const BACKWARD_ROUNDINGS: f64 = 10.0;

fn check_backward(kernels: &Kernels, inputs: &BackwardInputs, out: &BackwardOutputs) {
    let hidden = inputs.hidden;
    for b in 0..BATCH {
        for j in 0..hidden {
            let (want, size) = backward_f64(inputs, b, j);
            let got = unit_outputs(out, hidden, b, j);
            for (k, got) in got.into_iter().enumerate() {
                let tolerance = BACKWARD_ROUNDINGS * U * size[k];
                assert!(
                    (got as f64 - want[k]).abs() <= tolerance,
                    "{}, H = {hidden}: output {k} (dgates i, f, g, o, dc) of unit {j} row {b} = \
                     {got:e}, expected {:e} within {tolerance:e}",
                    kernels.isa(),
                    want[k]
                );
            }
        }
    }
}

#[test]
fn lstm_backward_matches_references_at_odd_sizes() {
    let scalar = Kernels::scalar();
    for (case, &hidden) in SIZES.iter().enumerate() {
        let inputs = random_backward_inputs(600 + case as u64, hidden);
        let scalar_out = run_backward(&scalar, &inputs);
        for kernels in paths() {
            let out = run_backward(&kernels, &inputs);
            check_backward(&kernels, &inputs, &out);

            // Both paths are within the f64 tolerance, so within twice it
            // of each other.
            for b in 0..BATCH {
                for j in 0..hidden {
                    let (_, size) = backward_f64(&inputs, b, j);
                    let got = unit_outputs(&out, hidden, b, j);
                    let want = unit_outputs(&scalar_out, hidden, b, j);
                    for (k, ((got, want), size)) in got.into_iter().zip(want).zip(size).enumerate()
                    {
                        let tolerance = 2.0 * BACKWARD_ROUNDINGS * U * size;
                        assert!(
                            (got as f64 - want as f64).abs() <= tolerance,
                            "{}, H = {hidden}: output {k} of unit {j} row {b} = {got:e}, \
                             scalar {want:e}",
                            kernels.isa()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn lstm_backward_saturated_gates_give_exact_zeros() {
    for kernels in paths() {
        for (case, &hidden) in SIZES.iter().enumerate() {
            let mut inputs = random_backward_inputs(700 + case as u64, hidden);
            // i = 1, f = 0, g = +-1, o = 1 and tanh(c) = +-1: every gate
            // derivative vanishes, dcell = dc and dc_prev = dcell * f = 0.
            for row in inputs.gates.chunks_exact_mut(4 * hidden) {
                row[..hidden].fill(1.0);
                row[hidden..2 * hidden].fill(0.0);
                for (n, g) in row[2 * hidden..3 * hidden].iter_mut().enumerate() {
                    *g = if n % 2 == 0 { 1.0 } else { -1.0 };
                }
                row[3 * hidden..].fill(1.0);
            }
            for (n, t) in inputs.tanh_c.iter_mut().enumerate() {
                *t = if n % 3 == 0 { -1.0 } else { 1.0 };
            }
            let out = run_backward(&kernels, &inputs);
            for (at, &d) in out.dgates.iter().enumerate() {
                assert_eq!(d, 0.0, "{}, H = {hidden}: dgates[{at}]", kernels.isa());
            }
            for (at, &d) in out.dc.iter().enumerate() {
                assert_eq!(d, 0.0, "{}, H = {hidden}: dc[{at}]", kernels.isa());
            }
        }
    }
}

#[test]
fn lstm_forward_then_backward_at_plus_minus_100_is_finite() {
    for kernels in paths() {
        for (case, &hidden) in SIZES.iter().enumerate() {
            let mut forward = random_forward_inputs(800 + case as u64, hidden, 1.0);
            let mut rng = rng(900 + case as u64);
            for a in &mut forward.gates {
                *a = if below(&mut rng, 2) == 0 {
                    100.0
                } else {
                    -100.0
                };
            }
            let out = run_forward(&kernels, &forward);
            let inputs = BackwardInputs {
                hidden,
                gates: out.gates,
                c_prev: forward.c_prev,
                tanh_c: out.tanh_c,
                dh: uniform_vec(&mut rng, BATCH * hidden, -1.0, 1.0),
                dc: uniform_vec(&mut rng, BATCH * hidden, -1.0, 1.0),
            };
            let back = run_backward(&kernels, &inputs);
            assert!(
                back.dgates.iter().chain(&back.dc).all(|d| d.is_finite()),
                "{}, H = {hidden}: a saturated step gave a non-finite gradient",
                kernels.isa()
            );
            check_backward(&kernels, &inputs, &back);
        }
    }
}

#[test]
fn lstm_backward_nan_stays_in_its_unit() {
    for kernels in paths() {
        for (case, &hidden) in SIZES.iter().enumerate() {
            let mut inputs = random_backward_inputs(1000 + case as u64, hidden);
            let unit = below(&mut rng(1100 + case as u64), hidden);
            inputs.dh[hidden + unit] = f32::NAN;
            let out = run_backward(&kernels, &inputs);
            for (at, &d) in out.dgates.iter().enumerate() {
                let hit = at / (4 * hidden) == 1 && at % hidden == unit;
                assert_eq!(
                    d.is_nan(),
                    hit,
                    "{}, H = {hidden}: dgates[{at}]",
                    kernels.isa()
                );
            }
            for (at, &d) in out.dc.iter().enumerate() {
                let hit = at == hidden + unit;
                assert_eq!(d.is_nan(), hit, "{}, H = {hidden}: dc[{at}]", kernels.isa());
            }
        }
    }
}

#[test]
fn lstm_accepts_zero_hidden_and_zero_batch() {
    for kernels in paths() {
        kernels.lstm_forward(3, 0, &mut [], &[], &[], &mut [], &mut [], &mut []);
        kernels.lstm_backward(3, 0, &[], &[], &[], &[], &mut [], &mut []);
        let bias = [0.5f32; 8];
        kernels.lstm_forward(0, 2, &mut [], &bias, &[], &mut [], &mut [], &mut []);
        kernels.lstm_backward(0, 2, &[], &[], &[], &[], &mut [], &mut []);
    }
}

#[test]
#[should_panic(expected = "lstm_forward: gates must be (B, 4H)")]
fn lstm_forward_rejects_short_gates() {
    let mut gates = [0.0f32; 7];
    let state = [0.0f32; 2];
    let (mut c, mut h, mut t) = (state, state, state);
    Kernels::scalar().lstm_forward(1, 2, &mut gates, &[0.0; 8], &state, &mut c, &mut h, &mut t);
}
