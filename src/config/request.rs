//! Request parts that are rendered at every poll: `{now}` time templates and secrets read
//! from files.
//!
//! A time-window API is asked for "the last 30 minutes" with
//! `from: "{now - 30m | rfc3339}"`; a rotated token file is picked up at the next poll
//! without a reload. `Debug` never prints a rendered value or a secret.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use reqwest::header::HeaderName;
use reqwest::{Method, Url};

use super::Proxying;
use super::text::parse_duration;
use crate::extract::Selector;

/// Text with `{now [+|- DURATION] [| FORMAT]}` placeholders.
#[derive(Clone, PartialEq)]
pub struct Templated {
    parts: Vec<TPart>,
}

#[derive(Clone, PartialEq)]
enum TPart {
    Literal(String),
    Now {
        /// Milliseconds added to the current time (negative: in the past).
        offset_ms: i64,
        format: TimeFormat,
    },
}

/// How `{now}` is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimeFormat {
    /// `2026-11-26T10:00:00Z` (the default).
    Rfc3339,
    /// `2026-11-26T10:00:00.123Z`.
    Rfc3339Ms,
    /// Seconds since the epoch.
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// `2026-11-26`.
    Date,
}

impl fmt::Debug for Templated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Literal parts may hold expanded secrets.
        f.write_str("Templated(..)")
    }
}

impl Templated {
    /// Parses `text`. Only `{now...}` is special; any other brace is literal text, so JSON
    /// bodies need no escaping.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(i) = rest.find("{now") {
            let after = &rest[i + 4..];
            let is_placeholder = after
                .chars()
                .next()
                .is_some_and(|c| c == '}' || c == '|' || c == '+' || c == '-' || c == ' ');
            if !is_placeholder {
                literal.push_str(&rest[..i + 4]);
                rest = after;
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed {{now...}} in {text:?}"))?;
            literal.push_str(&rest[..i]);
            if !literal.is_empty() {
                parts.push(TPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(parse_now(&after[..end])?);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(TPart::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// Whether the text is the same at every poll.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, TPart::Literal(_)))
    }

    pub fn render(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TPart::Literal(s) => out.push_str(s),
                TPart::Now { offset_ms, format } => {
                    let t = now + chrono::Duration::milliseconds(*offset_ms);
                    let s = match format {
                        TimeFormat::Rfc3339 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
                        TimeFormat::Rfc3339Ms => t.to_rfc3339_opts(SecondsFormat::Millis, true),
                        TimeFormat::Unix => t.timestamp().to_string(),
                        TimeFormat::UnixMs => t.timestamp_millis().to_string(),
                        TimeFormat::Date => t.format("%Y-%m-%d").to_string(),
                    };
                    out.push_str(&s);
                }
            }
        }
        out
    }
}

/// The inside of `{now ...}` after `now`: ` - 30m | rfc3339`.
fn parse_now(spec: &str) -> Result<TPart, String> {
    let (offset, format) = match spec.split_once('|') {
        Some((o, f)) => (o.trim(), Some(f.trim())),
        None => (spec.trim(), None),
    };
    let offset_ms = if offset.is_empty() {
        0
    } else {
        let (sign, d) = match offset.as_bytes()[0] {
            b'-' => (-1, &offset[1..]),
            b'+' => (1, &offset[1..]),
            _ => {
                return Err(format!(
                    "in {{now{spec}}}: expected `+ DURATION` or `- DURATION` after now"
                ));
            }
        };
        let d: Duration = parse_duration(d).map_err(|e| format!("in {{now{spec}}}: {e}"))?;
        sign * i64::try_from(d.as_millis()).map_err(|_| format!("in {{now{spec}}}: too long"))?
    };
    let format = match format {
        None | Some("rfc3339") => TimeFormat::Rfc3339,
        Some("rfc3339_ms") => TimeFormat::Rfc3339Ms,
        Some("unix") => TimeFormat::Unix,
        Some("unix_ms") => TimeFormat::UnixMs,
        Some("date") => TimeFormat::Date,
        Some(other) => {
            return Err(format!(
                "in {{now{spec}}}: unknown format {other:?} (use rfc3339, rfc3339_ms, unix, unix_ms or date)"
            ));
        }
    };
    Ok(TPart::Now { offset_ms, format })
}

/// A credential: given in the config (after `${VAR}` expansion) or read from a file at every
/// poll, so a rotated token works without a reload.
#[derive(Clone, PartialEq)]
pub enum Secret {
    Value(String),
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's text; a file's trailing newline is removed. The error names the file,
    /// never its content.
    pub async fn read(&self) -> Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(p) => match tokio::fs::read_to_string(p).await {
                Ok(s) => Ok(s.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => Err(format!("cannot read secret file {}: {e}", p.display())),
            },
        }
    }
}

#[derive(Clone, PartialEq, Debug)]
pub enum Auth {
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// A token from an OAuth2 endpoint (fetched and cached by `fetch::oauth2`).
    OAuth2(Arc<OAuth2>),
}

