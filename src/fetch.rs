//! `fetch`: one request to one source, returning the body bytes.
//!
//! Sits between [`crate::schedule`] (which calls it) and [`crate::read`]. Guarantees: the
//! whole fetch (connect, headers, body, redirects, retries) ends within the source's
//! `timeout`; a body larger than `max_body_bytes` (decoded, where it came compressed:
//! `decode`) is refused while streaming, before it is held in memory; a status outside `valid_status_codes` (default: any 2xx) is an error; errors carry a stable `kind()` and never
//! include header values or expanded URLs (which may hold secrets).
//!
//! Redirects are followed here, hop by hop, not by reqwest: each hop must pass the request's
//! [`crate::config::Redirects`] rule (a probe's allowlist), a hop to another origin carries none of the
//! configured headers or credentials (and never a request body), and no `Referer` is sent.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use chrono::{DateTime, Utc};
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, AUTHORIZATION, ETAG, HeaderMap, HeaderValue,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use reqwest::{Method, StatusCode, Url};

use std::sync::Arc;

use crate::config::{Auth, Proxying, Request, Target, Tls};
use crate::telemetry::{self, Limit};

/// Redirect hops followed at most, as browsers and reqwest's default policy do.
pub const MAX_REDIRECTS: usize = 10;

pub mod budget;
mod buffer;
mod decode;
pub mod oauth2;
pub mod tls;
use budget::BodyPermit;
use decode::{Decoder, Encoding};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    /// A 429 or 503 whose `Retry-After` asks for more time than the poll has left.
    #[error(
        "HTTP status {status}; Retry-After asks for {wait:?}, more than the {left:?} left of the timeout: not retried"
    )]
    RetryAfter {
        status: u16,
        wait: Duration,
        left: Duration,
    },
    #[error("response body is larger than max_body_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("too many redirects (more than {MAX_REDIRECTS}) or a redirect loop")]
    Redirect,
    /// A hop the request may not follow (outside a probe's allowlist, not http(s), or a
    /// body that would go to another origin).
    #[error("redirect refused: {0}")]
    RedirectRefused(String),
    #[error("reading the response failed: {0}")]
    Body(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    /// A `bearer_token_file` or `password_file` could not be read (the message names the
    /// file, never its content).
    #[error("{0}")]
    Secret(String),
    /// A handshake that failed (the cause in words), or a TLS file that cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The OAuth2 token endpoint failed; `transient` when another attempt may succeed.
    #[error("OAuth2: {message}")]
    OAuth2 { message: String, transient: bool },
}

impl FetchError {
    /// Stable label value for `jsonbridge_source_polls_total{result=...}`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Connect(_) => "connect",
            FetchError::Status(_) | FetchError::RetryAfter { .. } => "http_status",
            FetchError::TooLarge { .. } => "body_too_large",
            FetchError::Redirect | FetchError::RedirectRefused(_) => "redirect",
            FetchError::Body(_) => "body",
            FetchError::Request(_) => "request",
            FetchError::File { .. } => "file",
            FetchError::Secret(_) => "secret_file",
            FetchError::Tls(_) => "tls",
            FetchError::OAuth2 { .. } => "oauth2",
        }
    }
}

/// What one source fetches with: its HTTP client, built once and kept for the source's
/// lifetime so connections are reused across polls (built again when its TLS files change),
/// and its OAuth2 token. A `file://` source has none (building a client sets up TLS, which
/// 1,000 file sources would pay for nothing).
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: Option<Arc<Http>>,
}

#[derive(Debug)]
struct Http {
    client: ClientCell,
    oauth2: Option<oauth2::TokenSource>,
}

/// What an HTTP client is built from.
#[derive(Debug, Clone)]
struct ClientSpec {
    timeout: Duration,
    http2: bool,
    proxy: Proxying,
    tls: Option<Tls>,
}

