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
use std::fmt;

use super::pychars::{find_byte, is_word, py_digit, py_float, py_int, py_space, skip_chars};

/// Longest prompt, in characters, that [`parse_attention`], [`schedule`] and the `prepare_*`
/// functions accept. Exact emphasis weights cost up to (runs x brackets) multiplications; this bound
/// keeps the worst case near 0.1 s.
pub const MAX_PROMPT_CHARS: usize = 20_000;

/// Most steps a [`schedule`] may span: alternation makes a text per step, each up to the prompt's size.
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

fn check_len(text: &str) -> Result<(), PromptError> {
    match text.chars().count() {
        n if n > MAX_PROMPT_CHARS => Err(PromptError::TooLong(n)),
        _ => Ok(()),
    }
}

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

// ---- Prompt editing and alternation: `get_learned_conditioning_prompt_schedules` ----------------

/// A prompt's texts over the steps: `(end_step, text)` pairs, end steps increasing and inclusive; the
/// last end step is the schedule's step count.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule(pub Vec<(u32, String)>);

/// The text A1111 uses at `step`: the first entry whose end step is at least `step`, or the first
/// entry when `step` is past them all (as `reconstruct_cond_batch`).
///
/// A1111 passes its denoiser's count of model calls so far, 0 at the first call: `[a:b:3]` over 10
/// steps gives `a` to calls 0 to 3, four calls.
pub fn text_at_step(schedule: &Schedule, step: u32) -> &str {
    let entries = &schedule.0;
    let found = entries
        .iter()
        .find(|(end, _)| step <= *end)
        .or(entries.first());
    found.map_or("", |(_, text)| text.as_str())
}

/// A1111's `get_learned_conditioning_prompt_schedules` for one prompt.
///
/// `steps` is the number A1111 passes: the sampler's total, which counts the extra model calls of
/// second-order samplers (twice the steps for Heun or DPM2); the caller works it out. For the
/// hires-fix pass, `steps` is the first pass's total and `hires_steps` the second pass's, which the
/// schedule then spans: a `when` written with a `.` between 1 and 2, or an integer above `steps`,
/// addresses the second pass.
/// `old_rule` is A1111's "Old prompt editing timelines" option: any `when` below 1 is a fraction of
/// `steps`, and the second pass reuses the first pass's numbers.
///
/// `[a:b:when]` is `a` up to step `when` and `b` after; `[a:when]` adds `a` after `when`; `[a::when]`
/// removes it; `when` is a step, or a fraction of the steps when written with a `.`. `[a|b|c]` is
/// `a`, `b`, `c`, `a`... at steps 1, 2, 3, 4...; they nest. A prompt that A1111's grammar rejects (a
/// `|` outside `[...]`, a backslash at the end) is used whole at every step.
///
/// Where a stray top-level bracket or colon sits next to a construct (`[a:b:3]]`), A1111's lark
/// parser resolves the ambiguity in an order that depends on Python's per-process string hashing, so
/// A1111 itself varies between runs; this always reads the construct, one of A1111's outcomes.
pub fn schedule(
    text: &str,
    steps: u32,
    hires_steps: Option<u32>,
    old_rule: bool,
) -> Result<Schedule, PromptError> {
    check_len(text)?;
    let timing = Timing::new(steps, hires_steps, old_rule);
    if timing.steps > MAX_STEPS {
        return Err(PromptError::TooManySteps(timing.steps));
    }
    let Some(events) = parse_edits(text) else {
        return Ok(Schedule(vec![(timing.steps, text.to_string())]));
    };
    let (mut whens, mut ends) = (Vec::new(), vec![i64::from(timing.steps)]);
    for ev in &events {
        if let Ev::Edit { num, .. } = *ev {
            whens.push(timing.when(&text[num.0..num.1])?);
        }
    }
    if events.iter().any(|ev| matches!(ev, Ev::Alt(_))) {
        ends.extend(1..=i64::from(timing.steps));
    }
    ends.extend(whens.iter().filter(|&&when| when >= 1));
    ends.sort_unstable();
    ends.dedup();
    let entries = ends.into_iter().filter_map(|end| u32::try_from(end).ok());
    let entries = entries.map(|end| (end, render(text, &events, &whens, i64::from(end))));
    Ok(Schedule(entries.collect()))
}

/// A1111's step arithmetic for one pass: its step count and the offsets of the hires pass.
struct Timing {
    steps: u32,
    int_offset: f64,
    flt_offset: f64,
    old_rule: bool,
}

impl Timing {
    fn new(steps: u32, hires_steps: Option<u32>, old_rule: bool) -> Self {
        let hires = hires_steps.filter(|_| !old_rule);
        let offsets = hires.map_or((0.0, 0.0), |_| (f64::from(steps), 1.0));
        let (int_offset, flt_offset) = offsets;
        Self {
            steps: hires.unwrap_or(steps),
            int_offset,
            flt_offset,
            old_rule,
        }
    }

