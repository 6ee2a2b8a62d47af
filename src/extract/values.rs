//! Sample values: lookups, value mappings, state sets, conversions, timestamps, and how
//! JSON values are read as numbers.

use serde_json::Value;

use super::aggregate::aggregate;
use super::body::DocRoot;
use super::error::ItemError;
use super::filters::{Absence, Piece, number_text};
use super::selector::Selected;
use super::spec::{Bound, Conversion, Item, Output, TimestampFormat, TimestampSpec, ValueSpec};

pub(super) fn value_path(v: &ValueSpec) -> String {
    match v {
        ValueSpec::Constant(c) => c.to_string(),
        ValueSpec::Lookup(l) => l.display().to_string(),
        ValueSpec::Aggregate(f, l) => format!("{f:?}({})", l.display()).to_lowercase(),
    }
}

#[inline]
pub(super) fn value_of(
    output: &Output,
    item: Item<'_>,
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let conv = &output.conversion;
    let raw = if conv.filters.is_empty() {
        unfiltered(output, item, root, caps)
    } else {
        filtered_value(output, item, root, caps)
    };
    let v = match (raw, conv.default) {
        (Ok(v), _) => v,
        (Err(ItemError::ValueAmbiguous { path, count }), _) => {
            return Err(ItemError::ValueAmbiguous { path, count });
        }
        (Err(_), Some(d)) => d,
        (Err(e), None) => return Err(e),
    };
    Ok(match conv.scale {
        Some(f) => v * f,
        None => v,
    })
}

#[inline]
fn unfiltered(
    output: &Output,
    item: Item<'_>,
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let conv = &output.conversion;
    match &output.value {
        ValueSpec::Constant(v) => Ok(*v),
        ValueSpec::Lookup(l) => match l.select(item, root.tree, caps) {
            Selected::None => Err(ItemError::ValueMissing {
                path: l.display().into(),
            }),
            Selected::Many(count) => Err(ItemError::ValueAmbiguous {
                path: l.display().into(),
                count,
            }),
            Selected::One(v) => convert(v, conv, l.display()),
        },
        ValueSpec::Aggregate(func, l) => aggregate(*func, l, item, root, caps),
    }
}

/// The value's node as a piece for its filters (numbers stay numbers, so `scale` keeps them
/// exact); objects, arrays and several nodes are errors before any filter.
fn piece_of<'a>(
    output: &Output,
    item: Item<'a>,
    root: DocRoot<'a>,
    caps: &[Bound<'a>],
) -> Result<Piece<'a>, ItemError> {
    Ok(match &output.value {
        ValueSpec::Constant(v) => Piece::Number(*v),
        ValueSpec::Aggregate(func, l) => match aggregate(*func, l, item, root, caps) {
            Ok(v) => Piece::Number(v),
            Err(ItemError::ValueMissing { .. }) => Piece::Absent(Absence::Missing),
            Err(ItemError::ValueNull { .. }) => Piece::Absent(Absence::Null),
            Err(e) => return Err(e),
        },
        ValueSpec::Lookup(l) => match l.select(item, root.tree, caps) {
            Selected::None => Piece::Absent(Absence::Missing),
            Selected::Many(count) => {
                return Err(ItemError::ValueAmbiguous {
                    path: l.display().into(),
                    count,
                });
            }
            Selected::One(v) => match v {
                Value::String(s) => Piece::Text(s.as_str().into()),
                Value::Number(n) => match n.as_f64() {
                    Some(x) => Piece::Number(x),
                    None => Piece::Text(n.to_string().into()),
                },
                Value::Bool(b) => Piece::Text(if *b { "true" } else { "false" }.into()),
                Value::Null => Piece::Absent(Absence::Null),
                other => {
                    return Err(ItemError::ValueNotNumeric {
                        path: l.display().into(),
                        found: describe_value(other),
                    });
                }
            },
        },
    })
}

/// The piece after the output's filters, or why the item has no value.
fn filter_piece<'a>(
    output: &Output,
    item: Item<'a>,
    root: DocRoot<'a>,
    caps: &[Bound<'a>],
) -> Result<Piece<'a>, ItemError> {
    let path = value_path(&output.value);
    let piece = piece_of(output, item, root, caps)?;
    match output.conversion.filters.apply(piece) {
        Ok(Piece::Absent(a)) => Err(match a {
            Absence::Missing => ItemError::ValueMissing { path },
            Absence::Null => ItemError::ValueNull { path },
            Absence::NoMatch { pattern, found } => ItemError::NoMatch {
                at: format!("value {path}"),
                pattern,
                found,
            },
        }),
        Ok(p) => Ok(p),
        Err(e) => Err(ItemError::filter("value".into(), path, e)),
    }
}