/// An HTTP client. Without `tls:` it is built once; with it, at the first request and again
/// whenever the files it names change (compared by content at every request: cert-manager
/// rewrites them in place, Kubernetes swaps them by symlink), on the blocking pool.
#[derive(Debug)]
struct ClientCell {
    spec: ClientSpec,
    fixed: Option<reqwest::Client>,
    current: tokio::sync::Mutex<Option<(tls::Material, reqwest::Client)>>,
}

impl ClientCell {
    fn new(spec: ClientSpec) -> Result<Self, FetchError> {
        let fixed = match spec.tls {
            None => Some(build_client(&spec, None)?),
            Some(_) => None,
        };
        Ok(Self {
            spec,
            fixed,
            current: tokio::sync::Mutex::new(None),
        })
    }

    async fn get(&self) -> Result<reqwest::Client, FetchError> {
        if let Some(c) = &self.fixed {
            return Ok(c.clone());
        }
        let Some(settings) = &self.spec.tls else {
            return Err(FetchError::Request("no HTTP client".into()));
        };
        let material = tls::load(settings).await.map_err(FetchError::Tls)?;
        let mut current = self.current.lock().await;
        if let Some((m, c)) = current.as_ref()
            && *m == material
        {
            return Ok(c.clone());
        }
        let rebuilt = current.is_some();
        let spec = self.spec.clone();
        let m = material.clone();
        let client = tokio::task::spawn_blocking(move || {
            let config =
                tls::client_config(settings_of(&spec), &m, spec.http2).map_err(FetchError::Tls)?;
            build_client(&spec, Some(config))
        })
        .await
        .map_err(|e| FetchError::Request(format!("building the HTTP client failed: {e}")))??;
        if rebuilt {
            tracing::info!("TLS files changed: new connections use them");
        }
        *current = Some((material, client.clone()));
        Ok(client)
    }
}

fn settings_of(spec: &ClientSpec) -> &Tls {
    spec.tls
        .as_ref()
        .expect("a TLS client cell has TLS settings")
}

fn build_client(
    spec: &ClientSpec,
    tls: Option<rustls::ClientConfig>,
) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("jsonbridge/", env!("CARGO_PKG_VERSION")))
        // Redirects are followed in `http`, where each hop is checked.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .timeout(spec.timeout)
        .connect_timeout(spec.timeout);
    if !spec.http2 {
        builder = builder.http1_only();
    }
    if let Some(config) = tls {
        builder = builder.tls_backend_preconfigured(config);
    }
    match &spec.proxy {
        // reqwest reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY itself.
        Proxying::Environment => {}
        Proxying::Direct => builder = builder.no_proxy(),
        Proxying::Proxy { url, no_proxy, .. } => {
            // The error would show the URL, credentials and all.
            let proxy = reqwest::Proxy::all(url.clone())
                .map_err(|_| FetchError::Request("proxy_url cannot be used as a proxy".into()))?;
            let except = no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
            builder = builder.proxy(proxy.no_proxy(except));
        }
    }
    builder
        .build()
        .map_err(|e| FetchError::Request(describe(&e)))
}

impl Fetcher {
    pub fn new(request: &Request) -> Result<Self, FetchError> {
        let http = match request.target {
            Target::File(_) => None,
            Target::Http { .. } => {
                let client = ClientCell::new(ClientSpec {
                    timeout: request.timeout,
                    http2: request.http2,
                    proxy: request.proxy.clone(),
                    tls: request.tls.clone(),
                })?;
                let oauth2 = match &request.auth {
                    Some(Auth::OAuth2(o)) => Some(oauth2::TokenSource::new(o, request.timeout)?),
                    _ => None,
                };
                Some(Arc::new(Http { client, oauth2 }))
            }
        };
        Ok(Self { http })
    }

    /// Fetches the body of `request`, with retries, within its timeout and size limit.
    pub async fn fetch(&self, request: &Request) -> Result<Fetched, FetchError> {
        fetch(self.http.as_deref(), request, None, None).await
    }

