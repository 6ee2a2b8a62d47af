//! Fan-out sources (`fan_out:`): a list, then one request per item, against a fake
//! list-then-details API on loopback with 500 clusters; bounded concurrency, the item's
//! labels on its series, a child that times out (fail or skip), values from the data kept
//! inside one path segment, and an item whose URL cannot be made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::support::{Bridge, poll_text, sample, test_subcommand};

#[derive(Clone, Default)]
struct Api {
    clusters: usize,
    /// The cluster whose stats answer this late.
    slow: Arc<Mutex<Option<(String, Duration)>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    /// Extra items in the list, as JSON.
    extra: Arc<Mutex<Vec<String>>>,
}

async fn api(State(a): State<Api>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/clusters" {
        let mut items: Vec<String> = (0..a.clusters)
            .map(|i| format!(r#"{{"id": "c{i:03}", "name": "Cluster {i}"}}"#))
            .collect();
        items.extend(a.extra.lock().unwrap().iter().cloned());
        return (
            [("content-type", "application/json")],
            format!(r#"{{"clusters": [{}]}}"#, items.join(",")),
        )
            .into_response();
    }
    a.paths.lock().unwrap().push(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
    );
    let now = a.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    a.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let id = path
        .strip_prefix("/clusters/")
        .and_then(|p| p.strip_suffix("/stats"))
        .unwrap_or("")
        .to_string();
    let slow = a.slow.lock().unwrap().clone();
    // A little latency, so that requests overlap.
    let wait = match slow {
        Some((s, d)) if s == id => d,
        _ => Duration::from_millis(2),
    };
    tokio::time::sleep(wait).await;
    a.in_flight.fetch_sub(1, Ordering::SeqCst);
    let n: f64 = id.trim_start_matches('c').parse().unwrap_or(-1.0);
    (
        [("content-type", "application/json")],
        format!(r#"{{"cpu": {n}, "nodes": [{{"up": true}}, {{"up": false}}]}}"#),
    )
        .into_response()
}

async fn start(clusters: usize) -> (Api, String) {
    let a = Api {
        clusters,
        ..Default::default()
    };
    let app = Router::new().fallback(api).with_state(a.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (a, base)
}

fn config(base: &str, fan_out: &str) -> String {
    format!(
        "sources:\n  - name: fleet\n    url: {base}/clusters\n    every: 1h\n    timeout: 20s\n    fan_out:\n      each: \"$.clusters[*]\"\n      url: \"{base}/clusters/{{@.id}}/stats\"\n      labels: {{cluster: \"{{@.name}}\", id: \"{{@.id}}\"}}\n{fan_out}    metrics:\n      - {{name: cluster_cpu, help: CPU., value: $.cpu}}\n      - {{name: cluster_nodes_up, help: Nodes up., each: \"$.nodes[?@.up == true]\", aggregate: count}}\n"
    )
}

fn family<'a>(
    p: &'a jsonbridge::schedule::Polled,
    name: &str,
) -> &'a jsonbridge::extract::FamilySamples {
    p.extraction
        .families
        .iter()
        .find(|f| f.family == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_children_with_their_labels_within_the_concurrency() {
    let (api, base) = start(500).await;
    let polled = poll_text(&config(&base, "      concurrency: 8\n"))
        .await
        .unwrap();
    let cpu = family(&polled, "cluster_cpu");
    assert_eq!(cpu.label_names.to_vec(), ["cluster", "id"]);
    assert_eq!(cpu.series.len(), 500);
    let c7 = cpu
        .series
        .iter()
        .find(|s| s.labels.to_vec() == ["Cluster 7", "c007"])
        .unwrap();
    assert_eq!(c7.value, 7.0);
    // An aggregate in each child's document, per child (its labels tell them apart).
    let up = family(&polled, "cluster_nodes_up");
    assert_eq!(up.series.len(), 500);
    assert!(up.series.iter().all(|s| s.value == 1.0));
    let stats = polled.fan_out.clone().unwrap();
    assert_eq!((stats.requests, stats.skipped.len()), (500, 0));
    let most = api.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=8).contains(&most), "{most} in flight at most");
    assert_eq!(api.paths.lock().unwrap().len(), 500);
}

#[tokio::test]
async fn a_child_that_times_out_fails_the_poll_or_is_skipped() {
    let (api, base) = start(20).await;
    *api.slow.lock().unwrap() = Some(("c013".into(), Duration::from_secs(5)));
    let err = poll_text(&config(&base, "      timeout: 300ms\n"))
        .await
        .err()
        .expect("the slow child fails the poll");
    assert_eq!(err.kind(), "timeout");
    assert!(
        err.to_string()
            .starts_with("item 14 (/clusters/c013/stats): "),
        "{err}"
    );
    let polled = poll_text(&config(
        &base,
        "      timeout: 300ms\n      on_error: skip\n",
    ))
    .await
    .unwrap();
    assert_eq!(family(&polled, "cluster_cpu").series.len(), 19);
    let stats = polled.fan_out.unwrap();
    assert_eq!(stats.skipped.get("timeout"), Some(&1));
    assert!(
        stats
            .first_skip
            .unwrap()
            .starts_with("item 14 (/clusters/c013/stats): "),
    );
}

#[tokio::test]
async fn values_from_the_data_stay_in_their_path_segment() {
    let (api, base) = start(0).await;
    api.extra.lock().unwrap().extend([
        r#"{"id": "../admin", "name": "up"}"#.to_string(),
        r#"{"id": "a/b?x=1#f", "name": "slash"}"#.to_string(),
        r#"{"name": "no id"}"#.to_string(),
    ]);
    let polled = poll_text(&config(
        &base,
        "      query: {region: \"{@.name}\"}\n      on_error: skip\n",
    ))
    .await
    .unwrap();
    let mut paths = api.paths.lock().unwrap().clone();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/clusters/..%2Fadmin/stats?region=up",
            "/clusters/a%2Fb%3Fx%3D1%23f/stats?region=slash",
        ]
    );
    // The item without an id gives no request, and is counted.
    let stats = polled.fan_out.unwrap();
    assert_eq!(stats.skipped.get("template"), Some(&1));
    assert_eq!(
        stats.first_skip.as_deref(),
        Some("item 3: label url: @.id not found")
    );
}

