use super::*;
use serde_json::json;

fn spec(kind: OutputKind, each: Option<&str>, labels: &[(&str, &str)], value: &str) -> MetricSpec {
    let each = each
        .map(|e| Each::compile(e).unwrap())
        .unwrap_or_else(Each::root);
    let labels_c = labels
        .iter()
        .map(|(_, t)| Template::compile(t, &each.captures).unwrap())
        .collect();
    let value = ValueSpec::compile(value, &each.captures).unwrap();
    MetricSpec {
        each,
        label_names: labels.iter().map(|(n, _)| n.to_string()).collect(),
        labels: labels_c,
        outputs: vec![Output {
            name: "m".into(),
            family: "m".into(),
            kind,
            value,
            conversion: Conversion::default(),
        }],
        on_duplicate: OnDuplicate::First,
        timestamp: None,
    }
}

fn run(doc: &Value, specs: &[MetricSpec]) -> Extraction {
    extract(doc, specs).unwrap()
}

fn gauge(each: Option<&str>, labels: &[(&str, &str)], value: &str) -> MetricSpec {
    spec(OutputKind::Gauge, each, labels, value)
}

fn series(x: &Extraction) -> Vec<(Vec<String>, f64)> {
    x.families[0]
        .series
        .iter()
        .map(|s| (s.labels.to_vec(), s.value))
        .collect()
}

fn kinds(x: &Extraction) -> Vec<(&'static str, u64)> {
    x.problems.iter().map(|p| (p.kind, p.count)).collect()
}

#[test]
fn energy_shape_with_map_key_captures() {
    let doc = json!({"apps": {
        "billing": {"prod": [
            {"name": "billing-7f9c", "energy_consumed": [855.0, 1851.7, 3359.3]},
            {"name": "billing-0a1b", "energy_consumed": [1.0, 2.5]}
        ]},
        "web": {"dev": [{"name": "web-1", "energy_consumed": [7]}]}
    }});
    let m = gauge(
        Some("$.apps.{app}.{namespace}[*]"),
        &[
            ("app", "{app}"),
            ("namespace", "{namespace}"),
            ("pod", "{@.name}"),
        ],
        "@.energy_consumed[-1]",
    );
    let x = run(&doc, &[m]);
    assert_eq!(
        series(&x),
        vec![
            (
                vec!["billing".into(), "prod".into(), "billing-0a1b".into()],
                2.5
            ),
            (
                vec!["billing".into(), "prod".into(), "billing-7f9c".into()],
                3359.3
            ),
            (vec!["web".into(), "dev".into(), "web-1".into()], 7.0),
        ]
    );
    assert!(x.problems.is_empty());
    assert_eq!(x.reports[0].items, 3);
}

#[test]
fn value_conversions_table() {
    let cases: &[(Value, Result<f64, &str>)] = &[
        (json!(42), Ok(42.0)),
        (json!(-0.5), Ok(-0.5)),
        (json!(1e3), Ok(1000.0)),
        (json!(18446744073709551615u64), Ok(18446744073709551615.0)),
        (json!("12.5"), Ok(12.5)),
        (json!(" 7 "), Ok(7.0)),
        (json!("1e-3"), Ok(0.001)),
        (json!("+Inf"), Ok(f64::INFINITY)),
        (json!("-inf"), Ok(f64::NEG_INFINITY)),
        (json!(true), Ok(1.0)),
        (json!(false), Ok(0.0)),
        (json!(null), Err("value_null")),
        (json!("N/A"), Err("value_not_numeric")),
        (json!("0x10"), Err("value_not_numeric")),
        (json!(""), Err("value_not_numeric")),
        (json!([1]), Err("value_not_numeric")),
        (json!({"a": 1}), Err("value_not_numeric")),
    ];
    for (v, want) in cases {
        let doc = json!({ "v": v });
        let x = run(&doc, &[gauge(None, &[], "$.v")]);
        match want {
            Ok(f) => {
                assert_eq!(series(&x), vec![(vec![], *f)], "{v}");
                assert!(x.problems.is_empty(), "{v}");
            }
            Err(kind) => {
                assert!(x.families[0].series.is_empty(), "{v}");
                assert_eq!(kinds(&x), vec![(*kind, 1)], "{v}");
            }
        }
    }
    // NaN strings convert (Prometheus has NaN); compare by is_nan.
    let x = run(&json!({"v": "NaN"}), &[gauge(None, &[], "$.v")]);
    assert!(x.families[0].series[0].value.is_nan());
}