    /// [`Self::fetch`] of one page of a paginated source: at `page.url`, or at the
    /// request's URL with `page.query` set, within `page.deadline` (the poll's budget).
    pub async fn fetch_page(&self, request: &Request, page: &Page) -> Result<Fetched, FetchError> {
        fetch(self.http.as_deref(), request, None, Some(page)).await
    }

    /// [`Self::fetch`], asking the upstream to answer 304 if the version `since` describes
    /// (from an earlier response) is still current: then [`Fetched::not_modified`] is set and
    /// there is no body.
    pub async fn fetch_if_changed(
        &self,
        request: &Request,
        since: Option<&Validators>,
    ) -> Result<Fetched, FetchError> {
        fetch(self.http.as_deref(), request, since, None).await
    }
}

/// Where one page of a paginated source is, and by when it must be in.
#[derive(Debug, Clone)]
pub struct Page {
    /// A next URL the upstream gave (`None`: the request's own URL).
    pub url: Option<Url>,
    /// Query parameters set on the request's URL (a cursor, a page number), replacing any
    /// of the same name.
    pub query: Vec<(String, String)>,
    /// The poll's deadline: every page shares the source's `timeout`.
    pub deadline: tokio::time::Instant,
    /// A fan-out item's request: its method, headers added to the source's, and body.
    pub method: Option<reqwest::Method>,
    pub headers: Vec<(reqwest::header::HeaderName, String)>,
    pub body: Option<String>,
}

impl Page {
    /// The request's own URL (and method, headers, body), by `deadline`.
    pub fn at(
        url: Option<Url>,
        query: Vec<(String, String)>,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self {
            url,
            query,
            deadline,
            method: None,
            headers: Vec::new(),
            body: None,
        }
    }
}

/// The URL `request` asks for at `now`, with its query (`None` for a file).
pub fn request_url(request: &Request, now: DateTime<Utc>) -> Result<Option<Url>, FetchError> {
    let Target::Http { url, query } = &request.target else {
        return Ok(None);
    };
    let mut url = Url::parse(&url.render(now))
        .map_err(|e| FetchError::Request(format!("invalid URL: {e}")))?;
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k, v.render(now))));
    }
    Ok(Some(url))
}

/// What an endpoint answered to [`Fetcher::send`].
#[derive(Debug)]
pub struct Sent {
    pub status: u16,
    /// Its `Retry-After`, if any (seconds or a date).
    pub retry_after: Option<Duration>,
    /// The start of its body (at most [`SENT_MESSAGE_BYTES`]), to explain a refusal.
    pub message: String,
}

/// How much of an endpoint's answer [`Sent::message`] keeps.
pub const SENT_MESSAGE_BYTES: usize = 1024;

impl Fetcher {
    /// POSTs `body` to `request`'s URL with its headers, credentials and `content` headers,
    /// within its timeout. Redirects are not followed. A 401 to a cached OAuth2 token is
    /// sent once more with a new one.
    pub async fn send(
        &self,
        request: &Request,
        body: Bytes,
        content: &[(reqwest::header::HeaderName, &'static str)],
    ) -> Result<Sent, FetchError> {
        let work = async {
            let h = self
                .http
                .as_deref()
                .ok_or_else(|| FetchError::Request("no HTTP client".into()))?;
            let Target::Http { url, .. } = &request.target else {
                return Err(FetchError::Request("not an http(s) URL".into()));
            };
            let client = h.client.get().await?;
            let now = Utc::now();
            let url = Url::parse(&url.render(now))
                .map_err(|e| FetchError::Request(format!("invalid URL: {e}")))?;
            let mut token = match &h.oauth2 {
                Some(t) => Some(t.token().await?),
                None => None,
            };
            loop {
                let mut hs =
                    headers(request, now, token.as_ref().map(|t| t.value.as_str())).await?;
                for (k, v) in content {
                    hs.insert(k.clone(), HeaderValue::from_static(v));
                }
                let mut resp = client
                    .post(url.clone())
                    .headers(hs)
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| classify(e, request, &url))?;
                let status = resp.status().as_u16();
                if let (401, Some(t), Some(tokens)) = (status, &token, &h.oauth2)
                    && !t.fresh
                {
                    tokens.forget(&t.value).await;
                    token = Some(tokens.token().await?);
                    continue;
                }
                let retry_after = retry_after(resp.headers(), Utc::now());
                let mut message = Vec::new();
                while message.len() < SENT_MESSAGE_BYTES {
                    match resp.chunk().await {
                        Ok(Some(c)) => message.extend_from_slice(&c),
                        _ => break,
                    }
                }
                message.truncate(SENT_MESSAGE_BYTES);
                return Ok(Sent {
                    status,
                    retry_after,
                    message: String::from_utf8_lossy(&message).trim().to_string(),
                });
            }
        };
        match tokio::time::timeout(request.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(request.timeout)),
        }
    }
}

