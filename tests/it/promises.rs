//! Issue 14, points 13 and 14: the README's promises proven as stated (not more loosely),
//! the ones that had no test, and the faults that held before kept held. Loopback only,
//! every loop bounded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Bridge, Daemon, Raw, RawUpstream, Reply, Upstream, get_text, polls, sample, source, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_while_it_streams() {
    // An endless chunked body (64 MiB at most) against a 1 MiB limit: refused after about
    // the limit, so the upstream could write little more than that and the socket buffers.
    let endless = RawUpstream::start(Raw::EndlessChunks).await;
    let config = format!(
        "sources:\n{}",
        source(
            "big",
            &format!("{}/x", endless.base),
            "    max_body_bytes: 1048576\n"
        )
    );
    let b = Bridge::start(&config).await;
    let m = b
        .wait_metrics(20, "the refusal", |m| {
            polls(m, "big", "body_too_large") == Some(1.0)
        })
        .await;
    assert!(m.contains("jsonbridge_source_up{source=\"big\"} 0"));
    // Once the writer has stopped (its count stands still), look at what it wrote.
    let written = || endless.written.load(std::sync::atomic::Ordering::SeqCst);
    let mut last = written();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if written() == last {
            break;
        }
        last = written();
    }
    let written = written();
    assert!(
        written < 16 << 20,
        "{written} bytes were taken from the upstream for a 1 MiB limit"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_is_followed_ten_hops_then_refused() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { (axum::http::StatusCode::FOUND, [("location", "/loop")]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source("loop", &format!("{base}/start"), "")
    ))
    .await;
    b.wait_metrics(10, "the refusal", |m| {
        polls(m, "loop", "redirect") == Some(1.0)
    })
    .await;
    // The first request and ten hops; the eleventh Location is not followed.
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 11);
    let (_, page) = b.get("/source/loop").await;
    assert!(page.contains("too many redirects (more than 10)"), "{page}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_without_rules_refuses_every_target() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let config = "sources: []\nmodules:\n  - name: m\n    metrics:\n      - {name: m_n, help: N., value: $.n}\n";
    let b = Bridge::start(config).await;
    for target in [
        format!("{}/x", up.base),
        "http://127.0.0.1:1/".to_string(),
        "https://example.invalid/".to_string(),
    ] {
        let (code, body) = b.get(&format!("/probe?module=m&target={target}")).await;
        assert_eq!(code, 403, "{target}: {body}");
        assert!(body.contains("not allowed by probe.allow_targets"));
    }
    assert_eq!(up.hits(), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_staleness_keeps_the_snapshot_until_its_deadline() {
    let victim = RawUpstream::start(Raw::json(r#"{"n": 9}"#)).await;
    let config = format!(
        "sources:\n  - name: v\n    url: {}/x\n    every: 1s\n    max_staleness: 4s\n    metrics:\n      - {{name: v_n, help: N., value: $.n}}\n",
        victim.base
    );
    let b = Bridge::start(&config).await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nv_n 9"))
        .await;
    victim.set(Raw::Respond {
        status: 500,
        content_type: "text/plain",
        body: vec![],
    });
    // The last success, as the process reports it; the deadline is 4 s after it.
    let failing = b
        .wait_metrics(10, "a failed poll", |m| {
            polls(m, "v", "http_status").is_some()
        })
        .await;
    let last_ok = sample(
        &failing,
        r#"jsonbridge_source_last_success_timestamp_seconds{source="v"}"#,
    )
    .unwrap();
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // Before the deadline, polls fail and the snapshot is still served.
    if now() < last_ok + 3.0 {
        assert!(failing.contains("\nv_n 9"), "{failing}");
    }
    let gone = b
        .wait_metrics(15, "the snapshot to age out", |m| !m.contains("\nv_n 9"))
        .await;
    let at = now();
    assert!(
        at >= last_ok + 4.0 - 0.05,
        "gone {:.2} s after the last success",
        at - last_ok
    );
    assert_eq!(
        sample(&gone, r#"jsonbridge_source_series{source="v"}"#),
        Some(0.0)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_success_timestamp_is_the_time_of_the_poll() {
    let up = Upstream::start(Reply::json(r#"{"n": 3}"#)).await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source("t", &format!("{}/x", up.base), "")
    ))
    .await;
    let m = b
        .wait_metrics(10, "first poll", |m| m.contains("\nt_n 3"))
        .await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t = sample(
        &m,
        r#"jsonbridge_source_last_success_timestamp_seconds{source="t"}"#,
    )
    .unwrap();
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    // A source that never succeeded says 0.
    b.stop().await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source("never", "http://127.0.0.1:1/x", "")
    ))
    .await;
    let m = b
        .wait_metrics(10, "a failed poll", |m| {
            polls(m, "never", "connect").is_some()
        })
        .await;
    assert_eq!(
        sample(
            &m,
            r#"jsonbridge_source_last_success_timestamp_seconds{source="never"}"#
        ),
        Some(0.0)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_rules() {
    let answer = |status: u16| {
        Upstream::start(Reply {
            status,
            ..Reply::json(r#"{"n": 1}"#)
        })
    };
    let (not_found, broken, busy) = (answer(404).await, answer(500).await, answer(429).await);
    let slow = Upstream::start(Reply {
        delay: Duration::from_secs(3),
        ..Reply::json(r#"{"n": 1}"#)
    })
    .await;
    let retry = |n: u32, timeout: &str| {
        format!("    retries: {n}\n    retry_backoff: 10ms\n    timeout: {timeout}\n")
    };
    let config = format!(
        "sources:\n{}{}{}{}",
        source("nf", &format!("{}/x", not_found.base), &retry(3, "5s")),
        source("br", &format!("{}/x", broken.base), &retry(2, "5s")),
        source("bz", &format!("{}/x", busy.base), &retry(1, "5s")),
        source("sl", &format!("{}/x", slow.base), &retry(5, "1s")),
    );
    let b = Bridge::start(&config).await;
    let m = b
        .wait_metrics(15, "four failed polls", |m| {
            ["nf", "br", "bz"]
                .iter()
                .all(|s| polls(m, s, "http_status").is_some())
                && polls(m, "sl", "timeout").is_some()
        })
        .await;
    // A 4xx is never retried; a 5xx and a 429 are, as often as `retries` says; all attempts
    // share the one timeout, so an attempt that used it up is the last.
    assert_eq!(not_found.hits(), 1);
    assert_eq!(broken.hits(), 3);
    assert_eq!(busy.hits(), 2);
    assert_eq!(slow.hits(), 1);
    assert_eq!(polls(&m, "sl", "timeout"), Some(1.0));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_line_per_failed_poll() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jsonbridge.yaml");
    // Every item of a 200-item body would be a problem, too: still one line per poll.
    std::fs::write(
        &config,
        "sources:\n  - name: down\n    url: http://127.0.0.1:1/x\n    every: 1s\n    metrics:\n      - {name: d_n, help: N., value: $.n}\n",
    )
    .unwrap();
    let d = Daemon::start(&config, &[], &[]);
    let base = format!("http://{}", d.addr);
    let count = |m: &str| polls(m, "down", "connect").unwrap_or(0.0) as usize;
    let mut n1 = 0;
    for _ in 0..100 {
        n1 = count(&get_text(&format!("{base}/metrics")).await);
        if n1 >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n1 >= 3);
    let lines = || d.log().matches("poll failed").count();
    wait_for(10, "the log to catch up", || lines() >= n1).await;
    let logged = lines();
    let n2 = count(&get_text(&format!("{base}/metrics")).await);
    assert!(n1 <= logged && logged <= n2, "{n1} <= {logged} <= {n2}");
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn exit_codes_for_bad_flags_and_an_address_in_use() {
    let bin = env!("CARGO_BIN_EXE_jsonbridge");
    let out = std::process::Command::new(bin)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(bin)
        .args(["--web.max-connections", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "sources: []\n").unwrap();
    let out = std::process::Command::new(bin)
        .arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_gets_431() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source("s", &format!("{}/x", up.base), "")
    ))
    .await;
    let mut sock = tokio::net::TcpStream::connect(b.running.addr)
        .await
        .unwrap();
    // Just past 16 KiB, sent whole before reading the answer.
    let head = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(17 << 10)
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    let (code, _) = b.get("/-/healthy").await;
    assert_eq!(code, 200);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_cut_off_while_scrapes_go_on() {
    let up = Upstream::start(Reply::json(r#"{"n": 1}"#)).await;
    let limits = jsonbridge::app::Limits {
        server: jsonbridge::expose::web::ServerLimits {
            first_request_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let b = Bridge::start_with(
        &format!("sources:\n{}", source("s", &format!("{}/x", up.base), "")),
        limits,
    )
    .await;
    let mut sock = tokio::net::TcpStream::connect(b.running.addr)
        .await
        .unwrap();
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = std::time::Instant::now();
    let mut cut = false;
    // One byte every 100 ms: the whole head would take 10 s; the server gives it 1 s.
    for byte in head.iter() {
        if sock.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => {
                // hyper answers 408 for a head that did not come in time.
                cut = true;
                break;
            }
            Err(_) => {}
        }
        // Scrapes are served meanwhile.
        if started.elapsed() > Duration::from_millis(500)
            && started.elapsed() < Duration::from_millis(650)
        {
            let (code, _) = b.get("/metrics").await;
            assert_eq!(code, 200);
        }
    }
    assert!(
        cut,
        "a head trickled for {:?} was never cut off",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_lengths_are_contained() {
    // Shorter than announced (the connection closes early), longer than announced (the
    // rest is not read): each is a failed poll of its own kind; the process serves on.
    let short = RawUpstream::start(Raw::ResetMidBody).await;
    let long = RawUpstream::start(Raw::Lying {
        announced: 5,
        body: br#"{"n": 12345}"#.to_vec(),
    })
    .await;
    let config = format!(
        "sources:\n{}{}",
        source("short", &format!("{}/x", short.base), ""),
        source("long", &format!("{}/x", long.base), "")
    );
    let b = Bridge::start(&config).await;
    let m = b
        .wait_metrics(10, "both polls", |m| {
            polls(m, "short", "body").is_some() && polls(m, "long", "invalid_json").is_some()
        })
        .await;
    assert!(!m.contains("\nlong_n "), "{m}");
    let (code, _) = b.get("/-/healthy").await;
    assert_eq!(code, 200);
    b.stop().await;
}
