//! `jsonbridge test`, `check` lints and `--strict`, `schema`, and what they never print.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
}

/// Writes `text` as `c.yaml` in a new temp dir.
fn temp_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, text).unwrap();
    (dir, cfg)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every YAML config of the repository: the default, the examples and the fixtures.
fn all_configs() -> Vec<PathBuf> {
    let mut out = vec![root().join("config/jsonbridge.yaml")];
    for dir in ["examples", "tests/fixtures/configs"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && p.join("jsonbridge.yaml").exists() {
                out.push(p.join("jsonbridge.yaml"));
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_committed_schema_is_current() {
    let out = bin().arg("schema").output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(root().join("schema/jsonbridge.schema.json")).unwrap();
    // Not assert_eq: the whole schema twice would bury the message.
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "schema/jsonbridge.schema.json is stale: run `cargo run -- schema > schema/jsonbridge.schema.json`"
    );
}

#[test]
fn every_bundled_config_validates_against_the_schema_and_typos_do_not() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/jsonbridge.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for path in all_configs() {
        let doc: serde_json::Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    for bad in [
        "sources: [{name: a, url: 'file:///x', timout: 5s, metrics: [{name: m, value: 1}]}]",
        "sources: [{name: a, url: 'file:///x', metrics: [{name: m, value: 1, type: histogram}]}]",
        "sources: [{name: a, url: 'file:///x', metrics: [{values: {m: {value: 1, colour: red}}}]}]",
        "sources: [{name: a, metrics: []}]",
    ] {
        let doc: serde_json::Value = serde_norway::from_str(bad).unwrap();
        assert!(!validator.is_valid(&doc), "schema accepted {bad}");
    }
}

#[test]
fn examples_point_editors_at_the_schema() {
    for path in all_configs()
        .iter()
        .filter(|p| !p.starts_with(root().join("tests")))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let first = text.lines().next().unwrap();
        let schema = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line is {first:?}", path.display()));
        assert!(
            path.parent().unwrap().join(schema).exists(),
            "{}: {schema} does not exist",
            path.display()
        );
    }
}

#[test]
fn test_subcommand_prints_exposition_and_explains_skips() {
    let out = bin()
        .args([
            "test",
            "tests/fixtures/configs/bad-items.yaml",
            "--input",
            "tests/fixtures/responses/bad-items.json",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stdout,
        std::fs::read_to_string(root().join("tests/fixtures/expected/bad-items.prom")).unwrap(),
        "stdout is exactly what /metrics would serve"
    );
    let want = "source pods: 2 series from 1 metric (read: streamed, items read into slots)
  pod_cpu_cores  8 items matched, 2 series, 5 items skipped
      duplicate_series x1: 2 items produced the series {pod=\"ok\"}; the first one is kept
      label_missing x1: item #5: label pod: @.name not found
      label_not_scalar x1: item #6: label pod: @.name is an object, not a string, number or boolean
      value_missing x1: item #4: value @.cpu not found
      value_not_numeric x1: item #3: value @.cpu is not numeric: \"N/A\"
      value_null x1: item #2: value @.cpu is null
";
    assert_eq!(stderr, want);
}

#[test]
fn test_subcommand_points_at_selectors_that_match_nothing() {
    let (dir, cfg) = temp_config(
        "sources:\n  - name: a\n    url: http://x\n    metrics:\n      - {name: m, help: M., each: \"$.item[*]\", value: \"@.v\"}\n  - name: b\n    url: http://y\n    metrics: [{name: n, help: N., value: 1}]\n",
    );
    let input = dir.path().join("r.json");
    std::fs::write(&input, r#"{"items": [{"v": 1}]}"#).unwrap();
    // Two sources: --source is required.
    let out = bin()
        .arg("test")
        .arg(&cfg)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the config has 2 sources (a, b): choose one with --source")
    );
    let out = bin()
        .arg("test")
        .arg(&cfg)
        .args(["--source", "a", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("m  0 items matched, 0 series  <- `each` matched nothing"),
        "{stderr}"
    );
    // Invalid JSON input is a clear error.
    std::fs::write(&input, "{\"items\": [").unwrap();
    let out = bin()
        .arg("test")
        .arg(&cfg)
        .args(["--source", "a", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("source a: the input cannot be used: invalid JSON: EOF while parsing")
    );
}

/// `jsonbridge test` and a live poll of the same body follow one rule: where the poll fails
/// (`no_series`, invalid JSON, `on_duplicate: error`), `test` exits 1; where it succeeds, 0.
#[tokio::test]
async fn test_exit_codes_agree_with_live_polls_of_the_same_body() {
    let metrics = "      - {name: m, help: M., each: \"$.items[*]\", labels: {k: \"{@.k}\"}, value: \"@.v\"}\n      - {name: d, help: D., each: \"$.dups[*]\", labels: {k: \"{@.k}\"}, value: \"@.v\", on_duplicate: error}\n";
    let cases: &[(&str, &str, Option<&str>)] = &[
        // Every item skipped: the upstream sent something, but not what the config expects.
        (
            "every item skipped",
            r#"{"items": [{"k": "a", "v": "n/a"}, {"v": 1}]}"#,
            Some("no_series"),
        ),
        (
            "some items skipped",
            r#"{"items": [{"k": "a", "v": 1}, {"v": 1}]}"#,
            None,
        ),
        // Nothing to skip and nothing found (an empty list is a valid answer).
        ("nothing matched", r#"{"items": []}"#, None),
        ("invalid JSON", r#"{"items": ["#, Some("invalid_json")),
        (
            "a refused duplicate",
            r#"{"items": [{"k": "a", "v": 1}], "dups": [{"k": "x", "v": 1}, {"k": "x", "v": 2}]}"#,
            Some("duplicate_series"),
        ),
    ];
    for (what, body, fails) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("body.json"), body).unwrap();
        let cfg = dir.path().join("c.yaml");
        std::fs::write(
            &cfg,
            format!("sources:\n  - name: s\n    url: file://body.json\n    metrics:\n{metrics}"),
        )
        .unwrap();
        let config = jsonbridge::config::load(&cfg).unwrap();
        let source = &config.sources[0];
        let fetcher = jsonbridge::fetch::Fetcher::new(&source.request).unwrap();
        let live = jsonbridge::schedule::poll_once(&fetcher, source).await;
        assert_eq!(
            live.as_ref().err().map(|e| e.kind()),
            *fails,
            "{what}: the live poll"
        );
        let out = bin()
            .arg("test")
            .arg(&cfg)
            .arg("--input")
            .arg(dir.path().join("body.json"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            fails.is_none(),
            "{what}: `test` exits as the poll ends\n{stderr}"
        );
        if *fails == Some("no_series") {
            assert!(out.stdout.is_empty(), "{what}: no exposition");
            assert!(
                stderr.contains("a live poll of this body fails (no_series): no series: every item was skipped (label_missing x1 in m, value_not_numeric x1 in m)"),
                "{stderr}"
            );
            assert!(
                stderr.contains("source s: 0 series from 2 metrics"),
                "{stderr}"
            );
            assert!(
                stderr.contains("m  2 items matched, 0 series, 2 items skipped"),
                "{stderr}"
            );
            assert!(stderr.contains("d  0 items matched, 0 series"), "{stderr}");
        }
        if *what == "some items skipped" {
            assert!(
                stderr.contains("m  2 items matched, 1 series, 1 item skipped"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn check_lints_conventions_and_strict_fails_on_them() {
    // The Python exporter's gauge energy_consumed_total, a millisecond unit, camelCase, no help.
    let (_dir, cfg) = temp_config(
        "sources:\n  - name: a\n    url: http://x\n    metrics:\n      - {name: energy_consumed_total, help: E., value: 1}\n      - {name: latency_ms, help: L., value: 1}\n      - {name: podCount, value: 1, labels: {podName: x}}\n      - {name: ok_total, type: counter, help: Fine., value: 1}\n",
    );
    let out = bin().arg("check").arg(&cfg).output().unwrap();
    assert!(out.status.success(), "warnings alone do not fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "warning: line 5 column 16: sources[0].metrics[0].name: gauge energy_consumed_total ends in _total, which is for counters",
        "warning: line 6 column 16: sources[0].metrics[1].name: metric latency_ms: unit ms is not a base unit; Prometheus uses seconds (convert with `scale:`)",
        "warning: line 7 column 16: sources[0].metrics[2].name: metric podCount: use snake_case",
        "warning: line 7 column 16: sources[0].metrics[2].name: metric podCount has no help text",
        "sources[0].metrics[2].labels.podName: label podName: use snake_case",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in\n{stderr}");
    }
    assert!(!stderr.contains("ok_total"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("OK (1 source, 4 metrics, 4 families, 5 warnings)")
    );
    let out = bin()
        .args(["check", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 warnings (--strict)"));
}

#[test]
fn secrets_never_reach_check_or_test_output() {
    let (dir, cfg) = temp_config(
        "sources:\n  - name: a\n    url: https://api/x?key=${PLANTED}\n    headers: {X-Key: \"${PLANTED}\"}\n    basic_auth: {username: u, password: \"${PLANTED}\"}\n    metrics:\n      - {name: m, help: M., value: \"@.v\", each: \"$[*]\", labels: {k: \"{@.k}\"}}\n      - {name: bad-name, value: 1}\n  - name: b\n    url: https://api/y\n    proxy_url: \"http://u:${PLANTED}@proxy:3128\"\n    tls: {insecure_skip_verify: true, cert_file: c.pem, key_file: k.pem}\n    oauth2: {client_id: u, client_secret: \"${PLANTED}\", token_url: \"https://auth/token?k=${PLANTED}\", endpoint_params: {audience: \"${PLANTED}\"}}\n    metrics: [{name: b_m, help: B., value: $.v}]\n",
    );
    let input = dir.path().join("r.json");
    std::fs::write(&input, r#"[{"v": 1, "k": "a"}]"#).unwrap();
    let secret = "pl4nted-s3cret";
    let check = bin()
        .arg("check")
        .arg(&cfg)
        .env("PLANTED", secret)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "bad-name is an error");
    // Fix the error, then run `test`.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("bad-name", "good_name"),
    )
    .unwrap();
    let test = bin()
        .arg("test")
        .arg(&cfg)
        .arg("--source")
        .arg("a")
        .arg("--input")
        .arg(&input)
        .env("PLANTED", secret)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let fixed = bin()
        .arg("check")
        .arg(&cfg)
        .env("PLANTED", secret)
        .output()
        .unwrap();
    let warned = String::from_utf8_lossy(&fixed.stderr).to_string();
    assert!(
        fixed.status.success() && warned.contains("sources[1].tls.insecure_skip_verify"),
        "check warns of insecure_skip_verify:\n{warned}"
    );
    for out in [check, fixed, test] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(secret), "leaked:\n{all}");
    }
}

#[test]
fn check_allow_missing_env_warns_instead_of_failing() {
    let (_dir, cfg) = temp_config(
        "sources:\n  - name: a\n    url: ${JB_TEST_UNSET_URL}\n    bearer_token: ${JB_TEST_UNSET_TOKEN}\n    metrics: [{name: m, help: M., value: 1}]\n  - name: b\n    url: https://${JB_TEST_UNSET_HOST}:8443/v1\n    metrics: [{name: n, help: N., value: 1}]\n",
    );
    // Without the flag: errors, exit 1.
    let out = bin().arg("check").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "line 3 column 10: sources[0].url: environment variable JB_TEST_UNSET_URL is not set"
        ),
        "{stderr}"
    );
    // With it: the same places, as warnings; the rest of the config is still checked.
    let out = bin()
        .args(["check", "--allow-missing-env"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "warning: line 3 column 10: sources[0].url: environment variable JB_TEST_UNSET_URL is not set (checked with a stand-in value: --allow-missing-env)",
        "warning: line 4 column 19: sources[0].bearer_token: environment variable JB_TEST_UNSET_TOKEN is not set",
        "warning: line 7 column 10: sources[1].url: environment variable JB_TEST_UNSET_HOST is not set",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in\n{stderr}");
    }
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("OK (2 sources, 2 metrics, 2 families, 3 warnings)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Real errors still fail.
    let (_dir, bad) = temp_config(
        "sources:\n  - name: a\n    url: ${JB_TEST_UNSET_URL}\n    metrics: [{name: m, value: \"@.x | shout\"}]\n",
    );
    let out = bin()
        .args(["check", "--allow-missing-env"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown filter `shout`"));
}

#[test]
fn check_counts_modules_and_warns_when_no_probe_target_is_allowed() {
    // What import-json-exporter writes without --target.
    let (_dir, cfg) = temp_config(
        "modules:\n  - name: a\n    metrics:\n      - {name: m, help: M., value: 1}\n      - {name: n, help: N., value: 1}\nprobe:\n  allow_targets: []\n",
    );
    let out = bin().arg("check").arg(&cfg).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: line 7 column 18: probe.allow_targets: no target is allowed: every /probe?module=... request will be refused"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("OK (0 sources, 1 module, 2 metrics, 2 families, 1 warning)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bin()
        .args(["check", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// The README's config-language snippet gives, over the example's response, the lines the
/// README says it gives.
#[test]
fn readme_config_language_snippet_gives_what_it_says() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Beyond paths").unwrap()..];
    let block = |fence: &str| {
        let start = section.find(fence).unwrap() + fence.len();
        let end = start + section[start..].find("```").unwrap();
        section[start..end].to_string()
    };
    let yaml = block("```yaml\n");
    let gives = block("gives, among others,\n\n```\n");
    let (dir, cfg) = temp_config(&format!(
        "sources:\n  - name: inventory\n    url: http://inventory.invalid/\n{yaml}"
    ));
    let out = bin()
        .arg("test")
        .arg(&cfg)
        .arg("--input")
        .arg(root().join("examples/pods-by-phase/response.json"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in gives.lines() {
        assert!(
            stdout.lines().any(|l| l == line),
            "README says {line:?}; got\n{stdout}"
        );
    }
}
