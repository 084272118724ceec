//! What A1111's prompt language costs in text encoding: one 3-chunk prompt encoded plain, with
//! weights (A1111's "Original" emphasis: multiply, restore the mean), with ComfyUI's weights (one
//! extra encoding of the empty prompt) and, for one-encoder models, with an embedding.

use std::path::Path;

use candle_core::Tensor;
use sumi_engine::text::{Embeddings, Emphasis, EncodeOptions};
use sumi_engine::{Model, Result};

use crate::measure::{time_runs, Runs};
use crate::BenchOptions;

/// The phrase the prompts repeat.
const PHRASE: &str = "a photograph of an astronaut riding a horse,";
/// Chunks the plain prompt fills.
const CHUNKS: usize = 3;

/// `n` phrases; phrase `i` as `edit(i, PHRASE)` makes it.
fn prompt(n: usize, edit: impl Fn(usize, &str) -> String) -> String {
    (0..n)
        .map(|i| edit(i, PHRASE))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The most phrases whose plain prompt fits in [`CHUNKS`] chunks of the model's tokenizer.
fn phrases(model: &Model, opts: &EncodeOptions) -> Result<usize> {
    let mut n = 1;
    while n < 1000 {
        let count = model
            .text
            .token_count(&prompt(n + 1, |_, p| p.to_string()), true, opts)?;
        if count.capacity > CHUNKS * 75 {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// The timed variants: (component, runs, what).
pub(crate) fn timings(
    model: &Model,
    dir: &Path,
    opts: &BenchOptions,
) -> Result<Vec<(String, Runs, String)>> {
    let none = Embeddings::empty();
    let plain_opts = EncodeOptions {
        emphasis: Emphasis::Original,
        clip_skip: None,
        embeddings: &none,
        steps: opts.steps,
        max_sequence_length: None,
    };
    let n = phrases(model, &plain_opts)?;
    let plain = prompt(n, |_, p| p.to_string());
    let weighted = prompt(n, |i, p| match i % 2 {
        0 => format!("({}:1.2)", p.trim_end_matches(',')) + ",",
        _ => p.to_string(),
    });
    let mut cases = vec![
        ("prompt plain", plain.clone(), Emphasis::Original, None),
        (
            "prompt weighted",
            weighted.clone(),
            Emphasis::Original,
            None,
        ),
        ("prompt comfy", weighted, Emphasis::Comfy, None),
    ];
    // One encoder: an embedding of 2 random vectors in place of "horse" in every other phrase.
    let embedding = match model.text.tokenizers().count() {
        1 => {
            let path = dir.join("benchemb.safetensors");
            let v = Tensor::randn(
                0f32,
                1f32,
                (2, model.text.context_dim()),
                &candle_core::Device::Cpu,
            )?;
            candle_core::safetensors::save(&[("emb_params".to_string(), v)].into(), &path)?;
            Some(Embeddings::from_paths(&[path])?)
        }
        _ => None,
    };
    if embedding.is_some() {
        let with = prompt(n, |i, p| match i % 2 {
            0 => p.replace("horse", "benchemb"),
            _ => p.to_string(),
        });
        cases.push(("prompt embedding", with, Emphasis::Original, Some(())));
    }
    let mut out = Vec::new();
    for (name, text, emphasis, emb) in cases {
        let embeddings = match (emb, &embedding) {
            (Some(()), Some(e)) => e,
            _ => &none,
        };
        let opts_enc = EncodeOptions {
            emphasis,
            clip_skip: None,
            embeddings,
            steps: opts.steps,
            max_sequence_length: None,
        };
        let count = model.text.token_count(&text, true, &opts_enc)?;
        let runs = time_runs(&opts.device, opts.repeats, || {
            model.text.encode_prompts(&text, "", true, &opts_enc)?;
            Ok(())
        })?;
        let what = format!(
            "encode_prompts: a {}-token prompt ({} chunks) and an empty negative, {} emphasis{}",
            count.tokens,
            count.capacity / 75,
            emphasis,
            if emb.is_some() {
                ", every other phrase with a 2-vector embedding"
            } else {
                ""
            }
        );
        out.push((name.to_string(), runs, what));
    }
    Ok(out)
}
