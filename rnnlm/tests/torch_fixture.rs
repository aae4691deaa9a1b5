//! The model against a PyTorch forward and backward pass of the same tiny
//! model (`fixtures/make_fixture.py` writes the fixture): logits, loss,
//! final states and every gradient.

use rnnlm::model::{Model, ModelConfig, ParamLayout};
use rnnlm::step::{Compute, Mode, backward, forward};
use rnnlm::workspace::{Dropout, Workspace};
use rnnlm_kernels::{Isa, Kernels, dropout_rng};
use safetensors::SafeTensors;

const VOCAB: usize = 11;
const HIDDEN: usize = 6;
const LAYERS: usize = 2;
const BATCH: usize = 3;
const STEPS: usize = 4;

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn load() -> Fixture {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny_lstm.safetensors"
        );
        Fixture {
            bytes: std::fs::read(path).expect("fixture is committed"),
        }
    }

    fn f32(&self, name: &str) -> Vec<f32> {
        let tensors = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = tensors
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture has no tensor {name}"));
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// An int64 (B, T) batch-major tensor as (T, B) time-major u32 ids.
    fn ids_time_major(&self, name: &str) -> Vec<u32> {
        let tensors = SafeTensors::deserialize(&self.bytes).unwrap();
        let data = tensors.tensor(name).unwrap().data().to_vec();
        let batch_major: Vec<u32> = data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect();
        let mut out = vec![0; BATCH * STEPS];
        for b in 0..BATCH {
            for t in 0..STEPS {
                out[t * BATCH + b] = batch_major[b * STEPS + t];
            }
        }
        out
    }
}

/// Transposes a row-major (rows, cols) matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

fn model_from(fixture: &Fixture) -> Model {
    let config = ModelConfig {
        vocab: VOCAB,
        embed: HIDDEN,
        hidden: HIDDEN,
        layers: LAYERS,
        tied: true,
    };
    let total = ParamLayout::new(&config).total;
    let mut model = Model::from_params(config, vec![0.0; total]).unwrap();
    let layout = model.layout.clone();
    model.params[layout.embedding.clone()].copy_from_slice(&fixture.f32("encoder.weight"));
    for (l, ranges) in layout.layers.iter().enumerate() {
        let w_ih = fixture.f32(&format!("rnn.weight_ih_l{l}"));
        let w_hh = fixture.f32(&format!("rnn.weight_hh_l{l}"));
        model.params[ranges.wx.clone()].copy_from_slice(&transpose(&w_ih, 4 * HIDDEN, HIDDEN));
        model.params[ranges.wh.clone()].copy_from_slice(&transpose(&w_hh, 4 * HIDDEN, HIDDEN));
        let b_ih = fixture.f32(&format!("rnn.bias_ih_l{l}"));
        let b_hh = fixture.f32(&format!("rnn.bias_hh_l{l}"));
        for (out, (a, b)) in model.params[ranges.bias.clone()]
            .iter_mut()
            .zip(b_ih.iter().zip(&b_hh))
        {
            *out = a + b;
        }
    }
    model.params[layout.out_bias.clone()].copy_from_slice(&fixture.f32("decoder.bias"));
    model
}

/// The fixture was computed in f64 and rounded once; our f32 pass with its
/// polynomial exp and tanh stays within this of it on values of order 1.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tolerance = 2e-6 + 1e-4 * w.abs();
        assert!(
            (g - w).abs() <= tolerance,
            "{what}[{i}]: got {g}, PyTorch {w}"
        );
    }
}

fn paths() -> Vec<Compute> {
    Isa::ALL
        .iter()
        .filter(|isa| isa.is_available())
        .map(|&isa| Compute::new(Kernels::new(isa).unwrap(), 1))
        .collect()
}

#[test]
fn forward_matches_pytorch_logits_loss_and_states() {
    let fixture = Fixture::load();
    let model = model_from(&fixture);
    let inputs = fixture.ids_time_major("input_ids");
    let targets = fixture.ids_time_major("target_ids");
    for cx in paths() {
        let mut ws = Workspace::new(&model.config, BATCH, STEPS, false);
        let nll = forward(cx, &model, &mut ws, &inputs, &targets, STEPS, Mode::Eval);
        let loss = fixture.f32("loss")[0];
        assert!(
            ((nll / (BATCH * STEPS) as f64) as f32 - loss).abs() < 1e-5,
            "{:?}: loss {nll} vs {loss}",
            cx.kernels.isa()
        );

        // Our rows are time-major, the fixture's (B, T, V) batch-major.
        let want = fixture.f32("logits");
        let got = ws.logits(STEPS);
        let mut reordered = vec![0.0; got.len()];
        for t in 0..STEPS {
            for b in 0..BATCH {
                let src = (t * BATCH + b) * VOCAB;
                let dst = (b * STEPS + t) * VOCAB;
                reordered[dst..dst + VOCAB].copy_from_slice(&got[src..src + VOCAB]);
            }
        }
        assert_close("logits", &reordered, &want);

        ws.carry_state(STEPS);
        let (h_n, c_n) = (fixture.f32("h_n"), fixture.f32("c_n"));
        let state = BATCH * HIDDEN;
        for l in 0..LAYERS {
            let (h, c) = ws.carried_state(l);
            assert_close(&format!("h_n[{l}]"), h, &h_n[l * state..(l + 1) * state]);
            assert_close(&format!("c_n[{l}]"), c, &c_n[l * state..(l + 1) * state]);
        }
    }
}

#[test]
fn backward_matches_pytorch_gradients() {
    let fixture = Fixture::load();
    let model = model_from(&fixture);
    let inputs = fixture.ids_time_major("input_ids");
    let targets = fixture.ids_time_major("target_ids");
    for cx in paths() {
        let mut ws = Workspace::new(&model.config, BATCH, STEPS, true);
        let mut rng = dropout_rng(0);
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

        let layout = &model.layout;
        assert_close(
            "grad.encoder.weight",
            &grads[layout.embedding.clone()],
            &fixture.f32("grad.encoder.weight"),
        );
        assert_close(
            "grad.decoder.bias",
            &grads[layout.out_bias.clone()],
            &fixture.f32("grad.decoder.bias"),
        );
        for (l, ranges) in layout.layers.iter().enumerate() {
            let w_ih = transpose(
                &fixture.f32(&format!("grad.rnn.weight_ih_l{l}")),
                4 * HIDDEN,
                HIDDEN,
            );
            let w_hh = transpose(
                &fixture.f32(&format!("grad.rnn.weight_hh_l{l}")),
                4 * HIDDEN,
                HIDDEN,
            );
            assert_close(
                &format!("grad.rnn.weight_ih_l{l}"),
                &grads[ranges.wx.clone()],
                &w_ih,
            );
            assert_close(
                &format!("grad.rnn.weight_hh_l{l}"),
                &grads[ranges.wh.clone()],
                &w_hh,
            );
            // Both PyTorch biases get the gradient our single bias gets.
            assert_close(
                &format!("grad.rnn.bias_ih_l{l}"),
                &grads[ranges.bias.clone()],
                &fixture.f32(&format!("grad.rnn.bias_ih_l{l}")),
            );
        }
    }
}
