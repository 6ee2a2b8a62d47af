//! The HTTP server: TLS and basic auth from a web config file in the format of Prometheus'
//! exporter-toolkit (`--web.config.file`), request-size and concurrency limits, graceful
//! shutdown.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Guarantees: with `basic_auth_users`, every path but `/-/healthy` and `/-/ready` (which
//! reveal nothing and serve Kubernetes probes) needs a listed user; a password is checked
//! with bcrypt once and the success cached, so scrapes do not pay bcrypt's cost each time;
//! failed attempts are never cached. bcrypt runs outside any lock, on the blocking pool, a
//! few at a time; a cached credential never waits behind them, and an unknown user costs
//! the same bcrypt as a known one (no timing tells which names exist). Request heads over
//! 16 KiB are refused.
//!
//! Connections are bounded in number and in idleness ([`ServerLimits`]): one that sends no
//! request within `first_request_timeout` of being accepted (no byte, only an HTTP/2 preface,
//! only a TLS handshake) or stays idle between requests for `idle_timeout` is closed, and
//! past `max_connections` new ones are closed at once, so idle sockets cannot use up the
//! file descriptors that polls need. A failed accept (EMFILE) backs off instead of spinning.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{self, Limit};

/// Largest request head accepted (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// bcrypt checks at once (each takes a core for about 60 ms at cost 10).
const MAX_CONCURRENT_BCRYPT: usize = 2;
/// How long a credential check waits for a bcrypt slot before the request is refused.
const BCRYPT_WAIT: Duration = Duration::from_secs(10);

/// Limits on the server's connections (`--web.max-connections`,
/// `--web.first-request-timeout`, `--web.idle-timeout`).
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// From accept (TLS handshake included) to the first request's head.
    pub first_request_timeout: Duration,
    /// With no request in flight and no byte moving, a connection is closed after this.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// 1,024, or half the file descriptors the process may open if that is less (at least 16):
/// the other half stays for polls, files and the config watcher.
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            let half = usize::try_from(lim.rlim_cur / 2).unwrap_or(usize::MAX);
            return half.clamp(16, 1024);
        }
    }
    1024
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("web config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// A loaded web config: TLS (if any) and the users (if any).
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.auth.is_some())
            .finish()
    }
}

impl WebConfig {
    /// Loads the file; relative certificate paths start at its directory.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let invalid = |message: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig {
                tls_server_config: None,
                basic_auth_users: BTreeMap::new(),
            }
        } else {
            serde_norway::from_str(&text).map_err(|e| invalid(e.to_string()))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(
                tls_config(&base.join(&t.cert_file), &base.join(&t.key_file)).map_err(invalid)?,
            )),
        };
        for (user, hash) in &raw.basic_auth_users {
            // Check the hash's form now: a typo would otherwise lock everyone out silently.
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (expected $2y$..., e.g. from htpasswd -nB)"
                )));
            }
        }
        let auth = (!raw.basic_auth_users.is_empty())
            .then(|| Arc::new(BasicAuth::new(raw.basic_auth_users)));
        Ok(Self { tls, auth })
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {}: no certificate in it",
            cert.display()
        ));
    }
    // The key's content never appears in an error.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "key_file {}: cannot load a private key ({e})",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not work together: {e}"))
}

/// Users and the credentials already verified.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Checked against for an unknown user, so that it costs what a known one costs: the
    /// hash of a random password at the cost of the first user's hash.
    decoy: String,
    /// `user:password` pairs that passed bcrypt (successes only, so the set is bounded by
    /// what legitimate clients send). Held only to look up or insert, never across bcrypt.
    verified: Mutex<HashSet<String>>,
    /// bcrypt checks at once.
    slots: tokio::sync::Semaphore,
}

