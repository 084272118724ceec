//! CLIP's byte-level BPE tokenizer, loaded from a diffusers `tokenizer/` folder.
//!
//! `tokenizer.json` is used when present; otherwise the tokenizer is assembled from `vocab.json` and
//! `merges.txt` the way CLIP defines it: NFC, runs of whitespace collapsed to one space, lower case,
//! CLIP's word-splitting pattern, byte-level symbols and a `</w>` suffix on the last piece of a word.
//! Special tokens and the sequence length come from `tokenizer_config.json` / `special_tokens_map.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::{Error, Result};

/// CLIP's word-splitting pattern: the two markers, English contractions, letter runs, single digits
/// and runs of anything else that is not whitespace.
const CLIP_SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The sequence length CLIP text encoders were trained with, used when the config names none.
const DEFAULT_MAX_LEN: usize = 77;

/// A CLIP tokenizer with its special tokens and sequence length.
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("dir", &self.dir)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// Special-token names and length read from the tokenizer's config files.
struct SpecialTokens {
    bos: String,
    eos: String,
    pad: String,
    unk: String,
    max_len: Option<usize>,
    /// Flags of tokens listed in `added_tokens_decoder`, keyed by content.
    flags: HashMap<String, AddedToken>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::model(path, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::model(path, format!("cannot read: {e}"))),
    }
}

/// A special token is written either as a plain string or as an object with a `content` field.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn added_token_from_json(v: &Value) -> Option<AddedToken> {
    let content = v.get("content")?.as_str()?;
    let flag = |k: &str, d: bool| v.get(k).and_then(Value::as_bool).unwrap_or(d);
    let special = flag("special", true);
    Some(
        AddedToken::from(content, special)
            .single_word(flag("single_word", false))
            .lstrip(flag("lstrip", false))
            .rstrip(flag("rstrip", false))
            .normalized(flag("normalized", !special)),
    )
}

impl SpecialTokens {
    fn read(dir: &Path) -> Result<Self> {
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let map = read_json(&dir.join("special_tokens_map.json"))?;
        let lookup = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get(key))
                .and_then(token_content)
                .or_else(|| {
                    map.as_ref()
                        .and_then(|m| m.get(key))
                        .and_then(token_content)
                })
        };
        let bos = lookup("bos_token").unwrap_or_else(|| "<|startoftext|>".to_owned());
        let eos = lookup("eos_token").unwrap_or_else(|| "<|endoftext|>".to_owned());
        let unk = lookup("unk_token").unwrap_or_else(|| eos.clone());
        let pad = lookup("pad_token").unwrap_or_else(|| eos.clone());
        // transformers writes a huge number when a tokenizer has no length limit; ignore that.
        let max_len = config
            .as_ref()
            .and_then(|c| c.get("model_max_length"))
            .and_then(Value::as_f64)
            .filter(|n| (3.0..=1e6).contains(n))
            .map(|n| n as usize);
        let mut flags = HashMap::new();
        if let Some(Value::Object(decoder)) =
            config.as_ref().and_then(|c| c.get("added_tokens_decoder"))
        {
            for v in decoder.values() {
                if let Some(tok) = added_token_from_json(v) {
                    flags.insert(tok.content.clone(), tok);
                }
            }
        }
        Ok(Self {
            bos,
            eos,
            pad,
            unk,
            max_len,
            flags,
        })
    }
}

fn tok_err(path: &Path, what: &str) -> impl FnOnce(tokenizers::Error) -> Error {
    let path = path.to_owned();
    let what = what.to_owned();
    move |e| Error::model(path, format!("{what}: {e}"))
}

/// Reads `merges.txt`: one "left right" pair a line, skipping the `#version` header and blank lines.
fn read_merges(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::model(path, format!("cannot read: {e}")))?;
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push((a.to_owned(), b.to_owned()))
            }
            _ => {
                return Err(Error::model(
                    path,
                    format!(
                        "line {} is not a pair of symbols separated by one space",
                        i + 1
                    ),
                ))
            }
        }
    }
    Ok(merges)
}

fn read_vocab(path: &Path) -> Result<Vocab> {
    let json = read_json(path)?
        .ok_or_else(|| Error::model(path, "missing (needed when tokenizer.json is absent)"))?;
    let Value::Object(map) = json else {
        return Err(Error::model(path, "expected a JSON object of token -> id"));
    };
    map.into_iter()
        .map(
            |(token, id)| match id.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(id) => Ok((token, id)),
                None => Err(Error::model(
                    path,
                    format!("token {token:?} has no valid id"),
                )),
            },
        )
        .collect()
}

