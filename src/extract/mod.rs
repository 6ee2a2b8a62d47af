//! `extract`: a pure function from a JSON document and compiled metric specs to samples.
//!
//! Sits between [`crate::fetch`] and [`crate::store`]. No I/O, no clock, no globals: the same
//! document and specs always give the same samples, sorted by label values. An item that cannot
//! produce a sample (missing value, non-numeric text, a label that is an object...) is skipped
//! and counted by kind; it never fails the other items or the source. The one exception is a
//! block that asks for it (`on_duplicate: error`).

pub mod labels;
pub mod plan;
pub mod selector;
pub mod spec;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use labels::{Labels, LabelsBuilder};
pub use plan::ReadPlan;
pub use selector::{Selected, Selector};
pub use spec::{
    Aggregate, Binding, Bound, Conversion, Each, Item, Lookup, MetricKind, MetricSpec, OnDuplicate,
    Output, OutputKind, Part, Scope, Template, TimestampFormat, TimestampSpec, ValueSpec,
};

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
    #[error("value {path} is {found}, which the mapping does not list")]
    ValueUnmapped { path: String, found: String },
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
    #[error("timestamp {path} not found")]
    TimestampMissing { path: String },
    #[error("timestamp {path} is not a valid {format}: {found}")]
    TimestampInvalid {
        path: String,
        format: &'static str,
        found: String,
    },
    #[error("{count} items produced the series {{{labels}}}; {policy}")]
    DuplicateSeries {
        labels: String,
        count: usize,
        policy: &'static str,
    },
}

impl ItemError {
    pub fn kind(&self) -> &'static str {
        match self {
            ItemError::ValueMissing { .. } => "value_missing",
            ItemError::ValueNull { .. } => "value_null",
            ItemError::ValueNotNumeric { .. } => "value_not_numeric",
            ItemError::ValueUnmapped { .. } => "value_unmapped",
            ItemError::ValueAmbiguous { .. } => "value_ambiguous",
            ItemError::CounterNegative { .. } => "counter_negative",
            ItemError::LabelMissing { .. } => "label_missing",
            ItemError::LabelNotScalar { .. } => "label_not_scalar",
            ItemError::LabelAmbiguous { .. } => "label_ambiguous",
            ItemError::TimestampMissing { .. } => "timestamp_missing",
            ItemError::TimestampInvalid { .. } => "timestamp_invalid",
            ItemError::DuplicateSeries { .. } => "duplicate_series",
        }
    }
}

/// A block with `on_duplicate: error` met a duplicate: the poll fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("metric {metric}: {error}")]
pub struct ExtractError {
    pub metric: String,
    pub error: ItemError,
}

impl ExtractError {
    pub fn kind(&self) -> &'static str {
        self.error.kind()
    }
}

/// One series of one family: label values in the order of the family's label names.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the epoch, when the block declares `timestamp`.
    pub timestamp_ms: Option<i64>,
}

/// The series one output of a block produced.
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

/// Per output: how many items `each` matched and how many series came out.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReport {
    pub metric: String,
    pub items: usize,
    pub series: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Extraction {
    /// One entry per output, in config order.
    pub families: Vec<FamilySamples>,
    pub problems: Vec<Problem>,
    pub reports: Vec<MetricReport>,
    /// Series dropped by the source's `max_series`.
    pub dropped: usize,
}

impl Extraction {
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// Keeps at most `max` series: metrics in config order, each sorted by labels, so the same
    /// document always keeps the same series. Records how many were dropped.
    pub fn truncate(&mut self, max: usize) {
        let mut left = max;
        for f in &mut self.families {
            if f.series.len() > left {
                self.dropped += f.series.len() - left;
                f.series.truncate(left);
            }
            left -= f.series.len();
        }
    }
}

