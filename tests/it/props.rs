//! Property tests: the extractor and the config loader never panic, whatever the input, and
//! reading a body with a source's plan (streamed, slotted or pruned) gives what extraction
//! gives on the fully parsed document.
//! (`PROPTEST_CASES=100000 cargo test --test it props` runs them longer.)

use jsonbridge::config::{self, Origin, Source};
use jsonbridge::extract::{Extraction, Threads, extract, extract_bytes, testing};

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

/// Documents in the shape the specs walk: apps -> namespaces -> pods, and a pod list, with
/// fields of any type.
fn shaped() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        json(),
        prop::collection::vec(json(), 0..5).prop_map(Value::Array),
        any::<u8>().prop_map(Value::from),
    ];
    let pod = prop::collection::btree_map(
        prop_oneof![
            Just("name".to_string()),
            Just("v".to_string()),
            Just("t".to_string()),
            Just("pods".to_string()),
        ],
        field,
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()));
    let pods = prop::collection::vec(pod, 0..4).prop_map(Value::Array);
    let namespaces = prop::collection::btree_map("[a-c]{1,2}", pods.clone(), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    let apps = prop::collection::btree_map("[a-c]{1,2}", namespaces, 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    (apps, pods, json()).prop_map(
        |(apps, pods, name)| serde_json::json!({"apps": apps, "pods": pods, "name": name}),
    )
}

fn source(text: &str) -> Source {
    let c = config::parse(
        text,
        &Origin {
            name: "props".into(),
            base_dir: "/".into(),
        },
        &|_| None,
    )
    .unwrap();
    (*c.sources[0]).clone()
}

/// Specs that exercise every extraction feature (read through a pruned tree: they look up
/// the root and captured nodes, and filter).
fn specs() -> Vec<jsonbridge::extract::MetricSpec> {
    source(include_str!("../../fuzz/specs.yaml")).metrics
}

/// Only item lookups made of names, indexes and wildcards: streamed, items read into slots.
const SLOTTED: &str = include_str!("../../fuzz/specs-slotted.yaml");

/// Streamed, with items inside other items and lookups that filter: items built as trees.
const NESTED: &str = r#"
sources:
  - name: s
    url: file:///x
    metrics:
      - name: k
        each: "$.apps.{app}"
        labels: {app: "{app}"}
        value: "length(@)"
      - each: "$.apps.{app}.{ns}[{n}]"
        labels: {app: "{app}", ns: "{ns}", n: "{n}"}
        values:
          l_v: "@.v"
          l_f: "max(@.pods[?@.v > 1].v)"
      - name: m
        each: "$.apps.*.*[-1]"
        labels: {pod: "{@.name}"}
        value: "@..v"
      - name: fl
        each: "$.apps.{app}.*[?@.v > 1 || length(@.name) == 1 || @.pods[0]]"
        labels: {app: "{app}", pod: "{@.name}"}
        value: "@.v"
      - name: fo
        each: "$.apps.*[?!@.x]"
        value: "count(@[*])"
"#;

/// Aggregates from the root folded while the first pass parses (no descendant search beside
/// them, which would make the plan read them from the tree instead).
const FOLDED: &str = r#"
sources:
  - name: s
    url: file:///x
    metrics:
      - each: "$.apps.{app}.{ns}[*]"
        labels: {app: "{app}", pod: "{@.name}", first: "{$.pods[0].name}"}
        values:
          f_count: "count($.pods[*])"
          f_sum: "sum($.pods[*].t)"
          f_avg: "avg($.apps.*.*[*].v[*])"
          f_min: "min($.pods[*].v[-1])"
          f_max: "max($.apps.*.*[*].v)"
          f_len: "length($.pods)"
"#;

/// Descendant searches in `each`: their items kept as text and built one at a time, in the
/// search's order (duplicates kept first, last and summed tell it from document order), or
/// read as a plain pruned tree where the parse finds that they cannot be.
const COLLECTED: &str = r#"
sources:
  - name: s
    url: file:///x
    metrics:
      - name: c_len
        each: "$..v"
        labels: {root: "{$.name}"}
        on_duplicate: last
        value: "length(@)"
      - each: "$.apps.{app}..pods[*]"
        labels: {app: "{app}", pod: "{@.name}"}
        on_duplicate: sum
        values:
          c_v: "@.v"
          c_t: "count(@.t[*])"
      - name: c_first
        each: "$.pods..t"
        on_duplicate: first
        value: "@"
"#;

/// Lookups from the root next to item lookups: the root's part is read first, then items
/// are streamed into slots.
const ROOTED: &str = include_str!("../../fuzz/specs-rooted.yaml");

/// Slotted, with nothing on the way to items that needs an array's length: large bodies are
/// scanned for items, which both threads read.
const SCANNED: &str = include_str!("../../fuzz/specs-scanned.yaml");

/// What two extractions must agree on, comparable (NaN included).
fn comparable(x: &Extraction) -> String {
    let mut out = String::new();
    for f in &x.families {
        out += &format!("{} {:?}\n", f.family, f.label_names);
        for s in &f.series {
            out += &format!(
                "  {:?} {:x} {:?}\n",
                s.labels,
                s.value.to_bits(),
                s.timestamp_ms
            );
        }
    }
    out + &format!("{:?}\n{:?}\n{}", x.problems, x.reports, x.dropped)
}

fn agree(source: &Source, doc: &Value) -> Result<(), TestCaseError> {
    agree_on(source, doc, &serde_json::to_vec(doc).unwrap(), true)
}

/// Writes `v` as JSON text in one of many valid forms that `style` picks: whitespace (space,
/// tab, CR, LF) around tokens, `\uXXXX` escapes (surrogate pairs beyond the BMP) for some
/// characters of strings and member names, and, in some objects, the first member written
/// once more before the others with another value (a repeated member: the last one wins, so
/// the text still means `v`).
fn write_styled(v: &Value, next: &mut dyn FnMut() -> u8, out: &mut String) {
    let mut pick = |n: u8| next() % n;
    fn ws(k: u8, out: &mut String) {
        out.push_str(["", " ", "\n\t", "\r\n  "][k as usize % 4]);
    }
    fn string(text: &str, escape_every: u8, out: &mut String) {
        out.push('"');
        for (i, c) in text.chars().enumerate() {
            if escape_every > 0 && i % escape_every as usize == 0 {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            } else {
                let quoted = serde_json::to_string(&c.to_string()).unwrap();
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
        }
        out.push('"');
    }
    ws(pick(4), out);
    match v {
        Value::String(t) => string(t, pick(4), out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_styled(item, &mut || pick(255), out);
            }
            ws(pick(4), out);
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            let mut first = true;
            if let Some((k, _)) = members.iter().next().filter(|_| pick(4) == 0) {
                string(k, 0, out);
                out.push_str(":{\"decoy\": [1, \"x\"]}");
                first = false;
            }
            for (k, item) in members {
                if !first {
                    out.push(',');
                }
                first = false;
                ws(pick(4), out);
                string(k, pick(3), out);
                ws(pick(4), out);
                out.push(':');
                write_styled(item, &mut || pick(255), out);
            }
            ws(pick(4), out);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
    ws(pick(4), out);
}

/// Every reader on `body` against extraction over `doc` (what `body` means). `scan_must_take`:
/// a scanned plan must read it by the scan itself (only for compact text without repeated
/// members, which is what the scan takes).
fn agree_on(
    source: &Source,
    doc: &Value,
    body: &[u8],
    scan_must_take: bool,
) -> Result<(), TestCaseError> {
    let body = body.to_vec();
    if source.plan.is_scanned() && scan_must_take {
        // A valid document is read by the scan itself, not by the readers it falls back to
        // (which would hide a wrong scan behind right results).
        let text = std::str::from_utf8(&body).unwrap();
        let scanned = testing::scanned(text, &source.metrics, &source.plan, 2);
        prop_assert!(scanned.is_some(), "the scan gave up on a valid document");
        match (extract(doc, &source.metrics), scanned.unwrap()) {
            (Ok(a), Ok(b)) => prop_assert_eq!(comparable(&a), comparable(&b)),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "tree: {:?}\nscan: {:?}", a.is_ok(), b.err()),
        }
    }
    // Inline, with extraction on a second thread, and with items found by a scan and read
    // on two threads two at a time (so that batches meet even in small documents).
    for way in 0..3 {
        let tree = extract(doc, &source.metrics);
        let read = match way {
            2 => extract_bytes(&body, &source.metrics, &source.plan, Threads::Batched(2)),
            _ => extract_bytes(
                &body,
                &source.metrics,
                &source.plan,
                if way == 1 { Threads::Two } else { Threads::One },
            ),
        };
        match (tree, read) {
            (Ok(a), Ok(b)) => prop_assert_eq!(comparable(&a), comparable(&b)),
            (Err(a), Err(jsonbridge::extract::ReadError::Extract(b))) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(
                false,
                "tree: {:?}\nread: {:?}",
                a.map(|x| comparable(&x)),
                b.map(|x| comparable(&x))
            ),
        }
    }
    Ok(())
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
    fn reading_with_a_plan_gives_what_the_tree_gives(
        doc in prop_oneof![json(), shaped()],
    ) {
        let pruned = source(include_str!("../../fuzz/specs.yaml"));
        let slotted = source(SLOTTED);
        let nested = source(NESTED);
        let rooted = source(ROOTED);
        let scanned = source(SCANNED);
        let folded = source(FOLDED);
        let collected = source(COLLECTED);
        prop_assert!(folded.plan.is_streamed());
        prop_assert!(!pruned.plan.is_streamed());
        prop_assert!(slotted.plan.is_streamed() && nested.plan.is_streamed());
        prop_assert!(rooted.plan.is_scanned() && scanned.plan.is_scanned());
        prop_assert!(!slotted.plan.is_scanned());
        for s in [&pruned, &slotted, &nested, &rooted, &scanned, &folded, &collected] {
            agree(s, &doc)?;
        }
    }

    /// The same, on text as APIs write it: whitespace, escapes, repeated members; and cut
    /// short anywhere, every reader refuses it as the strict parser does.
    #[test]
    fn reading_styled_or_broken_text_gives_what_the_tree_gives(
        doc in prop_oneof![json(), shaped()],
        style in prop::collection::vec(any::<u8>(), 1..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut text = String::new();
        let mut bytes = style.iter().copied().cycle();
        write_styled(&doc, &mut || bytes.next().unwrap_or(0), &mut text);
        let meant: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(&meant, &doc, "{}", text);
        let sources = [
            source(include_str!("../../fuzz/specs.yaml")),
            source(SLOTTED),
            source(NESTED),
            source(ROOTED),
            source(SCANNED),
            source(FOLDED),
            source(COLLECTED),
        ];
        for s in &sources {
            agree_on(s, &doc, text.as_bytes(), false)?;
        }
        // Cut short: invalid JSON for the strict parser, and for every reader.
        let mut at = cut.index(text.len().max(1));
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let short = &text[..at];
        if serde_json::from_str::<Value>(short).is_err() && !short.trim().is_empty() {
            for s in &sources {
                for r in [
                    extract_bytes(short.as_bytes(), &s.metrics, &s.plan, Threads::One),
                    extract_bytes(short.as_bytes(), &s.metrics, &s.plan, Threads::Two),
                    extract_bytes(short.as_bytes(), &s.metrics, &s.plan, Threads::Batched(2)),
                ] {
                    prop_assert!(
                        matches!(r, Err(jsonbridge::extract::ReadError::Json(_))),
                        "accepted a cut-off text: {}", short
                    );
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
