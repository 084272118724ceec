//! The A1111 (stable-diffusion-webui v1.10) prompt syntax: emphasis weights, prompt editing and
//! alternation schedules, composable `AND` sub-prompts and extra-network tags (`<lora:name:0.8>`).
//!
//! A1111 treats a positive prompt in this order ([`prepare_prompt`] does the same):
//! 1. `extra_networks.parse_prompt`: every `<kind:args>` tag is cut out ([`strip_extra_networks`]);
//! 2. `prompt_parser.get_multicond_prompt_list`: the text is split on `AND` ([`split_and`]);
//! 3. `prompt_parser.get_learned_conditioning_prompt_schedules`: a text per step range ([`schedule`]);
//! 4. `sd_hijack_clip.tokenize_line` -> `parse_prompt_attention`: weighted runs ([`parse_attention`]).
//!
//! A negative prompt only goes through 3 and 4: its tags and `AND`s stay text ([`prepare_negative`]).
//! Before all that, A1111's "Enable comments" option (on by default) removes `#` comments from both
//! prompts (`processing_scripts/comments.py`); the caller decides whether to do the same.
//!
//! Python's regex classes are matched as Python 3.10 defines them: `\s` is `str.isspace`, `\d` any
//! Unicode decimal digit; `\w` is approximated by `char::is_alphanumeric` or `_`.

use std::collections::HashMap;

use super::pychars::{find_byte, is_word, py_digit, py_float, py_space, skip_chars};

mod editing;
mod errors;
mod extra_networks;

pub use editing::{schedule, text_at_step, Schedule};
use errors::check_len;
pub use errors::{PromptError, MAX_PROMPT_CHARS, MAX_STEPS};
pub use extra_networks::{
    extra_network_spans, lora_tag, strip_extra_networks, ExtraNetwork, LoraTag,
};

// ---- Emphasis: `parse_prompt_attention` ---------------------------------------------------------

/// One piece of a prompt after emphasis parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum Run {
    /// Text whose tokens all get `weight` (computed in f64 as A1111 does; its encoder uses f32).
    Text {
        /// The text, brackets and escapes removed.
        text: String,
        /// The product of the multipliers of the brackets around the text.
        weight: f64,
    },
    /// `BREAK`: the encoder pads the current 75-token chunk and starts a new one.
    Break,
}

const ROUND: f64 = 1.1;

/// Splits `text` into weighted runs exactly as A1111's `parse_prompt_attention`: `(x)` multiplies by
/// 1.1, `[x]` divides by 1.1, `(x:w)` multiplies by `w`; nesting multiplies; brackets left open close
/// at the end; an unmatched closer is text; `\(` `\)` `\[` `\]` `\\` are literal and any other
/// backslash is dropped; adjacent runs of equal weight merge; the word `BREAK` (with the whitespace
/// around it) becomes [`Run::Break`]. An empty prompt gives one empty run of weight 1.
///
/// As in A1111's encoder, a `BREAK` inside brackets is not one: it is the text `BREAK` with a
/// negative weight.
pub fn parse_attention(text: &str) -> Result<Vec<Run>, PromptError> {
    check_len(text)?;
    let b = text.as_bytes();
    let mut res: Vec<(String, f64)> = Vec::new();
    let (mut round, mut square) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i = match c {
            b'\\' => {
                // `\(` `\)` `\[` `\]` `\\` give the character; any other backslash gives nothing.
                let escaped = b.get(i + 1).filter(|e| b"()[]\\".contains(e));
                let literal = escaped.map(|&e| char::from(e).to_string());
                res.push((literal.unwrap_or_default(), 1.0));
                i + 1 + usize::from(escaped.is_some())
            }
            b'(' | b'[' => {
                (if c == b'(' { &mut round } else { &mut square }).push(res.len());
                i + 1
            }
            b':' => match (weight_close(text, i), round.last()) {
                (Some((end, num)), Some(&start)) => {
                    round.pop();
                    multiply(&mut res, start, parse_weight(num)?);
                    end
                }
                (Some((end, _)), None) => push_text(&mut res, text, i, end),
                (None, _) => push_text(&mut res, text, i, i + 1),
            },
            b')' | b']' => {
                let (open, m) = match c {
                    b')' => (&mut round, ROUND),
                    _ => (&mut square, 1.0 / ROUND),
                };
                match open.pop() {
                    Some(start) => {
                        multiply(&mut res, start, m);
                        i + 1
                    }
                    None => push_text(&mut res, text, i, i + 1),
                }
            }
            _ => push_text(&mut res, text, i, find_byte(b, i, b"\\()[]:")),
        };
    }
    round
        .into_iter()
        .for_each(|start| multiply(&mut res, start, ROUND));
    square
        .into_iter()
        .for_each(|start| multiply(&mut res, start, 1.0 / ROUND));
    let mut runs: Vec<(String, f64)> = Vec::with_capacity(res.len());
    for (t, w) in res {
        match runs.last_mut() {
            Some(last) if last.1 == w => last.0.push_str(&t),
            _ => runs.push((t, w)),
        }
    }
    if runs.is_empty() {
        runs.push((String::new(), 1.0));
    }
    runs.into_iter().map(into_run).collect()
}

