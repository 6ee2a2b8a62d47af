use super::*;
use crate::extract::ValueSpec;

fn env(k: &str) -> Option<String> {
    match k {
        "API_TOKEN" => Some("tok-123".into()),
        "API_HOST" => Some("api.internal".into()),
        _ => None,
    }
}

fn origin() -> Origin {
    Origin {
        name: "test.yaml".into(),
        base_dir: PathBuf::from("/etc/jsonbridge"),
    }
}

fn compile(yaml: &str) -> Result<Config, ConfigError> {
    parse(yaml, &origin(), &env)
}

/// Every diagnostic as `line L column C: path: message`.
fn errors(yaml: &str) -> Vec<String> {
    match compile(yaml) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

const ENERGY: &str = r#"
sources:
  - name: energy
    url: http://${API_HOST}/api/v1/consumption
    schedule: "0 */30 * * * *"
    timeout: 20s
    headers:
      Accept: application/json
      Authorization: Bearer ${API_TOKEN}
    query:
      window: 30m
    metrics:
      - name: pod_energy_consumed
        help: Energy consumed by the pod at the latest time point.
        type: gauge
        each: "$.apps.{app}.{namespace}[*]"
        labels:
          app: "{app}"
          namespace: "{namespace}"
          pod: "{@.name}"
        value: "@.energy_consumed[-1]"
      - name: pod_co2_emitted
        help: CO2 emitted by the pod at the latest time point.
        each: "$.apps.{app}.{namespace}[*]"
        labels: {app: "{app}", namespace: "{namespace}", pod: "{@.name}"}
        value: "@.co2_emitted[-1]"
"#;

#[test]
fn energy_example_compiles() {
    let c = compile(ENERGY).unwrap();
    let s = &c.sources[0];
    assert_eq!(s.name, "energy");
    assert_eq!(s.schedule, Schedule::Cron("0 */30 * * * *".into()));
    assert_eq!(s.request.timeout, Duration::from_secs(20));
    let now = chrono::Utc::now();
    match &s.request.target {
        Target::Http { url, query } => {
            assert_eq!(url.render(now), "http://api.internal/api/v1/consumption");
            assert_eq!(query[0].0, "window");
            assert_eq!(query[0].1.render(now), "30m");
        }
        Target::File(_) => panic!("expected http"),
    }
    let auth = s.request.headers.iter().find(|(k, _)| k == "authorization");
    assert_eq!(auth.unwrap().1.render(now), "Bearer tok-123");
    assert_eq!(
        s.request.display_url,
        "http://${API_HOST}/api/v1/consumption"
    );
    assert_eq!(s.metrics.len(), 2);
    assert_eq!(&*s.metrics[0].label_names, ["app", "namespace", "pod"]);
    assert_eq!(
        c.families
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["pod_co2_emitted", "pod_energy_consumed"]
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let c = compile(ENERGY).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("tok-123"), "{debug}");
    assert!(!debug.contains("api.internal"), "{debug}");
}

#[test]
fn defaults() {
    let c = compile(
        "sources:\n  - name: a\n    url: file://data/a.json\n    metrics:\n      - {name: up, value: 1}\n",
    )
    .unwrap();
    let s = &c.sources[0];
    assert_eq!(s.schedule, Schedule::Every(DEFAULT_EVERY));
    assert_eq!(s.request.timeout, DEFAULT_TIMEOUT);
    assert_eq!(s.request.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(s.request.method, Method::GET);
    assert!(
        s.request.target == Target::File(PathBuf::from("/etc/jsonbridge/data/a.json")),
        "relative file:// paths resolve against the config directory"
    );
    assert!(matches!(s.metrics[0].outputs[0].value, ValueSpec::Constant(v) if v == 1.0));
}

#[test]
fn counters_drop_total_for_the_encoder() {
    let c = compile(
        "sources:\n  - name: a\n    url: file:///x.json\n    metrics:\n      - {name: requests_total, type: counter, value: $.n}\n",
    )
    .unwrap();
    assert_eq!(c.sources[0].metrics[0].outputs[0].family, "requests");
    assert_eq!(c.families[0].name, "requests");
}

#[test]
fn same_metric_in_two_sources_is_one_family() {
    let c = compile(
        r#"
sources:
  - name: eu
    url: file:///eu.json
    metrics: [{name: pods, help: Pods., labels: {cluster: eu}, value: $.n}]
  - name: us
    url: file:///us.json
    metrics: [{name: pods, help: Pods., labels: {cluster: us}, value: $.n}]
"#,
    )
    .unwrap();
    assert_eq!(c.families.len(), 1);
}

/// Each rejected case: the message and where it points.
#[test]
fn rejected_configs_name_the_problem_and_its_line() {
    let cases: &[(&str, &str)] = &[
        // Unknown field (serde): the position of the field.
        (
            "sources:\n  - name: a\n    url: file:///x\n    timout: 5s\n    metrics: [{name: m, value: 1}]\n",
            "line 4 column 5: sources[0].timout: unknown field `timout` (did you mean `timeout`?)",
        ),
        // Wrong type (serde).
        (
            "sources:\n  - name: a\n    url: file:///x\n    max_body_bytes: lots\n    metrics: [{name: m, value: 1}]\n",
            "line 4 column 21: sources[0].max_body_bytes: invalid type: string \"lots\", expected u64",
        ),
        // Bad cron: 5 fields.
        (
            "sources:\n  - name: a\n    url: file:///x\n    schedule: \"*/5 * * * *\"\n    metrics: [{name: m, value: 1}]\n",
            "line 4 column 15: sources[0].schedule: cron \"*/5 * * * *\" has 5 fields; jsonbridge's cron starts with seconds (6 fields): \"0 */5 * * * *\"",
        ),
        // Bad cron: nonsense.
        (
            "sources:\n  - name: a\n    url: file:///x\n    schedule: \"0 61 * * * *\"\n    metrics: [{name: m, value: 1}]\n",
            "line 4 column 15: sources[0].schedule: invalid cron \"0 61 * * * *\"",
        ),
        // Both schedule and every.
        (
            "sources:\n  - name: a\n    url: file:///x\n    schedule: \"0 * * * * *\"\n    every: 1m\n    metrics: [{name: m, value: 1}]\n",
            "line 5 column 12: sources[0].every: set either `schedule` (cron) or `every` (interval), not both",
        ),
        // Bad JSONPath in each.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: m\n        each: \"$.apps[\"\n        value: 1\n",
            "line 6 column 15: sources[0].metrics[0].each: invalid JSONPath \"$.apps[\"",
        ),
        // Bad JSONPath in value.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: m\n        value: \"@.x[?\"\n",
            "line 6 column 16: sources[0].metrics[0].value: invalid JSONPath \"@.x[?\"",
        ),
        // Value that is neither number nor path.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: m\n        value: energy\n",
            "line 6 column 16: sources[0].metrics[0].value: \"energy\" is not a JSONPath: start it with @",
        ),
        // Invalid metric name.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: pod-energy\n        value: 1\n",
            "line 5 column 15: sources[0].metrics[0].name: invalid metric name \"pod-energy\"",
        ),
        // Reserved prefix.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: jsonbridge_up\n        value: 1\n",
            "line 5 column 15: sources[0].metrics[0].name: metric names starting with jsonbridge_ are reserved",
        ),
        // Invalid label name.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: m\n        labels:\n          pod-name: x\n        value: 1\n",
            "line 7 column 21: sources[0].metrics[0].labels.pod-name: invalid label name \"pod-name\"",
        ),
        // Unknown capture.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - name: m\n        each: $.apps.{app}[*]\n        labels: {ns: \"{namespace}\"}\n        value: 1\n",
            "line 7 column 22: sources[0].metrics[0].labels.ns: unknown capture {namespace}: `each` declares {app}",
        ),
        // Duplicate source names.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics: [{name: m, value: 1}]\n  - name: a\n    url: file:///y\n    metrics: [{name: n, value: 1}]\n",
            "line 5 column 11: sources[1].name: duplicate source name \"a\" (also sources[0])",
        ),
        // Metric defined twice in one source.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - {name: m, value: 1}\n      - {name: m, value: 2}\n",
            "line 6 column 16: sources[0].metrics[1].name: metric m is defined twice in this source (also metrics[0])",
        ),
        // Same name, different type across sources.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics: [{name: m, value: 1}]\n  - name: b\n    url: file:///y\n    metrics: [{name: m, type: counter, value: 1}]\n",
            "line 7 column 31: sources[1].metrics[0].type: metric m is a counter here but a gauge at sources[0].metrics[0]",
        ),
        // A gauge clashing with a counter's _total series.
        (
            "sources:\n  - name: a\n    url: file:///x\n    metrics:\n      - {name: jobs, type: counter, value: 1}\n      - {name: jobs_total, value: 1}\n",
            "line 6 column 16: sources[0].metrics[1].name: metric jobs_total clashes with metric jobs at sources[0].metrics[0]: both would expose jobs_total",
        ),
        // Missing env var (the name, never a value).
        (
            "sources:\n  - name: a\n    url: http://${NOT_SET_ANYWHERE}/x\n    metrics: [{name: m, value: 1}]\n",
            "line 3 column 10: sources[0].url: environment variable NOT_SET_ANYWHERE is not set",
        ),
        // Bad duration.
        (
            "sources:\n  - name: a\n    url: file:///x\n    timeout: 30\n    metrics: [{name: m, value: 1}]\n",
            "line 4 column 14: sources[0].timeout: duration \"30\" has no unit",
        ),
        // Unsupported scheme.
        (
            "sources:\n  - name: a\n    url: ftp://host/x\n    metrics: [{name: m, value: 1}]\n",
            "line 3 column 10: sources[0].url: unsupported URL scheme \"ftp\"",
        ),
        // Missing required field (serde).
        (
            "sources:\n  - name: a\n    metrics: [{name: m, value: 1}]\n",
            "sources[0]: missing field `url`",
        ),
        // No metrics.
        (
            "sources:\n  - name: a\n    url: file:///x\n",
            "line 2 column 5: sources[0].metrics: a source needs at least one metric",
        ),
        // Broken YAML.
        (
            "sources:\n  - name: a\n    url: 'unterminated\n",
            "line 4 column 1: found unexpected end of stream at line 4 column 1, while scanning a quoted scalar",
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(yaml);
        assert!(
            got.iter().any(|e| e.contains(want)),
            "want {want:?}\n got {got:#?}\nfor\n{yaml}"
        );
    }
}

