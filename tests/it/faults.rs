//! Fault injection: for each way an upstream can misbehave, the process keeps serving, the
//! other source is untouched, the faulty source keeps its last good snapshot, `up` drops to
//! 0, and the failure is counted under its own kind.

use crate::support::{Bridge, Raw, RawUpstream, Reply, Upstream, sample};

const GOOD: &str =
    r#"{"apps": {"billing": {"prod": [{"name": "a", "energy_consumed": [1, 2, 3]}]}}}"#;
const A: &str = r#"pod_energy_consumed{app="billing",namespace="prod",pod="a"}"#;
const HEALTHY: &str = "\nhealthy_value 42";

fn config(victim: &str, healthy: &str, extra: &str) -> String {
    format!(
        r#"
sources:
  - name: victim
    url: {victim}/energy
    every: 1s
    timeout: 1s
    max_body_bytes: 100000
{extra}    metrics:
      - name: pod_energy_consumed
        help: Energy.
        each: "$.apps.{{app}}.{{namespace}}[*]"
        labels: {{app: "{{app}}", namespace: "{{namespace}}", pod: "{{@.name}}"}}
        value: "@.energy_consumed[-1]"
  - name: healthy
    url: {healthy}/ok
    every: 1s
    metrics: [{{name: healthy_value, help: H., value: $.n}}]
"#
    )
}