    /// The step `num` switches at, A1111's `min(steps, int(v))`; below 1 it adds no switch.
    fn when(&self, num: &str) -> Result<i64, PromptError> {
        let x: f64 = num.parse().unwrap_or(f64::NAN);
        let steps = f64::from(self.steps);
        let v = match (self.old_rule, num.contains('.')) {
            (true, _) if x < 1.0 => x * steps,
            (true, _) => x,
            (false, true) => (x - self.flt_offset) * steps,
            (false, false) => x - self.int_offset,
        };
        if !v.is_finite() {
            return Err(PromptError::BadStep(num.to_string()));
        }
        // `as` saturates, and every value below 1 acts the same.
        Ok((v.trunc() as i64).min(i64::from(self.steps)))
    }
}

/// The parsed prompt as a flat list, so that neither parsing nor rendering recurses.
#[derive(Debug, Clone, Copy)]
enum Ev {
    /// Text copied as written (byte range).
    Text(usize, usize),
    /// Opens `[before:after:when]` (parts separated by `Sep`), or `[after:when]` if `after_only`;
    /// `num` is the byte range of `when`.
    Edit {
        num: (usize, usize),
        after_only: bool,
    },
    /// Opens an alternation of that many parts, separated by `Sep`.
    Alt(usize),
    Sep,
    End,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Square,
    SquareAfterColon,
    SquareWhen,
    Alternate,
    Paren,
    ParenAfterColon,
}

/// A `[` or `(` whose construct is not complete yet; `ev` is its opening event, `sep_ev` the event of
/// its first `:`, `mark` the byte after its last `:`.
#[derive(Clone, Copy)]
struct Frame {
    start: usize,
    ev: usize,
    part: Part,
    sep_ev: usize,
    mark: usize,
    alts: usize,
}

/// Parses with A1111's lark grammar; `None` where lark raises a parse error.
///
/// Inside brackets every character belongs to a well-formed construct, so whether a construct
/// starting at a given `[` or `(` is valid does not depend on what surrounds it. At the top level
/// every valid construct is taken, and other brackets and colons are text. When a construct fails,
/// every construct still open fails too: they are remembered, and reading starts again after the
/// outermost one, which keeps parsing linear.
fn parse_edits(text: &str) -> Option<Vec<Ev>> {
    let mut failed = vec![false; text.len()];
    let (mut events, mut frames) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < text.len() || !frames.is_empty() {
        match parse_step(text, i, &failed, &mut events, &mut frames) {
            Some(next) => i = next,
            None if frames.is_empty() => return None,
            None => {
                frames.iter().for_each(|f| failed[f.start] = true);
                let (start, ev) = frames.first().map(|f| (f.start, f.ev))?;
                events.truncate(ev);
                frames.clear();
                i = start;
            }
        }
    }
    Some(events)
}

/// Reads what starts at `i`; gives where to go on, or `None` for a parse error at the top level or
/// the failure of the innermost open construct (and so of every open one).
fn parse_step(
    text: &str,
    i: usize,
    failed: &[bool],
    ev: &mut Vec<Ev>,
    frames: &mut Vec<Frame>,
) -> Option<usize> {
    let c = *text.as_bytes().get(i)?;
    let Some(f) = frames.last_mut() else {
        let end = match c {
            b'|' => return None,
            b'[' | b'(' if !failed[i] => return Some(open(frames, ev, i, c)),
            b'[' | b'(' | b']' | b')' | b':' => i + 1,
            _ => plain_end(text, i)?,
        };
        ev.push(Ev::Text(i, end));
        return Some(end);
    };
    match (c, f.part) {
        (b'[' | b'(' | b'\\', Part::SquareWhen) => None,
        (b'[' | b'(', _) if failed[i] => None,
        (b'[' | b'(', _) => Some(open(frames, ev, i, c)),
        (b']', _) => close_square(text, i, ev, frames),
        (b')', Part::Paren | Part::ParenAfterColon) => {
            ev.push(Ev::Text(i, i + 1));
            frames.pop();
            Some(i + 1)
        }
        (b':', Part::Square) => {
            (f.part, f.sep_ev, f.mark) = (Part::SquareAfterColon, ev.len(), i + 1);
            ev.push(Ev::Sep);
            Some(i + 1)
        }
        (b':', Part::SquareAfterColon) => {
            (f.part, f.mark) = (Part::SquareWhen, i + 1);
            Some(i + 1)
        }
        (b':', Part::Paren) => {
            f.part = Part::ParenAfterColon;
            ev.push(Ev::Text(i, i + 1));
            Some(i + 1)
        }
        (b'|', Part::Square | Part::Alternate) => {
            f.alts = if f.part == Part::Square {
                2
            } else {
                f.alts + 1
            };
            f.part = Part::Alternate;
            ev.push(Ev::Sep);
            Some(i + 1)
        }
        (b')' | b':' | b'|', _) => None,
        (_, part) => {
            let end = plain_end(text, i)?;
            if part != Part::SquareWhen {
                ev.push(Ev::Text(i, end));
            }
            Some(end)
        }
    }
}

