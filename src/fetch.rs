//! `fetch`: one request to one source, returning the body bytes.
//!
//! Sits between [`crate::schedule`] (which calls it) and [`crate::extract`]. Guarantees: the
//! whole fetch (connect, headers, body) ends within the source's `timeout`; a body larger than
//! `max_body_bytes` is refused while streaming, before it is held in memory; a non-2xx status
//! is an error; errors carry a stable `kind()` and never include header values or expanded
//! URLs (which may hold secrets).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::config::{Auth, Request, Target};

mod buffer;
use buffer::Buffer;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("response body is larger than max_body_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("too many redirects or a redirect loop")]
    Redirect,
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
}

impl FetchError {
    /// Stable label value for `jsonbridge_source_polls_total{result=...}`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Connect(_) => "connect",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge { .. } => "body_too_large",
            FetchError::Redirect => "redirect",
            FetchError::Body(_) => "body",
            FetchError::Request(_) => "request",
            FetchError::File { .. } => "file",
            FetchError::Secret(_) => "secret_file",
        }
    }
}

/// What one source fetches with: its HTTP client, built once and kept for the source's
/// lifetime so connections are reused across polls. A `file://` source has none (building a
/// client sets up TLS, which 1,000 file sources would pay for nothing).
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: Option<reqwest::Client>,
}

impl Fetcher {
    pub fn new(request: &Request) -> Result<Self, FetchError> {
        let client = match request.target {
            Target::File(_) => None,
            Target::Http { .. } => Some(
                reqwest::Client::builder()
                    .user_agent(concat!("jsonbridge/", env!("CARGO_PKG_VERSION")))
                    .timeout(request.timeout)
                    .connect_timeout(request.timeout)
                    .build()
                    .map_err(|e| FetchError::Request(describe(&e)))?,
            ),
        };
        Ok(Self { client })
    }

    /// Fetches the body of `request`, with retries, within its timeout and size limit.
    pub async fn fetch(&self, request: &Request) -> Result<Fetched, FetchError> {
        fetch(self.client.as_ref(), request).await
    }
}

/// A fetched body, with what the poll reports about it.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    /// The response's Content-Type, to explain a body that is not JSON.
    pub content_type: Option<String>,
    /// Attempts made (1 without retries).
    pub attempts: u32,
}

impl FetchError {
    /// Whether another attempt may succeed: connection trouble, a cut-off body, 5xx and 429.
    /// A 4xx, a redirect loop, an oversized body or a missing secret file will not change.
    fn retryable(&self) -> bool {
        match self {
            FetchError::Connect(_) | FetchError::Body(_) | FetchError::Request(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }
}

/// Fetches the body of `request`: all attempts (with `retries`) end within its timeout, and
/// the body is refused as soon as it passes `max_body_bytes`.
async fn fetch(client: Option<&reqwest::Client>, request: &Request) -> Result<Fetched, FetchError> {
    let work = async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match once(client, request).await {
                Ok((body, content_type)) => {
                    return Ok(Fetched {
                        body,
                        content_type,
                        attempts: attempt,
                    });
                }
                Err(e) if e.retryable() && attempt <= request.retries => {
                    let pause = backoff(request.retry_backoff, attempt);
                    tracing::debug!(attempt, error = %e, pause_ms = pause.as_millis() as u64, "retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(request.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(request.timeout)),
    }
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
    client: Option<&reqwest::Client>,
    request: &Request,
) -> Result<(Bytes, Option<String>), FetchError> {
    match &request.target {
        Target::Http { url, query } => {
            let client = client.ok_or_else(|| FetchError::Request("no HTTP client".into()))?;
            let now = chrono::Utc::now();
            let mut url = reqwest::Url::parse(&url.render(now))
                .map_err(|e| FetchError::Request(format!("invalid URL: {e}")))?;
            if !query.is_empty() {
                url.query_pairs_mut()
                    .extend_pairs(query.iter().map(|(k, v)| (k, v.render(now))));
            }
            http(client, url, now, request).await
        }
        Target::File(path) => Ok((file(path, request.max_body_bytes).await?, None)),
    }
}

/// The headers of one poll: templates rendered, credentials read (files at every poll), all
/// marked sensitive so that no debug output shows them.
async fn headers(request: &Request, now: DateTime<Utc>) -> Result<HeaderMap, FetchError> {
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
    url: reqwest::Url,
    now: DateTime<Utc>,
    request: &Request,
) -> Result<(Bytes, Option<String>), FetchError> {
    let mut builder = client
        .request(request.method.clone(), url)
        .headers(headers(request, now).await?);
    if let Some(body) = &request.body {
        builder = builder.body(body.render(now));
    }
    let mut resp = builder
        .send()
        .await
        .map_err(|e| classify(e, request.timeout))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = request.max_body_bytes;
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge { limit });
    }
    let mut body = Buffer::new(resp.content_length());
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| classify(e, request.timeout))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        body.push(&chunk);
    }
    Ok((body.into_bytes(), content_type))
}

async fn file(path: &std::path::Path, limit: u64) -> Result<Bytes, FetchError> {
    let err = |e: std::io::Error| FetchError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let f = tokio::fs::File::open(path).await.map_err(err)?;
    let mut body = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    f.take(limit + 1)
        .read_to_end(&mut body)
        .await
        .map_err(err)?;
    if body.len() as u64 > limit {
        return Err(FetchError::TooLarge { limit });
    }
    Ok(body.into())
}

fn classify(e: reqwest::Error, timeout: Duration) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout(timeout)
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
