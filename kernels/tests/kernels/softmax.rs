//! Softmax cross-entropy and log-softmax scoring on every path, against the
//! scalar path and an f64 reference, at vocabulary sizes with every tail
//! length and several blocks, with logits of magnitude 1e4 and NaN.

use rnnlm_kernels::Kernels;

use crate::common::{SIZES, below, paths, rng, uniform_vec};

const ROWS: usize = 3;

/// Max error of one row's loss (and of log softmax at the target) against
/// f64. The loss is max + ln(sum) - x[target], so its absolute error is the
/// relative error of the f32 sum of V exponentials. The largest seen over
/// 200 random rows of 10 000 logits in [-10, 10] was 3.4e-7 (x86_64, every
/// path). Dropping a typical term of such a row (about 1/V of the sum)
/// changes the loss by about 1e-4.
const LOSS_TOLERANCE: f64 = 2e-6;

/// Max relative error of one gradient element against f64. The scalar path
/// rounds x - max to f32 before e^(x - max), and the SIMD paths round
/// x - m_k, with m_k the running maximum after the element's block, before
/// e^(x - m_k). For differences below 104 (past that the term underflows)
/// this costs up to 3.8e-6 relative, to which the error of the sum and a
/// few roundings add. The SIMD paths take m_k - max exactly.
const GRADIENT_RELATIVE_TOLERANCE: f64 = 6e-6;

struct Reference {
    loss: Vec<f64>,
    gradient: Vec<f64>,
}

/// Softmax cross-entropy of every row in f64, from the f32 logits.
fn reference(vocab: usize, logits: &[f32], targets: &[u32], scale: f64) -> Reference {
    let mut loss = Vec::new();
    let mut gradient = Vec::new();
    for (row, &target) in logits.chunks_exact(vocab).zip(targets) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        loss.push(max + sum.ln() - row[target as usize] as f64);
        for (j, &x) in row.iter().enumerate() {
            let p = (x as f64 - max).exp() / sum;
            let onehot = if j == target as usize { 1.0 } else { 0.0 };
            gradient.push((p - onehot) * scale);
        }
    }
    Reference { loss, gradient }
}

struct Case {
    vocab: usize,
    logits: Vec<f32>,
    targets: Vec<u32>,
    scale: f32,
}

fn random_case(seed: u64, vocab: usize, magnitude: f32) -> Case {
    let mut rng = rng(seed);
    Case {
        vocab,
        logits: uniform_vec(&mut rng, ROWS * vocab, -magnitude, magnitude),
        targets: (0..ROWS).map(|_| below(&mut rng, vocab) as u32).collect(),
        scale: 1.0 / ROWS as f32,
    }
}

/// Runs both entry points on one path: (loss sum, gradient, log probs,
/// log prob sum).
fn run(kernels: &Kernels, case: &Case) -> (f64, Vec<f32>, Vec<f32>, f64) {
    let mut log_probs = vec![f32::NAN; ROWS];
    let total = kernels.log_softmax_at(
        ROWS,
        case.vocab,
        &case.logits,
        &case.targets,
        &mut log_probs,
    );
    let mut gradient = case.logits.clone();
    let loss =
        kernels.softmax_cross_entropy(ROWS, case.vocab, &mut gradient, &case.targets, case.scale);
    (loss, gradient, log_probs, total)
}

fn check_case(kernels: &Kernels, case: &Case, label: &str) {
    let path = kernels.isa();
    let vocab = case.vocab;
    let want = reference(vocab, &case.logits, &case.targets, case.scale as f64);
    let (loss, gradient, log_probs, total) = run(kernels, case);

    // Both entry points share the row maximum and sum, so scoring returns
    // exactly the negated loss.
    assert_eq!(
        total, -loss,
        "{path}, {label}, V = {vocab}: log prob sum vs loss"
    );
    let want_loss: f64 = want.loss.iter().sum();
    assert!(
        (loss - want_loss).abs() <= ROWS as f64 * LOSS_TOLERANCE,
        "{path}, {label}, V = {vocab}: loss {loss}, expected {want_loss}"
    );
    for (r, (&log_prob, &row_loss)) in log_probs.iter().zip(&want.loss).enumerate() {
        assert!(
            (log_prob as f64 + row_loss).abs()
                <= LOSS_TOLERANCE + row_loss.abs() * f32::EPSILON as f64,
            "{path}, {label}, V = {vocab}: log prob of row {r} = {log_prob}, expected {}",
            -row_loss
        );
    }

    let scale = case.scale as f64;
    for (at, (&got, &want)) in gradient.iter().zip(&want.gradient).enumerate() {
        let is_target = at % vocab == case.targets[at / vocab] as usize;
        // The target element is p * scale - scale, rounded after the
        // subtraction, so its error is relative to scale; others are
        // relative to themselves. The floor covers probabilities that
        // underflow f32.
        let size = if is_target { scale } else { want.abs() };
        let tolerance = GRADIENT_RELATIVE_TOLERANCE * size + f32::MIN_POSITIVE as f64;
        assert!(
            (got as f64 - want).abs() <= tolerance,
            "{path}, {label}, V = {vocab}: gradient[{at}] = {got:e}, expected {want:e}"
        );
    }
}

