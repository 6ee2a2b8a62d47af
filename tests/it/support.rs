//! Test helpers: a controllable fake upstream on 127.0.0.1:0, a running jsonbridge on
//! 127.0.0.1:0 with its config in a temp dir, scraping, and waiting for a condition.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonbridge::app::{self, Running};

/// A source named `name` polling `url` hourly, with `extra` YAML lines, and one metric
/// `NAME_n` from `$.n`: a list item of `sources:`.
pub fn source(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    url: {url}\n    every: 1h\n{extra}    metrics:\n      - {{name: {name}_n, help: N., value: $.n}}\n"
    )
}

/// `jsonbridge_source_polls_total` of `source` for `result`, from a scrape.
pub fn polls(m: &str, source: &str, result: &str) -> Option<f64> {
    sample(
        m,
        &format!(r#"jsonbridge_source_polls_total{{source="{source}",result="{result}"}}"#),
    )
}

/// A running jsonbridge with one source, `kept`, already polled (`kept_n 5`).
pub async fn one_polled_source() -> (Upstream, Bridge) {
    let up = Upstream::start(Reply::json(r#"{"n": 5}"#)).await;
    let b = Bridge::start(&format!(
        "sources:\n{}",
        source("kept", &format!("{}/x", up.base), "")
    ))
    .await;
    b.wait_metrics(10, "first poll", |m| m.contains("\nkept_n 5"))
        .await;
    (up, b)
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What the fake upstream answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub content_type: &'static str,
}

impl Reply {
    pub fn json(body: &str) -> Self {
        Self {
            status: 200,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            content_type: "application/json",
        }
    }
}

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct UpstreamState {
    reply: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Clone)]
pub struct Upstream {
    pub base: String,
    state: Arc<UpstreamState>,
}

impl Upstream {
    pub async fn start(reply: Reply) -> Self {
        let state = Arc::new(UpstreamState::default());
        *state.reply.lock().unwrap() = Some(reply);
        let app = Router::new().fallback(serve).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state }
    }

    pub fn set(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = Some(reply);
    }

    pub fn hits(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn serve(State(st): State<Arc<UpstreamState>>, req: Request) -> Response {
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.to_vec(),
    });
    let reply = st.reply.lock().unwrap().clone().unwrap();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", reply.content_type)],
        reply.body,
    )
        .into_response()
}

/// A running jsonbridge whose config lives in its own temp dir.
pub struct Bridge {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub base: String,
}

impl Bridge {
    pub async fn start(config_text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("jsonbridge.yaml");
        std::fs::write(&config, config_text).unwrap();
        Self::start_at(dir, config).await
    }

    /// Starts with protective limits other than the defaults.
    pub async fn start_with(config_text: &str, limits: app::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("jsonbridge.yaml");
        std::fs::write(&config, config_text).unwrap();
        Self::start_limited(dir, config, limits).await
    }

    /// Starts on an existing layout (e.g. a ConfigMap-style symlinked file).
    pub async fn start_at(dir: tempfile::TempDir, config: PathBuf) -> Self {
        Self::start_limited(dir, config, Default::default()).await
    }

    async fn start_limited(dir: tempfile::TempDir, config: PathBuf, limits: app::Limits) -> Self {
        Self::start_full(dir, config, limits, None, app::Mode::Both).await
    }

    /// One shard (`--shard INDEX/COUNT`) in a mode (`--mode`).
    pub async fn start_shard(config_text: &str, shard: &str, mode: app::Mode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("jsonbridge.yaml");
        std::fs::write(&config, config_text).unwrap();
        Self::start_full(
            dir,
            config,
            Default::default(),
            Some(shard.parse().unwrap()),
            mode,
        )
        .await
    }

