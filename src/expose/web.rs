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
//! failed attempts are never cached. Request heads over 16 KiB are refused.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request head accepted (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

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
        let auth = (!raw.basic_auth_users.is_empty()).then(|| {
            Arc::new(BasicAuth {
                users: raw.basic_auth_users,
                verified: Mutex::new(HashSet::new()),
            })
        });
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
    /// `user:password` pairs that passed bcrypt (successes only, so the set is bounded by
    /// what legitimate clients send).
    verified: Mutex<HashSet<String>>,
}

impl BasicAuth {
    fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        use base64::Engine;
        let Some(encoded) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Some(pair) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.contains(&pair) {
            return true;
        }
        if bcrypt::verify(password, hash).unwrap_or(false) {
            if verified.len() < 1024 {
                verified.insert(pair);
            }
            return true;
        }
        false
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
                // bcrypt is slow on purpose: off the async workers.
                let header = req.headers().get(header::AUTHORIZATION).cloned();
                let ok = open
                    || tokio::task::spawn_blocking(move || auth.check(header.as_ref()))
                        .await
                        .unwrap_or(false);
                if ok {
                    next.run(req).await
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
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEAD_BYTES)
        .header_read_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = web.tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        match &acceptor {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(tls), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
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
