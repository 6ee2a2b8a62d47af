//! Aggregates in values (`count`, `sum`, `min`, `max`, `avg`, `length`) over what a lookup
//! selects.

use serde_json::Value;

use super::body::DocRoot;
use super::error::ItemError;
use super::selector::Selected;
use super::spec::{Aggregate, Bound, Item, Lookup};
use super::values::{describe_value, to_number};

pub(super) fn aggregate(
    func: Aggregate,
    l: &Lookup,
    item: Item<'_>,
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let path = || format!("{}({})", format!("{func:?}").to_lowercase(), l.display());
    if let (Some(id), Some(folds)) = (l.fold, root.folds) {
        return folds[id]
            .result(func)
            .ok_or_else(|| ItemError::ValueMissing { path: path() });
    }
    if func == Aggregate::Length {
        return match l.select(item, root.tree, caps) {
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
    l.select_all(item, root.tree, caps, &mut nodes);
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
