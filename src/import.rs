//! `jsonbridge import-json-exporter`: a json_exporter config translated to jsonbridge YAML.
//!
//! json_exporter modules become jsonbridge sources (with `--target`) or modules for `/probe`
//! (without). Its Kubernetes-style JSONPath (`{ .a.b[?(@.x == "y")] }`) becomes RFC 9535
//! (`$.a.b[?(@.x == "y")]`, which RFC 9535 also accepts); `type: object` metrics become
//! blocks with one value per `values` key, named `<name>_<key>` as json_exporter names them;
//! label templates with text around `{...}` keep it. `http_client_config` (auth, TLS,
//! OAuth2, proxies, redirects, HTTP/2) comes along field by field. What cannot be
//! translated (CEL, inline PEM, templated bodies...) is reported, never silently dropped.

use indexmap::IndexMap;
use serde::Serialize;
use serde_norway::Value;

/// The translated YAML and what could not be translated.
pub struct Imported {
    pub yaml: String,
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
struct OutConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<OutSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    modules: Vec<OutSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<OutProbe>,
}

#[derive(Serialize)]
struct OutProbe {
    allow_targets: Vec<String>,
}

#[derive(Serialize)]
struct OutSource {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    headers: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_auth: Option<IndexMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_token_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_status_codes: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_redirects: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_http2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_from_environment: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<IndexMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth2: Option<IndexMap<String, Value>>,
    metrics: Vec<OutMetric>,
}

