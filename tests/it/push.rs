//! Issue 17: remote write into real backends started here (Debian's `prometheus` with its
//! remote write receiver; ./test.sh installs it): what is pushed equals `/metrics`, a
//! deleted pod's series ends, a backend down for a while gets what was queued.

use std::time::Duration;

use super::prometheus::{Prometheus, l};
use super::support::*;

fn pods(list: &[(&str, f64)]) -> Reply {
    let items: Vec<String> = list
        .iter()
        .map(|(p, v)| format!(r#"{{"name": "{p}", "energy": {v}}}"#))
        .collect();
    Reply::json(&format!(r#"{{"pods": [{}]}}"#, items.join(",")))
}

fn config(upstream: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "sources:\n  - name: energy\n    url: {upstream}/pods\n    every: 1s\n    metrics:\n      - {{name: pod_energy_joules, help: Energy., each: \"$.pods[*]\", labels: {{pod: \"{{@.name}}\"}}, value: \"@.energy\"}}\n      - {{name: pods_seen, type: counter, help: Pods., value: \"length($.pods)\"}}\nremote_write:\n  - url: {endpoint}/api/v1/write\n    name: prom\n    external_labels: {{replica: a, cluster: eu-1}}\n    retry_backoff: 50ms\n{extra}"
    )
}

fn metric(body: &str, series: &str) -> Option<f64> {
    sample(body, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_series_equal_metrics_and_a_deleted_pods_series_ends() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver(0, data.path());
    let up = Upstream::start(pods(&[("a", 1.5), ("b", 2.25), ("c", 1e300)])).await;
    let b = Bridge::start(&config(&up.base, &prom.base, "")).await;
    let got = prom
        .wait_query("pod_energy_joules", "the three pods", |r| r.len() == 3)
        .await;
    let m = b.metrics().await;
    for (labels, value) in &got {
        let pod = &labels.iter().find(|(k, _)| k == "pod").unwrap().1;
        let want = metric(&m, &format!("pod_energy_joules{{pod=\"{pod}\"}}")).unwrap();
        assert_eq!(value.parse::<f64>().unwrap(), want, "{pod}");
        // External labels came along.
        assert!(
            labels.contains(&("replica".into(), "a".into())),
            "{labels:?}"
        );
        assert!(
            labels.contains(&("cluster".into(), "eu-1".into())),
            "{labels:?}"
        );
    }
    // A counter is pushed under its exposed name, `_total` included.
    prom.wait_query("pods_seen_total", "the counter", |r| {
        r == [(l(&[("cluster", "eu-1"), ("replica", "a")]), "3".to_string())]
    })
    .await;

    // Pod b is deleted: its series ends with a staleness marker, as on a scrape.
    up.set(pods(&[("a", 4.0), ("c", 1e300)]));
    prom.wait_query("pod_energy_joules", "pod b gone, a updated", |r| {
        r.len() == 2
            && r.iter()
                .any(|(l, v)| l.contains(&("pod".into(), "a".into())) && v == "4")
    })
    .await;

    let m = b.metrics().await;
    assert!(
        metric(
            &m,
            r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="sent"}"#
        )
        .unwrap()
            >= 8.0
    );
    assert_eq!(
        metric(
            &m,
            r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="failed"}"#
        ),
        Some(0.0)
    );
    assert!(
        metric(
            &m,
            r#"jsonbridge_remote_write_last_success_timestamp_seconds{endpoint="prom"}"#
        )
        .unwrap()
            > 0.0
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_for_a_while_gets_what_was_queued_and_polls_go_on() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver(0, data.path());
    let port = prom.port();
    let up = Upstream::start(pods(&[("a", 1.0)])).await;
    let b = Bridge::start(&config(&up.base, &prom.base, "")).await;
    prom.wait_query("pod_energy_joules", "the first push", |r| r.len() == 1)
        .await;
    drop(prom);
    let down = std::time::Instant::now();
    // Down for 30 s: polls go on (every second), their samples wait in the queue.
    up.set(pods(&[("a", 2.0)]));
    let m = b
        .wait_metrics(60, "30 s of queued samples and failed sends", |m| {
            down.elapsed() >= Duration::from_secs(30)
                && metric(
                    m,
                    r#"jsonbridge_remote_write_queue_samples{endpoint="prom"}"#,
                )
                .unwrap_or(0.0)
                    >= 4.0
                && metric(
                    m,
                    r#"jsonbridge_remote_write_retried_samples_total{endpoint="prom"}"#,
                )
                .unwrap_or(0.0)
                    > 0.0
        })
        .await;
    assert_eq!(
        polls(&m, "energy", "success").map(|n| n >= 25.0),
        Some(true)
    );
    let sent_before = metric(
        &m,
        r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="sent"}"#,
    )
    .unwrap();
    // Back, on the same port and data: what was queued arrives (the value of the outage).
    let prom = Prometheus::receiver(port, data.path());
    prom.wait_query(
        "pod_energy_joules",
        "the value pushed during the outage",
        |r| r.len() == 1 && r[0].1 == "2",
    )
    .await;
    // The samples of every poll during the outage are there, at their poll's time.
    let m = b
        .wait_metrics(20, "the queue drained", |m| {
            metric(
                m,
                r#"jsonbridge_remote_write_queue_samples{endpoint="prom"}"#,
            ) == Some(0.0)
        })
        .await;
    let sent = metric(
        &m,
        r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="sent"}"#,
    )
    .unwrap();
    assert!(sent > sent_before, "{sent} > {sent_before}");
    let got = prom
        .query("count_over_time(pod_energy_joules[10m])")
        .await
        .unwrap();
    let points: f64 = got[0].1.parse().unwrap();
    let polled = polls(&m, "energy", "success").unwrap();
    assert!(
        points >= polled - 2.0,
        "every poll's sample arrived once: {points} points for {polled} polls"
    );
    assert_eq!(
        metric(
            &m,
            r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="dropped"}"#
        ),
        Some(0.0)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_and_counts_them() {
    // Nothing listens: every send fails and the queue fills.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let up = Upstream::start(pods(&[("a", 1.0), ("b", 2.0), ("c", 3.0)])).await;
    let b = Bridge::start(&config(
        &up.base,
        &format!("http://127.0.0.1:{port}"),
        "    queue_capacity: 5\n    max_samples_per_send: 2\n",
    ))
    .await;
    let m = b
        .wait_metrics(20, "dropped samples", |m| {
            metric(
                m,
                r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="dropped"}"#,
            )
            .unwrap_or(0.0)
                >= 4.0
        })
        .await;
    assert!(
        metric(
            &m,
            r#"jsonbridge_remote_write_queue_samples{endpoint="prom"}"#
        )
        .unwrap()
            <= 5.0
    );
    // Polls and scrapes are untouched by the dead endpoint.
    assert!(m.contains("\npod_energy_joules{pod=\"a\"} 1"));
    assert_eq!(
        sample(&m, r#"jsonbridge_source_up{source="energy"}"#),
        Some(1.0)
    );
    b.stop().await;
}

/// A VictoriaMetrics single node (Debian's `victoria-metrics`, installed by ./test.sh) on a
/// free loopback port, its data in a temp dir; stopped when dropped.
struct Victoria {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Victoria {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::prometheus::free_port();
        let child = std::process::Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start victoria-metrics ({e}): install Debian's `victoria-metrics`, or run ./test.sh which does")
            });
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Queries until `cond` holds, asking VictoriaMetrics each time to make freshly
    /// written samples searchable.
    async fn wait_query(
        &self,
        q: &str,
        what: &str,
        cond: impl Fn(&[(Vec<(String, String)>, String)]) -> bool,
    ) -> Vec<(Vec<(String, String)>, String)> {
        super::prometheus::wait_query(&self.base, q, what, Some("/internal/force_flush"), cond)
            .await
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two shards times two replicas (`--shard INDEX/2`, `--mode push`) of one config push into
/// one VictoriaMetrics with deduplication: every series of every source comes out exactly
/// once, with the upstream's values, also after one replica of each shard is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_times_two_replicas_into_victoria_metrics_give_each_series_once() {
    let vm = Victoria::start(&["-dedup.minScrapeInterval=1s"]);
    let up = Upstream::start(pods(&[("a", 1.5), ("b", 2.5)])).await;
    // Six sources, the same pods each under a `src` label; no replica label: VictoriaMetrics
    // deduplicates identical series from HA pairs.
    let mut text = String::from("sources:\n");
    for i in 0..6 {
        text += &format!(
            "  - name: s{i}\n    url: {}/pods\n    every: 1s\n    metrics:\n      - {{name: pod_energy_joules, help: Energy., each: \"$.pods[*]\", labels: {{src: s{i}, pod: \"{{@.name}}\"}}, value: \"@.energy\"}}\n",
            up.base
        );
    }
    text += &format!(
        "remote_write:\n  - url: {}/api/v1/write\n    name: vm\n    external_labels: {{cluster: eu-1}}\n",
        vm.base
    );
    let mut replicas = Vec::new();
    for shard in ["0/2", "1/2"] {
        for _ in 0..2 {
            replicas.push(Bridge::start_shard(&text, shard, jsonbridge::app::Mode::Push).await);
        }
    }
    let all = |r: &[(Vec<(String, String)>, String)], a: &str| {
        r.len() == 12
            && r.iter().all(|(l, v)| {
                let pod = &l.iter().find(|(k, _)| k == "pod").unwrap().1;
                v == if pod == "a" { a } else { "2.5" }
            })
    };
    let got = vm
        .wait_query(
            "pod_energy_joules",
            "12 series (6 sources x 2 pods), once each",
            |r| all(r, "1.5"),
        )
        .await;
    let sources: std::collections::BTreeSet<String> = got
        .iter()
        .map(|(l, _)| l.iter().find(|(k, _)| k == "src").unwrap().1.clone())
        .collect();
    assert_eq!(sources.len(), 6, "every source on some shard");
    // Each shard polled only its own sources, and both shards had some.
    for r in &replicas {
        let m = r.metrics().await;
        let mine = (0..6)
            .filter(|i| {
                sample(&m, &format!("jsonbridge_source_up{{source=\"s{i}\"}}")) == Some(1.0)
            })
            .count();
        assert!(
            (1..6).contains(&mine),
            "a shard polls some, not all: {mine}"
        );
        assert!(
            !m.contains("\npod_energy_joules{"),
            "--mode push serves no series"
        );
    }
    // One replica of each shard stops; the others keep every series current.
    let survivors: Vec<Bridge> = {
        let mut kept = Vec::new();
        for (i, r) in replicas.into_iter().enumerate() {
            if i % 2 == 0 {
                r.stop().await;
            } else {
                kept.push(r);
            }
        }
        kept
    };
    up.set(pods(&[("a", 3.0), ("b", 2.5)]));
    vm.wait_query(
        "pod_energy_joules",
        "the new value from the survivors",
        |r| all(r, "3"),
    )
    .await;
    for r in survivors {
        r.stop().await;
    }
}

/// A reload that changes an endpoint's external labels restarts it with the new ones; one
/// that removes `remote_write` stops pushing and its self-metrics go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_restart_changed_endpoints_and_stop_removed_ones() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver(0, data.path());
    let up = Upstream::start(pods(&[("a", 1.0)])).await;
    let b = Bridge::start(&config(&up.base, &prom.base, "")).await;
    prom.wait_query("pod_energy_joules{replica=\"a\"}", "replica a", |r| {
        r.len() == 1
    })
    .await;
    let changed = config(&up.base, &prom.base, "").replace("replica: a", "replica: b");
    std::fs::write(&b.config, changed).unwrap();
    prom.wait_query(
        "pod_energy_joules{replica=\"b\"}",
        "replica b after the reload",
        |r| r.len() == 1,
    )
    .await;
    let without = config(&up.base, &prom.base, "");
    let without = &without[..without.find("remote_write:").unwrap()];
    std::fs::write(&b.config, without).unwrap();
    let m = b
        .wait_metrics(20, "the endpoint gone", |m| {
            !m.contains("jsonbridge_remote_write_samples_total")
        })
        .await;
    assert_eq!(
        sample(&m, "jsonbridge_config_last_reload_successful"),
        Some(1.0)
    );
    b.stop().await;
}

/// `--mode push`: the series reach the backend, `/metrics` shows jsonbridge's own metrics
/// only (to watch the pusher), health answers. `--mode serve` leaves `remote_write` unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_pushes_and_serves_only_self_metrics_serve_mode_does_not_push() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver(0, data.path());
    let up = Upstream::start(pods(&[("a", 1.0)])).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(&cfg, config(&up.base, &prom.base, "")).unwrap();
    let pushing = Daemon::start(&cfg, &["--mode", "push"], &[]);
    prom.wait_query("pod_energy_joules", "the pushed series", |r| r.len() == 1)
        .await;
    let m = get_text(&format!("http://{}/metrics", pushing.addr)).await;
    assert!(!m.contains("pod_energy_joules"), "{m}");
    assert!(m.contains("jsonbridge_remote_write_samples_total{endpoint=\"prom\",result=\"sent\"}"));
    assert!(m.contains("jsonbridge_source_up{source=\"energy\"} 1"));
    let health = client()
        .get(format!("http://{}/-/healthy", pushing.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (code, _) = pushing.terminate();
    assert_eq!(code, Some(0));

    let serving = Daemon::start(&cfg, &["--mode", "serve"], &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = get_text(&format!("http://{}/metrics", serving.addr)).await;
        if m.contains("pod_energy_joules{pod=\"a\"} 1") {
            assert!(!m.contains("jsonbridge_remote_write"), "{m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = serving.terminate();
}

/// Data timestamps 40 minutes old (an API reporting a past window) reach a Prometheus that
/// accepts out-of-order samples, at their own time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_data_timestamps_are_pushed_at_their_time() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver_with(
        0,
        data.path(),
        "storage: {tsdb: {out_of_order_time_window: 2h}}\n",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = now - 40 * 60;
    // First a current sample, so that the old one is out of order for the head.
    let up = Upstream::start(Reply::json(&format!(r#"{{"points": [[{now}, 1.0]]}}"#))).await;
    let text = format!(
        "sources:\n  - name: past\n    url: {}/p\n    every: 1s\n    metrics:\n      - {{name: window_energy_joules, help: Energy., value: \"$.points[-1][1]\", timestamp: \"$.points[-1][0]\", timestamp_format: unix}}\nremote_write:\n  - url: {}/api/v1/write\n    name: prom\n",
        up.base, prom.base
    );
    let b = Bridge::start(&text).await;
    prom.wait_query("window_energy_joules", "the current point", |r| {
        r.len() == 1
    })
    .await;
    up.set(Reply::json(&format!(r#"{{"points": [[{at}, 7.5]]}}"#)));
    // Asked at the old point's time, Prometheus has its value.
    let q = format!("window_energy_joules @ {at}");
    prom.wait_query(&q, "the 40-minute-old point", |r| {
        r.len() == 1 && r[0].1 == "7.5"
    })
    .await;
    let m = b.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="failed"}"#
        ),
        Some(0.0)
    );
    b.stop().await;
}

/// A source removed by a reload: its series end in the backend (staleness markers), as
/// they leave /metrics; the other source's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_sources_series_end_in_the_backend() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver(0, data.path());
    let up = Upstream::start(Reply::json(r#"{"n": 5}"#)).await;
    let two = format!(
        "sources:\n{}{}remote_write:\n  - url: {}/api/v1/write\n    name: prom\n",
        source("kept", &format!("{}/k", up.base), ""),
        source("dropped", &format!("{}/d", up.base), ""),
        prom.base
    );
    let b = Bridge::start(&two).await;
    prom.wait_query("{__name__=~\"kept_n|dropped_n\"}", "both sources", |r| {
        r.len() == 2
    })
    .await;
    let without = two.replace(&source("dropped", &format!("{}/d", up.base), ""), "");
    std::fs::write(&b.config, without).unwrap();
    prom.wait_query(
        "{__name__=~\"kept_n|dropped_n\"}",
        "the removed source's series ended",
        |r| r.len() == 1,
    )
    .await;
    b.stop().await;
}

/// A sample the backend refuses (three hours old, for a Prometheus without an out-of-order
/// window) costs only itself: the refused batch is split until the bad series stands alone,
/// so the sample beside it still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sample_drops_only_itself() {
    let data = tempfile::tempdir().unwrap();
    let prom = Prometheus::receiver(0, data.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = |cur: u32, at: u64, old: u32| {
        Reply::json(&format!(r#"{{"cur": {cur}, "old": [{at}, {old}]}}"#))
    };
    let up = Upstream::start(body(1, now, 5)).await;
    let text = format!(
        "sources:\n  - name: mixed\n    url: {}/m\n    every: 1s\n    metrics:\n      - {{name: cur_v, help: C., value: $.cur}}\n      - {{name: old_v, help: O., value: \"$.old[1]\", timestamp: \"$.old[0]\", timestamp_format: unix}}\nremote_write:\n  - url: {}/api/v1/write\n    name: prom\n",
        up.base, prom.base
    );
    let b = Bridge::start(&text).await;
    prom.wait_query("{__name__=~\"cur_v|old_v\"}", "both series", |r| {
        r.len() == 2
    })
    .await;
    // Now `old_v` is three hours old: Prometheus refuses it (400), and would refuse the
    // whole request with it.
    up.set(body(2, now - 3 * 3600, 6));
    prom.wait_query("cur_v", "the new value beside the refused one", |r| {
        r.len() == 1 && r[0].1 == "2"
    })
    .await;
    let m = b
        .wait_metrics(10, "the refused sample counted", |m| {
            metric(
                m,
                r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="failed"}"#,
            )
            .unwrap_or(0.0)
                >= 1.0
        })
        .await;
    // Only the bad sample of each poll failed, never its neighbour.
    let failed = metric(
        &m,
        r#"jsonbridge_remote_write_samples_total{endpoint="prom",result="failed"}"#,
    )
    .unwrap();
    let polls_since = polls(&m, "mixed", "success").unwrap();
    assert!(
        failed <= polls_since,
        "{failed} failed in {polls_since} polls"
    );
    b.stop().await;
}
