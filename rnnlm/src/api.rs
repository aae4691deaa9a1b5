//! A trained model for tools that embed one: sentence scoring (for n-best
//! rescoring, say) and text generation.
//!
//! Sentences follow the Penn Treebank convention. Every sentence is scored on
//! its own, from a zero state, with `<eos>` as the context of its first word
//! and `<eos>` appended as its final target, so a sentence of n words has
//! n + 1 predicted tokens. Words are split on whitespace, and a word outside
//! the vocabulary maps to `<unk>` (an error when the vocabulary has none).
//!
//! Threads: every call runs on rayon's current pool (the global pool, or the
//! pool whose `install` the call runs in). The library never builds a global
//! pool itself, so the embedding program sizes it.

use std::cmp::Reverse;
use std::path::Path;

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rnnlm_kernels::Kernels;

use crate::checkpoint::{self, CheckpointError};
use crate::corpus::{EOS, UNK, Vocab};
use crate::model::Model;
use crate::step::{Compute, Mode, forward};
use crate::workspace::Workspace;

/// Sentences scored at once, as parallel streams, by default.
pub const DEFAULT_SCORE_BATCH: usize = 32;
/// Steps per window when scoring. Longer sentences take several windows,
/// with the state carried between them, so this bounds memory, not length.
pub const SCORE_WINDOW: usize = 32;

/// Errors of [`LanguageModel`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    #[error(
        "{}: word {word:?} is not in the vocabulary, which has no `{UNK}` entry to map it to; \
         remove the word or use a model whose vocabulary has `{UNK}`",
        match sentence {
            Some(index) => format!("sentence {}", index + 1),
            None => "the prompt".to_string(),
        }
    )]
    UnknownWord {
        word: String,
        /// The index of the sentence in the slice scored, `None` in a prompt.
        sentence: Option<usize>,
    },

    #[error(
        "the vocabulary has no `{EOS}` entry, which marks sentence boundaries; use a model \
         trained on text with line ends"
    )]
    MissingEos,

    #[error(
        "the vocabulary has {vocab} words but the model expects {expected}; pass the vocabulary \
         the model was trained with"
    )]
    VocabMismatch { vocab: usize, expected: usize },

    #[error(
        "invalid temperature {0}: expected a finite number >= 0 (0 picks the most likely word)"
    )]
    InvalidTemperature(f32),

    #[error("invalid score batch size 0: expected at least 1 sentence")]
    InvalidBatch,
}

/// The score of one sentence: its `<eos>` counted as a token.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceScore {
    /// Natural log of the probability of the sentence (the sum over tokens).
    pub log_prob: f64,
    /// Predicted tokens: the words and the closing `<eos>`.
    pub tokens: usize,
    /// exp(-log_prob / tokens).
    pub perplexity: f64,
    /// ln p of each predicted token, in order, the closing `<eos>` last.
    pub token_log_probs: Vec<f32>,
}

impl SentenceScore {
    /// Returns the base-10 logarithm of the probability of the sentence.
    pub fn log10_prob(&self) -> f64 {
        self.log_prob / std::f64::consts::LN_10
    }
}

/// A model with its vocabulary and the buffers its calls reuse.
pub struct LanguageModel {
    model: Model,
    vocab: Vocab,
    eos: u32,
    kernels: Kernels,
    score_batch: usize,
    /// Scoring workspaces, at most two: one for full batches and one for the
    /// last, smaller batch of a call. Each is `(batch, SCORE_WINDOW)`.
    score_workspaces: Vec<Workspace>,
    /// Input and target ids of one scoring window, `(SCORE_WINDOW, batch)`.
    inputs: Vec<u32>,
    targets: Vec<u32>,
    /// One stream of one step, for generation.
    generate_workspace: Workspace,
}

impl LanguageModel {
    /// Loads a checkpoint written by `rnnlm train` or [`checkpoint::save`].
    pub fn load(path: &Path) -> Result<LanguageModel, ApiError> {
        let loaded = checkpoint::load(path)?;
        LanguageModel::new(loaded.model, loaded.vocab)
    }

    /// Wraps a model and its vocabulary. The kernels are the process-wide
    /// ones ([`Kernels::process`]).
    pub fn new(model: Model, vocab: Vocab) -> Result<LanguageModel, ApiError> {
        if vocab.len() != model.config.vocab {
            return Err(ApiError::VocabMismatch {
                vocab: vocab.len(),
                expected: model.config.vocab,
            });
        }
        let eos = vocab.eos().ok_or(ApiError::MissingEos)?;
        let generate_workspace = Workspace::new(&model.config, 1, 1, false);
        Ok(LanguageModel {
            model,
            vocab,
            eos,
            kernels: Kernels::process(),
            score_batch: DEFAULT_SCORE_BATCH,
            score_workspaces: Vec::new(),
            inputs: Vec::new(),
            targets: Vec::new(),
            generate_workspace,
        })
    }

