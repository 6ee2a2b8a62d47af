//! The whole bridge against a fake upstream on loopback: schedules fire, requests carry what
//! the config says, failures keep the last snapshot, removed items vanish.

use std::time::Duration;

use crate::support::{Bridge, Reply, Upstream, sample, wait_for};

const PODS_AB: &str = r#"{"apps": {"billing": {"prod": [
    {"name": "a", "energy_consumed": [1, 2, 3]},
    {"name": "b", "energy_consumed": [4, 5]}]}}}"#;
const PODS_A: &str = r#"{"apps": {"billing": {"prod": [
    {"name": "a", "energy_consumed": [1, 2, 30]}]}}}"#;

fn energy_config(url: &str, schedule: &str) -> String {
    format!(
        r#"
sources:
  - name: energy
    url: {url}
    {schedule}
    timeout: 2s
    metrics:
      - name: pod_energy_consumed
        help: Energy.
        each: "$.apps.{{app}}.{{namespace}}[*]"
        labels: {{app: "{{app}}", namespace: "{{namespace}}", pod: "{{@.name}}"}}
        value: "@.energy_consumed[-1]"
"#
    )
}

const A: &str = r#"pod_energy_consumed{app="billing",namespace="prod",pod="a"}"#;
const B: &str = r#"pod_energy_consumed{app="billing",namespace="prod",pod="b"}"#;
const UP: &str = r#"jsonbridge_source_up{source="energy"}"#;

#[tokio::test]
async fn interval_polls_at_start_then_on_schedule_and_removed_pods_vanish() {
    let up = Upstream::start(Reply::json(PODS_AB)).await;
    let b = Bridge::start(&energy_config(&format!("{}/energy", up.base), "every: 1s")).await;
    let body = b.wait_metrics(10, "first poll", |m| m.contains(A)).await;
    assert_eq!(sample(&body, A), Some(3.0));
    assert_eq!(sample(&body, B), Some(5.0));
    assert_eq!(sample(&body, UP), Some(1.0));

    up.set(Reply::json(PODS_A));
    let body = b
        .wait_metrics(10, "pod b to leave", |m| !m.contains(B))
        .await;
    assert_eq!(sample(&body, A), Some(30.0));
    assert!(up.hits() >= 2);
    b.stop().await;
}

#[tokio::test]
async fn cron_schedule_fires() {
    let up = Upstream::start(Reply::json(PODS_AB)).await;
    let b = Bridge::start(&energy_config(
        &format!("{}/energy", up.base),
        "schedule: \"* * * * * *\"",
    ))
    .await;
    // One poll at start-up, then one per second.
    wait_for(10, "three polls", || up.hits() >= 3).await;
    b.stop().await;
}

#[tokio::test]
async fn method_headers_query_body_and_auth_are_sent() {
    // `${VAR}` expansion is covered by the config unit tests and, in a child process, by
    // cli::logs_never_contain_secrets_and_json_format_works (set_var is unsound here).
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let config = format!(
        r#"
sources:
  - name: q
    url: {}/api/v1/consumption
    method: post
    headers:
      Accept: application/json
      X-Team: platform
    query:
      window: 30m
      token: t0ken-xyz
    body: '{{"since": "1h"}}'
    bearer_token: t0ken-xyz
    every: 1h
    metrics:
      - {{name: n, value: $.n}}
"#,
        up.base
    );
    let b = Bridge::start(&config).await;
    wait_for(10, "the first request", || up.hits() >= 1).await;
    let seen = &up.seen()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/api/v1/consumption");
    assert_eq!(seen.query.as_deref(), Some("window=30m&token=t0ken-xyz"));
    assert_eq!(seen.headers["accept"], "application/json");
    assert_eq!(seen.headers["x-team"], "platform");
    assert_eq!(seen.headers["authorization"], "Bearer t0ken-xyz");
    assert!(
        seen.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("jsonbridge/")
    );
    assert_eq!(seen.body, br#"{"since": "1h"}"#);

    // The token is on no page.
    b.wait_metrics(10, "the sample", |m| m.contains("\nn 1"))
        .await;
    for page in ["/", "/metrics", "/-/ready"] {
        let (_, body) = b.get(page).await;
        assert!(!body.contains("t0ken-xyz"), "{page} shows the token");
    }
    b.stop().await;
}

#[tokio::test]
async fn basic_auth_is_sent() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let config = format!(
        "sources:\n  - name: q\n    url: {}/x\n    basic_auth: {{username: u, password: p@ss}}\n    every: 1h\n    metrics: [{{name: n, value: $.n}}]\n",
        up.base
    );
    let b = Bridge::start(&config).await;
    wait_for(10, "the first request", || up.hits() >= 1).await;
    // base64("u:p@ss")
    assert_eq!(up.seen()[0].headers["authorization"], "Basic dTpwQHNz");
    b.stop().await;
}

