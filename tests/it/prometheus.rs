//! A real Prometheus (Debian's `prometheus` package, installed by ./test.sh) scrapes
//! jsonbridge on loopback; its query API must return exactly what the fake upstream served,
//! also after an upstream change and after a reload. This checks the OpenMetrics output
//! (Prometheus asks for it) and label escaping with the real parser.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Bridge, Reply, Upstream, client};

pub(crate) struct Prometheus {
    child: Child,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of an instant query's answer: (labels without `__name__`, `job`, `instance`,
/// sorted; value), sorted.
pub(crate) type Rows = Vec<(Vec<(String, String)>, String)>;

impl Prometheus {
    /// A Prometheus that scrapes nothing and takes remote write on `port` (0: any), its
    /// data in `data`.
    pub(crate) fn receiver(port: u16, data: &std::path::Path) -> Self {
        Self::receiver_with(port, data, "")
    }

    /// [`Self::receiver`] with more of prometheus.yml (e.g. its `storage:` section).
    pub(crate) fn receiver_with(port: u16, data: &std::path::Path, config: &str) -> Self {
        Self::spawn(
            &format!("global: {{scrape_interval: 1m}}\n{config}"),
            port,
            Some(data),
            &["--web.enable-remote-write-receiver"],
        )
    }

    /// Scrapes `target` every second.
    fn start(target: &str) -> Self {
        Self::spawn(
            &format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: jsonbridge\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
            0,
            None,
            &[],
        )
    }

    /// Runs `prometheus` with `config` on `port` (0: any free one), its data in `data` (or
    /// its own temp dir).
    fn spawn(config: &str, port: u16, data: Option<&std::path::Path>, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let port = match port {
            0 => free_port(),
            p => p,
        };
        let data = data.map_or_else(|| dir.path().join("data"), std::path::Path::to_path_buf);
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}): install Debian's `prometheus` package, or run ./test.sh which does")
            });
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub(crate) async fn query(&self, q: &str) -> Option<Rows> {
        query(&self.base, q).await
    }

    pub(crate) async fn wait_query(
        &self,
        q: &str,
        what: &str,
        cond: impl Fn(&[(Vec<(String, String)>, String)]) -> bool,
    ) -> Rows {
        wait_query(&self.base, q, what, None, cond).await
    }
}

