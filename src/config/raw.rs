//! The YAML file as written: serde types that only check shape (unknown fields, types).
//!
//! Everything here is turned into [`super::Config`] by [`super::compile`]; nothing downstream
//! sees these types. Field order in maps (`labels`, `headers`, `query`) is kept as written.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub sources: Vec<RawSource>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
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
