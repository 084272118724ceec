//! How a prompt is read and encoded: the emphasis mode, clip skip and what they mean for each
//! kind of text encoder, in A1111's rules and in ComfyUI's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::embeddings::Embeddings;
use super::prompt::MAX_PROMPT_CHARS;
use crate::arch::clip::HiddenLayer;
use crate::family::spec::TextStyle;
use crate::{Error, Result};

/// Most layers a clip skip may skip: OpenCLIP ViT-bigG, the deepest text tower in use, has 32.
pub const MAX_CLIP_SKIP: u32 = 32;

/// How prompt weights are read and applied (A1111's "Emphasis mode" setting, plus ComfyUI's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
pub enum Emphasis {
    /// A1111's default: each token's vector times its weight, then the chunk's mean restored.
    #[default]
    Original,
    /// A1111's "No norm": each token's vector times its weight.
    NoNorm,
    /// A1111's "Ignore": the syntax is read (BREAK works) but weights are not applied.
    Ignore,
    /// A1111's "None": brackets are plain text (no weights, no BREAK).
    None,
    /// ComfyUI's prompt rules: `(x)` and `(x:w)` only (`w` sets the weight), `embedding:name`,
    /// every other character is text; a weighted vector moves away from the empty prompt's
    /// (`z = (z - z_empty) * w + z_empty`). No prompt editing, `AND`, `BREAK` or tags.
    Comfy,
}

impl Emphasis {
    /// Every mode, in the order a UI lists them.
    pub const ALL: [Emphasis; 5] = [
        Emphasis::Original,
        Emphasis::NoNorm,
        Emphasis::Ignore,
        Emphasis::None,
        Emphasis::Comfy,
    ];

    /// The name in requests and on the command line (`original`, `no-norm`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Emphasis::Original => "original",
            Emphasis::NoNorm => "no-norm",
            Emphasis::Ignore => "ignore",
            Emphasis::None => "none",
            Emphasis::Comfy => "comfy",
        }
    }

    /// The value of A1111's `Emphasis` infotext key (`None` for ComfyUI's rules, which A1111
    /// does not have).
    pub fn a1111_name(self) -> Option<&'static str> {
        match self {
            Emphasis::Original => Some("Original"),
            Emphasis::NoNorm => Some("No norm"),
            Emphasis::Ignore => Some("Ignore"),
            Emphasis::None => Some("None"),
            Emphasis::Comfy => None,
        }
    }

    /// Whether the prompt follows ComfyUI's rules rather than A1111's.
    pub fn is_comfy(self) -> bool {
        self == Emphasis::Comfy
    }
}

impl fmt::Display for Emphasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Emphasis {
    type Err = Error;

    /// Reads a request name (`no-norm`) or an A1111 infotext value (`No norm`), any case.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        Emphasis::ALL
            .into_iter()
            .find(|e| {
                e.name().eq_ignore_ascii_case(s)
                    || e.a1111_name().is_some_and(|n| n.eq_ignore_ascii_case(s))
            })
            .ok_or_else(|| Error::UnknownName {
                kind: "emphasis mode",
                name: s.to_string(),
                valid: Emphasis::ALL.map(|e| e.name()).join(", "),
            })
    }
}

/// Checks that a prompt has at most [`MAX_PROMPT_CHARS`] characters, before any tokenizing
/// (`what` names it in the error).
pub fn check_prompt(what: &str, text: &str) -> Result<()> {
    let n = text.chars().count();
    if n > MAX_PROMPT_CHARS {
        return Err(Error::InvalidRequest(format!(
            "the {what} has {n} characters; Sumi reads at most {MAX_PROMPT_CHARS}: shorten it"
        )));
    }
    Ok(())
}

/// Checks a request's clip skip: 1 (the last layer) to [`MAX_CLIP_SKIP`].
pub fn check_clip_skip(clip_skip: Option<u32>) -> Result<()> {
    match clip_skip {
        Some(n) if n == 0 || n > MAX_CLIP_SKIP => Err(Error::InvalidRequest(format!(
            "clip skip {n} must be between 1 (the last layer) and {MAX_CLIP_SKIP}"
        ))),
        _ => Ok(()),
    }
}

/// The clip skip that `None` means for encoders used as `style` under `emphasis`'s rules (A1111:
/// 1, which it ignores outside SD 1.x; ComfyUI: 2 where the model uses the penultimate layer).
pub fn default_clip_skip(style: TextStyle, emphasis: Emphasis) -> u32 {
    match (style, emphasis.is_comfy()) {
        (TextStyle::Penultimate | TextStyle::TruncatedLastLayer, true) => 2,
        _ => 1,
    }
}

/// What an encoding of a request's prompts needs besides the texts.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// How weights are read and applied.
    pub emphasis: Emphasis,
    /// Clip skip (1 = the last layer); `None` is the default of the rules in use.
    pub clip_skip: Option<u32>,
    /// Textual-inversion embeddings the prompts may name.
    pub embeddings: &'a Embeddings,
    /// The step count prompt editing and alternation count in: A1111 passes the sampler's
    /// total, which doubles the steps of second-order samplers.
    pub steps: u32,
    /// T5's sequence length for models that encode with T5 (Flux); `None`: the model's.
    pub max_sequence_length: Option<usize>,
}

