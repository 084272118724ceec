//! Extra-network tags (`<lora:name:0.8>`): A1111's `extra_networks.parse_prompt`, and the
//! arguments of a LoRA tag as its LoRA extension reads them.

use super::errors::PromptError;
use crate::text::pychars::{is_word, py_float, py_int, skip_chars};

/// One `<kind:arg1:arg2...>` tag.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraNetwork {
    /// The network kind: `lora`, `lyco` (A1111's alias of `lora`), `hypernet`...
    pub kind: String,
    /// The arguments without exactly one `=`, in order.
    pub positional: Vec<String>,
    /// `key=value` arguments (exactly one `=`) in first-seen order; a repeated key keeps its last value.
    pub named: Vec<(String, String)>,
}

/// Cuts every extra-network tag (regex `<(\w+):([^>]+)>`, whatever its kind) out of `text`, as
/// A1111's `extra_networks.parse_prompt`, and returns the text left and the tags in order.
pub fn strip_extra_networks(text: &str) -> (String, Vec<ExtraNetwork>) {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let spans = extra_network_spans(text);
    for (range, _) in &spans {
        out.push_str(&text[last..range.start]);
        last = range.end;
    }
    out.push_str(&text[last..]);
    (out, spans.into_iter().map(|(_, net)| net).collect())
}

/// Every extra-network tag of `text` with the byte range it spans, in order (the tags that
/// [`strip_extra_networks`] cuts out), for rewriting one tag in place.
pub fn extra_network_spans(text: &str) -> Vec<(std::ops::Range<usize>, ExtraNetwork)> {
    let mut spans = Vec::new();
    // With no `>` after the arguments' start a tag cannot match; knowing that keeps many `<` linear.
    let last_gt = text.rfind('>');
    let mut i = 0;
    while let Some(off) = text[i..].find('<') {
        i += off;
        match tag_at(text, i, last_gt) {
            Some((end, net)) => {
                spans.push((i..end, net));
                i = end;
            }
            None => i += 1,
        }
    }
    spans
}

fn tag_at(text: &str, i: usize, last_gt: Option<usize>) -> Option<(usize, ExtraNetwork)> {
    let name_end = skip_chars(text, i + 1, is_word);
    if name_end == i + 1 || text.as_bytes().get(name_end) != Some(&b':') || last_gt? <= name_end {
        return None;
    }
    let args = name_end + 1;
    let gt = args + text[args..].find('>').filter(|&len| len > 0)?;
    let kind = text[i + 1..name_end].to_string();
    let mut net = ExtraNetwork {
        kind,
        positional: Vec::new(),
        named: Vec::new(),
    };
    for item in text[args..gt].split(':') {
        match item
            .split_once('=')
            .filter(|(_, value)| !value.contains('='))
        {
            Some((key, value)) => match net.named.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.to_string(),
                None => net.named.push((key.to_string(), value.to_string())),
            },
            None => net.positional.push(item.to_string()),
        }
    }
    Some((gt + 1, net))
}

/// A LoRA tag as A1111's LoRA extension reads it (`extra_networks_lora.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTag {
    /// The LoRA's name: the first positional argument.
    pub name: String,
    /// Text-encoder multiplier: the second positional argument, else 1; `te=` overrides.
    pub te: f64,
    /// UNet multiplier: the third positional argument, else `te`; `unet=` overrides.
    pub unet: f64,
    /// Dynamic rank: the fourth positional argument; `dyn=` overrides.
    pub dyn_dim: Option<i64>,
}

/// Reads a `lora` (or `lyco`) tag. Arguments that Python's `float()` / `int()` reject are an error,
/// and so (where A1111 would make a NaN image) are infinite and NaN multipliers.
pub fn lora_tag(net: &ExtraNetwork) -> Result<LoraTag, PromptError> {
    if net.kind != "lora" && net.kind != "lyco" {
        let reason = format!("<{}:...> is not a LoRA tag", net.kind);
        return Err(PromptError::BadLora(reason));
    }
    let Some(name) = net.positional.first() else {
        return Err(PromptError::BadLora("a tag without a name".to_string()));
    };
    let bad = |arg: String| PromptError::BadLora(format!("{name}: {arg:?} is not a usable number"));
    let finite = |s: &str| py_float(s).filter(|v| v.is_finite());
    let te = lora_arg(net, 1, "te", finite).map_err(bad)?.unwrap_or(1.0);
    let unet = lora_arg(net, 2, "unet", finite).map_err(bad)?.unwrap_or(te);
    let dyn_dim = lora_arg(net, 3, "dyn", py_int).map_err(bad)?;
    Ok(LoraTag {
        name: name.clone(),
        te,
        unet,
        dyn_dim,
    })
}

/// The `index`th positional argument, replaced by the named argument `key` if there is one (A1111
/// reads both, so either failing to parse is an error, given as the argument's text).
fn lora_arg<T>(
    net: &ExtraNetwork,
    index: usize,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    let read = |s: &String| parse(s).ok_or_else(|| s.clone());
    let positional = net.positional.get(index).map(read).transpose()?;
    let named = net.named.iter().find(|(k, _)| k == key);
    Ok(named.map(|(_, s)| read(s)).transpose()?.or(positional))
}
