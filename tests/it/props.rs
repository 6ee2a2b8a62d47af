//! Property tests: the extractor and the config loader never panic, whatever the input.
//! (`PROPTEST_CASES=100000 cargo test --test it props` runs them longer.)

use jsonbridge::config::{self, Origin};
use jsonbridge::extract::extract;
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, biased towards the shapes the specs below walk (apps, pods, names).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN/Inf", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("".to_string()),
            Just("NaN".to_string()),
            Just("yes".to_string()),
            Just("2026-11-26T10:00:00Z".to_string()),
            "[a-z0-9 .\"\\\\{}\\n-]{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key = prop_oneof![
            Just("apps".to_string()),
            Just("pods".to_string()),
            Just("name".to_string()),
            Just("v".to_string()),
            Just("t".to_string()),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Specs that exercise every extraction feature.
fn specs() -> Vec<jsonbridge::extract::MetricSpec> {
    let text = include_str!("../../fuzz/specs.yaml");
    let c = config::parse(
        text,
        &Origin {
            name: "props".into(),
            base_dir: "/".into(),
        },
        &|_| None,
    )
    .unwrap();
    c.sources[0].metrics.clone()
}

proptest! {
    #[test]
    fn extraction_never_panics(doc in json()) {
        let specs = specs();
        if let Ok(x) = extract(&doc, &specs) {
            // Every series has as many label values as its family has names.
            for f in &x.families {
                for s in &f.series {
                    prop_assert_eq!(s.labels.len(), f.label_names.len());
                }
            }
        }
    }

    #[test]
    fn the_config_loader_never_panics_on_text(text in "\\PC{0,300}") {
        let _ = config::parse(&text, &Origin { name: "p".into(), base_dir: "/".into() }, &|_| None);
    }

    #[test]
    fn the_config_loader_never_panics_on_damaged_configs(
        cuts in prop::collection::vec((0usize..2000, "[ :\\[\\]{}\\-$@'\"a-z0-9\\n]{0,3}"), 1..6)
    ) {
        let mut text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/kubernetes-pods/jsonbridge.yaml"
        ))
        .unwrap();
        for (at, insert) in cuts {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let end = (at + 2).min(text.len());
            let end = if text.is_char_boundary(end) { end } else { at };
            text.replace_range(at..end, &insert);
        }
        let _ = config::parse(&text, &Origin { name: "p".into(), base_dir: "/".into() }, &|_| Some("x".into()));
    }
}
