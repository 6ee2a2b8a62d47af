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
    /// Read at every poll (relative to the config file's directory).
    #[serde(default)]
    pub bearer_token_file: Option<String>,
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
    /// Most series one poll may produce (default 1,000,000); the rest are dropped.
    #[serde(default)]
    pub max_series: Option<usize>,
    #[serde(default)]
    pub metrics: Vec<RawMetric>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawBasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// Read at every poll (relative to the config file's directory).
    #[serde(default)]
    pub password_file: Option<String>,
}

/// A metric block: `each` + `labels`, and either one metric (`name` + `value`) or several
/// (`values`: name -> value or output settings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawMetric {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub each: Option<String>,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    #[serde(default)]
    pub values: Option<IndexMap<String, RawOutputEntry>>,
    #[serde(default)]
    pub on_duplicate: Option<RawOnDuplicate>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub timestamp_format: Option<RawTimestampFormat>,
    // Output settings, for the single-metric form (the same as RawOutputSettings: serde's
    // `flatten` would hide unknown fields from the unknown-field report).
    #[serde(default)]
    pub value: Option<RawValue>,
    #[serde(default)]
    pub help: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<RawMetricKind>,
    #[serde(default)]
    pub mapping: Option<IndexMap<String, f64>>,
    #[serde(default)]
    pub default: Option<f64>,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub states: Option<Vec<String>>,
    #[serde(default)]
    pub state_label: Option<String>,
}

impl RawMetric {
    /// The output settings written at block level.
    pub fn settings(&self) -> RawOutputSettings {
        RawOutputSettings {
            help: self.help.clone(),
            kind: self.kind,
            mapping: self.mapping.clone(),
            default: self.default,
            scale: self.scale,
            states: self.states.clone(),
            state_label: self.state_label.clone(),
        }
    }
}

/// Per-output settings, shared by the single-metric form and `values` entries.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RawOutputSettings {
    #[serde(default)]
    pub help: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<RawMetricKind>,
    #[serde(default)]
    pub mapping: Option<IndexMap<String, f64>>,
    #[serde(default)]
    pub default: Option<f64>,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub states: Option<Vec<String>>,
    #[serde(default)]
    pub state_label: Option<String>,
}

impl RawOutputSettings {
    /// Whether any setting is written (block-level settings conflict with `values`).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A `values` entry: `name: "@.path"` / `name: 1`, or `name: {value: ..., help: ..., ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutputEntry {
    pub value: RawValue,
    pub settings: RawOutputSettings,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct RawOutputObject {
    value: RawValue,
    #[serde(default)]
    help: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<RawMetricKind>,
    #[serde(default)]
    mapping: Option<IndexMap<String, f64>>,
    #[serde(default)]
    default: Option<f64>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    states: Option<Vec<String>>,
    #[serde(default)]
    state_label: Option<String>,
}

impl<'de> Deserialize<'de> for RawOutputEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawOutputEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSONPath, a number, or a map with `value` and output settings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(short(RawValue::Text(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(short(RawValue::Number(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(short(RawValue::Number(v as f64)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(short(RawValue::Number(v as f64)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let o = RawOutputObject::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawOutputEntry {
                    value: o.value,
                    settings: RawOutputSettings {
                        help: o.help,
                        kind: o.kind,
                        mapping: o.mapping,
                        default: o.default,
                        scale: o.scale,
                        states: o.states,
                        state_label: o.state_label,
                    },
                })
            }
        }
        fn short(value: RawValue) -> RawOutputEntry {
            RawOutputEntry {
                value,
                settings: RawOutputSettings::default(),
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMetricKind {
    Gauge,
    Counter,
    Stateset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawOnDuplicate {
    First,
    Last,
    Sum,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawTimestampFormat {
    Rfc3339,
    Unix,
    UnixMs,
}

/// `value: 1` (a constant) or `value: "@.energy[-1]"` (a JSONPath or an aggregate).
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a JSONPath string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Number(v as f64))
            }
        }
        d.deserialize_any(V)
    }
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
    "bearer_token_file",
    "timeout",
    "schedule",
    "every",
    "max_body_bytes",
    "max_series",
    "metrics",
];
const METRIC_FIELDS: &[&str] = &[
    "name",
    "help",
    "type",
    "each",
    "labels",
    "value",
    "values",
    "mapping",
    "default",
    "scale",
    "states",
    "state_label",
    "on_duplicate",
    "timestamp",
    "timestamp_format",
];
const OUTPUT_FIELDS: &[&str] = &[
    "value",
    "help",
    "type",
    "mapping",
    "default",
    "scale",
    "states",
    "state_label",
];
const BASIC_AUTH_FIELDS: &[&str] = &["username", "password", "password_file"];

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
        ["sources", "metrics", "values", _] => OUTPUT_FIELDS,
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
