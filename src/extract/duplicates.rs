//! Series with the same labels from one block: sorted, then merged by `on_duplicate`.

use super::labels::Labels;
use super::samples::Series;
use super::spec::OnDuplicate;

pub(super) struct Duplicates {
    pub(super) dropped: u64,
    pub(super) first_example: Option<(Labels, usize)>,
}

/// Whether `series` are in strict label order: sorted, without duplicates.
pub(super) fn in_order(series: &[Series]) -> bool {
    series.is_sorted_by(|a, b| a.labels < b.labels)
}

/// Sorts by labels and merges equal label sets by `policy` (stable sort: document order is
/// kept among equals, so "first" and "last" mean what they say).
pub(super) fn resolve_duplicates(series: &mut Vec<Series>, policy: OnDuplicate) -> Duplicates {
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
