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
        name: None,
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
        on_duplicate_chosen: false,
        aggregate: None,
        fill: Vec::new(),
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

/// Compiles the metrics of a one-source config written in YAML (the user's view).
fn blocks(metrics_yaml: &str) -> Vec<MetricSpec> {
    let text = format!("sources:\n  - name: s\n    url: file:///x\n    metrics:\n{metrics_yaml}");
    let origin = crate::config::Origin {
        name: "t".into(),
        base_dir: "/".into(),
    };
    let c = crate::config::parse(&text, &origin, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    c.sources[0].metrics.clone()
}

fn all_series(x: &Extraction) -> Vec<(String, Vec<String>, f64)> {
    x.families
        .iter()
        .flat_map(|f| {
            f.series
                .iter()
                .map(|s| (f.family.clone(), s.labels.to_vec(), s.value))
        })
        .collect()
}

#[test]
fn parent_labels_through_captured_nodes_at_any_depth() {
    let doc = json!({"clusters": {"eu": {"region": "eu-west", "pods": [
        {"meta": {"name": "p1", "ns": "prod"}, "containers": [{"name": "a", "restarts": 2}, {"name": "b", "restarts": 0}]},
        {"meta": {"name": "p2", "ns": "dev"}, "containers": [{"name": "c", "restarts": 5}]}
    ]}}});
    let b = blocks(
        r#"      - name: restarts
        help: R.
        each: "$.clusters.{cluster}.pods[{pod}].containers[*]"
        labels:
          cluster: "{cluster}"
          region: "{cluster.region}"
          ns: "{pod.meta.ns}"
          pod: "{pod.meta.name}"
          container: "{@.name}"
        value: "@.restarts"
"#,
    );
    let x = run(&doc, &b);
    assert_eq!(
        series(&x),
        vec![
            (
                vec![
                    "eu".into(),
                    "eu-west".into(),
                    "dev".into(),
                    "p2".into(),
                    "c".into()
                ],
                5.0
            ),
            (
                vec![
                    "eu".into(),
                    "eu-west".into(),
                    "prod".into(),
                    "p1".into(),
                    "a".into()
                ],
                2.0
            ),
            (
                vec![
                    "eu".into(),
                    "eu-west".into(),
                    "prod".into(),
                    "p1".into(),
                    "b".into()
                ],
                0.0
            ),
        ]
    );
}

#[test]
fn several_values_per_block_share_items_and_labels() {
    let doc = json!({"pods": [{"n": "a", "e": 1, "c": 2}, {"n": "b", "e": 3, "c": "x"}]});
    let b = blocks(
        r#"      - each: "$.pods[*]"
        labels: {pod: "{@.n}"}
        values:
          energy: "@.e"
          co2: {value: "@.c", help: CO2.}
"#,
    );
    let x = run(&doc, &b);
    assert_eq!(
        all_series(&x),
        vec![
            ("energy".into(), vec!["a".into()], 1.0),
            ("energy".into(), vec!["b".into()], 3.0),
            ("co2".into(), vec!["a".into()], 2.0),
        ]
    );
    assert_eq!(x.problems.len(), 1);
    assert_eq!(x.problems[0].metric, "co2");
    assert_eq!(x.problems[0].kind, "value_not_numeric");
}

#[test]
fn mappings_defaults_and_scale() {
    let b = blocks(
        r#"      - name: health
        help: H.
        each: "$[*]"
        labels: {i: "{@.i}"}
        value: "@.s"
        mapping: {green: 0, yellow: 1, red: 2, "true": 10}
        default: -1
      - name: energy_joules
        help: E.
        each: "$[*]"
        labels: {i: "{@.i}"}
        value: "@.wh"
        scale: 3600
"#,
    );
    let doc = json!([
        {"i": "1", "s": "green", "wh": 1},
        {"i": "2", "s": "red", "wh": "0.5"},
        {"i": "3", "s": "purple"},
        {"i": "4", "s": null},
        {"i": "5"},
        {"i": "6", "s": "7"},
        {"i": "7", "s": true}
    ]);
    let x = run(&doc, &b);
    let got: Vec<(String, Vec<String>, f64)> = all_series(&x);
    let health: Vec<f64> = got
        .iter()
        .filter(|s| s.0 == "health")
        .map(|s| s.2)
        .collect();
    // purple, null and missing fall back to the default; "7" converts; true is mapped.
    assert_eq!(health, vec![0.0, 2.0, -1.0, -1.0, -1.0, 7.0, 10.0]);
    let energy: Vec<f64> = got
        .iter()
        .filter(|s| s.0 == "energy_joules")
        .map(|s| s.2)
        .collect();
    assert_eq!(energy, vec![3600.0, 1800.0]);
    // Without a default, an unmapped string is skipped and counted.
    let b = blocks("      - {name: h, help: H., value: $.s, mapping: {green: 0}}\n");
    let x = run(&json!({"s": "purple"}), &b);
    assert_eq!(kinds(&x), vec![("value_unmapped", 1)]);
    assert_eq!(
        x.problems[0].example,
        "item #1: value $.s is \"purple\", which the mapping does not list"
    );
}

#[test]
fn yes_no_words_and_conversion_edges() {
    let cases: &[(Value, Option<f64>)] = &[
        (json!("yes"), Some(1.0)),
        (json!("No"), Some(0.0)),
        (json!(" ON "), Some(1.0)),
        (json!("off"), Some(0.0)),
        (json!("TRUE"), Some(1.0)),
        (json!(9007199254740993u64), Some(9007199254740992.0)),
        (json!(-9223372036854775808i64), Some(-9223372036854775808.0)),
        (json!("-0"), Some(-0.0)),
        (json!("1E3"), Some(1000.0)),
        (json!("-2.5e-3"), Some(-0.0025)),
        (json!("Infinity"), Some(f64::INFINITY)),
        (json!("1e999"), Some(f64::INFINITY)),
        (
            json!("123456789012345678901234567890"),
            Some(1.2345678901234568e29),
        ),
        (json!("1_000"), None),
        (json!("1,5"), None),
        (json!("--1"), None),
        (json!("maybe"), None),
    ];
    for (v, want) in cases {
        let x = run(&json!({ "v": v }), &[gauge(None, &[], "$.v")]);
        match want {
            Some(f) => {
                let got = x.families[0].series[0].value;
                assert!(
                    got == *f && got.is_sign_negative() == f.is_sign_negative(),
                    "{v}: {got}"
                );
            }
            None => assert_eq!(kinds(&x), vec![("value_not_numeric", 1)], "{v}"),
        }
    }
}

#[test]
fn state_sets_give_one_series_per_state() {
    let b = blocks(
        r#"      - name: health
        help: H.
        type: stateset
        states: [green, yellow, red]
        labels: {cluster: "{$.name}"}
        value: $.status
"#,
    );
    let x = run(&json!({"name": "c1", "status": "yellow"}), &b);
    assert_eq!(
        series(&x),
        vec![
            (vec!["c1".into(), "green".into()], 0.0),
            (vec!["c1".into(), "red".into()], 0.0),
            (vec!["c1".into(), "yellow".into()], 1.0),
        ]
    );
    assert_eq!(&*x.families[0].label_names, ["cluster", "state"]);
    // An unknown state: every state 0, and counted.
    let x = run(&json!({"name": "c1", "status": "blue"}), &b);
    assert!(x.families[0].series.iter().all(|s| s.value == 0.0));
    assert_eq!(kinds(&x), vec![("value_unmapped", 1)]);
}

#[test]
fn aggregates_count_length_sum_min_max_avg() {
    let doc = json!({"ns": {"a": {"pods": [{"cpu": 1}, {"cpu": "3"}, {"cpu": null}], "name": "abc"}, "b": {"pods": [], "name": ""}}});
    let b = blocks(
        r#"      - each: "$.ns.{ns}"
        labels: {ns: "{ns}"}
        values:
          pods: "count(@.pods[*])"
          pods_len: "length(@.pods)"
          name_len: "length(@.name)"
          cpu_sum: "sum(@.pods[*].cpu)"
          cpu_min: "min(@.pods[*].cpu)"
          cpu_max: "max(@.pods[*].cpu)"
          cpu_avg: "avg(@.pods[*].cpu)"
"#,
    );
    let x = run(&doc, &b);
    let get = |fam: &str, ns: &str| {
        all_series(&x)
            .into_iter()
            .find(|s| s.0 == fam && s.1 == vec![ns.to_string()])
            .map(|s| s.2)
    };
    assert_eq!(get("pods", "a"), Some(3.0));
    assert_eq!(get("pods", "b"), Some(0.0));
    assert_eq!(get("pods_len", "a"), Some(3.0));
    assert_eq!(get("name_len", "a"), Some(3.0));
    assert_eq!(get("name_len", "b"), Some(0.0));
    assert_eq!(get("cpu_sum", "a"), Some(4.0));
    assert_eq!(get("cpu_sum", "b"), Some(0.0));
    assert_eq!(get("cpu_min", "a"), Some(1.0));
    assert_eq!(get("cpu_max", "a"), Some(3.0));
    assert_eq!(get("cpu_avg", "a"), Some(2.0));
    // min/max/avg of nothing is no sample.
    assert_eq!(get("cpu_min", "b"), None);
}

#[test]
fn timestamps_from_the_data() {
    let b = blocks(
        r#"      - {name: a, help: A., each: "$[*]", labels: {i: "{@.i}"}, value: "@.v", timestamp: "@.t"}
"#,
    );
    let doc = json!([
        {"i": "1", "v": 1, "t": "2026-11-26T10:00:00Z"},
        {"i": "2", "v": 2, "t": "2026-11-26T11:00:00.5+01:00"},
        {"i": "3", "v": 3, "t": "yesterday"},
        {"i": "4", "v": 4}
    ]);
    let x = run(&doc, &b);
    let ts: Vec<Option<i64>> = x.families[0]
        .series
        .iter()
        .map(|s| s.timestamp_ms)
        .collect();
    assert_eq!(ts, vec![Some(1795687200000), Some(1795687200500)]);
    assert_eq!(
        kinds(&x),
        vec![("timestamp_invalid", 1), ("timestamp_missing", 1)]
    );
    for (format, raw, want) in [
        ("unix", json!(1795687200), 1795687200000i64),
        ("unix", json!("1795687200.25"), 1795687200250),
        ("unix_ms", json!(1795687200123u64), 1795687200123),
    ] {
        let b = blocks(&format!(
            "      - {{name: a, help: A., value: $.v, timestamp: $.t, timestamp_format: {format}}}\n"
        ));
        let x = run(&json!({"v": 1, "t": raw}), &b);
        assert_eq!(
            x.families[0].series[0].timestamp_ms,
            Some(want),
            "{format} {raw}"
        );
    }
}

#[test]
fn duplicate_policies() {
    let doc =
        json!([{"k": "a", "v": 1}, {"k": "a", "v": 2}, {"k": "b", "v": 5}, {"k": "a", "v": 4}]);
    // Also already in label order, duplicates next to each other: still found.
    let sorted = json!([{"k": "a", "v": 1}, {"k": "a", "v": 2}, {"k": "b", "v": 5}]);
    for (input, wants, dropped) in [
        (
            &doc,
            [
                ("first", 1.0, 5.0),
                ("last", 4.0, 5.0),
                ("sum", 7.0, 5.0),
                ("min", 1.0, 5.0),
                ("max", 4.0, 5.0),
                ("count", 3.0, 1.0),
            ],
            2,
        ),
        (
            &sorted,
            [
                ("first", 1.0, 5.0),
                ("last", 2.0, 5.0),
                ("sum", 3.0, 5.0),
                ("min", 1.0, 5.0),
                ("max", 2.0, 5.0),
                ("count", 2.0, 1.0),
            ],
            1,
        ),
    ] {
        for (policy, want_a, want_b) in wants {
            let b = blocks(&format!(
                "      - {{name: m, help: M., each: \"$[*]\", labels: {{k: \"{{@.k}}\"}}, value: \"@.v\", on_duplicate: {policy}}}\n"
            ));
            let x = run(input, &b);
            assert_eq!(
                series(&x),
                vec![(vec!["a".into()], want_a), (vec!["b".into()], want_b)],
                "{policy} {input}"
            );
            // A policy chosen on purpose is no extraction error: the merges are counted
            // apart.
            assert_eq!(kinds(&x), vec![], "{policy} {input}");
            assert_eq!(
                x.merged,
                vec![Merged {
                    metric: "m".into(),
                    policy,
                    count: dropped
                }],
                "{policy} {input}"
            );
        }
        // Unset, the first is kept and the duplicate is an extraction error.
        let b = blocks(
            "      - {name: m, help: M., each: \"$[*]\", labels: {k: \"{@.k}\"}, value: \"@.v\"}\n",
        );
        let x = run(input, &b);
        assert_eq!(
            series(&x),
            vec![(vec!["a".into()], 1.0), (vec!["b".into()], 5.0)]
        );
        assert_eq!(kinds(&x), vec![("duplicate_series", dropped)]);
        assert!(x.merged.is_empty());
    }
    let b = blocks(
        "      - {name: m, help: M., each: \"$[*]\", labels: {k: \"{@.k}\"}, value: \"@.v\", on_duplicate: error}\n",
    );
    let err = extract(&doc, &b).unwrap_err();
    assert_eq!(err.kind(), "duplicate_series");
    assert_eq!(
        err.to_string(),
        "metric m: 3 items produced the series {k=\"a\"}; on_duplicate: error fails the poll"
    );
}

#[test]
fn max_series_truncates_deterministically() {
    let b = blocks(
        r#"      - each: "$[*]"
        labels: {k: "{@.k}"}
        values: {first: "@.v", second: "@.v"}
"#,
    );
    let doc = json!([{"k": "c", "v": 3}, {"k": "a", "v": 1}, {"k": "b", "v": 2}]);
    let mut x = run(&doc, &b);
    x.truncate(4);
    assert_eq!(x.dropped, 2);
    assert_eq!(
        all_series(&x),
        vec![
            ("first".into(), vec!["a".into()], 1.0),
            ("first".into(), vec!["b".into()], 2.0),
            ("first".into(), vec!["c".into()], 3.0),
            ("second".into(), vec!["a".into()], 1.0),
        ]
    );
}

mod reading {
    //! `extract_bytes`: what each plan builds, and that it agrees with the tree (the property
    //! test in tests/it/props.rs compares them on random documents).
    use super::*;

    /// A root that nothing reads.
    const NO_ROOT: DocRoot<'static> = DocRoot {
        tree: &Value::Null,
        folds: None,
        parent: &[],
    };

    fn plan_of(specs: &mut [MetricSpec]) -> ReadPlan {
        ReadPlan::new(specs)
    }

    fn read(body: &str, specs: &[MetricSpec], plan: &ReadPlan) -> Result<Extraction, ReadError> {
        extract_bytes(body.as_bytes(), specs, plan, Threads::Auto)
    }

    fn energy() -> MetricSpec {
        gauge(
            Some("$.apps.{app}.{namespace}[*]"),
            &[("app", "{app}"), ("pod", "{@.name}")],
            "@.energy_consumed[-1]",
        )
    }

    #[test]
    fn each_plan_reads_what_it_must() {
        let mut specs = vec![energy()];
        assert_eq!(
            plan_of(&mut specs).describe(),
            "streamed, items read into slots"
        );
        let mut specs = vec![gauge(
            Some("$.apps.{app}.{namespace}[*]"),
            &[("pod", "{@.name}")],
            "max(@.points[?@.ok == true].v)",
        )];
        assert_eq!(plan_of(&mut specs).describe(), "streamed, items built");
        let mut specs = vec![gauge(
            Some("$.apps.{app}.{namespace}[*]"),
            &[("region", "{$.region}")],
            "@.v",
        )];
        assert_eq!(
            plan_of(&mut specs).describe(),
            "root lookups first, then streamed, items read into slots"
        );
        for (each, label, path) in [
            ("$.apps.{app}.{namespace}[*]", "{app.owner}", "pruned tree"),
            (
                "$.apps..pods[*]",
                "{@.name}",
                "pruned tree, items of a descendant search built one at a time",
            ),
        ] {
            let mut specs = vec![gauge(Some(each), &[("l", label)], "@.v")];
            assert_eq!(plan_of(&mut specs).describe(), path, "{each} {label}");
        }
    }

    #[test]
    fn energy_shape_reads_like_the_tree() {
        let body = r#"{"apps": {"billing": {"prod": [
            {"name": "a", "energy_consumed": [1, 2, 3], "co2": [9], "phase": "x"},
            {"name": "b", "energy_consumed": []},
            {"name": "c", "energy_consumed": [5e-324]},
            {"energy_consumed": [4]}
        ]}, "web": {"dev": [7, "text", {"name": "d", "energy_consumed": {"x": 1}}]}}}"#;
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let doc: Value = serde_json::from_str(body).unwrap();
        let tree = run(&doc, &specs);
        let got = read(body, &specs, &plan).unwrap();
        assert_eq!(series(&got), series(&tree));
        assert_eq!(got.problems, tree.problems);
        assert_eq!(got.reports, tree.reports);
        assert_eq!(
            series(&got),
            vec![
                (vec!["billing".into(), "a".into()], 3.0),
                (vec!["billing".into(), "c".into()], 5e-324)
            ]
        );
    }

    #[test]
    fn extraction_on_a_second_thread_gives_the_same() {
        // More items than one batch, several blocks on the same items, one block whose item
        // two index lookups share (built as a tree even in a slotted plan).
        let mut pods = Vec::new();
        for i in 0..2500 {
            pods.push(format!(
                r#"{{"name": "p{}", "energy_consumed": [{i}, {}]}}"#,
                i % 2000,
                i * 2
            ));
        }
        let body = format!(
            r#"{{"apps": {{"a": {{"n": [{}]}}, "b": {{"m": [{}]}}}}, "one": [{{"v": 1}}]}}"#,
            pods.join(","),
            pods[..10].join(",")
        );
        let mut specs = vec![
            energy(),
            gauge(
                Some("$.apps.*.*[*]"),
                &[("pod", "{@.name}")],
                "@.energy_consumed[0]",
            ),
            gauge(Some("$.one[0]"), &[], "@.v"),
            gauge(Some("$.one[-1]"), &[], "@.v"),
        ];
        let plan = plan_of(&mut specs);
        assert!(plan.is_slotted());
        let doc: Value = serde_json::from_str(&body).unwrap();
        let tree = run(&doc, &specs);
        for threads in [Threads::One, Threads::Two] {
            let got = extract_bytes(body.as_bytes(), &specs, &plan, threads).unwrap();
            let counts = |x: &Extraction| {
                x.families
                    .iter()
                    .map(|f| f.series.len())
                    .collect::<Vec<_>>()
            };
            assert_eq!(counts(&got), counts(&tree), "{threads:?}");
            for (a, b) in got.families.iter().zip(&tree.families) {
                assert_eq!(a.series, b.series);
            }
            assert_eq!(got.problems, tree.problems);
            assert_eq!(got.reports, tree.reports);
        }
        assert_eq!(tree.series_count(), 2010 + 2000 + 1 + 1);
    }

    #[test]
    fn values_that_cannot_be_built_fail_the_read_where_they_are() {
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for (body, want) in [
            (
                "{\"apps\": {\"a\": {\"n\": [\n  {\"name\": \"x\",\n   \"energy_consumed\": [1, 1e999]}]}}}",
                "number out of range at line 3 column 31",
            ),
            // Depth counts from the node read (a full parse counts from the root, so it
            // stops a few levels sooner).
            (
                &format!("{{\"apps\": {{\"a\": {{\"n\": [{{\"name\": {deep}}}]}}}}}}"),
                "recursion limit exceeded at line 1 column 159",
            ),
        ] {
            for threads in [Threads::One, Threads::Two] {
                let err = extract_bytes(body.as_bytes(), &specs, &plan, threads)
                    .unwrap_err()
                    .to_string();
                assert_eq!(err, want, "{threads:?}");
            }
        }
        let body = "{\"apps\": {\"a\": {\"n\": [\n  {\"name\": \"x\",\n   \"energy_consumed\": [1, 1e999]}]}}}";
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap_err().to_string(),
            "number out of range at line 3 column 31",
            "where a full parse fails too"
        );
    }

    #[test]
    fn a_repeated_member_replaces_the_first_one_whole() {
        // serde_json keeps the last of repeated members; a slot filled by the first must not
        // survive when the last one has nothing there.
        let body = r#"{"apps": {"a": {"n": [
            {"name": "x", "energy_consumed": [1, 2], "energy_consumed": "none"},
            {"name": "y", "energy_consumed": [1], "energy_consumed": [7]}
        ]}}}"#;
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let doc: Value = serde_json::from_str(body).unwrap();
        let tree = run(&doc, &specs);
        let got = read(body, &specs, &plan).unwrap();
        assert_eq!(series(&got), vec![(vec!["a".into(), "y".into()], 7.0)]);
        assert_eq!(series(&got), series(&tree));
        assert_eq!(kinds(&got), vec![("value_missing", 1)]);
    }

    /// Everything an extraction says, comparable.
    fn whole(x: &Extraction) -> String {
        format!("{:?}\n{:?}\n{:?}", x.families, x.problems, x.reports)
    }

    #[test]
    fn a_member_repeated_on_the_way_to_items_counts_once() {
        // serde_json keeps the last of repeated members: the items under the first one are
        // not in the tree, whichever reader streams them.
        let pod = |n: &str, v: u32| format!(r#"{{"name": "{n}", "energy_consumed": [{v}]}}"#);
        let bodies = [
            // Named on the way (`apps`), and under a wildcard (`a`, then `n`).
            format!(
                r#"{{"apps": {{"a": {{"n": [{}]}}}}, "apps": {{"b": {{"m": [{}]}}}}}}"#,
                pod("x", 1),
                pod("y", 2)
            ),
            format!(
                r#"{{"apps": {{"a": {{"n": [{}]}}, "c": {{}}, "a": {{"n": [{}], "n": [{}]}}}}}}"#,
                pod("x", 1),
                pod("y", 2),
                pod("z", 3)
            ),
        ];
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        assert!(plan.scanned);
        for body in &bodies {
            let doc: Value = serde_json::from_str(body).unwrap();
            let tree = run(&doc, &specs);
            assert_eq!(tree.series_count(), 1);
            for got in [
                extract_bytes(body.as_bytes(), &specs, &plan, Threads::One),
                extract_bytes(body.as_bytes(), &specs, &plan, Threads::Two),
                extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(1)),
            ] {
                assert_eq!(whole(&got.unwrap()), whole(&tree), "{body}");
            }
            let runs = parallel::run(body, &specs, &plan, NO_ROOT, 1);
            assert_eq!(runs.err(), Some(crate::read::scan::Bail::Repeated));
        }
    }

    #[test]
    fn items_found_by_a_scan_are_read_on_two_threads_like_on_one() {
        // Several batches of every size, with skipped items (and so problem examples that
        // name an item by its number), duplicates across batches, two blocks on the same
        // items, brackets and escapes inside strings, and a member nobody reads.
        let mut pods = Vec::new();
        for i in 0..300 {
            pods.push(match i % 7 {
                0 => format!(r#"{{"name": "p{}", "energy_consumed": "none"}}"#, i % 250),
                1 => format!(r#"{{"name": "p\"{{{i}]", "energy_consumed": [{i}], "x": ["]"]}}"#),
                _ => format!(
                    r#"{{"name": "p{}", "energy_consumed": [{i}, {}], "skip": {{"a": [1, {{}}]}}}}"#,
                    i % 250,
                    i * 2
                ),
            });
        }
        let body = format!(
            r#"{{"other": [1, {{"apps": 2}}], "apps": {{"a": {{"n": [{}]}}, "b": {{"m": [{}], "e": []}}, "c": 7}}}}"#,
            pods.join(",\n"),
            pods[..10].join(",")
        );
        let mut specs = vec![
            energy(),
            gauge(
                Some("$.apps.*.*[*]"),
                &[("pod", "{@.name}")],
                "@.energy_consumed[0]",
            ),
        ];
        let plan = plan_of(&mut specs);
        assert!(plan.scanned);
        let doc: Value = serde_json::from_str(&body).unwrap();
        let tree = run(&doc, &specs);
        assert!(tree.problems.iter().any(|p| p.count > 1));
        let ways: [fn(bool) -> bool; 3] = [|waiting| !waiting, |_| true, |_| false];
        for batch in [1, 2, 7, 64, 1024] {
            // The scan itself succeeds: the result is not the fallback's. Items read where
            // they are found, or by whoever takes their batch, or as the helper is free.
            for (w, way) in ways.iter().enumerate() {
                let runs = parallel::run_with(&body, &specs, &plan, NO_ROOT, batch, *way).unwrap();
                let mut got = Extraction::default();
                for r in runs {
                    r.finish(&mut got).unwrap();
                }
                assert_eq!(whole(&got), whole(&tree), "batch {batch}, way {w}");
            }
            let got =
                extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(batch)).unwrap();
            assert_eq!(whole(&got), whole(&tree), "batch {batch}");
        }
        // No item at all: no batch to join.
        let runs = parallel::run(r#"{"apps": {"a": {"n": []}}}"#, &specs, &plan, NO_ROOT, 4);
        assert!(
            runs.unwrap()
                .iter()
                .all(|r| r.series.iter().all(Vec::is_empty))
        );
    }

    #[test]
    fn series_joined_from_batches_keep_no_room_a_wrong_estimate_took() {
        // The first batch spans a few bytes of a large body: sized as if every batch was
        // like it, the series would have room for thousands.
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let pods: Vec<String> = (0..9)
            .map(|i| format!(r#"{{"name": "p{i}", "energy_consumed": [{i}]}}"#))
            .collect();
        let body = format!(
            r#"{{"apps": {{"a": {{"n": [{}]}}}}, "pad": "{}"}}"#,
            pods.join(","),
            "x".repeat(1 << 20)
        );
        let runs = parallel::run(&body, &specs, &plan, NO_ROOT, 2).unwrap();
        let series = &runs[0].series[0];
        assert_eq!(series.len(), 9);
        assert!(series.capacity() < 2048, "{}", series.capacity());
        assert!(runs[0].ordered[0]);
    }

    #[test]
    fn series_joined_from_batches_reserve_no_more_than_the_body_holds() {
        // 1024 series from the first 64 bytes of a 1 GiB body: as many again per 64 bytes
        // would be 16 billion series (640 GB).
        let specs = [energy()];
        let mut run = BlockRun::new(&specs[0]);
        let one = Series {
            labels: Labels::default(),
            value: 1.0,
            timestamp_ms: None,
        };
        run.series[0] = vec![one; 1024];
        let len = 1 << 30;
        let done = parallel::Done {
            seq: 0,
            runs: vec![run],
            span: 64,
        };
        let runs = parallel::Joined::sized(done, len);
        let room = runs[0].series[0].capacity() * std::mem::size_of::<Series>();
        assert!(room <= len, "{room}");
        // A first batch like the rest is sized for all of them.
        let mut run = BlockRun::new(&specs[0]);
        run.series[0] = vec![runs[0].series[0][0].clone(); 1024];
        let done = parallel::Done {
            seq: 0,
            runs: vec![run],
            span: 1 << 20,
        };
        let runs = parallel::Joined::sized(done, 100 << 20);
        assert!(runs[0].series[0].capacity() >= 100 * 1024);
    }

    #[test]
    fn where_the_scan_gives_up_the_usual_reader_says_why() {
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let pod = r#"{"name": "a", "energy_consumed": [1]}"#;
        for body in [
            format!(r#"{{"apps": {{"a": {{"n": [{pod}, {{"name": "b", "energy_consumed": [1,]}}]}}}}}}"#),
            format!(r#"{{"apps": {{"a": {{"n": [{pod} {pod}]}}}}}}"#),
            format!(r#"{{"apps": {{"a": {{"n": [{pod}]}}}}}} x"#),
            format!(r#"{{"apps": {{"a": {{"n": [{pod}, ]}}}}}}"#),
            format!(r#"{{"apps": {{"a": {{"n": [{pod}"#),
            format!(r#"{{"apps": {{"a": {{"n": [{pod}], "skip": [01]}}}}}}"#),
            format!(r#"{{"apps": {{"a\x": {{"n": [{pod}]}}}}}}"#),
            r#"{"apps": {"a": {"n": [{"name": "\u12", "energy_consumed": [1]}]}}}"#.to_string(),
            "{\"apps\": {\"a\": {\"n\": [\n  {\"name\": \"x\",\n   \"energy_consumed\": [1, 1e999]}]}}}".to_string(),
            format!(r#"{{"apps": {{"a": {{"n": [{pod}, "unclosed]}}}}}}"#),
            format!(r#"{{"apps": {{"a": {{"n": [{pod}, tru]}}}}}}"#),
        ] {
            assert!(
                parallel::run(&body, &specs, &plan, NO_ROOT, 1).is_err(),
                "{body}"
            );
            let one = read(&body, &specs, &plan).unwrap_err().to_string();
            assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
            for batch in [1, 1024] {
                let two = extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(batch))
                    .unwrap_err()
                    .to_string();
                assert_eq!(two, one, "{body}");
            }
        }
    }

    #[test]
    fn unread_parts_are_checked_but_not_built() {
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let pod = r#"{"name": "a", "energy_consumed": [1]}"#;
        // Deeper than serde_json builds (128), but nobody reads it: skipped without recursion.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let body = format!(r#"{{"other": {deep}, "apps": {{"a": {{"n": [{pod}]}}}}}}"#);
        assert_eq!(read(&body, &specs, &plan).unwrap().series_count(), 1);
        // Where it is read, the limit holds.
        let body = format!(r#"{{"apps": {{"a": {{"n": [{{"name": {deep}}}]}}}}}}"#);
        let err = read(&body, &specs, &plan).unwrap_err().to_string();
        assert!(err.contains("recursion limit"), "{err}");
        for (body, what) in [
            (
                r#"{"other": [1, 2,], "apps": {}}"#.to_string(),
                "expected value",
            ),
            (
                format!(r#"{{"apps": {{"a": {{"n": [{pod}]}}}}}} x"#),
                "trailing characters",
            ),
            (
                format!(r#"{{"apps": {{"a": {{"n": [{pod}, ]}}}}}}"#),
                "trailing comma",
            ),
            (format!(r#"{{"apps": {{"a": {{"n": [{pod}"#), "EOF"),
        ] {
            let err = read(&body, &specs, &plan).unwrap_err().to_string();
            assert!(err.contains(what), "{body}: {err}");
        }
        // Not UTF-8, even where nobody reads: refused, saying where.
        let mut body = b"{\n \"other\": \"caf".to_vec();
        body.extend_from_slice(&[0xe9, b'"', b'}']);
        let err = extract_bytes(&body, &specs, &plan, Threads::Auto)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid UTF-8 at line 2 column 15");
        // Past the first SIMD blocks, and a sequence cut off by the end of the body.
        let mut body = format!("{{\"apps\": {{}}, \"x\": \"{}\n\n", "é".repeat(100)).into_bytes();
        body.push(0xc3);
        let err = extract_bytes(&body, &specs, &plan, Threads::Auto)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid UTF-8 at line 3 column 1");
    }

    #[test]
    fn string_slots_built_in_place_read_like_the_tree() {
        // The name slot of consecutive items changes between plain strings (built from their
        // text into the previous item's string), escaped ones (parsed), numbers (labels
        // written in place), other kinds and nothing: each item's label is its own.
        let names = [
            r#""plain""#,
            r#""longer plain name""#,
            r#""""#,
            r#""q\"uote""#,
            r#""after escape""#,
            r#""\u00e9t\u00e9""#,
            "7",
            r#""x""#,
            "1.5e3",
            "-0",
            "null",
            r#""y""#,
            "true",
            r#"{"a": "b"}"#,
            r#""z""#,
            r#"["w"]"#,
        ];
        let mut pods: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!(r#"{{"name": {n}, "energy_consumed": [{i}]}}"#))
            .collect();
        pods.insert(9, r#"{"energy_consumed": [99]}"#.into());
        pods.push(r#"{"name": "last", "energy_consumed": [100]}"#.into());
        let body = format!(r#"{{"apps": {{"a": {{"n": [{}]}}}}}}"#, pods.join(","));
        let mut specs = vec![energy()];
        let plan = plan_of(&mut specs);
        let doc: Value = serde_json::from_str(&body).unwrap();
        let tree = run(&doc, &specs);
        let mut labels: Vec<String> = series(&tree)
            .into_iter()
            .map(|(l, _)| l[1].clone())
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                "",
                "-0.0",
                "1500.0",
                "7",
                "after escape",
                "last",
                "longer plain name",
                "plain",
                "q\"uote",
                "true",
                "x",
                "y",
                "z",
                "été"
            ]
        );
        for got in [
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::One),
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::Two),
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(1)),
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(4)),
        ] {
            assert_eq!(whole(&got.unwrap()), whole(&tree));
        }
    }

    /// Plans whose item nodes cover each kind of need the quick reader meets: names, a tail
    /// from the end, indexes from the front, a long tail, an element two lookups share,
    /// wildcards, the whole item.
    fn quick_plans() -> Vec<ReadPlan> {
        let sets: Vec<Vec<MetricSpec>> = vec![
            vec![energy()],
            vec![gauge(
                Some("$.xs[*]"),
                &[("a", "{@.v[1]}"), ("b", "{@.tags[0].k}")],
                "@.a.b.c",
            )],
            vec![gauge(Some("$.xs[*]"), &[("a", "{@.p[0]}")], "@.x[-10]")],
            vec![gauge(Some("$.xs[*]"), &[("a", "{@.p[0]}")], "@.p[-1]")],
            vec![gauge(Some("$.xs[*]"), &[("a", "{@.m.*.k}")], "@.*[2]")],
            vec![gauge(Some("$.xs[*]"), &[], "@")],
        ];
        sets.into_iter()
            .map(|mut specs| {
                let plan = plan_of(&mut specs);
                assert!(plan.scanned, "{}", plan.describe());
                plan
            })
            .collect()
    }

    fn item_node(need: &crate::read::Need) -> &crate::read::Need {
        if need.slotted.is_some() {
            return need;
        }
        need.children()
            .find(|c| c.has_items)
            .map(item_node)
            .expect("a slotted item node")
    }

    /// What the quick reader makes of `item`, checked against `serde_json`'s reader: where
    /// the quick one answers, it agrees on the value it read (what follows is the scan's to
    /// check); where `serde_json` refuses, the quick one does not answer. `Some(slots)` when
    /// the quick reader read all of `item`.
    fn quick_agrees(item: &str, need: &crate::read::Need) -> Option<Vec<Option<String>>> {
        let mut quick = vec![None; need.slotted.map_or(0, |s| s.count)];
        let end = crate::read::quick::read(item, 0, need, &mut quick)?;
        let mut slow = Vec::new();
        let parsed = crate::read::stream::fill_slots(&item[..end], need, &mut slow);
        assert!(parsed.is_ok(), "accepted what serde_json refuses: {item}");
        assert_eq!(quick, slow, "{item}");
        (end == item.len()).then(|| quick.iter().map(|s| s.map(str::to_string)).collect())
    }

    #[test]
    fn the_quick_item_reader_agrees_with_serde_or_leaves_the_item_to_it() {
        // What APIs send: read by the quick reader.
        let read = [
            r#"{"name":"a","energy_consumed":[1,2.5,-3e2],"co2":[9,{"x":[true,null]}],"p":"R"}"#,
            r#"{ "name" : "b" , "energy_consumed" : [ 0 , -0.0 , 12345678901234567890 ] }"#,
            "{\n\t\"v\": [1, {\"a\": 1}],\r\n \"tags\": [{\"k\": \"t\"}], \"a\": {\"b\": {\"c\": 5}}}",
            r#"{"x":[0,1,2,3,4,5,6,7,8,9,10,11],"p":[[1],"s"]}"#,
            r#"{"name":1.2345678901234567,"energy_consumed":[123456789012345.5,0.25E+3,7e-2,1]}"#,
            r#"{"p":[7]}"#,
            r#"{"m":{"q":{"k":"é"},"r":{"k":1}},"n":[1,2,3],"o":[4]}"#,
            r#"{"name":"été ☃","energy_consumed":[],"tags":[],"m":{}}"#,
            r#"{"name": {"deep": [[[[["x"]]]]]}, "energy_consumed": {"x": 1}}"#,
            r#"[1, "two", {"three": 3}]"#,
            r#""just a string""#,
            "42",
            "-1.5",
            "null",
            "true",
            "{}",
            "[]",
        ];
        // Left to serde_json: escapes, deep nesting and anything invalid, wherever they are;
        // a repeated member where it is read (plan 0 reads "name", plan 1 reads "v").
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let deep_item = format!(r#"{{"other": {deep}}}"#);
        let left = [
            r#"{"name":"a\"b","energy_consumed":[1]}"#,
            r#"{"na\u006de":"a","energy_consumed":[1]}"#,
            r#"{"co2":["\n"],"name":"a"}"#,
            deep_item.as_str(),
            r#"{"name":"a","energy_consumed":[1,]}"#,
            r#"{"name":"a",}"#,
            r#"{"name" "a"}"#,
            r#"{"name":"a""#,
            "{\"name\":\"tab\there\"}",
            "{\"name\":\"a tab past the first sixteen bytes\there, and as many bytes after it\"}",
            r#"{"name":01}"#,
            r#"{"name":01,"padding":"past sixteen bytes"}"#,
            r#"{"name":-01.5,"padding":"past sixteen bytes"}"#,
            r#"{"name":1.,"padding":"past sixteen bytes"}"#,
            r#"{"name":1.e5,"padding":"past sixteen bytes"}"#,
            r#"{"name":1.5e,"padding":"past sixteen bytes"}"#,
            r#"{"name":1.5.5,"padding":"past sixteen bytes"}"#,
            r#"{"name":1x,"padding":"past sixteen bytes"}"#,
            r#"{"name":1.}"#,
            r#"{"name":-}"#,
            r#"{"name":1e}"#,
            r#"{"name":.5}"#,
            r#"{"name":tru}"#,
            r#"{"name":nul}"#,
            r#"{"name":"a"} "#,
            r#"{"name":"a"}}"#,
            r#"[1 2]"#,
            r#"{name:1}"#,
            "",
        ];
        let plans = quick_plans();
        for plan in &plans {
            let need = item_node(&plan.root);
            for item in read {
                assert!(
                    quick_agrees(item, need).is_some(),
                    "{item} with {:?}",
                    plan.describe()
                );
            }
            for item in left {
                assert!(quick_agrees(item, need).is_none(), "{item}");
            }
            // Numbers `serde_json` may find out of range are left to it where it parses
            // them: where the item is read whole, it only checks them.
            for item in ["1e400", "123456789012345678901234567890"] {
                assert_eq!(quick_agrees(item, need).is_some(), need.all, "{item}");
            }
        }
        for (item, plan) in [
            (r#"{"name":"a","name":"b"}"#, 0),
            (r#"{"v":[1,2],"v":[3]}"#, 1),
        ] {
            assert!(quick_agrees(item, item_node(&plans[plan].root)).is_none());
            // A plan that does not read the member skips both.
            assert!(quick_agrees(item, item_node(&plans[2].root)).is_some());
        }
        // The slots themselves, on the energy shape.
        let need = item_node(&plans[0].root);
        assert_eq!(
            quick_agrees(read[0], need).unwrap(),
            [Some(r#""a""#.into()), Some("-3e2".into())]
        );
    }

    mod quick_props {
        use super::*;
        use proptest::prelude::*;

        /// Item-like values: the shapes the quick plans read, plus anything.
        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "[a-z\"\\\\\n é]{0,6}".prop_map(Value::String),
            ];
            leaf.prop_recursive(5, 40, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("name".to_string()),
                                Just("energy_consumed".to_string()),
                                Just("v".to_string()),
                                Just("tags".to_string()),
                                Just("k".to_string()),
                                Just("a".to_string()),
                                Just("b".to_string()),
                                Just("c".to_string()),
                                Just("x".to_string()),
                                Just("p".to_string()),
                                Just("m".to_string()),
                                "[a-z\"]{0,3}",
                            ],
                            inner
                        ),
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Some JSON text for `v`, compact or pretty, sometimes with a member repeated or a
        /// byte changed.
        fn text() -> impl Strategy<Value = String> {
            (
                value(),
                any::<bool>(),
                0..4usize,
                any::<prop::sample::Index>(),
                any::<u8>(),
            )
                .prop_map(|(v, pretty, damage, at, byte)| {
                    let mut t = if pretty {
                        serde_json::to_string_pretty(&v).unwrap()
                    } else {
                        serde_json::to_string(&v).unwrap()
                    };
                    if t.is_empty() {
                        return t;
                    }
                    let i = at.index(t.len());
                    match damage {
                        // Only ASCII changes, so that the text stays a string.
                        1 if t.is_char_boundary(i) => {
                            t.insert(i, char::from(byte & 0x7f));
                        }
                        2 if t.is_char_boundary(i) => t.truncate(i),
                        3 if t.starts_with('{') && t.len() > 2 => {
                            let inner = t[1..t.len() - 1].to_string();
                            t = format!("{{{inner},{inner}}}");
                        }
                        _ => {}
                    }
                    t
                })
        }

        /// The text of an array after its opening bracket: numbers as APIs send them, or
        /// bytes that arrays of numbers are made of, in any order.
        fn array() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(
                    prop_oneof![
                        any::<i32>().prop_map(|n| n.to_string()),
                        (any::<i16>(), 0..1000u32).prop_map(|(a, b)| format!("{a}.{b}")),
                    ],
                    0..12,
                )
                .prop_map(|n| format!("{}]", n.join(","))),
                "[0-9.,\\-\\] e]{0,40}\\]",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn the_quick_reader_never_disagrees_with_serde(item in text()) {
                for plan in quick_plans() {
                    quick_agrees(&item, item_node(&plan.root));
                }
            }

            /// Arrays of numbers with 64 bytes after them, which the quick reader settles on
            /// bit masks: skipped, read from the end (a few elements kept, or all), or by index.
            #[test]
            fn arrays_of_numbers_read_on_masks_agree_with_serde(
                arrays in prop::collection::vec(array(), 4),
            ) {
                let item = format!(
                    r#"{{"name":"a","energy_consumed":[{}, "x":[{}, "p":[{}, "co2":[{}, "pad":"{}"}}"#,
                    arrays[0], arrays[1], arrays[2], arrays[3], "y".repeat(64)
                );
                // Nothing here is for `serde_json` (no escape, no repeated member, no number
                // read where it could be out of range): a valid item is read. (Valid JSON:
                // skipped without building, as 1e310 is valid but builds no f64.)
                let valid = serde_json::from_str::<serde::de::IgnoredAny>(&item).is_ok();
                for plan in quick_plans() {
                    let read = quick_agrees(&item, item_node(&plan.root));
                    prop_assert_eq!(read.is_some(), valid, "{}", item);
                }
            }
        }
    }
}

mod numbers_and_corpus {
    //! Issue 14, point 12: numbers arrive exactly as sent, on every reader path and body
    //! size, and every path accepts and refuses what a strict parser does.
    use super::*;
    use proptest::prelude::*;

    /// One block per reader path, each reading `v` of every item.
    fn path_specs() -> Vec<(&'static str, Vec<MetricSpec>)> {
        vec![
            (
                "slots",
                vec![gauge(
                    Some("$.apps.{app}.{ns}[*]"),
                    &[("pod", "{@.name}")],
                    "@.v",
                )],
            ),
            (
                "items built",
                vec![gauge(
                    Some("$.apps.{app}.{ns}[*]"),
                    &[("pod", "{@.name}")],
                    "max(@.points[?@.ok == true].v)",
                )],
            ),
            (
                "root first",
                vec![gauge(
                    Some("$.apps.{app}.{ns}[*]"),
                    &[("pod", "{@.name}"), ("r", "{$.region}")],
                    "@.v",
                )],
            ),
            (
                "pruned tree",
                vec![gauge(
                    Some("$.apps.{app}.{ns}[*]"),
                    &[("pod", "{@.name}"), ("o", "{app.owner}")],
                    "@.v",
                )],
            ),
        ]
    }

    /// A document whose `n` items all hold `number` (at `v` and in `points`), followed by
    /// `pad` items of filler: small bodies read on one thread, large ones on two.
    fn document(number: &str, n: usize, pad: usize) -> String {
        let mut items: Vec<String> = (0..n)
            .map(|i| {
                format!(r#"{{"name":"p{i}","v":{number},"points":[{{"ok":true,"v":{number}}}]}}"#)
            })
            .collect();
        items.extend((0..pad).map(|i| format!(r#"{{"name":"f{i}","v":1,"points":[]}}"#)));
        format!(
            r#"{{"region":"eu","apps":{{"a":{{"owner":"o","ns":[{}]}}}}}}"#,
            items.join(",")
        )
    }

    /// Every reader, on one thread and on two, over `body`: the value of item `p0` (or the
    /// error kind).
    fn read_everywhere(body: &str) -> Vec<(String, Result<f64, String>)> {
        let mut out = Vec::new();
        for (name, mut specs) in path_specs() {
            let plan = ReadPlan::new(&mut specs);
            let runs = [
                (
                    "one thread",
                    extract_bytes(body.as_bytes(), &specs, &plan, Threads::One),
                ),
                (
                    "two threads",
                    extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(7)),
                ),
            ];
            for (how, r) in runs {
                let got = r.map_err(|e| e.to_string()).and_then(|x| {
                    series(&x)
                        .into_iter()
                        .find(|(l, _)| l[0] == "p0")
                        .map(|(_, v)| v)
                        .ok_or_else(|| format!("no series: {:?}", x.problems))
                });
                out.push((format!("{name}, {how}"), got));
            }
        }
        out
    }

    /// Whether every path gives the correctly rounded double of `text` (what Rust's own
    /// parser gives), at two body sizes.
    fn exact_everywhere(text: &str) -> Result<(), String> {
        let want: f64 = text.parse().unwrap();
        for pad in [0, 300] {
            let body = document(text, 3, pad);
            // The tree too: serde_json itself must round correctly.
            let doc: Value = serde_json::from_str(&body).map_err(|e| format!("{text}: {e}"))?;
            let tree = run(&doc, &path_specs()[0].1);
            let mut all = read_everywhere(&body);
            all.push((
                "tree".into(),
                series(&tree)
                    .into_iter()
                    .find(|(l, _)| l[0] == "p0")
                    .map(|(_, v)| v)
                    .ok_or_else(|| "no series".into()),
            ));
            for (how, got) in all {
                match got {
                    Ok(v) if v.to_bits() == want.to_bits() => {}
                    other => {
                        return Err(format!(
                            "{text} ({how}, pad {pad}): {other:?}, want {want:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn hard_numbers_are_read_correctly_rounded() {
        for text in [
            "0.9589784328838307",
            "1.7976931348623158e308",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "2.2250738585072014e-308",
            "2.2250738585072011e-308",
            "4.9406564584124654e-324",
            "5e-324",
            "9007199254740993",
            "9007199254740992.5",
            "0.1",
            "0.30000000000000004",
            "123456789012345678901234567890",
            "8.98846567431158e307",
            "1e23",
            "7.2057594037927933e16",
            "2.0000000000000004",
            "1.00000000000000011102230246251565404236316680908203125",
            "0.500000000000000166533453693773481063544750213623046875",
            "3.0540412e5",
            "-0.0",
            "0",
        ] {
            exact_everywhere(text).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Every double's shortest text (as Python, Go or JavaScript print it) reads back
        /// to itself, in plain and in exponent notation.
        #[test]
        fn every_shortest_double_reads_back_to_itself(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let plain = format!("{f:?}");
            let exp = format!("{f:e}");
            for text in [plain, exp] {
                prop_assert!(exact_everywhere(&text).is_ok(), "{:?}", exact_everywhere(&text));
            }
        }
    }

    /// Item texts of every kind, valid and not, with what a strict parser says of them.
    #[test]
    fn every_reader_accepts_and_refuses_what_a_strict_parser_does() {
        for item in crate::read::tests::corpus() {
            for pad in [0, 300] {
                let body = format!(
                    r#"{{"region":"eu","apps":{{"a":{{"owner":"o","ns":[{item}{}]}}}}}}"#,
                    (0..pad)
                        .map(|i| format!(r#",{{"name":"f{i}","v":1,"points":[]}}"#))
                        .collect::<String>()
                );
                // The strict parser: serde_json building the whole tree (which, beyond the grammar, also
                // refuses a lone surrogate, as no reader can build it into text).
                let strict = serde_json::from_str::<Value>(&body).is_ok();
                // Truncated anywhere, the document is refused by every reader too.
                let cut = &body[..body.len() - 1 - pad.min(1)];
                for (text, valid) in [(body.as_str(), strict), (cut, false)] {
                    for (name, mut specs) in path_specs() {
                        let plan = ReadPlan::new(&mut specs);
                        for r in [
                            extract_bytes(text.as_bytes(), &specs, &plan, Threads::One),
                            extract_bytes(text.as_bytes(), &specs, &plan, Threads::Batched(7)),
                        ] {
                            let refused = r.is_err();
                            assert_eq!(
                                !refused,
                                valid,
                                "{name}, pad {pad}: {text:.120} -> {:?}",
                                r.map(|x| series(&x).len())
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_number_out_of_range_is_refused_only_where_it_is_read() {
        // Valid JSON by the grammar, but no double holds it: the poll fails where a lookup
        // reads it, and the number is skipped like any other where none does.
        let read = document("1e400", 1, 0);
        let unread = r#"{"region":"eu","apps":{"a":{"owner":"o","ns":[{"name":"p0","v":1,"x":1e400,"points":[]}]}}}"#;
        for (name, mut specs) in path_specs() {
            let plan = ReadPlan::new(&mut specs);
            let r = extract_bytes(read.as_bytes(), &specs, &plan, Threads::One);
            assert!(r.is_err(), "{name}: {:?}", r.map(|x| series(&x)));
            let r = extract_bytes(unread.as_bytes(), &specs, &plan, Threads::One);
            assert!(r.is_ok(), "{name}: {r:?}");
        }
    }

    #[test]
    fn a_repeated_member_is_noticed_with_64_lookups_or_more() {
        // 70 members read below (`@.kN.a`); the last four, whose lookups come after the
        // 64th, are written twice: first as an object that has `a`, then as a number. The
        // last wins, whole: no `a` is left for their labels, so the item is skipped as the
        // tree skips it.
        let labels: Vec<(String, String)> = (0..70)
            .map(|i| (format!("l{i}"), format!("{{@.k{i}.a}}")))
            .collect();
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut specs = vec![gauge(Some("$.xs[*]"), &labels, "@.z")];
        let plan = ReadPlan::new(&mut specs);
        let first: String = (66..70)
            .map(|i| format!(r#""k{i}":{{"a":"first"}},"#))
            .collect();
        let last: String = (0..70)
            .map(|i| match i {
                66.. => format!(r#""k{i}":{i},"#),
                _ => format!(r#""k{i}":{{"a":"v{i}"}},"#),
            })
            .collect();
        let body = format!(r#"{{"xs":[{{{first}{last}"z":7}}]}}"#);
        let doc: Value = serde_json::from_str(&body).unwrap();
        let tree = run(&doc, &specs);
        assert!(series(&tree).is_empty());
        assert_eq!(kinds(&tree), vec![("label_missing", 1)]);
        for r in [
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::One),
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(1)),
        ] {
            let r = r.unwrap();
            assert!(series(&r).is_empty(), "{:?}", series(&r));
            assert_eq!(kinds(&r), kinds(&tree));
        }
    }
}

mod pruned_reads {
    //! Issue 14, point 9: trees built for filters and aggregates hold only what they read,
    //! and still give what the whole tree gives.
    use super::*;

    const BODY: &str = r#"{"region": "eu", "pods": [
        {"app": "a", "name": "p1", "phase": "Running", "e": [1, 2, 3], "meta": {"tier": "web", "x": [9]}},
        {"app": "b", "name": "p2", "phase": "Failed", "e": [4, 5], "ready": true},
        {"app": "a", "name": "p3", "e": [], "meta": {"tier": "db"}},
        {"app": "c", "name": "p4", "phase": "Running", "e": [7, 8, 9, 10], "meta": null},
        7, "text", null, [1, 2]
    ], "byid": {"x": {"app": "a", "v": 1}, "y": {"app": "b", "v": 2}, "z": {"v": 3}}}"#;

    #[test]
    fn filters_and_aggregates_read_like_the_tree() {
        type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                Some("$.pods[?@.app == 'a']"),
                vec![("p", "{@.name}")],
                "@.e[-1]",
            ),
            (
                Some("$.pods[?@.app == 'a' && @.phase]"),
                vec![("p", "{@.name}")],
                "@.e[0]",
            ),
            (
                Some("$.pods[?!@.phase || @.ready == true]"),
                vec![("p", "{@.name}")],
                "length(@.e)",
            ),
            (
                Some("$.pods[?@.meta.tier == 'web']"),
                vec![("p", "{@.name}")],
                "@.meta.x[0]",
            ),
            (
                Some("$.pods[?@.e[0] > 1]"),
                vec![("p", "{@.name}")],
                "@.e[-1]",
            ),
            (
                Some("$.pods[?@.e[-1] >= 3].meta"),
                vec![("t", "{@.tier}")],
                "1",
            ),
            (Some("$.byid[?@.app == 'a' || @.v > 2]"), vec![], "@.v"),
            (
                Some("$.pods[?length(@.e) > 2]"),
                vec![("p", "{@.name}")],
                "@.e[0]",
            ),
            (
                Some("$.pods[?match(@.name, 'p[13]')]"),
                vec![("p", "{@.name}")],
                "@.e[-1]",
            ),
            (
                Some("$.pods[?search(@.phase, 'unn')]"),
                vec![("p", "{@.name}")],
                "length(@.e)",
            ),
            (
                Some("$.pods[?count(@.e[*]) > 1 && value(@.meta.tier) == 'web']"),
                vec![("p", "{@.name}")],
                "@.e[1]",
            ),
            (Some("$.pods[?@.meta.x[*]]"), vec![("p", "{@.name}")], "1"),
            (
                Some("$.pods[?@.meta.tier || length(@.e) == 2]"),
                vec![("p", "{@.name}")],
                "@.e[-1]",
            ),
            (
                Some("$.pods[?@.app == 'a']"),
                vec![("r", "{$.region}")],
                "sum(@.e[*])",
            ),
            (None, vec![], "count($.pods[*])"),
            (None, vec![], "length($.pods)"),
            (None, vec![], "length($.byid)"),
            (None, vec![], "sum($.pods[*].e[-1])"),
            (None, vec![], "max($.pods[*].e[0])"),
            (None, vec![], "avg($.pods[*].e[1])"),
            (None, vec![], "count($.pods[*].meta.tier)"),
            (None, vec![], "count($.byid.*.app)"),
            (None, vec![], "sum($.pods[*].e[*])"),
            (None, vec![], "count($.pods[?@.app == 'a'])"),
            (None, vec![], "count($..name)"),
            (None, vec![], "count($..app)"),
            (None, vec![], "sum($..e[0])"),
            (None, vec![], "sum($..e[*])"),
            (None, vec![], "max($..v)"),
            (None, vec![], "length($.pods[0]..x)"),
            (None, vec![], "count($.pods..x)"),
            (None, vec![], "count($..meta.tier)"),
            (None, vec![], "sum($..x[-1])"),
            (Some("$.pods[*]"), vec![("p", "{@.name}")], "count($..tier)"),
            (
                Some("$.pods[?@.app == 'a']"),
                vec![("p", "{@.name}")],
                "count($..e[*])",
            ),
            (Some("$.byid.*"), vec![], "sum($..v)"),
            (Some("$..pods[*]"), vec![("p", "{@.name}")], "@.e[-1]"),
            (Some("$..meta"), vec![("t", "{@.tier}")], "1"),
            (Some("$..byid.*"), vec![], "@.v"),
            (Some("$.pods[*]..x"), vec![], "@[0]"),
            (Some("$..e"), vec![], "length(@)"),
        ];
        let doc: Value = serde_json::from_str(BODY).unwrap();
        for (each, labels, value) in cases {
            let mut specs = vec![gauge(each, &labels, value)];
            let plan = ReadPlan::new(&mut specs);
            let tree = run(&doc, &specs);
            let got = extract_bytes(BODY.as_bytes(), &specs, &plan, Threads::One).unwrap();
            let what = format!("{each:?} {value} ({})", plan.describe());
            assert_eq!(series(&got), series(&tree), "{what}");
            assert_eq!(got.problems, tree.problems, "{what}");
            assert!(!series(&tree).is_empty(), "{what}: the case tests nothing");
        }
    }

    #[test]
    fn a_followed_filter_builds_only_what_it_reads() {
        // The pruned tree for a filter holds the members the filter and the lookups read,
        // not the candidates whole.
        let mut specs = vec![gauge(
            Some("$.pods[?@.app == 'a']"),
            &[("p", "{@.name}")],
            "@.e[-1]",
        )];
        let plan = ReadPlan::new(&mut specs);
        let pruned = crate::read::tree::parse(BODY, &plan.root).unwrap();
        let first = &pruned["pods"][0];
        let mut keys: Vec<&String> = first.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["app", "e", "name"]);
        // Only the tail of `e` is kept: `[-1]` of it is `[-1]` of the array.
        assert_eq!(first["e"], serde_json::json!([3]));
        // Read from both ends only: the middle of the array is not kept.
        let mut specs = vec![gauge(
            Some("$.pods[?@.e[0] > 1]"),
            &[("p", "{@.name}")],
            "@.e[-1]",
        )];
        let plan = ReadPlan::new(&mut specs);
        let pruned = crate::read::tree::parse(BODY, &plan.root).unwrap();
        assert_eq!(pruned["pods"][3]["e"], serde_json::json!([7, 10]));
        assert_eq!(pruned["pods"][1]["e"], serde_json::json!([4, 5]));
        // A function's query argument is read whole, and nothing else of the candidate.
        let mut specs = vec![gauge(
            Some("$.pods[?length(@.e) > 2]"),
            &[("p", "{@.name}")],
            "1",
        )];
        let plan = ReadPlan::new(&mut specs);
        let pruned = crate::read::tree::parse(BODY, &plan.root).unwrap();
        let mut keys: Vec<&String> = pruned["pods"][0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["e", "name"]);
        assert_eq!(pruned["pods"][0]["e"], serde_json::json!([1, 2, 3]));
        // A descendant search keeps only the way to what it finds.
        let mut specs = vec![gauge(None, &[], "count($..tier)")];
        let plan = ReadPlan::new(&mut specs);
        let first = crate::read::tree::parse(BODY, plan.first.as_ref().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"pods": [{"meta": {"tier": "web"}}, {"meta": {"tier": "db"}}]})
        );
        // So does a descendant search in `each`, with what the items' lookups read.
        let mut specs = vec![gauge(Some("$..meta"), &[("t", "{@.tier}")], "1")];
        let plan = ReadPlan::new(&mut specs);
        let pruned = crate::read::tree::parse(BODY, &plan.root).unwrap();
        assert_eq!(
            pruned,
            serde_json::json!({"pods": [
                {"meta": {"tier": "web"}}, {"meta": {"tier": "db"}}, {"meta": null}
            ]})
        );
        // A filter the plan cannot follow (it reads the root) keeps the candidates whole.
        let mut specs = vec![gauge(
            Some("$.pods[?@.app == $.region]"),
            &[("p", "{@.name}")],
            "@.e[-1]",
        )];
        let plan = ReadPlan::new(&mut specs);
        let pruned = crate::read::tree::parse(BODY, &plan.root).unwrap();
        assert_eq!(pruned["pods"][0]["phase"], "Running");
    }
}

mod folds {
    //! Aggregates from the root folded while the first pass parses: the tree's results, to
    //! the bit, and no tree of the folded nodes.
    use super::*;

    const BODY: &str = r#"{"region": "eu", "pods": [
        {"name": "p1", "e": [1.5, "2", true, null], "meta": {"w": 3}},
        {"name": "p2", "e": [-0.0, 1e300, 1e300], "meta": {"w": "x"}},
        {"name": "p3", "e": [], "meta": null},
        {"name": "p4", "e": [0.1, 0.2, 0.30000000000000004]}
    ], "byid": {"a": {"v": 1}, "b": {"v": [2]}, "c": {"v": "7.5"}}, "none": []}"#;

    fn root_blocks(values: &[&str]) -> Vec<MetricSpec> {
        // Items streamed from $.pods[*] (so the plan is streamed), each block adding an
        // aggregate from the root as a second value... one block per aggregate keeps the
        // problems apart.
        values
            .iter()
            .map(|v| gauge(Some("$.pods[*]"), &[("pod", "{@.name}")], v))
            .collect()
    }

    fn compare(values: &[&str], body: &str, want_folds: usize) {
        let mut specs = root_blocks(values);
        let plan = ReadPlan::new(&mut specs);
        assert!(plan.is_streamed(), "{}", plan.describe());
        assert_eq!(plan.folds.len(), want_folds, "{values:?}");
        let doc: Value = serde_json::from_str(body).unwrap();
        let tree = run(&doc, &specs);
        for r in [
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::One),
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::Two),
            extract_bytes(body.as_bytes(), &specs, &plan, Threads::Batched(1)),
        ] {
            let got = r.unwrap();
            let bits = |x: &Extraction| -> Vec<(Vec<String>, u64)> {
                series(x)
                    .into_iter()
                    .map(|(l, v)| (l, v.to_bits()))
                    .collect()
            };
            assert_eq!(bits(&got), bits(&tree), "{values:?}");
            assert_eq!(got.problems, tree.problems, "{values:?}");
        }
    }

    #[test]
    fn folded_aggregates_give_what_the_tree_gives() {
        let all = [
            "count($.pods[*])",
            "count($.pods[*].e[*])",
            "sum($.pods[*].e[*])",
            "min($.pods[*].e[*])",
            "max($.pods[*].e[*])",
            "avg($.pods[*].e[*])",
            "sum($.pods[*].e[-1])",
            "sum($.pods[*].e[0])",
            "sum($.pods[*].meta.w)",
            "count($.byid.*)",
            "sum($.byid.*.v)",
            "max($.none[*])",
            "sum($.none[*])",
            "count($.*)",
            "avg($.nothing[*].here)",
        ];
        for v in all {
            compare(&[v], BODY, 1);
        }
        // Several at once, sharing nodes, beside lookups that read the same nodes.
        compare(&all, BODY, all.len());
        let mut specs = vec![
            gauge(
                Some("$.pods[*]"),
                &[("first", "{$.pods[0].name}")],
                "count($.pods[*])",
            ),
            gauge(Some("$.pods[*]"), &[("pod", "{@.name}")], "length($.pods)"),
        ];
        let plan = ReadPlan::new(&mut specs);
        let doc: Value = serde_json::from_str(BODY).unwrap();
        let got = extract_bytes(BODY.as_bytes(), &specs, &plan, Threads::One).unwrap();
        assert_eq!(series(&got), series(&run(&doc, &specs)));
    }

    #[test]
    fn a_repeated_member_on_the_way_reads_the_tree_instead() {
        // The tree keeps the last `pods`: the folds of the first must not count.
        let body = r#"{"pods": [{"name": "old", "e": [100]}], "x": 1, "pods": [{"name": "p", "e": [1, 2]}]}"#;
        compare(&["sum($.pods[*].e[*])", "count($.pods[*])"], body, 2);
        let body = r#"{"pods": [{"name": "p", "e": [5], "e": [1, 2]}]}"#;
        compare(&["sum($.pods[*].e[*])"], body, 1);
    }

    #[test]
    fn a_fold_below_a_node_read_whole_is_computed_from_the_tree() {
        let mut specs = vec![
            gauge(Some("$.pods[*]"), &[("all", "{$.byid}")], "1"),
            gauge(Some("$.pods[*]"), &[("pod", "{@.name}")], "sum($.byid.*.v)"),
        ];
        let plan = ReadPlan::new(&mut specs);
        let ValueSpec::Aggregate(_, l) = &specs[1].outputs[0].value else {
            panic!("an aggregate");
        };
        assert_eq!(
            l.fold, None,
            "a fold below `{{$.byid}}`, which is read whole"
        );
        let doc: Value = serde_json::from_str(BODY).unwrap();
        let got = extract_bytes(BODY.as_bytes(), &specs, &plan, Threads::One).unwrap();
        let tree = run(&doc, &specs);
        assert_eq!(series(&got), series(&tree));
        assert_eq!(got.problems, tree.problems);
    }

    #[test]
    fn beside_a_descendant_search_nothing_is_folded() {
        // `..v` makes every member called v read whole, folds below included: they would
        // never be met, so the plan computes them from the tree (found by the property test).
        let body = r#"{"apps": {"a": {"a": [{"v": {"apps": false}}, {"name": 0}]}}, "pods": [{"name": 0}], "name": false}"#;
        let mut specs = vec![
            gauge(Some("$.apps.{app}.{ns}[*]"), &[], "avg($.apps.*.*[*].v[*])"),
            gauge(Some("$.apps.{app}.{ns}[*]"), &[], "max($..v)"),
        ];
        let plan = ReadPlan::new(&mut specs);
        let ValueSpec::Aggregate(_, l) = &specs[0].outputs[0].value else {
            panic!("an aggregate");
        };
        assert_eq!(l.fold, None);
        let doc: Value = serde_json::from_str(body).unwrap();
        let got = extract_bytes(body.as_bytes(), &specs, &plan, Threads::One).unwrap();
        let tree = run(&doc, &specs);
        assert_eq!(series(&got), series(&tree));
        assert_eq!(got.problems, tree.problems);
    }

    #[test]
    fn folded_nodes_are_not_kept() {
        let mut specs = root_blocks(&["max($.pods[*].e[*])", "count($.byid.*)"]);
        let plan = ReadPlan::new(&mut specs);
        let folding = fold::Folding::new(plan.folds.len());
        let tree =
            crate::read::tree::parse_folding(BODY, plan.first.as_ref().unwrap(), &folding).unwrap();
        assert_eq!(tree, serde_json::json!({}));
        let folds = folding.into_folds();
        assert_eq!(folds[0].result(spec::Aggregate::Max), Some(1e300));
        assert_eq!(folds[1].result(spec::Aggregate::Count), Some(3.0));
    }
}

mod collected {
    //! Items of a descendant search in `each`, kept as text while the pruned tree is built
    //! and built one at a time: the tree's extraction, in the search's order, and a plain
    //! pruned tree wherever that cannot be shown while parsing.
    use super::*;

    /// Parses `body` as `read_body` does for a pruned-tree plan: the tree, and whether the
    /// members were kept as text (`false`: the collector was spoiled).
    fn collecting(body: &str, plan: &ReadPlan) -> (Value, bool) {
        let c = crate::read::Collector::new(body, plan.collect_names()).expect("the plan collects");
        let tree = crate::read::tree::parse_collecting(body, &plan.root, &c).unwrap();
        (tree, !c.is_spoiled())
    }

    /// Every reader against the tree, on `body`.
    fn agrees(body: &str, specs: &[MetricSpec], plan: &ReadPlan) {
        let doc: Value = serde_json::from_str(body).unwrap();
        let tree = run(&doc, specs);
        for threads in [Threads::One, Threads::Two] {
            let got = extract_bytes(body.as_bytes(), specs, plan, threads).unwrap();
            for (a, b) in got.families.iter().zip(&tree.families) {
                let values = |f: &FamilySamples| {
                    let s = f.series.iter();
                    s.map(|s| (s.labels.to_vec(), s.value.to_bits()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(values(a), values(b), "{body}");
            }
            assert_eq!(got.families.len(), tree.families.len());
            assert_eq!(got.problems, tree.problems, "{body}");
            assert_eq!(got.reports, tree.reports, "{body}");
        }
    }

    #[test]
    fn the_members_found_are_placeholders_in_the_tree() {
        let body = r#"{"apps": {"a": {"n": [
            {"name": "p1", "energy_consumed": [1, 2, 3]},
            {"name": "p2", "energy_consumed": [4.5]}
        ]}}}"#;
        let mut specs = vec![gauge(Some("$..energy_consumed"), &[], "length(@)")];
        specs[0].on_duplicate = OnDuplicate::Sum;
        let plan = ReadPlan::new(&mut specs);
        assert!(plan.collects[0].is_some());
        let (tree, kept) = collecting(body, &plan);
        assert!(kept);
        assert_eq!(
            tree,
            json!({"apps": {"a": {"n": [{"energy_consumed": 0}, {"energy_consumed": 1}]}}})
        );
        agrees(body, &specs, &plan);
        let x = extract_bytes(body.as_bytes(), &specs, &plan, Threads::One).unwrap();
        assert_eq!(series(&x), vec![(vec![], 4.0)]);
    }

    #[test]
    fn items_come_in_the_order_of_the_search_not_of_the_document() {
        // The root's own `x` comes before the one in `a`, although it is written after it:
        // "first" keeps 2, "last" keeps 1, and a sum adds them in that order.
        let body = r#"{"a": {"x": {"v": 1}, "b": [{"x": {"v": 0.1}}]}, "x": {"v": 2}}"#;
        for (policy, want) in [
            (OnDuplicate::First, 2.0),
            (OnDuplicate::Last, 0.1),
            (OnDuplicate::Sum, 2.0 + 1.0 + 0.1),
        ] {
            let mut specs = vec![gauge(Some("$..x"), &[("k", "c")], "@.v")];
            specs[0].on_duplicate = policy;
            let plan = ReadPlan::new(&mut specs);
            assert!(collecting(body, &plan).1, "kept as text");
            agrees(body, &specs, &plan);
            let x = extract_bytes(body.as_bytes(), &specs, &plan, Threads::One).unwrap();
            assert_eq!(
                series(&x),
                vec![(vec!["c".to_string()], want)],
                "{policy:?}"
            );
        }
        // Steps after the search, and a capture before it.
        let body = r#"{"apps": {"b": {"pods": [{"n": "p"}]}, "a": {"x": {"pods": [{"n": "q"}, {"n": "r"}]}}}}"#;
        let mut specs = vec![gauge(
            Some("$.apps.{app}..pods[*]"),
            &[("app", "{app}"), ("pod", "{@.n}")],
            "1",
        )];
        let plan = ReadPlan::new(&mut specs);
        assert!(collecting(body, &plan).1);
        agrees(body, &specs, &plan);
        assert_eq!(
            series(&run(&serde_json::from_str(body).unwrap(), &specs)).len(),
            3
        );
    }

    #[test]
    fn what_cannot_be_shown_while_parsing_is_read_as_a_tree() {
        let each = |specs: Vec<MetricSpec>, body: &str| {
            let mut specs = specs;
            let plan = ReadPlan::new(&mut specs);
            let kept = match crate::read::Collector::new(body, plan.collect_names()) {
                Some(_) => collecting(body, &plan).1,
                None => false,
            };
            agrees(body, &specs, &plan);
            kept
        };
        let search = || gauge(Some("$..x"), &[], "count(@.*)");
        // Clean: kept.
        assert!(each(vec![search()], r#"{"a": {"x": {"v": 1}}}"#));
        // A member found holds another one: the search looks inside it.
        assert!(!each(vec![search()], r#"{"a": {"x": {"x": {"v": 1}}}}"#));
        // An escape may spell the name.
        assert!(!each(
            vec![search()],
            r#"{"a": {"x": {"\u0078": {"v": 1}}}}"#
        ));
        // Another lookup reads a member found.
        assert!(!each(
            vec![search(), gauge(None, &[], "$.a.x.v")],
            r#"{"a": {"x": {"v": 1}}}"#
        ));
        // A subtree read whole holds one; one that holds none does not matter.
        assert!(!each(
            vec![search(), gauge(None, &[("l", "{$.a}")], "1")],
            r#"{"a": {"x": {"v": 1}}}"#
        ));
        assert!(each(
            vec![search(), gauge(None, &[("l", "{$.b}")], "1")],
            r#"{"a": {"x": {"v": 1}}, "b": "x"}"#
        ));
        // Another search in force would look inside a member found.
        assert!(!each(
            vec![search(), gauge(None, &[], "count($..v)")],
            r#"{"a": {"x": {"v": 1}}}"#
        ));
        // The same search twice: the rule is no block's own, nothing is collected.
        let mut two = vec![search(), gauge(None, &[], "count($..x)")];
        assert!(ReadPlan::new(&mut two).collects[0].is_none());
        assert!(!each(two, r#"{"a": {"x": {"v": 1}}}"#));
    }

    #[test]
    fn a_member_that_cannot_be_built_fails_where_it_is() {
        let body = "{\"a\": {\"x\": [1,\n 1e400]}}";
        let mut specs = vec![gauge(Some("$..x"), &[], "@[1]")];
        let plan = ReadPlan::new(&mut specs);
        assert!(collecting(body, &plan).1);
        let err = extract_bytes(body.as_bytes(), &specs, &plan, Threads::One).unwrap_err();
        // Where the strict parser says, in the whole body.
        let strict = serde_json::from_str::<Value>(body).unwrap_err();
        assert_eq!(err.to_string(), strict.to_string());
    }
}

#[test]
fn group_by_aggregates_with_filled_states() {
    let doc = json!({"items": [
        {"ns": "a", "phase": "Running", "cpu": 2},
        {"ns": "a", "phase": "Running", "cpu": 1},
        {"ns": "b", "phase": "Pending", "cpu": 0.5},
        {"ns": "a", "phase": "Evicted", "cpu": 4},
        {"ns": "b", "phase": "Running"}
    ]});
    let fill = "fill: {phase: [Pending, Running, Failed]}";
    let pods = |agg: &str, value: &str, fill: &str| {
        blocks(&format!(
            "      - {{name: m, help: M., each: \"$.items[*]\", labels: {{namespace: \"{{@.ns}}\", phase: \"{{@.phase}}\"}}, aggregate: {agg}{value}{fill}}}\n"
        ))
    };
    let s = |ns: &str, phase: &str, v: f64| (vec![ns.to_string(), phase.to_string()], v);
    // Counts, with every declared phase beside every namespace seen (a phase outside the
    // list, Evicted, is reported as found).
    let x = run(&doc, &pods("count", "", &format!(", {fill}")));
    assert_eq!(
        series(&x),
        vec![
            s("a", "Evicted", 1.0),
            s("a", "Failed", 0.0),
            s("a", "Pending", 0.0),
            s("a", "Running", 2.0),
            s("b", "Failed", 0.0),
            s("b", "Pending", 1.0),
            s("b", "Running", 1.0),
        ]
    );
    assert_eq!(kinds(&x), vec![]);
    assert!(x.merged.is_empty());
    // Sums skip the item without a value (and say so); min, max, avg.
    for (agg, want) in [
        (
            "sum",
            vec![
                s("a", "Evicted", 4.0),
                s("a", "Failed", 0.0),
                s("a", "Pending", 0.0),
                s("a", "Running", 3.0),
                s("b", "Failed", 0.0),
                s("b", "Pending", 0.5),
                s("b", "Running", 0.0),
            ],
        ),
        (
            "min",
            vec![
                s("a", "Evicted", 4.0),
                s("a", "Running", 1.0),
                s("b", "Pending", 0.5),
            ],
        ),
        (
            "max",
            vec![
                s("a", "Evicted", 4.0),
                s("a", "Running", 2.0),
                s("b", "Pending", 0.5),
            ],
        ),
        (
            "avg",
            vec![
                s("a", "Evicted", 4.0),
                s("a", "Running", 1.5),
                s("b", "Pending", 0.5),
            ],
        ),
    ] {
        let fill = if agg == "sum" {
            format!(", {fill}")
        } else {
            String::new()
        };
        let x = run(&doc, &pods(agg, ", value: \"@.cpu\"", &fill));
        assert_eq!(series(&x), want, "{agg}");
        assert_eq!(kinds(&x), vec![("value_missing", 1)], "{agg}");
    }
    // Nothing matched: with only filled labels, every state is reported as 0.
    let b = blocks(
        "      - {name: m, help: M., each: \"$.items[?@.x]\", labels: {phase: \"{@.phase}\"}, aggregate: count, fill: {phase: [Pending, Running]}}\n",
    );
    let x = run(&doc, &b);
    assert_eq!(
        series(&x),
        vec![(vec!["Pending".into()], 0.0), (vec!["Running".into()], 0.0)]
    );
    // Two filled labels: every combination.
    let b = blocks(
        "      - {name: m, help: M., each: \"$.items[*]\", labels: {ns: \"{@.ns}\", phase: \"{@.phase}\"}, aggregate: count, fill: {ns: [a, c], phase: [Running]}}\n",
    );
    let x = run(&doc, &b);
    assert_eq!(
        series(&x),
        vec![
            s("a", "Evicted", 1.0),
            s("a", "Running", 2.0),
            s("b", "Pending", 1.0),
            s("b", "Running", 1.0),
            s("c", "Running", 0.0),
        ]
    );
}

#[test]
fn metric_names_from_the_data() {
    let body = r#"{"host": "db-1", "stats": {"cpu_seconds": 12.5, "mem-bytes": 2048, "open_fds": 40, "jsonbridge_up": 1, "9lives": 9, "static_one": 5}}"#;
    let doc: Value = serde_json::from_str(body).unwrap();
    let specs = blocks(
        r#"      - name: "app_{key}"
        help: From the stats map.
        each: "$.stats.{key}"
        labels: {host: "{$.host}"}
        value: "@"
      - name: "{key}"
        help: Names as they come.
        each: "$.stats.{key}"
        value: "@"
      - name: "app_{key | replace '-' '_'}_total"
        type: counter
        help: Counted.
        each: "$.stats.{key}"
        value: "@"
      - name: app_static_one
        help: A name of the config's own.
        value: 1
"#,
    );
    let x = run(&doc, &specs);
    let families: Vec<(&str, Vec<f64>)> = x
        .families
        .iter()
        .map(|f| {
            (
                f.family.as_str(),
                f.series.iter().map(|s| s.value).collect(),
            )
        })
        .collect();
    assert_eq!(
        families,
        vec![
            // app_{key}: app_mem-bytes is no metric name, app_static_one the config's own.
            ("app_9lives", vec![9.0]),
            ("app_cpu_seconds", vec![12.5]),
            ("app_jsonbridge_up", vec![1.0]),
            ("app_open_fds", vec![40.0]),
            // {key}: 9lives and mem-bytes are no metric names, jsonbridge_up is reserved.
            ("cpu_seconds", vec![12.5]),
            ("open_fds", vec![40.0]),
            ("static_one", vec![5.0]),
            // A counter: `_total` is the encoder's; the filter makes mem-bytes a name.
            ("app_9lives", vec![9.0]),
            ("app_cpu_seconds", vec![12.5]),
            ("app_jsonbridge_up", vec![1.0]),
            ("app_mem_bytes", vec![2048.0]),
            ("app_open_fds", vec![40.0]),
            ("app_static_one", vec![1.0]),
        ]
    );
    // Each refused name is counted, with the first one's reason.
    let problems: Vec<(&str, &str, u64, &str)> = x
        .problems
        .iter()
        .map(|p| (p.metric.as_str(), p.kind, p.count, p.example.as_str()))
        .collect();
    assert_eq!(
        problems,
        vec![
            (
                "app_{key}",
                "name_invalid",
                2,
                "metric name \"app_mem-bytes\" from the data is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
            ),
            (
                "{key}",
                "name_invalid",
                3,
                "metric name \"9lives\" from the data is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
            ),
            (
                "app_{key | replace '-' '_'}_total",
                "name_invalid",
                1,
                "metric name \"app_static_one_total\" from the data would expose app_static_one, which a metric of the config exposes"
            ),
        ]
    );
    // Labels, and the same from the streaming reader.
    assert_eq!(x.families[0].label_names.to_vec(), vec!["host".to_string()]);
    assert_eq!(
        x.families[0].series[0].labels.to_vec(),
        vec!["db-1".to_string()]
    );
    let mut specs = specs;
    let plan = ReadPlan::new(&mut specs);
    for threads in [Threads::One, Threads::Two] {
        let got = extract_bytes(body.as_bytes(), &specs, &plan, threads).unwrap();
        assert_eq!(all_series(&got), all_series(&x));
        assert_eq!(got.problems, x.problems);
    }
}
