//! `config`: the YAML file turned into a validated, compiled [`Config`], once.
//!
//! First step of the flow (`config -> schedule -> fetch -> extract -> store -> expose`).
//! Guarantees: every JSONPath is compiled, every name checked and every environment variable
//! expanded here; nothing downstream parses a string. Validation does not stop at the first
//! problem: all of them are returned, each with its path and its line and column.
//! Secrets (expanded header values, passwords, tokens) are kept out of `Debug` output and
//! error messages.

mod locate;
pub mod raw;
pub mod request;
pub mod text;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::extract::{
    Conversion, Each, Lookup, MetricKind, MetricSpec, OnDuplicate, Output, OutputKind, ReadPlan,
    Template, TimestampFormat, TimestampSpec, ValueSpec,
};
pub use locate::{Locator, Position};
use raw::{RawConfig, RawMetric, RawMetricKind, RawSource, RawValue};
pub use request::{Auth, Secret, Templated, TimeFormat};

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
}

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
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, c) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected INDEX/COUNT, e.g. 0/3"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: INDEX is not a number"))?;
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
    /// Whether source `name` belongs to this shard (FNV-1a: stable across versions and
    /// platforms, unlike std's hasher).
    pub fn owns(&self, name: &str) -> bool {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h % u64::from(self.count) == u64::from(self.index)
    }
}

