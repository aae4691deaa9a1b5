//! The embedding API: sentence scores against batch-free and f64
//! references, generation against an independent argmax, loading.

mod tiny_model;

use std::collections::HashMap;

use rnnlm::api::{ApiError, LanguageModel, SCORE_WINDOW};
use rnnlm::checkpoint;
use rnnlm::corpus::Vocab;
use rnnlm::model::Model;
use rnnlm::step::{Compute, Mode, forward};
use rnnlm::workspace::Workspace;
use rnnlm_kernels::Kernels;

/// Sentences of 0 to 40 words: the longest spans two scoring windows.
fn sentences() -> Vec<String> {
    let long: Vec<&str> = ["the", "dog", "ran", "on", "a", "mat"]
        .iter()
        .cycle()
        .take(SCORE_WINDOW + 8)
        .copied()
        .collect();
    vec![
        "the cat sat on the mat".to_string(),
        String::new(),
        "dog".to_string(),
        long.join(" "),
        "a cat ran".to_string(),
        "the dog sat on a mat the cat ran".to_string(),
        "mat mat mat".to_string(),
    ]
}

fn ids(vocab: &Vocab, sentence: &str) -> Vec<u32> {
    sentence
        .split_whitespace()
        .map(|w| vocab.id(w).or(vocab.unk()).expect("word in vocabulary"))
        .collect()
}

/// ln p of each token of `sentence` and its closing `<eos>`, by running the
/// engine one step at a time on a single stream.
fn stepwise_log_probs(model: &Model, vocab: &Vocab, sentence: &str) -> Vec<f64> {
    let eos = vocab.eos().expect("tiny vocabulary has <eos>");
    let mut words = ids(vocab, sentence);
    words.push(eos);
    let cx = Compute::new(Kernels::process(), 1);
    let mut ws = Workspace::new(&model.config, 1, 1, false);
    let mut input = eos;
    let mut out = Vec::new();
    for &target in &words {
        let nll = forward(cx, model, &mut ws, &[input], &[target], 1, Mode::Eval);
        out.push(-nll);
        ws.carry_state(1);
        input = target;
    }
    out
}

