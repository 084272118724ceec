//! What limits a prompt and why one cannot be read.

use std::fmt;

/// Longest prompt, in characters, that `parse_attention`, `schedule` and the `prepare_*`
/// functions accept. Exact emphasis weights cost up to (runs x brackets) multiplications; this bound
/// keeps the worst case near 0.1 s.
pub const MAX_PROMPT_CHARS: usize = 20_000;

/// Most steps a `schedule` may span: alternation makes a text per step, each up to the prompt's size.
pub const MAX_STEPS: u32 = 1_000;

/// Why a prompt could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptError {
    /// The prompt has this many characters, more than [`MAX_PROMPT_CHARS`].
    TooLong(usize),
    /// The schedule would span this many steps, more than [`MAX_STEPS`].
    TooManySteps(u32),
    /// An emphasis or `AND` weight that is not a number, as in `(x:1.2.3)` (A1111 fails too), or one
    /// that is not finite (A1111 would make a NaN image).
    BadWeight(String),
    /// A prompt-editing step that is not finite, such as `[a:b:1e999]` (A1111 fails too).
    BadStep(String),
    /// An extra-network tag that cannot be read as a LoRA tag (the reason).
    BadLora(String),
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(n) => write!(f, "prompt of {n} characters (at most {MAX_PROMPT_CHARS})"),
            Self::TooManySteps(n) => {
                write!(f, "prompt schedule of {n} steps (at most {MAX_STEPS})")
            }
            Self::BadWeight(w) => write!(f, "prompt weight is not a usable number: {w:?}"),
            Self::BadStep(s) => write!(f, "prompt editing step is not a finite number: {s:?}"),
            Self::BadLora(reason) => write!(f, "LoRA tag: {reason}"),
        }
    }
}

impl std::error::Error for PromptError {}

pub(super) fn check_len(text: &str) -> Result<(), PromptError> {
    match text.chars().count() {
        n if n > MAX_PROMPT_CHARS => Err(PromptError::TooLong(n)),
        _ => Ok(()),
    }
}
