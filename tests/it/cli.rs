//! The binary as a user runs it: `check`, start-up errors, signals, logs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Daemon, Reply, Upstream, client, get_text};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
}

#[test]
fn check_accepts_the_bundled_config_and_examples() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["config/jsonbridge.yaml", "examples/energy/jsonbridge.yaml"] {
        let out = bin()
            .args(["check", &format!("{root}/{file}")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(": OK (1 source, 2 metrics, 2 families)"),
            "{stdout}"
        );
    }
}

#[test]
fn check_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "sources:\n  - name: a\n    url: http://x/${JSONBRIDGE_UNSET_VAR}\n    schedule: \"* * * * *\"\n    metrics:\n      - {name: 9lives, value: 1}\n",
    )
    .unwrap();
    let out = bin().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("3 errors in {}:", file.display())),
        "{err}"
    );
    assert!(
        err.contains(
            "line 3 column 10: sources[0].url: environment variable JSONBRIDGE_UNSET_VAR is not set"
        ),
        "{err}"
    );
    assert!(
        err.contains("line 4 column 15: sources[0].schedule: cron"),
        "{err}"
    );
    assert!(
        err.contains(
            "line 6 column 16: sources[0].metrics[0].name: invalid metric name \"9lives\""
        ),
        "{err}"
    );

    let out = bin()
        .args(["check", "/nonexistent/jsonbridge.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read config file /nonexistent/jsonbridge.yaml")
    );
}

