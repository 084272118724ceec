use std::path::PathBuf;

use super::*;

fn w(text: &str) -> Vec<(String, f64)> {
    comfy_weights(text).unwrap()
}

fn close(got: &[(String, f64)], want: &[(&str, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((gt, gw), (wt, ww)) in got.iter().zip(want) {
        assert_eq!(gt, wt, "{got:?}");
        assert!((gw - ww).abs() < 1e-12, "{got:?}");
    }
}

#[test]
fn weights_set_nest_and_escape_as_comfyui() {
    close(&w("a (b:1.3) c"), &[("a ", 1.0), ("b", 1.3), (" c", 1.0)]);
    close(&w("((a))"), &[("a", 1.1 * 1.1)]);
    // `(x:w)` sets the weight, it does not multiply.
    close(&w("(a (b:0.5):2)"), &[("a ", 2.0), ("b", 0.5)]);
    close(&w("(a (b:0.5) c)"), &[("a ", 1.1), ("b", 0.5), (" c", 1.1)]);
    close(&w("\\(x\\) [y]"), &[("(x) [y]", 1.0)]);
    close(&w("(a"), &[("(a", 1.0)]);
    close(&w("a) (b)"), &[("a) (b)", 1.0)]);
    close(&w("(a:x)"), &[("a:x", 1.1)]);
    close(&w(""), &[]);
    assert!(comfy_weights("(a:1e999)").is_err());
}

#[test]
fn deep_nesting_needs_no_recursion() {
    let deep = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
    let got = w(&deep);
    assert_eq!(got.len(), 1);
    assert!(got[0].1 > 1e100 && got[0].1.is_finite());
    let deeper = format!("{}a{}", "(".repeat(8000), ")".repeat(8000));
    assert!(
        comfy_weights(&deeper).is_err(),
        "a weight past f64 is refused"
    );
}

#[test]
fn embedding_words_split_after_spaces_and_newlines() {
    assert_eq!(words("a embedding:x b"), ["a", "embedding:x b"]);
    assert_eq!(
        words("embedding:x\nembedding:y"),
        ["embedding:x", "embedding:y"]
    );
    assert_eq!(words("aembedding:x"), ["aembedding:x"]);
    let find = |n: &str| (n == "x").then_some(7);
    assert_eq!(lookup("x more", &find), (Some(7), "more".into()));
    // As ComfyUI: a comma stuck to the name is put back in front of the rest.
    assert_eq!(lookup("x, more", &find), (Some(7), ", more".into()));
    assert_eq!(lookup("x,", &find), (Some(7), ", ".into()));
    assert_eq!(lookup("nope rest", &find), (None, "rest".into()));
}

fn tok() -> ClipTokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd15/tokenizer");
    ClipTokenizer::load(&dir).unwrap()
}

#[test]
fn short_pieces_move_whole_and_long_ones_split() {
    let t = tok();
    let token = |i: u32| (Item::Token(i), 1.0);
    let fill: Vec<_> = (0..70).map(token).collect();
    let short: Vec<_> = (100..107).map(token).collect();
    let c = pack(vec![fill.clone(), short.clone()], &t);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].ids[71], t.eos_id());
    assert_eq!(&c[1].ids[1..8], &(100..107).collect::<Vec<u32>>()[..]);
    let long: Vec<_> = (100..110).map(token).collect();
    let c = pack(vec![fill, long], &t);
    assert_eq!(c.len(), 2);
    assert_eq!(&c[0].ids[71..76], &[100, 101, 102, 103, 104]);
    assert_eq!(c[0].ids[76], t.eos_id());
    assert_eq!(&c[1].ids[1..6], &[105, 106, 107, 108, 109]);
    assert!(c.iter().all(|c| c.ids.len() == 77 && c.weights.len() == 77));
}

#[test]
fn embedding_vectors_become_fixes() {
    let t = tok();
    let mut missing = Vec::new();
    let find = |n: &str| (n == "emb").then_some(0);
    let c = comfy_chunks(
        "a (embedding:emb:1.5) b embedding:gone",
        &t,
        &find,
        &mut |_| Ok(2),
        &mut missing,
    )
    .unwrap();
    assert_eq!(missing, ["gone"]);
    let a = t.tokenize("a ").unwrap().len();
    assert_eq!(c[0].fixes.len(), 1);
    assert_eq!(
        (c[0].fixes[0].pos, c[0].fixes[0].rows.clone()),
        (1 + a, 0..2)
    );
    assert_eq!(&c[0].weights[1 + a..3 + a], &[1.5, 1.5]);
}