impl Config {
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
    /// Whether an HTTP client built for `self` serves `other` too (same timeout; the client
    /// holds nothing else of the request).
    pub fn same_client_settings(&self, other: &Request) -> bool {
        self.timeout == other.timeout
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
    let mut c = Compiler {
        locator: &locator,
        env,
        base_dir: &origin.base_dir,
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

struct Compiler<'a> {
    locator: &'a Locator,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: &'a Path,
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Compiler<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.diagnostics.push(Diagnostic {
            position: self.locator.find(&path),
            path,
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.warnings.push(Diagnostic {
            position: self.locator.find(&path),
            path,
            message: message.into(),
        });
    }

    /// Prometheus naming conventions (https://prometheus.io/docs/practices/naming/).
    fn lint_output(&mut self, o: &RawOut<'_>, kind: MetricKind, stateset: bool) {
        let name = &o.name;
        if kind == MetricKind::Gauge && !stateset && name.ends_with("_total") {
            self.warn(
                &o.name_at,
                format!(
                    "gauge {name} ends in _total, which is for counters (promtool: non-counter metrics should not have \"_total\" suffix); drop the suffix or use type: counter"
                ),
            );
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            self.warn(
                &o.name_at,
                format!("metric {name}: use snake_case (lower case)"),
            );
        }
        if name.contains(':') {
            self.warn(
                &o.name_at,
                format!("metric {name}: colons are reserved for recording rules"),
            );
        }
        const UNITS: &[(&str, &str)] = &[
            ("_ms", "seconds"),
            ("_msec", "seconds"),
            ("_millis", "seconds"),
            ("_milliseconds", "seconds"),
            ("_us", "seconds"),
            ("_microseconds", "seconds"),
            ("_ns", "seconds"),
            ("_nanoseconds", "seconds"),
            ("_minutes", "seconds"),
            ("_hours", "seconds"),
            ("_days", "seconds"),
            ("_kb", "bytes"),
            ("_kib", "bytes"),
            ("_kilobytes", "bytes"),
            ("_mb", "bytes"),
            ("_mib", "bytes"),
            ("_megabytes", "bytes"),
            ("_gb", "bytes"),
            ("_gib", "bytes"),
            ("_gigabytes", "bytes"),
            ("_percent", "ratio (0-1)"),
            ("_pct", "ratio (0-1)"),
        ];
        let base = name.strip_suffix("_total").unwrap_or(name);
        if let Some((suffix, unit)) = UNITS.iter().find(|(s, _)| base.ends_with(s)) {
            self.warn(
                &o.name_at,
                format!(
                    "metric {name}: unit {} is not a base unit; Prometheus uses {unit} (convert with `scale:`)",
                    &suffix[1..]
                ),
            );
        }
        if o.settings
            .help
            .as_deref()
            .is_none_or(|h| h.trim().is_empty())
        {
            self.warn(&o.name_at, format!("metric {name} has no help text"));
        }
    }

    fn config(&mut self, raw: &RawConfig) -> Config {
        let mut sources = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, rs) in raw.sources.iter().enumerate() {
            let at = format!("sources[{i}]");
            if let Some(first) = seen.insert(&rs.name, i) {
                self.error(
                    format!("{at}.name"),
                    format!(
                        "duplicate source name {:?} (also sources[{first}])",
                        rs.name
                    ),
                );
            }
            if let Some(s) = self.source(&at, rs) {
                sources.push(Arc::new(s));
            }
        }
        let mut modules = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let module_sources: Vec<(String, RawSource)> = raw
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("modules[{i}]"), m.as_source()))
            .collect();
        for (i, (at, rs)) in module_sources.iter().enumerate() {
            if let Some(first) = seen.insert(&raw.modules[i].name, i) {
                self.error(
                    format!("{at}.name"),
                    format!(
                        "duplicate module name {:?} (also modules[{first}])",
                        rs.name
                    ),
                );
            }
            if let Some(s) = self.source(at, rs) {
                modules.push(Arc::new(s));
            }
        }
        let mut probe_allow = Vec::new();
        if let Some(p) = &raw.probe {
            for (i, rule) in p.allow_targets.iter().enumerate() {
                match TargetRule::parse(rule) {
                    Ok(r) => probe_allow.push(r),
                    Err(e) => self.error(format!("probe.allow_targets[{i}]"), e),
                }
            }
        }
        let all: Vec<(String, RawSource)> = raw
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("sources[{i}]"), s.clone()))
            .chain(module_sources)
            .collect();
        let families = self.families(&all);
        Config {
            sources,
            families,
            warnings: Vec::new(),
            modules,
            probe_allow: probe_allow.into(),
        }
    }

    /// Families across all sources: one name, one type, one help. A counter `x` also owns
    /// `x_total` and `x_created`, so no other family may use those.
    fn families(&mut self, raw: &[(String, RawSource)]) -> Vec<Family> {
        let mut families: BTreeMap<String, (Family, String)> = BTreeMap::new();
        let mut owned: HashMap<String, (String, String)> = HashMap::new();
        for (prefix, rs) in raw {
            for (j, rm) in rs.metrics.iter().enumerate() {
                for o in raw_outputs(&format!("{prefix}.metrics[{j}]"), rm) {
                    let kind = metric_kind(o.settings.kind);
                    let family = family_name(&o.name, kind);
                    let help = match o.settings.help.as_deref().map(str::trim_end) {
                        Some(h) if !h.is_empty() => h.to_string(),
                        _ => format!("{} (no help text in the config)", o.name),
                    };
                    let at = o.at;
                    if let Some((prev, prev_at)) = families.get(&family) {
                        if prev.kind != kind {
                            self.error(
                                format!("{at}.type"),
                                format!(
                                    "metric {} is a {} here but a {} at {prev_at}; one name has one type",
                                    o.name,
                                    kind.as_str(),
                                    prev.kind.as_str()
                                ),
                            );
                        } else if prev.help != help {
                            self.error(
                                format!("{at}.help"),
                                format!(
                                    "metric {} has a different help text at {prev_at}; one name has one help",
                                    o.name
                                ),
                            );
                        }
                        continue;
                    }
                    let series_names: Vec<String> = match kind {
                        MetricKind::Gauge => vec![family.clone()],
                        MetricKind::Counter => vec![
                            family.clone(),
                            format!("{family}_total"),
                            format!("{family}_created"),
                        ],
                    };
                    for s in &series_names {
                        if let Some((other, other_at)) = owned.get(s)
                            && other != &family
                        {
                            self.error(
                                o.name_at.clone(),
                                format!(
                                    "metric {} clashes with metric {other} at {other_at}: both would expose {s}",
                                    o.name
                                ),
                            );
                        }
                    }
                    for s in series_names {
                        owned.entry(s).or_insert((family.clone(), at.clone()));
                    }
                    let f = Family {
                        name: family.clone(),
                        help,
                        kind,
                    };
                    families.insert(family, (f, at));
                }
            }
        }
        families.into_values().map(|(f, _)| f).collect()
    }

    fn source(&mut self, at: &str, rs: &RawSource) -> Option<Source> {
        let before = self.diagnostics.len();
        if !text::is_source_name(&rs.name) {
            self.error(
                format!("{at}.name"),
                format!(
                    "invalid source name {:?}: use letters, digits, '_', '-' and '.' (at most 128)",
                    rs.name
                ),
            );
        }
        let request = self.request(at, rs);
        let schedule = self.schedule(at, rs);
        if rs.metrics.is_empty() {
            self.error(
                format!("{at}.metrics"),
                "a source needs at least one metric",
            );
        }
        let mut names: HashMap<String, String> = HashMap::new();
        let mut metrics = Vec::new();
        for (j, rm) in rs.metrics.iter().enumerate() {
            let mat = format!("{at}.metrics[{j}]");
            for o in raw_outputs(&mat, rm) {
                let here =
                    o.at.strip_prefix(&format!("{at}."))
                        .unwrap_or(&o.at)
                        .to_string();
                if let Some(first) = names.insert(o.name.clone(), here) {
                    self.error(
                        o.name_at,
                        format!(
                            "metric {} is defined twice in this source (also {first})",
                            o.name
                        ),
                    );
                }
            }
            if let Some(m) = self.metric(&mat, rm) {
                metrics.push(m);
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        let max_series = rs.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            self.error(
                format!("{at}.max_series"),
                "max_series must be more than zero",
            );
            return None;
        }
        let max_staleness = match &rs.max_staleness {
            None => None,
            Some(t) => match text::parse_duration(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(format!("{at}.max_staleness"), e);
                    return None;
                }
            },
        };
        Some(Source {
            name: rs.name.clone(),
            request: request?,
            schedule: schedule?,
            plan: ReadPlan::new(&mut metrics),
            metrics,
            max_series,
            max_staleness,
            raw: rs.clone(),
        })
    }

    fn expand(&mut self, path: &str, value: &str) -> Option<String> {
        match text::expand_env(value, self.env) {
            Ok(v) => Some(v),
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
    fn templated(&mut self, path: &str, value: &str) -> Option<Templated> {
        let expanded = self.expand(path, value)?;
        match Templated::parse(&expanded) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path.to_string(), e);
                None
            }
        }
    }

    /// A credential given as `FIELD` (with `${VAR}`) or `FIELD_file` (read at each poll).
    /// `None`: an error was reported; `Some(None)`: neither is set.
    fn secret(
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

    fn request(&mut self, at: &str, rs: &RawSource) -> Option<Request> {
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
        let method = match rs.method.as_deref() {
            None => Method::GET,
            Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => m,
                Err(_) => {
                    self.error(format!("{at}.method"), format!("invalid HTTP method {m:?}"));
                    Method::GET
                }
            },
        };
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
        })
    }

    fn schedule(&mut self, at: &str, rs: &RawSource) -> Option<Schedule> {
        match (&rs.schedule, &rs.every) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{at}.every"),
                    "set either `schedule` (cron) or `every` (interval), not both",
                );
                None
            }
            (None, None) => Some(Schedule::Every(DEFAULT_EVERY)),
            (None, Some(every)) => match text::parse_duration(every) {
                Ok(d) if d < Duration::from_secs(1) => {
                    self.error(format!("{at}.every"), "`every` must be at least 1s");
                    None
                }
                Ok(d) => Some(Schedule::Every(d)),
                Err(e) => {
                    self.error(format!("{at}.every"), e);
                    None
                }
            },
            (Some(cron), None) => match check_cron(cron) {
                Ok(c) => Some(Schedule::Cron(c)),
                Err(e) => {
                    self.error(format!("{at}.schedule"), e);
                    None
                }
            },
        }
    }

    fn metric(&mut self, at: &str, rm: &RawMetric) -> Option<MetricSpec> {
        let before = self.diagnostics.len();
        match (&rm.name, &rm.value, &rm.values) {
            (_, _, Some(values)) => {
                if rm.name.is_some() || rm.value.is_some() || !rm.settings().is_empty() {
                    self.error(
                        format!("{at}.values"),
                        "with `values`, each entry is one metric: put its value, help, type, \
                         mapping, default, scale and states under the entry, not next to `values`",
                    );
                }
                if values.is_empty() {
                    self.error(format!("{at}.values"), "`values` is empty");
                }
            }
            (Some(_), Some(_), None) => {}
            (Some(_), None, None) => self.error(at, "missing field `value`"),
            (None, _, None) => self.error(
                at,
                "a metric needs `name` and `value`, or `values` (name -> value) for several",
            ),
        }
        let each = match &rm.each {
            None => Some(Each::root()),
            Some(e) => match Each::compile(e) {
                Ok(each) => Some(each),
                Err(msg) => {
                    self.error(format!("{at}.each"), msg);
                    None
                }
            },
        };
        let captures = each
            .as_ref()
            .map(|e| e.captures.clone())
            .unwrap_or_default();
        let mut label_names = Vec::new();
        let mut labels = Vec::new();
        for (name, template) in &rm.labels {
            let lat = format!("{at}.labels.{name}");
            if !text::is_label_name(name) {
                self.error(
                    &lat,
                    format!(
                        "invalid label name {name:?}: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
                    ),
                );
            } else if name.chars().any(|c| c.is_ascii_uppercase()) {
                self.warn(&lat, format!("label {name}: use snake_case (lower case)"));
            }
            // Without a compiled `each` the captures are unknown: skip, its error is reported.
            if each.is_none() {
                continue;
            }
            match Template::compile(template, &captures) {
                Ok(t) => {
                    label_names.push(name.clone());
                    labels.push(t);
                }
                Err(msg) => self.error(&lat, msg),
            }
        }
        let mut outputs = Vec::new();
        if each.is_some() {
            for o in raw_outputs(at, rm) {
                if let Some(out) = self.output(&o, &captures, &label_names) {
                    outputs.push(out);
                }
            }
        }
        let timestamp = match &rm.timestamp {
            None => {
                if rm.timestamp_format.is_some() {
                    self.error(
                        format!("{at}.timestamp_format"),
                        "`timestamp_format` needs `timestamp` (the path of the time in each item)",
                    );
                }
                None
            }
            Some(path) => match Lookup::compile(path, &captures) {
                Ok(lookup) => Some(TimestampSpec {
                    lookup,
                    format: match rm.timestamp_format {
                        None | Some(raw::RawTimestampFormat::Rfc3339) => TimestampFormat::Rfc3339,
                        Some(raw::RawTimestampFormat::Unix) => TimestampFormat::Unix,
                        Some(raw::RawTimestampFormat::UnixMs) => TimestampFormat::UnixMs,
                    },
                }),
                Err(msg) => {
                    self.error(format!("{at}.timestamp"), msg);
                    None
                }
            },
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(MetricSpec {
            each: each?,
            label_names: label_names.into(),
            labels,
            outputs,
            on_duplicate: match rm.on_duplicate {
                None | Some(raw::RawOnDuplicate::First) => OnDuplicate::First,
                Some(raw::RawOnDuplicate::Last) => OnDuplicate::Last,
                Some(raw::RawOnDuplicate::Sum) => OnDuplicate::Sum,
                Some(raw::RawOnDuplicate::Error) => OnDuplicate::Error,
            },
            timestamp,
        })
    }

    fn output(&mut self, o: &RawOut<'_>, captures: &[String], labels: &[String]) -> Option<Output> {
        let before = self.diagnostics.len();
        let at = &o.at;
        let st = &o.settings;
        let kind = metric_kind(st.kind);
        if !text::is_metric_name(&o.name) {
            self.error(
                &o.name_at,
                format!(
                    "invalid metric name {:?}: use [a-zA-Z_:][a-zA-Z0-9_:]*",
                    o.name
                ),
            );
        } else if o.name.starts_with(SELF_PREFIX) {
            self.error(
                &o.name_at,
                format!("metric names starting with {SELF_PREFIX} are reserved for self-metrics"),
            );
        } else if kind == MetricKind::Counter && family_name(&o.name, kind).is_empty() {
            self.error(&o.name_at, "a counter needs a name before `_total`");
        } else {
            self.lint_output(o, kind, st.kind == Some(RawMetricKind::Stateset));
        }
        if let Some(help) = &st.help
            && help.chars().any(|c| c.is_control() && c != '\n')
        {
            self.error(
                format!("{at}.help"),
                "help text may not contain control characters other than newline",
            );
        }
        let value = match o.value {
            None => None,
            Some(RawValue::Number(v)) => Some(ValueSpec::Constant(*v)),
            Some(RawValue::Text(t)) => match ValueSpec::compile(t, captures) {
                Ok(v) => Some(v),
                Err(msg) => {
                    self.error(format!("{at}.value"), msg);
                    None
                }
            },
        };
        if let Some(ValueSpec::Constant(v)) = value
            && kind == MetricKind::Counter
            && v < 0.0
        {
            self.error(
                format!("{at}.value"),
                "a counter cannot have a negative value",
            );
        }
        if let Some(f) = st.scale
            && !f.is_finite()
        {
            self.error(format!("{at}.scale"), "scale must be a finite number");
        }
        let out_kind = match st.kind {
            Some(RawMetricKind::Stateset) => {
                let label = st.state_label.clone().unwrap_or_else(|| "state".into());
                if !text::is_label_name(&label) {
                    self.error(
                        format!("{at}.state_label"),
                        format!("invalid label name {label:?}"),
                    );
                } else if labels.contains(&label) {
                    self.error(
                        format!("{at}.state_label"),
                        format!(
                            "the state label {label:?} is also a label of the block (set state_label to another name)"
                        ),
                    );
                }
                let states = st.states.clone().unwrap_or_default();
                if states.is_empty() {
                    self.error(
                        format!("{at}.states"),
                        "a stateset needs `states`: the list of possible values",
                    );
                }
                let mut seen = std::collections::HashSet::new();
                for s in &states {
                    if !seen.insert(s) {
                        self.error(
                            format!("{at}.states"),
                            format!("state {s:?} is listed twice"),
                        );
                    }
                }
                if !matches!(value, None | Some(ValueSpec::Lookup(_))) {
                    self.error(
                        format!("{at}.value"),
                        "a stateset's value must be a JSONPath to the current state",
                    );
                }
                for field in [
                    ("mapping", st.mapping.is_some()),
                    ("default", st.default.is_some()),
                    ("scale", st.scale.is_some()),
                ] {
                    if field.1 {
                        self.error(
                            format!("{at}.{}", field.0),
                            format!("`{}` does not apply to a stateset", field.0),
                        );
                    }
                }
                OutputKind::StateSet { label, states }
            }
            _ => {
                for (field, set) in [
                    ("states", st.states.is_some()),
                    ("state_label", st.state_label.is_some()),
                ] {
                    if set {
                        self.error(
                            format!("{at}.{field}"),
                            format!("`{field}` applies to `type: stateset` only"),
                        );
                    }
                }
                if kind == MetricKind::Counter {
                    OutputKind::Counter
                } else {
                    OutputKind::Gauge
                }
            }
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Output {
            name: o.name.clone(),
            family: family_name(&o.name, kind),
            kind: out_kind,
            value: value?,
            conversion: Conversion {
                mapping: st
                    .mapping
                    .as_ref()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()),
                default: st.default,
                scale: st.scale,
            },
        })
    }
}

