//! `expose`: the HTTP side: `/metrics`, the status page, health, readiness and reload.
//!
//! Last step of the flow. [`router`] builds the axum `Router` (tests drive it with `oneshot`,
//! no socket). Guarantees:
//! - a scrape never calls an upstream: it encodes what the store holds;
//! - the encoded exposition is cached per format and reused until the store or the telemetry
//!   changes (a poll lands, a reload happens), so a scrape usually costs a copy;
//! - `/-/ready` answers 200 once the config is loaded and every source finished a first poll
//!   (it then stays ready; a failed poll shows in `jsonbridge_source_up`, not in readiness);
//! - `POST /-/reload` exists only with `--web.enable-lifecycle`; GET never reloads.

pub mod encode;
mod page;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use encode::Format;

use crate::reload::{Changes, ReloadError};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// A reload asked for over HTTP, answered through `reply`.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<Option<Changes>, ReloadError>>,
}

/// What the handlers share.
pub struct Exposer {
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    /// `Some` when the lifecycle API is enabled.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Shown on the status page.
    pub config_file: String,
    ready: AtomicBool,
    /// Clients for `/probe`, one per source version, so on-demand polls reuse connections.
    probes: std::sync::Mutex<
        std::collections::HashMap<String, (Arc<crate::config::Source>, crate::fetch::Fetcher)>,
    >,
    /// Per format: the generation encoded and its body. An async mutex, so that scrapes
    /// arriving during an encode wait for it instead of encoding again or blocking a worker.
    /// Slots: OpenMetrics, text, and the same two gzip-compressed.
    cache: tokio::sync::Mutex<[Option<(u64, Bytes)>; 4]>,
    /// `/probe` polls running at once (`--probe.max-concurrent`): each holds a body and its
    /// extraction in memory, and anyone who can reach the port can ask for one.
    probe_slots: tokio::sync::Semaphore,
    /// Scrapes served at once ([`MAX_CONCURRENT_SCRAPES`]).
    scrape_slots: tokio::sync::Semaphore,
    /// `--mode push`: `/metrics` shows jsonbridge's own metrics only; the series go to the
    /// remote write endpoints.
    self_metrics_only: bool,
}

/// Default of `--probe.max-concurrent`.
pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 8;

impl Exposer {
    pub fn new(
        store: Arc<Store>,
        telemetry: Arc<Telemetry>,
        reload: Option<mpsc::Sender<ReloadRequest>>,
        config_file: String,
    ) -> Self {
        Self {
            store,
            telemetry,
            reload,
            config_file,
            ready: AtomicBool::new(false),
            probes: Default::default(),
            cache: tokio::sync::Mutex::new([None, None, None, None]),
            probe_slots: tokio::sync::Semaphore::new(DEFAULT_MAX_CONCURRENT_PROBES),
            scrape_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_SCRAPES),
            self_metrics_only: false,
        }
    }

    /// `/metrics` shows jsonbridge's own metrics only (`--mode push`).
    pub fn with_self_metrics_only(mut self, only: bool) -> Self {
        self.self_metrics_only = only;
        self
    }

    /// At most `n` (at least 1) `/probe` polls at once; more wait, within their timeout.
    pub fn with_max_concurrent_probes(mut self, n: usize) -> Self {
        self.probe_slots = tokio::sync::Semaphore::new(n.max(1));
        self
    }

    /// The full exposition (snapshots and self-metrics), from the cache when nothing changed.
    /// `None` only if encoding panicked (a bug): the scrape then fails with a 500.
    pub async fn metrics(&self, format: Format) -> Option<Bytes> {
        self.body(format, false).await
    }

    /// The exposition, gzip-compressed when `gzip`; each variant is built at most once per
    /// generation, so repeated scrapes neither re-encode nor re-compress.
    pub async fn body(&self, format: Format, gzip: bool) -> Option<Bytes> {
        let plain_slot = match format {
            Format::OpenMetrics => 0,
            Format::Text => 1,
        };
        let slot = plain_slot + if gzip { 2 } else { 0 };
        // The generation is read before encoding: a change during encoding bumps it again,
        // so the next scrape re-encodes instead of serving a stale body forever.
        let generation = self.store.generation();
        let mut cache = self.cache.lock().await;
        if let Some((g, body)) = &cache[slot]
            && *g == generation
        {
            return Some(body.clone());
        }
        let plain = match &cache[plain_slot] {
            Some((g, body)) if *g == generation => body.clone(),
            _ => {
                let view = match self.self_metrics_only {
                    false => self.store.view(),
                    true => crate::store::View {
                        config: Arc::new(crate::config::Config::empty()),
                        snapshots: Vec::new(),
                    },
                };
                let state = self.telemetry.snapshot();
                // Encoding 100k series takes tens of milliseconds: keep it off the async
                // workers that answer health checks.
                let body = blocking(move || encode::encode(&view, Some(&state), format)).await?;
                let body = Bytes::from(body);
                cache[plain_slot] = Some((generation, body.clone()));
                body
            }
        };
        if !gzip {
            return Some(plain);
        }
        let compressed = Bytes::from(blocking(move || compress(&plain)).await?);
        cache[slot] = Some((generation, compressed.clone()));
        Some(compressed)
    }

    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        let config = self.store.config();
        let ready = self
            .telemetry
            .all_polled(config.sources.iter().map(|s| s.name.as_str()));
        if ready {
            self.ready.store(true, Ordering::Release);
        }
        ready
    }
}

