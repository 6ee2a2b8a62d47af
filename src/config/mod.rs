//! `config`: the YAML file turned into a validated, compiled [`Config`], once.
//!
//! First step of the flow (`config -> schedule -> fetch -> read -> extract -> store ->
//! expose`).
//! Guarantees: every JSONPath is compiled, every name checked and every environment variable
//! expanded here; nothing downstream parses a string. Validation does not stop at the first
//! problem: all of them are returned, each with its path and its line and column.
//! Secrets (expanded header values, passwords, tokens) are kept out of `Debug` output and
//! error messages.
//!
//! The way through: the text is read with limits (`read_limited`), its nesting checked and
//! positions indexed (`locate`), deserialized into the raw serde types (`raw`, unknown fields
//! collected), then compiled section by section (`compile`: sources and requests, metric
//! blocks, probe modules); this module holds the compiled types and orders the steps.

mod compile;
mod locate;
pub mod raw;
pub mod request;
pub mod text;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderName;
use reqwest::{Method, Url};

use crate::extract::{MetricKind, MetricSpec, ReadPlan};
pub use locate::{Locator, Position};
use raw::{RawConfig, RawSource};
pub use request::{
    Auth, FanOut, OAuth2, PageStyle, Paginate, Secret, Templated, TimeFormat, Tls, TlsVersion,
};

#[cfg(test)]
use compile::display_url;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Self-metrics live under this prefix; configured metrics may not use it.
pub const SELF_PREFIX: &str = "jsonbridge_";

/// A validated configuration, ready to run.
#[derive(Debug)]
pub struct Config {
    pub sources: Vec<Arc<Source>>,
    /// Metric blocks probed on demand against a target URL (`/probe?module=&target=`).
    pub modules: Vec<Arc<Source>>,
    /// Targets a module may be probed against, and every hop of a redirect a probe follows;
    /// empty: none.
    pub probe_allow: Arc<[TargetRule]>,
    /// Every family in the exposition, sorted by name.
    pub families: Vec<Family>,
    /// Lint findings (naming conventions): reported by `check`, logged at load, never fatal
    /// unless `check --strict`.
    pub warnings: Vec<Diagnostic>,
    /// Where each good poll's series are pushed (Prometheus remote write).
    pub remote_write: Vec<Arc<RemoteWrite>>,
}

/// A remote write endpoint, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWrite {
    /// The `endpoint` label of its self-metrics.
    pub name: String,
    /// POST to the URL, with the headers, auth, TLS, proxy and timeout configured.
    pub request: Request,
    /// Added to every series that has no label of that name, sorted by name.
    pub external_labels: Vec<(String, String)>,
    pub queue_capacity: usize,
    pub max_samples_per_send: usize,
}

pub const DEFAULT_REMOTE_WRITE_QUEUE: usize = 500_000;
pub const DEFAULT_REMOTE_WRITE_BATCH: usize = 2_000;

/// A target `/probe` may poll with a module.
#[derive(Debug, Clone)]
pub enum TargetRule {
    /// Same scheme, host and port, and a path starting with this one.
    Prefix(Url),
    /// The whole target URL matches.
    Regex(regex::Regex),
}

