//! OAuth2 client credentials (RFC 6749, 4.4): the token a source's requests carry.
//!
//! Guarantees: one token at a time per source, shared by its requests (a mutex makes
//! concurrent askers wait for one token request); cached until shortly before it expires
//! ([`refresh_margin`]); dropped and fetched again when the upstream answers 401 to it
//! (the caller does that once per attempt). The token endpoint gets the source's remaining
//! time, its own TLS and proxy, a body limit of [`MAX_TOKEN_RESPONSE_BYTES`]; its failures
//! are kind `oauth2`. The client secret is read at every token request (a rotated
//! `client_secret_file` needs no reload). Neither the secret nor a token appears in a
//! message, a log line or `Debug` output: the endpoint's answer shows only its standard
//! `error` code.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;

use super::{ClientCell, ClientSpec, FetchError};
use crate::config::OAuth2;

/// A token endpoint's answer larger than this is refused (a JWT is a few KB).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Fetches and caches one source's token.
#[derive(Debug)]
pub struct TokenSource {
    config: Arc<OAuth2>,
    client: ClientCell,
    cached: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: String,
    /// When to ask for a new one; `None`: the endpoint gave no lifetime, so until a 401.
    refresh_at: Option<Instant>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

/// How long before its expiry a token is replaced: a quarter of its lifetime, at most 30 s,
/// so that a request never leaves with a token about to expire, and a token that lives
/// 2 s is still used for 1.5 s.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(30))
}

/// A token as a request uses it: its value, and whether it was fetched for this request
/// (then a 401 is not the token's age, and asking again would not help).
pub struct Issued {
    pub value: String,
    pub fresh: bool,
}

impl TokenSource {
    pub fn new(config: &Arc<OAuth2>, timeout: Duration) -> Result<Self, FetchError> {
        let client = ClientCell::new(ClientSpec {
            timeout,
            http2: true,
            proxy: config.proxy.clone(),
            tls: config.tls.clone(),
        })
        .map_err(|e| oauth2_error(format!("the token client: {e}"), false))?;
        Ok(Self {
            config: config.clone(),
            client,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The cached token while it is good, else a new one from the endpoint.
    pub async fn token(&self) -> Result<Issued, FetchError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && t.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(Issued {
                value: t.value.clone(),
                fresh: false,
            });
        }
        *cached = None;
        let token = self.request().await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(Issued { value, fresh: true })
    }

    /// Forgets `value` (the upstream refused it), unless another request already replaced it.
    pub async fn forget(&self, value: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == value) {
            *cached = None;
        }
    }

    async fn request(&self) -> Result<Token, FetchError> {
        let c = &self.config;
        let client = self.client.get().await.map_err(|e| match e {
            // A broken TLS file of the token endpoint's is still a TLS problem.
            FetchError::Tls(_) => e,
            other => oauth2_error(format!("the token client: {other}"), false),
        })?;
        let secret = c
            .client_secret
            .read()
            .await
            .map_err(|e| oauth2_error(e, false))?;
        // RFC 6749 2.3.1: both are form-encoded before they are joined.
        let credentials = {
            use base64::Engine;
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&c.client_id),
                enc(&secret)
            ))
        };
        let mut auth = HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| oauth2_error("the client credentials are not valid in a header", false))?;
        auth.set_sensitive(true);
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !c.scopes.is_empty() {
                form.append_pair("scope", &c.scopes.join(" "));
            }
            for (k, v) in &c.endpoint_params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let started = Instant::now();
        let mut resp = client
            .post(c.token_url.clone())
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| self.failed(&e))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.failed(&e))? {
            if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(oauth2_error(
                    format!(
                        "the token endpoint's answer is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"
                    ),
                    false,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // The standard error code only: a description may echo what was sent.
            let code = serde_json::from_slice::<ErrorAnswer>(&body)
                .ok()
                .and_then(|a| a.error)
                .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()))
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err(oauth2_error(
                format!(
                    "the token endpoint {} answered HTTP {}{code}",
                    c.display_token_url,
                    status.as_u16()
                ),
                status.is_server_error() || status.as_u16() == 429,
            ));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            oauth2_error(
                format!(
                    "the token endpoint's answer is not a token (line {}, column {}: {:?})",
                    e.line(),
                    e.column(),
                    e.classify()
                ),
                false,
            )
        })?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(oauth2_error(
                "the token endpoint gave a token that is not a bearer token",
                false,
            ));
        }
        if answer.access_token.is_empty()
            || HeaderValue::from_str(&format!("Bearer {}", answer.access_token)).is_err()
        {
            return Err(oauth2_error(
                "the token endpoint gave an empty token or one not valid in a header",
                false,
            ));
        }
        let refresh_at = answer
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| {
                let life = Duration::from_secs_f64(s.min(1e9));
                started + life - refresh_margin(life)
            });
        tracing::debug!(
            token_url = %c.display_token_url,
            expires_in = ?answer.expires_in,
            "got an OAuth2 token"
        );
        Ok(Token {
            value: answer.access_token,
            refresh_at,
        })
    }

    fn failed(&self, e: &reqwest::Error) -> FetchError {
        if let Some(cause) = super::tls::diagnose(e) {
            return FetchError::Tls(format!("the token endpoint: {cause}"));
        }
        if e.is_timeout() {
            return oauth2_error("the token endpoint did not answer in time", true);
        }
        let m = super::describe(e).replace(
            self.config.token_url.as_str(),
            &self.config.display_token_url,
        );
        oauth2_error(
            format!("the token endpoint {}: {m}", self.config.display_token_url),
            true,
        )
    }
}

fn oauth2_error(message: impl Into<String>, transient: bool) -> FetchError {
    FetchError::OAuth2 {
        message: message.into(),
        transient,
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_shortly_before_they_expire() {
        assert_eq!(
            refresh_margin(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(60)),
            Duration::from_secs(15)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn debug_shows_no_token() {
        let t = Token {
            value: "tok-secret".into(),
            refresh_at: None,
        };
        assert!(!format!("{t:?}").contains("tok-secret"));
    }
}