#[derive(Serialize)]
struct OutMetric {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    each: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    labels: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<OutValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mapping: Option<IndexMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<IndexMap<String, OutEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_format: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutValue {
    Number(f64),
    Path(String),
}

#[derive(Serialize)]
struct OutEntry {
    value: OutValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mapping: Option<IndexMap<String, f64>>,
}

/// `{ .a.b }` -> `$.a.b` (or `@.a.b` when `relative`). `Err` explains what is not JSONPath.
fn path(k8s: &str, relative: bool) -> Result<String, String> {
    let t = k8s.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(t)
        .trim();
    if inner.contains("range") || inner.contains("{") {
        return Err(format!(
            "{k8s:?}: templates (range/end, nested braces) have no JSONPath equivalent"
        ));
    }
    let root = if relative { "@" } else { "$" };
    Ok(if let Some(rest) = inner.strip_prefix('$') {
        if relative {
            format!("@{rest}")
        } else {
            format!("${rest}")
        }
    } else if inner.starts_with('.') || inner.starts_with('[') {
        format!("{root}{inner}")
    } else if inner.is_empty() {
        root.to_string()
    } else {
        format!("{root}.{inner}")
    })
}

/// A label: literal text with `{...}` parts, each becoming a `{$...}`/`{@...}` lookup.
fn label(text: &str, relative: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| format!("{text:?}: unclosed '{{'"))?;
        out.push_str(&rest[..open]);
        out.push('{');
        out.push_str(&path(&rest[open..=close], relative)?);
        out.push('}');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn value(v: &Value, relative: bool) -> Result<OutValue, String> {
    match v {
        Value::Number(n) => Ok(OutValue::Number(n.as_f64().unwrap_or(0.0))),
        Value::String(s) if s.trim().parse::<f64>().is_ok() => {
            Ok(OutValue::Number(s.trim().parse().unwrap_or(0.0)))
        }
        Value::String(s) => Ok(OutValue::Path(path(s, relative)?)),
        other => Err(format!("value {other:?} is neither a number nor a path")),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn kind(v: &Value) -> Option<String> {
    match str_of(v, "valuetype").as_deref() {
        Some("counter") => Some("counter".into()),
        Some("gauge") => None,
        // json_exporter's default type, kept so that dashboards and rules see no change.
        _ => Some("untyped".into()),
    }
}

/// `valueconverter: {'{.state}': {ACTIVE: 1}}`: the mapping for the value at `value_path`.
fn converter(m: &Value, value_path: &str) -> Option<IndexMap<String, f64>> {
    let conv = m.get("valueconverter")?.as_mapping()?;
    for (k, map) in conv {
        let Some(k) = k.as_str() else { continue };
        if path(k, true).ok()? == value_path || path(k, false).ok()? == value_path {
            let mut out = IndexMap::new();
            for (from, to) in map.as_mapping()? {
                if let (Some(f), Some(t)) = (from.as_str(), to.as_f64()) {
                    out.insert(f.to_string(), t);
                }
            }
            return Some(out);
        }
    }
    None
}

fn metric(module: &str, m: &Value, warnings: &mut Vec<String>) -> Option<OutMetric> {
    let name = str_of(m, "name").unwrap_or_default();
    let at = format!("modules.{module}.metrics[{name}]");
    let warn = |w: &mut Vec<String>, msg: String| w.push(format!("{at}: {msg}"));
    if str_of(m, "engine").as_deref() == Some("cel") {
        warn(
            warnings,
            "CEL expressions are not translated; metric skipped".into(),
        );
        return None;
    }
    for unsupported in ["allow_missing_key", "ignore_missing_values", "valuetype"] {
        if unsupported != "valuetype" && m.get(unsupported).is_some() {
            warn(
                warnings,
                format!("{unsupported}: jsonbridge skips and counts missing values instead"),
            );
        }
    }
    let help = str_of(m, "help");
    let object = str_of(m, "type").as_deref() == Some("object");
    let mut labels = IndexMap::new();
    if let Some(ls) = m.get("labels").and_then(Value::as_mapping) {
        for (k, v) in ls {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                continue;
            };
            match label(v, object) {
                Ok(t) => {
                    labels.insert(k.to_string(), t);
                }
                Err(e) => warn(warnings, format!("label {k}: {e}")),
            }
        }
    }
    let raw_path = str_of(m, "path").unwrap_or_default();
    let (timestamp, timestamp_format) = match str_of(m, "epochTimestamp") {
        Some(t) => match path(&t, object) {
            Ok(p) => (Some(p), Some("unix_ms".to_string())),
            Err(e) => {
                warn(warnings, format!("epochTimestamp: {e}"));
                (None, None)
            }
        },
        None => (None, None),
    };
    if object {
        let each = match path(&raw_path, false) {
            Ok(p) => p,
            Err(e) => {
                warn(warnings, format!("path: {e}; metric skipped"));
                return None;
            }
        };
        let mut values = IndexMap::new();
        for (k, v) in m
            .get("values")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let Some(k) = k.as_str() else { continue };
            match value(v, true) {
                Ok(val) => {
                    let mapping = match &val {
                        OutValue::Path(p) => converter(m, p),
                        OutValue::Number(_) => None,
                    };
                    values.insert(
                        format!("{name}_{k}"),
                        OutEntry {
                            value: val,
                            help: help.clone(),
                            kind: kind(m),
                            mapping,
                        },
                    );
                }
                Err(e) => warn(warnings, format!("values.{k}: {e}")),
            }
        }
        if values.is_empty() {
            warn(warnings, "no values; metric skipped".into());
            return None;
        }
        Some(OutMetric {
            name: None,
            help: None,
            kind: None,
            each: Some(each),
            labels,
            value: None,
            mapping: None,
            values: Some(values),
            timestamp,
            timestamp_format,
        })
    } else {
        let value = match path(&raw_path, false) {
            Ok(p) => p,
            Err(e) => {
                warn(warnings, format!("path: {e}; metric skipped"));
                return None;
            }
        };
        let mapping = converter(m, &value);
        Some(OutMetric {
            name: Some(name),
            help,
            kind: kind(m),
            each: None,
            labels,
            value: Some(OutValue::Path(value)),
            mapping,
            values: None,
            timestamp,
            timestamp_format,
        })
    }
}

fn module(name: &str, m: &Value, target: Option<&str>, warnings: &mut Vec<String>) -> OutSource {
    let mut headers = IndexMap::new();
    for (k, v) in m
        .get("headers")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
            headers.insert(k.to_string(), v.to_string());
        }
    }
    let (mut basic_auth, mut bearer_token, mut bearer_token_file) = (None, None, None);
    let (mut follow_redirects, mut enable_http2) = (None, None);
    let (mut proxy_url, mut no_proxy, mut proxy_from_environment) = (None, None, None::<bool>);
    let (mut tls, mut oauth2) = (None, None);
    if let Some(h) = m.get("http_client_config") {
        let at = format!("modules.{name}.http_client_config");
        tls = h
            .get("tls_config")
            .map(|t| tls_config(t, &format!("{at}.tls_config"), warnings));
        oauth2 = h
            .get("oauth2")
            .map(|o| oauth2_config(o, &format!("{at}.oauth2"), warnings));
        if let Some(a) = h.get("authorization") {
            let kind = str_of(a, "type").unwrap_or_else(|| "Bearer".into());
            if kind.eq_ignore_ascii_case("bearer") {
                bearer_token = str_of(a, "credentials");
                bearer_token_file = str_of(a, "credentials_file");
            } else {
                warnings.push(format!(
                    "{at}.authorization: type {kind} has no equivalent (jsonbridge sends Bearer tokens, or set the Authorization header under headers); dropped"
                ));
            }
            for k in keys(a) {
                if !matches!(k.as_str(), "type" | "credentials" | "credentials_file") {
                    warnings.push(format!("{at}.authorization.{k}: no equivalent; dropped"));
                }
            }
        }
        if let Some(b) = h.get("basic_auth") {
            let mut a = IndexMap::new();
            for key in ["username", "password", "password_file"] {
                if let Some(v) = str_of(b, key) {
                    a.insert(key.to_string(), v);
                }
            }
            basic_auth = Some(a);
        }
        bearer_token = bearer_token.or_else(|| str_of(h, "bearer_token"));
        bearer_token_file = bearer_token_file.or_else(|| str_of(h, "bearer_token_file"));
        follow_redirects = h.get("follow_redirects").and_then(Value::as_bool);
        enable_http2 = h.get("enable_http2").and_then(Value::as_bool);
        proxy_url = str_of(h, "proxy_url");
        no_proxy = str_of(h, "no_proxy");
        proxy_from_environment = h.get("proxy_from_environment").and_then(Value::as_bool);
        for (k, _) in h.as_mapping().into_iter().flatten() {
            if let Some(k) = k.as_str()
                && !matches!(
                    k,
                    "basic_auth"
                        | "bearer_token"
                        | "bearer_token_file"
                        | "follow_redirects"
                        | "enable_http2"
                        | "proxy_url"
                        | "no_proxy"
                        | "proxy_from_environment"
                        | "tls_config"
                        | "oauth2"
                        | "authorization"
                )
            {
                warnings.push(format!(
                    "modules.{name}.http_client_config.{k}: not supported by jsonbridge; dropped"
                ));
            }
        }
    }
    let proxy_from_environment = prometheus_proxy_default(&proxy_url, proxy_from_environment);
    let mut method = None;
    let body = m.get("body").and_then(|b| {
        if b.get("templatize").and_then(Value::as_bool) == Some(true) {
            warnings.push(format!(
                "modules.{name}.body.templatize: Go templates are not translated (jsonbridge has {{now - 5m | rfc3339}}); the body is copied as text"
            ));
        }
        method = Some("POST".to_string());
        str_of(b, "content")
    });
    let valid_status_codes = m.get("valid_status_codes").and_then(|v| {
        let codes: Option<Vec<u16>> = v
            .as_sequence()?
            .iter()
            .map(|c| c.as_u64().and_then(|c| u16::try_from(c).ok()))
            .collect();
        if codes.is_none() {
            warnings.push(format!(
                "modules.{name}.valid_status_codes: not a list of status numbers; dropped"
            ));
        }
        codes
    });
    let metrics = m
        .get("metrics")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|mm| metric(name, mm, warnings))
        .collect();
    OutSource {
        name: name.to_string(),
        url: target.map(str::to_string),
        every: target.map(|_| "1m".to_string()),
        method,
        headers,
        body,
        basic_auth,
        bearer_token,
        bearer_token_file,
        valid_status_codes,
        follow_redirects,
        enable_http2,
        proxy_url,
        no_proxy,
        proxy_from_environment,
        tls,
        oauth2,
        metrics,
    }
}

