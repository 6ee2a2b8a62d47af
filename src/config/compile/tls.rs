//! `tls` (to an upstream or a token endpoint) and `oauth2`: checked here, once; the files
//! they name are read at every poll by `fetch`, so their absence is a poll's error (kind
//! `tls` or `oauth2`), not a load error, as for token files.

use reqwest::Url;
use rustls_pki_types::ServerName;

use super::Compiler;
use super::requests::display_url;
use crate::config::raw::{RawOAuth2, RawTls};
use crate::config::{OAuth2, Secret, Tls, TlsVersion};

impl Compiler<'_> {
    pub(super) fn tls(&mut self, at: &str, raw: &RawTls) -> Option<Tls> {
        let before = self.diagnostics.len();
        let ca_file = raw.ca_file.as_ref().map(|f| self.base_dir.join(f));
        let system_roots = raw.system_roots.unwrap_or(ca_file.is_none());
        let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
        if !system_roots && ca_file.is_none() && !insecure_skip_verify {
            self.error(
                format!("{at}.system_roots"),
                "with system_roots: false and no ca_file, no certificate can be trusted",
            );
        }
        let client = match (&raw.cert_file, &raw.key_file) {
            (Some(c), Some(k)) => Some((self.base_dir.join(c), self.base_dir.join(k))),
            (None, None) => None,
            (Some(_), None) => {
                self.error(format!("{at}.cert_file"), "cert_file needs key_file");
                None
            }
            (None, Some(_)) => {
                self.error(format!("{at}.key_file"), "key_file needs cert_file");
                None
            }
        };
        let server_name =
            raw.server_name
                .as_ref()
                .and_then(|n| match ServerName::try_from(n.clone()) {
                    Ok(name) => Some(name),
                    Err(_) => {
                        self.error(
                            format!("{at}.server_name"),
                            format!("{n:?} is not a DNS name or an IP address"),
                        );
                        None
                    }
                });
        let min_version = match raw.min_version.as_deref() {
            None | Some("TLS12") => TlsVersion::Tls12,
            Some("TLS13") => TlsVersion::Tls13,
            Some(v @ ("TLS10" | "TLS11")) => {
                self.error(
                    format!("{at}.min_version"),
                    format!(
                        "{v} is not offered: TLS 1.0 and 1.1 are obsolete (use TLS12 or TLS13)"
                    ),
                );
                TlsVersion::Tls12
            }
            Some(v) => {
                self.error(
                    format!("{at}.min_version"),
                    format!("unknown TLS version {v:?} (use TLS12 or TLS13)"),
                );
                TlsVersion::Tls12
            }
        };
        if insecure_skip_verify {
            self.warn(
                format!("{at}.insecure_skip_verify"),
                "the upstream's certificate is not verified: anyone on the path can read and change what is fetched",
            );
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Tls {
            ca_file,
            system_roots,
            client,
            server_name,
            insecure_skip_verify,
            min_version,
        })
    }

    pub(super) fn oauth2(&mut self, at: &str, raw: &RawOAuth2) -> Option<OAuth2> {
        let before = self.diagnostics.len();
        let client_id = self.expand(&format!("{at}.client_id"), &raw.client_id);
        let client_secret = match self.secret(
            at,
            "client_secret",
            &raw.client_secret,
            &raw.client_secret_file,
        ) {
            Some(Some(s)) => Some(s),
            Some(None) => {
                self.error(
                    format!("{at}.client_secret"),
                    "the client credentials grant needs client_secret or client_secret_file",
                );
                None
            }
            None => None,
        };
        let url_at = format!("{at}.token_url");
        let token_url = self
            .expand(&url_at, &raw.token_url)
            .and_then(|u| match Url::parse(&u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                Ok(_) => {
                    self.error(
                        &url_at,
                        "the token URL must be http:// or https:// with a host",
                    );
                    None
                }
                // Url's messages never include the URL itself.
                Err(e) => {
                    self.error(&url_at, format!("invalid URL: {e}"));
                    None
                }
            });
        let mut endpoint_params = Vec::new();
        for (k, v) in &raw.endpoint_params {
            let pat = format!("{at}.endpoint_params.{k}");
            if matches!(
                k.as_str(),
                "grant_type" | "scope" | "client_id" | "client_secret"
            ) {
                self.error(
                    &pat,
                    format!("{k} is set by jsonbridge (use the oauth2 fields for it)"),
                );
                continue;
            }
            if let Some(v) = self.expand(&pat, v) {
                endpoint_params.push((k.clone(), v));
            }
        }
        for (i, s) in raw.scopes.iter().enumerate() {
            if s.is_empty() || s.contains(' ') {
                self.error(
                    format!("{at}.scopes[{i}]"),
                    "a scope is one non-empty word (the list is joined with spaces)",
                );
            }
        }
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.tls(&format!("{at}.tls"), t));
        let proxy = self.proxying(
            at,
            &raw.proxy_url,
            &raw.no_proxy,
            raw.proxy_from_environment,
        );
        if self.diagnostics.len() > before {
            return None;
        }
        Some(OAuth2 {
            client_id: client_id?,
            client_secret: client_secret.unwrap_or(Secret::Value(String::new())),
            token_url: token_url?,
            display_token_url: display_url(&raw.token_url),
            scopes: raw.scopes.clone(),
            endpoint_params,
            tls,
            proxy,
        })
    }
}