/// Scrapes served at once; more wait their turn (a scrape is usually a copy of the cache).
pub const MAX_CONCURRENT_SCRAPES: usize = 16;

/// Builds the HTTP router.
pub fn router(exposer: Arc<Exposer>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/source/{name}", get(page::source))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/probe", get(probe))
        .with_state(exposer)
}

async fn metrics(State(x): State<Arc<Exposer>>, headers: HeaderMap) -> Response {
    // More wait their turn (counted); a scrape that waits holds no memory of its own yet.
    let _slot = match x.scrape_slots.try_acquire() {
        Ok(s) => s,
        Err(_) => {
            crate::telemetry::limit_hit(crate::telemetry::Limit::ScrapeConcurrency, "/metrics");
            match x.scrape_slots.acquire().await {
                Ok(s) => s,
                Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let gzip = accepts_gzip(headers.get(header::ACCEPT_ENCODING));
    match x.body(format, gzip).await {
        Some(body) => {
            let mut r = (
                [
                    (header::CONTENT_TYPE, format.content_type()),
                    (header::VARY, "Accept-Encoding"),
                ],
                body,
            )
                .into_response();
            if gzip {
                r.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    axum::http::HeaderValue::from_static("gzip"),
                );
            }
            r
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed; see the log\n",
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct ProbeParams {
    source: Option<String>,
    module: Option<String>,
    target: Option<String>,
}

/// Polls one configured source now and answers its exposition, leaving the cached snapshot,
/// the schedule and the self-metrics as they are. Only configured sources can be probed, so
/// this is no open proxy.
async fn probe(
    State(x): State<Arc<Exposer>>,
    headers: HeaderMap,
    axum::extract::Query(p): axum::extract::Query<ProbeParams>,
) -> Response {
    let config = x.store.config();
    let source = match (&p.source, &p.module, &p.target) {
        (Some(name), None, None) => match config.sources.iter().find(|s| &s.name == name) {
            Some(s) => s.clone(),
            None => {
                return (StatusCode::NOT_FOUND, format!("no source named {name:?}\n"))
                    .into_response();
            }
        },
        (None, Some(module), Some(target)) => {
            let Some(m) = config.modules.iter().find(|m| &m.name == module) else {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no module named {module:?}\n"),
                )
                    .into_response();
            };
            let url = match reqwest::Url::parse(target) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => u,
                _ => {
                    return (StatusCode::BAD_REQUEST, "target must be an http(s) URL\n")
                        .into_response();
                }
            };
            // No open proxy: only targets the config allows.
            if !config.probe_allow.iter().any(|r| r.allows(&url)) {
                return (
                    StatusCode::FORBIDDEN,
                    "target not allowed by probe.allow_targets in the config\n",
                )
                    .into_response();
            }
            let mut s = (**m).clone();
            let query = match &s.request.target {
                crate::config::Target::Http { query, .. } => query.clone(),
                crate::config::Target::File(_) => Vec::new(),
            };
            let Ok(url) = crate::config::Templated::parse(url.as_str()) else {
                return (StatusCode::BAD_REQUEST, "target cannot be used\n").into_response();
            };
            s.request.target = crate::config::Target::Http { url, query };
            // The caller chose the target: show it as given, and let a redirect lead only
            // where the target itself could have pointed.
            s.request.display_url = target.clone();
            s.request.redirects = crate::config::Redirects::Allowed(config.probe_allow.clone());
            Arc::new(s)
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "use /probe?source=NAME or /probe?module=NAME&target=URL\n",
            )
                .into_response();
        }
    };
    let label = p.source.clone().or(p.module.clone()).unwrap_or_default();
    // Bounded: a probe beyond the limit waits for a slot within its own timeout, then gives
    // up with 503 rather than queueing without end.
    let _slot = match x.probe_slots.try_acquire() {
        Ok(slot) => slot,
        Err(_) => {
            crate::telemetry::limit_hit(crate::telemetry::Limit::ProbeConcurrency, &label);
            match tokio::time::timeout(source.request.timeout, x.probe_slots.acquire()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many probes in flight (--probe.max-concurrent); try again\n",
                    )
                        .into_response();
                }
            }
        }
    };
    // One client per source or module (keyed by kind and name; a reload that changes the
    // request builds a new one), so on-demand polls reuse connections.
    let key = if p.module.is_some() {
        format!("module/{}", source.name)
    } else {
        format!("source/{}", source.name)
    };
    let fetcher = {
        let mut probes = x.probes.lock().unwrap_or_else(|e| e.into_inner());
        match probes.get(&key) {
            Some((s, f)) if s.request.same_client_settings(&source.request) => f.clone(),
            _ => match crate::fetch::Fetcher::new(&source.request) {
                Ok(f) => {
                    probes.insert(key, (source.clone(), f.clone()));
                    f
                }
                Err(e) => return (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
            },
        }
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match crate::schedule::poll_once(&fetcher, &source).await {
        Ok(polled) => {
            let body = blocking(move || {
                crate::inspect::exposition(&config, &source, &polled.extraction, format)
            })
            .await;
            match body {
                Some(b) => ([(header::CONTENT_TYPE, format.content_type())], b).into_response(),
                None => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
            }
        }
        // Poll errors never hold secrets (see `fetch`).
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("polling {label} failed ({}): {e}\n", e.kind()),
        )
            .into_response(),
    }
}

async fn ready(State(x): State<Arc<Exposer>>) -> Response {
    if x.is_ready() {
        return (StatusCode::OK, "Ready\n").into_response();
    }
    let state = x.telemetry.snapshot();
    let waiting: Vec<String> = x
        .store
        .config()
        .sources
        .iter()
        .filter(|s| !state.sources.get(&s.name).is_some_and(|st| st.polled))
        .map(|s| s.name.clone())
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "Not ready: waiting for the first poll of {}\n",
            waiting.join(", ")
        ),
    )
        .into_response()
}

