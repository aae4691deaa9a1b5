//! Matrix-product FLOPs per token of the model, and the throughput ceiling
//! they imply at a given product rate.
//!
//! Only the products are counted. At the book shapes the element-wise work
//! (cell, softmax, dropout, optimizer) is about 1% of the product FLOPs, an
//! estimate: the softmax, its largest part, costs about 40 operations on
//! each of the V = 10 000 logits of a token, 0.4M against 80M.

use rnnlm::model::ModelConfig;
use serde::{Deserialize, Serialize};

/// Kind of timed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward, backward and the SGD update.
    Train,
    /// Forward only, without dropout.
    Eval,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Eval => "eval",
        }
    }
}

/// FLOPs of the forward products per token, counting a multiply-add as 2.
///
/// Layer l with input size In_l runs the input product (1 x In_l)(In_l x 4H)
/// and the recurrent product (1 x H)(H x 4H), so 2 * 4H * (In_l + H). The
/// projection (1 x H)(H x V) adds 2 * H * V. With In = H for every layer
/// (tied weights) this is 2 * (4H * (In + H)) * L + 2 * H * V.
pub fn forward_flops_per_token(config: &ModelConfig) -> f64 {
    let hidden = config.hidden as f64;
    let layers: f64 = (0..config.layers)
        .map(|l| 2.0 * 4.0 * hidden * (config.layer_input(l) as f64 + hidden))
        .sum();
    layers + 2.0 * hidden * config.vocab as f64
}

/// FLOPs of the products per token in `mode`.
///
/// Backward is twice forward: every forward product `Y = X W` has two
/// backward products of the same size, `dX = dY W^T` and `dW = X^T dY`.
/// The recurrent gradient of the last step of a window is not needed, so
/// training does (T - 1) / T of one recurrent product less than counted;
/// at T = 35 that is under 1% of the total.
pub fn flops_per_token(config: &ModelConfig, mode: Mode) -> f64 {
    let forward = forward_flops_per_token(config);
    match mode {
        Mode::Train => 3.0 * forward,
        Mode::Eval => forward,
    }
}

/// Tokens per second a step could reach if all its products ran at
/// `gflops` and everything else took no time.
pub fn ceiling_tokens_per_sec(gflops: f64, flops_per_token: f64) -> f64 {
    gflops * 1e9 / flops_per_token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(hidden: usize) -> ModelConfig {
        ModelConfig {
            vocab: 10_000,
            embed: hidden,
            hidden,
            layers: 2,
            tied: true,
        }
    }

    #[test]
    fn forward_flops_at_book_shape() {
        // 2 * 2600 * 1300 * 2 = 13_520_000 for the layers, 2 * 650 * 10_000 =
        // 13_000_000 for the projection.
        assert_eq!(forward_flops_per_token(&book(650)), 26_520_000.0);
    }

    #[test]
    fn train_flops_are_three_forwards() {
        assert_eq!(flops_per_token(&book(650), Mode::Train), 79_560_000.0);
        assert_eq!(flops_per_token(&book(650), Mode::Eval), 26_520_000.0);
    }

    #[test]
    fn forward_flops_with_distinct_embedding() {
        let config = ModelConfig {
            vocab: 50,
            embed: 3,
            hidden: 4,
            layers: 2,
            tied: false,
        };
        // Layer 0: 2*16*(3+4) = 224; layer 1: 2*16*(4+4) = 256; projection 2*4*50 = 400.
        assert_eq!(forward_flops_per_token(&config), 880.0);
    }

    #[test]
    fn ceiling_at_one_hundred_gflops() {
        let ceiling = ceiling_tokens_per_sec(100.0, 79_560_000.0);
        assert!((ceiling - 1256.9130).abs() < 1e-3, "{ceiling}");
    }
}