/// OAuth2 client credentials, validated. `Debug` hides the secret.
#[derive(Clone, PartialEq, Debug)]
pub struct OAuth2 {
    pub client_id: String,
    pub client_secret: Secret,
    pub token_url: Url,
    /// The token URL as written (`${VAR}` unexpanded, no credentials): what messages show.
    pub display_token_url: String,
    pub scopes: Vec<String>,
    /// Extra form parameters, expanded. May hold secrets: never shown.
    pub endpoint_params: Vec<(String, String)>,
    pub tls: Option<Tls>,
    pub proxy: Proxying,
}

/// TLS to an upstream, validated; the files are read at every poll (`fetch::tls`).
#[derive(Clone, PartialEq, Debug)]
pub struct Tls {
    /// CA certificates (PEM) the upstream must chain to.
    pub ca_file: Option<PathBuf>,
    /// Whether the system's roots are trusted too.
    pub system_roots: bool,
    /// Client certificate and key (PEM), for mutual TLS.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the certificate must be valid for, instead of the URL's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    pub insecure_skip_verify: bool,
    pub min_version: TlsVersion,
}

/// The lowest TLS version offered (rustls speaks 1.2 and 1.3 only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn now_placeholders_render_with_offsets_and_formats() {
        let cases = [
            ("{now}", "2026-11-26T10:00:00Z"),
            ("{now - 30m | rfc3339}", "2026-11-26T09:30:00Z"),
            ("{now+1h|rfc3339_ms}", "2026-11-26T11:00:00.250Z"),
            ("{now | unix}", "1795687200"),
            ("{now | unix_ms}", "1795687200250"),
            ("{now - 1d | date}", "2026-11-25"),
            (
                "from={now - 30m}&to={now}",
                "from=2026-11-26T09:30:00Z&to=2026-11-26T10:00:00Z",
            ),
            (
                "{\"since\": \"{now - 1h}\"}",
                "{\"since\": \"2026-11-26T09:00:00Z\"}",
            ),
            ("{nowhere} {x}", "{nowhere} {x}"),
        ];
        for (text, want) in cases {
            let t = Templated::parse(text).unwrap();
            assert_eq!(t.render(at()), want, "{text}");
        }
        assert!(Templated::parse("plain").unwrap().is_static());
        assert!(!Templated::parse("{now}").unwrap().is_static());
    }

    #[test]
    fn bad_placeholders_are_config_errors() {
        for (text, msg) in [
            ("{now - 30}", "has no unit"),
            ("{now | iso}", "unknown format \"iso\""),
            ("{now * 2}", "expected `+ DURATION`"),
            ("{now - 5m", "unclosed"),
        ] {
            let err = Templated::parse(text).unwrap_err();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }

    #[test]
    fn debug_hides_values() {
        let t = Templated::parse("Bearer s3cret").unwrap();
        assert_eq!(format!("{t:?}"), "Templated(..)");
        assert_eq!(
            format!("{:?}", Secret::Value("s3cret".into())),
            "Secret(<redacted>)"
        );
    }
}

/// `paginate:`, compiled: how a poll reaches its next page, and when it stops.
#[derive(Debug, Clone)]
pub struct Paginate {
    pub style: PageStyle,
    /// A page where this is `false` is the last.
    pub has_more: Option<Selector>,
    /// The page's list: where it is missing or empty, the page is the last (page numbers and
    /// offsets).
    pub items: Option<Selector>,
    /// The total number of items (read on the first page), for page numbers and offsets.
    pub total: Option<Selector>,
    pub max_pages: usize,
}

/// Where the next page is.
#[derive(Debug, Clone)]
pub enum PageStyle {
    /// Its URL, in the body.
    NextUrl(Selector),
    /// The `Link` header's `rel="next"`.
    NextLink,
    /// A token in the body, sent back in a query parameter.
    Cursor { path: Selector, param: String },
    /// Page numbers in a query parameter, from `first`; the page size in `size`, if set.
    Page {
        param: String,
        first: u64,
        size: Option<(String, u64)>,
    },
    /// Offsets in a query parameter, from 0, advanced by the page size (sent in `size.0`).
    Offset { param: String, size: (String, u64) },
}

/// The default of `paginate.max_pages`.
pub const DEFAULT_MAX_PAGES: usize = 100;

/// `fan_out:`, compiled: the list's items, and each one's request.
#[derive(Debug, Clone)]
pub struct FanOut {
    pub each: crate::extract::Each,
    /// Starts with the literal `scheme://host[:port]/` (checked at load): the data fills in
    /// the rest, each value percent-encoded.
    pub url: crate::extract::Template,
    pub method: Method,
    pub query: Vec<(String, crate::extract::Template)>,
    pub headers: Vec<(HeaderName, crate::extract::Template)>,
    pub body: Option<crate::extract::Template>,
    /// Added to every series of the item's response (after the block's own labels).
    pub label_names: Vec<String>,
    pub labels: Vec<crate::extract::Template>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub skip_failed: bool,
    pub max_requests: usize,
}

/// Defaults of `fan_out`.
pub const DEFAULT_FAN_OUT_CONCURRENCY: usize = 8;
pub const MAX_FAN_OUT_CONCURRENCY: usize = 256;
pub const DEFAULT_MAX_REQUESTS: usize = 10_000;