    async fn start_full(
        dir: tempfile::TempDir,
        config: PathBuf,
        limits: app::Limits,
        shard: Option<jsonbridge::config::Shard>,
        mode: app::Mode,
    ) -> Self {
        let running = app::start(app::Options {
            config_file: config.clone(),
            listen_address: "127.0.0.1:0".into(),
            enable_lifecycle: true,
            watch_config: true,
            web_config: None,
            shard,
            mode,
            limits,
        })
        .await
        .unwrap_or_else(|e| panic!("start failed: {e}"));
        let base = format!("http://{}", running.addr);
        Self {
            running,
            dir,
            config,
            base,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn post(&self, path: &str) -> (u16, String) {
        let r = client()
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    /// Waits until /metrics satisfies `cond`; panics with the last body after `secs`.
    pub async fn wait_metrics(&self, secs: u64, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let body = self.metrics().await;
            if cond(&body) {
                return body;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last /metrics:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.running.shutdown();
        self.running.wait().await.unwrap();
    }
}

/// GET `url` and return the body (panics on any failure: for tests only).
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Waits until `cond` holds, polling every 20 ms; panics after `secs`.
pub async fn wait_for(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the first sample line that starts with `series` (name and labels).
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How the raw upstream answers: faults that an HTTP framework will not produce.
#[derive(Clone)]
pub enum Raw {
    /// A complete, well-formed response.
    Respond {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Headers promise 1000 bytes; a few come, then the connection closes.
    ResetMidBody,
    /// Accepts, reads the request, never answers.
    Silent,
    /// Sends a valid body one byte every 200 ms.
    Trickle,
    /// An endless chunked body (no Content-Length), chunk after chunk.
    EndlessChunks,
    /// 302 to itself, forever.
    RedirectLoop,
    /// A Content-Length that is not the body's length; the whole body is sent anyway.
    Lying { announced: usize, body: Vec<u8> },
    /// Connection `n` (counted from 0) gets the behaviour at `n % len`, chosen as it is
    /// accepted, so a pattern of failures does not depend on timing.
    Cycle(Vec<Raw>),
}

impl Raw {
    pub fn json(body: &str) -> Self {
        Raw::Respond {
            status: 200,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A loopback server speaking just enough HTTP/1.1 to misbehave on purpose.
#[derive(Clone)]
pub struct RawUpstream {
    pub base: String,
    behavior: Arc<Mutex<Raw>>,
    pub connections: Arc<AtomicUsize>,
    /// Bytes of response bodies the peer accepted (written without error).
    pub written: Arc<AtomicUsize>,
}

impl RawUpstream {
    pub async fn start(behavior: Raw) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let behavior = Arc::new(Mutex::new(behavior));
        let connections = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let (b, c, w) = (behavior.clone(), connections.clone(), written.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let now = match &*b.lock().unwrap() {
                    Raw::Cycle(each) => each[n % each.len()].clone(),
                    other => other.clone(),
                };
                let w = w.clone();
                tokio::spawn(async move {
                    // Read the request head; the body (if any) is ignored.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = match now {
                        Raw::Respond {
                            status,
                            content_type,
                            body,
                        } => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            sock.write_all(&body).await
                        }
                        Raw::ResetMidBody => {
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apps\": {")
                                .await;
                            // Dropping the socket closes it mid-body.
                            Ok(())
                        }
                        Raw::Silent => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            Ok(())
                        }
                        Raw::Trickle => {
                            let body = br#"{"apps": {"x": {"y": [{"name": "t", "energy_consumed": [1]}]}}}"#;
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            for byte in body {
                                if sock.write_all(&[*byte]).await.is_err() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Ok(())
                        }
                        Raw::EndlessChunks => {
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                                .await;
                            let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
                            // Bounded: 64 MiB at most, far past any test's limit.
                            for _ in 0..4096 {
                                if sock.write_all(chunk.as_bytes()).await.is_err() {
                                    break;
                                }
                                w.fetch_add(0x4000, Ordering::SeqCst);
                            }
                            Ok(())
                        }
                        Raw::Lying { announced, body } => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            sock.write_all(&body).await
                        }
                        Raw::RedirectLoop => {
                            sock.write_all(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
                                .await
                        }
                        Raw::Cycle(_) => unreachable!("a cycle is resolved when accepted"),
                    };
                });
            }
        });
        Self {
            base,
            behavior,
            connections,
            written,
        }
    }

    pub fn set(&self, behavior: Raw) {
        *self.behavior.lock().unwrap() = behavior;
    }
}

/// A child jsonbridge whose stderr (the log) is collected by a thread.
pub struct Daemon {
    pub child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    pub addr: String,
}

impl Daemon {
    pub fn start(config: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jsonbridge"));
        cmd.envs(env.iter().copied());
        Self::spawn(cmd, config, extra)
    }

    /// Starts under an open-file limit of `nofile` (the shell's `ulimit -n`, then `exec`, so
    /// the pid is jsonbridge's).
    pub fn start_with_open_files(config: &std::path::Path, extra: &[&str], nofile: u32) -> Self {
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_jsonbridge"),
        ]);
        Self::spawn(cmd, config, extra)
    }

    fn spawn(mut cmd: std::process::Command, config: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = cmd
            .arg("--config.file")
            .arg(config)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("address=") {
                    let _ = tx.send(
                        line[i + 8..]
                            .split(' ')
                            .next()
                            .unwrap()
                            .trim_matches('"')
                            .to_string(),
                    );
                }
                if let Some(i) = line.find("\"address\":\"") {
                    let rest = &line[i + 11..];
                    let _ = tx.send(rest[..rest.find('"').unwrap()].to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no listen address logged:\n{}", log.lock().unwrap()));
        Self { child, log, addr }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn wait_log(&self, secs: u64, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        self.signal("-TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (status.code(), self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the daemon, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the first source of config `text` once, as the daemon would (no shared state).
pub async fn poll_text(
    text: &str,
) -> Result<jsonbridge::schedule::Polled, jsonbridge::schedule::PollError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let config = jsonbridge::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let source = config.sources[0].clone();
    let fetcher = jsonbridge::fetch::Fetcher::new(&source.request).unwrap();
    jsonbridge::schedule::poll_once(&fetcher, &source).await
}

/// `jsonbridge test CONFIG --input INPUT`: its stdout and stderr, after checking it
/// succeeded; and that each of `said` is on its stderr.
pub fn test_subcommand(config: &Path, input: &Path, said: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jsonbridge"))
        .arg("test")
        .arg(config)
        .arg("--input")
        .arg(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    for want in said {
        assert!(stderr.contains(want), "missing {want:?} in\n{stderr}");
    }
    (String::from_utf8_lossy(&out.stdout).to_string(), stderr)
}
