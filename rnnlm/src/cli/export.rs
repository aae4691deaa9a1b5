//! `rnnlm export`: a checkpoint as a plain PyTorch state dict, a vocabulary
//! file and a configuration file.
//!
//! `model.safetensors` contains only tensors, without metadata, under the names
//! of PyTorch's word-language-model example: `encoder.weight` (V, Emb),
//! `rnn.weight_ih_l{l}` (4H, In), `rnn.weight_hh_l{l}` (4H, H),
//! `rnn.bias_ih_l{l}` and `rnn.bias_hh_l{l}` (4H), `decoder.weight` (V, H),
//! written even when tied (then equal to `encoder.weight`), and
//! `decoder.bias` (V). Gate order is i, f, g, o, as in `torch.nn.LSTM`.
//! `vocab.txt` has one word per line: line i + 1 is the word of id i.
//! `config.json` has the sizes and the special tokens.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;
use rnnlm::checkpoint;
use rnnlm::corpus::{EOS, UNK};
use serde_json::{Value, json};

use super::CliResult;

/// File names written into the output directory.
const MODEL_FILE: &str = "model.safetensors";
const VOCAB_FILE: &str = "vocab.txt";
const CONFIG_FILE: &str = "config.json";

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint written by `rnnlm train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Directory to write model.safetensors, vocab.txt and config.json to
    /// (created if missing; existing files of those names are replaced).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> CliResult {
    let loaded = checkpoint::load(&args.checkpoint)?;
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!(
            "--out {} is a file; export writes a directory of three files, so pass a \
             directory path",
            args.out.display()
        )
        .into());
    }
    fs::create_dir_all(&args.out).map_err(|e| {
        format!(
            "cannot create the output directory {}: {e}; check --out",
            args.out.display()
        )
    })?;

    let model_bytes = checkpoint::serialize_state_dict(&loaded.model, None)?;
    let model_path = args.out.join(MODEL_FILE);
    write_file(&model_path, &model_bytes)?;

    let mut words = loaded.vocab.words().join("\n");
    words.push('\n');
    write_file(&args.out.join(VOCAB_FILE), words.as_bytes())?;

    let config = &loaded.model.config;
    let config_json = json!({
        "vocab_size": config.vocab,
        "embedding_size": config.embed,
        "hidden_size": config.hidden,
        "num_layers": config.layers,
        "tied": config.tied,
        "gate_order": "ifgo",
        "eos": EOS,
        "unk": loaded.vocab.unk().map(|_| UNK),
        "checkpoint_info": info_json(&loaded.info),
    });
    let mut text = serde_json::to_string_pretty(&config_json)?;
    text.push('\n');
    write_file(&args.out.join(CONFIG_FILE), text.as_bytes())?;

    println!(
        "wrote {MODEL_FILE}, {VOCAB_FILE} and {CONFIG_FILE} to {}",
        args.out.display()
    );
    Ok(())
}

/// Returns the checkpoint's metadata as a JSON object. Values that are
/// themselves JSON objects or arrays (such as `train_options`) are embedded
/// as such, and every other value stays a string.
fn info_json(info: &HashMap<String, String>) -> Value {
    let entries = info.iter().map(|(key, text)| {
        let value = match serde_json::from_str::<Value>(text) {
            Ok(value @ (Value::Object(_) | Value::Array(_))) => value,
            _ => Value::String(text.clone()),
        };
        (key.clone(), value)
    });
    Value::Object(entries.collect())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
