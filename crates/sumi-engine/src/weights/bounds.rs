//! Bounds on the config values that size an allocation or a loop. A damaged or hostile config
//! with `num_train_timesteps: 1e12` or a million layers must be refused with a message, not
//! abort the process when the allocation fails. Every bound is far above what real models use.

/// The largest value each sizing key may have (and every listed key must be at least 1).
pub const BOUNDS: &[(&str, usize)] = &[
    // UNet
    ("block_out_channels", 8192),
    ("blocks", 16),
    ("layers_per_block", 32),
    ("transformer_layers_per_block", 64),
    ("attention_head_dim", 4096),
    ("num_attention_heads", 4096),
    ("cross_attention_dim", 16384),
    ("sample_size", 4096),
    ("in_channels", 256),
    ("out_channels", 256),
    ("norm_num_groups", 1024),
    ("addition_time_embed_dim", 8192),
    ("projection_class_embeddings_input_dim", 65536),
    // VAE
    ("latent_channels", 256),
    // Text encoders
    ("vocab_size", 2_000_000),
    ("hidden_size", 16384),
    ("intermediate_size", 65536),
    ("num_hidden_layers", 256),
    ("max_position_embeddings", 16384),
    ("projection_dim", 16384),
    // Scheduler
    ("num_train_timesteps", 100_000),
];

/// Checks `value` of config key `key` against its bound (and that it is at least 1).
pub fn check(key: &str, value: usize) -> Result<(), String> {
    let max = BOUNDS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(usize::MAX, |(_, m)| *m);
    if value == 0 {
        return Err(format!("{key} is 0; it must be at least 1"));
    }
    if value > max {
        return Err(format!(
            "{key} is {value}, more than any model uses (at most {max}): the config is damaged \
             or belongs to another kind of model"
        ));
    }
    Ok(())
}

/// Checks every value of a per-block list.
pub fn check_all(key: &str, values: impl IntoIterator<Item = usize>) -> Result<(), String> {
    values.into_iter().try_for_each(|v| check(key, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_their_bound_name_the_key_and_the_bound() {
        assert!(check("num_train_timesteps", 1000).is_ok());
        let e = check("num_train_timesteps", 1_000_000_000_000).unwrap_err();
        assert!(
            e.contains("num_train_timesteps is 1000000000000") && e.contains("100000"),
            "{e}"
        );
        let e = check("attention_head_dim", 0).unwrap_err();
        assert!(e.contains("attention_head_dim is 0"), "{e}");
        assert!(check_all("block_out_channels", [320, 640, 9999]).is_err());
    }
}