/// An instant query through a Prometheus-compatible API at `base` (Prometheus,
/// VictoriaMetrics: `nocache=1` keeps the latter from answering from its cache).
pub(crate) async fn query(base: &str, q: &str) -> Option<Rows> {
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/query")).unwrap();
    url.query_pairs_mut()
        .append_pair("query", q)
        .append_pair("nocache", "1");
    let resp = client().get(url).send().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
    let mut out: Rows = v["data"]["result"]
        .as_array()?
        .iter()
        .map(|r| {
            let mut labels: Vec<(String, String)> = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            (labels, r["value"][1].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    Some(out)
}

/// Queries `q` at `base` until `cond` holds (60 s at most), first asking `flush` (a path
/// that makes fresh samples searchable) each time.
pub(crate) async fn wait_query(
    base: &str,
    q: &str,
    what: &str,
    flush: Option<&str>,
    cond: impl Fn(&[(Vec<(String, String)>, String)]) -> bool,
) -> Rows {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(path) = flush {
            let _ = client().get(format!("{base}{path}")).send().await;
        }
        if let Some(r) = query(base, q).await
            && cond(&r)
        {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base} never showed {what}; last: {:?}",
            query(base, q).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_what_the_upstream_served() {
    let up = Upstream::start(Reply::json(
        r#"{"pods": [
            {"name": "plain", "v": 1.5},
            {"name": "quote\"back\\slash", "v": -2},
            {"name": "new\nline ünïcödé ☃", "v": 1e300},
            {"name": "tiny", "v": 5e-324},
            {"name": "LONG", "v": 7}
        ]}"#
        .replace("LONG", &"y".repeat(10_000))
        .as_str(),
    ))
    .await;
    let config = |metric: &str| {
        format!(
            "sources:\n  - name: s\n    url: {}/pods\n    every: 1s\n    metrics:\n      - {{name: {metric}, help: Test., each: \"$.pods[*]\", labels: {{pod: \"{{@.name}}\"}}, value: \"@.v\"}}\n",
            up.base
        )
    };
    let b = Bridge::start(&config("pod_value")).await;
    b.wait_metrics(10, "first poll", |m| m.contains("pod_value{"))
        .await;
    let prom = Prometheus::start(&b.base.replace("http://", ""));

    let got = prom
        .wait_query("pod_value", "the five series", |r| r.len() == 5)
        .await;
    let long = "y".repeat(10_000);
    assert_eq!(
        got,
        vec![
            (l(&[("pod", "new\nline ünïcödé ☃")]), "1e+300".to_string()),
            (l(&[("pod", "plain")]), "1.5".to_string()),
            (l(&[("pod", "quote\"back\\slash")]), "-2".to_string()),
            (l(&[("pod", "tiny")]), "5e-324".to_string()),
            (l(&[("pod", long.as_str())]), "7".to_string()),
        ],
        "Prometheus disagrees with the upstream"
    );
    let up_q = prom
        .wait_query("jsonbridge_source_up", "the self-metrics", |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(up_q, vec![(l(&[("source", "s")]), "1".to_string())]);

    // Upstream change: a value moves and a pod leaves; the pod's series goes stale.
    up.set(Reply::json(r#"{"pods": [{"name": "plain", "v": 99}]}"#));
    prom.wait_query("pod_value", "the upstream change", |r| {
        r == [(l(&[("pod", "plain")]), "99".to_string())]
    })
    .await;

    // A reload renames the metric: the new name appears, the old one goes stale.
    std::fs::write(&b.config, config("pod_value_renamed")).unwrap();
    prom.wait_query("pod_value_renamed", "the renamed metric", |r| {
        r == [(l(&[("pod", "plain")]), "99".to_string())]
    })
    .await;
    prom.wait_query("pod_value", "the old name to go stale", |r| r.is_empty())
        .await;
    drop(prom);
    b.stop().await;
}

/// Which timestamped samples a real Prometheus keeps on a scrape: those within about an hour
/// of its newest sample. Older ones it drops as out of bounds, although promtool accepts the
/// exposition; jsonbridge counts them (`jsonbridge_samples_too_old_total`) and `test` warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_drops_data_timestamps_older_than_an_hour() {
    let now = chrono::Utc::now();
    let at = |ago: i64| (now - chrono::Duration::seconds(ago)).to_rfc3339();
    let body = |pods: &[(&str, i64)]| {
        let items: Vec<String> = pods
            .iter()
            .map(|(p, ago)| format!(r#"{{"pod": "{p}", "t": "{}", "v": {ago}}}"#, at(*ago)))
            .collect();
        format!(r#"{{"points": [{}]}}"#, items.join(","))
    };
    // First only a fresh point: Prometheus' head then knows what "now" is (on an empty head,
    // the first scrape would take any time).
    let up = Upstream::start(Reply::json(&body(&[("fresh", 5)]))).await;
    let config = format!(
        "sources:\n  - name: s\n    url: {}/points\n    every: 1s\n    metrics:\n      - {{name: pod_value, help: Test., each: \"$.points[*]\", labels: {{pod: \"{{@.pod}}\"}}, value: \"@.v\", timestamp: \"@.t\"}}\n",
        up.base
    );
    let b = Bridge::start(&config).await;
    b.wait_metrics(10, "first poll", |m| m.contains("pod_value{"))
        .await;
    let prom = Prometheus::start(&b.base.replace("http://", ""));
    let kept = "count_over_time(pod_value[2d])";
    prom.wait_query(kept, "the fresh point", |r| r.len() == 1)
        .await;
    let points = [
        ("fresh", 5),
        ("half_an_hour", 30 * 60),
        ("two_hours", 2 * 3600),
        ("a_day", 24 * 3600),
    ];
    up.set(Reply::json(&body(&points)));
    prom.wait_query(kept, "the half-hour-old point", |r| r.len() == 2)
        .await;
    // Let a few more scrapes offer the old points again.
    b.wait_metrics(10, "the old points counted", |m| {
        crate::support::sample(
            m,
            "jsonbridge_samples_too_old_total{source=\"s\",metric=\"pod_value\"}",
        )
        .is_some_and(|n| n >= 4.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: Vec<String> = prom
        .query(kept)
        .await
        .unwrap()
        .into_iter()
        .map(|(labels, _)| labels[0].1.clone())
        .collect();
    assert_eq!(got, ["fresh", "half_an_hour"], "what Prometheus kept");
    // Prometheus says why: out of bounds.
    let own = crate::support::get_text(&format!("{}/metrics", prom.base)).await;
    let oob = crate::support::sample(&own, "prometheus_target_scrapes_sample_out_of_bounds_total")
        .unwrap_or(0.0);
    assert!(oob >= 1.0, "{own}");
    // The exposition itself is valid: promtool takes it.
    let exposition = b.metrics().await;
    crate::golden::promtool_check(&exposition).unwrap();
    // And `test` warns about the same two samples, before anything is deployed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), &config).unwrap();
    std::fs::write(dir.path().join("r.json"), body(&points)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
        .arg("test")
        .arg(dir.path().join("c.yaml"))
        .arg("--input")
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: pod_value: 2 samples with a data timestamp more than an hour old; a Prometheus scrape drops them as out of bounds"),
        "{stderr}"
    );
    drop(prom);
    b.stop().await;
}