#[test]
fn softmax_matches_f64_at_odd_vocab_sizes() {
    for (seed, &vocab) in SIZES.iter().enumerate() {
        let case = random_case(seed as u64, vocab, 10.0);
        for kernels in paths() {
            check_case(&kernels, &case, "logits in [-10, 10]");
        }
    }
}

#[test]
fn softmax_matches_scalar_at_odd_vocab_sizes() {
    let scalar = Kernels::scalar();
    for (seed, &vocab) in SIZES.iter().enumerate() {
        let case = random_case(50 + seed as u64, vocab, 10.0);
        let (want_loss, want_gradient, want_log_probs, _) = run(&scalar, &case);
        for kernels in paths() {
            let path = kernels.isa();
            let (loss, gradient, log_probs, _) = run(&kernels, &case);
            // Both are within the f64 tolerances, so within twice them.
            assert!(
                (loss - want_loss).abs() <= 2.0 * ROWS as f64 * LOSS_TOLERANCE,
                "{path}, V = {vocab}: loss {loss}, scalar {want_loss}"
            );
            for (r, (&got, &want)) in log_probs.iter().zip(&want_log_probs).enumerate() {
                assert!(
                    (got - want).abs() as f64 <= 2.0 * LOSS_TOLERANCE + 1e-6 * want.abs() as f64,
                    "{path}, V = {vocab}: log prob of row {r} = {got}, scalar {want}"
                );
            }
            for (at, (&got, &want)) in gradient.iter().zip(&want_gradient).enumerate() {
                let size = want.abs().max(case.scale * f32::EPSILON) as f64;
                assert!(
                    (got - want).abs() as f64 <= 2.0 * GRADIENT_RELATIVE_TOLERANCE * size + 1e-37,
                    "{path}, V = {vocab}: gradient[{at}] = {got:e}, scalar {want:e}"
                );
            }
        }
    }
}

#[test]
fn softmax_stays_finite_for_logits_of_magnitude_1e4() {
    for (seed, &vocab) in SIZES.iter().enumerate() {
        let case = random_case(100 + seed as u64, vocab, 1e4);
        for kernels in paths() {
            let (loss, gradient, _, _) = run(&kernels, &case);
            assert!(
                loss.is_finite(),
                "{}, V = {vocab}: loss {loss}",
                kernels.isa()
            );
            assert!(gradient.iter().all(|g| g.is_finite()));
            check_case(&kernels, &case, "logits in [-1e4, 1e4]");
        }
    }
}

#[test]
fn softmax_of_equal_logits_1e4_is_uniform() {
    for &vocab in &SIZES {
        let case = Case {
            vocab,
            logits: vec![1e4; ROWS * vocab],
            targets: (0..ROWS).map(|r| ((r * 7) % vocab) as u32).collect(),
            scale: 0.25,
        };
        for kernels in paths() {
            let path = kernels.isa();
            let (loss, gradient, _, _) = run(&kernels, &case);
            // Every e^(x - max) is exactly 1 and V is exact in f32, so only
            // the f64 logarithm rounds.
            let want = ROWS as f64 * (vocab as f64).ln();
            assert!(
                (loss - want).abs() <= 1e-12 * want.max(1.0),
                "{path}, V = {vocab}: loss {loss}, expected {want}"
            );
            let p = 0.25 / vocab as f32;
            for (at, &g) in gradient.iter().enumerate() {
                let is_target = at % vocab == case.targets[at / vocab] as usize;
                let want = if is_target { p - 0.25 } else { p };
                assert_eq!(g, want, "{path}, V = {vocab}: gradient[{at}]");
            }
        }
    }
}