/// ln p of each token of `sentence` and its closing `<eos>`, from a plain
/// f64 LSTM written out here, independent of the engine's kernels.
fn reference_log_probs(model: &Model, vocab: &Vocab, sentence: &str) -> Vec<f64> {
    let config = &model.config;
    let layout = &model.layout;
    let p = |i: usize| model.params[i] as f64;
    let (v, h) = (config.vocab, config.hidden);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let eos = vocab.eos().expect("tiny vocabulary has <eos>");
    let mut words = ids(vocab, sentence);
    words.push(eos);

    let mut hs = vec![vec![0.0f64; h]; config.layers];
    let mut cs = vec![vec![0.0f64; h]; config.layers];
    let mut input = eos;
    let mut out = Vec::new();
    for &target in &words {
        let emb = layout.embedding.start + input as usize * config.embed;
        let mut x: Vec<f64> = (0..config.embed).map(|j| p(emb + j)).collect();
        for (l, ranges) in layout.layers.iter().enumerate() {
            let mut a: Vec<f64> = (0..4 * h).map(|j| p(ranges.bias.start + j)).collect();
            for (i, &xi) in x.iter().enumerate() {
                for (j, aj) in a.iter_mut().enumerate() {
                    *aj += xi * p(ranges.wx.start + i * 4 * h + j);
                }
            }
            for (i, &hi) in hs[l].iter().enumerate() {
                for (j, aj) in a.iter_mut().enumerate() {
                    *aj += hi * p(ranges.wh.start + i * 4 * h + j);
                }
            }
            for u in 0..h {
                let (ig, fg) = (sigmoid(a[u]), sigmoid(a[h + u]));
                let (gg, og) = ((a[2 * h + u]).tanh(), sigmoid(a[3 * h + u]));
                cs[l][u] = fg * cs[l][u] + ig * gg;
                hs[l][u] = og * cs[l][u].tanh();
            }
            x = hs[l].clone();
        }
        let projection = layout.projection().start;
        let logits: Vec<f64> = (0..v)
            .map(|w| {
                let dot: f64 = (0..h).map(|u| x[u] * p(projection + w * h + u)).sum();
                dot + p(layout.out_bias.start + w)
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        out.push(logits[target as usize] - log_sum);
        input = target;
    }
    out
}

fn tiny_lm(tied: bool) -> LanguageModel {
    LanguageModel::new(tiny_model::model(tied), tiny_model::vocab()).expect("model loads")
}

#[test]
fn score_matches_f64_reference() {
    for tied in [true, false] {
        let mut lm = tiny_lm(tied);
        let model = tiny_model::model(tied);
        let vocab = tiny_model::vocab();
        let sentences = sentences();
        let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let scores = lm.score_sentences(&texts).expect("scores");
        for (text, score) in texts.iter().zip(&scores) {
            let expected = reference_log_probs(&model, &vocab, text);
            assert_eq!(score.tokens, expected.len(), "{text:?}: token count");
            assert_eq!(score.token_log_probs.len(), expected.len());
            // f32 engine against f64: each token within 1e-5 nats, so the sum
            // of up to 41 tokens within 1e-4.
            for (t, (&got, &want)) in score.token_log_probs.iter().zip(&expected).enumerate() {
                assert!(
                    (got as f64 - want).abs() < 1e-5,
                    "{text:?} (tied {tied}): token {t}: {got} vs reference {want}"
                );
            }
            let total: f64 = expected.iter().sum();
            assert!(
                (score.log_prob - total).abs() < 1e-4,
                "{text:?}: log-prob {} vs reference {total}",
                score.log_prob
            );
        }
    }
}

#[test]
fn score_matches_stepwise_forward() {
    let mut lm = tiny_lm(true);
    let model = tiny_model::model(true);
    let vocab = tiny_model::vocab();
    for text in sentences() {
        let expected = stepwise_log_probs(&model, &vocab, &text);
        let total: f64 = expected.iter().sum();
        let score = &lm.score_sentences(&[&text]).expect("scores")[0];
        // Same kernels and rows in a different grouping: rounding only, a
        // few f32 ulps per token.
        assert!(
            (score.log_prob - total).abs() < 1e-5 * expected.len() as f64,
            "{text:?}: batched {} vs stepwise {total}",
            score.log_prob
        );
        assert!(score.log_prob < 0.0);
        let perplexity = (-total / expected.len() as f64).exp();
        assert!((score.perplexity - perplexity).abs() < 1e-4 * perplexity);
        assert!((score.log10_prob() - total / std::f64::consts::LN_10).abs() < 1e-5 * 41.0);
    }
}

#[test]
fn score_alone_equals_score_in_batch() {
    let mut lm = tiny_lm(true);
    let sentences = sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let alone: Vec<_> = texts
        .iter()
        .map(|text| lm.score_sentences(&[text]).expect("scores").remove(0))
        .collect();

    // One batch of all 7, then batches of 3, 3 and a tail of 1.
    for batch in [32, 3] {
        lm.set_score_batch(batch).expect("valid batch");
        let together = lm.score_sentences(&texts).expect("scores");
        assert_eq!(together.len(), texts.len());
        for ((text, a), b) in texts.iter().zip(&alone).zip(&together) {
            assert_eq!(a.tokens, b.tokens, "{text:?}");
            // Rows do not interact, so only the matrix products' rounding
            // differs between batch sizes: 1e-5 nats per token.
            for (x, y) in a.token_log_probs.iter().zip(&b.token_log_probs) {
                assert!((x - y).abs() < 1e-5, "{text:?} batch {batch}: {x} vs {y}");
            }
            assert!(
                (a.log_prob - b.log_prob).abs() < 1e-5 * a.tokens as f64,
                "{text:?} batch {batch}: alone {} vs batched {}",
                a.log_prob,
                b.log_prob
            );
        }
    }
}

#[test]
fn score_counts_words_and_eos() {
    let mut lm = tiny_lm(true);
    let scores = lm
        .score_sentences(&["the cat  sat\t", "", "   "])
        .expect("scores");
    assert_eq!(scores[0].tokens, 4);
    assert_eq!(scores[1].tokens, 1);
    assert_eq!(scores[2].tokens, 1);
    assert_eq!(scores[1].log_prob, scores[2].log_prob);
    assert!(lm.score_sentences(&[]).expect("scores").is_empty());
}

#[test]
fn score_maps_unknown_words_to_unk() {
    let mut lm = tiny_lm(true);
    let scores = lm
        .score_sentences(&["the zebra sat", "the <unk> sat"])
        .expect("scores");
    assert_eq!(scores[0].token_log_probs, scores[1].token_log_probs);
}

/// Returns the tiny vocabulary with `from` renamed to `to`.
fn tiny_vocab_renaming(from: &str, to: &str) -> Vocab {
    let words = tiny_model::WORDS
        .iter()
        .map(|&word| if word == from { to } else { word })
        .map(String::from)
        .collect();
    Vocab::from_words(words).expect("valid vocabulary")
}

#[test]
fn score_without_unk_names_the_word() {
    let vocab = tiny_vocab_renaming("<unk>", "rug");
    let mut lm = LanguageModel::new(tiny_model::model(true), vocab).expect("model loads");
    let error = lm
        .score_sentences(&["the cat", "the zebra sat"])
        .expect_err("zebra is unknown");
    let message = error.to_string();
    assert!(
        matches!(&error, ApiError::UnknownWord { word, sentence: Some(1) } if word == "zebra"),
        "{message}"
    );
    assert!(message.contains("sentence 2"), "{message}");
    assert!(message.contains("\"zebra\""), "{message}");

    let error = lm
        .generate("a zebra", 3, 1.0, 0)
        .expect_err("zebra is unknown");
    let message = error.to_string();
    assert!(
        matches!(&error, ApiError::UnknownWord { word, sentence: None } if word == "zebra"),
        "{message}"
    );
    assert!(
        message.starts_with("the prompt: word \"zebra\""),
        "{message}"
    );
}

#[test]
fn new_rejects_vocab_without_eos_or_wrong_size() {
    let vocab = tiny_vocab_renaming("<eos>", "stop");
    let error = LanguageModel::new(tiny_model::model(true), vocab).err();
    assert!(matches!(error, Some(ApiError::MissingEos)), "{error:?}");

    let short = Vocab::from_words(vec!["<eos>".into(), "a".into()]).expect("valid vocabulary");
    let error = LanguageModel::new(tiny_model::model(true), short).err();
    assert!(
        matches!(
            error,
            Some(ApiError::VocabMismatch {
                vocab: 2,
                expected: 10
            })
        ),
        "{error:?}"
    );
}

/// Computes the greedy continuation of `prompt`, one engine step at a time.
fn greedy_reference(model: &Model, vocab: &Vocab, prompt: &str, words: usize) -> String {
    let eos = vocab.eos().expect("tiny vocabulary has <eos>");
    let cx = Compute::new(Kernels::process(), 1);
    let mut ws = Workspace::new(&model.config, 1, 1, false);
    let feed = |ws: &mut Workspace, id: u32| -> Vec<f32> {
        forward(cx, model, ws, &[id], &[id], 1, Mode::Eval);
        ws.carry_state(1);
        ws.logits(1).to_vec()
    };
    let mut logits = feed(&mut ws, eos);
    for id in ids(vocab, prompt) {
        logits = feed(&mut ws, id);
    }
    let mut tokens = Vec::new();
    for _ in 0..words {
        let mut best = 0;
        for (id, &logit) in logits.iter().enumerate() {
            if logit > logits[best] {
                best = id;
            }
        }
        tokens.push(vocab.word(best as u32).to_string());
        logits = feed(&mut ws, best as u32);
    }
    tokens
        .join(" ")
        .replace(" <eos> ", "\n")
        .replace("<eos> ", "\n")
        .replace(" <eos>", "\n")
        .replace("<eos>", "\n")
}

#[test]
fn generate_greedy_matches_argmax() {
    let model = tiny_model::model(true);
    let vocab = tiny_model::vocab();
    let mut lm = tiny_lm(true);
    for prompt in ["", "the cat", "zebra on"] {
        let expected = greedy_reference(&model, &vocab, prompt, 25);
        let first = lm.generate(prompt, 25, 0.0, 1).expect("generates");
        let second = lm.generate(prompt, 25, 0.0, 99).expect("generates");
        assert_eq!(first, expected, "prompt {prompt:?}");
        assert_eq!(first, second, "greedy output must not depend on the seed");
    }
}

#[test]
fn generate_same_seed_same_text() {
    let mut lm = tiny_lm(false);
    let a = lm.generate("the", 40, 1.0, 5).expect("generates");
    let b = lm.generate("the", 40, 1.0, 5).expect("generates");
    let c = lm.generate("the", 40, 1.0, 6).expect("generates");
    assert_eq!(a, b);
    // 40 draws over 10 words: two seeds agreeing everywhere would take a
    // near-deterministic model, which this one is not.
    assert_ne!(a, c);
    let tokens = a.split_whitespace().count() + a.matches('\n').count();
    assert!(tokens <= 40, "{a:?}");
    for word in a.split_whitespace() {
        assert!(
            tiny_model::WORDS.contains(&word) && word != "<eos>",
            "{word:?}"
        );
    }
}

#[test]
fn generate_counts_eos_as_newline() {
    let mut lm = tiny_lm(true);
    for seed in 0..20 {
        let text = lm.generate("", 30, 2.0, seed).expect("generates");
        let tokens = text.split_whitespace().count() + text.matches('\n').count();
        assert_eq!(tokens, 30, "seed {seed}: {text:?}");
        assert!(!text.contains("<eos>"), "{text:?}");
    }
}

#[test]
fn generate_rejects_bad_temperature() {
    let mut lm = tiny_lm(true);
    for temperature in [-0.5, f32::NAN, f32::INFINITY] {
        let error = lm.generate("the", 5, temperature, 0).err();
        assert!(
            matches!(error, Some(ApiError::InvalidTemperature(_))),
            "{temperature}: {error:?}"
        );
    }
    assert_eq!(lm.generate("the", 0, 1.0, 0).expect("generates"), "");
}

#[test]
fn load_reads_checkpoint() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = tiny_model::save_checkpoint(dir.path(), true);
    let mut loaded = LanguageModel::load(&path).expect("checkpoint loads");
    let mut direct = tiny_lm(true);
    assert_eq!(loaded.vocab().words(), direct.vocab().words());
    let text = ["the cat sat on the mat"];
    assert_eq!(
        loaded.score_sentences(&text).expect("scores"),
        direct.score_sentences(&text).expect("scores")
    );

    let missing = dir.path().join("missing.safetensors");
    let message = LanguageModel::load(&missing)
        .err()
        .expect("missing file fails")
        .to_string();
    assert!(message.contains("missing.safetensors"), "{message}");
}

#[test]
fn checkpoint_load_rejects_nan_weight() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nan.safetensors");
    let mut model = tiny_model::model(false);
    let bias = model.layout.out_bias.clone();
    model.params[bias][4] = f32::NAN;
    checkpoint::save(&path, &model, &tiny_model::vocab(), &HashMap::new()).expect("saves");
    let error = checkpoint::load(&path)
        .err()
        .expect("a NaN weight is rejected");
    let message = error.to_string();
    assert!(
        message.contains("tensor `decoder.bias` has the value NaN at flat index 4"),
        "{message}"
    );
}
