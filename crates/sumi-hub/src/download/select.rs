//! Which files of a hub repo to fetch: a diffusers model's configs, tokenizers and one
//! safetensors weight set per component, or a tokenizer repo's files.

/// Files that make up a CLIP tokenizer folder.
pub const TOKENIZER_FILES: &[&str] = &[
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
];

/// Diffusers components with weights, and the stem of their weight files.
const COMPONENTS: &[(&str, &str)] = &[
    ("unet", "diffusion_pytorch_model"),
    ("vae", "diffusion_pytorch_model"),
    ("text_encoder", "model"),
    ("text_encoder_2", "model"),
];

/// The files of a diffusers repo that Sumi needs: `model_index.json`, the scheduler config,
/// tokenizers, and per component its config and one safetensors weight set (the fp16 variant when
/// there is one; sharded sets with their index). Never pickles, ONNX or flax files. A repo with no
/// `model_index.json` but a tokenizer at its root (e.g. a CLIP repo) yields the tokenizer files.
pub fn select_model_files(files: &[String]) -> std::result::Result<Vec<String>, String> {
    let has = |name: &str| files.iter().any(|f| f == name);
    if !has("model_index.json") {
        let toks = tokenizer_files(files, "");
        if !toks.is_empty() {
            return Ok(toks);
        }
        return Err("the repo has no model_index.json, so it is not a diffusers model. Sumi pulls diffusers repos; \
                    for a single .safetensors checkpoint, download the file and pass its path"
            .into());
    }
    let mut out = vec!["model_index.json".to_string()];
    if has("scheduler/scheduler_config.json") {
        out.push("scheduler/scheduler_config.json".into());
    }
    out.extend(tokenizer_files(files, "tokenizer"));
    out.extend(tokenizer_files(files, "tokenizer_2"));
    for (component, stem) in COMPONENTS {
        let config = format!("{component}/config.json");
        if !has(&config) {
            continue;
        }
        let weights = weight_files(files, component, stem).ok_or_else(|| {
            format!("{component}/ has no .safetensors weights (only other formats); Sumi never loads pickle files")
        })?;
        out.push(config);
        out.extend(weights);
    }
    Ok(out)
}

/// All tokenizer files of a repo: at its root and in `tokenizer/` and `tokenizer_2/`.
pub fn select_tokenizer_files(files: &[String]) -> std::result::Result<Vec<String>, String> {
    let picked: Vec<String> = ["", "tokenizer", "tokenizer_2"]
        .iter()
        .flat_map(|folder| tokenizer_files(files, folder))
        .collect();
    if picked.is_empty() {
        Err("the repo has no tokenizer files (vocab.json, merges.txt, ...) at its root or in tokenizer/ or tokenizer_2/".into())
    } else {
        Ok(picked)
    }
}

/// The tokenizer files among `files` in `folder` ("" for the root).
pub(super) fn tokenizer_files(files: &[String], folder: &str) -> Vec<String> {
    TOKENIZER_FILES
        .iter()
        .map(|name| {
            if folder.is_empty() {
                name.to_string()
            } else {
                format!("{folder}/{name}")
            }
        })
        .filter(|p| files.contains(p))
        .collect()
}

/// One weight set of `component`: fp16 before full precision, a single file before shards.
fn weight_files(files: &[String], component: &str, stem: &str) -> Option<Vec<String>> {
    let dir = format!("{component}/");
    let names: Vec<&str> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&dir))
        .filter(|n| !n.contains('/'))
        .collect();
    for variant in [".fp16", ""] {
        let single = format!("{stem}{variant}.safetensors");
        if names.contains(&single.as_str()) {
            return Some(vec![format!("{dir}{single}")]);
        }
        let index = format!("{stem}.safetensors.index{variant}.json");
        let shards: Vec<String> = names
            .iter()
            .filter(|n| is_shard(n, stem, variant))
            .map(|n| format!("{dir}{n}"))
            .collect();
        if names.contains(&index.as_str()) && !shards.is_empty() {
            return Some(
                std::iter::once(format!("{dir}{index}"))
                    .chain(shards)
                    .collect(),
            );
        }
    }
    None
}

/// `stem-00001-of-00002{variant}.safetensors`.
fn is_shard(name: &str, stem: &str, variant: &str) -> bool {
    let Some(mid) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(&format!("{variant}.safetensors")))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    mid.split_once("-of-")
        .is_some_and(|(a, b)| digits(a) && digits(b))
}