async fn reload(State(x): State<Arc<Exposer>>) -> Response {
    let Some(tx) = &x.reload else {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled (start with --web.enable-lifecycle).\n",
        )
            .into_response();
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(ReloadRequest { reply }).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer.await {
        Ok(Ok(changes)) => {
            let text = match changes {
                Some(c) => format!("Reloaded: {c}\n"),
                None => "Reloaded: no change\n".to_string(),
            };
            (StatusCode::OK, text).into_response()
        }
        // Config errors name paths, lines and env var names, never values.
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Reload failed; the running config is unchanged.\n{e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// Whether `Accept-Encoding` lists gzip with a non-zero weight (Prometheus sends `gzip`).
fn accepts_gzip(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let q_zero = it.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        coding.eq_ignore_ascii_case("gzip") && !q_zero
    })
}

fn compress(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Level 1: most of the size win for a fraction of the CPU; the result is cached anyway.
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// Runs CPU-heavy work on the blocking pool; `None` if it panicked (logged).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "encoding task failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_beyond_the_limit_wait_their_turn() {
        let config = Arc::new(
            crate::config::parse(
                "sources: []\n",
                &crate::config::Origin::file(std::path::Path::new("x.yaml")),
                &|_| None,
            )
            .unwrap(),
        );
        let store = Arc::new(Store::new(config));
        let telemetry = Arc::new(Telemetry::new(store.clone()));
        let x = Arc::new(Exposer::new(store, telemetry, None, "x.yaml".into()));
        let app = router(x.clone());
        // Hold the cache: every scrape that gets a slot stops there.
        let held = x.cache.lock().await;
        let waits = crate::telemetry::limit_hits()
            .into_iter()
            .find(|(l, _)| *l == "scrape_concurrency")
            .unwrap()
            .1;
        let mut scrapes = Vec::new();
        for _ in 0..MAX_CONCURRENT_SCRAPES + 4 {
            let app = app.clone();
            scrapes.push(tokio::spawn(async move {
                let req = axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap();
                app.oneshot(req).await.unwrap().status()
            }));
        }
        for _ in 0..1000 {
            if x.scrape_slots.available_permits() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Sixteen in, the other four waiting for a slot (and counted).
        assert_eq!(x.scrape_slots.available_permits(), 0);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(scrapes.iter().all(|s| !s.is_finished()));
        let now = crate::telemetry::limit_hits()
            .into_iter()
            .find(|(l, _)| *l == "scrape_concurrency")
            .unwrap()
            .1;
        assert!(now >= waits + 4, "{waits} -> {now}");
        drop(held);
        for s in scrapes {
            assert_eq!(s.await.unwrap(), StatusCode::OK);
        }
        assert_eq!(x.scrape_slots.available_permits(), MAX_CONCURRENT_SCRAPES);
    }
}
