//! `extract`: a pure function from a JSON document and compiled metric specs to samples.
//!
//! Sits between [`crate::fetch`] and [`crate::store`]. No I/O, no clock, no globals: the same
//! document and specs always give the same samples, sorted by label values. An item that cannot
//! produce a sample (missing value, non-numeric text, a label that is an object...) is skipped
//! and counted by kind; it never fails the other items or the source.

pub mod selector;
pub mod spec;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use selector::{Selected, Selector};
pub use spec::{Each, Lookup, MetricKind, MetricSpec, Part, Scope, Template, ValueSpec};

/// Why one item gave no sample. `kind()` is the stable label of
/// `jsonbridge_extraction_errors_total`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemError {
    #[error("value {path} not found")]
    ValueMissing { path: String },
    #[error("value {path} is null")]
    ValueNull { path: String },
    #[error("value {path} is not numeric: {found}")]
    ValueNotNumeric { path: String, found: String },
    #[error("value {path} matched {count} nodes, expected one")]
    ValueAmbiguous { path: String, count: usize },
    #[error("counter value {value} is negative")]
    CounterNegative { value: f64 },
    #[error("label {label}: {path} not found")]
    LabelMissing { label: String, path: String },
    #[error("label {label}: {path} is {found}, not a string, number or boolean")]
    LabelNotScalar {
        label: String,
        path: String,
        found: String,
    },
    #[error("label {label}: {path} matched {count} nodes, expected one")]
    LabelAmbiguous {
        label: String,
        path: String,
        count: usize,
    },
    #[error("another item already produced the series {{{labels}}}; the first one is kept")]
    DuplicateSeries { labels: String },
}

impl ItemError {
    pub fn kind(&self) -> &'static str {
        match self {
            ItemError::ValueMissing { .. } => "value_missing",
            ItemError::ValueNull { .. } => "value_null",
            ItemError::ValueNotNumeric { .. } => "value_not_numeric",
            ItemError::ValueAmbiguous { .. } => "value_ambiguous",
            ItemError::CounterNegative { .. } => "counter_negative",
            ItemError::LabelMissing { .. } => "label_missing",
            ItemError::LabelNotScalar { .. } => "label_not_scalar",
            ItemError::LabelAmbiguous { .. } => "label_ambiguous",
            ItemError::DuplicateSeries { .. } => "duplicate_series",
        }
    }
}

/// One series of one family: label values in the order of the family's label names.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Box<[String]>,
    pub value: f64,
}

/// The series one metric block produced.
#[derive(Debug, Clone)]
pub struct FamilySamples {
    pub family: String,
    pub label_names: Arc<[String]>,
    pub series: Vec<Series>,
}

/// Skipped items of one metric, grouped by kind: how many, and the first one's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub metric: String,
    pub kind: &'static str,
    pub count: u64,
    pub example: String,
}

/// Per metric block: how many items `each` matched and how many series came out.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReport {
    pub metric: String,
    pub items: usize,
    pub series: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Extraction {
    /// One entry per metric block, in config order.
    pub families: Vec<FamilySamples>,
    pub problems: Vec<Problem>,
    pub reports: Vec<MetricReport>,
}

impl Extraction {
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }
}

/// Runs every metric block over `doc`.
pub fn extract(doc: &Value, metrics: &[MetricSpec]) -> Extraction {
    let mut out = Extraction::default();
    for spec in metrics {
        let mut problems: BTreeMap<&'static str, (u64, String)> = BTreeMap::new();
        let mut note = |err: ItemError, item: &dyn Fn() -> String| {
            let e = problems.entry(err.kind()).or_insert((0, String::new()));
            if e.0 == 0 {
                e.1 = format!("{}: {err}", item());
            }
            e.0 += 1;
        };
        let mut series = Vec::new();
        let mut items = 0usize;
        spec.each.for_each(doc, &mut |item, caps| {
            items += 1;
            let ordinal = items;
            let describe = || describe_item(&spec.each.captures, caps, ordinal);
            match sample(spec, doc, item, caps) {
                Ok(s) => series.push(s),
                Err(e) => note(e, &describe),
            }
        });
        // Stable sort keeps document order among equal label sets, so "first wins" holds.
        series.sort_by(|a: &Series, b: &Series| a.labels.cmp(&b.labels));
        let before = series.len();
        let mut duplicate: Option<String> = None;
        series.dedup_by(|later, first| {
            let same = later.labels == first.labels;
            if same && duplicate.is_none() {
                duplicate = Some(render_labels(&spec.label_names, &first.labels));
            }
            same
        });
        let dropped = (before - series.len()) as u64;
        if let Some(labels) = duplicate {
            let err = ItemError::DuplicateSeries { labels };
            problems.insert(err.kind(), (dropped, err.to_string()));
        }
        out.reports.push(MetricReport {
            metric: spec.name.clone(),
            items,
            series: series.len(),
        });
        out.problems.extend(
            problems
                .into_iter()
                .map(|(kind, (count, example))| Problem {
                    metric: spec.name.clone(),
                    kind,
                    count,
                    example,
                }),
        );
        out.families.push(FamilySamples {
            family: spec.family.clone(),
            label_names: spec.label_names.clone(),
            series,
        });
    }
    out
}

