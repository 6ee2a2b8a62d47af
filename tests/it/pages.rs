//! Paginated sources (`paginate:`) against fake paginated APIs on loopback, one per style:
//! a next URL in the body, a `Link` header with several relations, a cursor (also one that
//! repeats, which must stop), page numbers and offsets with their stop conditions; a page
//! that fails, `max_pages`, and a next URL that leaves the origin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::support::{Bridge, poll_text, sample, test_subcommand};

/// 10 items, `pod-0` to `pod-9`, in pages of `size`; how each style says where the next is.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Style {
    NextUrl,
    Link,
    Cursor,
    /// A cursor that comes back after page 2: the pages must stop.
    CursorLoop,
    Page,
    /// Page numbers, the total in the body; past the end an error (so the total must stop it).
    PageTotal,
    Offset,
    /// Page 3 answers 500.
    Failing,
    /// The next URL points at another origin.
    Elsewhere,
}

#[derive(Clone)]
struct Api {
    style: Style,
    size: usize,
    hits: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
    base: Arc<Mutex<String>>,
    /// Set: page 3 answers 500, whatever the style.
    fail: Arc<std::sync::atomic::AtomicBool>,
}

const ITEMS: usize = 10;

fn items(from: usize, size: usize) -> String {
    let list: Vec<String> = (from..(from + size).min(ITEMS))
        .map(|i| format!(r#"{{"name": "pod-{i}", "v": {i}}}"#))
        .collect();
    format!("[{}]", list.join(","))
}

async fn api(State(a): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    a.hits.fetch_add(1, Ordering::SeqCst);
    a.queries.lock().unwrap().push(q.clone());
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    if a.fail.load(Ordering::SeqCst) && num("page") == Some(3) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let size = a.size;
    let json = |body: String| {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        (StatusCode::OK, h, body).into_response()
    };
    match a.style {
        Style::NextUrl | Style::Failing | Style::Elsewhere => {
            let page = num("page").unwrap_or(1);
            if a.style == Style::Failing && page == 3 {
                return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
            }
            let from = (page - 1) * size;
            let next = if from + size >= ITEMS {
                "null".to_string()
            } else if a.style == Style::Elsewhere {
                format!(r#""http://127.0.0.2:9/items?page={}""#, page + 1)
            } else {
                // Relative, as many APIs write it.
                format!(r#""/items?page={}""#, page + 1)
            };
            json(format!(
                r#"{{"total": {ITEMS}, "items": {}, "links": {{"next": {next}}}}}"#,
                items(from, size)
            ))
        }
        Style::Link => {
            let page = num("page").unwrap_or(1);
            let from = (page - 1) * size;
            let base = a.base.lock().unwrap().clone();
            let mut links = vec![
                format!(r#"<{base}/items?page=1>; rel="first""#),
                format!(r#"<{base}/items?page=4>; rel="last""#),
            ];
            if from + size < ITEMS {
                // The next relation among others, in the middle of the list.
                links.insert(
                    1,
                    format!(r#"<{base}/items?page={}>; rel="next""#, page + 1),
                );
            }
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
            (StatusCode::OK, h, items(from, size)).into_response()
        }
        Style::Cursor | Style::CursorLoop => {
            let at: usize = q
                .get("cursor")
                .map(|c| c.trim_start_matches("c").parse().unwrap())
                .unwrap_or(0);
            let next = if at + size >= ITEMS {
                "null".to_string()
            } else if a.style == Style::CursorLoop && at >= size {
                // After page 2, the upstream hands out page 2's cursor again.
                format!(r#""c{at}""#)
            } else {
                format!(r#""c{}""#, at + size)
            };
            json(format!(
                r#"{{"data": {}, "meta": {{"next_cursor": {next}}}}}"#,
                items(at, size)
            ))
        }
        Style::Page | Style::PageTotal => {
            let page = num("page").unwrap_or(0);
            let per = num("per_page").unwrap_or(size);
            let from = page.saturating_sub(1) * per;
            if a.style == Style::PageTotal && from >= ITEMS {
                return (StatusCode::BAD_REQUEST, "no such page").into_response();
            }
            json(format!(
                r#"{{"total": {ITEMS}, "items": {}}}"#,
                items(from.min(ITEMS), per)
            ))
        }
        Style::Offset => {
            let offset = num("offset").unwrap_or(0);
            let limit = num("limit").unwrap_or(size);
            json(format!(
                r#"{{"items": {}, "has_more": {}}}"#,
                items(offset.min(ITEMS), limit),
                offset + limit < ITEMS
            ))
        }
    }
}

async fn start(style: Style, size: usize) -> Api {
    let a = Api {
        style,
        size,
        hits: Arc::default(),
        queries: Arc::default(),
        base: Arc::default(),
        fail: Arc::default(),
    };
    let app = Router::new()
        .route("/items", axum::routing::get(api))
        .with_state(a.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    *a.base.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    a
}

impl Api {
    fn url(&self) -> String {
        format!("{}/items", self.base.lock().unwrap())
    }
}

/// A source polling `api` with `paginate` (YAML flow map) and a metric over `each`.
fn config(api: &Api, paginate: &str, each: &str, extra: &str) -> String {
    format!(
        "sources:\n  - name: paged\n    url: {}\n    every: 1h\n    paginate: {paginate}\n    metrics:\n      - {{name: pod_value, help: V., each: \"{each}\", labels: {{pod: \"{{@.name}}\"}}, value: \"@.v\"}}\n{extra}",
        api.url()
    )
}

fn pods(p: &jsonbridge::schedule::Polled) -> Vec<String> {
    let f = p
        .extraction
        .families
        .iter()
        .find(|f| f.family == "pod_value")
        .unwrap();
    f.series
        .iter()
        .map(|s| s.labels.to_vec()[0].clone())
        .collect()
}

fn all_pods() -> Vec<String> {
    let mut v: Vec<String> = (0..ITEMS).map(|i| format!("pod-{i}")).collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_style_reads_every_page_once() {
    for (style, paginate, each, pages) in [
        (Style::NextUrl, "{next_url: $.links.next}", "$.items[*]", 4),
        (Style::Link, "{next_link: true}", "$[*]", 4),
        (
            Style::Cursor,
            "{cursor: $.meta.next_cursor}",
            "$.data[*]",
            4,
        ),
        // Page numbers until an empty page (the fifth, past the end).
        (
            Style::Page,
            "{page_param: page, page_size: 3, size_param: per_page}",
            "$.items[*]",
            5,
        ),
        // Page numbers until the total is reached: no fifth request (it would fail).
        (
            Style::PageTotal,
            "{page_param: page, page_size: 3, size_param: per_page, total: $.total}",
            "$.items[*]",
            4,
        ),
        // Offsets until has_more is false.
        (
            Style::Offset,
            "{offset_param: offset, page_size: 3, has_more: $.has_more}",
            "$.items[*]",
            4,
        ),
    ] {
        let api = start(style, 3).await;
        let polled = poll_text(&config(&api, paginate, each, ""))
            .await
            .unwrap_or_else(|e| panic!("{style:?}: {e}"));
        assert_eq!(pods(&polled), all_pods(), "{style:?}");
        assert_eq!(polled.pages, pages, "{style:?}: pages");
        assert_eq!(
            api.hits.load(Ordering::SeqCst),
            pages,
            "{style:?}: requests"
        );
        assert!(polled.extraction.problems.is_empty(), "{style:?}");
    }
}

#[tokio::test]
async fn page_and_offset_parameters_are_sent_as_configured() {
    let api = start(Style::Offset, 4).await;
    let text = config(
        &api,
        "{offset_param: offset, page_size: 4, size_param: limit, has_more: $.has_more}",
        "$.items[*]",
        "",
    )
    .replace(
        "    every: 1h\n",
        "    every: 1h\n    query: {limit: \"99\", region: eu, since: \"{now - 30m | unix_ms}\"}\n",
    );
    poll_text(&text).await.unwrap();
    let q = api.queries.lock().unwrap().clone();
    // The window is rendered once per poll: every page asks for the same one.
    let since: Vec<&String> = q.iter().map(|q| &q["since"]).collect();
    assert!(since.iter().all(|s| *s == since[0]), "{since:?}");
    let asked: Vec<(String, String, String)> = q
        .iter()
        .map(|q| (q["offset"].clone(), q["limit"].clone(), q["region"].clone()))
        .collect();
    // The page's own parameters replace a configured one of the same name; the others stay.
    assert_eq!(
        asked,
        [
            ("0".into(), "4".into(), "eu".into()),
            ("4".into(), "4".into(), "eu".into()),
            ("8".into(), "4".into(), "eu".into()),
        ]
    );
}

#[tokio::test]
async fn a_repeated_cursor_stops_the_pages() {
    let api = start(Style::CursorLoop, 3).await;
    let polled = poll_text(&config(
        &api,
        "{cursor: $.meta.next_cursor}",
        "$.data[*]",
        "",
    ))
    .await
    .unwrap();
    // Page 2 hands out the cursor that led to it: asking again would loop, so the pages
    // end there, and the poll keeps what the two pages held.
    assert_eq!(polled.pages, 2);
    assert_eq!(api.hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        pods(&polled),
        ["pod-0", "pod-1", "pod-2", "pod-3", "pod-4", "pod-5"]
    );
    assert!(polled.extraction.problems.is_empty());
    let hits = jsonbridge::telemetry::limit_hits();
    assert!(
        hits.iter().any(|(l, n)| *l == "cursor_repeated" && *n >= 1),
        "{hits:?}"
    );
}

#[tokio::test]
async fn max_pages_bounds_a_poll() {
    let api = start(Style::NextUrl, 2).await;
    let polled = poll_text(&config(
        &api,
        "{next_url: $.links.next, max_pages: 3}",
        "$.items[*]",
        "",
    ))
    .await
    .unwrap();
    assert_eq!(polled.pages, 3);
    assert_eq!(api.hits.load(Ordering::SeqCst), 3);
    assert_eq!(pods(&polled).len(), 6);
}

#[tokio::test]
async fn a_failed_page_fails_the_poll_and_names_the_page() {
    let api = start(Style::Failing, 3).await;
    let err = poll_text(&config(&api, "{next_url: $.links.next}", "$.items[*]", ""))
        .await
        .err()
        .expect("page 3 fails");
    assert_eq!(err.kind(), "http_status");
    assert_eq!(err.to_string(), "page 3: HTTP status 500");
    // A next URL on another origin is refused before anything is sent there.
    let api = start(Style::Elsewhere, 3).await;
    let err = poll_text(&config(&api, "{next_url: $.links.next}", "$.items[*]", ""))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), "pagination");
    assert_eq!(
        err.to_string(),
        "page 1: the next page's URL leaves the source's origin (http://127.0.0.2:9): refused"
    );
    assert_eq!(api.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn root_lookups_read_the_first_page() {
    let api = start(Style::NextUrl, 3).await;
    let polled = poll_text(&config(
        &api,
        "{next_url: $.links.next}",
        "$.items[*]",
        "      - {name: items_total, help: T., value: $.total}\n      - {name: pods_seen, help: S., each: \"$.items[*]\", aggregate: count}\n",
    ))
    .await
    .unwrap();
    let value = |name: &str| {
        let f = polled
            .extraction
            .families
            .iter()
            .find(|f| f.family == name)
            .unwrap();
        f.series.iter().map(|s| s.value).collect::<Vec<_>>()
    };
    // Once, from the first page (not a duplicate per page); the count sees every page.
    assert_eq!(value("items_total"), [10.0]);
    assert_eq!(value("pods_seen"), [10.0]);
    assert!(polled.extraction.problems.is_empty());
}

/// In the daemon: the pages are one snapshot; a failed page keeps the last good one, says
/// which page, and the self-metrics count pages.
#[tokio::test]
async fn the_daemon_serves_all_pages_and_keeps_them_when_a_page_fails() {
    let api = start(Style::NextUrl, 3).await;
    let b = Bridge::start(
        &config(&api, "{next_url: $.links.next}", "$.items[*]", "")
            .replace("every: 1h", "every: 1s"),
    )
    .await;
    let m = b
        .wait_metrics(10, "first poll", |m| m.contains("pod_value{pod=\"pod-9\"}"))
        .await;
    assert_eq!(
        sample(&m, r#"jsonbridge_source_last_poll_pages{source="paged"}"#),
        Some(4.0)
    );
    assert_eq!(
        sample(&m, r#"jsonbridge_source_series{source="paged"}"#),
        Some(10.0)
    );
    api.fail.store(true, Ordering::SeqCst);
    let m = b
        .wait_metrics(10, "a failed page", |m| {
            sample(m, r#"jsonbridge_source_up{source="paged"}"#) == Some(0.0)
        })
        .await;
    // The last good snapshot, whole: every page's series.
    for i in 0..ITEMS {
        assert!(m.contains(&format!("pod_value{{pod=\"pod-{i}\"}}")), "{m}");
    }
    assert!(
        sample(
            &m,
            r#"jsonbridge_source_polls_total{source="paged",result="http_status"}"#
        )
        .is_some_and(|n| n >= 1.0)
    );
    let (_, page) = b.get("/source/paged").await;
    assert!(page.contains("page 3: "), "{page}");
    assert!(page.contains(" bytes in 4 pages"), "{page}");
    b.stop().await;
}

/// `jsonbridge test` with saved pages: joined as a poll joins them, each with the request a
/// poll would make for it, and the next request when the pages given stop short.
#[test]
fn test_reads_saved_pages_and_shows_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "sources:\n  - name: paged\n    url: https://api.example/v1/items\n    query: {limit: \"3\"}\n    paginate: {cursor: $.meta.next, cursor_param: after}\n    metrics:\n      - {name: pod_value, help: V., each: \"$.data[*]\", labels: {pod: \"{@.name}\"}, value: \"@.v\"}\n",
    )
    .unwrap();
    let pages = dir.path().join("pages");
    std::fs::create_dir(&pages).unwrap();
    std::fs::write(
        pages.join("1.json"),
        r#"{"data": [{"name": "a", "v": 1}], "meta": {"next": "c2"}}"#,
    )
    .unwrap();
    std::fs::write(
        pages.join("2.json"),
        r#"{"data": [{"name": "b", "v": 2}], "meta": {"next": "c3"}}"#,
    )
    .unwrap();
    let (stdout, _) = test_subcommand(
        &cfg,
        &pages,
        &[
            "page 1: GET https://api.example/v1/items?limit=3\n",
            "page 2: GET https://api.example/v1/items?limit=3&after=c2\n",
            "page 3: GET https://api.example/v1/items?limit=3&after=c3 (not given: add its body with another --input)\n",
            "source paged: 2 series from 1 metric",
        ],
    );
    assert!(
        stdout.contains("pod_value{pod=\"a\"} 1.0\npod_value{pod=\"b\"} 2.0\n"),
        "{stdout}"
    );
    // Several inputs for a source without paginate: said, not guessed.
    std::fs::write(
        &cfg,
        "sources:\n  - name: one\n    url: https://api.example/v1/items\n    metrics: [{name: m, help: M., value: 1}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
        .arg("test")
        .arg(&cfg)
        .arg("--input")
        .arg(pages.join("1.json"))
        .arg(pages.join("2.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "2 inputs, but the source has neither `paginate` nor `fan_out`: give one response"
    ));
}

/// A probe module reads every page of its target too; each next URL must pass
/// `probe.allow_targets` as the target did.
#[tokio::test]
async fn probe_modules_read_every_page_within_the_allowed_targets() {
    let api = start(Style::NextUrl, 3).await;
    let text = format!(
        "sources: []\nmodules:\n  - name: paged\n    paginate: {{next_url: $.links.next}}\n    metrics:\n      - {{name: pod_value, help: V., each: \"$.items[*]\", labels: {{pod: \"{{@.name}}\"}}, value: \"@.v\"}}\nprobe:\n  allow_targets: [\"{}\"]\n",
        api.url()
    );
    let b = Bridge::start(&text).await;
    let target = api.url();
    let (status, body) = b.get(&format!("/probe?module=paged&target={target}")).await;
    assert_eq!(status, 200, "{body}");
    for i in 0..ITEMS {
        assert!(
            body.contains(&format!("pod_value{{pod=\"pod-{i}\"}}")),
            "{body}"
        );
    }
    // Allowed: the first page only (`/items?page=1`); the next ones are refused.
    let narrow = text.replace(&format!("[\"{target}\"]"), &format!("[\"regex:{target}\"]"));
    std::fs::write(&b.config, narrow).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = b.get(&format!("/probe?module=paged&target={target}")).await;
        if status != 200 {
            assert!(
                body.contains("page 1: the next page's URL is outside probe.allow_targets"),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.stop().await;
}

/// Pages past `max_series` would only be truncated away: the poll stops asking.
#[tokio::test]
async fn max_series_stops_the_pages() {
    let api = start(Style::NextUrl, 3).await;
    let text = config(&api, "{next_url: $.links.next}", "$.items[*]", "")
        .replace("    every: 1h\n", "    every: 1h\n    max_series: 5\n");
    let polled = poll_text(&text).await.unwrap();
    assert_eq!(polled.pages, 2);
    assert_eq!(api.hits.load(Ordering::SeqCst), 2);
    assert_eq!(polled.extraction.series_count(), 5);
    assert_eq!(polled.extraction.dropped, 1);
    let hits = jsonbridge::telemetry::limit_hits();
    assert!(
        hits.iter().any(|(l, n)| *l == "max_series" && *n >= 1),
        "{hits:?}"
    );
}

/// With a filter in `each`, a page can match nothing without being empty: `items` names the
/// page's list, whose emptiness ends the pages.
#[tokio::test]
async fn the_pages_own_list_says_when_a_filtered_page_is_empty() {
    let each = "$.items[?@.v >= 6]";
    let paginate = "{page_param: page, page_size: 3, size_param: per_page}";
    let api = start(Style::Page, 3).await;
    let polled = poll_text(&config(&api, paginate, each, "")).await.unwrap();
    // Page 1 (pods 0 to 2) matches nothing: taken for the last page.
    assert_eq!(polled.pages, 1);
    let api = start(Style::Page, 3).await;
    let paginate = "{page_param: page, page_size: 3, size_param: per_page, items: $.items}";
    let polled = poll_text(&config(&api, paginate, each, "")).await.unwrap();
    assert_eq!(polled.pages, 5);
    assert_eq!(pods(&polled), ["pod-6", "pod-7", "pod-8", "pod-9"]);
}
