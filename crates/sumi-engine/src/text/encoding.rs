//! One text encoder run over chunks: A1111's encoding of a prompt's texts (chunked, encoded,
//! emphasis applied per chunk position) and ComfyUI's encoding of one text.

use candle_core::Tensor;

use super::chunks::{a1111_chunks, Chunk};
use super::comfy::comfy_chunks;
use super::embeddings::{Embeddings, Slot};
use super::options::Emphasis;
use super::prompt::Run;
use super::tokenizer::ClipTokenizer;
use super::weighting::{a1111_emphasis, comfy_emphasis};
use crate::arch::clip::{ClipTextModel, HiddenLayer, Insert};
use crate::Result;

/// Most chunks one text-encoder call takes, so that memory stays bounded for long prompts.
const ROWS_PER_CALL: usize = 16;

/// One text encoder and how it is used.
pub(crate) struct Encoder<'a> {
    /// Its tokenizer.
    pub tok: &'a ClipTokenizer,
    /// Its transformer.
    pub model: &'a ClipTextModel,
    /// Which vectors of an embedding it takes.
    pub slot: Slot,
    /// The hidden state that makes the context.
    pub layer: HiddenLayer,
    /// Whether its pooled output is wanted (SDXL's second encoder).
    pub pooled: bool,
    /// The embeddings prompts may name.
    pub embeddings: &'a Embeddings,
}

/// What one encoder makes of some texts.
pub(crate) struct Encoded {
    /// Per text: `[1, chunks * T, D]`.
    pub contexts: Vec<Tensor>,
    /// Per text: the first chunk's pooled output `[1, P]`, when wanted.
    pub pooled: Vec<Option<Tensor>>,
    /// Embeddings used, in A1111's order (by chunk, then text, then position).
    pub used: Vec<usize>,
}

impl Encoder<'_> {
    /// Number of vectors of embedding `index` for this encoder (errors when it does not fit).
    pub(crate) fn vector_count(&self, index: usize) -> Result<usize> {
        Ok(self.embeddings.vectors_for(index, self.slot)?.dims()[0])
    }

    /// Encodes chunks as rows of one batch (in calls of at most [`ROWS_PER_CALL`] rows):
    /// `[R, T, D]` and, when wanted, the pooled outputs `[R, P]`.
    fn rows(&self, chunks: &[&Chunk]) -> Result<(Tensor, Option<Tensor>)> {
        let mut hidden = Vec::new();
        let mut pooled = Vec::new();
        for part in chunks.chunks(ROWS_PER_CALL) {
            let ids: Vec<Vec<u32>> = part.iter().map(|c| c.ids.clone()).collect();
            let mut inserts = Vec::new();
            for (row, chunk) in part.iter().enumerate() {
                for fix in &chunk.fixes {
                    let all = self.embeddings.vectors_for(fix.embedding, self.slot)?;
                    let vectors = all.narrow(0, fix.rows.start, fix.rows.len())?;
                    inserts.push(Insert {
                        row,
                        pos: fix.pos,
                        vectors,
                    });
                }
            }
            let (h, p) = self.model.encode(&ids, &inserts, self.layer, self.pooled)?;
            hidden.push(h);
            pooled.extend(p);
        }
        let pooled = match pooled.is_empty() {
            true => None,
            false => Some(Tensor::cat(&pooled, 0)?),
        };
        Ok((Tensor::cat(&hidden, 0)?, pooled))
    }

    /// A1111's encoding of one prompt's texts (the texts of its step ranges), which it encodes
    /// as one batch: every text gets as many chunks as the longest (empty chunks added), and
    /// "Original" emphasis restores the mean over each chunk position of the whole batch.
    /// `texts` are the distinct texts' runs with how many step ranges use each.
    pub(crate) fn a1111(&self, texts: &[(Vec<Run>, usize)], mode: Emphasis) -> Result<Encoded> {
        let names = self.embeddings.name_index(self.tok)?;
        let mut count = |i: usize| self.vector_count(i);
        let mut chunked = Vec::with_capacity(texts.len());
        for (runs, _) in texts {
            chunked.push(a1111_chunks(runs, self.tok, &names, &mut count)?.chunks);
        }
        let n = chunked.iter().map(Vec::len).max().unwrap_or(1);
        let empty = Chunk::empty(self.tok);
        // Chunk-major rows: position i of every text, then position i + 1, ...
        let rows: Vec<&Chunk> = (0..n)
            .flat_map(|i| chunked.iter().map(move |c| c.get(i)))
            .map(|c| c.unwrap_or(&empty))
            .collect();
        let mut used = Vec::new();
        for fix in rows.iter().flat_map(|c| &c.fixes) {
            if !used.contains(&fix.embedding) {
                used.push(fix.embedding);
            }
        }
        let (z, pooled) = self.rows(&rows)?;
        let counts: Vec<usize> = texts.iter().map(|(_, k)| *k).collect();
        let t = texts.len();
        let mut positions = Vec::with_capacity(n);
        for i in 0..n {
            let weights: Vec<&[f32]> = rows[i * t..(i + 1) * t]
                .iter()
                .map(|c| c.weights.as_slice())
                .collect();
            let zi = z.narrow(0, i * t, t)?;
            positions.push(a1111_emphasis(&zi, &weights, &counts, mode)?);
        }
        let mut contexts = Vec::with_capacity(t);
        for k in 0..t {
            let parts = positions
                .iter()
                .map(|p| p.narrow(0, k, 1))
                .collect::<candle_core::Result<Vec<_>>>()?;
            contexts.push(Tensor::cat(&parts, 1)?);
        }
        let pooled = (0..t)
            .map(|k| pooled.as_ref().map(|p| p.narrow(0, k, 1)).transpose())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Encoded {
            contexts,
            pooled,
            used,
        })
    }

    /// ComfyUI's encoding of one text; `embedding:` names not found are added to `missing`.
    pub(crate) fn comfy(&self, text: &str, missing: &mut Vec<String>) -> Result<Encoded> {
        let find = |name: &str| self.embeddings.find_comfy(name);
        let mut count = |i: usize| self.vector_count(i);
        let chunks = comfy_chunks(text, self.tok, &find, &mut count, missing)?;
        let weighted = chunks.iter().any(Chunk::is_weighted);
        let empty = Chunk::empty(self.tok);
        let mut rows: Vec<&Chunk> = chunks.iter().collect();
        if weighted {
            rows.push(&empty);
        }
        let mut used = Vec::new();
        for fix in rows.iter().flat_map(|c| &c.fixes) {
            if !used.contains(&fix.embedding) {
                used.push(fix.embedding);
            }
        }
        let (z, pooled) = self.rows(&rows)?;
        let z_empty = z.narrow(0, chunks.len(), usize::from(weighted))?;
        let mut parts = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let zi = z.narrow(0, i, 1)?;
            parts.push(match weighted {
                true => comfy_emphasis(&zi, &chunk.weights, &z_empty)?,
                false => zi,
            });
        }
        Ok(Encoded {
            contexts: vec![Tensor::cat(&parts, 1)?],
            pooled: vec![pooled.map(|p| p.narrow(0, 0, 1)).transpose()?],
            used,
        })
    }
}