/// One output of a raw metric block, with where it was written.
struct RawOut<'a> {
    /// Path of the output's settings (the block, or `values.NAME`).
    at: String,
    /// Path to point at for name errors.
    name_at: String,
    name: String,
    value: Option<&'a RawValue>,
    settings: raw::RawOutputSettings,
}

/// The outputs a block declares: its `name`/`value`, or each entry of `values`.
fn raw_outputs<'a>(at: &str, rm: &'a RawMetric) -> Vec<RawOut<'a>> {
    match &rm.values {
        Some(values) => values
            .iter()
            .map(|(name, e)| RawOut {
                at: format!("{at}.values.{name}"),
                name_at: format!("{at}.values.{name}"),
                name: name.clone(),
                value: Some(&e.value),
                settings: e.settings.clone(),
            })
            .collect(),
        None => match &rm.name {
            Some(name) => vec![RawOut {
                at: at.to_string(),
                name_at: format!("{at}.name"),
                name: name.clone(),
                value: rm.value.as_ref(),
                settings: rm.settings(),
            }],
            None => Vec::new(),
        },
    }
}

fn metric_kind(kind: Option<RawMetricKind>) -> MetricKind {
    match kind {
        Some(RawMetricKind::Counter) => MetricKind::Counter,
        _ => MetricKind::Gauge,
    }
}

/// The exposition family of a configured name: the encoder appends `_total` to counters, so
/// a counter configured as `x_total` is the family `x`.
fn family_name(name: &str, kind: MetricKind) -> String {
    match kind {
        MetricKind::Counter => name.strip_suffix("_total").unwrap_or(name).to_string(),
        MetricKind::Gauge => name.to_string(),
    }
}

/// Validates a cron line with the parser the scheduler uses; returns it normalized.
fn check_cron(expr: &str) -> Result<String, String> {
    let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let fields = expr.split(' ').count();
    if fields == 5 && !expr.starts_with('@') {
        return Err(format!(
            "cron {expr:?} has 5 fields; jsonbridge's cron starts with seconds (6 fields): \"0 {expr}\""
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&expr)
        .map_err(|e| format!("invalid cron {expr:?}: {e}"))?;
    Ok(expr)
}

/// The URL as written, minus any `user:password@` part.
fn display_url(written: &str) -> String {
    if let Some((scheme, rest)) = written.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    written.to_string()
}

#[cfg(test)]
mod tests;