type Problems = BTreeMap<(usize, &'static str), (u64, String)>;

fn note(problems: &mut Problems, output: usize, err: &ItemError, item: &dyn Fn() -> String) {
    let e = problems
        .entry((output, err.kind()))
        .or_insert((0, String::new()));
    if e.0 == 0 {
        e.1 = format!("{}: {err}", item());
    }
    e.0 += 1;
}

/// Runs every metric block over `doc`.
pub fn extract(doc: &Value, blocks: &[MetricSpec]) -> Result<Extraction, ExtractError> {
    let mut out = Extraction::default();
    for block in blocks {
        let mut run = BlockRun::new(block);
        block
            .each
            .for_each(doc, &mut |item, caps| run.item(Item::Node(item), doc, caps));
        run.finish(&mut out)?;
    }
    Ok(out)
}

/// Why a document gave no extraction.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON is UTF-8 (RFC 8259); the whole body is checked once, before parsing.
    #[error("invalid UTF-8 at line {line} column {column}")]
    NotUtf8 { line: usize, column: usize },
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

/// Parses `body` and runs every metric block over it, building only what `plan` (made from
/// the same `blocks`) reads. Gives what [`extract`] gives on the fully parsed document.
pub fn extract_bytes(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
) -> Result<Extraction, ReadError> {
    let body = std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        ReadError::NotUtf8 {
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column: before.len() - line_start + 1,
        }
    })?;
    if !plan.streamed {
        let doc = stream::parse_pruned(body, plan)?;
        return Ok(extract(&doc, blocks)?);
    }
    let mut runs: Vec<BlockRun> = blocks.iter().map(BlockRun::new).collect();
    // Streamed plans read nothing from the root or a captured node (see `plan`).
    let none = Value::Null;
    stream::parse_streamed(body, plan, &mut |b, item, path| {
        let caps: Vec<Bound<'_>> = plan.capture_depths[b]
            .iter()
            .map(|d| Bound {
                key: path.key(*d),
                node: &none,
            })
            .collect();
        runs[b].item(item, &none, &caps);
    })?;
    let mut out = Extraction::default();
    for run in runs {
        run.finish(&mut out)?;
    }
    Ok(out)
}

/// One block's extraction in progress: items go in one at a time, in document order.
struct BlockRun<'b> {
    block: &'b MetricSpec,
    problems: Problems,
    /// Per output.
    series: Vec<Vec<Series>>,
    items: usize,
    labels: LabelsBuilder,
}

impl<'b> BlockRun<'b> {
    fn new(block: &'b MetricSpec) -> Self {
        Self {
            block,
            problems: BTreeMap::new(),
            series: vec![Vec::new(); block.outputs.len()],
            items: 0,
            labels: LabelsBuilder::default(),
        }
    }

