//! Small parsers for scalar config values: durations, `${ENV}` expansion, Prometheus names.

use std::time::Duration;

/// Parses `500ms`, `30s`, `1m`, `1h30m`, `2d` (units: ms, s, m, h, d, w). A bare number is
/// rejected: a unit is always required, so `timeout: 30` cannot mean milliseconds by accident.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. 30s, 5m, 1h30m)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?} (expected e.g. 30s, 5m, 1h30m)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "w" => Duration::from_secs(n.saturating_mul(604_800)),
            "" => {
                return Err(format!(
                    "duration {s:?} has no unit (write e.g. {n}s or {n}ms)"
                ));
            }
            other => {
                return Err(format!(
                    "duration {s:?} has unknown unit {other:?} (use ms, s, m, h, d or w)"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// Expands `${NAME}` from `lookup`; `$$` is a literal `$`. Returns the names that were not set
/// (the caller turns them into config errors) and never echoes a value.
pub fn expand_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => missing.push(name.to_string()),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    missing.push(format!("{body} (unclosed '${{')"));
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (extraction checks names made from
/// the data with it too).
pub use crate::extract::is_metric_name;

/// Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__` prefix).
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// Source names appear in labels, URLs of the status page and logs: keep them plain.
pub fn is_source_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", 500),
            ("30s", 30_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            (" 10s ", 10_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(ms),
                "{text}"
            );
        }
        for (text, msg) in [
            ("30", "has no unit"),
            ("", "empty"),
            ("5x", "unknown unit \"x\""),
            ("s", "invalid duration"),
            ("-5s", "invalid duration"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| match k {
            "TOKEN" => Some("s3cret".to_string()),
            "HOST" => Some("api".to_string()),
            _ => None,
        };
        assert_eq!(
            expand_env("http://${HOST}/x?t=${TOKEN}", &env).unwrap(),
            "http://api/x?t=s3cret"
        );
        assert_eq!(expand_env("cost $$5 $x", &env).unwrap(), "cost $5 $x");
        assert_eq!(
            expand_env("${NOPE}-${ALSO_NOPE}", &env).unwrap_err(),
            vec!["NOPE".to_string(), "ALSO_NOPE".to_string()]
        );
    }

    #[test]
    fn names() {
        assert!(is_metric_name("pod_energy:rate5m"));
        assert!(!is_metric_name("1pod"));
        assert!(!is_metric_name("pod-energy"));
        assert!(!is_metric_name(""));
        assert!(is_label_name("namespace"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
        assert!(is_source_name("energy-api.v1"));
        assert!(!is_source_name("energy api"));
    }
}