#[test]
fn every_error_is_listed_not_just_the_first() {
    let yaml = r#"
sources:
  - name: a
    url: ftp://x
    every: 5
    metrics:
      - {name: 1bad, value: 1}
      - {name: ok, each: "$[", value: 1}
  - name: a
    url: file:///y
    metrics: [{name: m, labels: {__x: y}, value: 1}]
"#;
    let got = errors(yaml);
    assert_eq!(got.len(), 6, "{got:#?}");
    let e = compile(yaml).unwrap_err().to_string();
    assert!(e.starts_with("6 errors in test.yaml:\n  line "), "{e}");
}

#[test]
fn empty_file_is_a_clear_error() {
    assert_eq!(
        errors("  \n"),
        vec!["the file is empty (expected a `sources:` list)".to_string()]
    );
}

#[test]
fn reload_comparison_sees_env_and_metric_changes() {
    let a = compile(ENERGY).unwrap();
    let b = compile(ENERGY).unwrap();
    assert!(a.sources[0].same_as(&b.sources[0]));
    let changed = ENERGY.replace("timeout: 20s", "timeout: 21s");
    let c = compile(&changed).unwrap();
    assert!(!a.sources[0].same_as(&c.sources[0]));
    let other_env = parse(ENERGY, &origin(), &|k| {
        (k == "API_HOST" || k == "API_TOKEN").then(|| "other".to_string())
    })
    .unwrap();
    assert!(!a.sources[0].same_as(&other_env.sources[0]));
}