/// The hidden state to take from a text encoder of `layers` stored layers in a model whose
/// encoders are used as `style` says, or an error when the request asks for a layer the stored
/// tower does not have.
pub fn hidden_layer(
    style: TextStyle,
    layers: usize,
    emphasis: Emphasis,
    clip_skip: Option<u32>,
) -> Result<HiddenLayer> {
    let from_end = |n: usize, final_norm: bool| -> Result<HiddenLayer> {
        match n {
            1 if final_norm => Ok(HiddenLayer::Last),
            n if n <= layers => Ok(HiddenLayer::FromEnd { n, final_norm }),
            n => Err(Error::InvalidRequest(format!(
                "clip skip {n} needs a text encoder of at least {n} layers; this one has {layers}"
            ))),
        }
    };
    let skip = clip_skip.map(|n| n as usize);
    match (style, emphasis.is_comfy()) {
        // A1111 applies clip skip to SD 1.x only (SD 2.x and SDXL keep their layer).
        // Flux takes only CLIP-L's pooled output, made from the last layer.
        (TextStyle::Flux, _) => Ok(HiddenLayer::Last),
        (TextStyle::LastLayer, false) => from_end(skip.unwrap_or(1), true),
        (TextStyle::TruncatedLastLayer, false) => Ok(HiddenLayer::Last),
        (TextStyle::Penultimate, false) => from_end(2, false),
        // ComfyUI's CLIPSetLastLayer: past the tower's depth it falls back to the last layer.
        (TextStyle::LastLayer, true) => match skip.unwrap_or(1) {
            n if n > layers => Ok(HiddenLayer::Last),
            n => from_end(n, true),
        },
        (TextStyle::Penultimate, true) => match skip.unwrap_or(2) {
            n if n > layers => Ok(HiddenLayer::Last),
            n => from_end(n, false),
        },
        // The full tower has one layer more than the stored one.
        (TextStyle::TruncatedLastLayer, true) => match skip.unwrap_or(2) {
            1 => Err(Error::InvalidRequest(
                "clip skip 1 (ComfyUI's CLIPSetLastLayer -1) needs the text encoder's last \
                 layer, which SD 2.x files leave out; use 2 (the default)"
                    .into(),
            )),
            n if n > layers + 1 => Err(Error::InvalidRequest(format!(
                "clip skip {n} is deeper than this text encoder ({} layers)",
                layers + 1
            ))),
            n => from_end(n - 1, true),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Emphasis::ALL {
            assert_eq!(e.name().parse::<Emphasis>().unwrap(), e);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.name()));
            if let Some(a) = e.a1111_name() {
                assert_eq!(a.parse::<Emphasis>().unwrap(), e);
            }
        }
        assert!("strong".parse::<Emphasis>().is_err());
    }

    #[test]
    fn typescript_names_are_the_request_names() {
        let decl = <Emphasis as TS>::decl();
        for e in Emphasis::ALL {
            assert!(decl.contains(&format!("\"{}\"", e.name())), "{decl}");
        }
    }

    #[test]
    fn clip_skip_follows_each_tool() {
        use HiddenLayer::{FromEnd, Last};
        let a = Emphasis::Original;
        let c = Emphasis::Comfy;
        let sd1 = TextStyle::LastLayer;
        assert_eq!(hidden_layer(sd1, 12, a, None).unwrap(), Last);
        assert_eq!(hidden_layer(sd1, 12, a, Some(1)).unwrap(), Last);
        let two = FromEnd {
            n: 2,
            final_norm: true,
        };
        assert_eq!(hidden_layer(sd1, 12, a, Some(2)).unwrap(), two);
        assert!(hidden_layer(sd1, 12, a, Some(13)).is_err());
        assert_eq!(hidden_layer(sd1, 12, c, Some(13)).unwrap(), Last);
        let sd2 = TextStyle::TruncatedLastLayer;
        assert_eq!(hidden_layer(sd2, 23, a, Some(2)).unwrap(), Last);
        assert_eq!(hidden_layer(sd2, 23, c, None).unwrap(), Last);
        assert!(hidden_layer(sd2, 23, c, Some(1)).is_err());
        assert_eq!(hidden_layer(sd2, 23, c, Some(3)).unwrap(), two);
        let xl = TextStyle::Penultimate;
        let pen = FromEnd {
            n: 2,
            final_norm: false,
        };
        assert_eq!(hidden_layer(xl, 12, a, Some(3)).unwrap(), pen);
        assert_eq!(hidden_layer(xl, 32, c, None).unwrap(), pen);
        let last_raw = FromEnd {
            n: 1,
            final_norm: false,
        };
        assert_eq!(hidden_layer(xl, 12, c, Some(1)).unwrap(), last_raw);
        assert_eq!(hidden_layer(xl, 12, c, Some(20)).unwrap(), Last);
    }
}