fn into_run((text, weight): (String, f64)) -> Result<Run, PromptError> {
    match weight {
        w if !w.is_finite() => Err(PromptError::BadWeight(text)),
        // The test `sd_hijack_clip.tokenize_line` makes.
        w if w == -1.0 && text == "BREAK" => Ok(Run::Break),
        _ => Ok(Run::Text { text, weight }),
    }
}

fn multiply(res: &mut [(String, f64)], start: usize, m: f64) {
    res.iter_mut().skip(start).for_each(|run| run.1 *= m);
}

/// At the `:` at `i`, matches `:\s*([+-]?[.\d]+)\s*\)`; gives its end and the number's text.
fn weight_close(text: &str, i: usize) -> Option<(usize, &str)> {
    let start = skip_chars(text, i + 1, py_space);
    let sign = usize::from(matches!(text.as_bytes().get(start), Some(b'+' | b'-')));
    let num_end = skip_chars(text, start + sign, |c| c == '.' || py_digit(c).is_some());
    let close = skip_chars(text, num_end, py_space);
    let closed = num_end > start + sign && text.as_bytes().get(close) == Some(&b')');
    closed.then(|| (close + 1, &text[start..num_end]))
}

fn parse_weight(num: &str) -> Result<f64, PromptError> {
    py_float(num)
        .filter(|w| w.is_finite())
        .ok_or_else(|| PromptError::BadWeight(num.to_string()))
}

/// Appends `text[from..to]` as A1111 appends plain text: split on `\s*\bBREAK\b\s*`, with a marker
/// ("BREAK", -1) between the parts. Gives `to`.
fn push_text(res: &mut Vec<(String, f64)>, text: &str, from: usize, to: usize) -> usize {
    for (k, part) in split_word(&text[from..to], "BREAK", true)
        .into_iter()
        .enumerate()
    {
        if k > 0 {
            res.push(("BREAK".to_string(), -1.0));
        }
        res.push((part.to_string(), 1.0));
    }
    to
}

/// Python's `re.split(r"\bWORD\b", s)`, or with `eat_space` `re.split(r"\s*\bWORD\b\s*", s)`.
fn split_word<'a>(s: &'a str, word: &str, eat_space: bool) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut last, mut from) = (0, 0);
    while let Some(off) = s[from..].find(word) {
        let (start, end) = (from + off, from + off + word.len());
        let before = s[..start].chars().next_back().is_none_or(|c| !is_word(c));
        if !(before && s[end..].chars().next().is_none_or(|c| !is_word(c))) {
            from = start + 1;
            continue;
        }
        let (mut cut, mut resume) = (start, end);
        if eat_space {
            cut = last + s[last..start].trim_end_matches(py_space).len();
            resume = skip_chars(s, end, py_space);
        }
        parts.push(&s[last..cut]);
        (last, from) = (resume, resume);
    }
    parts.push(&s[last..]);
    parts
}

