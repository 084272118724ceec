//! A prompt read and chunked as ComfyUI's `CLIPTextEncode` does (`comfy/sd1_clip.py`:
//! `token_weights`, `SDTokenizer.tokenize_with_weights`).
//!
//! `(x)` multiplies the weight by 1.1 and `(x:w)` sets it to `w` (the number after the group's
//! last colon); groups nest; `\(` and `\)` are literal; everything else, `[ ]` included, is text.
//! Each weighted piece is tokenized whole, except that `embedding:name` (after a space or a
//! newline, or at the start) puts the named embedding's vectors there. Pieces of fewer than 8
//! tokens that do not fit in the current 75-token chunk move whole to the next one; longer ones
//! are split. A name that is not found is dropped with a warning, as ComfyUI does.

use super::chunks::{Chunk, Fix, VectorCount};
use super::pychars::py_float;
use super::tokenizer::ClipTokenizer;
use crate::{Error, Result};

/// Pieces of at least this many tokens may be split across chunks (`max_word_length`).
const MAX_WORD_LENGTH: usize = 8;
/// The word that introduces an embedding's name.
const EMBEDDING: &str = "embedding:";
/// Stand-ins for `\)` and `\(` while brackets are parsed (ComfyUI's `escape_important`).
const ESC_CLOSE: &str = "\u{0}\u{1}";
const ESC_OPEN: &str = "\u{0}\u{2}";

/// ComfyUI's `parse_parentheses`: the top-level pieces of `s` as byte ranges, each either a
/// `( ... )` group or text (an unmatched `)` makes the following brackets text).
fn top_level(s: &str, from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut depth) = (from, 0i64);
    for (i, c) in s[from..to].char_indices().map(|(i, c)| (from + i, c)) {
        match c {
            '(' => {
                if depth == 0 {
                    if i > start {
                        out.push((start, i));
                    }
                    start = i;
                }
                depth += 1;
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    out.push((start, i + 1));
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    if to > start {
        out.push((start, to));
    }
    out
}

/// ComfyUI's `token_weights(text, 1.0)` (after `escape_important`), without recursion: the
/// text's pieces with their weights, escapes restored.
pub(crate) fn comfy_weights(text: &str) -> Result<Vec<(String, f64)>> {
    let s = text.replace("\\)", ESC_CLOSE).replace("\\(", ESC_OPEN);
    let unescape = |t: &str| t.replace(ESC_CLOSE, ")").replace(ESC_OPEN, "(");
    let mut out = Vec::new();
    let mut stack = vec![(top_level(&s, 0, s.len()).into_iter(), 1.0f64)];
    while let Some((items, weight)) = stack.last_mut() {
        let weight = *weight;
        let Some((a, b)) = items.next() else {
            stack.pop();
            continue;
        };
        let piece = &s[a..b];
        if !(piece.len() >= 2 && piece.starts_with('(') && piece.ends_with(')')) {
            out.push((unescape(piece), weight));
            continue;
        }
        let (inner_a, mut inner_b) = (a + 1, b - 1);
        let mut w = weight * 1.1;
        if let Some(colon) = s[inner_a..inner_b].rfind(':').filter(|&c| c > 0) {
            if let Some(v) = py_float(&s[inner_a + colon + 1..inner_b]) {
                w = v;
                inner_b = inner_a + colon;
            }
        }
        if !w.is_finite() {
            let shown: String = unescape(piece).chars().take(60).collect();
            return Err(Error::InvalidRequest(format!(
                "prompt weight is not a usable number in {shown:?}"
            )));
        }
        stack.push((top_level(&s, inner_a, inner_b).into_iter(), w));
    }
    Ok(out)
}

/// One position of a ComfyUI token list: a token or one vector of an embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Token(u32),
    Vector { embedding: usize, row: usize },
}

/// `text` split at ` embedding:` and `\nembedding:`, the marker kept on the later parts.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut prefix = "";
    loop {
        let next = [" ", "\n"]
            .iter()
            .filter_map(|sep| rest.find(&format!("{sep}{EMBEDDING}")))
            .min();
        let Some(at) = next else {
            out.push(format!("{prefix}{rest}"));
            break;
        };
        out.push(format!("{prefix}{}", &rest[..at]));
        rest = &rest[at + 1 + EMBEDDING.len()..];
        prefix = EMBEDDING;
    }
    out.retain(|w| !w.is_empty());
    out
}