#[test]
fn userinfo_is_removed_from_the_display_url() {
    assert_eq!(
        display_url("https://user:pw@host:8080/x?y=1"),
        "https://***@host:8080/x?y=1"
    );
    assert_eq!(display_url("http://host/a@b"), "http://host/a@b");
}

#[test]
fn unknown_fields_are_all_listed_with_suggestions() {
    let yaml = "sources:\n  - name: a\n    url: file:///x\n    timout: 5s\n    metrics:\n      - name: m\n        lables: {a: b}\n        value: 1\n        colour: red\n  - name: b\n    urll: http://x\n    metrics: [{name: n, value: 1}]\n";
    let got = errors(yaml);
    assert_eq!(
        got,
        vec![
            "line 4 column 5: sources[0].timout: unknown field `timout` (did you mean `timeout`?)",
            "line 7 column 9: sources[0].metrics[0].lables: unknown field `lables` (did you mean `labels`?)",
            "line 9 column 9: sources[0].metrics[0].colour: unknown field `colour`, expected one of: name, help, type, each, labels, value, values, mapping, default, scale, states, state_label, on_duplicate, aggregate, fill, timestamp, timestamp_format",
            "line 11 column 5: sources[1].urll: unknown field `urll` (did you mean `url`?)",
            "line 10 column 5: sources[1]: missing field `url`",
        ],
    );
}

#[test]
fn unknown_fields_come_with_validation_errors() {
    let yaml = "sources:\n  - name: a\n    url: file:///x\n    evry: 5m\n    metrics: [{name: bad-name, value: 1}]\n";
    let got = errors(yaml);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].contains("unknown field `evry` (did you mean `every`?)"));
    assert!(got[1].contains("invalid metric name \"bad-name\""));
}