fn open(frames: &mut Vec<Frame>, ev: &mut Vec<Ev>, i: usize, c: u8) -> usize {
    let part = if c == b'[' { Part::Square } else { Part::Paren };
    frames.push(Frame {
        start: i,
        ev: ev.len(),
        part,
        sep_ev: 0,
        mark: 0,
        alts: 0,
    });
    // Stays for `(` and `[x]`; replaced when the `[` turns out to open an edit or an alternation.
    ev.push(Ev::Text(i, i + 1));
    i + 1
}

fn close_square(text: &str, i: usize, ev: &mut Vec<Ev>, frames: &mut Vec<Frame>) -> Option<usize> {
    let f = *frames.last()?;
    let (opener, closer) = match f.part {
        Part::Square => (Ev::Text(f.start, f.start + 1), Ev::Text(i, i + 1)),
        Part::Alternate => (Ev::Alt(f.alts), Ev::End),
        Part::SquareAfterColon | Part::SquareWhen => {
            let num = when_number(text, f.mark, i)?;
            let after_only = f.part == Part::SquareAfterColon;
            if after_only {
                ev.truncate(f.sep_ev);
            }
            (Ev::Edit { num, after_only }, Ev::End)
        }
        Part::Paren | Part::ParenAfterColon => return None,
    };
    *ev.get_mut(f.ev)? = opener;
    ev.push(closer);
    frames.pop();
    Some(i + 1)
}

/// `[WHITESPACE] NUMBER [WHITESPACE]` filling `text[from..to]`; gives the number's byte range.
fn when_number(text: &str, from: usize, to: usize) -> Option<(usize, usize)> {
    let start = skip_chars(text, from, py_space);
    let end = start + number_len(&text.as_bytes()[start..to]);
    (end > start && skip_chars(text, end, py_space) >= to).then_some((start, end))
}

/// Length of the longest prefix that is lark's `SIGNED_NUMBER` (`[+-]?` then `1`, `1.`, `.5` or
/// `1.5`, then an optional exponent; lark's regex always finds the longest).
fn number_len(s: &[u8]) -> usize {
    let digits = |from: usize| {
        s.iter()
            .skip(from)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let start = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let int = digits(start);
    let mut end = start + int;
    if s.get(end) == Some(&b'.') && int + digits(end + 1) > 0 {
        end += 1 + digits(end + 1);
    }
    if end == start {
        return 0;
    }
    if matches!(s.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(s.get(end + 1), Some(b'+' | b'-')));
        let exp = digits(end + 1 + sign);
        end += if exp > 0 { 1 + sign + exp } else { 0 };
    }
    end
}

/// The text at `step`: A1111's `AtStep` transformer.
fn render(text: &str, events: &[Ev], whens: &[i64], step: i64) -> String {
    // For each open construct: whether it is shown, which part is picked, which part we are in.
    let mut stack: Vec<(bool, usize, usize)> = Vec::new();
    let (mut out, mut shown, mut whens) = (String::new(), true, whens.iter());
    for ev in events {
        match *ev {
            Ev::Text(a, b) if shown => out.push_str(&text[a..b]),
            Ev::Text(..) => {}
            Ev::Edit { after_only, .. } => {
                let before = whens.next().is_some_and(|&when| step <= when);
                let (pick, part) = (usize::from(!before), usize::from(after_only));
                stack.push((shown, pick, part));
                shown = shown && pick == part;
            }
            Ev::Alt(n) => {
                let n = i64::try_from(n.max(1)).unwrap_or(1);
                let pick = usize::try_from((step - 1).rem_euclid(n)).unwrap_or(0);
                stack.push((shown, pick, 0));
                shown = shown && pick == 0;
            }
            Ev::Sep => {
                if let Some((outer, pick, part)) = stack.last_mut() {
                    *part += 1;
                    shown = *outer && *part == *pick;
                }
            }
            Ev::End => shown = stack.pop().is_none_or(|(outer, ..)| outer),
        }
    }
    out
}

/// End of lark's `plain` text (`([^\\\[\]():|]|\\.)+`) starting at `i`; `None` for a backslash at the
/// end or before a newline, which nothing in the grammar matches.
fn plain_end(text: &str, mut i: usize) -> Option<usize> {
    let b = text.as_bytes();
    loop {
        i = find_byte(b, i, b"\\[]():|");
        if b.get(i) != Some(&b'\\') {
            return Some(i);
        }
        let c = text[i + 1..].chars().next().filter(|&c| c != '\n')?;
        i += 1 + c.len_utf8();
    }
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

// ---- Extra networks: `extra_networks.parse_prompt` and the LoRA extension -----------------------

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