/// ComfyUI's `_try_get_embedding`: the embedding a name (and the text after it) names, and the
/// text left over.
fn lookup(name_part: &str, find: &dyn Fn(&str) -> Option<usize>) -> (Option<usize>, String) {
    let mut parts = name_part
        .split(char::is_whitespace)
        .filter(|p| !p.is_empty());
    let name = parts.next().unwrap_or("");
    let leftover = parts.collect::<Vec<_>>().join(" ");
    if let Some(found) = find(name) {
        return (Some(found), leftover);
    }
    let stripped = name.trim_matches(',');
    if stripped.len() < name.len() {
        // As ComfyUI: the name's tail past the stripped length is put back in front.
        let tail: String = name.chars().skip(stripped.chars().count()).collect();
        return (find(stripped), format!("{tail} {leftover}"));
    }
    (None, leftover)
}

/// The positions of one weighted piece, as ComfyUI's groups.
fn piece_groups(
    text: &str,
    weight: f32,
    tok: &ClipTokenizer,
    find: &dyn Fn(&str) -> Option<usize>,
    count: &mut VectorCount<'_>,
    missing: &mut Vec<String>,
) -> Result<Vec<Vec<(Item, f32)>>> {
    let mut groups = Vec::new();
    for word in words(text) {
        let mut word = word;
        if let Some(name_part) = word.strip_prefix(EMBEDDING) {
            let name_part = name_part.trim_matches('\n');
            let (found, leftover) = lookup(name_part, find);
            match found {
                Some(embedding) => {
                    let n = count(embedding)?;
                    let rows = (0..n).map(|row| (Item::Vector { embedding, row }, weight));
                    groups.push(rows.collect());
                }
                None => {
                    let name = name_part.split_whitespace().next().unwrap_or("");
                    tracing::warn!(name, "embedding not found; ignored as ComfyUI does");
                    missing.push(name.to_string());
                }
            }
            if leftover.is_empty() {
                continue;
            }
            word = leftover;
        }
        let ids = tok.tokenize(&word)?;
        groups.push(ids.into_iter().map(|t| (Item::Token(t), weight)).collect());
    }
    Ok(groups)
}

/// Builds chunks from groups as ComfyUI's `tokenize_with_weights` does.
fn pack(groups: Vec<Vec<(Item, f32)>>, tok: &ClipTokenizer) -> Vec<Chunk> {
    let max = tok.max_len();
    let mut batches: Vec<Vec<(Item, f32)>> = Vec::new();
    let mut batch = vec![(Item::Token(tok.bos_id()), 1.0)];
    let end = (Item::Token(tok.eos_id()), 1.0);
    let pad = (Item::Token(tok.pad_id()), 1.0);
    for mut group in groups {
        let large = group.len() >= MAX_WORD_LENGTH;
        while !group.is_empty() {
            if group.len() + batch.len() > max - 1 {
                let remaining = max - batch.len() - 1;
                if large {
                    let rest = group.split_off(remaining.min(group.len()));
                    batch.append(&mut group);
                    batch.push(end);
                    group = rest;
                } else {
                    batch.push(end);
                    batch.extend(std::iter::repeat_n(pad, remaining));
                }
                batches.push(std::mem::replace(
                    &mut batch,
                    vec![(Item::Token(tok.bos_id()), 1.0)],
                ));
            } else {
                batch.append(&mut group);
            }
        }
    }
    batch.push(end);
    let fill = max.saturating_sub(batch.len());
    batch.extend(std::iter::repeat_n(pad, fill));
    batches.push(batch);
    batches.into_iter().map(to_chunk).collect()
}

fn to_chunk(items: Vec<(Item, f32)>) -> Chunk {
    let mut chunk = Chunk {
        ids: Vec::with_capacity(items.len()),
        weights: Vec::with_capacity(items.len()),
        fixes: Vec::new(),
    };
    for (pos, (item, weight)) in items.into_iter().enumerate() {
        chunk.weights.push(weight);
        match item {
            Item::Token(t) => chunk.ids.push(t),
            Item::Vector { embedding, row } => {
                chunk.ids.push(0);
                match chunk.fixes.last_mut() {
                    Some(f) if f.embedding == embedding && f.pos + f.rows.len() == pos => {
                        f.rows.end = row + 1;
                    }
                    _ => chunk.fixes.push(Fix {
                        pos,
                        embedding,
                        rows: row..row + 1,
                    }),
                }
            }
        }
    }
    chunk
}

/// Chunks `text` by ComfyUI's rules; `find` looks an `embedding:` name up, `count` gives its
/// number of vectors; names not found are added to `missing`.
pub(crate) fn comfy_chunks(
    text: &str,
    tok: &ClipTokenizer,
    find: &dyn Fn(&str) -> Option<usize>,
    count: &mut VectorCount<'_>,
    missing: &mut Vec<String>,
) -> Result<Vec<Chunk>> {
    let mut groups = Vec::new();
    for (piece, weight) in comfy_weights(text)? {
        groups.extend(piece_groups(
            &piece,
            weight as f32,
            tok,
            find,
            count,
            missing,
        )?);
    }
    Ok(pack(groups, tok))
}

#[cfg(test)]
#[path = "comfy/tests.rs"]
mod tests;
