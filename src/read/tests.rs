//! The reader's own tests: every reader against `serde_json` ([`super::check`]) on a corpus
//! of valid and invalid JSON of every kind, on the corpus as documents of items, cut short,
//! and on generated text.

use proptest::prelude::*;
use serde_json::Value;

use super::check::agrees_with_serde;

/// Valid and invalid JSON of every kind (escapes, surrogates, numbers, literals, nesting,
/// whitespace, repeated members), each an item with a `name` and a `v`. The extraction tests
/// run it through every reader path too, as items of a metric.
pub(crate) fn corpus() -> Vec<String> {
    let mut c: Vec<String> = [
        // Escapes and surrogates.
        r#"{"name":"a\"b\\c\/d\b\f\n\r\t","v":1}"#,
        r#"{"name":"\u00e9\u4e2d\ud83d\ude00","v":2}"#,
        r#"{"name":"\ud83d","v":3}"#,
        r#"{"name":"\ude00x","v":3}"#,
        r#"{"name":"\u12","v":3}"#,
        r#"{"name":"\x41","v":3}"#,
        "{\"name\":\"tab\there\",\"v\":3}",
        "{\"name\":\"ctl\u{1}\",\"v\":3}",
        "{\"name\":\"é中😀\",\"v\":4}",
        // Numbers.
        r#"{"name":"n","v":-0}"#,
        r#"{"name":"n","v":01}"#,
        r#"{"name":"n","v":1.}"#,
        r#"{"name":"n","v":.5}"#,
        r#"{"name":"n","v":+1}"#,
        r#"{"name":"n","v":1e}"#,
        r#"{"name":"n","v":1e+}"#,
        r#"{"name":"n","v":1E-7}"#,
        r#"{"name":"n","v":-}"#,
        r#"{"name":"n","v":NaN}"#,
        r#"{"name":"n","v":Infinity}"#,
        r#"{"name":"n","v":0x10}"#,
        r#"{"name":"n","v":1_000}"#,
        // Literals, nesting, structure.
        r#"{"name":"n","v":true}"#,
        r#"{"name":"n","v":nul}"#,
        r#"{"name":"n","v":[1,2,]}"#,
        r#"{"name":"n","v":1,}"#,
        r#"{"name":"n" "v":1}"#,
        r#"{"name":"n","v":1"#,
        r#"{"name":"n","v":{"a":[[[]]]}}"#,
        r#"{'name':"n","v":1}"#,
        r#"{name:"n","v":1}"#,
        // Whitespace JSON allows, and what it does not.
        "{ \"name\" :\t\"n\" ,\r\n\"v\" : 1 }",
        "{\"name\":\"n\",\"v\":1\u{a0}}",
        "{\"name\":\"n\",\"v\":1\u{b}}",
        // A repeated member: valid, the last wins.
        r#"{"name":"n","v":1,"v":2}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Deep, but within what the strict parser (serde_json, 128 levels) takes.
    c.push(format!(
        r#"{{"name":"deep","v":1,"x":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    ));
    c
}

/// The corpus as JSON texts of their own, as items of an object and of an array, and every
/// one of those cut short.
fn texts() -> Vec<String> {
    let mut out = Vec::new();
    for item in corpus() {
        for text in [
            item.clone(),
            format!(r#"{{"a": {item}, "b": {{"v": 1, "name": "x"}}}}"#),
            format!("[{item}, [1, 2, 3], {item}]"),
        ] {
            for cut in [1, 2, text.len() / 2] {
                let mut at = text.len().saturating_sub(cut);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                out.push(text[..at].to_string());
            }
            out.push(text);
        }
    }
    out
}

#[test]
fn every_reader_agrees_with_serde_on_the_corpus() {
    for text in texts() {
        if let Err(e) = agrees_with_serde(text.as_bytes()) {
            panic!("{text}: {e}");
        }
    }
}

/// Any JSON value, with the member names the plans read.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN/Inf", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z\"\\\u{0}-\u{1f}é😀]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        let key = prop_oneof![
            Just("v".to_string()),
            Just("name".to_string()),
            "[a-z]{1,2}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn every_reader_agrees_with_serde_on_generated_text(
        v in json(),
        pretty in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        prop_assert!(agrees_with_serde(text.as_bytes()).is_ok(), "{}: {:?}", text, agrees_with_serde(text.as_bytes()));
        let at = cut.index(text.len() + 1);
        let short = &text.as_bytes()[..at];
        prop_assert!(agrees_with_serde(short).is_ok(), "{:?}: {:?}", String::from_utf8_lossy(short), agrees_with_serde(short));
    }
}