/// Assembles CLIP's tokenizer pipeline from `vocab.json` and `merges.txt`.
fn build_from_vocab(dir: &Path, unk: &str) -> Result<Tokenizer> {
    let vocab_path = dir.join("vocab.json");
    let merges_path = dir.join("merges.txt");
    let vocab = read_vocab(&vocab_path)?;
    if !merges_path.is_file() {
        return Err(Error::model(
            &merges_path,
            "missing (needed when tokenizer.json is absent)",
        ));
    }
    let merges = read_merges(&merges_path)?;
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab.clone(), merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".to_owned())
        .fuse_unk(false);
    if vocab.contains_key(unk) {
        builder = builder.unk_token(unk.to_owned());
    }
    let bpe = builder
        .build()
        .map_err(tok_err(&merges_path, "merges do not fit the vocabulary"))?;
    let normalizer = NormSequence::new(vec![
        NFC.into(),
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".to_owned()),
            " ",
        )
        .map_err(tok_err(dir, "internal whitespace pattern"))?
        .into(),
        Lowercase.into(),
    ]);
    let split = Split::new(
        SplitPattern::Regex(CLIP_SPLIT_PATTERN.to_owned()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(tok_err(dir, "internal split pattern"))?;
    let pre = PreSequence::new(vec![split.into(), ByteLevel::new(false, true, true).into()]);
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(tok_err(dir, "cannot set the normalizer"))?;
    tokenizer.with_pre_tokenizer(Some(pre));
    Ok(tokenizer)
}

impl ClipTokenizer {
    /// Loads the tokenizer in `dir` (a diffusers `tokenizer/` or `tokenizer_2/` folder).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::model(dir, "tokenizer folder is missing"));
        }
        let special = SpecialTokens::read(dir)?;
        let json_path = dir.join("tokenizer.json");
        let mut tokenizer = if json_path.is_file() {
            Tokenizer::from_file(&json_path)
                .map_err(tok_err(&json_path, "cannot load tokenizer"))?
        } else {
            build_from_vocab(dir, &special.unk)?
        };
        tokenizer
            .with_truncation(None)
            .map_err(tok_err(dir, "cannot disable truncation"))?;
        tokenizer.with_padding(None);
        // transformers registers every special token with the backend tokenizer, so a prompt that
        // contains one (SD2's pad token is "!") gets the special token's id rather than BPE pieces.
        let id_of = |tokenizer: &Tokenizer, name: &str, content: &str| {
            tokenizer.token_to_id(content).ok_or_else(|| {
                Error::model(dir, format!("{name} {content:?} is not in the vocabulary"))
            })
        };
        let bos = id_of(&tokenizer, "bos_token", &special.bos)?;
        let eos = id_of(&tokenizer, "eos_token", &special.eos)?;
        let pad = id_of(&tokenizer, "pad_token", &special.pad)?;
        let registered: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .values()
            .map(|t| t.content.clone())
            .collect();
        let mut to_add: Vec<AddedToken> = Vec::new();
        for content in [&special.bos, &special.eos, &special.unk, &special.pad] {
            if tokenizer.token_to_id(content).is_none()
                || registered.contains(content)
                || to_add.iter().any(|t| &t.content == content)
            {
                continue;
            }
            let tok = special
                .flags
                .get(content)
                .cloned()
                .unwrap_or_else(|| AddedToken::from(content.clone(), true));
            to_add.push(tok);
        }
        tokenizer
            .add_special_tokens(to_add)
            .map_err(tok_err(dir, "cannot register special tokens"))?;
        let max_len = special.max_len.unwrap_or(DEFAULT_MAX_LEN);
        Ok(Self {
            tokenizer,
            bos,
            eos,
            pad,
            max_len,
            dir: dir.to_owned(),
        })
    }

    /// Token ids of `text` without BOS/EOS, as many as the text needs.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidRequest(format!("cannot tokenize prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids as diffusers feeds them: BOS, the text cut to fit, EOS, padding to `max_len`.
    pub fn encode_truncated(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenize(text)?;
        ids.truncate(self.chunk_tokens());
        Ok(self.frame(&ids))
    }

    /// Splits `ids` (from [`Self::tokenize`]) into A1111-style chunks of `max_len - 2` tokens, each framed
    /// by BOS/EOS and padded, with at least `min_chunks` chunks (the extra ones hold no text).
    pub fn chunks(&self, ids: &[u32], min_chunks: usize) -> Vec<Vec<u32>> {
        let mut out: Vec<Vec<u32>> = ids
            .chunks(self.chunk_tokens())
            .map(|c| self.frame(c))
            .collect();
        while out.len() < min_chunks.max(1) {
            out.push(self.frame(&[]));
        }
        out
    }

    /// How many chunks `n` tokens take (at least one).
    pub fn chunk_count(&self, n: usize) -> usize {
        n.div_ceil(self.chunk_tokens()).max(1)
    }

    /// BOS + `ids` + EOS, padded with the pad token to `max_len`.
    fn frame(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.max_len);
        out.push(self.bos);
        out.extend_from_slice(ids);
        out.push(self.eos);
        out.resize(self.max_len.max(out.len()), self.pad);
        out
    }

    /// Text tokens that fit in one sequence between BOS and EOS.
    pub fn chunk_tokens(&self) -> usize {
        self.max_len - 2
    }

    /// Length of every encoded sequence (77 for Stable Diffusion).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Id of the beginning-of-text token.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// Id of the end-of-text token.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Id of the padding token.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// Id of `token` (a vocabulary entry such as `"cat</w>"`), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Caps the sequence length (e.g. at the text encoder's number of positions).
    pub(crate) fn limit_len(&mut self, positions: usize) {
        self.max_len = self.max_len.min(positions).max(3);
    }

    /// The folder this tokenizer was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a tiny CLIP-style tokenizer by hand: letters a-c, "!", "'s", digits 1-2, and three merges.
    fn tiny(pad: &str, max_len: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let vocab = [
            "!",
            "a",
            "b",
            "c",
            "a</w>",
            "b</w>",
            "c</w>",
            "!</w>",
            "ab</w>",
            "ca",
            "cab</w>",
            "1</w>",
            "2</w>",
            "'",
            "s</w>",
            "'s</w>",
            "<|startoftext|>",
            "<|endoftext|>",
        ];
        let vocab: serde_json::Map<String, Value> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), Value::from(i)))
            .collect();
        std::fs::write(
            dir.path().join("vocab.json"),
            Value::Object(vocab).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("merges.txt"),
            "#version: 0.2\na b</w>\nc a\n' s</w>\n",
        )
        .unwrap();
        let config = serde_json::json!({
            "bos_token": "<|startoftext|>",
            "eos_token": {"content": "<|endoftext|>"},
            "pad_token": pad,
            "model_max_length": max_len,
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn lowercases_splits_words_and_marks_word_ends() {
        let dir = tiny("<|endoftext|>", 77);
        let tok = ClipTokenizer::load(dir.path()).unwrap();
        // "cab": merge "a b</w>" (rank 0) wins over "c a" (rank 1), leaving c + ab</w>.
        // "a's" splits into "a" and "'s"; digits are single words; "!" is punctuation.
        let ids = tok.tokenize("  CAB \t\n Ab A's 12!").unwrap();
        assert_eq!(ids, vec![3, 8, 8, 4, 15, 11, 12, 7]);
        assert_eq!((tok.bos_id(), tok.eos_id(), tok.pad_id()), (16, 17, 17));
    }

    #[test]
    fn pad_token_is_special_as_in_transformers() {
        let dir = tiny("!", 77);
        let tok = ClipTokenizer::load(dir.path()).unwrap();
        assert_eq!(tok.pad_id(), 0);
        // The registered pad token "!" is matched before BPE, so it keeps the id of "!", not "!</w>".
        assert_eq!(tok.tokenize("ab!").unwrap(), vec![8, 0]);
    }

    #[test]
    fn truncates_and_pads_like_diffusers() {
        let dir = tiny("!", 6);
        let tok = ClipTokenizer::load(dir.path()).unwrap();
        assert_eq!(tok.encode_truncated("a").unwrap(), vec![16, 4, 17, 0, 0, 0]);
        assert_eq!(
            tok.encode_truncated("a b c a b c").unwrap(),
            vec![16, 4, 5, 6, 4, 17]
        );
    }

    #[test]
    fn chunks_frame_every_piece_and_fill_up() {
        let dir = tiny("<|endoftext|>", 5);
        let tok = ClipTokenizer::load(dir.path()).unwrap();
        assert_eq!(tok.chunk_tokens(), 3);
        let ids = tok.tokenize("a b c a").unwrap();
        assert_eq!(tok.chunk_count(ids.len()), 2);
        assert_eq!(
            tok.chunks(&ids, 3),
            vec![
                vec![16, 4, 5, 6, 17],
                vec![16, 4, 17, 17, 17],
                vec![16, 17, 17, 17, 17]
            ]
        );
        assert_eq!(tok.chunks(&[], 0), vec![vec![16, 17, 17, 17, 17]]);
        assert_eq!(tok.chunk_count(0), 1);
        assert_eq!(tok.chunk_count(3), 1);
    }

    #[test]
    fn bad_merges_line_names_the_file() {
        let dir = tiny("!", 77);
        let merges = dir.path().join("merges.txt");
        std::fs::write(&merges, "#version: 0.2\na b c\n").unwrap();
        match ClipTokenizer::load(dir.path()) {
            Err(Error::Model { path, reason }) => {
                assert_eq!(path, merges);
                assert!(reason.contains("line 2"), "{reason}");
            }
            other => panic!("expected a model error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_special_token_is_reported() {
        let dir = tiny("<pad>", 77);
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": "<s>", "model_max_length": 77}"#,
        )
        .unwrap();
        let err = ClipTokenizer::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("bos_token"), "{err}");
    }
}
