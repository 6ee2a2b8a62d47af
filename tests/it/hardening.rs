//! Issue 14: the inputs that knocked jsonbridge over or turned it against its own network.
//! Each test failed on the code before the fix; all traffic stays on loopback and every loop
//! is bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Bridge, Reply, Upstream, client, one_polled_source, polls, sample, source, wait_for,
};

/// What a scripted upstream saw: path, query and headers of each request, in order.
type Log = Arc<Mutex<Vec<(String, Option<String>, HeaderMap, Instant)>>>;

/// A loopback upstream whose answer to the n-th request (from 0) is `answer(n, path)`.
async fn scripted(
    answer: impl Fn(usize, &str) -> Response + Send + Sync + 'static,
) -> (String, Log) {
    let log: Log = Arc::default();
    let answer = Arc::new(answer);
    let l = log.clone();
    let app = Router::new().fallback(move |req: axum::extract::Request| {
        let (l, answer) = (l.clone(), answer.clone());
        async move {
            let path = req.uri().path().to_string();
            let n = {
                let mut l = l.lock().unwrap();
                l.push((
                    path.clone(),
                    req.uri().query().map(str::to_string),
                    req.headers().clone(),
                    Instant::now(),
                ));
                l.len() - 1
            };
            answer(n, &path)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log)
}

fn redirect(status: u16, to: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::LOCATION, to.to_string())],
    )
        .into_response()
}