/// What a request's `Authorization` header amounts to.
enum Credential {
    /// Absent or malformed: refused without any bcrypt.
    Malformed,
    Pair {
        user: String,
        password: String,
        pair: String,
    },
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        let cost = users
            .values()
            .find_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
        let decoy_password = uuid::Uuid::new_v4().to_string();
        let decoy = bcrypt::hash(decoy_password, cost).unwrap_or_default();
        Self {
            users,
            decoy,
            verified: Mutex::new(HashSet::new()),
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_BCRYPT),
        }
    }

    fn parse(authorization: Option<&HeaderValue>) -> Credential {
        use base64::Engine;
        let Some(encoded) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return Credential::Malformed;
        };
        let Some(pair) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return Credential::Malformed;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return Credential::Malformed;
        };
        Credential::Pair {
            user: user.to_string(),
            password: password.to_string(),
            pair,
        }
    }

    /// `Some(true)`: let in; `Some(false)`: wrong credentials; `None`: no bcrypt slot came
    /// free in time (answered 503, so that a flood of guesses delays no one for long).
    async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> Option<bool> {
        let Credential::Pair {
            user,
            password,
            pair,
        } = Self::parse(authorization)
        else {
            return Some(false);
        };
        if self.lock().contains(&pair) {
            return Some(true);
        }
        let _slot = match self.slots.try_acquire() {
            Ok(s) => s,
            Err(_) => {
                telemetry::limit_hit(Limit::AuthConcurrency, "basic auth");
                tokio::time::timeout(BCRYPT_WAIT, self.slots.acquire())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (hash, known) = match this.users.get(&user) {
                Some(h) => (h.as_str(), true),
                None => (this.decoy.as_str(), false),
            };
            let ok = bcrypt::verify(&password, hash).unwrap_or(false) && known;
            if ok {
                let mut verified = this.lock();
                if verified.len() < 1024 {
                    verified.insert(pair);
                }
            }
            ok
        })
        .await
        .ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds basic auth (when configured) in front of `router`.
pub fn protect(router: Router, web: &WebConfig) -> Router {
    let Some(auth) = web.auth.clone() else {
        return router;
    };
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let auth = auth.clone();
            async move {
                let open = matches!(req.uri().path(), "/-/healthy" | "/-/ready");
                let ok = if open {
                    Some(true)
                } else {
                    auth.check(req.headers().get(header::AUTHORIZATION)).await
                };
                if ok == Some(true) {
                    next.run(req).await
                } else if ok.is_none() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many credential checks in flight; try again\n",
                    )
                        .into_response()
                } else {
                    let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"jsonbridge\""),
                    );
                    r
                }
            }
        },
    ))
}

/// Serves `router` on `listener` (TLS when configured) until `shutdown`; then stops
/// accepting and lets in-flight requests finish (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: WebConfig,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEAD_BYTES)
        .header_read_timeout(limits.first_request_timeout)
        .timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = web.tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Connections::default());
    let max = limits.max_connections.max(1);
    let mut pause = Duration::from_millis(10);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    pause = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    // EMFILE and friends: the pending connection stays in the backlog, so
                    // accepting again at once would fail again at once. Back off, doubling
                    // up to 1 s, and let the idle timeouts free descriptors meanwhile.
                    telemetry::limit_hit(Limit::AcceptError, &e.to_string());
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let activity = Arc::new(Activity::new());
        let Some(slot) = open.admit(&activity, max) else {
            telemetry::limit_hit(Limit::Connections, &peer.to_string());
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(Tracked {
            inner: router.clone(),
            activity: activity.clone(),
        });
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = Watched {
                io: stream,
                activity: activity.clone(),
            };
            let idle = activity.clone().closes(limits);
            tokio::pin!(idle);
            // Until the connection ends or `idle` says to close it (dropping it closes it).
            macro_rules! serve_until_idle {
                ($io:expr) => {{
                    let conn = builder
                        .serve_connection(TokioIo::new($io), service)
                        .into_owned();
                    tokio::select! {
                        _ = watcher.watch(conn) => {}
                        _ = &mut idle => {}
                    }
                }};
            }
            match acceptor {
                None => serve_until_idle!(stream),
                Some(acceptor) => {
                    let tls = tokio::select! {
                        r = acceptor.accept(stream) => match r {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                        },
                        _ = &mut idle => return,
                    };
                    serve_until_idle!(tls)
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 10 s of the shutdown");
    }
    Ok(())
}

/// The open connections, so that a new one past the limit can take the place of an idle
/// one: otherwise whoever opens `max_connections` sockets and sends nothing would keep
/// Prometheus out until they time out.
#[derive(Default)]
struct Connections {
    next: AtomicU64,
    open: Mutex<std::collections::HashMap<u64, Arc<Activity>>>,
}

/// A connection's place among the open ones, given up when the connection ends.
struct Slot {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `activity`'s connection. At the limit, the connection that has been idle
    /// longest (one that never sent a request first) is told to close and gives its place;
    /// `None` when every open connection has a request in flight.
    fn admit(self: &Arc<Self>, activity: &Arc<Activity>, max: usize) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= max {
            let victim = open
                .iter()
                .filter(|(_, a)| a.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, a)| {
                    (
                        a.requests.load(Ordering::Acquire) > 0,
                        a.last.load(Ordering::Relaxed) + a.since_ms(),
                    )
                })
                .map(|(id, _)| *id)?;
            if let Some(a) = open.remove(&victim) {
                telemetry::limit_hit(
                    Limit::Connections,
                    "the longest-idle connection gave its place",
                );
                a.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        open.insert(id, activity.clone());
        Some(Slot {
            id,
            connections: self.clone(),
        })
    }
}

/// What one connection did lately: when a byte last moved, how many requests it began and
/// how many are in flight.
struct Activity {
    since: tokio::time::Instant,
    /// Milliseconds after `since` when a byte was last read or written.
    last: AtomicU64,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    /// Told to close, to make room for a new connection.
    evict: tokio::sync::Notify,
}

/// When the process began, to compare `Activity::last` across connections.
fn epoch() -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(tokio::time::Instant::now)
}