    fn item(&mut self, item: Item<'_>, doc: &Value, caps: &[Bound<'_>]) {
        let block = self.block;
        let n = block.outputs.len();
        let problems = &mut self.problems;
        let series = &mut self.series;
        self.items += 1;
        let ordinal = self.items;
        let describe = || describe_item(&block.each.captures, caps, ordinal);
        let prepared = labels_of(block, doc, item, caps, &mut self.labels).and_then(|labels| {
            let ts = match &block.timestamp {
                Some(t) => Some(timestamp_of(t, item, doc, caps)?),
                None => None,
            };
            Ok((labels, ts))
        });
        let (mut labels, ts) = match prepared {
            Ok(p) => p,
            Err(e) => {
                (0..n).for_each(|k| note(problems, k, &e, &describe));
                return;
            }
        };
        for (k, output) in block.outputs.iter().enumerate() {
            match &output.kind {
                OutputKind::StateSet { states, .. } => match state_of(output, item, doc, caps) {
                    Ok(current) => {
                        if !states.contains(&current) {
                            let e = ItemError::ValueUnmapped {
                                path: value_path(&output.value),
                                found: format!("{current:?}"),
                            };
                            note(problems, k, &e, &describe);
                        }
                        for s in states {
                            series[k].push(Series {
                                labels: labels.with(s),
                                value: if *s == current { 1.0 } else { 0.0 },
                                timestamp_ms: ts,
                            });
                        }
                    }
                    Err(e) => note(problems, k, &e, &describe),
                },
                kind => match value_of(output, item, doc, caps) {
                    Ok(v) if *kind == OutputKind::Counter && v < 0.0 => {
                        note(
                            problems,
                            k,
                            &ItemError::CounterNegative { value: v },
                            &describe,
                        );
                    }
                    Ok(value) => series[k].push(Series {
                        // The last output takes the labels instead of a copy.
                        labels: if k + 1 == n {
                            std::mem::take(&mut labels)
                        } else {
                            labels.clone()
                        },
                        value,
                        timestamp_ms: ts,
                    }),
                    Err(e) => note(problems, k, &e, &describe),
                },
            }
        }
    }

    fn finish(self, out: &mut Extraction) -> Result<(), ExtractError> {
        let BlockRun {
            block,
            mut problems,
            series,
            items,
            labels: _,
        } = self;
        for (k, (output, mut s)) in block.outputs.iter().zip(series).enumerate() {
            let label_names = output_label_names(block, output);
            let dups = resolve_duplicates(&mut s, block.on_duplicate);
            if let Some((labels, count)) = dups.first_example {
                let err = ItemError::DuplicateSeries {
                    labels: render_labels(&label_names, &labels),
                    count,
                    policy: match block.on_duplicate {
                        OnDuplicate::First => "the first one is kept",
                        OnDuplicate::Last => "the last one is kept",
                        OnDuplicate::Sum => "their values are summed",
                        OnDuplicate::Error => "on_duplicate: error fails the poll",
                    },
                };
                if block.on_duplicate == OnDuplicate::Error {
                    return Err(ExtractError {
                        metric: output.name.clone(),
                        error: err,
                    });
                }
                problems.insert((k, err.kind()), (dups.dropped, err.to_string()));
            }
            out.reports.push(MetricReport {
                metric: output.name.clone(),
                items,
                series: s.len(),
            });
            out.families.push(FamilySamples {
                family: output.family.clone(),
                label_names,
                series: s,
            });
        }
        out.problems.extend(
            problems
                .into_iter()
                .map(|((k, kind), (count, example))| Problem {
                    metric: block.outputs[k].name.clone(),
                    kind,
                    count,
                    example,
                }),
        );
        Ok(())
    }
}

fn output_label_names(block: &MetricSpec, output: &Output) -> Arc<[String]> {
    match &output.kind {
        OutputKind::StateSet { label, .. } => {
            let mut names = block.label_names.to_vec();
            names.push(label.clone());
            names.into()
        }
        _ => block.label_names.clone(),
    }
}

struct Duplicates {
    dropped: u64,
    first_example: Option<(Labels, usize)>,
}

/// Sorts by labels and merges equal label sets by `policy` (stable sort: document order is
/// kept among equals, so "first" and "last" mean what they say).
fn resolve_duplicates(series: &mut Vec<Series>, policy: OnDuplicate) -> Duplicates {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let before = series.len();
    let mut first_example: Option<(Labels, usize)> = None;
    // `next` is dropped when this returns true; `prev` stays.
    series.dedup_by(|next, prev| {
        if next.labels != prev.labels {
            return false;
        }
        match &mut first_example {
            Some((l, c)) if *l == next.labels => *c += 1,
            None => first_example = Some((next.labels.clone(), 2)),
            _ => {}
        }
        match policy {
            OnDuplicate::First | OnDuplicate::Error => {}
            OnDuplicate::Last => std::mem::swap(prev, next),
            OnDuplicate::Sum => prev.value += next.value,
        }
        true
    });
    Duplicates {
        dropped: (before - series.len()) as u64,
        first_example,
    }
}

