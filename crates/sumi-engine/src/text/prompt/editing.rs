//! Prompt editing (`[a:b:when]`, `[a:when]`, `[a::when]`) and alternation (`[a|b]`): A1111's
//! `get_learned_conditioning_prompt_schedules`, a text per range of steps.

use super::errors::{check_len, PromptError, MAX_STEPS};
use crate::text::pychars::{find_byte, py_space, skip_chars};

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
