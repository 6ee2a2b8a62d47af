//! What goes wrong, by layer of `extract`: an item that gives no sample ([`ItemError`], counted
//! by kind and never fatal), a block that fails the poll ([`ExtractError`]), a body that
//! cannot be read ([`ReadError`]). Each has a stable `kind()` for self-metric labels.

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
    #[error("{at}: regex {pattern:?} does not match {found}")]
    NoMatch {
        at: String,
        pattern: String,
        found: String,
    },
    #[error("{at} {path} is not a valid {format}: {found}")]
    NotATime {
        at: String,
        path: String,
        format: String,
        found: String,
    },
    #[error("{at} {path} is not a number for `{filter}`: {found}")]
    NotANumber {
        at: String,
        path: String,
        filter: &'static str,
        found: String,
    },
    #[error("metric name {name} from the data {reason}")]
    NameInvalid { name: String, reason: String },
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
            ItemError::NoMatch { .. } => "regex_no_match",
            ItemError::NameInvalid { .. } => "name_invalid",
            ItemError::NotATime { .. } => "time_invalid",
            ItemError::NotANumber { .. } => "value_not_numeric",
            ItemError::DuplicateSeries { .. } => "duplicate_series",
        }
    }

    /// A filter of a label or value that could not take its input.
    pub(super) fn filter(at: String, path: String, e: super::filters::FilterError) -> Self {
        use super::filters::FilterError;
        match e {
            FilterError::NotATime { format, found } => ItemError::NotATime {
                at,
                path,
                format,
                found,
            },
            FilterError::NotANumber { filter, found } => ItemError::NotANumber {
                at,
                path,
                filter,
                found,
            },
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

/// Why a document gave no extraction.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Valid JSON that cannot be built where a lookup reads it (a number out of range,
    /// nesting deeper than 128), found after the parse moved on.
    #[error("{message} at line {line} column {column}")]
    Value {
        message: String,
        line: usize,
        column: usize,
    },
    /// JSON is UTF-8 (RFC 8259); the whole body is checked once, before parsing.
    #[error("invalid UTF-8 at line {line} column {column}")]
    NotUtf8 { line: usize, column: usize },
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

/// A slot's raw JSON that `serde_json` could not build, placed in the whole body.
pub(crate) fn value_error(body: &str, raw: &str, e: serde_json::Error) -> ReadError {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    };
    // The raw text is a slice of the body: its offset, then serde_json's line and column
    // (from 1) within it.
    let start = raw.as_ptr() as usize - body.as_ptr() as usize;
    let within: usize = raw
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let at = start + within + e.column().saturating_sub(1);
    let (line, column) = line_column(&body.as_bytes()[..at]);
    ReadError::Value {
        message,
        line,
        column,
    }
}

/// Line and column (from 1, in bytes, as serde_json counts) of the position after `before`.
pub(crate) fn line_column(before: &[u8]) -> (usize, usize) {
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    (
        before.iter().filter(|b| **b == b'\n').count() + 1,
        before.len() - line_start + 1,
    )
}
