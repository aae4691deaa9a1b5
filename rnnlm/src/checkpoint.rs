//! Checkpoints: one safetensors file with PyTorch-style tensor names, the
//! model configuration and the vocabulary in its header metadata.
//!
//! Tensor names follow PyTorch's word-language-model example, so the file
//! loads into `torch.nn.LSTM`-based code:
//! `encoder.weight` (V, Emb); per layer l `rnn.weight_ih_l{l}` (4H, In),
//! `rnn.weight_hh_l{l}` (4H, H), `rnn.bias_ih_l{l}` (4H), `rnn.bias_hh_l{l}`
//! (4H); `decoder.weight` (V, H) and `decoder.bias` (V). PyTorch keeps two
//! biases per layer where this model keeps one, so `bias_ih` stores the bias
//! and `bias_hh` zeros, and loading adds the two. PyTorch multiplies by the
//! transposed weights, so `weight_ih` is `Wx` transposed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::corpus::Vocab;
use crate::model::{Model, ModelConfig};

/// Value of the `format` metadata key that marks an rnnlm checkpoint.
const FORMAT: &str = "rnnlm-v1";

/// A model with its vocabulary and free-form facts about how it was made.
pub struct Checkpoint {
    pub model: Model,
    pub vocab: Vocab,
    /// Extra metadata (e.g. `valid_ppl`, `epoch`, `train_options`).
    pub info: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}; check the path passed to --checkpoint")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot write checkpoint {path}: {source}; check that the directory exists and is writable"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} is not a valid safetensors file: {message}; it may be truncated \
         or another kind of file"
    )]
    Format { path: PathBuf, message: String },
    #[error("checkpoint {path}: {message}")]
    Content { path: PathBuf, message: String },
}

/// Writes `model`, its vocabulary and `info` to `path` atomically: the bytes
/// go to a temporary file beside it, which is synced and then renamed over
/// `path`, so a crash leaves either the old file or the new one.
pub fn save(
    path: &Path,
    model: &Model,
    vocab: &Vocab,
    info: &HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let write_error = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut metadata = info.clone();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert(
        "config".into(),
        serde_json::to_string(&model.config).expect("config serialises"),
    );
    metadata.insert(
        "vocab".into(),
        serde_json::to_string(vocab.words()).expect("vocabulary serialises"),
    );
    let tmp = temporary_path(path);
    let written = serialize_to_file(&export_tensors(model), metadata, &tmp);
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(match error {
            safetensors::SafeTensorError::IoError(source) => write_error(source),
            other => CheckpointError::Format {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        });
    }
    let result = (|| {
        // Files from safetensors 0.8 came out readable by their owner only
        // (mode 0600). A model file is shared like the exports are.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        }
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_error)
}

/// Reads only the metadata of a checkpoint: the safetensors header, without
/// the tensors.
pub fn read_info(path: &Path) -> Result<HashMap<String, String>, CheckpointError> {
    use std::io::Read;

    let read_error = |source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    };
    let format_error = |message: &str| CheckpointError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut size = [0u8; 8];
    file.read_exact(&mut size).map_err(read_error)?;
    let size = u64::from_le_bytes(size);
    // The safetensors crate rejects headers over 100,000,000 bytes too.
    if size > 100_000_000 {
        return Err(format_error("the header length is over 100 MB"));
    }
    let mut header = vec![0u8; size as usize];
    file.read_exact(&mut header).map_err(read_error)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format_error(&e.to_string()))?;
    let metadata = header.get("__metadata__").cloned().unwrap_or_default();
    if metadata.is_null() {
        return Ok(HashMap::new());
    }
    serde_json::from_value(metadata).map_err(|e| format_error(&e.to_string()))
}

