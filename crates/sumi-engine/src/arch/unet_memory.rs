//! How much memory a UNet's activations take: the skip connections it keeps from its down path
//! to its up path, plus the largest level's working tensors (resnet temporaries, the attention's
//! projections and the feed-forward's GEGLU). Attention scores are sliced by the kernels and do
//! not grow with the image.

use super::unet::{PerBlock, UNetConfig};

/// Working tensors of a resnet at one level, in multiples of its channels (input, norm, conv
/// outputs, the residual and the concatenated skip on the way up).
const RESNET_TENSORS: usize = 12;

/// Working tensors of a transformer block, in multiples of its channels (q, k, v, output, the
/// GEGLU projection of 8 and its output of 4, and the norms).
const TRANSFORMER_TENSORS: usize = 20;

impl UNetConfig {
    /// Bytes the UNet's activations need for a `height` x `width` latent at `batch` rows of
    /// `elem` bytes each.
    pub fn activation_bytes(&self, height: usize, width: usize, batch: usize, elem: usize) -> u64 {
        activation_bytes(self, height, width, batch, elem)
    }
}

fn activation_bytes(
    cfg: &UNetConfig,
    height: usize,
    width: usize,
    batch: usize,
    elem: usize,
) -> u64 {
    let pixels = (height * width) as u64;
    let levels = cfg.block_out_channels.len();
    // Skips: each level keeps its resnets' outputs and its downsample's, at a quarter of the
    // pixels of the level above.
    let mut skips = cfg.block_out_channels[0] as u64; // conv_in
    for (i, &c) in cfg.block_out_channels.iter().enumerate() {
        let per_level = layers(cfg, i) as u64 + u64::from(i + 1 < levels);
        skips += per_level * c as u64 / 4u64.pow(i as u32);
    }
    let c0 = cfg.block_out_channels[0] as u64;
    let attends = cfg
        .down_block_types
        .first()
        .is_some_and(|t| t.starts_with("CrossAttn"));
    let working = RESNET_TENSORS as u64 * c0
        + if attends {
            TRANSFORMER_TENSORS as u64 * c0
        } else {
            0
        };
    (skips + working) * pixels * batch as u64 * elem as u64
}

fn layers(cfg: &UNetConfig, level: usize) -> usize {
    match &cfg.layers_per_block {
        PerBlock::One(v) => *v,
        PerBlock::Each(v) => v.get(level).copied().unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> UNetConfig {
        serde_json::from_value(serde_json::json!({
            "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 2,
            "attention_head_dim": 8,
            "cross_attention_dim": 768
        }))
        .unwrap()
    }

    #[test]
    fn the_estimate_grows_with_the_image() {
        let cfg = sd15();
        let small = cfg.activation_bytes(64, 64, 2, 4);
        assert_eq!(
            cfg.activation_bytes(128, 128, 2, 4),
            small * 4,
            "linear in pixels"
        );
        // SD 1.5 at 512x512 with CFG in f32: tens to a few hundred MB of activations.
        assert!((50 << 20..500 << 20).contains(&small), "{small}");
    }
}