#[test]
fn a_broken_config_at_start_up_exits_1_with_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "sources:\n  - name: a\n    urll: x\n").unwrap();
    let out = bin()
        .arg("--config.file")
        .arg(&file)
        .args(["--web.listen-address", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `urll`"), "{err}");
}

/// Scrapes `url` until the body contains `needle` (10 s at most).
async fn wait_scrape(url: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = client().get(url).send().await.unwrap();
        let body = resp.text().await.unwrap();
        if body.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Multi-threaded: the test blocks its thread while the fake upstream must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_sighup_reloads() {
    let up = Upstream::start(Reply::json(r#"{"n": 5}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    let text = |metric: &str| {
        format!(
            "sources:\n  - name: s\n    url: {}/x\n    every: 1h\n    metrics: [{{name: {metric}, value: $.n}}]\n",
            up.base
        )
    };
    std::fs::write(&cfg, text("first")).unwrap();
    // No watcher, so only the signal can reload.
    let d = Daemon::start(&cfg, &["--config.no-watch"], &[]);
    d.wait_log(10, "source started");
    let url = format!("http://{}/metrics", d.addr);
    wait_scrape(&url, "\nfirst 5").await;
    std::fs::write(&cfg, text("second")).unwrap();
    d.signal("-HUP");
    d.wait_log(10, "config reloaded");
    wait_scrape(&url, "\nsecond 5").await;
    let (code, log) = d.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("level=info"), "logfmt by default:\n{log}");
}

// Multi-threaded: the test blocks its thread while the fake upstream must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_secrets_and_json_format_works() {
    let token = "planted-T0KEN-4f8a";
    let up = Upstream::start(Reply {
        status: 503,
        ..Reply::json("no")
    })
    .await;
    // A token endpoint that hands out the planted value as the token.
    let tokens = Upstream::start(Reply::json(&format!(
        r#"{{"access_token": "{token}", "token_type": "Bearer", "expires_in": 60}}"#
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sources:\n  - name: oauth\n    url: {}/o\n    oauth2: {{client_id: c, client_secret: \"${{JSONBRIDGE_PLANTED}}\", token_url: \"{}/token\"}}\n    every: 1s\n    metrics: [{{name: o, value: $.n}}]\n  - name: s\n    url: {}/x?token=${{JSONBRIDGE_PLANTED}}\n    bearer_token: ${{JSONBRIDGE_PLANTED}}\n    headers: {{X-Api-Key: \"${{JSONBRIDGE_PLANTED}}\"}}\n    every: 1s\n    metrics: [{{name: n, value: $.n}}]\n  - name: refused\n    url: http://127.0.0.1:9/x?token=${{JSONBRIDGE_PLANTED}}\n    every: 1s\n    metrics: [{{name: m, value: $.n}}]\n  - name: proxied\n    url: http://127.0.0.1:9/y\n    proxy_url: http://u:${{JSONBRIDGE_PLANTED}}@127.0.0.1:9\n    every: 1s\n    metrics: [{{name: p, value: $.n}}]\n",
            up.base,
            tokens.base,
            up.base
        ),
    )
    .unwrap();
    let d = Daemon::start(
        &cfg,
        &["--log.format", "json", "--log.level", "debug"],
        &[("JSONBRIDGE_PLANTED", token)],
    );
    d.wait_log(15, "\"kind\":\"http_status\"");
    d.wait_log(15, "\"kind\":\"connect\"");
    // The source behind a proxy (whose password is the token) failed too, and logged it.
    let proxied = r#"jsonbridge_source_polls_total{source="proxied",result="connect"}"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !get_text(&format!("http://{}/metrics", d.addr))
        .await
        .contains(proxied)
    {
        assert!(Instant::now() < deadline, "the proxied source never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for page in ["/", "/metrics", "/source/proxied", "/source/oauth"] {
        let body = get_text(&format!("http://{}{page}", d.addr)).await;
        assert!(!body.contains(token), "{page} leaks the token");
    }
    // The OAuth2 source got its token (the planted value) and sent it upstream.
    assert!(tokens.hits() >= 1);
    assert!(
        up.seen()
            .iter()
            .any(|s| s.path == "/o" && s.headers["authorization"] == format!("Bearer {token}")),
        "the OAuth2 token is sent upstream"
    );
    let (code, log) = d.terminate();
    assert_eq!(code, Some(0));
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "JSON lines only:\n{log}"
    );
    assert!(!log.contains(token), "log leaks the token:\n{log}");
    assert!(up.hits() >= 1);
    assert!(
        up.seen()
            .iter()
            .any(|s| s.path == "/x" && s.headers["x-api-key"] == token),
        "the token is sent upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_poll_disjoint_sources_that_cover_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.json"), r#"{"n": 1}"#).unwrap();
    let mut text = String::from("sources:\n");
    for i in 0..12 {
        text.push_str(&format!(
            "  - name: s{i}\n    url: file://d.json\n    every: 1h\n    metrics: [{{name: n, help: N., labels: {{src: s{i}}}, value: $.n}}]\n"
        ));
    }
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(&cfg, text).unwrap();
    let mut seen: Vec<String> = Vec::new();
    for shard in ["0/2", "1/2"] {
        let d = Daemon::start(&cfg, &["--shard", shard], &[]);
        let url = format!("http://{}/-/ready", d.addr);
        let deadline = Instant::now() + Duration::from_secs(10);
        while client().get(&url).send().await.unwrap().status() != 200 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = get_text(&format!("http://{}/metrics", d.addr)).await;
        let mine: Vec<String> = body
            .lines()
            .filter_map(|l| l.strip_prefix("n{src=\""))
            .map(|l| l.split('"').next().unwrap().to_string())
            .collect();
        assert!(!mine.is_empty() && mine.len() < 12, "{shard}: {mine:?}");
        seen.extend(mine);
        let _ = d.terminate();
    }
    seen.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    want.sort();
    assert_eq!(seen, want, "every source on exactly one shard");
}

#[test]
fn version_has_build_info() {
    let out = bin().arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("jsonbridge 0.1.0 (revision "), "{v}");
    assert!(v.contains(", rustc "), "{v}");
}

#[test]
fn completions_are_generated() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config.file") && text.contains("jsonbridge"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_says_how_long_fetching_took_in_the_debug_log() {
    // The bench reads both figures from this line to split a poll's time.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.json"), r#"{"n": 1}"#).unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &cfg,
        "sources:\n  - name: s\n    url: file://d.json\n    every: 1h\n    metrics: [{name: n, value: $.n}]\n",
    )
    .unwrap();
    let d = Daemon::start(&cfg, &["--log.format", "json", "--log.level", "debug"], &[]);
    d.wait_log(15, "poll succeeded");
    let (_, log) = d.terminate();
    let line = log.lines().find(|l| l.contains("poll succeeded")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let (total, fetch) = (v["duration_ms"].as_u64(), v["fetch_ms"].as_u64());
    assert!(
        matches!((total, fetch), (Some(t), Some(f)) if f <= t),
        "{line}"
    );
}