// ---- Composable prompts: `get_multicond_prompt_list` --------------------------------------------

/// Splits a positive prompt into A1111's composable sub-prompts: on the word `AND` (regex `\bAND\b`:
/// no spaces needed), each part losing an optional trailing `:weight` (default 1), the whitespace
/// before it and at the end; whitespace at the start stays. Weights are as A1111 computes them.
pub fn split_and(text: &str) -> Vec<(String, f64)> {
    split_word(text, "AND", false)
        .into_iter()
        .map(sub_prompt)
        .collect()
}

/// A1111's `re_weight`: `^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$`.
fn sub_prompt(s: &str) -> (String, f64) {
    let body = s.trim_end_matches(py_space);
    if let Some(colon) = body.rfind(':') {
        let num = body[colon + 1..].trim_start_matches(py_space);
        if let Some(weight) = is_and_weight(num).then(|| py_float(num)).flatten() {
            return (body[..colon].trim_end_matches(py_space).to_string(), weight);
        }
    }
    (body.to_string(), 1.0)
}

/// `[-+]?(?:\d+\.?|\d*\.\d+)` over the whole of `num`.
fn is_and_weight(num: &str) -> bool {
    let unsigned = num.strip_prefix(['+', '-']).unwrap_or(num);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.chars().all(|c| py_digit(c).is_some());
    digits(int) && digits(frac) && int.len() + frac.len() > 0
}

// ---- The whole pipeline -------------------------------------------------------------------------

/// The weighted runs of one scheduled text, used up to `end_step` (see [`text_at_step`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepRuns {
    /// Last step (A1111's count of model calls) that uses these runs.
    pub end_step: u32,
    /// The text's runs, ready for tokenisation.
    pub runs: Vec<Run>,
}

/// A positive prompt ready for the text encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPrompt {
    /// The extra-network tags cut out of it, in order.
    pub networks: Vec<ExtraNetwork>,
    /// Its `AND` sub-prompts in order (one without `AND`): weight and runs per step range.
    pub parts: Vec<(f64, Vec<StepRuns>)>,
}

/// A positive prompt as A1111 prepares it: tags cut out, split on `AND`, each part scheduled (the
/// arguments are [`schedule`]'s) and each scheduled text parsed for emphasis.
pub fn prepare_prompt(
    text: &str,
    steps: u32,
    hires_steps: Option<u32>,
    old_rule: bool,
) -> Result<PreparedPrompt, PromptError> {
    check_len(text)?;
    let (stripped, networks) = strip_extra_networks(text);
    let mut parts = Vec::new();
    for (sub, weight) in split_and(&stripped) {
        if !weight.is_finite() {
            return Err(PromptError::BadWeight(sub));
        }
        parts.push((
            weight,
            prepare_negative(&sub, steps, hires_steps, old_rule)?,
        ));
    }
    Ok(PreparedPrompt { networks, parts })
}

/// A negative prompt as A1111 prepares it: scheduled and parsed for emphasis; tags and `AND` stay.
pub fn prepare_negative(
    text: &str,
    steps: u32,
    hires_steps: Option<u32>,
    old_rule: bool,
) -> Result<Vec<StepRuns>, PromptError> {
    let mut parsed: HashMap<String, Vec<Run>> = HashMap::new();
    let mut out = Vec::new();
    for (end_step, t) in schedule(text, steps, hires_steps, old_rule)?.0 {
        let runs = match parsed.get(&t) {
            Some(runs) => runs.clone(),
            None => {
                let runs = parse_attention(&t)?;
                parsed.insert(t, runs.clone());
                runs
            }
        };
        out.push(StepRuns { end_step, runs });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "prompt/tests.rs"]
mod tests;