/// What a response said of its version, to ask next time whether it changed (`ETag`,
/// `Last-Modified`; RFC 9110 13.1). Values as sent, kept sensitive: an ETag may encode
/// anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Validators {
    fn of(headers: &HeaderMap) -> Self {
        let take = |name| {
            headers.get(name).cloned().map(|mut v: HeaderValue| {
                v.set_sensitive(true);
                v
            })
        };
        Validators {
            etag: take(ETAG),
            last_modified: take(LAST_MODIFIED),
        }
    }

    /// The response gave nothing to ask with.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    /// Adds `If-None-Match` and `If-Modified-Since` to a request's headers.
    fn ask(&self, headers: &mut HeaderMap) {
        if let Some(e) = &self.etag {
            headers.insert(IF_NONE_MATCH, e.clone());
        }
        if let Some(l) = &self.last_modified {
            headers.insert(IF_MODIFIED_SINCE, l.clone());
        }
    }
}

/// A fetched body, with what the poll reports about it.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    /// The response's Content-Type, to explain a body that is not JSON.
    pub content_type: Option<String>,
    /// The target of the response's `Link: <...>; rel="next"`, as written (RFC 8288).
    pub next_link: Option<String>,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// The body's share of the process-wide budget: drop it once the body is read.
    pub permit: BodyPermit,
    /// The upstream answered 304 to a conditional request: no body, the version asked about
    /// is current.
    pub not_modified: bool,
    /// What the response said of its version (the ones asked with, after a 304).
    pub validators: Validators,
    /// The body's size on the wire (compressed, where it was); `body` is decoded.
    pub wire_bytes: u64,
}

/// A body as one attempt received it.
struct Received {
    bytes: Bytes,
    content_type: Option<String>,
    next_link: Option<String>,
    permit: BodyPermit,
    not_modified: bool,
    validators: Validators,
    wire_bytes: u64,
}