/// Reads a checkpoint written by [`save`] (or a PyTorch state dict with the
/// same names and rnnlm metadata).
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format_error = |message: String| CheckpointError::Format {
        path: path.to_path_buf(),
        message,
    };
    let content_error = |message: String| CheckpointError::Content {
        path: path.to_path_buf(),
        message,
    };
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| format_error(e.to_string()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| format_error(e.to_string()))?;
    let mut info = header.metadata().clone().unwrap_or_default();

    let format = info.remove("format").unwrap_or_default();
    if format != FORMAT {
        return Err(content_error(format!(
            "metadata key `format` is {format:?}, expected {FORMAT:?}; the file was not written by \
             `rnnlm train` (the model.safetensors of an `rnnlm export` directory is for PyTorch: \
             pass the checkpoint that train wrote)"
        )));
    }
    let config_json = info
        .remove("config")
        .ok_or_else(|| content_error("metadata key `config` is missing".into()))?;
    let config: ModelConfig = serde_json::from_str(&config_json)
        .map_err(|e| content_error(format!("metadata key `config` is invalid: {e}")))?;
    let vocab_json = info
        .remove("vocab")
        .ok_or_else(|| content_error("metadata key `vocab` is missing".into()))?;
    let words: Vec<String> = serde_json::from_str(&vocab_json)
        .map_err(|e| content_error(format!("metadata key `vocab` is invalid: {e}")))?;
    let vocab = Vocab::from_words(words).map_err(|e| content_error(format!("vocabulary: {e}")))?;
    if vocab.len() != config.vocab {
        return Err(content_error(format!(
            "the vocabulary has {} words but the configuration says {}",
            vocab.len(),
            config.vocab
        )));
    }
    config
        .validate()
        .map_err(|e| content_error(format!("configuration: {e}")))?;

    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, CheckpointError> {
        let view = tensors
            .tensor(name)
            .map_err(|_| content_error(format!("tensor `{name}` is missing")))?;
        if view.dtype() != Dtype::F32 {
            return Err(content_error(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                view.dtype()
            )));
        }
        if view.shape() != shape {
            return Err(content_error(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?} for this configuration",
                view.shape()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(content_error(format!(
                "tensor `{name}` has the value {} at flat index {index}; the file is damaged, \
                 so use another checkpoint",
                values[index]
            )));
        }
        Ok(values)
    };

    let mut model = Model::from_params(
        config.clone(),
        vec![0.0; crate::model::ParamLayout::new(&config).total],
    )
    .map_err(|e| content_error(e.to_string()))?;
    let layout = model.layout.clone();
    let (v, emb, h) = (config.vocab, config.embed, config.hidden);
    let params = &mut model.params;
    params[layout.embedding.clone()].copy_from_slice(&read("encoder.weight", &[v, emb])?);
    for (l, ranges) in layout.layers.iter().enumerate() {
        let input = config.layer_input(l);
        let w_ih = read(&format!("rnn.weight_ih_l{l}"), &[4 * h, input])?;
        let w_hh = read(&format!("rnn.weight_hh_l{l}"), &[4 * h, h])?;
        transpose_into(&w_ih, 4 * h, input, &mut params[ranges.wx.clone()]);
        transpose_into(&w_hh, 4 * h, h, &mut params[ranges.wh.clone()]);
        let b_ih = read(&format!("rnn.bias_ih_l{l}"), &[4 * h])?;
        let b_hh = read(&format!("rnn.bias_hh_l{l}"), &[4 * h])?;
        for ((out, a), b) in params[ranges.bias.clone()].iter_mut().zip(&b_ih).zip(&b_hh) {
            *out = a + b;
        }
    }
    let decoder = read("decoder.weight", &[v, h])?;
    match &layout.decoder {
        Some(range) => params[range.clone()].copy_from_slice(&decoder),
        None => {
            if decoder != params[layout.embedding.clone()] {
                return Err(content_error(
                    "the configuration says tied but decoder.weight differs from encoder.weight"
                        .into(),
                ));
            }
        }
    }
    params[layout.out_bias.clone()].copy_from_slice(&read("decoder.bias", &[v])?);
    Ok(Checkpoint { model, vocab, info })
}

