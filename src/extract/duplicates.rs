//! Series with the same labels from one block: sorted, then merged, by `on_duplicate` or
//! `aggregate`; and `fill`'s zeros for the label values no item had.

use std::collections::{BTreeSet, HashSet};

use super::labels::Labels;
use super::samples::Series;
use super::spec::{GroupBy, MetricSpec, OnDuplicate};

pub(super) struct Duplicates {
    /// Series merged into another.
    pub(super) dropped: u64,
    pub(super) first_example: Option<(Labels, usize)>,
}

/// How series with equal labels become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Merge {
    First,
    Last,
    /// Also counts: each item's value is 1 then (see [`counts`]).
    Sum,
    Min,
    Max,
    Avg,
}

impl Merge {
    pub(super) fn of(block: &MetricSpec) -> Self {
        match block.aggregate {
            Some(GroupBy::Count | GroupBy::Sum) => Merge::Sum,
            Some(GroupBy::Min) => Merge::Min,
            Some(GroupBy::Max) => Merge::Max,
            Some(GroupBy::Avg) => Merge::Avg,
            None => match block.on_duplicate {
                OnDuplicate::First | OnDuplicate::Error => Merge::First,
                OnDuplicate::Last => Merge::Last,
                OnDuplicate::Sum | OnDuplicate::Count => Merge::Sum,
                OnDuplicate::Min => Merge::Min,
                OnDuplicate::Max => Merge::Max,
            },
        }
    }
}

/// Whether each item of the block counts one, whatever its value.
pub(super) fn counts(block: &MetricSpec) -> bool {
    block.aggregate == Some(GroupBy::Count)
        || (block.aggregate.is_none() && block.on_duplicate == OnDuplicate::Count)
}

/// Whether `series` are in strict label order: sorted, without duplicates.
pub(super) fn in_order(series: &[Series]) -> bool {
    series.is_sorted_by(|a, b| a.labels < b.labels)
}

/// Sorts by labels and merges equal label sets (stable sort: document order is kept among
/// equals, so "first" and "last" mean what they say; a merged series keeps the first one's
/// timestamp, or the last one's for `Last`).
pub(super) fn resolve_duplicates(series: &mut Vec<Series>, merge: Merge) -> Duplicates {
    // Items often come in label order (lists sorted by name): one pass then shows there is
    // nothing to sort and no duplicate, where sorting and de-duplicating take two.
    if in_order(series) {
        return Duplicates {
            dropped: 0,
            first_example: None,
        };
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let before = series.len();
    let mut first_example: Option<(Labels, usize)> = None;
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    // Items in the group `out.last()` stands for (for averages).
    let mut group = 1usize;
    for s in series.drain(..) {
        if let Some(prev) = out.last_mut()
            && prev.labels == s.labels
        {
            match &mut first_example {
                Some((l, c)) if *l == s.labels => *c += 1,
                None => first_example = Some((s.labels.clone(), 2)),
                _ => {}
            }
            group += 1;
            match merge {
                Merge::First => {}
                Merge::Last => *prev = s,
                Merge::Sum | Merge::Avg => prev.value += s.value,
                Merge::Min => prev.value = prev.value.min(s.value),
                Merge::Max => prev.value = prev.value.max(s.value),
            }
            continue;
        }
        end_group(&mut out, group, merge);
        group = 1;
        out.push(s);
    }
    end_group(&mut out, group, merge);
    *series = out;
    Duplicates {
        dropped: (before - series.len()) as u64,
        first_example,
    }
}

fn end_group(out: &mut [Series], items: usize, merge: Merge) {
    if merge == Merge::Avg
        && items > 1
        && let Some(last) = out.last_mut()
    {
        last.value /= items as f64;
    }
}

/// Adds a 0 series for every `fill` value that no item had, beside each combination of the
/// other labels that did occur (alone, when every label is filled), then sorts again.
pub(super) fn fill(series: &mut Vec<Series>, fill: &[(usize, Vec<String>)], width: usize) {
    if fill.is_empty() {
        return;
    }
    let filled: Vec<usize> = fill.iter().map(|(i, _)| *i).collect();
    let present: HashSet<Labels> = series.iter().map(|s| s.labels.clone()).collect();
    let others: BTreeSet<Vec<String>> = if filled.len() == width {
        BTreeSet::from([Vec::new()])
    } else {
        series
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !filled.contains(i))
                    .map(|(_, v)| v.to_string())
                    .collect()
            })
            .collect()
    };
    let mut added = false;
    for other in &others {
        // Every combination of the filled labels' values (an odometer over the lists).
        let mut pick = vec![0usize; fill.len()];
        loop {
            let mut rest = other.iter();
            let labels: Labels = (0..width)
                .map(|i| match filled.iter().position(|f| *f == i) {
                    Some(k) => fill[k].1[pick[k]].as_str(),
                    None => rest.next().map_or("", String::as_str),
                })
                .collect();
            if !present.contains(&labels) {
                series.push(Series {
                    labels,
                    value: 0.0,
                    timestamp_ms: None,
                });
                added = true;
            }
            let mut k = 0;
            while k < pick.len() {
                pick[k] += 1;
                if pick[k] < fill[k].1.len() {
                    break;
                }
                pick[k] = 0;
                k += 1;
            }
            if k == pick.len() {
                break;
            }
        }
    }
    if added {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
}