    /// Returns the vocabulary, indexed by token id.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Returns the model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Sets how many sentences [`score_sentences`](Self::score_sentences)
    /// runs at once as parallel streams. Larger batches use the matrix
    /// kernels better, and memory grows with batch x [`SCORE_WINDOW`] x
    /// vocabulary size.
    pub fn set_score_batch(&mut self, batch: usize) -> Result<(), ApiError> {
        if batch == 0 {
            return Err(ApiError::InvalidBatch);
        }
        self.score_batch = batch;
        self.score_workspaces.clear();
        Ok(())
    }

    /// Scores each sentence on its own (see the module documentation for the
    /// convention) and returns the scores in the order of `sentences`.
    ///
    /// Sentences are sorted by length and run in batches of up to the score
    /// batch size as parallel streams. Streams shorter than the longest of
    /// their batch are padded, and padded positions are left out of every
    /// sum. A sentence's score does not depend on its batch beyond float
    /// rounding of the matrix products.
    pub fn score_sentences(&mut self, sentences: &[&str]) -> Result<Vec<SentenceScore>, ApiError> {
        let encoded = sentences
            .iter()
            .enumerate()
            .map(|(index, text)| self.encode(text, Some(index)))
            .collect::<Result<Vec<_>, _>>()?;

        // Longest first, so each batch contains sentences of similar length.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&index| Reverse(encoded[index].len()));

        let mut scores: Vec<Option<SentenceScore>> = vec![None; encoded.len()];
        for group in order.chunks(self.score_batch) {
            let words: Vec<&[u32]> = group.iter().map(|&index| &encoded[index][..]).collect();
            let group_scores = self.score_batch_of(&words);
            for (&index, score) in group.iter().zip(group_scores) {
                scores[index] = Some(score);
            }
        }
        Ok(scores
            .into_iter()
            .map(|score| score.expect("every sentence is in one group"))
            .collect())
    }

    /// Scores up to `score_batch` encoded sentences as parallel streams, the
    /// longest first.
    fn score_batch_of(&mut self, sentences: &[&[u32]]) -> Vec<SentenceScore> {
        let batch = sentences.len();
        let eos = self.eos;
        let cx = self.compute();
        let ws = workspace_for(&mut self.score_workspaces, &self.model, batch);
        ws.reset_state();
        self.inputs.resize(batch * SCORE_WINDOW, 0);
        self.targets.resize(batch * SCORE_WINDOW, 0);

        // Sentence b of n words has n + 1 predictions: at position p the
        // input is <eos> (p = 0) or word p - 1, and the target is word p
        // (p < n) or <eos> (p = n).
        let predictions = |b: usize| sentences[b].len() + 1;
        let longest = (0..batch).map(predictions).max().unwrap_or(0);
        let mut token_log_probs: Vec<Vec<f32>> = (0..batch)
            .map(|b| Vec::with_capacity(predictions(b)))
            .collect();

        let mut offset = 0;
        while offset < longest {
            let steps = SCORE_WINDOW.min(longest - offset);
            for t in 0..steps {
                let p = offset + t;
                for (b, words) in sentences.iter().enumerate() {
                    let row = t * batch + b;
                    // Past the end of a shorter sentence: padding, any valid
                    // id, left out below.
                    let (input, target) = if p > words.len() {
                        (eos, eos)
                    } else {
                        let input = if p == 0 { eos } else { words[p - 1] };
                        (input, words.get(p).copied().unwrap_or(eos))
                    };
                    self.inputs[row] = input;
                    self.targets[row] = target;
                }
            }

            let rows = steps * batch;
            forward(
                cx,
                &self.model,
                ws,
                &self.inputs[..rows],
                &self.targets[..rows],
                steps,
                Mode::Eval,
            );
            for (row, &log_prob) in ws.log_probs(steps).iter().enumerate() {
                let (t, b) = (row / batch, row % batch);
                if offset + t < predictions(b) {
                    token_log_probs[b].push(log_prob);
                }
            }
            ws.carry_state(steps);
            offset += steps;
        }

        token_log_probs
            .into_iter()
            .map(|token_log_probs| {
                let log_prob: f64 = token_log_probs.iter().map(|&lp| lp as f64).sum();
                let tokens = token_log_probs.len();
                SentenceScore {
                    log_prob,
                    tokens,
                    perplexity: (-log_prob / tokens as f64).exp(),
                    token_log_probs,
                }
            })
            .collect()
    }