impl FetchError {
    /// Whether another attempt may succeed: connection trouble, a cut-off body, 5xx and 429.
    /// A 4xx, a redirect loop, an oversized body or a missing secret file will not change.
    fn retryable(&self) -> bool {
        match self {
            FetchError::Connect(_) | FetchError::Body(_) | FetchError::Request(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 429,
            FetchError::OAuth2 { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Fetches the body of `request`: all attempts (with `retries`) end within its timeout, and
/// the body is refused as soon as it passes `max_body_bytes`. A `Retry-After` on a 429 or
/// 503 is waited for when the timeout leaves room for it; otherwise the poll ends at once.
async fn fetch(
    client: Option<&Http>,
    request: &Request,
    since: Option<&Validators>,
    page: Option<&Page>,
) -> Result<Fetched, FetchError> {
    let deadline = page.map_or_else(
        || tokio::time::Instant::now() + request.timeout,
        |p| p.deadline,
    );
    let work = async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (e, asked) = match once(client, request, since, page).await {
                Ok(r) => {
                    return Ok(Fetched {
                        body: r.bytes,
                        content_type: r.content_type,
                        next_link: r.next_link,
                        attempts: attempt,
                        permit: r.permit,
                        not_modified: r.not_modified,
                        validators: r.validators,
                        wire_bytes: r.wire_bytes,
                    });
                }
                Err(Failed { error, retry_after }) => (error, retry_after),
            };
            if !(e.retryable() && attempt <= request.retries) {
                return Err(e);
            }
            let mut pause = backoff(request.retry_backoff, attempt);
            if let (FetchError::Status(status), Some(wait)) = (&e, asked) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if wait > left {
                    telemetry::limit_hit(Limit::RetryAfter, &request.display_url);
                    return Err(FetchError::RetryAfter {
                        status: *status,
                        wait,
                        left,
                    });
                }
                pause = pause.max(wait);
            }
            tracing::debug!(attempt, error = %e, pause_ms = pause.as_millis() as u64, "retrying");
            tokio::time::sleep(pause).await;
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(request.timeout)),
    }
}

/// A failed attempt, with the upstream's `Retry-After` when it sent one.
pub(crate) struct Failed {
    error: FetchError,
    retry_after: Option<Duration>,
}

impl From<FetchError> for Failed {
    fn from(error: FetchError) -> Self {
        Failed {
            error,
            retry_after: None,
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110 10.2.3); a date in the past is 0.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter: a random pause in [0, base * 2^(attempt-1)].
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1 << (attempt - 1).min(16));
    // Jitter only needs to spread sources apart, not to be unpredictable.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let frac = f64::from(nanos % 1_000_000) / 1_000_000.0;
    cap.mul_f64(frac)
}

async fn once(
    client: Option<&Http>,
    request: &Request,
    since: Option<&Validators>,
    page: Option<&Page>,
) -> Result<Received, Failed> {
    match &request.target {
        Target::Http { .. } => {
            let h = client.ok_or_else(|| FetchError::Request("no HTTP client".into()))?;
            let client = h.client.get().await?;
            let now = chrono::Utc::now();
            let mut url = match page.and_then(|p| p.url.clone()) {
                Some(u) => u,
                None => request_url(request, now)?
                    .ok_or_else(|| FetchError::Request("no URL".into()))?,
            };
            if let Some(p) = page.filter(|p| !p.query.is_empty()) {
                let kept: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| !p.query.iter().any(|(n, _)| n == k))
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.query_pairs_mut()
                    .clear()
                    .extend_pairs(kept)
                    .extend_pairs(p.query.iter().map(|(k, v)| (k, v)));
            }
            let Some(tokens) = &h.oauth2 else {
                return http(&client, url, now, request, since, None, page).await;
            };
            let mut token = tokens.token().await?;
            loop {
                let r = http(
                    &client,
                    url.clone(),
                    now,
                    request,
                    since,
                    Some(&token.value),
                    page,
                )
                .await;
                // A 401 to a cached token: it may have been revoked or have expired early.
                // Once more with a new one; a 401 to a new token is the answer.
                if let Err(Failed {
                    error: FetchError::Status(401),
                    ..
                }) = &r
                    && !token.fresh
                {
                    tokens.forget(&token.value).await;
                    token = tokens.token().await?;
                    continue;
                }
                return r;
            }
        }
        Target::File(path) => Ok(file(path, request).await?),
    }
}

/// The headers of one poll: templates rendered, credentials read (files at every poll), all
/// marked sensitive so that no debug output shows them.
async fn headers(
    request: &Request,
    now: DateTime<Utc>,
    token: Option<&str>,
) -> Result<HeaderMap, FetchError> {
    let mut map = HeaderMap::with_capacity(request.headers.len() + 1);
    for (name, value) in &request.headers {
        let mut v = HeaderValue::from_str(&value.render(now)).map_err(|_| {
            FetchError::Request(format!(
                "header {name}: the rendered value is not a valid header value"
            ))
        })?;
        v.set_sensitive(true);
        map.append(name.clone(), v);
    }
    if !map.contains_key(ACCEPT_ENCODING) {
        map.insert(ACCEPT_ENCODING, HeaderValue::from_static(decode::ACCEPTED));
    }
    let auth = match &request.auth {
        None => return Ok(map),
        Some(Auth::Bearer(token)) => {
            let t = token.read().await.map_err(FetchError::Secret)?;
            format!("Bearer {}", t.trim())
        }
        Some(Auth::Basic { username, password }) => {
            use base64::Engine;
            let p = password.read().await.map_err(FetchError::Secret)?;
            let raw = format!("{username}:{p}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }
        Some(Auth::OAuth2(_)) => match token {
            Some(t) => format!("Bearer {t}"),
            None => return Err(FetchError::Request("no OAuth2 token".into())),
        },
    };
    let mut v = HeaderValue::from_str(&auth).map_err(|_| {
        FetchError::Secret("the credential holds characters not allowed in a header".into())
    })?;
    v.set_sensitive(true);
    map.insert(AUTHORIZATION, v);
    Ok(map)
}

async fn http(
    client: &reqwest::Client,
    url: Url,
    now: DateTime<Utc>,
    request: &Request,
    since: Option<&Validators>,
    token: Option<&str>,
    page: Option<&Page>,
) -> Result<Received, Failed> {
    let mut resp = follow(client, url, now, request, since, token, page).await?;
    let status = resp.status();
    if let (StatusCode::NOT_MODIFIED, Some(since)) = (status, since) {
        return Ok(Received {
            bytes: Bytes::new(),
            content_type: None,
            next_link: None,
            permit: BodyPermit::default(),
            not_modified: true,
            validators: since.clone(),
            wire_bytes: 0,
        });
    }
    if !request.accepts(status.as_u16()) {
        return Err(Failed {
            retry_after: retry_after(resp.headers(), Utc::now()),
            error: FetchError::Status(status.as_u16()),
        });
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let validators = Validators::of(resp.headers());
    let next_link = next_link(resp.headers());
    let encoding = Encoding::of(resp.headers())?;
    let limit = request.max_body_bytes;
    // The announced length is the wire's: it bounds an identity body only.
    let announced = resp
        .content_length()
        .filter(|_| encoding == Encoding::Identity);
    if announced.is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge { limit }.into());
    }
    // An announced length is taken from the budget whole, before the first byte: a poll
    // then never holds part of the budget while it waits for more.
    let mut permit = BodyPermit::default();
    if let Some(n) = announced {
        permit.cover(n, &request.display_url).await;
    }
    let mut body = Decoder::new(encoding, announced, limit)?;
    let at = resp.url().clone();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(e, request, &at))? {
        body.push(&chunk)?;
        permit.cover(body.len() as u64, &request.display_url).await;
    }
    let wire_bytes = body.wire();
    Ok(Received {
        bytes: body.finish()?.into_bytes(),
        content_type,
        next_link,
        permit,
        not_modified: false,
        validators,
        wire_bytes,
    })
}

/// The `rel="next"` target of the `Link` headers (RFC 8288: several headers, several links
/// each, `rel` with several relation types, quoted or not).
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>').map(|c| open + c) else {
                break;
            };
            let target = &rest[open + 1..close];
            // The parameters run to the next link (a `<` outside quotes) or the end.
            let params_end = rest[close..].find(",").map_or(rest.len(), |c| close + c);
            let params = &rest[close + 1..params_end];
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &rest[params_end.min(rest.len())..];
            if rest.starts_with(',') {
                rest = &rest[1..];
            }
        }
    }
    None
}