fn describe_item(names: &[String], caps: &[Bound<'_>], ordinal: usize) -> String {
    if names.is_empty() {
        return format!("item #{ordinal}");
    }
    let caps: Vec<String> = names
        .iter()
        .zip(caps)
        .map(|(n, b)| format!("{n}={:?}", b.key))
        .collect();
    format!("item #{ordinal} ({})", caps.join(", "))
}

fn render_labels(names: &[String], values: &Labels) -> String {
    names
        .iter()
        .zip(values.iter())
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels_of(
    block: &MetricSpec,
    root: &Value,
    item: Item<'_>,
    caps: &[Bound<'_>],
    b: &mut LabelsBuilder,
) -> Result<Labels, ItemError> {
    for (t, name) in block.labels.iter().zip(block.label_names.iter()) {
        if let Err(e) = render(t, name, root, item, caps, b.value()) {
            b.clear();
            return Err(e);
        }
        b.commit();
    }
    Ok(b.finish())
}

fn value_path(v: &ValueSpec) -> String {
    match v {
        ValueSpec::Constant(c) => c.to_string(),
        ValueSpec::Lookup(l) => l.display().to_string(),
        ValueSpec::Aggregate(f, l) => format!("{f:?}({})", l.display()).to_lowercase(),
    }
}

fn value_of(
    output: &Output,
    item: Item<'_>,
    root: &Value,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let conv = &output.conversion;
    let raw = match &output.value {
        ValueSpec::Constant(v) => Ok(*v),
        ValueSpec::Lookup(l) => match l.select(item, root, caps) {
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

/// The current state of a state-set output, as text.
fn state_of(
    output: &Output,
    item: Item<'_>,
    root: &Value,
    caps: &[Bound<'_>],
) -> Result<String, ItemError> {
    let ValueSpec::Lookup(l) = &output.value else {
        return Err(ItemError::ValueMissing {
            path: value_path(&output.value),
        });
    };
    match l.select(item, root, caps) {
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

fn aggregate(
    func: Aggregate,
    l: &Lookup,
    item: Item<'_>,
    root: &Value,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let path = || format!("{}({})", format!("{func:?}").to_lowercase(), l.display());
    if func == Aggregate::Length {
        return match l.select(item, root, caps) {
            Selected::One(Value::Array(a)) => Ok(a.len() as f64),
            Selected::One(Value::Object(o)) => Ok(o.len() as f64),
            Selected::One(Value::String(s)) => Ok(s.chars().count() as f64),
            Selected::One(Value::Null) => Err(ItemError::ValueNull { path: path() }),
            Selected::One(other) => Err(ItemError::ValueNotNumeric {
                path: path(),
                found: describe_value(other),
            }),
            Selected::None => Err(ItemError::ValueMissing { path: path() }),
            Selected::Many(count) => Err(ItemError::ValueAmbiguous {
                path: path(),
                count,
            }),
        };
    }
    let mut nodes = Vec::new();
    l.select_all(item, root, caps, &mut nodes);
    if func == Aggregate::Count {
        return Ok(nodes.len() as f64);
    }
    // Nodes that are not numbers are left out of sum/min/max/avg.
    let nums: Vec<f64> = nodes.iter().filter_map(|v| to_number(v).ok()).collect();
    if nums.is_empty() {
        return match func {
            Aggregate::Sum => Ok(0.0),
            _ => Err(ItemError::ValueMissing { path: path() }),
        };
    }
    Ok(match func {
        Aggregate::Sum => nums.iter().sum(),
        Aggregate::Min => nums.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregate::Max => nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Avg => nums.iter().sum::<f64>() / nums.len() as f64,
        Aggregate::Count | Aggregate::Length => unreachable!("handled above"),
    })
}

/// Applies the mapping (if any), then the standard conversion.
fn convert(v: &Value, conv: &Conversion, path: &str) -> Result<f64, ItemError> {
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

fn timestamp_of(
    t: &TimestampSpec,
    item: Item<'_>,
    root: &Value,
    caps: &[Bound<'_>],
) -> Result<i64, ItemError> {
    let path = || t.lookup.display().to_string();
    let v = match t.lookup.select(item, root, caps) {
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

fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => truncate_quoted(s),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

/// JSON numbers, numeric strings (incl. `NaN`, `+Inf`), booleans and yes/no words are values.
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
    item: Item<'_>,
    caps: &[Bound<'_>],
    out: &mut String,
) -> Result<(), ItemError> {
    for part in &t.parts {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Capture(i) => out.push_str(&caps[*i].key),
            Part::Lookup(l) => match l.select(item, root, caps) {
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
                            path: l.display().into(),
                            found: describe_value(other),
                        });
                    }
                },
                Selected::None => {
                    return Err(ItemError::LabelMissing {
                        label: label.into(),
                        path: l.display().into(),
                    });
                }
                Selected::Many(count) => {
                    return Err(ItemError::LabelAmbiguous {
                        label: label.into(),
                        path: l.display().into(),
                        count,
                    });
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
