//! The model: configuration, the single parameter buffer and its layout,
//! and initialisation.
//!
//! Parameters, all f32, packed in one buffer in this order:
//! - `embedding` E: `(V, Emb)`, the input embedding and, when tied, also the
//!   output projection (logits = y E^T);
//! - per layer l: `wx` `(In_l, 4H)`, `wh` `(H, 4H)`, `b` `(4H)` with gate
//!   order i, f, g, o; In_0 = Emb and In_l = H above;
//! - `decoder` `(V, H)`, only when the projection is not tied;
//! - `out_bias` `(V)`.
//!
//! The gradient buffer has the same layout, so a tied matrix gets the sum of
//! its embedding and projection gradients in one place and the global norm
//! counts it once.

use std::ops::Range;

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::ConfigError;

/// Sizes of a model.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Embedding size Emb (the input of the first layer).
    pub embed: usize,
    /// Hidden size H of every LSTM layer.
    pub hidden: usize,
    /// Number of stacked LSTM layers L.
    pub layers: usize,
    /// Whether the output projection is the embedding matrix (needs Emb = H).
    pub tied: bool,
}

impl ModelConfig {
    /// Checks the sizes, naming the option and the allowed range on error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vocab < 2 {
            return Err(ConfigError::new(
                "vocabulary size",
                self.vocab,
                "at least 2 words",
            ));
        }
        if self.hidden == 0 {
            return Err(ConfigError::new("--hidden", self.hidden, "at least 1"));
        }
        if self.embed == 0 {
            return Err(ConfigError::new("--embed", self.embed, "at least 1"));
        }
        if self.layers == 0 {
            return Err(ConfigError::new("--layers", self.layers, "at least 1"));
        }
        if self.tied && self.embed != self.hidden {
            return Err(ConfigError::new(
                "--embed",
                self.embed,
                format!(
                    "equal to --hidden ({}) when the weights are tied; pass --no-tie to untie them",
                    self.hidden
                ),
            ));
        }
        Ok(())
    }

    /// Input size of layer `layer`.
    pub fn layer_input(&self, layer: usize) -> usize {
        if layer == 0 { self.embed } else { self.hidden }
    }
}

/// Offsets of each tensor in the parameter (and gradient) buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    pub embedding: Range<usize>,
    pub layers: Vec<LayerRanges>,
    pub decoder: Option<Range<usize>>,
    pub out_bias: Range<usize>,
    pub total: usize,
}

/// The tensors of one LSTM layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRanges {
    pub wx: Range<usize>,
    pub wh: Range<usize>,
    pub bias: Range<usize>,
}

impl ParamLayout {
    pub fn new(config: &ModelConfig) -> ParamLayout {
        let mut next = 0;
        let mut take = |len: usize| {
            let range = next..next + len;
            next += len;
            range
        };
        let h4 = 4 * config.hidden;
        let embedding = take(config.vocab * config.embed);
        let layers = (0..config.layers)
            .map(|l| LayerRanges {
                wx: take(config.layer_input(l) * h4),
                wh: take(config.hidden * h4),
                bias: take(h4),
            })
            .collect();
        let decoder = (!config.tied).then(|| take(config.vocab * config.hidden));
        let out_bias = take(config.vocab);
        ParamLayout {
            embedding,
            layers,
            decoder,
            out_bias,
            total: next,
        }
    }

    /// Returns the range of the output projection `(V, H)`: the decoder, or
    /// the embedding when tied.
    pub fn projection(&self) -> Range<usize> {
        self.decoder
            .clone()
            .unwrap_or_else(|| self.embedding.clone())
    }
}

/// Distribution of the initial weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// The textbook's: E ~ N(0,1)/100, Wx ~ N(0,1)/sqrt(In), Wh ~ N(0,1)/sqrt(H),
    /// an untied decoder ~ N(0,1)/sqrt(H), biases 0.
    Book,
    /// Every weight and bias ~ uniform(-r, r).
    Uniform(f32),
}

/// A model's configuration and parameters.
#[derive(Clone, Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    pub params: Vec<f32>,
}

impl Model {
    /// Builds a model with weights drawn by `init` from a stream seeded by `seed`.
    pub fn new(config: ModelConfig, init: Init, seed: u64) -> Result<Model, ConfigError> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        let mut params = vec![0.0f32; layout.total];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        match init {
            Init::Book => {
                fill_normal(&mut rng, &mut params[layout.embedding.clone()], 0.01);
                for (l, layer) in layout.layers.iter().enumerate() {
                    let input = config.layer_input(l) as f32;
                    fill_normal(&mut rng, &mut params[layer.wx.clone()], 1.0 / input.sqrt());
                    fill_normal(
                        &mut rng,
                        &mut params[layer.wh.clone()],
                        1.0 / (config.hidden as f32).sqrt(),
                    );
                }
                if let Some(decoder) = &layout.decoder {
                    fill_normal(
                        &mut rng,
                        &mut params[decoder.clone()],
                        1.0 / (config.hidden as f32).sqrt(),
                    );
                }
            }
            Init::Uniform(range) => {
                if !(range > 0.0 && range.is_finite()) {
                    return Err(ConfigError::new(
                        "--init-range",
                        range,
                        "a finite number above 0",
                    ));
                }
                for p in params.iter_mut() {
                    *p = (uniform01(&mut rng) * 2.0 - 1.0) * range;
                }
            }
        }
        Ok(Model {
            config,
            layout,
            params,
        })
    }

    /// Builds a model around existing parameters (from a checkpoint).
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Model, ConfigError> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        if params.len() != layout.total {
            return Err(ConfigError::new(
                "parameter count",
                params.len(),
                format!("{} for this configuration", layout.total),
            ));
        }
        Ok(Model {
            config,
            layout,
            params,
        })
    }
}

/// A uniform f32 in [0, 1) from the top 24 bits of a draw.
fn uniform01(rng: &mut Xoshiro256PlusPlus) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Fills `out` with N(0, std^2) draws (Box-Muller, both outputs used).
fn fill_normal(rng: &mut Xoshiro256PlusPlus, out: &mut [f32], std: f32) {
    let mut pairs = out.chunks_mut(2);
    for pair in &mut pairs {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        let u2 = (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        pair[0] = (radius * angle.cos()) as f32 * std;
        if let Some(second) = pair.get_mut(1) {
            *second = (radius * angle.sin()) as f32 * std;
        }
    }
}
