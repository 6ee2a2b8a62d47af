//! What extraction gives: series per metric family, the problems met, a report per metric.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::ItemError;
use super::labels::Labels;

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
    /// Type and help, for a family whose name came from the data (the config's families
    /// carry their own).
    pub dynamic: Option<Arc<super::spec::DynamicFamily>>,
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

/// Series merged into others by a chosen `on_duplicate` policy (no extraction error).
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub metric: String,
    pub policy: &'static str,
    /// Series merged away (items beyond the first of each label set).
    pub count: u64,
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
    /// Duplicates merged by a chosen `on_duplicate` policy.
    pub merged: Vec<Merged>,
    pub reports: Vec<MetricReport>,
    /// Series dropped by the source's `max_series`.
    pub dropped: usize,
    /// Per family: samples whose data timestamp was too old for a Prometheus scrape when
    /// polled (filled in by the poll: extraction knows no clock).
    pub too_old: Vec<(String, u64)>,
}

impl Extraction {
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// Per family, the samples with a data timestamp before `cutoff_ms`.
    pub fn older_than(&self, cutoff_ms: i64) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for f in &self.families {
            let n = f
                .series
                .iter()
                .filter(|s| s.timestamp_ms.is_some_and(|t| t < cutoff_ms))
                .count() as u64;
            if n == 0 {
                continue;
            }
            match out.iter_mut().find(|(name, _)| *name == f.family) {
                Some((_, c)) => *c += n,
                None => out.push((f.family.clone(), n)),
            }
        }
        out
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

pub(super) type Problems = BTreeMap<(usize, &'static str), (u64, String)>;

#[inline]
pub(super) fn note(
    problems: &mut Problems,
    output: usize,
    err: &ItemError,
    item: &dyn Fn() -> String,
) {
    let e = problems
        .entry((output, err.kind()))
        .or_insert((0, String::new()));
    if e.0 == 0 {
        e.1 = format!("{}: {err}", item());
    }
    e.0 += 1;
}
