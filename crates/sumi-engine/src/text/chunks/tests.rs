use std::path::PathBuf;

use super::*;
use crate::text::embeddings::{Embeddings, NameIndex};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn tok(model: &str) -> ClipTokenizer {
    ClipTokenizer::load(&fixtures().join(model).join("tokenizer")).unwrap()
}

fn text(t: &str) -> Run {
    Run::Text {
        text: t.into(),
        weight: 1.0,
    }
}

/// Chunks `runs` with the fixture embeddings (counted as 3 vectors each).
fn chunks(tok: &ClipTokenizer, runs: &[Run]) -> Vec<Chunk> {
    let set = Embeddings::from_paths(&[fixtures().join("prompt/embeddings")]).unwrap();
    let names: std::sync::Arc<NameIndex> = set.name_index(tok).unwrap();
    a1111_chunks(runs, tok, &names, &mut |_| Ok(3))
        .unwrap()
        .chunks
}

/// The text tokens of a chunk (between BOS and the first EOS).
fn content(tok: &ClipTokenizer, c: &Chunk) -> Vec<u32> {
    let end = c.ids[1..].iter().position(|&i| i == tok.eos_id()).unwrap();
    c.ids[1..1 + end].to_vec()
}

#[test]
fn an_empty_prompt_is_one_empty_chunk() {
    let t = tok("sd15");
    let c = chunks(&t, &[text("")]);
    assert_eq!(c, vec![Chunk::empty(&t)]);
    assert_eq!(c[0].ids.len(), 77);
    assert_eq!(&c[0].ids[..3], &[t.bos_id(), t.eos_id(), t.eos_id()]);
}

#[test]
fn words_after_a_near_comma_move_to_the_next_chunk() {
    let t = tok("sd15");
    let red = t.tokenize("red").unwrap()[0];
    let c = chunks(
        &t,
        &[text(&format!(
            "{}, circle sky blue star cat",
            "red ".repeat(70)
        ))],
    );
    assert_eq!(c.len(), 2);
    assert_eq!(content(&t, &c[0]).len(), 71, "70 words and the comma stay");
    assert_eq!(
        content(&t, &c[1]),
        t.tokenize("circle sky blue star cat").unwrap()
    );
    // A comma more than 20 tokens back does not move anything.
    let c = chunks(&t, &[text(&format!("red, {}", "red ".repeat(80)))]);
    assert_eq!(content(&t, &c[0]).len(), 75);
    assert!(content(&t, &c[1]).iter().all(|&i| i == red));
}

#[test]
fn break_closes_the_chunk_and_weights_follow_tokens() {
    let t = tok("sd15");
    let runs = [
        text("a red circle"),
        Run::Break,
        Run::Text {
            text: "blue".into(),
            weight: 1.5,
        },
        Run::Break,
    ];
    let c = chunks(&t, &runs);
    assert_eq!(c.len(), 2, "a BREAK at the end adds no chunk");
    assert_eq!(content(&t, &c[1]), t.tokenize("blue").unwrap());
    assert_eq!(c[1].weights[1], 1.5);
    assert!(c[1].weights[2..].iter().all(|&w| w == 1.0));
}

#[test]
fn embeddings_are_never_split() {
    let t = tok("sd15");
    let c = chunks(&t, &[text(&format!("{}sumired", "red ".repeat(73)))]);
    assert_eq!(c.len(), 2);
    assert!(c[0].fixes.is_empty());
    assert_eq!(c[1].fixes.len(), 1);
    assert_eq!((c[1].fixes[0].pos, c[1].fixes[0].rows.clone()), (1, 0..3));
    assert_eq!(&c[1].ids[1..4], &[0, 0, 0]);
}

#[test]
fn openclip_pads_after_the_first_eos() {
    let t = tok("sd2v");
    assert_ne!(t.pad_id(), t.eos_id());
    let c = chunks(&t, &[text("a red circle")]);
    let n = t.tokenize("a red circle").unwrap().len();
    assert_eq!(c[0].ids[n + 1], t.eos_id());
    assert!(c[0].ids[n + 2..].iter().all(|&i| i == t.pad_id()));
}

#[test]
fn token_counts_follow_a1111() {
    let t = tok("sd15");
    let set = Embeddings::from_paths(&[fixtures().join("prompt/embeddings")]).unwrap();
    let names = set.name_index(&t).unwrap();
    let count = |runs: &[Run]| {
        a1111_chunks(runs, &t, &names, &mut |_| Ok(3))
            .unwrap()
            .tokens
    };
    assert_eq!(count(&[text("")]), 0);
    assert_eq!(count(&[text("a red circle")]), 3);
    assert_eq!(count(&[text("a red sumired")]), 5);
    assert_eq!(count(&[text("a"), Run::Break, text("b")]), 76);
    assert_eq!(count(&[text(&"red ".repeat(80))]), 80);
}