/// Sends the request and follows redirects, at most [`MAX_REDIRECTS`] hops, each checked
/// against `request.redirects`. Once a hop leaves the first URL's origin (scheme, host and
/// port), the configured headers and credentials stay behind (only `Accept` and
/// `Accept-Language` go on), and a hop that would carry the request body there is refused.
async fn follow(
    client: &reqwest::Client,
    mut url: Url,
    now: DateTime<Utc>,
    request: &Request,
    since: Option<&Validators>,
    token: Option<&str>,
    page: Option<&Page>,
) -> Result<reqwest::Response, FetchError> {
    let origin = url.origin();
    let mut headers = headers(request, now, token).await?;
    if let Some(v) = since {
        v.ask(&mut headers);
    }
    let mut method = request.method.clone();
    let mut body = request.body.as_ref().map(|b| b.render(now));
    // A fan-out item's own method, headers (after the source's) and body.
    if let Some(p) = page {
        for (name, value) in &p.headers {
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                FetchError::Request(format!(
                    "header {name}: the item's value is not a valid header value"
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(name.clone(), v);
        }
        if let Some(m) = &p.method {
            method = m.clone();
        }
        if p.body.is_some() {
            body = p.body.clone();
        }
    }
    let mut hops = 0;
    loop {
        let mut builder = client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(b) = &body {
            builder = builder.body(b.clone());
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| classify(e, request, &url))?;
        let status = resp.status();
        if !request.follow_redirects
            || !status.is_redirection()
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(resp);
        }
        let Some(location) = resp.headers().get(LOCATION) else {
            return Ok(resp);
        };
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(FetchError::Redirect);
        }
        let next = location
            .to_str()
            .ok()
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| refused(request, "the Location header is not a valid URL".into()))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(refused(
                request,
                format!("{} is not http(s)", next.scheme()),
            ));
        }
        if !request.redirects.allows(&next) {
            return Err(refused(
                request,
                format!("{} is not in probe.allow_targets", origin_of(&next)),
            ));
        }
        // 301, 302 and 303 turn a request with a body into a GET without one (as browsers
        // do); 307 and 308 repeat it as it was.
        if matches!(status.as_u16(), 301..=303) && method != Method::HEAD {
            method = Method::GET;
            body = None;
        }
        if next.origin() != origin {
            if body.is_some() {
                return Err(refused(
                    request,
                    format!(
                        "{status} would send the request body to another origin ({})",
                        origin_of(&next)
                    ),
                ));
            }
            headers = public_headers(&headers);
        }
        url = next;
    }
}