/// Serialises the model's tensors under PyTorch's names and layout (a plain
/// state dict when `metadata` is `None`).
pub fn serialize_state_dict(
    model: &Model,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    safetensors::serialize(views(&export_tensors(model)), metadata)
}

/// Streams the tensors to `path` without assembling the file in memory.
fn serialize_to_file(
    tensors: &[ExportTensor<'_>],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<(), safetensors::SafeTensorError> {
    safetensors::serialize_to_file(views(tensors), Some(metadata), path)
}

/// One tensor in PyTorch's layout. Tensors whose layout matches the
/// parameter buffer borrow from it, so a checkpoint write copies only the
/// transposed LSTM weights.
struct ExportTensor<'a> {
    name: String,
    shape: Vec<usize>,
    data: Cow<'a, [f32]>,
}

fn views<'a>(tensors: &'a [ExportTensor<'_>]) -> Vec<(&'a str, TensorView<'a>)> {
    tensors
        .iter()
        .map(|tensor| {
            let view = TensorView::new(Dtype::F32, tensor.shape.clone(), bytes_of(&tensor.data))
                .expect("shape matches data length");
            (tensor.name.as_str(), view)
        })
        .collect()
}

/// The tensors to write: name, shape and data in PyTorch's layout.
fn export_tensors(model: &Model) -> Vec<ExportTensor<'_>> {
    fn tensor(name: String, shape: Vec<usize>, data: Cow<'_, [f32]>) -> ExportTensor<'_> {
        ExportTensor { name, shape, data }
    }

    let config = &model.config;
    let layout = &model.layout;
    let params = &model.params;
    let (v, emb, h) = (config.vocab, config.embed, config.hidden);
    let borrowed = |range: std::ops::Range<usize>| Cow::Borrowed(&params[range]);

    let mut tensors = vec![tensor(
        "encoder.weight".into(),
        vec![v, emb],
        borrowed(layout.embedding.clone()),
    )];
    for (l, ranges) in layout.layers.iter().enumerate() {
        let input = config.layer_input(l);
        let mut w_ih = vec![0.0; 4 * h * input];
        transpose_into(&params[ranges.wx.clone()], input, 4 * h, &mut w_ih);
        let mut w_hh = vec![0.0; 4 * h * h];
        transpose_into(&params[ranges.wh.clone()], h, 4 * h, &mut w_hh);
        tensors.push(tensor(
            format!("rnn.weight_ih_l{l}"),
            vec![4 * h, input],
            Cow::Owned(w_ih),
        ));
        tensors.push(tensor(
            format!("rnn.weight_hh_l{l}"),
            vec![4 * h, h],
            Cow::Owned(w_hh),
        ));
        tensors.push(tensor(
            format!("rnn.bias_ih_l{l}"),
            vec![4 * h],
            borrowed(ranges.bias.clone()),
        ));
        tensors.push(tensor(
            format!("rnn.bias_hh_l{l}"),
            vec![4 * h],
            Cow::Owned(vec![0.0; 4 * h]),
        ));
    }
    tensors.push(tensor(
        "decoder.weight".into(),
        vec![v, h],
        borrowed(layout.projection()),
    ));
    tensors.push(tensor(
        "decoder.bias".into(),
        vec![v],
        borrowed(layout.out_bias.clone()),
    ));
    tensors
}

/// Writes the transpose of the row-major `(rows, cols)` matrix `src` into
/// `dst` (`(cols, rows)`).
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// The little-endian bytes of an f32 slice, as safetensors stores them.
fn bytes_of(data: &[f32]) -> &[u8] {
    const {
        assert!(
            cfg!(target_endian = "little"),
            "safetensors stores little-endian f32"
        )
    };
    bytemuck::cast_slice(data)
}

/// `path` with `.tmp` appended, in the same directory so the rename is atomic.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