/// Prometheus' default is not to read the proxy environment; jsonbridge's is to read it.
fn prometheus_proxy_default(proxy_url: &Option<String>, from_env: Option<bool>) -> Option<bool> {
    match (proxy_url, from_env) {
        (Some(_), _) | (None, Some(true)) => None,
        (None, _) => Some(false),
    }
}

fn keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str().map(str::to_string))
        .collect()
}

/// Prometheus' `tls_config` as jsonbridge's `tls`. Its `ca_file` replaces the system roots,
/// as jsonbridge's does by default, so trust is unchanged.
fn tls_config(t: &Value, at: &str, warnings: &mut Vec<String>) -> IndexMap<String, Value> {
    let mut out = IndexMap::new();
    for k in keys(t) {
        let v = t.get(k.as_str()).cloned().unwrap_or(Value::Null);
        match k.as_str() {
            "ca_file" | "cert_file" | "key_file" | "server_name" | "insecure_skip_verify" => {
                out.insert(k, v);
            }
            "min_version" => match v.as_str() {
                Some("TLS12" | "TLS13") => {
                    out.insert(k, v);
                }
                Some(old @ ("TLS10" | "TLS11")) => warnings.push(format!(
                    "{at}.min_version: {old} is not offered by jsonbridge (TLS 1.2 at least); left at TLS12"
                )),
                _ => warnings.push(format!("{at}.min_version: not a TLS version; dropped")),
            },
            "ca" | "cert" | "key" => warnings.push(format!(
                "{at}.{k}: inline PEM has no equivalent; write it to a file and set {k}_file (for key: key_file)"
            )),
            other => warnings.push(format!("{at}.{other}: no equivalent; dropped")),
        }
    }
    out
}

