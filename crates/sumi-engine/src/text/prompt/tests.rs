//! Expected values come from A1111 v1.10's own code (`prompt_parser.py`, `extra_networks.py`) run
//! with lark 1.1.2 on Python 3.10; schedule cases are ones where every Python hash seed agrees.

use super::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const B: Run = Run::Break;

fn t(text: &str, weight: f64) -> Run {
    Run::Text {
        text: text.to_string(),
        weight,
    }
}

fn net(kind: &str, positional: &[&str], named: &[(&str, &str)]) -> ExtraNetwork {
    ExtraNetwork {
        kind: kind.to_string(),
        positional: positional.iter().map(|s| s.to_string()).collect(),
        named: named
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn entries(list: &[(u32, &str)]) -> Schedule {
    Schedule(
        list.iter()
            .map(|(end, text)| (*end, text.to_string()))
            .collect(),
    )
}

#[test]
fn attention_matches_a1111() {
    let cases = vec![
        // The doctests of `parse_prompt_attention`.
        ("normal text", vec![t("normal text", 1.0)]),
        (
            "an (important) word",
            vec![t("an ", 1.0), t("important", 1.1), t(" word", 1.0)],
        ),
        ("(unbalanced", vec![t("unbalanced", 1.1)]),
        ("\\(literal\\]", vec![t("(literal]", 1.0)]),
        ("(unnecessary)(parens)", vec![t("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            vec![
                t("a ", 1.0),
                t("house", 1.5730000000000004),
                t(" ", 1.1),
                t("on", 1.0),
                t(" a ", 1.1),
                t("hill", 0.55),
                t(", sun, ", 1.1),
                t("sky", 1.4641000000000006),
                t(".", 1.1),
            ],
        ),
        // Empty, whitespace, escapes; a backslash before anything else is dropped.
        ("", vec![t("", 1.0)]),
        ("   ", vec![t("   ", 1.0)]),
        ("a \\\\ b \\x c", vec![t("a \\ b x c", 1.0)]),
        ("\\[a\\] \\(b\\)", vec![t("[a] (b)", 1.0)]),
        // Nesting, unclosed brackets (round ones close first), unmatched closers.
        (
            "((a)) [[b]] ([c])",
            vec![
                t("a", 1.2100000000000002),
                t(" ", 1.0),
                t("b", 0.8264462809917354),
                t(" c", 1.0),
            ],
        ),
        (
            "[unclosed (both",
            vec![t("unclosed ", 0.9090909090909091), t("both", 1.0)],
        ),
        ("a) b] c", vec![t("a) b] c", 1.0)]),
        ("(a)(b)", vec![t("ab", 1.1)]),
        ("(a:1.0)b", vec![t("ab", 1.0)]),
        (
            "[[a]:1.1]",
            vec![t("a", 0.8264462809917354), t(":1.1", 0.9090909090909091)],
        ),
        // Explicit weights: spaces, signs, a trailing dot, full-width digits; `:w)` needs a `(`.
        (
            "(a:1.5) (b: 0.5 ) (c:-1) (d:+2.)",
            vec![
                t("a", 1.5),
                t(" ", 1.0),
                t("b", 0.5),
                t(" ", 1.0),
                t("c", -1.0),
                t(" ", 1.0),
                t("d", 2.0),
            ],
        ),
        ("(a:１.５)", vec![t("a", 1.5)]),
        ("[a:1.5)", vec![t("a:1.5)", 0.9090909090909091)]),
        ("a: b", vec![t("a: b", 1.0)]),
        // BREAK at the start, middle and end, with any whitespace, between punctuation.
        ("BREAK a", vec![t("", 1.0), B, t("a", 1.0)]),
        ("a BREAK b", vec![t("a", 1.0), B, t("b", 1.0)]),
        ("a BREAK", vec![t("a", 1.0), B, t("", 1.0)]),
        ("a\tBREAK\nb", vec![t("a", 1.0), B, t("b", 1.0)]),
        (
            "BREAK BREAK",
            vec![t("", 1.0), B, t("", 1.0), B, t("", 1.0)],
        ),
        ("a,BREAK,b", vec![t("a,", 1.0), B, t(",b", 1.0)]),
        ("a\\BREAK", vec![t("a", 1.0), B, t("", 1.0)]),
        // BREAK inside a word is text; inside brackets its marker is weighted and stops being one.
        (
            "aBREAK BREAKING BREAK_ (BREAK)",
            vec![
                t("aBREAK BREAKING BREAK_ ", 1.0),
                t("", 1.1),
                t("BREAK", -1.1),
                t("", 1.1),
            ],
        ),
        (
            "(a BREAK b)",
            vec![t("a", 1.1), t("BREAK", -1.1), t("b", 1.1)],
        ),
        ("(a BREAK b:0)", vec![t("aBREAKb", 0.0)]),
    ];
    for (prompt, expected) in cases {
        assert_eq!(parse_attention(prompt), Ok(expected), "{prompt:?}");
    }
}

#[test]
fn attention_errors() {
    // A1111's `float()` raises on these.
    assert_eq!(
        parse_attention("(a:1.2.3)"),
        Err(PromptError::BadWeight("1.2.3".into()))
    );
    assert_eq!(
        parse_attention("(a:.)"),
        Err(PromptError::BadWeight(".".into()))
    );
    let huge = format!("(a:1{})", "0".repeat(400));
    assert!(matches!(
        parse_attention(&huge),
        Err(PromptError::BadWeight(_))
    ));
    let long = "a".repeat(MAX_PROMPT_CHARS + 1);
    assert_eq!(
        parse_attention(&long),
        Err(PromptError::TooLong(MAX_PROMPT_CHARS + 1))
    );
}

type SchedCase = (
    &'static str,
    u32,
    Option<u32>,
    bool,
    Vec<(u32, &'static str)>,
);

#[test]
fn schedules_match_a1111() {
    let cases: Vec<SchedCase> = vec![
        // The doctests of `get_learned_conditioning_prompt_schedules`.
        ("test", 10, None, false, vec![(10, "test")]),
        ("a [b:3]", 10, None, false, vec![(3, "a "), (10, "a b")]),
        ("a [b: 3]", 10, None, false, vec![(3, "a "), (10, "a b")]),
        (
            "a [[[b]]:2]",
            10,
            None,
            false,
            vec![(2, "a "), (10, "a [[b]]")],
        ),
        ("[(a:2):3]", 10, None, false, vec![(3, ""), (10, "(a:2)")]),
        (
            "a [b : c : 1] d",
            10,
            None,
            false,
            vec![(1, "a b  d"), (10, "a  c  d")],
        ),
        (
            "a[b:[c:d:2]:1]e",
            10,
            None,
            false,
            vec![(1, "abe"), (2, "ace"), (10, "ade")],
        ),
        (
            "a [unbalanced",
            10,
            None,
            false,
            vec![(10, "a [unbalanced")],
        ),
        (
            "a [b:.5] c",
            10,
            None,
            false,
            vec![(5, "a  c"), (10, "a b c")],
        ),
        // The doctest claims [(5, "a  c"), (10, "a {b|d{ c")], but v1.10's grammar rejects the `|`.
        (
            "a [{b|d{:.5] c",
            10,
            None,
            false,
            vec![(10, "a [{b|d{:.5] c")],
        ),
        (
            "((a][:b:c [d:3]",
            10,
            None,
            false,
            vec![(3, "((a][:b:c "), (10, "((a][:b:c d")],
        ),
        (
            "[fe|]male",
            4,
            None,
            false,
            vec![(1, "female"), (2, "male"), (3, "female"), (4, "male")],
        ),
        ("a [b:.5] c", 10, Some(10), false, vec![(10, "a b c")]),
        (
            "a [b:1.5] c",
            10,
            Some(10),
            false,
            vec![(5, "a  c"), (10, "a b c")],
        ),
        // Fractions (written with a `.`) against integers; capped; below 1 adds no switch.
        ("[a:b:0.5]", 10, None, false, vec![(5, "a"), (10, "b")]),
        ("[a:b:5]", 10, None, false, vec![(5, "a"), (10, "b")]),
        ("[a:b:5.0]", 10, None, false, vec![(10, "a")]),
        ("[a:b:2.5]", 10, None, false, vec![(10, "a")]),
        ("[a:b:25]", 10, None, false, vec![(10, "a")]),
        ("[a:b:0.05]", 10, None, false, vec![(10, "b")]),
        ("[a:b:0]", 10, None, false, vec![(10, "b")]),
        ("[a:b:-3]", 10, None, false, vec![(10, "b")]),
        ("[a:b:1e1]", 10, None, false, vec![(10, "a")]),
        ("[a:b:+4]", 10, None, false, vec![(4, "a"), (10, "b")]),
        ("[a:b: 4 ]", 10, None, false, vec![(4, "a"), (10, "b")]),
        // The old rule: every `when` below 1 is a fraction, 5.0 is step 5.
        ("[a:b:0.5]", 10, None, true, vec![(5, "a"), (10, "b")]),
        ("[a:b:5.0]", 10, None, true, vec![(5, "a"), (10, "b")]),
        // The hires pass (10 first-pass steps, 20 hires steps): 1.0-2.0 and 11-30 address it.
        ("[a:b:1.5]", 10, Some(20), false, vec![(10, "a"), (20, "b")]),
        ("[a:b:15]", 10, Some(20), false, vec![(5, "a"), (20, "b")]),
        ("[a:b:5]", 10, Some(20), false, vec![(20, "b")]),
        ("[a:b:0.5]", 10, Some(20), false, vec![(20, "b")]),
        ("[a:b:2.5]", 10, Some(20), false, vec![(20, "a")]),
        ("[a:b:1.5]", 10, Some(20), true, vec![(1, "a"), (10, "b")]),
        ("[a:b:15]", 10, Some(20), true, vec![(10, "a")]),
        // Nested edits; adding and removing.
        (
            "[[a:b:2]:c:5]",
            10,
            None,
            false,
            vec![(2, "a"), (5, "b"), (10, "c")],
        ),
        (
            "[a:[b:c:7]:3]",
            10,
            None,
            false,
            vec![(3, "a"), (7, "b"), (10, "c")],
        ),
        (
            "[a::3] [:b:3] [::3]",
            10,
            None,
            false,
            vec![(3, "a  "), (10, " b ")],
        ),
        (
            "(a [b:3] c:1.2)",
            10,
            None,
            false,
            vec![(3, "(a  c:1.2)"), (10, "(a b c:1.2)")],
        ),
        // Alternation, alone, nested with edits both ways.
        (
            "[a|b|c]",
            4,
            None,
            false,
            vec![(1, "a"), (2, "b"), (3, "c"), (4, "a")],
        ),
        (
            "x [a|[b:c:2]] y",
            4,
            None,
            false,
            vec![(1, "x a y"), (2, "x b y"), (3, "x a y"), (4, "x c y")],
        ),
        (
            "[[a|b]:c:3]",
            5,
            None,
            false,
            vec![(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "c")],
        ),
        (
            "[a:b:3] [c|d]",
            4,
            None,
            false,
            vec![(1, "a c"), (2, "a d"), (3, "a c"), (4, "b d")],
        ),
        // Not constructs, or parse errors (the whole prompt at every step).
        ("[a:b]", 10, None, false, vec![(10, "[a:b]")]),
        ("[a:b:c]", 10, None, false, vec![(10, "[a:b:c]")]),
        ("[a:b:3:4]", 10, None, false, vec![(10, "[a:b:3:4]")]),
        ("[a|b:3]", 10, None, false, vec![(10, "[a|b:3]")]),
        ("a|b [c:3]", 10, None, false, vec![(10, "a|b [c:3]")]),
        ("(a|b) [c:3]", 10, None, false, vec![(10, "(a|b) [c:3]")]),
        ("a [b:3] \\", 10, None, false, vec![(10, "a [b:3] \\")]),
        (
            "a \\[b:3\\] [c:4]",
            10,
            None,
            false,
            vec![(4, "a \\[b:3\\] "), (10, "a \\[b:3\\] c")],
        ),
        // Zero steps.
        ("a [b:3]", 0, None, false, vec![(0, "a ")]),
        ("[a|b]", 0, None, false, vec![(0, "b")]),
    ];
    for (prompt, steps, hires, old, expected) in cases {
        let got = schedule(prompt, steps, hires, old);
        assert_eq!(
            got,
            Ok(entries(&expected)),
            "{prompt:?} {steps} {hires:?} {old}"
        );
    }
}

#[test]
fn schedule_long_doctest_and_alternation() {
    let prompt = "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]";
    let expected = entries(&[
        (
            25,
            "fantasy landscape with a mountain and an oak in foreground shoddy",
        ),
        (
            50,
            "fantasy landscape with a lake and an oak in foreground in background shoddy",
        ),
        (
            60,
            "fantasy landscape with a lake and an oak in foreground in background masterful",
        ),
        (
            75,
            "fantasy landscape with a lake and an oak in background masterful",
        ),
        (
            100,
            "fantasy landscape with a lake and a christmas tree in background masterful",
        ),
    ]);
    assert_eq!(schedule(prompt, 100, None, false), Ok(expected));
    let alt: Vec<(u32, &str)> = (1..=10)
        .map(|s| (s, if s % 2 == 1 { "a" } else { "(b:1.1)" }))
        .collect();
    assert_eq!(schedule("[a|(b:1.1)]", 10, None, false), Ok(entries(&alt)));
    let four = ["female", "male", "male", "male"];
    let alt: Vec<(u32, &str)> = (1..=10).map(|s| (s, four[(s as usize - 1) % 4])).collect();
    assert_eq!(schedule("[fe|||]male", 10, None, false), Ok(entries(&alt)));
}

#[test]
fn schedule_limits_and_errors() {
    let long = "a".repeat(MAX_PROMPT_CHARS + 1);
    assert_eq!(
        schedule(&long, 10, None, false),
        Err(PromptError::TooLong(MAX_PROMPT_CHARS + 1))
    );
    assert_eq!(
        schedule("a", MAX_STEPS + 1, None, false),
        Err(PromptError::TooManySteps(MAX_STEPS + 1))
    );
    assert!(schedule("a", 10, Some(MAX_STEPS + 1), false).is_err());
    // Python's `int(inf)` raises.
    assert_eq!(
        schedule("[a:b:1e999]", 10, None, false),
        Err(PromptError::BadStep("1e999".into()))
    );
    assert!(schedule("[a:b:1.5e999]", 0, None, false).is_err());
}

#[test]
fn text_at_step_follows_reconstruct_cond_batch() {
    let s = schedule("[a:b:3]", 10, None, false).unwrap_or_else(|e| panic!("{e}"));
    let texts: Vec<&str> = (0..12).map(|step| text_at_step(&s, step)).collect();
    assert_eq!(
        texts,
        ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b", "b", "a"]
    );
    assert_eq!(text_at_step(&Schedule(Vec::new()), 3), "");
}

#[test]
fn and_split_matches_a1111() {
    let cases = vec![
        ("a cat", vec![("a cat", 1.0)]),
        ("a cat AND a dog", vec![("a cat", 1.0), (" a dog", 1.0)]),
        (
            "a cat:1.2 AND a dog : 0.5 ",
            vec![("a cat", 1.2), (" a dog", 0.5)],
        ),
        (
            "a cat AND a dog:-0.3 AND  bird:.5",
            vec![("a cat", 1.0), (" a dog", -0.3), ("  bird", 0.5)],
        ),
        ("cat,AND,dog", vec![("cat,", 1.0), (",dog", 1.0)]),
        (
            "ANDY AND_ xAND AND",
            vec![("ANDY AND_ xAND", 1.0), ("", 1.0)],
        ),
        ("a:b AND c:1.5x", vec![("a:b", 1.0), (" c:1.5x", 1.0)]),
        ("a :5.\n", vec![("a", 5.0)]),
        ("a:1.2.3", vec![("a:1.2.3", 1.0)]),
        ("a :３", vec![("a", 3.0)]),
        ("AND", vec![("", 1.0), ("", 1.0)]),
        ("", vec![("", 1.0)]),
    ];
    for (prompt, expected) in cases {
        let expected: Vec<(String, f64)> = expected
            .into_iter()
            .map(|(t, w)| (t.to_string(), w))
            .collect();
        assert_eq!(split_and(prompt), expected, "{prompt:?}");
    }
}

#[test]
fn extra_networks_match_a1111() {
    let cases = vec![
        ("no tags", "no tags", vec![]),
        ("a <lora:foo> b", "a  b", vec![net("lora", &["foo"], &[])]),
        (
            "<lora:foo:0.8>, a cat",
            ", a cat",
            vec![net("lora", &["foo", "0.8"], &[])],
        ),
        (
            "a <lora:foo:0.8:0.5> cat <hypernet:bar:1>",
            "a  cat ",
            vec![
                net("lora", &["foo", "0.8", "0.5"], &[]),
                net("hypernet", &["bar", "1"], &[]),
            ],
        ),
        (
            "<lora:foo:te=0.5:unet=0.2:dyn=8>",
            "",
            vec![net(
                "lora",
                &["foo"],
                &[("te", "0.5"), ("unet", "0.2"), ("dyn", "8")],
            )],
        ),
        (
            "<lora:foo:1:te=0.5:te=0.7>",
            "",
            vec![net("lora", &["foo", "1"], &[("te", "0.7")])],
        ),
        (
            "<lora:a=b=c:x=>",
            "",
            vec![net("lora", &["a=b=c"], &[("x", "")])],
        ),
        // Malformed tags stay text.
        ("<lora:>", "<lora:>", vec![]),
        ("<lora foo:1>", "<lora foo:1>", vec![]),
        ("<:foo>", "<:foo>", vec![]),
        ("<lora:foo:1", "<lora:foo:1", vec![]),
        (
            "<lora:<lora:x:1>",
            "",
            vec![net("lora", &["<lora", "x", "1"], &[])],
        ),
        ("<a<lora:x>>", "<a>", vec![net("lora", &["x"], &[])]),
        ("<lora:x\n:1>", "", vec![net("lora", &["x\n", "1"], &[])]),
        ("<lôra_2:x>", "", vec![net("lôra_2", &["x"], &[])]),
    ];
    for (prompt, text, nets) in cases {
        assert_eq!(
            strip_extra_networks(prompt),
            (text.to_string(), nets),
            "{prompt:?}"
        );
    }
}

#[test]
fn lora_tags() {
    let lora = |n: &ExtraNetwork| lora_tag(n).map(|l| (l.name, l.te, l.unet, l.dyn_dim));
    let ok = |name: &str, te, unet, d| Ok((name.to_string(), te, unet, d));
    assert_eq!(lora(&net("lora", &["x"], &[])), ok("x", 1.0, 1.0, None));
    assert_eq!(
        lora(&net("lora", &["x", "0.8"], &[])),
        ok("x", 0.8, 0.8, None)
    );
    assert_eq!(
        lora(&net("lyco", &["x", "0.8", " 0.5 "], &[])),
        ok("x", 0.8, 0.5, None)
    );
    assert_eq!(
        lora(&net("lora", &["x", "1", "1", "16"], &[])),
        ok("x", 1.0, 1.0, Some(16))
    );
    let named = net("lora", &["x", "0.3"], &[("te", "0.5"), ("dyn", "4")]);
    assert_eq!(lora(&named), ok("x", 0.5, 0.5, Some(4)));
    let named = net(
        "lora",
        &["x", "0.3", "0.2"],
        &[("unet", "1_0"), ("te", "-1")],
    );
    assert_eq!(lora(&named), ok("x", -1.0, 10.0, None));
    assert_eq!(
        lora(&net("lora", &["x", "１.５"], &[])),
        ok("x", 1.5, 1.5, None)
    );
    for bad in [
        net("lora", &["x", "abc"], &[]),
        net("lora", &["x", "nan"], &[]),
        net("lora", &["x", "1", "inf"], &[]),
        net("lora", &["x", "1", "1", "1.5"], &[]),
        net("lora", &["x"], &[("te", "")]),
        net("lora", &["x", "_1"], &[]),
        net("lora", &[], &[("te", "1")]),
        net("hypernet", &["x"], &[]),
    ] {
        assert!(
            matches!(lora_tag(&bad), Err(PromptError::BadLora(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn prepare_follows_a1111_order() {
    let p = prepare_prompt("<lora:x:0.5>[a|b] AND (c:1.5):0.7", 2, None, false);
    let expected = PreparedPrompt {
        networks: vec![net("lora", &["x", "0.5"], &[])],
        parts: vec![
            (
                1.0,
                vec![
                    StepRuns {
                        end_step: 1,
                        runs: vec![t("a", 1.0)],
                    },
                    StepRuns {
                        end_step: 2,
                        runs: vec![t("b", 1.0)],
                    },
                ],
            ),
            (
                0.7,
                vec![StepRuns {
                    end_step: 2,
                    runs: vec![t(" ", 1.0), t("c", 1.5)],
                }],
            ),
        ],
    };
    assert_eq!(p, Ok(expected));
    // Negative prompts keep tags and `AND` as text.
    let n = prepare_negative("<lora:x:1> a AND b", 3, None, false);
    let runs = vec![t("<lora:x:1> a AND b", 1.0)];
    assert_eq!(n, Ok(vec![StepRuns { end_step: 3, runs }]));
    assert!(matches!(
        prepare_prompt("(a:1.2.3)", 3, None, false),
        Err(PromptError::BadWeight(_))
    ));
}

#[test]
fn long_nested_prompts_parse_fast() {
    // Weights stay finite: each `(` is undone by a `[`.
    let nested = format!("{}a{}", "([".repeat(4_999), "])".repeat(4_999));
    // The worst case for exact weights: 10,000 runs, each under up to 10,000 brackets.
    let interleaved = "(a[b".repeat(5_000);
    let edits = format!("{}x:1]", "[a:".repeat(6_600));
    let alternations = "[a|b|c]".repeat(2_800);
    for prompt in [nested, interleaved, edits, alternations] {
        let start = Instant::now();
        assert!(parse_attention(&prompt).is_ok());
        assert!(schedule(&prompt, 30, None, false).is_ok());
        assert!(prepare_prompt(&prompt, 30, Some(20), false).is_ok());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}

/// Strings heavy in the characters the grammars care about.
fn syntax_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just("|".to_string()),
        Just("\\".to_string()),
        Just("<".to_string()),
        Just(">".to_string()),
        Just(" BREAK ".to_string()),
        Just(" AND ".to_string()),
        Just("=".to_string()),
        "[0-9.eE+-]{1,4}",
        "[a-z ]{1,3}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn never_panics(text in prop_oneof![syntax_soup(), any::<String>()], steps in 0u32..40,
                    hires in proptest::option::of(0u32..40), old in any::<bool>()) {
        let _ = parse_attention(&text);
        let _ = split_and(&text);
        for n in strip_extra_networks(&text).1 {
            let _ = lora_tag(&n);
        }
        let _ = prepare_negative(&text, steps, hires, old);
        if let Ok(p) = prepare_prompt(&text, steps, hires, old) {
            prop_assert!(!p.parts.is_empty());
        }
    }

    #[test]
    fn plain_text_is_one_run(text in "[a-zA-Z0-9,.!?'\" -]{0,60}") {
        prop_assume!(!text.split(|c: char| !c.is_alphanumeric()).any(|w| w == "BREAK"));
        prop_assert_eq!(parse_attention(&text), Ok(vec![t(&text, 1.0)]));
        let expected = Schedule(vec![(7, text.clone())]);
        prop_assert_eq!(schedule(&text, 7, None, false), Ok(expected));
    }

    #[test]
    fn schedule_ends_at_steps(text in syntax_soup(), steps in 0u32..60,
                              hires in proptest::option::of(0u32..60), old in any::<bool>()) {
        if let Ok(s) = schedule(&text, steps, hires, old) {
            let last = hires.filter(|_| !old).unwrap_or(steps);
            prop_assert_eq!(s.0.last().map(|e| e.0), Some(last));
            prop_assert!(s.0.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
