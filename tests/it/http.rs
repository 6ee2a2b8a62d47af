//! The router alone (no socket): status codes, content types, the status page, and the
//! exposition cache.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonbridge::config::{self, Origin};
use jsonbridge::expose::{Exposer, router};
use jsonbridge::extract::{FamilySamples, Series, extract};
use jsonbridge::store::{Published, Snapshot, Store};
use jsonbridge::telemetry::{PollOutcome, Telemetry};
use tower::ServiceExt;

const CONFIG: &str = r#"
sources:
  - name: ok-source
    url: https://user:hunter2@api.internal/v1?key=${JSONBRIDGE_HTTP_TEST_KEY}
    metrics: [{name: pods, help: "Pods <b>.", each: "$.pods[*]", labels: {pod: "{@.name}"}, value: "@.n"}]
  - name: bad<source>
    url: file:///nonexistent.json
    metrics: [{name: other, value: 1}]
"#;

fn setup() -> (Arc<Store>, Arc<Telemetry>, Arc<Exposer>) {
    let env = |k: &str| (k == "JSONBRIDGE_HTTP_TEST_KEY").then(|| "s3cr3t-key".to_string());
    let cfg = config::parse(
        CONFIG.replace("bad<source>", "bad-source").as_str(),
        &Origin {
            name: "/etc/jsonbridge/<config>.yaml".into(),
            base_dir: "/etc/jsonbridge".into(),
        },
        &env,
    )
    .unwrap();
    let store = Arc::new(Store::new(Arc::new(cfg)));
    let telemetry = Arc::new(Telemetry::new(store.clone()));
    for s in store.config().sources.iter() {
        telemetry.source_added(&s.name);
    }
    let exposer = Arc::new(Exposer::new(
        store.clone(),
        telemetry.clone(),
        None,
        "/etc/jsonbridge/<config>.yaml".into(),
    ));
    (store, telemetry, exposer)
}

async fn get(x: &Arc<Exposer>, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get(uri);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = router(x.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

fn publish(store: &Store, telemetry: &Telemetry, doc: serde_json::Value) {
    let src = store.config().sources[0].clone();
    let x = extract(&doc, &src.metrics).unwrap();
    let series = x.series_count();
    assert!(
        store
            .publish(
                &src,
                Snapshot {
                    taken_at: std::time::SystemTime::now(),
                    families: x.families,
                }
            )
            .done()
    );
    telemetry.poll_finished(
        &src.name,
        1,
        Duration::from_millis(12),
        PollOutcome::Success {
            series,
            dropped: 0,
            retries: 0,
            bytes: 1234,
            wire_bytes: 1234,
            fetch: Duration::from_millis(5),
            reports: &x.reports,
            problems: &x.problems,
            merged: &x.merged,
            pages: 1,
            fan_out: None,
            too_old: &x.too_old,
        },
    );
}

#[tokio::test]
async fn health_ready_and_lifecycle_endpoints() {
    let (store, telemetry, x) = setup();
    let (s, _, body) = get(&x, "/-/healthy", None).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "Healthy\n"));
    let (s, _, body) = get(&x, "/-/ready", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("ok-source, bad-source"), "{body}");

    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "a", "n": 1}]}),
    );
    telemetry.poll_finished(
        "bad-source",
        1,
        Duration::from_millis(1),
        PollOutcome::Failure {
            kind: "file",
            message: "cannot read /nonexistent.json: No such file or directory".into(),
        },
    );
    let (s, _, _) = get(&x, "/-/ready", None).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "ready once every source finished a poll, even a failed one"
    );

    // Lifecycle API disabled: POST is refused, GET is not a route.
    let resp = router(x.clone())
        .oneshot(Request::post("/-/reload").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (s, _, _) = get(&x, "/-/reload", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metrics_content_negotiation() {
    let (store, telemetry, x) = setup();
    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "a", "n": 1}]}),
    );
    let (s, ct, body) = get(&x, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("pods{pod=\"a\"} 1"), "{body}");
    assert!(!body.contains("# EOF"));
    let (_, ct, body) = get(
        &x,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("jsonbridge_source_up{source=\"ok-source\"} 1"));
    assert!(body.contains("jsonbridge_source_up{source=\"bad-source\"} 0"));
    assert!(body.contains("jsonbridge_build_info{version="));
}

#[tokio::test]
async fn exposition_is_cached_until_something_changes() {
    let (store, telemetry, x) = setup();
    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "a", "n": 1}]}),
    );
    let first = x.metrics(jsonbridge::expose::Format::Text).await.unwrap();
    let again = x.metrics(jsonbridge::expose::Format::Text).await.unwrap();
    assert_eq!(first.as_ptr(), again.as_ptr(), "second scrape re-encoded");
    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "b", "n": 2}]}),
    );
    let after = x.metrics(jsonbridge::expose::Format::Text).await.unwrap();
    let text = std::str::from_utf8(&after).unwrap();
    assert!(text.contains("pods{pod=\"b\"} 2"), "{text}");
    assert!(
        !text.contains("pod=\"a\""),
        "replaced snapshot still served"
    );
}