#[test]
fn extraction_language_errors_name_the_problem_and_its_line() {
    let cases: &[(&str, &str)] = &[
        (
            "      - {name: m, values: {a: 1}}\n",
            "line 5 column 28: sources[0].metrics[0].values: with `values`, each entry is one metric",
        ),
        (
            "      - {labels: {a: b}}\n",
            "sources[0].metrics[0]: a metric needs `name` and `value`, or `values`",
        ),
        (
            "      - {name: m}\n",
            "sources[0].metrics[0]: missing field `value`",
        ),
        (
            "      - {name: m, type: stateset, value: $.s}\n",
            "sources[0].metrics[0].states: a stateset needs `states`",
        ),
        (
            "      - {name: m, type: stateset, states: [a, a], value: $.s}\n",
            "sources[0].metrics[0].states: state \"a\" is listed twice",
        ),
        (
            "      - {name: m, type: stateset, states: [a], labels: {state: x}, value: $.s}\n",
            "sources[0].metrics[0].state_label: the state label \"state\" is also a label of the block",
        ),
        (
            "      - {name: m, type: stateset, states: [a], value: 1}\n",
            "sources[0].metrics[0].value: a stateset's value must be a JSONPath",
        ),
        (
            "      - {name: m, type: stateset, states: [a], value: $.s, scale: 2}\n",
            "sources[0].metrics[0].scale: `scale` does not apply to a stateset",
        ),
        (
            "      - {name: m, states: [a], value: $.s}\n",
            "sources[0].metrics[0].states: `states` applies to `type: stateset` only",
        ),
        (
            "      - {name: m, value: $.s, timestamp_format: unix}\n",
            "sources[0].metrics[0].timestamp_format: `timestamp_format` needs `timestamp`",
        ),
        (
            "      - {name: m, value: $.s, timestamp: \"@.t[\"}\n",
            "sources[0].metrics[0].timestamp: invalid JSONPath",
        ),
        (
            "      - {name: m, value: $.s, on_duplicate: keep}\n",
            "unknown variant `keep`, expected one of `first`, `last`, `sum`, `min`, `max`, `count`, `error`",
        ),
        (
            "      - {name: m, each: \"$.a[{pod}]\", labels: {x: \"{pood.name}\"}, value: 1}\n",
            "unknown capture {pood.name}: `each` declares {pod}",
        ),
        (
            "      - {name: m, value: \"count(@.x[)\"}\n",
            "sources[0].metrics[0].value: invalid JSONPath \"@.x[\"",
        ),
        (
            "      - each: $[*]\n        values: {a: \"@.x\", b: {value: \"@.y\", type: counter, colour: red}}\n",
            "sources[0].metrics[0].values.b.colour: unknown field `colour`, expected one of: value, help, type",
        ),
        (
            "      - {name: m, labels: {x: \"{@.a | shout}\"}, value: 1}\n",
            "line 5 column 31: sources[0].metrics[0].labels.x: unknown filter `shout` (filters: lower, upper, trim, replace, regex, default, optional, time, scale)",
        ),
        (
            "      - {name: m, labels: {x: \"{@.a | regex '(unclosed'}\"}, value: 1}\n",
            "line 5 column 31: sources[0].metrics[0].labels.x: filter `regex`: invalid pattern: regex parse error",
        ),
        (
            "      - {name: m, value: \"@.t | time '%Q'\"}\n",
            "line 5 column 26: sources[0].metrics[0].value: filter `time`: invalid strftime pattern \"%Q\"",
        ),
        (
            "      - {name: m, value: \"@.t | optional\"}\n",
            "sources[0].metrics[0].value: filter `optional` applies to labels",
        ),
        (
            "      - {name: m, value: \"@.t\", fill: {phase: [a]}}\n",
            "sources[0].metrics[0].fill: `fill` needs `aggregate: count` or `aggregate: sum`",
        ),
        (
            "      - {name: m, aggregate: count, labels: {p: \"{@.p}\"}, fill: {phase: [a]}}\n",
            "sources[0].metrics[0].fill.phase: phase is not a label of this block",
        ),
        (
            "      - {name: m, aggregate: count, labels: {p: \"{@.p}\"}, fill: {p: [a, a]}}\n",
            "sources[0].metrics[0].fill.p: \"a\" is listed twice",
        ),
        (
            "      - {name: m, aggregate: sum, value: 1, on_duplicate: sum}\n",
            "sources[0].metrics[0].on_duplicate: with `aggregate`, items with the same labels are grouped",
        ),
        (
            "      - {name: m, aggregate: sum, type: counter, value: 1}\n",
            "sources[0].metrics[0].aggregate: `aggregate` makes gauges (or untyped metrics); m is a counter",
        ),
        (
            "      - {name: m, aggregate: sum}\n",
            "sources[0].metrics[0]: missing field `value`",
        ),
        (
            "      - {name: a, value: 1}\n      - {values: {a: 2}}\n",
            "sources[0].metrics[1].values.a: metric a is defined twice in this source (also metrics[0])",
        ),
    ];
    for (metrics, want) in cases {
        let yaml = format!(
            "sources:\n  - name: s\n    url: http://h/{{now - 5m}}\n    metrics:\n{metrics}"
        );
        let got = errors(&yaml);
        assert!(
            got.iter().any(|e| e.contains(want)),
            "want {want:?}\n got {got:#?}\nfor\n{yaml}"
        );
    }
}