impl TargetRule {
    fn parse(rule: &str) -> Result<Self, String> {
        if let Some(re) = rule.strip_prefix("regex:") {
            // Anchored: a rule must not match a URL that merely contains the allowed text.
            return regex::Regex::new(&format!("^(?:{re})$"))
                .map(TargetRule::Regex)
                .map_err(|e| format!("invalid regex: {e}"));
        }
        let url = Url::parse(rule).map_err(|e| format!("invalid URL prefix {rule:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("{rule:?}: an http(s) URL prefix is expected"));
        }
        Ok(TargetRule::Prefix(url))
    }

    pub fn allows(&self, target: &Url) -> bool {
        match self {
            TargetRule::Regex(re) => re.is_match(target.as_str()),
            TargetRule::Prefix(p) => {
                p.scheme() == target.scheme()
                    && p.host_str() == target.host_str()
                    && p.port_or_known_default() == target.port_or_known_default()
                    && target.path().starts_with(p.path())
            }
        }
    }
}

/// This replica's share of the sources (`--shard INDEX/COUNT`): a source belongs to the shard
/// `fnv1a(name) % COUNT`, so every source lands on exactly one replica, and the same one
/// after a restart or a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `INDEX/COUNT`, where INDEX is a number or a StatefulSet pod's name, whose ordinal
    /// (the number after its last `-`) is the index: `--shard=$(POD_NAME)/4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, c) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected INDEX/COUNT, e.g. 0/3 or jsonbridge-2/3"))?;
        let i = i.trim();
        let index: u32 = i
            .parse()
            .ok()
            .or_else(|| {
                i.rsplit_once('-')
                    .filter(|(pod, _)| !pod.is_empty())
                    .and_then(|(_, n)| n.parse().ok())
            })
            .ok_or_else(|| {
                format!("{s:?}: INDEX is neither a number nor a pod name ending in -ORDINAL")
            })?;
        let count: u32 = c
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: COUNT is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("{s:?}: need 0 <= INDEX < COUNT"));
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether source `name` belongs to this shard.
    pub fn owns(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

/// The shard of `count` that polls source `name`: rendezvous (highest random weight)
/// hashing, so that going from N to N+1 shards moves about 1/(N+1) of the sources (only
/// those the new shard wins), where `hash % N` would move most of them. The price is N
/// hashes per source at load, nothing per poll. FNV-1a with a 64-bit finalizer: stable
/// across versions and platforms, unlike std's hasher.
pub fn owner(name: &str, count: u32) -> u32 {
    let weight = |shard: u32| {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in name.bytes().chain([0]).chain(shard.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        // splitmix64's finalizer: FNV's low bits alone spread poorly over few shards.
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
        h ^ (h >> 31)
    };
    (0..count).max_by_key(|s| weight(*s)).unwrap_or(0)
}

impl Config {
    /// A config with nothing in it (what `/metrics` encodes with `--mode push`).
    pub fn empty() -> Self {
        Config {
            sources: Vec::new(),
            modules: Vec::new(),
            probe_allow: Vec::new().into(),
            families: Vec::new(),
            warnings: Vec::new(),
            remote_write: Vec::new(),
        }
    }

    /// Keeps only this shard's sources (and the families they feed).
    pub fn keep_shard(&mut self, shard: Shard) {
        self.sources.retain(|s| shard.owns(&s.name));
        let fed: std::collections::HashSet<&str> = self
            .sources
            .iter()
            .flat_map(|s| &s.metrics)
            .flat_map(|m| &m.outputs)
            .map(|o| o.family.as_str())
            .collect();
        self.families.retain(|f| fed.contains(f.name.as_str()));
    }
}

/// One exposition family (`# HELP`/`# TYPE`), possibly fed by several metric blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    /// As written (may hold newlines; each encoder escapes it its own way).
    pub help: String,
    pub kind: MetricKind,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub request: Request,
    pub schedule: Schedule,
    pub metrics: Vec<MetricSpec>,
    /// What polls read of a response, worked out from `metrics`.
    pub plan: ReadPlan,
    /// Most series one poll may produce; beyond, the snapshot is truncated deterministically.
    pub max_series: usize,
    /// After failed polls, a snapshot older than this is dropped (its series vanish) instead
    /// of being served; `None` keeps the last good snapshot until a poll succeeds.
    pub max_staleness: Option<Duration>,
    /// `paginate:` every poll reads all pages (at most `max_pages`).
    pub paginate: Option<Paginate>,
    /// `fan_out:` the response is a list; each item's request gives the documents read.
    pub fan_out: Option<FanOut>,
    /// The source as written (before env expansion): two sources with equal `raw` and equal
    /// `request` behave identically, which is what a reload compares.
    raw: RawSource,
}

impl Source {
    /// True when `other` would poll, extract and schedule exactly as `self` does.
    pub fn same_as(&self, other: &Source) -> bool {
        self.raw == other.raw && self.request == other.request
    }
}

/// Everything needed to fetch a source; templates are rendered at each poll. `Debug` hides
/// header values and credentials.
#[derive(Clone, PartialEq)]
pub struct Request {
    pub target: Target,
    pub method: Method,
    /// Values may hold credentials: sent as sensitive headers, never printed.
    pub headers: Vec<(HeaderName, Templated)>,
    pub auth: Option<Auth>,
    pub body: Option<Templated>,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    /// Extra attempts after a retryable failure, all within `timeout`.
    pub retries: u32,
    /// First pause between attempts (doubled each time, with jitter).
    pub retry_backoff: Duration,
    /// The URL as written in the file (with `${VAR}` unexpanded and any password removed):
    /// what logs and the status page show.
    pub display_url: String,
    /// Where a redirect may lead (every hop is checked in `fetch`).
    pub redirects: Redirects,
    /// Whether redirects are followed at all.
    pub follow_redirects: bool,
    /// Statuses whose body is read; `None`: any 2xx.
    pub valid_status_codes: Option<Arc<[u16]>>,
    /// Offer HTTP/2 (over TLS, by ALPN); `false`: HTTP/1.1 only.
    pub http2: bool,
    /// How requests reach the upstream: a proxy, or the environment's, or directly.
    pub proxy: Proxying,
    /// TLS settings beyond the defaults (system roots, no client certificate).
    pub tls: Option<Tls>,
}

/// How a source's requests reach their upstream.
#[derive(Clone, PartialEq)]
pub enum Proxying {
    /// Through the proxy the environment names (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`),
    /// if any.
    Environment,
    /// Directly, whatever the environment says.
    Direct,
    /// Through `url` (credentials included: never shown), except for the hosts `no_proxy`
    /// lists. `display` is the URL as written, without credentials.
    Proxy {
        url: Url,
        no_proxy: Option<String>,
        display: String,
    },
}

impl fmt::Debug for Proxying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxying::Environment => f.write_str("Environment"),
            Proxying::Direct => f.write_str("Direct"),
            Proxying::Proxy {
                display, no_proxy, ..
            } => f
                .debug_struct("Proxy")
                .field("url", display)
                .field("no_proxy", no_proxy)
                .finish(),
        }
    }
}

