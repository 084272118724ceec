//! A prompt's weighted runs cut into the text encoder's 77-token inputs as A1111 cuts them
//! (`sd_hijack_clip.tokenize_line` and `process_tokens`).
//!
//! Each run is tokenized on its own; tokens carry their run's weight. A chunk holds 75 tokens
//! between BOS and EOS. When a chunk is full and the last comma is at most 20 tokens back, the
//! tokens after that comma move to the next chunk; `BREAK` closes the chunk; an embedding's
//! vectors never straddle two chunks. Short chunks are padded with EOS; when the tokenizer's
//! padding token is another one (OpenCLIP), everything after the first EOS becomes padding.

use std::ops::Range;

use super::embeddings::NameIndex;
use super::prompt::Run;
use super::tokenizer::ClipTokenizer;
use crate::{Error, Result};

/// Most tokens after the last comma that move to the next chunk (`comma_padding_backtrack`).
const COMMA_BACKTRACK: usize = 20;

/// Token positions of a chunk that an embedding's vectors fill.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fix {
    /// First position in the framed sequence (BOS is position 0).
    pub pos: usize,
    /// Which embedding.
    pub embedding: usize,
    /// Which of its vectors, in order.
    pub rows: Range<usize>,
}

/// One text-encoder input: framed token ids, a weight per position, embedding vectors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunk {
    /// `[BOS] + tokens + [EOS] + padding`, the tokenizer's sequence length long.
    pub ids: Vec<u32>,
    /// The weight of each position (1 for BOS, EOS and padding).
    pub weights: Vec<f32>,
    /// Embedding vectors that replace some positions' token embeddings.
    pub fixes: Vec<Fix>,
}

impl Chunk {
    /// A chunk of no text: BOS, EOS, padding.
    pub(crate) fn empty(tok: &ClipTokenizer) -> Self {
        frame(tok, Vec::new(), Vec::new(), Vec::new())
    }

    /// Whether any position has a weight other than 1.
    pub(crate) fn is_weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }
}

/// Frames `ids` (at most the chunk length) as A1111 does: EOS up to the chunk length, BOS and EOS
/// around, then, for a tokenizer that pads with another token, padding after the first EOS.
/// `fixes` hold positions in `ids`.
fn frame(tok: &ClipTokenizer, mut ids: Vec<u32>, mut weights: Vec<f32>, fixes: Vec<Fix>) -> Chunk {
    let len = tok.chunk_tokens();
    if ids.len() < len {
        weights.resize(len, 1.0);
        ids.resize(len, tok.eos_id());
    }
    ids.insert(0, tok.bos_id());
    ids.push(tok.eos_id());
    weights.insert(0, 1.0);
    weights.push(1.0);
    if tok.pad_id() != tok.eos_id() {
        if let Some(first) = ids.iter().position(|&id| id == tok.eos_id()) {
            ids[first + 1..].fill(tok.pad_id());
        }
    }
    let fixes = fixes
        .into_iter()
        .map(|f| Fix {
            pos: f.pos + 1,
            ..f
        })
        .collect();
    Chunk {
        ids,
        weights,
        fixes,
    }
}

/// How many vectors an embedding has, read on demand (the chunker only needs the count).
pub(crate) type VectorCount<'a> = dyn FnMut(usize) -> Result<usize> + 'a;

/// A1111's chunker state: the chunks so far and the one being filled.
struct Chunker<'a, 'b> {
    tok: &'a ClipTokenizer,
    names: &'a NameIndex,
    count: &'a mut VectorCount<'b>,
    chunks: Vec<Chunk>,
    ids: Vec<u32>,
    weights: Vec<f32>,
    fixes: Vec<Fix>,
    last_comma: Option<usize>,
    /// A1111's token count: a closed chunk counts whole, the last one by its tokens.
    tokens: usize,
}

impl Chunker<'_, '_> {
    fn len(&self) -> usize {
        self.tok.chunk_tokens()
    }

    /// Closes the current chunk (A1111's `next_chunk`).
    fn next_chunk(&mut self) {
        self.tokens += self.len();
        let ids = std::mem::take(&mut self.ids);
        let weights = std::mem::take(&mut self.weights);
        let fixes = std::mem::take(&mut self.fixes);
        self.chunks.push(frame(self.tok, ids, weights, fixes));
        self.last_comma = None;
    }

    /// Adds one run's tokens.
    fn push_run(&mut self, tokens: &[u32], weight: f32) -> Result<()> {
        let comma = self.tok.token_to_id(",</w>");
        let mut pos = 0;
        while pos < tokens.len() {
            let token = tokens[pos];
            if Some(token) == comma {
                self.last_comma = Some(self.ids.len());
            } else if let Some(at) = self.last_comma.filter(|&at| {
                self.ids.len() == self.len() && self.ids.len() - at <= COMMA_BACKTRACK
            }) {
                // The tokens after the comma move on; as in A1111 the embeddings among them
                // stay behind (their vectors land in this chunk's padding).
                let ids = self.ids.split_off(at + 1);
                let weights = self.weights.split_off(at + 1);
                self.next_chunk();
                self.ids = ids;
                self.weights = weights;
            }
            if self.ids.len() == self.len() {
                self.next_chunk();
            }
            let Some((embedding, name_len)) = self.names.find_at(tokens, pos) else {
                self.ids.push(token);
                self.weights.push(weight);
                pos += 1;
                continue;
            };
            let n = (self.count)(embedding)?;
            if self.ids.len() + n > self.len() {
                self.next_chunk();
            }
            if n > self.len() {
                return Err(Error::InvalidRequest(format!(
                    "an embedding of {n} vectors does not fit in a {}-token chunk",
                    self.len()
                )));
            }
            self.fixes.push(Fix {
                pos: self.ids.len(),
                embedding,
                rows: 0..n,
            });
            self.ids.extend(std::iter::repeat_n(0, n));
            self.weights.extend(std::iter::repeat_n(weight, n));
            pos += name_len;
        }
        Ok(())
    }
}

/// A text cut into chunks, with A1111's count of its tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunked {
    /// The chunks.
    pub chunks: Vec<Chunk>,
    /// The tokens as A1111's counter shows them: every chunk closed before the last (by filling
    /// up or `BREAK`) counts as 75, the last by its tokens.
    pub tokens: usize,
}

/// Cuts `runs` into chunks with `tok`, finding embeddings by their names' tokens in `names`;
/// `count` gives an embedding's number of vectors.
pub(crate) fn a1111_chunks(
    runs: &[Run],
    tok: &ClipTokenizer,
    names: &NameIndex,
    count: &mut VectorCount<'_>,
) -> Result<Chunked> {
    let mut c = Chunker {
        tok,
        names,
        count,
        chunks: Vec::new(),
        ids: Vec::new(),
        weights: Vec::new(),
        fixes: Vec::new(),
        last_comma: None,
        tokens: 0,
    };
    for run in runs {
        match run {
            Run::Break => c.next_chunk(),
            Run::Text { text, weight } => {
                let tokens = tok.tokenize(text)?;
                c.push_run(&tokens, *weight as f32)?;
            }
        }
    }
    if !c.ids.is_empty() || c.chunks.is_empty() {
        let last = c.ids.len();
        c.next_chunk();
        c.tokens = c.tokens - c.len() + last;
    }
    Ok(Chunked {
        chunks: c.chunks,
        tokens: c.tokens,
    })
}

#[cfg(test)]
#[path = "chunks/tests.rs"]
mod tests;