#[test]
fn request_template_and_secret_file_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "    query: {from: \"{now - 30}\"}\n",
            "sources[0].query.from: in {now - 30}: duration \"30\" has no unit",
        ),
        (
            "    headers: {X-From: \"{now | iso}\"}\n",
            "sources[0].headers.X-From: in {now | iso}: unknown format \"iso\"",
        ),
        (
            "    bearer_token: a\n    bearer_token_file: b\n",
            "sources[0].bearer_token_file: set either bearer_token or bearer_token_file, not both",
        ),
        (
            "    basic_auth: {username: u, password: p, password_file: f}\n",
            "sources[0].basic_auth.password_file: set either password or password_file, not both",
        ),
    ];
    for (extra, want) in cases {
        let yaml = format!(
            "sources:\n  - name: s\n    url: http://h/x\n{extra}    metrics: [{{name: m, value: 1}}]\n"
        );
        let got = errors(&yaml);
        assert!(
            got.iter().any(|e| e.contains(want)),
            "want {want:?}\n got {got:#?}\nfor\n{yaml}"
        );
    }
    // Secret files resolve against the config directory and are read at poll time, not here.
    let c = compile(
        "sources:\n  - name: s\n    url: http://h/x\n    bearer_token_file: secrets/token\n    metrics: [{name: m, value: 1}]\n",
    )
    .unwrap();
    assert_eq!(
        c.sources[0].request.auth,
        Some(Auth::Bearer(Secret::File(PathBuf::from(
            "/etc/jsonbridge/secrets/token"
        ))))
    );
}