fn polls(body: &str, kind: &str) -> f64 {
    crate::support::polls(body, "victim", kind).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_is_contained_and_counted_by_kind() {
    let victim = RawUpstream::start(Raw::json(GOOD)).await;
    let healthy = Upstream::start(Reply::json(r#"{"n": 42}"#)).await;
    let b = Bridge::start(&config(&victim.base, &healthy.base, "")).await;
    b.wait_metrics(10, "first polls", |m| m.contains(A) && m.contains(HEALTHY))
        .await;

    // Nested where the metric reads it (parts nobody reads are skipped without recursion,
    // see `extract::stream`).
    let deep = format!(
        r#"{{"apps": {{"billing": {{"prod": [{{"name": {}{}, "energy_consumed": [1]}}]}}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let wrong_types = r#"{"apps": {"billing": {"prod": [{"name": {"x": 1}, "energy_consumed": "lots"}, {"name": "b", "energy_consumed": [null]}]}}}"#;
    let html = Raw::Respond {
        status: 200,
        content_type: "text/html",
        body: b"<html><body>Service Unavailable</body></html>".to_vec(),
    };
    let faults: Vec<(&str, Raw, &str)> = vec![
        (
            "HTTP 500",
            Raw::Respond {
                status: 500,
                content_type: "text/plain",
                body: b"oops".to_vec(),
            },
            "http_status",
        ),
        (
            "HTTP 404",
            Raw::Respond {
                status: 404,
                content_type: "text/plain",
                body: vec![],
            },
            "http_status",
        ),
        (
            "HTTP 429",
            Raw::Respond {
                status: 429,
                content_type: "text/plain",
                body: vec![],
            },
            "http_status",
        ),
        ("reset mid-body", Raw::ResetMidBody, "body"),
        ("never answers", Raw::Silent, "timeout"),
        ("trickles past the timeout", Raw::Trickle, "timeout"),
        ("invalid JSON", Raw::json("{apps: nope}"), "invalid_json"),
        ("truncated JSON", Raw::json(&GOOD[..40]), "invalid_json"),
        ("HTML instead of JSON", html, "invalid_json"),
        ("empty body", Raw::json(""), "empty_body"),
        (
            "body over max_body_bytes, chunked",
            Raw::EndlessChunks,
            "body_too_large",
        ),
        ("redirect loop", Raw::RedirectLoop, "redirect"),
        (
            "wrong types everywhere",
            Raw::json(wrong_types),
            "no_series",
        ),
        ("nested 10000 deep", Raw::json(&deep), "invalid_json"),
        (
            "NaN literal",
            Raw::json(r#"{"apps": {"x": {"y": [{"name": "n", "energy_consumed": [NaN]}]}}}"#),
            "invalid_json",
        ),
        (
            "Infinity literal",
            Raw::json(r#"{"apps": {"x": {"y": [{"name": "n", "energy_consumed": [Infinity]}]}}}"#),
            "invalid_json",
        ),
    ];
    for (what, fault, kind) in faults {
        let before = polls(&b.metrics().await, kind);
        victim.set(fault);
        let body = b
            .wait_metrics(15, what, |m| {
                polls(m, kind) > before
                    && sample(m, r#"jsonbridge_source_up{source="victim"}"#) == Some(0.0)
            })
            .await;
        assert_eq!(
            sample(&body, A),
            Some(3.0),
            "{what}: last good snapshot lost"
        );
        assert!(
            body.contains(HEALTHY),
            "{what}: the other source was affected"
        );
        assert_eq!(
            sample(&body, r#"jsonbridge_source_up{source="healthy"}"#),
            Some(1.0),
            "{what}"
        );
        if what == "HTML instead of JSON" {
            let (_, page) = b.get("/").await;
            assert!(
                page.contains("invalid JSON (Content-Type text/html)"),
                "{page}"
            );
        }
        // Recover before the next fault.
        victim.set(Raw::json(GOOD));
        b.wait_metrics(15, "recovery", |m| {
            sample(m, r#"jsonbridge_source_up{source="victim"}"#) == Some(1.0)
        })
        .await;
    }
    // Duplicated keys are valid JSON: the last one wins, as in most parsers.
    victim.set(Raw::json(
        r#"{"apps": {"billing": {"prod": [{"name": "a", "energy_consumed": [1], "energy_consumed": [7]}]}}}"#,
    ));
    b.wait_metrics(10, "duplicated keys", |m| sample(m, A) == Some(7.0))
        .await;
    b.stop().await;
}

#[tokio::test]
async fn connection_refused_is_its_own_kind() {
    let healthy = Upstream::start(Reply::json(r#"{"n": 42}"#)).await;
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = Bridge::start(&config(
        &format!("http://127.0.0.1:{port}"),
        &healthy.base,
        "",
    ))
    .await;
    let body = b
        .wait_metrics(10, "a connect failure", |m| {
            polls(m, "connect") >= 1.0 && m.contains(HEALTHY)
        })
        .await;
    assert_eq!(
        sample(&body, r#"jsonbridge_source_up{source="victim"}"#),
        Some(0.0)
    );
    b.stop().await;
}

#[tokio::test]
async fn retries_turn_a_flaky_upstream_into_fresh_data() {
    // Fails two requests out of three, counted per connection (each answer closes it).
    let fail = Raw::Respond {
        status: 503,
        content_type: "text/plain",
        body: vec![],
    };
    let victim = RawUpstream::start(Raw::Cycle(vec![fail.clone(), fail, Raw::json(GOOD)])).await;
    let healthy = Upstream::start(Reply::json(r#"{"n": 42}"#)).await;
    let b = Bridge::start(&config(
        &victim.base,
        &healthy.base,
        "    retries: 2\n    retry_backoff: 10ms\n",
    ))
    .await;
    let body = b
        .wait_metrics(15, "three good polls", |m| polls(m, "success") >= 3.0)
        .await;
    assert_eq!(
        polls(&body, "http_status"),
        0.0,
        "every poll recovered by retrying"
    );
    assert!(sample(&body, r#"jsonbridge_source_retries_total{source="victim"}"#).unwrap() >= 6.0);
    assert!(victim.connections.load(std::sync::atomic::Ordering::SeqCst) >= 9);
    assert_eq!(sample(&body, A), Some(3.0));
    b.stop().await;
}

#[tokio::test]
async fn max_staleness_ages_out_the_last_snapshot() {
    let victim = RawUpstream::start(Raw::json(GOOD)).await;
    let healthy = Upstream::start(Reply::json(r#"{"n": 42}"#)).await;
    let b = Bridge::start(&config(
        &victim.base,
        &healthy.base,
        "    max_staleness: 2s\n",
    ))
    .await;
    b.wait_metrics(10, "first poll", |m| m.contains(A)).await;
    victim.set(Raw::Respond {
        status: 500,
        content_type: "text/plain",
        body: vec![],
    });
    // Served while younger than 2 s, then gone.
    let body = b
        .wait_metrics(15, "the snapshot to age out", |m| !m.contains(A))
        .await;
    assert_eq!(
        sample(&body, r#"jsonbridge_source_series{source="victim"}"#),
        Some(0.0)
    );
    assert!(body.contains(HEALTHY));
    b.stop().await;
}
