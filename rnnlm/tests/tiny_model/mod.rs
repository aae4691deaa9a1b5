//! A tiny model, its vocabulary and its checkpoint, shared by the API and
//! CLI tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rnnlm::checkpoint;
use rnnlm::corpus::Vocab;
use rnnlm::model::{Init, Model, ModelConfig};

/// The vocabulary, `<eos>` first and `<unk>` in the middle.
pub const WORDS: [&str; 10] = [
    "<eos>", "the", "cat", "sat", "on", "<unk>", "mat", "a", "dog", "ran",
];

/// Returns [`WORDS`] as a vocabulary.
pub fn vocab() -> Vocab {
    Vocab::from_words(WORDS.iter().map(|w| w.to_string()).collect()).expect("valid vocabulary")
}

/// Returns a 2-layer model over [`WORDS`]: embedding = hidden = 8, tied or
/// not. Weights are uniform in (-0.5, 0.5), wider than a trained model's
/// start, so the next-word distributions are far from uniform and the most
/// likely word is clear of float rounding.
pub fn model(tied: bool) -> Model {
    let config = ModelConfig {
        vocab: WORDS.len(),
        embed: 8,
        hidden: 8,
        layers: 2,
        tied,
    };
    Model::new(config, Init::Uniform(0.5), 7).expect("valid configuration")
}

/// Saves [`model`] with [`vocab`] as `tiny.safetensors` in `dir` and returns
/// its path.
pub fn save_checkpoint(dir: &Path, tied: bool) -> PathBuf {
    let path = dir.join("tiny.safetensors");
    let info = HashMap::from([
        ("epoch".to_string(), "3".to_string()),
        ("train_options".to_string(), r#"{"batch":2}"#.to_string()),
    ]);
    checkpoint::save(&path, &model(tied), &vocab(), &info).expect("checkpoint saves");
    path
}