#[test]
fn shards_split_sources_exactly_once() {
    for bad in ["3", "1/0", "2/2", "a/3", "-1/3"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
    let mut per_shard = [0usize; 3];
    for n in 0..1000 {
        let name = format!("source-{n}");
        let owners: Vec<usize> = (0..3).filter(|&i| shards[i].owns(&name)).collect();
        assert_eq!(owners.len(), 1, "{name}");
        per_shard[owners[0]] += 1;
    }
    // A stable hash spreads names roughly evenly.
    assert!(per_shard.iter().all(|&n| n > 250), "{per_shard:?}");
    let one: Shard = "0/1".parse().unwrap();
    assert!(one.owns("anything"));
    // A StatefulSet pod's name gives its ordinal.
    for (text, index) in [("jsonbridge-2/3", 2), ("energy-exporter-b-0/4", 0)] {
        assert_eq!(text.parse::<Shard>().unwrap().index, index, "{text}");
    }
    for bad in ["jsonbridge-3/3", "jsonbridge/3", "jsonbridge-x/3"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
}

#[test]
fn rendezvous_shards_move_few_sources_when_one_is_added() {
    let names: Vec<String> = (0..10_000).map(|n| format!("source-{n}")).collect();
    for count in [2u32, 4, 8] {
        let before: Vec<u32> = names.iter().map(|n| owner(n, count)).collect();
        let after: Vec<u32> = names.iter().map(|n| owner(n, count + 1)).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Only to the new shard, and about 1/(N+1) of them (`hash % N` moves most).
        assert!(
            before
                .iter()
                .zip(&after)
                .all(|(a, b)| a == b || *b == count)
        );
        let share = moved as f64 / names.len() as f64;
        let want = 1.0 / f64::from(count + 1);
        assert!(
            (share - want).abs() < 0.03,
            "{count}->{}: {share}",
            count + 1
        );
        let mut per = vec![0usize; count as usize];
        for o in &before {
            per[*o as usize] += 1;
        }
        let mean = names.len() / count as usize;
        assert!(
            per.iter().all(|&n| n.abs_diff(mean) < mean / 10),
            "{count}: {per:?}"
        );
    }
}

#[test]
fn a_config_must_declare_something_unless_it_says_so() {
    for text in [
        "# only a comment\n",
        "sources:\n",
        "sources:\nmodules:\n",
        "modules: []\n",
        "probe:\n  allow_targets: []\n",
    ] {
        let errs = errors(text);
        assert!(
            errs.iter()
                .any(|e| e.contains("declares no source and no module")),
            "{text:?}: {errs:?}"
        );
    }
    let c = compile("sources: []\n").unwrap();
    assert!(c.sources.is_empty());
}

#[test]
fn nesting_is_limited_before_any_recursive_pass() {
    let block = format!("sources:\n{}x\n", "- ".repeat(5_000));
    let flow = format!("sources: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let maps = format!(
        "sources:\n{}",
        (0..2_000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>()
    );
    // A small stack: a pass that recursed once per level would overflow it.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            [block, flow, maps]
                .iter()
                .map(|t| errors(t).join("\n"))
                .collect::<Vec<_>>()
        })
        .unwrap();
    for e in handle.join().expect("no stack overflow") {
        assert!(e.contains("nests deeper than 64 levels"), "{e}");
    }
    // 64 levels are fine as far as nesting goes (the content is then judged as usual).
    let ok = format!("sources: {}{}\n", "[".repeat(63), "]".repeat(63));
    assert!(!errors(&ok).join("\n").contains("nests deeper"));
}

#[test]
fn the_locator_keeps_one_entry_per_node_not_a_path_each() {
    // Long keys at every level: with one path string per node, memory would grow with the
    // square of the depth times the key length.
    // (An implicit YAML key may hold up to 1024 characters.)
    let key = "k".repeat(1_000);
    let mut text = String::new();
    for depth in 0..60 {
        text.push_str(&" ".repeat(depth));
        text.push_str(&key);
        text.push_str(":\n");
    }
    let loc = Locator::new(&text).unwrap();
    let path: Vec<&str> = std::iter::repeat_n(key.as_str(), 3).collect();
    // The value of the third key is the mapping that starts at the fourth.
    assert_eq!(loc.find(&path.join(".")).map(|p| p.line), Some(4));
    assert_eq!(loc.find_key(&path.join(".")).map(|p| p.line), Some(3));
    assert_eq!(loc.nodes.len(), 61);
    let stored: usize = loc.children.keys().map(|(_, k)| k.len()).sum();
    assert_eq!(stored, 60 * 1_000);
}

#[test]
fn cron_day_of_month_and_day_of_week_both_match_in_utc() {
    use std::time::{Duration, UNIX_EPOCH};
    let at = |s: &str| -> std::time::SystemTime {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
            .into()
    };
    // Friday the 13th at 06:00 UTC: in 2026 the first is in February. Classic cron (either
    // field matching) would fire on Friday 2 January or on Tuesday 13 January.
    let friday_13th = Schedule::Cron("0 0 6 13 * Fri".into());
    assert_eq!(
        friday_13th.next_poll(None, at("2026-01-01T00:00:00Z")),
        Some(at("2026-02-13T06:00:00Z"))
    );
    // UTC, whatever the machine's zone: 06:00 is 06:00Z.
    let daily = Schedule::Cron("0 0 6 * * *".into());
    assert_eq!(
        daily.next_poll(None, at("2026-03-29T05:59:59Z")),
        Some(at("2026-03-29T06:00:00Z"))
    );
    // An interval counts from the last poll, never into the past.
    let every = Schedule::Every(Duration::from_secs(60));
    let last = UNIX_EPOCH + Duration::from_secs(1_000);
    assert_eq!(
        every.next_poll(Some(last), last),
        Some(last + Duration::from_secs(60))
    );
    assert_eq!(
        every.next_poll(Some(last), last + Duration::from_secs(600)),
        Some(last + Duration::from_secs(600))
    );
}

#[test]
fn status_codes_are_checked_and_default_to_any_2xx() {
    let src = |extra: &str| {
        format!(
            "sources:\n  - name: a\n    url: http://h/x\n{extra}    metrics: [{{name: m, value: 1}}]\n"
        )
    };
    let c = compile(&src("")).unwrap();
    let r = &c.sources[0].request;
    assert!(r.accepts(200) && r.accepts(204) && r.accepts(299));
    assert!(!r.accepts(199) && !r.accepts(300) && !r.accepts(503));
    assert!(r.follow_redirects && r.http2);
    let c = compile(&src(
        "    valid_status_codes: [200, 503]\n    follow_redirects: false\n    enable_http2: false\n",
    ))
    .unwrap();
    let r = &c.sources[0].request;
    assert!(r.accepts(503) && r.accepts(200) && !r.accepts(204));
    assert!(!r.follow_redirects && !r.http2);
    assert_eq!(
        errors(&src("    valid_status_codes: [200, 99, 600]\n")),
        [
            "line 4 column 31: sources[0].valid_status_codes[1]: 99 is not an HTTP status (100 to 599)",
            "line 4 column 35: sources[0].valid_status_codes[2]: 600 is not an HTTP status (100 to 599)",
        ]
    );
    assert_eq!(
        errors(&src("    valid_status_codes: []\n")),
        [
            "line 4 column 25: sources[0].valid_status_codes: an empty list accepts no response; leave it out for any 2xx"
        ]
    );
}

#[test]
fn proxies_are_checked_and_their_credentials_hidden() {
    let src = |extra: &str| {
        format!(
            "sources:\n  - name: a\n    url: http://h/x\n{extra}    metrics: [{{name: m, value: 1}}]\n"
        )
    };
    let c = compile(&src("")).unwrap();
    assert!(matches!(c.sources[0].request.proxy, Proxying::Environment));
    let c = compile(&src("    proxy_from_environment: false\n")).unwrap();
    assert!(matches!(c.sources[0].request.proxy, Proxying::Direct));
    let c = compile(&src(
        "    proxy_url: http://u:${API_TOKEN}@proxy:3128\n    no_proxy: internal,10.0.0.0/8\n",
    ))
    .unwrap();
    let r = &c.sources[0].request;
    match &r.proxy {
        Proxying::Proxy {
            url,
            no_proxy,
            display,
        } => {
            assert_eq!(url.password(), Some("tok-123"));
            assert_eq!(display, "http://***@proxy:3128");
            assert_eq!(no_proxy.as_deref(), Some("internal,10.0.0.0/8"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{r:?}").contains("tok-123"));
    let e = errors(&src("    proxy_url: socks5://proxy:1080\n"));
    assert!(
        e[0].contains("proxy_url: a proxy is http:// or https:// with a host (not socks5:)"),
        "{e:?}"
    );
    let e = errors(&src("    proxy_url: \"http://u:pw@\"\n"));
    assert!(
        e[0].contains("proxy_url: not a URL") && !e[0].contains("pw"),
        "{e:?}"
    );
    let e = errors(&src("    no_proxy: internal\n"));
    assert!(
        e[0].contains("no_proxy applies to proxy_url, which is not set"),
        "{e:?}"
    );
}

#[test]
fn tls_settings_are_checked_and_resolved_against_the_config_dir() {
    let src = |url: &str, extra: &str| {
        format!(
            "sources:\n  - name: a\n    url: {url}\n{extra}    metrics: [{{name: m, help: M., value: 1}}]\n"
        )
    };
    let c = compile(&src(
        "https://h/x",
        "    tls:\n      ca_file: ca.pem\n      cert_file: c.pem\n      key_file: /abs/k.pem\n      server_name: api.internal\n      min_version: TLS13\n",
    ))
    .unwrap();
    let t = c.sources[0].request.tls.as_ref().unwrap();
    assert_eq!(
        t.ca_file.as_deref(),
        Some(Path::new("/etc/jsonbridge/ca.pem"))
    );
    assert!(
        !t.system_roots,
        "ca_file replaces the system roots by default"
    );
    assert_eq!(
        t.client,
        Some((
            PathBuf::from("/etc/jsonbridge/c.pem"),
            PathBuf::from("/abs/k.pem")
        ))
    );
    assert_eq!(t.min_version, TlsVersion::Tls13);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = compile(&src(
        "https://h/x",
        "    tls: {ca_file: ca.pem, system_roots: true}\n",
    ))
    .unwrap();
    assert!(c.sources[0].request.tls.as_ref().unwrap().system_roots);
    let c = compile(&src(
        "http://h/x",
        "    tls: {insecure_skip_verify: true}\n",
    ))
    .unwrap();
    let w: Vec<String> = c.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        [
            "line 4 column 33: sources[0].tls.insecure_skip_verify: the upstream's certificate is not verified: anyone on the path can read and change what is fetched",
            "line 4 column 11: sources[0].tls: tls applies to https:// URLs only, and this one is http://",
        ]
    );
    assert_eq!(
        errors(&src(
            "https://h/x",
            "    tls:\n      cert_file: c.pem\n      server_name: \"not a name\"\n      min_version: TLS11\n      system_roots: false\n"
        )),
        [
            "line 8 column 21: sources[0].tls.system_roots: with system_roots: false and no ca_file, no certificate can be trusted",
            "line 5 column 18: sources[0].tls.cert_file: cert_file needs key_file",
            "line 6 column 20: sources[0].tls.server_name: \"not a name\" is not a DNS name or an IP address",
            "line 7 column 20: sources[0].tls.min_version: TLS11 is not offered: TLS 1.0 and 1.1 are obsolete (use TLS12 or TLS13)",
        ]
    );
    let e = errors(&src("https://h/x", "    tls: {ca_fiel: x}\n"));
    assert!(
        e[0].contains("unknown field `ca_fiel` (did you mean `ca_file`?)"),
        "{e:?}"
    );
}

#[test]
fn oauth2_is_checked_and_its_secrets_hidden() {
    let src = |extra: &str| {
        format!(
            "sources:\n  - name: a\n    url: https://h/x\n{extra}    metrics: [{{name: m, help: M., value: 1}}]\n"
        )
    };
    let c = compile(&src(
        "    oauth2:\n      client_id: jb\n      client_secret: ${API_TOKEN}\n      token_url: https://${API_HOST}/token\n      scopes: [read]\n      endpoint_params: {audience: x}\n      tls: {ca_file: auth-ca.pem}\n      proxy_url: http://proxy:3128\n",
    ))
    .unwrap();
    let r = &c.sources[0].request;
    let Some(Auth::OAuth2(o)) = &r.auth else {
        panic!("{r:?}")
    };
    assert_eq!(o.token_url.as_str(), "https://api.internal/token");
    assert_eq!(o.display_token_url, "https://${API_HOST}/token");
    assert_eq!(o.client_secret, Secret::Value("tok-123".into()));
    assert_eq!(
        o.tls.as_ref().unwrap().ca_file.as_deref(),
        Some(Path::new("/etc/jsonbridge/auth-ca.pem"))
    );
    assert!(matches!(o.proxy, Proxying::Proxy { .. }));
    assert!(!format!("{r:?}").contains("tok-123"));
    assert_eq!(
        errors(&src(
            "    bearer_token: t\n    oauth2:\n      client_id: jb\n      token_url: ftp://x/\n      endpoint_params: {grant_type: password}\n      scopes: [\"a b\"]\n"
        )),
        [
            "line 6 column 7: sources[0].oauth2: use one of basic_auth, a bearer token and oauth2, not several",
            "line 6 column 7: sources[0].oauth2.client_secret: the client credentials grant needs client_secret or client_secret_file",
            "line 7 column 18: sources[0].oauth2.token_url: the token URL must be http:// or https:// with a host",
            "line 8 column 37: sources[0].oauth2.endpoint_params.grant_type: grant_type is set by jsonbridge (use the oauth2 fields for it)",
            "line 9 column 16: sources[0].oauth2.scopes[0]: a scope is one non-empty word (the list is joined with spaces)",
        ]
    );
}

#[test]
fn paginate_errors_name_the_field() {
    for (paginate, want) in [
        (
            "{}",
            "sources[0].paginate: say how to reach the next page: next_url, next_link, cursor, page_param or offset_param",
        ),
        (
            "{next_url: $.next, cursor: $.c}",
            "sources[0].paginate: set one way to the next page, not next_url and cursor",
        ),
        (
            "{next_url: next}",
            "sources[0].paginate.next_url: \"next\": start the JSONPath at the page's root ($)",
        ),
        (
            "{cursor: \"$.c[\"}",
            "sources[0].paginate.cursor: invalid JSONPath",
        ),
        (
            "{offset_param: offset}",
            "sources[0].paginate.page_size: offset_param needs page_size",
        ),
        (
            "{page_param: page, page_size: 10}",
            "sources[0].paginate.size_param: page_size needs size_param",
        ),
        (
            "{page_param: page, size_param: per_page}",
            "sources[0].paginate.page_size: size_param needs page_size",
        ),
        (
            "{next_url: $.next, total: $.total}",
            "sources[0].paginate.total: `total` does not apply to next_url",
        ),
        (
            "{next_url: $.next, first_page: 0}",
            "sources[0].paginate.first_page: `first_page` does not apply to next_url",
        ),
        (
            "{next_url: $.next, max_pages: 0}",
            "sources[0].paginate.max_pages: max_pages must be more than 0",
        ),
        (
            "{next_url: $.next, pages: 3}",
            "sources[0].paginate.pages: unknown field `pages`",
        ),
        (
            "{cursor: $.c, items: $.items}",
            "sources[0].paginate.items: `items` does not apply to cursor",
        ),
    ] {
        let yaml = format!(
            "sources:\n  - name: s\n    url: http://h/x\n    paginate: {paginate}\n    metrics: [{{name: m, help: M., value: 1}}]\n"
        );
        let got = errors(&yaml);
        assert!(
            got.iter().any(|e| e.contains(want)),
            "want {want:?}\n got {got:#?}"
        );
    }
    // Valid: each style alone.
    for paginate in [
        "{next_url: $.links.next}",
        "{next_link: true, max_pages: 500}",
        "{cursor: $.meta.next, cursor_param: after, has_more: $.more}",
        "{page_param: page, first_page: 0, page_size: 50, size_param: per_page, total: $.total}",
        "{offset_param: offset, page_size: 100, size_param: limit, has_more: $.has_more}",
        "{page_param: p, items: $.data.list}",
    ] {
        let yaml = format!(
            "sources:\n  - name: s\n    url: http://h/x\n    paginate: {paginate}\n    metrics: [{{name: m, help: M., value: 1}}]\n"
        );
        if let Err(e) = compile(&yaml) {
            panic!("{paginate}: {e}");
        }
    }
}