/// Which redirect hops a request may follow. Whatever the rule, a hop to another origin
/// carries none of the configured headers or credentials (see `fetch`).
#[derive(Clone, Debug)]
pub enum Redirects {
    /// Any http(s) hop: a source's URL is the operator's own choice.
    Any,
    /// Only hops these rules allow: a probe's target comes from whoever calls `/probe`, so
    /// each hop must pass `probe.allow_targets` as the target itself did.
    Allowed(Arc<[TargetRule]>),
}

impl PartialEq for Redirects {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Redirects::Any, Redirects::Any) => true,
            (Redirects::Allowed(a), Redirects::Allowed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Redirects {
    pub fn allows(&self, hop: &Url) -> bool {
        match self {
            Redirects::Any => true,
            Redirects::Allowed(rules) => rules.iter().any(|r| r.allows(hop)),
        }
    }
}

impl Request {
    /// Whether a response with `status` is read as data.
    pub fn accepts(&self, status: u16) -> bool {
        match &self.valid_status_codes {
            None => (200..300).contains(&status),
            Some(codes) => codes.contains(&status),
        }
    }

    /// Whether an HTTP client built for `self` serves `other` too (same timeout, HTTP
    /// versions, proxy, TLS and OAuth2 token source; the client holds nothing else of the
    /// request).
    pub fn same_client_settings(&self, other: &Request) -> bool {
        let oauth2 = |r: &Request| match &r.auth {
            Some(Auth::OAuth2(o)) => Some(o.clone()),
            _ => None,
        };
        self.timeout == other.timeout
            && self.http2 == other.http2
            && self.proxy == other.proxy
            && self.tls == other.tls
            && oauth2(self) == oauth2(other)
            && matches!(self.target, Target::Http { .. })
                == matches!(other.target, Target::Http { .. })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("url", &self.display_url)
            .field("method", &self.method)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("proxy", &self.proxy)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq)]
pub enum Target {
    /// The URL (validated at load) and query parameters appended at each poll.
    Http {
        url: Templated,
        query: Vec<(String, Templated)>,
    },
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Six or seven fields (seconds first), evaluated in UTC.
    Cron(String),
    Every(Duration),
}

impl Schedule {
    /// When the next scheduled poll comes: the cron line's next time after `now`, or the last
    /// poll plus the interval (approximate: intervals count from when the source started).
    pub fn next_poll(
        &self,
        last: Option<std::time::SystemTime>,
        now: std::time::SystemTime,
    ) -> Option<std::time::SystemTime> {
        match self {
            Schedule::Every(d) => last.map(|l| l + *d).map(|t| t.max(now)),
            Schedule::Cron(expr) => {
                let cron = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Required)
                    .dom_and_dow(true)
                    .build()
                    .parse(expr)
                    .ok()?;
                let now: chrono::DateTime<chrono::Utc> = now.into();
                cron.find_next_occurrence(&now, false).ok().map(Into::into)
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(c) => write!(f, "cron {c}"),
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// serde-style path, e.g. `sources[0].metrics[1].each`; empty for the whole file.
    pub path: String,
    pub position: Option<Position>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.position {
            write!(f, "line {} column {}: ", p.line, p.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} in {origin}:\n{}", count(.diagnostics.len()), list(.diagnostics))]
    Invalid {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 error".into()
    } else {
        format!("{n} errors")
    }
}

fn list(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// Stable label value for `jsonbridge_config_reloads_total`-style metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Invalid { .. } => "invalid",
        }
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

/// Reads and compiles a config file, expanding `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse(&text, &Origin::file(path), &|k| std::env::var(k).ok())
}

/// Where config text came from: named in messages, and the base of relative `file://` paths.
#[derive(Debug, Clone)]
pub struct Origin {
    pub name: String,
    pub base_dir: PathBuf,
}

impl Origin {
    pub fn file(path: &Path) -> Self {
        let base_dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            name: path.display().to_string(),
            base_dir,
        }
    }
}

/// Default of `--config.max-bytes`: far above any real config (1,000 sources take 10 MB).
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file as text, at most [`DEFAULT_MAX_CONFIG_BYTES`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    read_limited(path, DEFAULT_MAX_CONFIG_BYTES)
}

/// Reads a config file as text. Only a regular file (after following symlinks) of at most
/// `max_bytes` is read: a FIFO would block the reader until someone writes to it, a device
/// would never end. Blocking I/O: call it off the async workers.
pub fn read_limited(path: &Path, max_bytes: u64) -> Result<String, ConfigError> {
    use std::io::Read;
    let err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |m: String| err(std::io::Error::new(std::io::ErrorKind::InvalidData, m));
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    // Opening a FIFO for reading blocks until a writer comes; non-blocking, it returns at
    // once, and the file is then refused for what it is.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open, libc::O_NONBLOCK);
    let file = open.open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory"
        } else {
            "is not a regular file (a FIFO, socket or device)"
        };
        return Err(invalid(format!("{what}: only a regular file is read")));
    }
    if meta.len() > max_bytes {
        return Err(invalid(format!(
            "{} bytes, more than the {max_bytes} bytes --config.max-bytes allows",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte past the limit tells a file that grew while being read.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > max_bytes {
        return Err(invalid(format!(
            "more than the {max_bytes} bytes --config.max-bytes allows"
        )));
    }
    String::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8 text ({e})")))
}

/// Compiles config text. `origin` names the file in messages; `env` resolves `${VAR}`.
pub fn parse(
    text: &str,
    origin: &Origin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_with(text, origin, env, false)
}

/// [`load`] for `check --allow-missing-env`: an unset `${VAR}` is a warning (the config is
/// checked with a stand-in value), so that CI can check configs without their secrets.
/// Never for running: the stand-ins would be sent.
pub fn load_allowing_missing_env(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse_with(&text, &Origin::file(path), &|k| std::env::var(k).ok(), true)
}

fn parse_with(
    text: &str,
    origin: &Origin,
    env: &dyn Fn(&str) -> Option<String>,
    allow_missing_env: bool,
) -> Result<Config, ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        origin: origin.name.clone(),
        diagnostics,
    };
    if text.trim().is_empty() {
        return Err(invalid(vec![Diagnostic {
            path: String::new(),
            position: None,
            message: "the file is empty (expected a `sources:` list)".into(),
        }]));
    }
    // First, before any pass that recurses over the document: a config nested thousands of
    // levels deep would overflow the stack of a recursive one.
    let locator = match Locator::new(text) {
        Ok(l) => l,
        Err(deep) => {
            return Err(invalid(vec![Diagnostic {
                path: String::new(),
                position: Some(deep.position),
                message: format!(
                    "the document nests deeper than {} levels (a config needs about 8)",
                    locate::MAX_DEPTH
                ),
            }]));
        }
    };
    let mut unknown = Vec::new();
    let parsed: Result<RawConfig, _> =
        serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |p| {
            unknown.push(raw::ignored_path(&p))
        });
    let mut c = compile::Compiler {
        locator: &locator,
        env,
        allow_missing_env,
        base_dir: &origin.base_dir,
        taken: Default::default(),
        diagnostics: Vec::new(),
        warnings: Vec::new(),
    };
    // Unknown fields are reported all together, also next to a serde error that stopped the
    // parse (a misspelt required field shows up as both "unknown" and "missing").
    for (parent, key) in unknown {
        let path = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        c.diagnostics.push(Diagnostic {
            position: locator.find_key(&path),
            message: raw::unknown_field(&parent, &key),
            path,
        });
    }
    let raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            c.diagnostics.push(serde_diag(&e));
            return Err(invalid(c.diagnostics));
        }
    };
    let mut config = c.config(&raw);
    // A file that declares nothing is far more often a mistake (a truncated write, the
    // wrong file, a template that rendered empty) than a wish to stop polling: it would
    // remove every source. Saying so takes an explicit `sources: []`.
    if raw.sources.is_empty() && raw.modules.is_empty() && !locator.is_sequence("sources") {
        c.diagnostics.push(Diagnostic {
            path: "sources".into(),
            position: locator.find_key("sources"),
            message: "the config declares no source and no module; write `sources: []` to run \
                      with none on purpose"
                .into(),
        });
    }
    if c.diagnostics.is_empty() {
        config.warnings = c.warnings;
        Ok(config)
    } else {
        Err(invalid(c.diagnostics))
    }
}

fn serde_diag(e: &serde_norway::Error) -> Diagnostic {
    let mut message = e.to_string();
    // serde_norway appends " at line L column C"; the position is shown separately.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    let (path, message) = match message.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => (String::new(), message),
    };
    let message = message.replace(
        "data did not match any variant of untagged enum RawValue",
        "expected a number or a JSONPath string",
    );
    Diagnostic {
        path,
        position: e.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        }),
        message,
    }
}

#[cfg(test)]
mod tests;
