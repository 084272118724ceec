//! Flux LoRA names: kohya / sd-scripts modules (Black Forest Labs' layer names,
//! `lora_unet_double_blocks_0_img_attn_qkv`; ComfyUI's and XLabs' spellings of them) as the diffusers `FluxTransformer2DModel` layers
//! they patch, as diffusers' `_convert_kohya_flux_lora_to_diffusers` maps them. A fused layer
//! (`img_attn_qkv`, `linear1`) patches several diffusers layers: its update's rows are split
//! among them in order, each taking as many rows as its weight has. The final layer's
//! modulation stores shift before scale; diffusers' `norm_out.linear` holds scale first, so
//! the two halves of its rows swap.

use super::keys::Part;

/// The diffusers layers one kohya Flux module patches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluxLayers {
    /// diffusers module names (without `.weight`), in the order of the update's rows.
    pub layers: Vec<String>,
    /// Whether the two halves of the update's rows swap (`final_layer_adaLN_modulation_1`).
    pub swap_halves: bool,
}

/// Double-block modules: kohya suffix -> diffusers layers under `transformer_blocks.{i}.`.
const DOUBLE: [(&str, &[&str]); 14] = [
    ("img_attn_qkv", &["attn.to_q", "attn.to_k", "attn.to_v"]),
    (
        "txt_attn_qkv",
        &["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    ),
    ("img_attn_proj", &["attn.to_out.0"]),
    ("txt_attn_proj", &["attn.to_add_out"]),
    ("img_mlp_0", &["ff.net.0.proj"]),
    ("img_mlp_2", &["ff.net.2"]),
    ("txt_mlp_0", &["ff_context.net.0.proj"]),
    ("txt_mlp_2", &["ff_context.net.2"]),
    ("img_mod_lin", &["norm1.linear"]),
    ("txt_mod_lin", &["norm1_context.linear"]),
    // XLabs (`double_blocks.{i}.processor.qkv_lora1`), as `_convert_xlabs_flux_lora_to_diffusers`
    (
        "processor_qkv_lora1",
        &["attn.to_q", "attn.to_k", "attn.to_v"],
    ),
    (
        "processor_qkv_lora2",
        &["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    ),
    ("processor_proj_lora1", &["attn.to_out.0"]),
    ("processor_proj_lora2", &["attn.to_add_out"]),
];

/// Single-block modules: kohya suffix -> diffusers layers under `single_transformer_blocks.{i}.`.
const SINGLE: [(&str, &[&str]); 5] = [
    (
        "linear1",
        &["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
    ),
    ("linear2", &["proj_out"]),
    ("modulation_lin", &["norm.linear"]),
    (
        "processor_qkv_lora",
        &["attn.to_q", "attn.to_k", "attn.to_v"],
    ),
    ("processor_proj_lora", &["proj_out"]),
];

/// The layers outside the blocks.
const OUTSIDE: [(&str, &str); 10] = [
    ("img_in", "x_embedder"),
    ("txt_in", "context_embedder"),
    (
        "time_in_in_layer",
        "time_text_embed.timestep_embedder.linear_1",
    ),
    (
        "time_in_out_layer",
        "time_text_embed.timestep_embedder.linear_2",
    ),
    (
        "vector_in_in_layer",
        "time_text_embed.text_embedder.linear_1",
    ),
    (
        "vector_in_out_layer",
        "time_text_embed.text_embedder.linear_2",
    ),
    (
        "guidance_in_in_layer",
        "time_text_embed.guidance_embedder.linear_1",
    ),
    (
        "guidance_in_out_layer",
        "time_text_embed.guidance_embedder.linear_2",
    ),
    ("final_layer_linear", "proj_out"),
    ("final_layer_adaLN_modulation_1", "norm_out.linear"),
];

/// The diffusers layers of a kohya Flux module, from its lookup name (the key without
/// `lora_unet_` and role: `double_blocks_0_img_attn_qkv`); `None` for other names.
pub fn kohya_flux_layers(lookup: &str) -> Option<FluxLayers> {
    let block = |prefix: &str, table: &[(&str, &[&str])], diffusers: &str| {
        let rest = lookup.strip_prefix(prefix)?;
        let (index, name) = rest.split_once('_')?;
        let index: usize = index.parse().ok()?;
        let (_, layers) = table.iter().find(|(k, _)| *k == name)?;
        Some(FluxLayers {
            layers: layers
                .iter()
                .map(|l| format!("{diffusers}.{index}.{l}"))
                .collect(),
            swap_halves: false,
        })
    };
    block("double_blocks_", &DOUBLE, "transformer_blocks")
        .or_else(|| block("single_blocks_", &SINGLE, "single_transformer_blocks"))
        .or_else(|| {
            let (name, layer) = OUTSIDE.iter().find(|(k, _)| *k == lookup)?;
            Some(FluxLayers {
                layers: vec![layer.to_string()],
                swap_halves: *name == "final_layer_adaLN_modulation_1",
            })
        })
}

/// Whether a module name is one only Flux LoRAs use: a kohya double / single block, or a
/// diffusers single transformer block.
pub fn is_flux_module(part: Part, lookup: &str) -> bool {
    match part {
        Part::Unet => lookup.starts_with("double_blocks_") || lookup.starts_with("single_blocks_"),
        Part::Transformer => lookup.starts_with("single_transformer_blocks_"),
        Part::Text(_) => false,
    }
}

/// The row ranges of an update of `rows` rows that go to each of the layers, which have
/// `sizes` rows (in order), or to the one layer with its halves swapped; `None` when the sizes
/// do not add up to `rows` (or `rows` is odd for a swap).
pub fn split_rows(
    rows: usize,
    sizes: &[usize],
    swap_halves: bool,
) -> Option<Vec<Vec<std::ops::Range<usize>>>> {
    if sizes.iter().sum::<usize>() != rows {
        return None;
    }
    if swap_halves {
        if sizes.len() != 1 || !rows.is_multiple_of(2) {
            return None;
        }
        let h = rows / 2;
        return Some(vec![vec![h..rows, 0..h]]);
    }
    let mut start = 0;
    Some(
        sizes
            .iter()
            .map(|&n| {
                start += n;
                std::iter::once(start - n..start).collect()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_names_map_as_diffusers_maps_them() {
        let l = kohya_flux_layers("double_blocks_12_txt_attn_qkv").unwrap();
        assert_eq!(
            l.layers,
            [
                "transformer_blocks.12.attn.add_q_proj",
                "transformer_blocks.12.attn.add_k_proj",
                "transformer_blocks.12.attn.add_v_proj"
            ]
        );
        let l = kohya_flux_layers("single_blocks_3_linear1").unwrap();
        assert_eq!(l.layers[3], "single_transformer_blocks.3.proj_mlp");
        assert_eq!(
            kohya_flux_layers("double_blocks_0_img_attn_proj")
                .unwrap()
                .layers,
            ["transformer_blocks.0.attn.to_out.0"]
        );
        let f = kohya_flux_layers("final_layer_adaLN_modulation_1").unwrap();
        assert!(f.swap_halves && f.layers == ["norm_out.linear"]);
        assert!(kohya_flux_layers("double_blocks_x_img_mlp_0").is_none());
        assert!(kohya_flux_layers("double_blocks_0_img_mlp_1").is_none());
        assert!(kohya_flux_layers("down_blocks_0_attentions_0_proj_in").is_none());
    }

    #[test]
    fn rows_split_in_order_or_swap() {
        assert_eq!(
            split_rows(10, &[3, 3, 4], false).unwrap(),
            vec![vec![0..3], vec![3..6], vec![6..10]]
        );
        assert_eq!(split_rows(8, &[8], true).unwrap(), vec![vec![4..8, 0..4]]);
        assert!(split_rows(9, &[3, 3, 4], false).is_none());
        assert!(split_rows(7, &[7], true).is_none());
    }
}