#[test]
fn softmax_rescales_when_max_rises() {
    // Rising logits make every block of 2048 columns raise the running
    // maximum, so the sum is rescaled four times in a row of 10 000;
    // falling logits never rescale.
    for vocab in [2049, 4097, 10000] {
        let rising: Vec<f32> = (0..vocab).map(|j| j as f32 * 0.01 - 40.0).collect();
        let mut falling = rising.clone();
        falling.reverse();
        let mut logits = rising.clone();
        logits.extend_from_slice(&falling);
        logits.extend_from_slice(&rising);
        let case = Case {
            vocab,
            logits,
            targets: vec![(vocab - 1) as u32, 0, 3],
            scale: 1.0,
        };
        for kernels in paths() {
            check_case(&kernels, &case, "monotone logits");
        }
    }
}

#[test]
fn softmax_long_rows_use_longer_blocks() {
    // Past 64 blocks of 2048 columns the SIMD paths lengthen their blocks,
    // so a row of 200 003 columns has 64 blocks of 3126 and a short last
    // one. Rising logits make every block raise the running maximum.
    let vocab = 200_003;
    let rising: Vec<f32> = (0..vocab).map(|j| j as f32 * 1e-3 - 150.0).collect();
    let mut falling = rising.clone();
    falling.reverse();
    let mut logits = rising.clone();
    logits.extend_from_slice(&falling);
    logits.extend(uniform_vec(&mut rng(7), vocab, -10.0, 10.0));
    let case = Case {
        vocab,
        logits,
        targets: vec![(vocab - 1) as u32, 5, 100_000],
        scale: 0.5,
    };
    for kernels in paths() {
        check_case(&kernels, &case, "long rows");
    }
}

#[test]
fn softmax_nan_logit_poisons_only_its_row() {
    for kernels in paths() {
        let path = kernels.isa();
        for (seed, &vocab) in SIZES.iter().enumerate() {
            let case = random_case(200 + seed as u64, vocab, 10.0);
            let (_, clean_gradient, clean_log_probs, _) = run(&kernels, &case);
            let positions = [0, vocab / 2, vocab - 1, vocab.saturating_sub(17)];
            for nan_at in positions {
                let mut nan_case = Case {
                    vocab,
                    logits: case.logits.clone(),
                    targets: case.targets.clone(),
                    scale: case.scale,
                };
                let row = 1;
                nan_case.logits[row * vocab + nan_at] = f32::NAN;
                let (loss, gradient, log_probs, _) = run(&kernels, &nan_case);

                assert!(
                    loss.is_nan(),
                    "{path}, V = {vocab}, NaN at {nan_at}: loss {loss}"
                );
                for r in 0..ROWS {
                    if r == row {
                        assert!(log_probs[r].is_nan(), "{path}, V = {vocab}: log prob");
                    } else {
                        assert_eq!(log_probs[r], clean_log_probs[r], "{path}, V = {vocab}");
                    }
                }
                for (at, (&g, &clean)) in gradient.iter().zip(&clean_gradient).enumerate() {
                    if at / vocab == row {
                        assert!(
                            g.is_nan(),
                            "{path}, V = {vocab}, NaN at {nan_at}: gradient[{at}]"
                        );
                    } else {
                        assert_eq!(g, clean, "{path}, V = {vocab}: gradient[{at}]");
                    }
                }
            }
        }
    }
}

#[test]
fn softmax_accepts_zero_rows() {
    for kernels in paths() {
        assert_eq!(kernels.softmax_cross_entropy(0, 5, &mut [], &[], 1.0), 0.0);
        assert_eq!(kernels.log_softmax_at(0, 5, &[], &[], &mut []), 0.0);
    }
}

#[test]
#[should_panic(expected = "target 5 of row 0 is not below V = 5")]
fn softmax_rejects_target_out_of_range() {
    let mut logits = [0.0f32; 5];
    Kernels::scalar().softmax_cross_entropy(1, 5, &mut logits, &[5], 1.0);
}
