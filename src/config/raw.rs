//! The YAML file as written: serde types that only check shape and types.
//!
//! Unknown fields are not denied here but collected while deserializing (see
//! [`unknown_field`]), so that all of them are reported together with the validation errors
//! instead of stopping at the first. Everything here is turned into [`super::Config`] by
//! [`super::parse`]; nothing downstream sees these types. Field order in maps (`labels`,
//! `headers`, `query`) is kept as written.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub sources: Vec<RawSource>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawSource {
    pub name: String,
    /// `http://`, `https://` or `file://`; `${VAR}` is expanded from the environment.
    pub url: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default)]
    pub query: IndexMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Whole-poll deadline, e.g. `20s` (default 10s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Cron with seconds: `0 */30 * * * *`. Exclusive with `every`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Fixed interval: `30m`. Exclusive with `schedule`. Default `1m` when neither is set.
    #[serde(default)]
    pub every: Option<String>,
    /// Largest response body accepted, in bytes (default 64 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub metrics: Vec<RawMetric>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawBasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawMetric {
    pub name: String,
    #[serde(default)]
    pub help: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: RawMetricKind,
    #[serde(default)]
    pub each: Option<String>,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    pub value: RawValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMetricKind {
    #[default]
    Gauge,
    Counter,
}

/// `value: 1` (a constant) or `value: "@.energy[-1]"` (a JSONPath).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    Number(f64),
    Text(String),
}

const TOP_FIELDS: &[&str] = &["sources"];
const SOURCE_FIELDS: &[&str] = &[
    "name",
    "url",
    "method",
    "headers",
    "query",
    "body",
    "basic_auth",
    "bearer_token",
    "timeout",
    "schedule",
    "every",
    "max_body_bytes",
    "metrics",
];
const METRIC_FIELDS: &[&str] = &["name", "help", "type", "each", "labels", "value"];
const BASIC_AUTH_FIELDS: &[&str] = &["username", "password"];

/// The message for a field that no struct at `parent` knows, with the closest known name.
pub fn unknown_field(parent: &str, key: &str) -> String {
    let level = parent
        .split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    let known: &[&str] = match level.as_slice() {
        [] => TOP_FIELDS,
        ["sources"] => SOURCE_FIELDS,
        ["sources", "metrics"] => METRIC_FIELDS,
        ["sources", "basic_auth"] => BASIC_AUTH_FIELDS,
        _ => &[],
    };
    let closest = known
        .iter()
        .map(|k| (edit_distance(k, key), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min();
    match closest {
        Some((_, k)) => format!("unknown field `{key}` (did you mean `{k}`?)"),
        None if known.is_empty() => format!("unknown field `{key}`"),
        None => format!(
            "unknown field `{key}`, expected one of: {}",
            known.join(", ")
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// serde_ignored's path in this crate's notation: `sources[0].metrics[1].lables`.
pub fn ignored_path(p: &serde_ignored::Path<'_>) -> (String, String) {
    fn render(p: &serde_ignored::Path<'_>) -> String {
        use serde_ignored::Path;
        match p {
            Path::Root => String::new(),
            Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
            Path::Map { parent, key } => {
                let parent = render(parent);
                if parent.is_empty() {
                    key.clone()
                } else {
                    format!("{parent}.{key}")
                }
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => render(parent),
        }
    }
    match p {
        serde_ignored::Path::Map { parent, key } => (render(parent), key.clone()),
        other => (String::new(), render(other)),
    }
}