/// Each failure keeps the last good snapshot, sets up to 0 and is counted under its kind.
#[tokio::test]
async fn failures_keep_the_last_snapshot_and_are_counted_by_kind() {
    let up = Upstream::start(Reply::json(PODS_AB)).await;
    let b = Bridge::start(&energy_config(&format!("{}/energy", up.base), "every: 1s")).await;
    b.wait_metrics(10, "first poll", |m| m.contains(B)).await;

    let failures: [(Reply, &str); 4] = [
        (
            Reply {
                status: 500,
                ..Reply::json("oops")
            },
            "http_status",
        ),
        (Reply::json("{\"apps\": {"), "invalid_json"),
        (
            Reply {
                delay: Duration::from_secs(4),
                ..Reply::json(PODS_A)
            },
            "timeout",
        ),
        (
            Reply {
                status: 404,
                ..Reply::json("{}")
            },
            "http_status",
        ),
    ];
    for (reply, kind) in failures {
        up.set(reply);
        let counter =
            format!(r#"jsonbridge_source_polls_total{{source="energy",result="{kind}"}}"#);
        let before = sample(&b.metrics().await, &counter).unwrap_or(0.0);
        let body = b
            .wait_metrics(15, kind, |m| {
                sample(m, &counter).unwrap_or(0.0) > before && sample(m, UP) == Some(0.0)
            })
            .await;
        // The last good data is still served.
        assert_eq!(sample(&body, A), Some(3.0), "{kind}");
        assert_eq!(sample(&body, B), Some(5.0), "{kind}");
        // The status page says why.
        let (_, page) = b.get("/").await;
        assert!(page.contains("failed"), "{kind}: {page}");
    }
    // Recovery.
    up.set(Reply::json(PODS_A));
    let body = b
        .wait_metrics(10, "recovery", |m| sample(m, UP) == Some(1.0))
        .await;
    assert_eq!(sample(&body, A), Some(30.0));
    assert!(!body.contains(B));
    b.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let big = format!(r#"{{"n": 1, "pad": "{}"}}"#, "x".repeat(10_000));
    let up = Upstream::start(Reply::json(&big)).await;
    let config = format!(
        "sources:\n  - name: big\n    url: {}/x\n    max_body_bytes: 1000\n    every: 1h\n    metrics: [{{name: n, value: $.n}}]\n",
        up.base
    );
    let b = Bridge::start(&config).await;
    b.wait_metrics(10, "the failure", |m| {
        m.contains(r#"jsonbridge_source_polls_total{source="big",result="body_too_large"} 1"#)
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_slow_poll_never_overlaps_itself() {
    let up = Upstream::start(Reply {
        delay: Duration::from_millis(2500),
        ..Reply::json(PODS_AB)
    })
    .await;
    let b = Bridge::start(
        &energy_config(&format!("{}/energy", up.base), "every: 1s")
            .replace("timeout: 2s", "timeout: 10s"),
    )
    .await;
    b.wait_metrics(15, "an overlap to be counted", |m| {
        sample(
            m,
            r#"jsonbridge_source_poll_overlaps_total{source="energy"}"#,
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert_eq!(up.max_in_flight(), 1);
    b.stop().await;
}

#[tokio::test]
async fn ready_only_after_every_source_polled_once() {
    let up = Upstream::start(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::json(PODS_AB)
    })
    .await;
    let b = Bridge::start(&energy_config(&format!("{}/energy", up.base), "every: 1h")).await;
    let (status, body) = b.get("/-/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("energy"), "{body}");
    let (status, _) = b.get("/-/healthy").await;
    assert_eq!(status, 200);
    b.wait_metrics(10, "first poll", |m| m.contains(A)).await;
    let (status, _) = b.get("/-/ready").await;
    assert_eq!(status, 200);
    b.stop().await;
}

#[tokio::test]
async fn extraction_errors_are_counted_per_metric_and_kind() {
    let up = Upstream::start(Reply::json(
        r#"{"apps": {"x": {"y": [{"name": "a", "energy_consumed": [1]}, {"name": "b", "energy_consumed": ["n/a"]}, {"energy_consumed": [2]}]}}}"#,
    ))
    .await;
    let b = Bridge::start(&energy_config(&format!("{}/e", up.base), "every: 1h")).await;
    let body = b
        .wait_metrics(10, "first poll", |m| m.contains("pod=\"a\""))
        .await;
    assert_eq!(
        sample(
            &body,
            r#"jsonbridge_extraction_errors_total{source="energy",metric="pod_energy_consumed",kind="value_not_numeric"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            r#"jsonbridge_extraction_errors_total{source="energy",metric="pod_energy_consumed",kind="label_missing"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, r#"jsonbridge_source_series{source="energy"}"#),
        Some(1.0)
    );
    b.stop().await;
}

/// A duplicate merged by a policy the config chose is no extraction error: it is counted in
/// `jsonbridge_duplicates_merged_total`; without a policy it stays an error.
#[tokio::test]
async fn chosen_duplicate_policies_are_counted_apart_from_errors() {
    let up = Upstream::start(Reply::json(
        r#"{"xs": [{"k": "a", "v": 1}, {"k": "a", "v": 2}, {"k": "a", "v": 4}, {"k": "b", "v": 8}]}"#,
    ))
    .await;
    let config = format!(
        "sources:\n  - name: s\n    url: {}/x\n    every: 1h\n    metrics:\n      - {{name: chosen, help: C., each: \"$.xs[*]\", labels: {{k: \"{{@.k}}\"}}, value: \"@.v\", on_duplicate: max}}\n      - {{name: unset, help: U., each: \"$.xs[*]\", labels: {{k: \"{{@.k}}\"}}, value: \"@.v\"}}\n      - {{name: grouped, help: G., each: \"$.xs[*]\", labels: {{k: \"{{@.k}}\"}}, aggregate: count}}\n",
        up.base
    );
    let b = Bridge::start(&config).await;
    let body = b
        .wait_metrics(10, "first poll", |m| m.contains("chosen{"))
        .await;
    for (series, want) in [
        (r#"chosen{k="a"}"#, Some(4.0)),
        (r#"unset{k="a"}"#, Some(1.0)),
        (r#"grouped{k="a"}"#, Some(3.0)),
        (r#"grouped{k="b"}"#, Some(1.0)),
        (
            r#"jsonbridge_duplicates_merged_total{source="s",metric="chosen",policy="max"}"#,
            Some(2.0),
        ),
        (
            r#"jsonbridge_extraction_errors_total{source="s",metric="unset",kind="duplicate_series"}"#,
            Some(2.0),
        ),
        (
            r#"jsonbridge_extraction_errors_total{source="s",metric="chosen",kind="duplicate_series"}"#,
            None,
        ),
        (
            r#"jsonbridge_duplicates_merged_total{source="s",metric="grouped",policy="count"}"#,
            None,
        ),
    ] {
        assert_eq!(sample(&body, series), want, "{series}\n{body}");
    }
    crate::golden::promtool_check(&body).unwrap();
    b.stop().await;
}

#[tokio::test]
async fn full_scrape_with_self_metrics_passes_promtool() {
    let up = Upstream::start(Reply::json(PODS_AB)).await;
    let b = Bridge::start(&energy_config(&format!("{}/energy", up.base), "every: 1h")).await;
    let body = b.wait_metrics(10, "first poll", |m| m.contains(A)).await;
    crate::golden::promtool_check(&body).unwrap();
    // Prometheus asks for OpenMetrics and gets it.
    let r = crate::support::client()
        .get(format!("{}/metrics", b.base))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
    b.stop().await;
}

#[tokio::test]
async fn time_windows_are_rendered_at_every_poll() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let config = format!(
        r#"
sources:
  - name: window
    url: {}/api?fixed=1
    every: 1s
    query:
      from: "{{now - 30m | rfc3339}}"
      to: "{{now | unix_ms}}"
    headers:
      X-Since: "{{now - 1h | unix}}"
    method: POST
    body: '{{"day": "{{now | date}}"}}'
    metrics: [{{name: n, value: $.n}}]
"#,
        up.base
    );
    let b = Bridge::start(&config).await;
    wait_for(10, "two polls", || up.hits() >= 2).await;
    let seen = up.seen();
    let parse_query = |q: &str| -> Vec<(String, String)> {
        q.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.replace("%3A", ":"))
            })
            .collect()
    };
    let mut tos = Vec::new();
    for s in &seen[..2] {
        let q = parse_query(s.query.as_deref().unwrap());
        assert_eq!(q[0], ("fixed".into(), "1".into()));
        let from = chrono::DateTime::parse_from_rfc3339(&q[1].1).unwrap();
        let to_ms: i64 = q[2].1.parse().unwrap();
        // The window is 30 minutes wide, whatever the clock says.
        assert_eq!(to_ms / 1000 - from.timestamp(), 1800, "{q:?}");
        let since: i64 = s.headers["x-since"].to_str().unwrap().parse().unwrap();
        assert_eq!(to_ms / 1000 - since, 3600);
        let body = String::from_utf8(s.body.clone()).unwrap();
        assert!(
            body.starts_with("{\"day\": \"20") && body.ends_with("\"}"),
            "{body}"
        );
        tos.push(to_ms);
    }
    assert!(tos[1] > tos[0], "rendered anew at each poll");
    b.stop().await;
}

#[tokio::test]
async fn rotated_token_files_are_read_at_every_poll_without_reload() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let config = format!(
        "sources:\n  - name: t\n    url: {}/x\n    bearer_token_file: token\n    every: 1s\n    metrics: [{{name: n, value: $.n}}]\n  - name: basic\n    url: {}/y\n    basic_auth: {{username: u, password_file: pw}}\n    every: 1h\n    metrics: [{{name: m, value: $.n}}]\n",
        up.base, up.base
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "first-token\n").unwrap();
    std::fs::write(dir.path().join("pw"), "pa55\n").unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(&cfg, &config).unwrap();
    let b = Bridge::start_at(dir, cfg).await;
    let auth_of = |path: &str| -> Vec<String> {
        up.seen()
            .iter()
            .filter(|s| s.path == path)
            .map(|s| s.headers["authorization"].to_str().unwrap().to_string())
            .collect()
    };
    wait_for(10, "the first polls", || {
        !auth_of("/x").is_empty() && !auth_of("/y").is_empty()
    })
    .await;
    assert_eq!(auth_of("/x")[0], "Bearer first-token");
    assert_eq!(auth_of("/y")[0], "Basic dTpwYTU1"); // base64("u:pa55")
    std::fs::write(b.dir.path().join("token"), "second-token\n").unwrap();
    wait_for(10, "the rotated token", || {
        auth_of("/x")
            .last()
            .is_some_and(|a| a == "Bearer second-token")
    })
    .await;
    // A missing token file fails the poll with its own kind; nothing leaks.
    std::fs::remove_file(b.dir.path().join("token")).unwrap();
    let body = b
        .wait_metrics(10, "the secret_file error", |m| {
            m.contains(r#"jsonbridge_source_polls_total{source="t",result="secret_file"}"#)
        })
        .await;
    assert!(!body.contains("second-token"));
    let (_, page) = b.get("/").await;
    assert!(page.contains("cannot read secret file"), "{page}");
    assert!(!page.contains("second-token"));
    b.stop().await;
}

#[tokio::test]
async fn duplicate_error_policy_fails_the_poll_and_max_series_truncates() {
    let up = Upstream::start(Reply::json(
        r#"[{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "c", "v": 3}]"#,
    ))
    .await;
    let config = format!(
        r#"
sources:
  - name: strict
    url: {}/x
    every: 1s
    max_series: 2
    metrics:
      - {{name: m, help: M., each: "$[*]", labels: {{k: "{{@.k}}"}}, value: "@.v", on_duplicate: error}}
"#,
        up.base
    );
    let b = Bridge::start(&config).await;
    let body = b
        .wait_metrics(10, "the first poll", |m| m.contains("m{k=\"b\"} 2"))
        .await;
    assert!(
        !body.contains("m{k=\"c\"}"),
        "max_series keeps the first 2 series"
    );
    assert_eq!(
        sample(
            &body,
            r#"jsonbridge_source_series_dropped{source="strict"}"#
        ),
        Some(1.0)
    );
    up.set(Reply::json(r#"[{"k": "a", "v": 1}, {"k": "a", "v": 9}]"#));
    let body = b
        .wait_metrics(10, "the duplicate failure", |m| {
            m.contains(
                r#"jsonbridge_source_polls_total{source="strict",result="duplicate_series"}"#,
            )
        })
        .await;
    assert_eq!(
        sample(&body, r#"jsonbridge_source_up{source="strict"}"#),
        Some(0.0)
    );
    assert!(
        body.contains("m{k=\"b\"} 2"),
        "the last good snapshot stays"
    );
    b.stop().await;
}

#[tokio::test]
async fn probe_polls_now_without_touching_the_snapshot() {
    let up = Upstream::start(Reply::json(PODS_AB)).await;
    let b = Bridge::start(&energy_config(&format!("{}/energy", up.base), "every: 1h")).await;
    b.wait_metrics(10, "first poll", |m| m.contains(A)).await;
    up.set(Reply::json(PODS_A));
    let (status, body) = b.get("/probe?source=energy").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&body, A), Some(30.0), "the probe saw the new data");
    assert!(!body.contains(B));
    assert!(
        !body.contains("jsonbridge_"),
        "only the source's own metrics"
    );
    // The scheduled snapshot is untouched.
    let m = b.metrics().await;
    assert_eq!(sample(&m, A), Some(3.0));
    assert!(m.contains(B));
    assert_eq!(
        sample(
            &m,
            r#"jsonbridge_source_polls_total{source="energy",result="success"}"#
        ),
        Some(1.0)
    );
    let (status, body) = b.get("/probe?source=nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("no source named \"nope\""));
    up.set(Reply {
        status: 500,
        ..Reply::json("x")
    });
    let (status, body) = b.get("/probe?source=energy").await;
    assert_eq!(status, 502);
    assert!(body.contains("(http_status): HTTP status 500"), "{body}");
    b.stop().await;
}

#[tokio::test]
async fn module_probes_only_reach_allowed_targets() {
    let up = Upstream::start(Reply::json(PODS_AB)).await;
    let config = format!(
        r#"
sources:
  - name: self
    url: file://self.json
    every: 1h
    metrics: [{{name: self_value, help: S., value: 1}}]
modules:
  - name: energy
    timeout: 5s
    headers: {{Accept: application/json}}
    metrics:
      - name: pod_energy_consumed
        help: Energy.
        each: "$.apps.{{app}}.{{namespace}}[*]"
        labels: {{app: "{{app}}", namespace: "{{namespace}}", pod: "{{@.name}}"}}
        value: "@.energy_consumed[-1]"
probe:
  allow_targets: ["{}/allowed/", "regex:http://127\\.0\\.0\\.1:[0-9]+/also/[a-z]+"]
"#,
        up.base
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("self.json"), "{}").unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(&cfg, config).unwrap();
    let b = Bridge::start_at(dir, cfg).await;
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
    for ok in [
        format!("{}/allowed/energy", up.base),
        format!("{}/also/x", up.base),
    ] {
        let (status, body) = b
            .get(&format!("/probe?module=energy&target={}", enc(&ok)))
            .await;
        assert_eq!(status, 200, "{ok}: {body}");
        assert_eq!(sample(&body, A), Some(3.0));
    }
    assert_eq!(up.seen()[0].headers["accept"], "application/json");
    let port = up.base.rsplit(':').next().unwrap();
    for denied in [
        format!("{}/other", up.base),
        format!("{}/allowedx", up.base),
        format!("http://localhost:{port}/allowed/x"),
        format!("{}/also/x/y", up.base),
    ] {
        let (status, body) = b
            .get(&format!("/probe?module=energy&target={}", enc(&denied)))
            .await;
        assert_eq!(status, 403, "{denied}: {body}");
    }
    let (status, _) = b.get("/probe?module=nope&target=http%3A%2F%2Fx").await;
    assert_eq!(status, 404);
    let (status, _) = b.get("/probe?module=energy").await;
    assert_eq!(status, 400);
    let (status, _) = b
        .get("/probe?module=energy&target=file%3A%2F%2F%2Fetc%2Fpasswd")
        .await;
    assert_eq!(status, 400);
    b.stop().await;
}

/// Sidecars poll `localhost`: the resolver (hickory) must honour /etc/hosts.
#[tokio::test]
async fn localhost_urls_resolve() {
    let up = Upstream::start(Reply::json(r#"{"n": 4}"#)).await;
    let url = up.base.replace("127.0.0.1", "localhost");
    let b = Bridge::start(&format!(
        "sources:\n  - name: l\n    url: {url}/x\n    every: 1h\n    metrics: [{{name: n, help: N., value: $.n}}]\n"
    ))
    .await;
    b.wait_metrics(10, "a poll through localhost", |m| m.contains("\nn 4"))
        .await;
    b.stop().await;
}