#[test]
fn bad_items_are_skipped_counted_and_described_once() {
    let doc = json!({"pods": [
        {"name": "a", "v": 1},
        {"name": "b"},
        {"name": "c", "v": "oops"},
        {"name": {"x": 1}, "v": 2},
        {"v": 3},
        {"name": "f"},
    ]});
    let m = gauge(Some("$.pods[*]"), &[("pod", "{@.name}")], "@.v");
    let x = run(&doc, &[m]);
    assert_eq!(series(&x), vec![(vec!["a".into()], 1.0)]);
    assert_eq!(
        kinds(&x),
        vec![
            ("label_missing", 1),
            ("label_not_scalar", 1),
            ("value_missing", 2),
            ("value_not_numeric", 1),
        ]
    );
    let missing = x
        .problems
        .iter()
        .find(|p| p.kind == "value_missing")
        .unwrap();
    assert_eq!(missing.example, "item #2: value @.v not found");
    let text = x
        .problems
        .iter()
        .find(|p| p.kind == "value_not_numeric")
        .unwrap();
    assert_eq!(text.example, "item #3: value @.v is not numeric: \"oops\"");
}

#[test]
fn duplicates_keep_the_first_item_and_are_counted() {
    let doc = json!({"pods": [{"n": "a", "v": 1}, {"n": "a", "v": 2}, {"n": "b", "v": 3}, {"n": "a", "v": 4}]});
    let x = run(
        &doc,
        &[gauge(Some("$.pods[*]"), &[("pod", "{@.n}")], "@.v")],
    );
    assert_eq!(
        series(&x),
        vec![(vec!["a".into()], 1.0), (vec!["b".into()], 3.0)]
    );
    assert_eq!(kinds(&x), vec![("duplicate_series", 2)]);
}

#[test]
fn labels_from_root_constants_numbers_and_mixed_templates() {
    let doc = json!({"region": "eu-1", "items": {"7": {"id": 7, "ok": true, "v": 1}}});
    let m = gauge(
        Some("$.items.{key}"),
        &[
            ("region", "{$.region}"),
            ("id", "{@.id}"),
            ("ok", "{@.ok}"),
            ("where", "{key}@{$.region}"),
            ("team", "platform"),
        ],
        "@.v",
    );
    let x = run(&doc, &[m]);
    assert_eq!(
        series(&x),
        vec![(
            vec![
                "eu-1".into(),
                "7".into(),
                "true".into(),
                "7@eu-1".into(),
                "platform".into()
            ],
            1.0
        )]
    );
}

#[test]
fn constant_value_and_no_each_gives_one_series() {
    let x = run(&json!({}), &[gauge(None, &[("a", "b")], "1")]);
    assert_eq!(series(&x), vec![(vec!["b".into()], 1.0)]);
}

#[test]
fn negative_counter_values_are_skipped() {
    let doc = json!({"xs": [{"v": 3}, {"v": -1}]});
    let m = spec(
        OutputKind::Counter,
        Some("$.xs[{i}]"),
        &[("i", "{i}")],
        "@.v",
    );
    let x = run(&doc, &[m]);
    assert_eq!(series(&x), vec![(vec!["0".into()], 3.0)]);
    assert_eq!(kinds(&x), vec![("counter_negative", 1)]);
}

#[test]
fn ambiguous_paths_are_reported() {
    let doc = json!({"xs": [{"v": [1, 2]}]});
    let x = run(&doc, &[gauge(Some("$.xs[*]"), &[], "@.v[*]")]);
    assert_eq!(kinds(&x), vec![("value_ambiguous", 1)]);
}

#[test]
fn wrong_shapes_yield_nothing_without_panicking() {
    let m = gauge(
        Some("$.apps.{app}.{namespace}[*]"),
        &[("pod", "{@.name}")],
        "@.e[-1]",
    );
    for doc in [
        json!(null),
        json!(1),
        json!("apps"),
        json!([]),
        json!({"apps": 5}),
        json!({"apps": {"a": 5}}),
        json!({"apps": {"a": {"n": {"x": 1}}}}),
    ] {
        let x = run(&doc, std::slice::from_ref(&m));
        assert!(x.families[0].series.is_empty(), "{doc}");
    }
}
