//! Whole-model gradients against central finite differences.

use rnnlm::model::{Init, Model, ModelConfig};
use rnnlm::step::{Compute, Mode, backward, forward};
use rnnlm::workspace::{Dropout, Workspace};
use rnnlm_kernels::{Kernels, dropout_rng};

const BATCH: usize = 2;
const STEPS: usize = 3;

/// A non-zero state to start the checked window from, as if carried from an
/// earlier window: (h, c) per layer. Fixed, so finite differences do not
/// see a path through earlier windows that truncated BPTT leaves out.
fn carried_state(config: &ModelConfig) -> Vec<(Vec<f32>, Vec<f32>)> {
    let len = BATCH * config.hidden;
    (0..config.layers)
        .map(|l| {
            let h = (0..len)
                .map(|i| ((i + l) as f32 * 0.37).sin() * 0.5)
                .collect();
            let c = (0..len)
                .map(|i| ((i + 2 * l) as f32 * 0.71).cos())
                .collect();
            (h, c)
        })
        .collect()
}

fn warmed_workspace(model: &Model) -> Workspace {
    let mut ws = Workspace::new(&model.config, BATCH, STEPS, true);
    for (l, (h, c)) in carried_state(&model.config).iter().enumerate() {
        ws.set_carried_state(l, h, c);
    }
    ws
}

fn mean_loss(cx: Compute, model: &Model, inputs: &[u32], targets: &[u32]) -> f64 {
    let mut ws = warmed_workspace(model);
    let mut rng = dropout_rng(1);
    let mode = Mode::Train {
        dropout: &Dropout::OFF,
        rng: &mut rng,
    };
    forward(cx, model, &mut ws, inputs, targets, STEPS, mode) / (BATCH * STEPS) as f64
}

fn check_model(tied: bool) {
    let config = ModelConfig {
        vocab: 7,
        embed: 5,
        hidden: 5,
        layers: 2,
        tied,
    };
    let mut model = Model::new(config.clone(), Init::Uniform(0.5), 3).unwrap();
    let inputs: Vec<u32> = vec![1, 4, 6, 0, 2, 2];
    let targets: Vec<u32> = vec![4, 6, 0, 3, 2, 5];

    for isa in [rnnlm_kernels::Isa::Scalar, rnnlm_kernels::Isa::detect()] {
        let cx = Compute::new(Kernels::new(isa).unwrap(), 1);
        let mut ws = warmed_workspace(&model);
        let mut rng = dropout_rng(1);
        let mode = Mode::Train {
            dropout: &Dropout::OFF,
            rng: &mut rng,
        };
        forward(cx, &model, &mut ws, &inputs, &targets, STEPS, mode);
        let mut grads = vec![f32::NAN; model.layout.total];
        backward(
            cx,
            &model,
            &mut ws,
            &inputs,
            STEPS,
            &Dropout::OFF,
            &mut grads,
        );

        for (i, &analytic) in grads.iter().enumerate() {
            let saved = model.params[i];
            let eps = 1e-2f32;
            model.params[i] = saved + eps;
            let up = mean_loss(cx, &model, &inputs, &targets);
            model.params[i] = saved - eps;
            let down = mean_loss(cx, &model, &inputs, &targets);
            model.params[i] = saved;
            let numeric = (up - down) / (2.0 * eps as f64);
            let analytic = analytic as f64;
            // Central differences with eps 1e-2 on an f32 loss: truncation
            // error O(eps^2) plus rounding of about 1e-7 / eps.
            assert!(
                (analytic - numeric).abs() <= 2e-4 + 1e-2 * numeric.abs(),
                "{isa} tied={tied}: parameter {i}: analytic {analytic} numeric {numeric}"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences_tied() {
    check_model(true);
}

#[test]
fn gradients_match_finite_differences_untied() {
    check_model(false);
}