#[tokio::test]
async fn the_daemon_counts_requests_and_skipped_items() {
    let (api, base) = start(10).await;
    api.extra
        .lock()
        .unwrap()
        .push(r#"{"name": "no id"}"#.to_string());
    let b = Bridge::start(&config(&base, "")).await;
    let m = b
        .wait_metrics(10, "first poll", |m| m.contains("cluster_cpu{"))
        .await;
    assert_eq!(
        sample(
            &m,
            r#"jsonbridge_source_last_poll_requests{source="fleet"}"#
        ),
        Some(11.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"jsonbridge_fan_out_skipped_total{source="fleet",kind="template"}"#
        ),
        Some(1.0)
    );
    assert!(
        m.contains(r#"cluster_cpu{cluster="Cluster 3",id="c003"} 3"#),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"jsonbridge_source_last_poll_fetch_seconds{source="fleet"}"#
        )
        .is_some_and(|s| s > 0.0)
    );
    let (_, page) = b.get("/source/fleet").await;
    assert!(
        page.contains(": the list and 10 item requests (1 items left out since start-up)"),
        "{page}"
    );
    b.stop().await;
}

#[test]
fn the_host_is_written_in_the_config() {
    for (url, ok) in [
        ("https://api.internal/clusters/{@.id}/stats", true),
        ("https://api.internal/{@.path}", true),
        ("{@.url}", false),
        ("https://{@.host}/stats", false),
        ("https://api.internal{@.path}", false),
    ] {
        let text = format!(
            "sources:\n  - name: s\n    url: https://api.internal/list\n    fan_out: {{each: \"$[*]\", url: \"{url}\"}}\n    metrics: [{{name: m, help: M., value: 1}}]\n"
        );
        let got = jsonbridge::config::parse(
            &text,
            &jsonbridge::config::Origin {
                name: "t".into(),
                base_dir: ".".into(),
            },
            &|_| None,
        );
        match (got, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => assert!(
                e.to_string()
                    .contains("the data may fill in the path and query, not the host"),
                "{e}"
            ),
            (got, _) => panic!("{url}: {:?}", got.err()),
        }
    }
}

/// `jsonbridge test` with a saved list and answers: each item's request shown, the answers
/// read with the item's labels, the missing ones listed.
#[test]
fn test_reads_a_saved_list_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "sources:\n  - name: fleet\n    url: https://api.example/clusters\n    fan_out:\n      each: \"$.clusters[*]\"\n      url: \"https://api.example/clusters/{@.id}/stats\"\n      labels: {cluster: \"{@.id}\"}\n    metrics:\n      - {name: cluster_cpu, help: CPU., value: $.cpu}\n",
    )
    .unwrap();
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    std::fs::write(
        saved.join("0-list.json"),
        r#"{"clusters": [{"id": "eu 1"}, {"id": "us"}, {"id": "ap"}]}"#,
    )
    .unwrap();
    std::fs::write(saved.join("1-eu.json"), r#"{"cpu": 0.5}"#).unwrap();
    std::fs::write(saved.join("2-us.json"), r#"{"cpu": 0.25}"#).unwrap();
    let (stdout, _) = test_subcommand(
        &cfg,
        &saved,
        &[
            "list: GET https://api.example/clusters\n",
            "item 1: GET https://api.example/clusters/eu%201/stats\n",
            "item 2: GET https://api.example/clusters/us/stats\n",
            "item 3: GET https://api.example/clusters/ap/stats (not given: add its answer with another --input)\n",
        ],
    );
    assert!(
        stdout.contains("cluster_cpu{cluster=\"eu 1\"} 0.5\ncluster_cpu{cluster=\"us\"} 0.25\n"),
        "{stdout}"
    );
}

/// A probe module fans out from its target's list too.
#[tokio::test]
async fn probe_modules_fan_out() {
    let (_api, base) = start(5).await;
    let text = format!(
        "sources: []\nmodules:\n  - name: fleet\n    fan_out:\n      each: \"$.clusters[*]\"\n      url: \"{base}/clusters/{{@.id}}/stats\"\n      labels: {{id: \"{{@.id}}\"}}\n    metrics:\n      - {{name: cluster_cpu, help: CPU., value: $.cpu}}\nprobe:\n  allow_targets: [\"{base}/\"]\n"
    );
    let b = Bridge::start(&text).await;
    let (status, body) = b
        .get(&format!("/probe?module=fleet&target={base}/clusters"))
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..5 {
        assert!(
            body.contains(&format!("cluster_cpu{{id=\"c{i:03}\"}} {i}")),
            "{body}"
        );
    }
    b.stop().await;
}

/// Items past `max_series` would only be truncated away: no more item requests are made.
#[tokio::test]
async fn max_series_stops_the_item_requests() {
    let (api, base) = start(40).await;
    let text = config(&base, "      concurrency: 1\n").replace(
        "    timeout: 20s\n",
        "    timeout: 20s\n    max_series: 10\n",
    );
    let polled = poll_text(&text).await.unwrap();
    let asked = api.paths.lock().unwrap().len();
    // Two series an item: five answers reach the limit; one or two more may be in flight.
    assert!((5..=8).contains(&asked), "{asked} item requests");
    assert_eq!(polled.extraction.series_count(), 10);
}

/// The list is read only where the items and the templates look (captures, the root, a
/// captured node's field), and gives the same requests and labels as a whole read.
#[test]
fn a_pruned_list_gives_the_same_requests() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "sources:\n  - name: fleet\n    url: https://api.example/regions\n    fan_out:\n      each: \"$.regions.{region}.clusters[*]\"\n      url: \"https://api.example/{region}/clusters/{@.id}\"\n      labels: {region: \"{region}\", dc: \"{$.meta.dc}\", zone: \"{region.zone}\"}\n    metrics:\n      - {name: cluster_cpu, help: CPU., value: $.cpu}\n",
    )
    .unwrap();
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let junk: Vec<String> = (0..1000)
        .map(|i| format!("[{i}, {{\"x\": {i}}}]"))
        .collect();
    std::fs::write(
        saved.join("0-list.json"),
        format!(
            r#"{{"junk": [{}], "meta": {{"dc": "fra"}}, "regions": {{"eu": {{"zone": "z1", "clusters": [{{"id": "a"}}, {{"id": "b"}}]}}, "us": {{"zone": "z9", "clusters": [{{"id": "c"}}]}}}}}}"#,
            junk.join(",")
        ),
    )
    .unwrap();
    for (i, cpu) in ["0.5", "0.25", "1"].iter().enumerate() {
        std::fs::write(
            saved.join(format!("{}.json", i + 1)),
            format!(r#"{{"cpu": {cpu}}}"#),
        )
        .unwrap();
    }
    let (stdout, _) = test_subcommand(
        &cfg,
        &saved,
        &[
            "item 1: GET https://api.example/eu/clusters/a\n",
            "item 2: GET https://api.example/eu/clusters/b\n",
            "item 3: GET https://api.example/us/clusters/c\n",
        ],
    );
    for line in [
        "cluster_cpu{region=\"eu\",dc=\"fra\",zone=\"z1\"} 0.5",
        "cluster_cpu{region=\"us\",dc=\"fra\",zone=\"z9\"} 1.0",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
}
