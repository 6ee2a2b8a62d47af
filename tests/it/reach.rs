//! Issue 16 (reaching real APIs), point 5: which statuses are data, whether redirects are
//! followed, HTTP/2 offered or not. Upstreams on loopback.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::support::*;

#[tokio::test]
async fn a_503_whose_body_is_the_data_is_read_where_it_is_listed() {
    let up = Upstream::start(Reply {
        status: 503,
        ..Reply::json(r#"{"n": 7}"#)
    })
    .await;
    let url = format!("{}/health", up.base);
    let b = Bridge::start(&format!(
        "sources:\n{}{}",
        // Listed: data, and not retried (a status read as data is no failure).
        source(
            "listed",
            &url,
            "    valid_status_codes: [200, 503]\n    retries: 2\n    retry_backoff: 1ms\n"
        ),
        source("plain", &url, ""),
    ))
    .await;
    let m = b
        .wait_metrics(10, "both polled", |m| {
            m.contains("\nlisted_n 7") && polls(m, "plain", "http_status") == Some(1.0)
        })
        .await;
    assert_eq!(
        sample(&m, r#"jsonbridge_source_up{source="listed"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"jsonbridge_source_up{source="plain"}"#),
        Some(0.0)
    );
    assert!(!m.contains("\nplain_n"));
    assert_eq!(polls(&m, "listed", "success"), Some(1.0));
    assert_eq!(
        up.hits(),
        2,
        "one request each: the listed 503 was not retried"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_list_without_200_refuses_a_200() {
    let up = Upstream::start(Reply::json(r#"{"n": 7}"#)).await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source(
            "only503",
            &format!("{}/x", up.base),
            "    valid_status_codes: [503]\n"
        ),
    ))
    .await;
    let m = b
        .wait_metrics(10, "a refused poll", |m| {
            polls(m, "only503", "http_status") == Some(1.0)
        })
        .await;
    assert!(!m.contains("\nonly503_n"));
    b.stop().await;
}

#[tokio::test]
async fn with_follow_redirects_off_a_redirect_is_a_status_and_goes_nowhere() {
    // 302 to itself, forever: followed, it takes 11 requests (tested in `promises`); not
    // followed, one, and the poll fails on the status.
    let up = RawUpstream::start(Raw::RedirectLoop).await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source(
            "stay",
            &format!("{}/x", up.base),
            "    follow_redirects: false\n    enable_http2: false\n"
        ),
    ))
    .await;
    b.wait_metrics(10, "a failed poll", |m| {
        polls(m, "stay", "http_status") == Some(1.0)
    })
    .await;
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the Location was not followed"
    );
    b.stop().await;
}

/// What a request asked with: `If-None-Match`, `If-Modified-Since`.
type Asked = (Option<String>, Option<String>);

/// An upstream with versions: answers 304 to a request that names the current one (by ETag
/// or by date), the body otherwise; records what each request asked with.
#[derive(Clone, Default)]
struct Versioned {
    version: Arc<Mutex<u32>>,
    asked: Arc<Mutex<Vec<Asked>>>,
}

const MODIFIED: &str = "Fri, 04 Dec 2026 10:00:00 GMT";

