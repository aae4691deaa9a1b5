//! Perplexity of a model on a token sequence.

use crate::model::Model;
use crate::step::{Compute, Mode, forward};
use crate::workspace::Workspace;

/// Evaluation protocol: the tokens predicted and how streams are cut.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Protocol {
    /// Every token predicted exactly once: the first from the `<eos>` that
    /// ends the (implicit) previous sentence, each later one from all tokens
    /// before it. B contiguous streams with state carried; a stream's last
    /// window may be shorter and the last stream may end early.
    Full,
    /// The textbook's variant: B = 10 streams with offsets (N - 1)/B apart,
    /// positions taken modulo N - 1 (wrap-around), and only
    /// floor((N - 1) / (B T)) whole windows, so the leftover is dropped.
    Book,
}

/// Summed negative log-likelihood over a number of predicted tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    pub nll: f64,
    pub tokens: usize,
}

impl EvalResult {
    /// exp(mean negative log-likelihood).
    pub fn perplexity(&self) -> f64 {
        (self.nll / self.tokens as f64).exp()
    }
}

/// Evaluation buffers for B streams by T steps, reused across calls.
pub struct Evaluator {
    ws: Workspace,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl Evaluator {
    pub fn new(model: &Model, batch: usize, steps: usize) -> Evaluator {
        let rows = batch * steps;
        Evaluator {
            ws: Workspace::new(&model.config, batch, steps, false),
            inputs: vec![0; rows],
            targets: vec![0; rows],
        }
    }

    /// Scores `tokens` under `protocol`, starting from a zero state.
    /// `eos` is the id that precedes the first token in [`Protocol::Full`].
    pub fn evaluate(
        &mut self,
        cx: Compute,
        model: &Model,
        tokens: &[u32],
        eos: u32,
        protocol: Protocol,
    ) -> EvalResult {
        self.ws.reset_state();
        match protocol {
            Protocol::Full => self.evaluate_full(cx, model, tokens, eos),
            Protocol::Book => self.evaluate_book(cx, model, tokens),
        }
    }

    fn evaluate_full(
        &mut self,
        cx: Compute,
        model: &Model,
        tokens: &[u32],
        eos: u32,
    ) -> EvalResult {
        let (batch, steps) = (self.ws.batch, self.ws.steps);
        let predictions = tokens.len();
        let stream_len = predictions.div_ceil(batch);

        // Prediction p has input tokens[p - 1] (or eos for p = 0) and target tokens[p].
        let input_at = |p: usize| if p == 0 { eos } else { tokens[p - 1] };
        let mut result = EvalResult {
            nll: 0.0,
            tokens: 0,
        };
        let mut offset = 0;
        while offset < stream_len {
            let n = steps.min(stream_len - offset);
            for t in 0..n {
                for b in 0..batch {
                    let p = b * stream_len + offset + t;
                    // Past the end (only in the last stream): any valid id,
                    // excluded from the sum below.
                    let row = t * batch + b;
                    if p < predictions {
                        self.inputs[row] = input_at(p);
                        self.targets[row] = tokens[p];
                    } else {
                        self.inputs[row] = eos;
                        self.targets[row] = eos;
                    }
                }
            }
            let rows = n * batch;
            forward(
                cx,
                model,
                &mut self.ws,
                &self.inputs[..rows],
                &self.targets[..rows],
                n,
                Mode::Eval,
            );
            for (row, &log_prob) in self.ws.log_probs(n).iter().enumerate() {
                let p = (row % batch) * stream_len + offset + row / batch;
                if p < predictions {
                    result.nll -= log_prob as f64;
                    result.tokens += 1;
                }
            }
            self.ws.carry_state(n);
            offset += n;
        }
        result
    }

    fn evaluate_book(&mut self, cx: Compute, model: &Model, tokens: &[u32]) -> EvalResult {
        let (batch, steps) = (self.ws.batch, self.ws.steps);
        let data_size = tokens.len().saturating_sub(1);
        let jump = data_size / batch;
        let windows = data_size / (batch * steps);
        let rows = batch * steps;
        let mut result = EvalResult {
            nll: 0.0,
            tokens: 0,
        };
        for window in 0..windows {
            for t in 0..steps {
                for b in 0..batch {
                    let position = (b * jump + window * steps + t) % data_size;
                    self.inputs[t * batch + b] = tokens[position];
                    self.targets[t * batch + b] = tokens[position + 1];
                }
            }
            result.nll += forward(
                cx,
                model,
                &mut self.ws,
                &self.inputs[..rows],
                &self.targets[..rows],
                steps,
                Mode::Eval,
            );
            result.tokens += rows;
            self.ws.carry_state(steps);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Init, ModelConfig};
    use rnnlm_kernels::Kernels;

    fn model() -> Model {
        let config = ModelConfig {
            vocab: 11,
            embed: 6,
            hidden: 6,
            layers: 2,
            tied: true,
        };
        Model::new(config, Init::Uniform(0.3), 2).unwrap()
    }

    #[test]
    fn full_protocol_predicts_every_token_once() {
        let model = model();
        let cx = Compute::new(Kernels::scalar(), 1);
        let tokens: Vec<u32> = (0..23u32).map(|i| (i * 5 + 1) % 11).collect();
        // 23 tokens in 3 streams of 8 (the last stream has 7), windows of 4:
        // the last stream ends inside the second window.
        let mut evaluator = Evaluator::new(&model, 3, 4);
        let result = evaluator.evaluate(cx, &model, &tokens, 0, Protocol::Full);
        assert_eq!(result.tokens, 23);

        // One stream with one-step windows scores the same predictions from
        // the same contexts, so the sum matches up to rounding.
        let mut single = Evaluator::new(&model, 1, 1);
        let reference = single.evaluate(cx, &model, &tokens, 0, Protocol::Full);
        assert_eq!(reference.tokens, 23);
        let mut one_stream = Evaluator::new(&model, 1, 4);
        let windowed = one_stream.evaluate(cx, &model, &tokens, 0, Protocol::Full);
        assert!(
            (windowed.nll - reference.nll).abs() < 1e-4,
            "{} vs {}",
            windowed.nll,
            reference.nll
        );
    }

    #[test]
    fn book_protocol_drops_the_leftover() {
        let model = model();
        let cx = Compute::new(Kernels::scalar(), 1);
        let tokens: Vec<u32> = (0..50u32).map(|i| (i * 3) % 11).collect();
        // 49 predictions, windows of 2 streams x 4 steps: 6 whole windows.
        let mut evaluator = Evaluator::new(&model, 2, 4);
        let result = evaluator.evaluate(cx, &model, &tokens, 0, Protocol::Book);
        assert_eq!(result.tokens, 48);
        assert!(result.perplexity().is_finite());
    }
}