fn refused(request: &Request, why: String) -> FetchError {
    telemetry::limit_hit(Limit::RedirectRefused, &request.display_url);
    FetchError::RedirectRefused(why)
}

/// `scheme://host:port` of a hop: what a message may show of a URL the upstream chose (its
/// path and query may echo the request's own, tokens included).
fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// What goes on to another origin: content negotiation only. Custom headers are API keys as
/// often as not, so none of them is kept.
fn public_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE] {
        for v in headers.get_all(&name) {
            kept.append(name.clone(), v.clone());
        }
    }
    kept
}

async fn file(path: &std::path::Path, request: &Request) -> Result<Received, FetchError> {
    let limit = request.max_body_bytes;
    // The path as written: an expanded `${VAR}` stays out of the message.
    let err = |e: std::io::Error| FetchError::File {
        path: request.display_url.clone(),
        message: e.to_string(),
    };
    let f = tokio::fs::File::open(path).await.map_err(err)?;
    let size = f.metadata().await.map_err(err)?.len();
    let mut permit = BodyPermit::default();
    permit
        .cover(size.min(limit + 1), &request.display_url)
        .await;
    let mut body = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    f.take(limit + 1)
        .read_to_end(&mut body)
        .await
        .map_err(err)?;
    if body.len() as u64 > limit {
        return Err(FetchError::TooLarge { limit });
    }
    Ok(Received {
        bytes: body.into(),
        content_type: None,
        next_link: None,
        permit,
        not_modified: false,
        validators: Validators::default(),
        wire_bytes: 0,
    })
}

fn classify(e: reqwest::Error, request: &Request, url: &Url) -> FetchError {
    let describe = |e: &reqwest::Error| scrub(describe(e), request, url);
    if let Some(cause) = tls::diagnose(&e) {
        FetchError::Tls(cause)
    } else if e.is_timeout() {
        FetchError::Timeout(request.timeout)
    } else if e.is_redirect() {
        FetchError::Redirect
    } else if e.is_connect() {
        FetchError::Connect(describe(&e))
    } else if e.is_body() || e.is_decode() {
        FetchError::Body(describe(&e))
    } else {
        FetchError::Request(describe(&e))
    }
}