fn describe_item(names: &[String], caps: &[Cow<'_, str>], ordinal: usize) -> String {
    if names.is_empty() {
        return format!("item #{ordinal}");
    }
    let caps: Vec<String> = names
        .iter()
        .zip(caps)
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("item #{ordinal} ({})", caps.join(", "))
}

fn render_labels(names: &[String], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn sample(
    spec: &MetricSpec,
    root: &Value,
    item: &Value,
    caps: &[Cow<'_, str>],
) -> Result<Series, ItemError> {
    let value = match &spec.value {
        ValueSpec::Constant(v) => *v,
        ValueSpec::Lookup(l) => value_of(l, item, root)?,
    };
    if spec.kind == MetricKind::Counter && value < 0.0 {
        return Err(ItemError::CounterNegative { value });
    }
    let labels = spec
        .labels
        .iter()
        .zip(spec.label_names.iter())
        .map(|(t, name)| render(t, name, root, item, caps))
        .collect::<Result<Box<[String]>, _>>()?;
    Ok(Series { labels, value })
}

fn value_of(l: &Lookup, item: &Value, root: &Value) -> Result<f64, ItemError> {
    let path = || l.display();
    match l.select(item, root) {
        Selected::None => Err(ItemError::ValueMissing { path: path() }),
        Selected::Many(count) => Err(ItemError::ValueAmbiguous {
            path: path(),
            count,
        }),
        Selected::One(v) => to_number(v).map_err(|found| match found {
            None => ItemError::ValueNull { path: path() },
            Some(found) => ItemError::ValueNotNumeric {
                path: path(),
                found,
            },
        }),
    }
}

/// JSON numbers, numeric strings (incl. `NaN`, `+Inf`) and booleans (true = 1) are values.
/// `Err(None)` is null; `Err(Some(desc))` describes what was found instead.
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

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Rust's parser also takes "infinity"-like words handled above; everything else must look
    // like a JSON/decimal number (no hex, no underscores).
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    t.parse().ok()
}

fn truncate_quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

fn render(
    t: &Template,
    label: &str,
    root: &Value,
    item: &Value,
    caps: &[Cow<'_, str>],
) -> Result<String, ItemError> {
    if let [Part::Literal(s)] = t.parts.as_slice() {
        return Ok(s.clone());
    }
    let mut out = String::new();
    for part in &t.parts {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Capture(i) => out.push_str(&caps[*i]),
            Part::Lookup(l) => match l.select(item, root) {
                Selected::One(v) => match v {
                    Value::String(s) => out.push_str(s),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Value::Null => {
                        return Err(ItemError::LabelMissing {
                            label: label.into(),
                            path: format!("{} (null)", l.display()),
                        });
                    }
                    other => {
                        return Err(ItemError::LabelNotScalar {
                            label: label.into(),
                            path: l.display(),
                            found: if other.is_array() {
                                "an array"
                            } else {
                                "an object"
                            }
                            .into(),
                        });
                    }
                },
                Selected::None => {
                    return Err(ItemError::LabelMissing {
                        label: label.into(),
                        path: l.display(),
                    });
                }
                Selected::Many(count) => {
                    return Err(ItemError::LabelAmbiguous {
                        label: label.into(),
                        path: l.display(),
                        count,
                    });
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