impl Versioned {
    async fn start(&self) -> String {
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        let me = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let me = me.clone();
            async move {
                let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
                let (etag, since) = (get("if-none-match"), get("if-modified-since"));
                me.asked.lock().unwrap().push((etag.clone(), since));
                let v = *me.version.lock().unwrap();
                let current = format!("\"v{v}\"");
                if etag.as_deref() == Some(current.as_str()) {
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                (
                    [
                        ("content-type", "application/json".to_string()),
                        ("etag", current),
                        ("last-modified", MODIFIED.to_string()),
                    ],
                    format!(r#"{{"n": {v}}}"#),
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }
}

#[tokio::test]
async fn a_304_keeps_the_snapshot_and_a_new_version_replaces_it() {
    let up = Versioned::default();
    *up.version.lock().unwrap() = 1;
    let base = up.start().await;
    // Polled every second; the snapshot would age out after 2 s without the 304s that say
    // it is current.
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source("v", &format!("{base}/x"), "    max_staleness: 2s\n")
            .replace("every: 1h", "every: 1s"),
    ))
    .await;
    let m = b
        .wait_metrics(15, "four polls answered 304", |m| {
            polls(m, "v", "not_modified").unwrap_or(0.0) >= 4.0
        })
        .await;
    assert!(
        m.contains("\nv_n 1"),
        "the snapshot is still served after 4 s"
    );
    assert_eq!(sample(&m, r#"jsonbridge_source_up{source="v"}"#), Some(1.0));
    assert_eq!(polls(&m, "v", "success"), Some(1.0));
    // The first request asked with nothing; every later one with the first answer's
    // validators.
    let asked = up.asked.lock().unwrap().clone();
    assert_eq!(asked[0], (None, None));
    for a in &asked[1..] {
        assert_eq!(a, &(Some("\"v1\"".to_string()), Some(MODIFIED.to_string())));
    }
    // A new version: read, served, and asked with from then on.
    *up.version.lock().unwrap() = 2;
    b.wait_metrics(10, "version 2", |m| m.contains("\nv_n 2"))
        .await;
    let n = up.asked.lock().unwrap().len();
    b.wait_metrics(10, "a poll after version 2", |_| {
        up.asked.lock().unwrap().len() > n + 1
    })
    .await;
    let last = up.asked.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.0.as_deref(), Some("\"v2\""));
    b.stop().await;
}

/// `body` compressed as `coding` (the names HTTP uses).
fn compress(coding: &str, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(body).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(body, 3).unwrap(),
        _ => body.to_vec(),
    }
}

/// Serves `/<coding>/<n>`: `{"n": n, "pad": ...}` compressed as `coding`, and records the
/// `Accept-Encoding` of each request.
async fn compressing(pad: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::extract::Path;
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let app = axum::Router::new().route(
        "/{coding}/{n}",
        axum::routing::get(
            move |Path((coding, n)): Path<(String, u32)>, h: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let accept = h
                        .get("accept-encoding")
                        .map(|v| v.to_str().unwrap().to_string());
                    seen.lock().unwrap().push(accept.unwrap_or_default());
                    let body = format!(r#"{{"n": {n}, "pad": "{}"}}"#, "0".repeat(pad));
                    (
                        [
                            ("content-type", "application/json".to_string()),
                            ("content-encoding", coding.clone()),
                        ],
                        compress(&coding, body.as_bytes()),
                    )
                        .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, asked)
}

#[tokio::test]
async fn compressed_bodies_are_decoded_and_both_sizes_shown() {
    let (base, asked) = compressing(100_000).await;
    let codings = ["gzip", "deflate", "br", "zstd"];
    let sources: String = codings
        .iter()
        .enumerate()
        .map(|(i, c)| source(&format!("c_{c}"), &format!("{base}/{c}/{i}"), ""))
        .collect();
    let b = Bridge::start(&format!("sources:\n{sources}")).await;
    let m = b
        .wait_metrics(10, "every coding polled", |m| {
            codings
                .iter()
                .all(|c| polls(m, &format!("c_{c}"), "success") == Some(1.0))
        })
        .await;
    for (i, c) in codings.iter().enumerate() {
        assert!(m.contains(&format!("\nc_{c}_n {i}")), "{c}");
        let decoded = sample(
            &m,
            &format!(r#"jsonbridge_source_response_bytes{{source="c_{c}"}}"#),
        );
        let wire = sample(
            &m,
            &format!(r#"jsonbridge_source_response_wire_bytes{{source="c_{c}"}}"#),
        );
        let want = format!(r#"{{"n": {i}, "pad": "{}"}}"#, "0".repeat(100_000)).len();
        assert_eq!(decoded, Some(want as f64), "{c}");
        assert!(
            wire.unwrap() < want as f64 / 20.0,
            "{c}: {wire:?} on the wire"
        );
    }
    for a in asked.lock().unwrap().iter() {
        assert_eq!(a, "gzip, deflate, br, zstd");
    }
    let page = reqwest::get(format!("{}/source/c_gzip", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("on the wire"),
        "the source's page shows both sizes"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_compressed_bomb_is_refused_as_it_inflates() {
    // 32 MiB of zeros (a few kilobytes compressed) against a 1 MiB limit, in each coding;
    // and a coding jsonbridge does not decode.
    let (base, _) = compressing(32 << 20).await;
    let codings = ["gzip", "deflate", "br", "zstd"];
    let mut sources: String = codings
        .iter()
        .map(|c| {
            source(
                &format!("b_{c}"),
                &format!("{base}/{c}/1"),
                "    max_body_bytes: 1048576\n",
            )
        })
        .collect();
    sources += &source("b_compress", &format!("{base}/compress/1"), "");
    let b = Bridge::start(&format!("sources:\n{sources}")).await;
    b.wait_metrics(20, "every bomb refused", |m| {
        codings
            .iter()
            .all(|c| polls(m, &format!("b_{c}"), "body_too_large") == Some(1.0))
            && polls(m, "b_compress", "body") == Some(1.0)
    })
    .await;
    b.stop().await;
}

/// A real proxy server (Debian's tinyproxy, installed by `./test.sh`) on a free loopback
/// port, with basic auth; stopped when dropped.
struct Tinyproxy {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 10\nMaxClients 16\nAllow 127.0.0.1\n\
                 LogLevel Critical\nBasicAuth {user} {password}\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tinyproxy (./test.sh installs it)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 10, "tinyproxy did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn requests_go_through_a_real_proxy_whose_credentials_never_show() {
    const SECRET: &str = "proxy-secret-93";
    let up = Upstream::start(Reply::json(r#"{"n": 3}"#)).await;
    let proxy = Tinyproxy::start("jb", SECRET);
    let url = format!("{}/x", up.base);
    let through = |user: &str, extra: &str| {
        format!(
            "    proxy_url: http://{user}@127.0.0.1:{}\n{extra}",
            proxy.port
        )
    };
    let b = Bridge::start(&format!(
        "sources:\n{}{}{}",
        source("via", &url, &through(&format!("jb:{SECRET}"), "")),
        source("refused", &url, &through("jb:not-the-password", "")),
        source(
            "around",
            &url,
            &through("jb:not-the-password", "    no_proxy: 127.0.0.1\n")
        ),
    ))
    .await;
    let m = b
        .wait_metrics(15, "every source polled", |m| {
            m.contains("\nvia_n 3")
                && m.contains("\naround_n 3")
                && polls(m, "refused", "http_status") == Some(1.0)
        })
        .await;
    // Through the proxy (which adds its `Via`), around it (`no_proxy`), and refused by it
    // (407) before reaching the upstream.
    let seen = up.seen();
    assert_eq!(
        seen.len(),
        2,
        "the refused request never reached the upstream"
    );
    let vias: Vec<bool> = seen.iter().map(|s| s.headers.contains_key("via")).collect();
    assert_eq!(
        vias.iter().filter(|v| **v).count(),
        1,
        "one through the proxy"
    );
    // The credentials show nowhere.
    let mut shown = m.clone();
    for page in ["/", "/source/via", "/source/refused", "/source/around"] {
        shown += &reqwest::get(format!("{}{page}", b.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(shown.contains("refused"), "the pages were read");
    assert!(!shown.contains(SECRET) && !shown.contains("not-the-password"));
    b.stop().await;
}

/// `proxy_from_environment` (the default): a separate process with `HTTP_PROXY` set (the
/// variables are process-wide, so not in this test process), through the real proxy; a
/// source with `proxy_from_environment: false` goes around it; the proxy's password,
/// given in the variable, in no log line or page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_proxy_applies_unless_a_source_says_no() {
    const SECRET: &str = "env-proxy-secret-31";
    let up = Upstream::start(Reply::json(r#"{"n": 6}"#)).await;
    let proxy = Tinyproxy::start("jb", SECRET);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jsonbridge.yaml");
    let url = format!("{}/x", up.base);
    std::fs::write(
        &cfg,
        format!(
            "sources:\n{}{}",
            source("env", &url, ""),
            source("direct", &url, "    proxy_from_environment: false\n"),
        ),
    )
    .unwrap();
    let proxy_url = format!("http://jb:{SECRET}@127.0.0.1:{}", proxy.port);
    let d = Daemon::start(
        &cfg,
        &["--log.level", "debug"],
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let metrics = loop {
        let m = get_text(&format!("http://{}/metrics", d.addr)).await;
        if m.contains("\nenv_n 6") && m.contains("\ndirect_n 6") {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "not polled:\n{m}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen.iter()
            .filter(|s| s.headers.contains_key("via"))
            .count(),
        1,
        "one through the environment's proxy, one direct"
    );
    let mut shown = metrics;
    for page in ["/", "/source/env", "/source/direct"] {
        shown += &get_text(&format!("http://{}{page}", d.addr)).await;
    }
    let (_, log) = d.terminate();
    assert!(!shown.contains(SECRET) && !log.contains(SECRET));
}