/// A message as it may be shown: the URL as written instead of the one sent, and a host
/// that came from `${VAR}` (and so is not in the written URL) replaced, since resolver
/// errors name the host they looked up.
fn scrub(message: String, request: &Request, url: &Url) -> String {
    let mut m = message.replace(url.as_str(), &request.display_url);
    if let Some(host) = url.host_str()
        && !request.display_url.contains(host)
    {
        m = m.replace(host, "<host>");
    }
    // A proxy's URL shows as written, without its credentials.
    if let Proxying::Proxy { url, display, .. } = &request.proxy {
        m = m.replace(url.as_str(), display);
        if let Some(p) = url.password().filter(|p| !p.is_empty()) {
            m = m.replace(p, "<password>");
        }
    }
    m
}

/// The error chain without the URL: reqwest puts the full URL (which may carry a token in its
/// query) in its Display, so only the sources' messages are used.
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    if parts.is_empty() {
        let mut s = e.to_string();
        if let Some(url) = e.url() {
            s = s.replace(url.as_str(), "<url>");
        }
        return s;
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_among_several_relations_and_headers() {
        let link = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(reqwest::header::LINK, HeaderValue::from_str(v).unwrap());
            }
            next_link(&h)
        };
        for (values, want) in [
            // GitHub's shape: several links in one header, next in the middle.
            (
                &[
                    r#"<https://api.x/r?page=1>; rel="prev", <https://api.x/r?page=3>; rel="next", <https://api.x/r?page=9>; rel="last""#,
                ][..],
                Some("https://api.x/r?page=3"),
            ),
            // Several relation types in one rel, unquoted rel, other parameters, case.
            (
                &[r#"</p/2>; title="two"; REL="next last""#][..],
                Some("/p/2"),
            ),
            (&["</p/2>;rel=next"][..], Some("/p/2")),
            // Spread over several headers.
            (
                &[r#"</p/1>; rel="prev""#, r#"</p/3>; rel="next""#][..],
                Some("/p/3"),
            ),
            // No next: the last page.
            (&[r#"</p/1>; rel="first", </p/1>; rel="prev""#][..], None),
            (&[r#"</p/2>; rel="nextish""#][..], None),
            (&[][..], None),
            (&["garbage"][..], None),
        ] {
            assert_eq!(link(values).as_deref(), want, "{values:?}");
        }
    }

    fn request(display_url: &str) -> Request {
        let c = crate::config::parse(
            &format!(
                "sources:\n  - name: s\n    url: {display_url}\n    metrics: [{{name: n, value: $.n}}]\n"
            ),
            &crate::config::Origin::file(std::path::Path::new("x.yaml")),
            &|k| (k == "HOST").then(|| "secret-host.internal".to_string()),
        )
        .unwrap();
        c.sources[0].request.clone()
    }

    #[test]
    fn messages_show_the_url_as_written() {
        let r = request("http://${HOST}/v1?token=abc");
        let sent = Url::parse("http://secret-host.internal/v1?token=abc").unwrap();
        let m = scrub(
            format!(
                "dns error: no record found for Query {{ name: Name(\"secret-host.internal.\") }} ({sent})"
            ),
            &r,
            &sent,
        );
        assert!(!m.contains("secret-host"), "{m}");
        assert!(m.contains("<host>"), "{m}");
        assert!(m.contains("http://${HOST}/v1?token=abc"), "{m}");
        // A host written as it is stays readable.
        let r = request("http://api.internal/v1");
        let sent = Url::parse("http://api.internal/v1").unwrap();
        let m = scrub("cannot resolve api.internal".into(), &r, &sent);
        assert_eq!(m, "cannot resolve api.internal");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        for (v, want) in [
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("Fri, 04 Dec 2026 10:00:30 GMT", Some(30)),
            ("Fri, 04 Dec 2026 09:00:00 GMT", Some(0)),
            ("soon", None),
            ("-1", None),
        ] {
            h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static(v));
            assert_eq!(retry_after(&h, now), want.map(Duration::from_secs), "{v}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