    /// Generates `max_words` tokens after `prompt` and returns them (the
    /// prompt not included), words separated by spaces.
    ///
    /// The model reads `<eos>`, then the prompt's words, then samples each
    /// next token from softmax(logits / `temperature`) and reads it back.
    /// Temperature 0 picks the most likely token (the lowest id on a tie).
    /// A sampled `<eos>` counts as one of the `max_words` tokens, is written
    /// as a newline, and generation goes on with the next sentence. `<unk>`
    /// may be sampled like any other word. The same seed, prompt and
    /// temperature give the same text with the same kernels.
    pub fn generate(
        &mut self,
        prompt: &str,
        max_words: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<String, ApiError> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(ApiError::InvalidTemperature(temperature));
        }
        let prompt_ids = self.encode(prompt, None)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);

        self.generate_workspace.reset_state();
        let eos = self.eos;
        for id in std::iter::once(eos).chain(prompt_ids) {
            self.read_token(id);
        }

        let vocab_size = self.model.config.vocab;
        let mut text = String::new();
        for generated in 0..max_words {
            let logits = &self.generate_workspace.logits(1)[..vocab_size];
            let id = if temperature == 0.0 {
                argmax(logits)
            } else {
                sample(logits, temperature, uniform01(&mut rng))
            };
            if id == self.eos {
                text.push('\n');
            } else {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push(' ');
                }
                text.push_str(self.vocab.word(id));
            }
            // The last token's successor is never needed.
            if generated + 1 < max_words {
                self.read_token(id);
            }
        }
        Ok(text)
    }

    /// Runs one step of the generation stream on `id` and carries its state,
    /// leaving the logits of the next token in the workspace.
    fn read_token(&mut self, id: u32) {
        let cx = self.compute();
        let ids = [id];
        forward(
            cx,
            &self.model,
            &mut self.generate_workspace,
            &ids,
            &ids,
            1,
            Mode::Eval,
        );
        self.generate_workspace.carry_state(1);
    }

    /// Splits `text` on whitespace into ids, mapping unknown words to `<unk>`.
    /// `sentence` is the text's index for an error, `None` for a prompt.
    fn encode(&self, text: &str, sentence: Option<usize>) -> Result<Vec<u32>, ApiError> {
        let unk = self.vocab.unk();
        text.split_whitespace()
            .map(|word| {
                self.vocab
                    .id(word)
                    .or(unk)
                    .ok_or_else(|| ApiError::UnknownWord {
                        word: word.to_string(),
                        sentence,
                    })
            })
            .collect()
    }

    fn compute(&self) -> Compute {
        Compute::new(self.kernels, rayon::current_num_threads())
    }
}

/// Returns the cached scoring workspace for `batch` streams, building it
/// (and dropping the older of two cached ones) when missing.
fn workspace_for<'a>(
    workspaces: &'a mut Vec<Workspace>,
    model: &Model,
    batch: usize,
) -> &'a mut Workspace {
    match workspaces.iter().position(|ws| ws.batch == batch) {
        Some(index) => &mut workspaces[index],
        None => {
            if workspaces.len() == 2 {
                workspaces.remove(0);
            }
            workspaces.push(Workspace::new(&model.config, batch, SCORE_WINDOW, false));
            workspaces.last_mut().expect("just pushed")
        }
    }
}

/// Returns the index of the largest logit, the first one on a tie.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (id, &logit) in logits.iter().enumerate() {
        if logit > logits[best] {
            best = id;
        }
    }
    best as u32
}

/// Draws an id from softmax(logits / temperature) by inverting the
/// cumulative distribution at `u` in [0, 1).
fn sample(logits: &[f32], temperature: f32, u: f64) -> u32 {
    let temperature = temperature as f64;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let weight = |logit: f32| ((logit as f64 - max) / temperature).exp();
    let total: f64 = logits.iter().map(|&l| weight(l)).sum();

    let threshold = u * total;
    let mut cumulative = 0.0;
    for (id, &logit) in logits.iter().enumerate() {
        cumulative += weight(logit);
        if cumulative > threshold {
            return id as u32;
        }
    }
    // Rounding can leave the threshold just above the final sum.
    argmax(logits)
}

/// Draws a uniform f64 in [0, 1) from the top 53 bits of a u64.
fn uniform01(rng: &mut Xoshiro256PlusPlus) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_follows_cumulative_weights() {
        // Weights e^0, e^0, e^(ln 2) = 1, 1, 2 out of 4 at temperature 1.
        let logits = [0.0, 0.0, 2f32.ln()];
        assert_eq!(sample(&logits, 1.0, 0.0), 0);
        assert_eq!(sample(&logits, 1.0, 0.24), 0);
        assert_eq!(sample(&logits, 1.0, 0.26), 1);
        assert_eq!(sample(&logits, 1.0, 0.49), 1);
        assert_eq!(sample(&logits, 1.0, 0.51), 2);
        assert_eq!(sample(&logits, 1.0, 0.999_999), 2);
    }

    #[test]
    fn sample_sharpens_at_low_temperature() {
        // At temperature 0.01 the weights are e^0 and e^-100: all mass on id 1.
        let logits = [-1.0, 0.0];
        assert_eq!(sample(&logits, 0.01, 0.999_999), 1);
        assert_eq!(sample(&logits, 0.01, 1e-9), 1);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -2.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }
}