impl Activity {
    fn new() -> Self {
        epoch();
        Self {
            since: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            evict: tokio::sync::Notify::new(),
        }
    }

    /// Milliseconds from the process's start to this connection's.
    fn since_ms(&self) -> u64 {
        self.since.duration_since(epoch()).as_millis() as u64
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves when the connection should be closed: no request begun within
    /// `first_request_timeout`, or none in flight and no byte moved for `idle_timeout`, or
    /// its place was given to a new connection. (Dropping the connection's future closes
    /// it.)
    async fn closes(self: Arc<Self>, limits: ServerLimits) {
        tokio::select! {
            _ = self.evict.notified() => {}
            _ = self.clone().times_out(limits) => {}
        }
    }

    async fn times_out(self: Arc<Self>, limits: ServerLimits) {
        loop {
            let now = tokio::time::Instant::now();
            let deadline = if self.requests.load(Ordering::Acquire) == 0 {
                self.since + limits.first_request_timeout
            } else if self.in_flight.load(Ordering::Acquire) > 0 {
                now + limits.idle_timeout
            } else {
                self.since
                    + Duration::from_millis(self.last.load(Ordering::Relaxed))
                    + limits.idle_timeout
            };
            if deadline <= now {
                telemetry::limit_hit(
                    Limit::IdleConnection,
                    if self.requests.load(Ordering::Acquire) == 0 {
                        "no request in time"
                    } else {
                        "idle between requests"
                    },
                );
                return;
            }
            // Woken early now and then to look again (a request may have begun).
            let step = (deadline - now).min(Duration::from_secs(1));
            tokio::time::sleep(step).await;
        }
    }
}

/// The router, counting each connection's requests for [`Activity`].
#[derive(Clone)]
struct Tracked {
    inner: Router,
    activity: Arc<Activity>,
}

impl<B> tower::Service<axum::http::Request<B>> for Tracked
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<axum::http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let activity = self.activity.clone();
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let fut = tower::Service::call(&mut self.inner, req);
        Box::pin(async move {
            let r = fut.await;
            activity.touch();
            activity.in_flight.fetch_sub(1, Ordering::AcqRel);
            r
        })
    }
}

/// A socket that records when a byte last moved.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pw: &str) -> HeaderValue {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[tokio::test]
    async fn an_unknown_user_costs_a_known_ones_bcrypt() {
        let hash = bcrypt::hash("pw", 6).unwrap();
        let auth = Arc::new(BasicAuth::new(BTreeMap::from([("u".to_string(), hash)])));
        // The decoy is a real hash at the users' cost, so verifying against it is the same
        // work as verifying a known user's password.
        let decoy: bcrypt::HashParts = auth.decoy.parse().unwrap();
        assert_eq!(decoy.get_cost(), 6);
        assert_eq!(auth.check(Some(&header("nobody", "pw"))).await, Some(false));
        assert_eq!(auth.check(Some(&header("u", "wrong"))).await, Some(false));
        assert_eq!(auth.check(None).await, Some(false));
        assert_eq!(auth.check(Some(&header("u", "pw"))).await, Some(true));
        // Verified once, then cached; failures never are.
        assert_eq!(auth.lock().len(), 1);
    }
}