#[tokio::test]
async fn a_poll_of_a_replaced_source_cannot_publish() {
    let (store, _, _) = setup();
    let old = store.config().sources[0].clone();
    // A reload replaces the config (same text, new instances).
    let env = |k: &str| (k == "JSONBRIDGE_HTTP_TEST_KEY").then(|| "k".to_string());
    let fresh = config::parse(
        CONFIG.replace("bad<source>", "bad-source").as_str(),
        &Origin {
            name: "x".into(),
            base_dir: "/".into(),
        },
        &env,
    )
    .unwrap();
    store.swap_config(Arc::new(fresh));
    let late = Snapshot {
        taken_at: std::time::SystemTime::now(),
        families: vec![FamilySamples {
            family: "pods".into(),
            dynamic: None,
            label_names: vec!["pod".to_string()].into(),
            series: vec![Series {
                labels: vec!["stale".to_string()].into(),
                value: 1.0,
                timestamp_ms: None,
            }],
        }],
    };
    assert!(!store.publish(&old, late.clone()).done());
    assert!(store.view().snapshots.is_empty());
    // The current instance publishes, and gets back what it replaced, to free it outside the
    // store's lock and the poll's time.
    let new = store.config().sources[0].clone();
    match store.publish(&new, late.clone()) {
        Published::Done { replaced: None } => {}
        other => panic!("first publish: {other:?}"),
    }
    match store.publish(&new, late) {
        Published::Done {
            replaced: Some(old),
        } => assert_eq!(old.families[0].series[0].labels.to_vec(), vec!["stale"]),
        other => panic!("second publish: {other:?}"),
    }
}

#[tokio::test]
async fn status_page_lists_sources_and_hides_secrets() {
    let (store, telemetry, x) = setup();
    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "a", "n": 1}, {"name": "b", "n": 2}]}),
    );
    telemetry.poll_finished(
        "bad-source",
        1,
        Duration::from_millis(1),
        PollOutcome::Failure {
            kind: "file",
            message: "cannot read /nonexistent.json: <No such file>".into(),
        },
    );
    let (s, ct, page) = get(&x, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/html"));
    for want in [
        "ok-source",
        "bad-source",
        "https://***@api.internal/v1?key=${JSONBRIDGE_HTTP_TEST_KEY}",
        "every 1m",
        "12.0 ms",
        "<span class=\"ok\">ok</span>",
        "cannot read /nonexistent.json: &lt;No such file&gt;",
        "/etc/jsonbridge/&lt;config&gt;.yaml",
        "<td data-label=\"Series\">2</td>",
    ] {
        assert!(page.contains(want), "missing {want:?} in\n{page}");
    }
    for secret in ["s3cr3t-key", "hunter2"] {
        assert!(!page.contains(secret), "page shows {secret}");
    }
}

#[tokio::test]
async fn gzip_when_asked_compressed_once_per_change() {
    let (store, telemetry, x) = setup();
    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "a", "n": 1}]}),
    );
    let req = || {
        Request::get("/metrics")
            .header("accept-encoding", "gzip, deflate")
            .body(Body::empty())
            .unwrap()
    };
    let resp = router(x.clone()).oneshot(req()).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["vary"], "Accept-Encoding");
    let gz = resp.into_body().collect().await.unwrap().to_bytes();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let plain = x.metrics(jsonbridge::expose::Format::Text).await.unwrap();
    assert_eq!(
        text.as_bytes(),
        &plain[..],
        "the same exposition, compressed"
    );
    // Cached: the second gzip body is the same allocation.
    let a = x
        .body(jsonbridge::expose::Format::Text, true)
        .await
        .unwrap();
    let b = x
        .body(jsonbridge::expose::Format::Text, true)
        .await
        .unwrap();
    assert_eq!(a.as_ptr(), b.as_ptr());
    // `gzip;q=0` and no header mean no compression.
    for ae in [Some("gzip;q=0"), None] {
        let mut r = Request::get("/metrics");
        if let Some(v) = ae {
            r = r.header("accept-encoding", v);
        }
        let resp = router(x.clone())
            .oneshot(r.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(resp.headers().get("content-encoding").is_none(), "{ae:?}");
    }
}

#[tokio::test]
async fn source_detail_page_shows_size_and_per_metric_matches() {
    let (store, telemetry, x) = setup();
    publish(
        &store,
        &telemetry,
        serde_json::json!({"pods": [{"name": "a", "n": 1}, {"name": "b", "n": "n/a"}]}),
    );
    let (s, _, page) = get(&x, "/source/ok-source", None).await;
    assert_eq!(s, StatusCode::OK);
    for want in [
        "<h1>Source ok-source</h1>",
        "1234 bytes",
        "<td>pods</td><td>2</td><td>1</td>",
        "value_not_numeric x1: item #2: value @.n is not numeric: &quot;n/a&quot;",
        "href=\"/probe?source=ok-source\"",
        "every 1m",
        "<th>Read as</th><td>streamed, items read into slots",
    ] {
        assert!(page.contains(want), "missing {want:?} in\n{page}");
    }
    assert!(!page.contains("s3cr3t-key") && !page.contains("hunter2"));
    let (s, _, _) = get(&x, "/source/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The index links to it and says when the next poll comes.
    let (_, _, index) = get(&x, "/", None).await;
    assert!(
        index.contains("<a href=\"/source/ok-source\">ok-source</a>"),
        "{index}"
    );
    assert!(index.contains("<th>Next poll</th>"));
}
