//! Requests: method, URL, headers, query and body templates, auth and secrets, retries.

use std::sync::Arc;

use super::Compiler;
use crate::config::raw::RawSource;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::config::{
    Auth, DEFAULT_MAX_BODY_BYTES, DEFAULT_RETRY_BACKOFF, DEFAULT_TIMEOUT, Proxying, Redirects,
    Request, Secret, Target, Templated, text,
};

impl Compiler<'_> {
    pub(super) fn request(&mut self, at: &str, rs: &RawSource) -> Option<Request> {
        let before = self.diagnostics.len();
        let url_at = format!("{at}.url");
        // Validation renders the templates once, at load time.
        let now = chrono::Utc::now();
        let target = self.templated(&url_at, &rs.url).and_then(|t| {
            let u = t.render(now);
            // `file://data.json` (not a URL by the book) is a path relative to the config
            // file's directory, so a bundled config works from any working directory.
            if let Some(rest) = u.strip_prefix("file://")
                && !rest.starts_with('/')
            {
                if rest.is_empty() {
                    self.error(&url_at, "a file:// URL needs a path");
                    return None;
                }
                return Some(Target::File(self.base_dir.join(rest)));
            }
            match Url::parse(&u) {
                Ok(url) if url.scheme() == "file" => match url.to_file_path() {
                    Ok(p) => Some(Target::File(p)),
                    Err(()) => {
                        self.error(&url_at, "a file:// URL must hold an absolute local path");
                        None
                    }
                },
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    if url.host_str().is_none_or(str::is_empty) {
                        self.error(&url_at, "the URL has no host");
                        return None;
                    }
                    Some(Target::Http {
                        url: t,
                        query: Vec::new(),
                    })
                }
                Ok(url) => {
                    self.error(
                        &url_at,
                        format!(
                            "unsupported URL scheme {:?} (use http, https or file)",
                            url.scheme()
                        ),
                    );
                    None
                }
                // Url's messages never include the URL itself, so no secret leaks here.
                Err(e) => {
                    self.error(&url_at, format!("invalid URL: {e}"));
                    None
                }
            }
        });
        let target = match (target, rs.query.is_empty()) {
            (Some(Target::Http { url, .. }), false) => {
                let mut query = Vec::new();
                for (k, v) in &rs.query {
                    if let Some(t) = self.templated(&format!("{at}.query.{k}"), v) {
                        query.push((k.clone(), t));
                    }
                }
                Some(Target::Http { url, query })
            }
            (Some(Target::File(_)), false) => {
                self.error(format!("{at}.query"), "`query` needs an http(s) URL");
                None
            }
            (t, _) => t,
        };
        let method = self.method(at, rs.method.as_deref());
        let mut headers = Vec::new();
        for (k, v) in &rs.headers {
            let hat = format!("{at}.headers.{k}");
            let name = match HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    self.error(&hat, format!("invalid header name {k:?}"));
                    continue;
                }
            };
            let Some(t) = self.templated(&hat, v) else {
                continue;
            };
            if HeaderValue::from_str(&t.render(now)).is_err() {
                self.error(
                    &hat,
                    "invalid header value (control characters or non-visible bytes)",
                );
                continue;
            }
            headers.push((name, t));
        }
        let mut auth = None;
        if let Some(ba) = &rs.basic_auth {
            let bat = format!("{at}.basic_auth");
            let user = self.expand(&format!("{bat}.username"), &ba.username);
            let password = self
                .secret(&bat, "password", &ba.password, &ba.password_file)
                .map(|p| p.unwrap_or_else(|| Secret::Value(String::new())));
            if let (Some(username), Some(password)) = (user, password) {
                auth = Some(Auth::Basic { username, password });
            }
        }
        let bearer = self
            .secret(at, "bearer_token", &rs.bearer_token, &rs.bearer_token_file)
            .flatten();
        if let Some(b) = bearer {
            if auth.is_some() {
                self.error(
                    format!("{at}.bearer_token"),
                    "use either basic_auth or a bearer token, not both",
                );
            }
            auth = Some(Auth::Bearer(b));
        }
        let body = match &rs.body {
            Some(b) => self.templated(&format!("{at}.body"), b),
            None => None,
        };
        let timeout = match &rs.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => match text::parse_duration(t) {
                Ok(d) if d.is_zero() => {
                    self.error(format!("{at}.timeout"), "timeout must be more than zero");
                    DEFAULT_TIMEOUT
                }
                Ok(d) => d,
                Err(e) => {
                    self.error(format!("{at}.timeout"), e);
                    DEFAULT_TIMEOUT
                }
            },
        };
        let max_body_bytes = rs.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            self.error(
                format!("{at}.max_body_bytes"),
                "max_body_bytes must be more than zero",
            );
        }
        let valid_status_codes = rs.valid_status_codes.as_ref().map(|codes| {
            if codes.is_empty() {
                self.error(
                    format!("{at}.valid_status_codes"),
                    "an empty list accepts no response; leave it out for any 2xx",
                );
            }
            for (i, c) in codes.iter().enumerate() {
                if !(100..=599).contains(c) {
                    self.error(
                        format!("{at}.valid_status_codes[{i}]"),
                        format!("{c} is not an HTTP status (100 to 599)"),
                    );
                }
            }
            Arc::<[u16]>::from(codes.as_slice())
        });
        let proxy = self.proxying(at, &rs.proxy_url, &rs.no_proxy, rs.proxy_from_environment);
        let tls = rs
            .tls
            .as_ref()
            .and_then(|t| self.tls(&format!("{at}.tls"), t));
        if let (Some(_), Some(Target::Http { url, .. })) = (&tls, &target)
            && !at.starts_with("modules")
            && !url.render(now).starts_with("https://")
        {
            self.warn(
                format!("{at}.tls"),
                "tls applies to https:// URLs only, and this one is http://",
            );
        }
        if let Some(o) = &rs.oauth2 {
            let oat = format!("{at}.oauth2");
            if auth.is_some() {
                self.error(
                    &oat,
                    "use one of basic_auth, a bearer token and oauth2, not several",
                );
            }
            if let Some(o) = self.oauth2(&oat, o) {
                auth = Some(Auth::OAuth2(Arc::new(o)));
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        let retry_backoff = match &rs.retry_backoff {
            None => DEFAULT_RETRY_BACKOFF,
            Some(t) => match text::parse_duration(t) {
                Ok(d) => d,
                Err(e) => {
                    self.error(format!("{at}.retry_backoff"), e);
                    return None;
                }
            },
        };
        Some(Request {
            target: target?,
            method,
            headers,
            auth,
            body,
            timeout,
            max_body_bytes,
            retries: rs.retries.unwrap_or(0),
            retry_backoff,
            display_url: display_url(&rs.url),
            redirects: Redirects::Any,
            follow_redirects: rs.follow_redirects.unwrap_or(true),
            valid_status_codes,
            http2: rs.enable_http2.unwrap_or(true),
            proxy,
            tls,
        })
    }

    /// An optional duration field: `Err(())` when it is written but not a duration (the
    /// error is reported).
    pub(super) fn optional_duration(
        &mut self,
        path: String,
        text: Option<&str>,
    ) -> Result<Option<std::time::Duration>, ()> {
        match text.map(text::parse_duration) {
            None => Ok(None),
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => {
                self.error(path, e);
                Err(())
            }
        }
    }

    /// `method` (default GET), any case.
    pub(super) fn method(&mut self, at: &str, method: Option<&str>) -> Method {
        let Some(m) = method else {
            return Method::GET;
        };
        Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| {
            self.error(format!("{at}.method"), format!("invalid HTTP method {m:?}"));
            Method::GET
        })
    }

    pub(super) fn expand(&mut self, path: &str, value: &str) -> Option<String> {
        match text::expand_env(value, self.env) {
            Ok(v) => Some(v),
            Err(missing) if self.allow_missing_env => {
                for name in &missing {
                    self.warn(
                        path.to_string(),
                        format!(
                            "environment variable {name} is not set (checked with a stand-in value: --allow-missing-env)"
                        ),
                    );
                }
                // A stand-in that keeps a URL a URL: `${API_URL}` alone becomes one.
                let whole_url = path.ends_with("url") && value.trim_start().starts_with("${");
                let env = self.env;
                let stand_in = |name: &str| {
                    env(name).or_else(|| {
                        Some(if whole_url {
                            "http://env-unset.invalid/".to_string()
                        } else {
                            "env-unset".to_string()
                        })
                    })
                };
                text::expand_env(value, &stand_in).ok()
            }
            Err(missing) => {
                for name in missing {
                    self.error(
                        path.to_string(),
                        format!("environment variable {name} is not set"),
                    );
                }
                None
            }
        }
    }

    /// `${VAR}` expanded, then parsed for `{now}` placeholders.
    pub(super) fn templated(&mut self, path: &str, value: &str) -> Option<Templated> {
        let expanded = self.expand(path, value)?;
        match Templated::parse(&expanded) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path.to_string(), e);
                None
            }
        }
    }

    /// `proxy_url`, `no_proxy` and `proxy_from_environment`.
    pub(super) fn proxying(
        &mut self,
        at: &str,
        proxy_url: &Option<String>,
        no_proxy: &Option<String>,
        from_environment: Option<bool>,
    ) -> Proxying {
        let Some(written) = proxy_url else {
            if no_proxy.is_some() {
                self.error(
                    format!("{at}.no_proxy"),
                    "no_proxy applies to proxy_url, which is not set (the environment's own NO_PROXY applies to its proxy)",
                );
            }
            return match from_environment {
                Some(false) => Proxying::Direct,
                _ => Proxying::Environment,
            };
        };
        let path = format!("{at}.proxy_url");
        let Some(expanded) = self.expand(&path, written) else {
            return Proxying::Direct;
        };
        match Url::parse(&expanded) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Proxying::Proxy {
                    url,
                    no_proxy: no_proxy.clone(),
                    display: display_url(written),
                }
            }
            Ok(url) => {
                self.error(
                    path,
                    format!(
                        "a proxy is http:// or https:// with a host (not {}:)",
                        url.scheme()
                    ),
                );
                Proxying::Direct
            }
            // The message would show the URL, credentials and all.
            Err(e) => {
                self.error(path, format!("not a URL ({e})"));
                Proxying::Direct
            }
        }
    }

    /// A credential given as `FIELD` (with `${VAR}`) or `FIELD_file` (read at each poll).
    /// `None`: an error was reported; `Some(None)`: neither is set.
    pub(super) fn secret(
        &mut self,
        at: &str,
        field: &str,
        value: &Option<String>,
        file: &Option<String>,
    ) -> Option<Option<Secret>> {
        match (value, file) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{at}.{field}_file"),
                    format!("set either {field} or {field}_file, not both"),
                );
                None
            }
            (Some(v), None) => self
                .expand(&format!("{at}.{field}"), v)
                .map(|v| Some(Secret::Value(v))),
            (None, Some(f)) => Some(Some(Secret::File(self.base_dir.join(f)))),
            (None, None) => Some(None),
        }
    }
}

/// The URL as written, minus any `user:password@` part.
pub(crate) fn display_url(written: &str) -> String {
    if let Some((scheme, rest)) = written.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    written.to_string()
}