fn filtered_value(
    output: &Output,
    item: Item<'_>,
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let conv = &output.conversion;
    match filter_piece(output, item, root, caps)? {
        Piece::Number(n) => match &conv.mapping {
            Some(map) => Ok(map.get(&number_text(n)).copied().unwrap_or(n)),
            None => Ok(n),
        },
        Piece::Text(t) => convert(
            &Value::String(t.into_owned()),
            conv,
            &value_path(&output.value),
        ),
        Piece::Absent(_) => unreachable!("filter_piece reports absence"),
    }
}

/// The current state of a state-set output, as text.
#[inline]
pub(super) fn state_of(
    output: &Output,
    item: Item<'_>,
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<String, ItemError> {
    if !output.conversion.filters.is_empty() {
        return match filter_piece(output, item, root, caps)? {
            Piece::Number(n) => Ok(number_text(n)),
            Piece::Text(t) => Ok(t.into_owned()),
            Piece::Absent(_) => unreachable!("filter_piece reports absence"),
        };
    }
    let ValueSpec::Lookup(l) = &output.value else {
        return Err(ItemError::ValueMissing {
            path: value_path(&output.value),
        });
    };
    match l.select(item, root.tree, caps) {
        Selected::One(v) => match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Err(ItemError::ValueNull {
                path: l.display().into(),
            }),
            other => Err(ItemError::ValueNotNumeric {
                path: l.display().into(),
                found: describe_value(other),
            }),
        },
        Selected::None => Err(ItemError::ValueMissing {
            path: l.display().into(),
        }),
        Selected::Many(count) => Err(ItemError::ValueAmbiguous {
            path: l.display().into(),
            count,
        }),
    }
}

/// Applies the mapping (if any), then the standard conversion.
#[inline]
pub(super) fn convert(v: &Value, conv: &Conversion, path: &str) -> Result<f64, ItemError> {
    if let Some(map) = &conv.mapping {
        let key: std::borrow::Cow<'_, str> = match v {
            Value::String(s) => s.as_str().into(),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
            Value::Number(n) => n.to_string().into(),
            Value::Null => "null".into(),
            _ => "".into(),
        };
        if let Some(x) = map.get(key.as_ref()) {
            return Ok(*x);
        }
        if let Ok(x) = to_number(v) {
            return Ok(x);
        }
        return Err(ItemError::ValueUnmapped {
            path: path.into(),
            found: describe_value(v),
        });
    }
    to_number(v).map_err(|found| match found {
        None => ItemError::ValueNull { path: path.into() },
        Some(found) => ItemError::ValueNotNumeric {
            path: path.into(),
            found,
        },
    })
}

#[inline]
pub(super) fn timestamp_of(
    t: &TimestampSpec,
    item: Item<'_>,
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<i64, ItemError> {
    let path = || t.lookup.display().to_string();
    let v = match t.lookup.select(item, root.tree, caps) {
        Selected::One(v) => v,
        _ => return Err(ItemError::TimestampMissing { path: path() }),
    };
    let invalid = |format: &'static str| ItemError::TimestampInvalid {
        path: path(),
        format,
        found: describe_value(v),
    };
    match t.format {
        TimestampFormat::Rfc3339 => {
            let s = v.as_str().ok_or_else(|| invalid("RFC 3339 time"))?;
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.timestamp_millis())
                .map_err(|_| invalid("RFC 3339 time"))
        }
        TimestampFormat::Unix | TimestampFormat::UnixMs => {
            let (name, factor) = if t.format == TimestampFormat::Unix {
                ("Unix time in seconds", 1000.0)
            } else {
                ("Unix time in milliseconds", 1.0)
            };
            let x = to_number(v).map_err(|_| invalid(name))?;
            let ms = (x * factor).round();
            // Within ±292 million years, and not NaN: what an i64 of milliseconds holds.
            if ms.is_finite() && ms.abs() < 9.2e18 {
                Ok(ms as i64)
            } else {
                Err(invalid(name))
            }
        }
    }
}

pub(super) fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => truncate_quoted(s),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

/// JSON numbers, numeric strings (incl. `NaN`, `+Inf`), booleans and yes/no words are values.
/// `Err(None)` is null; `Err(Some(desc))` describes what was found instead.
#[inline]
pub fn to_number(v: &Value) -> Result<f64, Option<String>> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| Some(n.to_string())),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => parse_number(s).ok_or_else(|| Some(truncate_quoted(s))),
        Value::Null => Err(None),
        Value::Array(_) => Err(Some("an array".into())),
        Value::Object(_) => Err(Some("an object".into())),
    }
}

/// Decimal and exponent notation (no hex, no underscores), `NaN`, `Inf`, and the words
/// true/yes/on (1) and false/no/off (0), case-insensitive, surrounding spaces ignored.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "true" | "yes" | "on" => return Some(1.0),
        "false" | "no" | "off" => return Some(0.0),
        _ => {}
    }
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    t.parse().ok()
}

pub(super) fn truncate_quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}