fn json(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_no_redirect_out_of_the_allowlist() {
    // The host outside the allowlist, which must see nothing: neither a request nor the key.
    let (outside, outside_log) = scripted(|_, _| json(r#"{"n": 666}"#)).await;
    let out = outside.clone();
    let (allowed, allowed_log) = scripted(move |_, path| match path {
        "/api/away" => redirect(302, &format!("{out}/api/x")),
        "/api/inside" => redirect(302, "/api/data"),
        _ => json(r#"{"n": 7}"#),
    })
    .await;
    let config = format!(
        "sources: []\nmodules:\n  - name: m\n    headers: {{X-Api-Key: k3y-of-the-module}}\n    metrics:\n      - {{name: m_n, help: N., value: $.n}}\nprobe:\n  allow_targets: [\"{allowed}/api/\"]\n"
    );
    let b = Bridge::start(&config).await;
    let (code, body) = b
        .get(&format!("/probe?module=m&target={allowed}/api/away"))
        .await;
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("(redirect)") && body.contains("not in probe.allow_targets"),
        "{body}"
    );
    assert!(!body.contains("666"), "{body}");
    assert_eq!(
        outside_log.lock().unwrap().len(),
        0,
        "the outside host was reached"
    );
    // A hop that stays inside the allowlist is followed, with the module's headers.
    let (code, body) = b
        .get(&format!("/probe?module=m&target={allowed}/api/inside"))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("m_n 7"), "{body}");
    let seen = allowed_log.lock().unwrap().clone();
    assert_eq!(seen.last().unwrap().0, "/api/data");
    assert_eq!(seen.last().unwrap().2["x-api-key"], "k3y-of-the-module");
    let m = b.metrics().await;
    assert!(
        sample(
            &m,
            r#"jsonbridge_limit_hits_total{limit="redirect_refused"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_stay_with_their_origin_across_redirects() {
    let (other, other_log) = scripted(|_, _| json(r#"{"n": 2}"#)).await;
    let o = other.clone();
    let (home, home_log) = scripted(move |_, path| match path {
        "/start" => redirect(302, "/moved"),
        "/moved" => redirect(302, &format!("{o}/elsewhere?from=home")),
        "/post" => redirect(307, &format!("{o}/elsewhere")),
        _ => json(r#"{"n": 1}"#),
    })
    .await;
    let headers = "    headers: {X-Api-Key: k3y-123, Accept: application/json}\n    bearer_token: t0ken-456\n";
    let config = format!(
        "sources:\n{}{}",
        source("away", &format!("{home}/start?api_key=q-s3cret"), headers),
        source(
            "posted",
            &format!("{home}/post"),
            &format!("{headers}    method: POST\n    body: '{{\"q\": 1}}'\n")
        ),
    );
    let b = Bridge::start(&config).await;
    let m = b
        .wait_metrics(10, "both polls", |m| {
            m.contains("\naway_n 2") && polls(m, "posted", "redirect").is_some()
        })
        .await;
    // Same origin: the headers go along. Another origin: only content negotiation, no
    // credentials, no Referer (which would carry the query's token).
    let home_seen = home_log.lock().unwrap().clone();
    let moved = home_seen.iter().find(|s| s.0 == "/moved").unwrap();
    assert_eq!(moved.2["x-api-key"], "k3y-123");
    assert_eq!(moved.2["authorization"], "Bearer t0ken-456");
    let other_seen = other_log.lock().unwrap().clone();
    assert_eq!(
        other_seen.len(),
        1,
        "the 307 with a body must not reach the other origin"
    );
    let h = &other_seen[0].2;
    assert!(h.get("x-api-key").is_none(), "{h:?}");
    assert!(h.get("authorization").is_none(), "{h:?}");
    assert!(h.get("referer").is_none(), "{h:?}");
    assert_eq!(h["accept"], "application/json");
    for s in home_seen.iter() {
        assert!(s.2.get("referer").is_none());
    }
    // The refused 307 says why, without the token.
    let (_, page) = b.get("/source/posted").await;
    assert!(
        page.contains("would send the request body to another origin"),
        "{page}"
    );
    assert!(!m.contains("s3cret") && !page.contains("s3cret"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for_within_the_timeout_or_ends_the_poll() {
    let too_busy = || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "slow down",
        )
            .into_response()
    };
    // Asks for 1 s once, then answers.
    let (patient, patient_log) = scripted(move |n, _| {
        if n == 0 {
            too_busy()
        } else {
            json(r#"{"n": 3}"#)
        }
    })
    .await;
    // Asks for two minutes, more than the poll's 3 s.
    let (busy, busy_log) = scripted(|_, _| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "120")],
            "down for maintenance",
        )
            .into_response()
    })
    .await;
    let retry = "    timeout: 3s\n    retries: 3\n    retry_backoff: 10ms\n";
    let config = format!(
        "sources:\n{}{}",
        source("patient", &format!("{patient}/x"), retry),
        source("busy", &format!("{busy}/x"), retry)
    );
    let started = Instant::now();
    let b = Bridge::start(&config).await;
    let m = b
        .wait_metrics(10, "both polls", |m| {
            m.contains("\npatient_n 3") && polls(m, "busy", "http_status") == Some(1.0)
        })
        .await;
    let p = patient_log.lock().unwrap().clone();
    assert_eq!(p.len(), 2);
    assert!(
        p[1].3 - p[0].3 >= Duration::from_secs(1),
        "retried after {:?}, before the 1 s asked",
        p[1].3 - p[0].3
    );
    // The busy upstream was asked once: no retry could wait two minutes within 3 s.
    assert_eq!(busy_log.lock().unwrap().len(), 1);
    let (_, page) = b.get("/source/busy").await;
    assert!(page.contains("Retry-After asks for 120s"), "{page}");
    assert!(
        sample(&m, r#"jsonbridge_limit_hits_total{limit="retry_after"}"#).is_some_and(|n| n >= 1.0)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_declares_nothing_or_nests_too_deep_is_kept_out() {
    let (_up, b) = one_polled_source().await;
    let deep_block = format!("sources:\n{}x\n", "- ".repeat(5000));
    let deep_flow = format!("sources: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    for (i, text) in [
        "# only a comment\n",
        "sources:\n",
        "sources:\nmodules:\n",
        deep_block.as_str(),
        deep_flow.as_str(),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&b.config, text).unwrap();
        let (code, body) = b.post("/-/reload").await;
        assert_eq!(code, 500, "{text:.40}: {body}");
        assert!(
            body.contains("declares no source") || body.contains("nests deeper than 64 levels"),
            "{body}"
        );
        let m = b.metrics().await;
        assert!(m.contains("\nkept_n 5"), "{m}");
        assert!(m.contains("jsonbridge_config_last_reload_successful 0"));
        // Counted (the watcher may count a file it saw between two of these as well).
        assert!(
            sample(&m, r#"jsonbridge_config_reloads_total{result="invalid"}"#)
                .is_some_and(|n| n >= (i + 1) as f64),
            "{m}"
        );
    }
    // Saying it on purpose works.
    std::fs::write(&b.config, "sources: []\n").unwrap();
    let (code, body) = b.post("/-/reload").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("removed [kept]"), "{body}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_an_oversized_config_is_refused_without_stalling_anything() {
    let (_up, b) = one_polled_source().await;
    let config = std::fs::read_to_string(&b.config).unwrap();
    // A FIFO: opening it for reading would wait for a writer forever.
    std::fs::remove_file(&b.config).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(&b.config)
        .status()
        .unwrap();
    assert!(ok.success());
    let reload = client().post(format!("{}/-/reload", b.base)).send();
    let r = tokio::time::timeout(Duration::from_secs(10), reload)
        .await
        .expect("a reload of a FIFO must not hang")
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("is not a regular file"));
    let (code, _) = b.get("/-/healthy").await;
    assert_eq!(code, 200);
    // Over the 16 MiB cap: refused by its size, before it is read.
    std::fs::remove_file(&b.config).unwrap();
    let big = format!("{config}# {}\n", "x".repeat(17 << 20));
    std::fs::write(&b.config, big).unwrap();
    let (code, body) = b.post("/-/reload").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("more than the 16777216 bytes --config.max-bytes allows"),
        "{body}"
    );
    let m = b.metrics().await;
    assert!(m.contains("\nkept_n 5"));
    // Both refused reads are counted (the watcher may have counted its own as well).
    assert!(
        sample(&m, r#"jsonbridge_config_reloads_total{result="read"}"#).is_some_and(|n| n >= 2.0),
        "{m}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_pieces_is_applied_once_whole() {
    let up = Upstream::start(Reply::json(r#"{"n": 5}"#)).await;
    let a = source("a", &format!("{}/a", up.base), "");
    let bb = source("b", &format!("{}/b", up.base), "");
    let c = source("c", &format!("{}/c", up.base), "");
    let b = Bridge::start(&format!("sources:\n{a}{bb}")).await;
    b.wait_metrics(10, "first polls", |m| m.contains("\nb_n 5"))
        .await;
    // An in-place write in three pieces with pauses longer than the watcher's debounce;
    // each prefix is a valid config (the first removes b and c).
    let whole = format!("sources:\n{a}{bb}{c}");
    let pieces = [
        &whole[..9 + a.len()],
        &whole[9 + a.len()..9 + a.len() + bb.len()],
        &whole[9 + a.len() + bb.len()..],
    ];
    let mut f = std::fs::File::create(&b.config).unwrap();
    for p in pieces {
        use std::io::Write;
        f.write_all(p.as_bytes()).unwrap();
        f.flush().unwrap();
        let m = b.metrics().await;
        assert!(m.contains("\nb_n 5"), "a prefix was applied:\n{m}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(f);
    let m = b
        .wait_metrics(10, "the whole file", |m| m.contains("\nc_n 5"))
        .await;
    assert!(m.contains("\nb_n 5"));
    assert_eq!(
        sample(&m, r#"jsonbridge_config_reloads_total{result="success"}"#),
        Some(1.0),
        "{m}"
    );
    b.stop().await;
}

/// A bridge whose connection limits are small enough to test.
async fn small_server() -> Bridge {
    let up = Upstream::start(Reply::json(r#"{"n": 5}"#)).await;
    let config = format!("sources:\n{}", source("s", &format!("{}/x", up.base), ""));
    let limits = jsonbridge::app::Limits {
        server: jsonbridge::expose::web::ServerLimits {
            max_connections: 16,
            first_request_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
        },
        ..Default::default()
    };
    Bridge::start_with(&config, limits).await
}

/// Whether the server closed `sock` within `secs` (EOF or reset).
async fn closed_within(sock: &mut tokio::net::TcpStream, secs: u64) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_cannot_keep_scrapes_out() {
    let b = small_server().await;
    let addr = b.running.addr;
    b.wait_metrics(10, "first poll", |m| m.contains("\ns_n 5"))
        .await;
    // 64 sockets that send nothing, four times the limit; two that stop after the HTTP/2
    // preface; one that makes a request, then stays idle.
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        silent.push(s);
    }
    let mut kept_alive = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept_alive
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept_alive.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Scrapes still get in while they are all open: a new connection takes an idle one's
    // place.
    for _ in 0..5 {
        let (code, _) = b.get("/metrics").await;
        assert_eq!(code, 200);
    }
    // Every one of them is closed by the server: the silent ones after 1 s, the idle
    // keep-alive one after 2 s.
    for s in silent.iter_mut() {
        assert!(
            closed_within(s, 10).await,
            "a silent connection stayed open"
        );
    }
    assert!(closed_within(&mut kept_alive, 10).await);
    let m = b.metrics().await;
    let idle = sample(
        &m,
        r#"jsonbridge_limit_hits_total{limit="idle_connection"}"#,
    )
    .unwrap();
    assert!(idle >= 1.0, "{m}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_run_a_few_at_a_time() {
    let slow = Upstream::start(Reply {
        delay: Duration::from_millis(300),
        ..Reply::json(r#"{"n": 1}"#)
    })
    .await;
    let config = format!(
        "sources: []\nmodules:\n  - name: m\n    metrics:\n      - {{name: m_n, help: N., value: $.n}}\nprobe:\n  allow_targets: [\"{}/\"]\n",
        slow.base
    );
    let limits = jsonbridge::app::Limits {
        max_concurrent_probes: 2,
        ..Default::default()
    };
    let b = Bridge::start_with(&config, limits).await;
    let mut probes = Vec::new();
    for i in 0..8 {
        let url = format!("{}/probe?module=m&target={}/p{i}", b.base, slow.base);
        probes.push(tokio::spawn(async move {
            client().get(url).send().await.unwrap().status().as_u16()
        }));
    }
    for p in probes {
        assert_eq!(p.await.unwrap(), 200);
    }
    assert_eq!(slow.hits(), 8);
    assert!(
        slow.max_in_flight() <= 2,
        "{} probes at once",
        slow.max_in_flight()
    );
    let m = b.metrics().await;
    assert!(
        sample(
            &m,
            r#"jsonbridge_limit_hits_total{limit="probe_concurrency"}"#
        )
        .is_some_and(|n| n >= 1.0)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_guesses_do_not_stall_a_verified_scrape() {
    let up = Upstream::start(Reply::json(r#"{"n": 5}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    // Cost 8: slow enough that 60 guesses take a while with two at a time.
    let hash = bcrypt::hash("right-pw", 8).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
    let config = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &config,
        format!("sources:\n{}", source("s", &format!("{}/x", up.base), "")),
    )
    .unwrap();
    let d =
        crate::support::Daemon::start(&config, &["--web.config.file", web.to_str().unwrap()], &[]);
    let base = format!("http://{}", d.addr);
    let ok = |r: reqwest::Response| r.status().as_u16();
    // The right password, verified once and then cached.
    let scrape = || {
        client()
            .get(format!("{base}/metrics"))
            .basic_auth("prometheus", Some("right-pw"))
            .send()
    };
    assert_eq!(ok(scrape().await.unwrap()), 200);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut guesses = Vec::new();
    for i in 0..60 {
        let (url, done) = (format!("{base}/metrics"), done.clone());
        let user = if i % 2 == 0 { "prometheus" } else { "nobody" };
        guesses.push(tokio::spawn(async move {
            let r = client()
                .get(url)
                .basic_auth(user, Some(format!("guess-{i}")))
                .send()
                .await
                .unwrap();
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r.status().as_u16()
        }));
    }
    wait_for(10, "guesses in flight", || {
        d.log().contains("auth_concurrency")
    })
    .await;
    // The cached credential passes while most guesses still wait for bcrypt.
    assert_eq!(ok(scrape().await.unwrap()), 200);
    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        finished < 40,
        "{finished} of 60 guesses ended before a cached scrape"
    );
    for g in guesses {
        assert!(matches!(g.await.unwrap(), 401 | 503));
    }
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_at_once_queue_for_the_body_budget() {
    // Two sources of 3 MiB each, answered at the same moment, under a 4 MiB budget: the
    // second body waits for the first to be read, and both polls succeed.
    let body = format!(r#"{{"n": 1, "pad": "{}"}}"#, "x".repeat(3 << 20));
    let up = Upstream::start(Reply {
        delay: Duration::from_millis(300),
        ..Reply::json(&body)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &config,
        format!(
            "sources:\n{}{}",
            source("a", &format!("{}/a", up.base), ""),
            source("b", &format!("{}/b", up.base), "")
        ),
    )
    .unwrap();
    let d =
        crate::support::Daemon::start(&config, &["--limits.body-bytes-in-flight", "4194304"], &[]);
    let base = format!("http://{}", d.addr);
    let mut m = String::new();
    for _ in 0..100 {
        m = crate::support::get_text(&format!("{base}/metrics")).await;
        if m.contains("\na_n 1") && m.contains("\nb_n 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m.contains("\na_n 1") && m.contains("\nb_n 1"), "{m}");
    assert_eq!(
        sample(&m, r#"jsonbridge_limit_hits_total{limit="body_budget"}"#),
        Some(1.0),
        "{m}"
    );
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_take_the_descriptors_polls_need() {
    // Under a 256-descriptor limit, 400 connections that send nothing (more than the limit
    // itself): scrapes are answered and a poll every second keeps succeeding meanwhile.
    let up = Upstream::start(Reply::json(r#"{"n": 4}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jsonbridge.yaml");
    std::fs::write(
        &config,
        format!(
            "sources:\n  - name: p\n    url: {}/x\n    every: 1s\n    metrics:\n      - {{name: p_n, help: N., value: $.n}}\n",
            up.base
        ),
    )
    .unwrap();
    let d = crate::support::Daemon::start_with_open_files(
        &config,
        &["--web.first-request-timeout", "60s"],
        256,
    );
    let addr: std::net::SocketAddr = d.addr.parse().unwrap();
    let base = format!("http://{}", d.addr);
    let mut idle = Vec::new();
    for _ in 0..400 {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(s)) => idle.push(s),
            _ => break,
        }
    }
    assert!(
        idle.len() >= 200,
        "only {} connections could be opened",
        idle.len()
    );
    let polls_before = up.hits();
    for _ in 0..5 {
        let r = client()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("\np_n 4"));
    }
    wait_for(10, "two more polls", || up.hits() >= polls_before + 2).await;
    let m = crate::support::get_text(&format!("{base}/metrics")).await;
    assert!(
        sample(&m, r#"jsonbridge_limit_hits_total{limit="connections"}"#).is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(sample(&m, r#"jsonbridge_source_up{source="p"}"#), Some(1.0));
    drop(idle);
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}