/// Prometheus' `oauth2` as jsonbridge's: the same fields, its TLS and proxy included.
fn oauth2_config(o: &Value, at: &str, warnings: &mut Vec<String>) -> IndexMap<String, Value> {
    let mut out = IndexMap::new();
    let mut from_env = None;
    for k in keys(o) {
        let v = o.get(k.as_str()).cloned().unwrap_or(Value::Null);
        match k.as_str() {
            "client_id" | "client_secret" | "client_secret_file" | "token_url" | "scopes"
            | "endpoint_params" | "proxy_url" | "no_proxy" => {
                out.insert(k, v);
            }
            "proxy_from_environment" => from_env = v.as_bool(),
            "tls_config" => {
                let t = tls_config(&v, &format!("{at}.tls_config"), warnings);
                out.insert(
                    "tls".into(),
                    serde_norway::to_value(t).unwrap_or(Value::Null),
                );
            }
            other => warnings.push(format!("{at}.{other}: no equivalent; dropped")),
        }
    }
    let proxy = out
        .get("proxy_url")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(b) = prometheus_proxy_default(&proxy, from_env) {
        out.insert("proxy_from_environment".into(), Value::Bool(b));
    }
    out
}

/// Translates a json_exporter config. With `target`, each module becomes a source polling
/// it every minute; without, modules for `/probe?module=&target=`.
pub fn json_exporter(text: &str, target: Option<&str>) -> Result<Imported, String> {
    let doc: Value = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let modules = doc
        .get("modules")
        .and_then(Value::as_mapping)
        .ok_or("no `modules:` map: is this a json_exporter config (0.5 or later)?")?;
    let mut warnings = Vec::new();
    let mut out: Vec<OutSource> = Vec::new();
    for (k, m) in modules {
        let Some(name) = k.as_str() else { continue };
        out.push(module(name, m, target, &mut warnings));
    }
    let config = match target {
        Some(_) => OutConfig {
            sources: out,
            modules: Vec::new(),
            probe: None,
        },
        None => {
            warnings.push(
                "no --target: the modules serve /probe?module=NAME&target=URL; list the URLs Prometheus may probe under probe.allow_targets".into(),
            );
            OutConfig {
                sources: Vec::new(),
                modules: out,
                probe: Some(OutProbe {
                    allow_targets: Vec::new(),
                }),
            }
        }
    };
    let body = serde_norway::to_string(&config).map_err(|e| e.to_string())?;
    Ok(Imported {
        yaml: format!(
            "# Converted from a json_exporter config by `jsonbridge import-json-exporter`.\n{body}"
        ),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_becomes_a_bearer_token_or_is_reported() {
        let text = "modules:\n  a:\n    http_client_config:\n      authorization: {credentials_file: /run/t}\n    metrics: []\n  b:\n    http_client_config:\n      authorization: {type: Digest, credentials: x}\n    metrics: []\n";
        let out = json_exporter(text, Some("http://h/")).unwrap();
        assert!(
            out.yaml.contains("bearer_token_file: /run/t"),
            "{}",
            out.yaml
        );
        assert!(!out.yaml.contains("Digest"), "{}", out.yaml);
        assert_eq!(
            out.warnings,
            [
                "modules.b.http_client_config.authorization: type Digest has no equivalent (jsonbridge sends Bearer tokens, or set the Authorization header under headers); dropped"
            ]
        );
    }
}
