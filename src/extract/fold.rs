//! Aggregates over the whole document, folded while its first pass is parsed (inside
//! `extract`, between the plan and the blocks).
//!
//! `sum($.apps.*.*[*].energy[*])` over 100k pods reads three million numbers. Built as a
//! tree and then walked, they took six times the body in memory; folded as the parser meets
//! them, they take nothing. [`super::plan`] marks the nodes such a lookup reaches (only for
//! lookups from the root of a streamed plan whose path is made of names, indexes and
//! wildcards, and only where no node on the way is read whole), and the first pass adds each
//! one it parses to its folds instead of keeping it (`read::Folds`).
//!
//! Guarantee: the result is the one the tree gives, to the bit: the same nodes in the same
//! (document) order, the same conversion ([`super::to_number`]), the same arithmetic (`sum`
//! starts from -0.0 as `Iterator::sum` does). A member repeated on the way to folded nodes
//! would make the tree keep only its last occurrence; the pass then stops, and the document
//! is read again into a tree without folds.

use std::cell::{Cell, RefCell};

use serde_json::Value;

use super::spec::Aggregate;
use crate::read::Folds;

/// One aggregate's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fold {
    /// Nodes met.
    pub(crate) nodes: u64,
    /// Of those, numbers (as [`super::to_number`] reads them).
    pub(crate) numbers: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Default for Fold {
    fn default() -> Self {
        Fold {
            nodes: 0,
            numbers: 0,
            sum: -0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Fold {
    fn add(&mut self, v: &Value) {
        self.nodes += 1;
        if let Ok(x) = super::to_number(v) {
            self.numbers += 1;
            self.sum += x;
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    /// What `func` gives over the nodes met: `None` where the tree gives "nothing to
    /// aggregate" (min, max or avg of no number).
    pub(crate) fn result(&self, func: Aggregate) -> Option<f64> {
        match func {
            Aggregate::Count => Some(self.nodes as f64),
            Aggregate::Sum if self.numbers == 0 => Some(0.0),
            Aggregate::Sum => Some(self.sum),
            _ if self.numbers == 0 => None,
            Aggregate::Min => Some(self.min),
            Aggregate::Max => Some(self.max),
            Aggregate::Avg => Some(self.sum / self.numbers as f64),
            // Never folded: a length needs its one node.
            Aggregate::Length => None,
        }
    }
}

/// The folds of one pass, as the parser fills them.
#[derive(Debug)]
pub(crate) struct Folding {
    folds: RefCell<Vec<Fold>>,
    /// Set when a member on the way to folded nodes came twice (the pass stops).
    pub(crate) repeated: Cell<bool>,
}

impl Folding {
    pub(crate) fn new(count: usize) -> Self {
        Folding {
            folds: RefCell::new(vec![Fold::default(); count]),
            repeated: Cell::new(false),
        }
    }

    pub(crate) fn into_folds(self) -> Vec<Fold> {
        self.folds.into_inner()
    }
}

impl Folds for Folding {
    /// Adds `v`, a node that `ids` fold, to each of them.
    fn add(&self, ids: &[usize], v: &Value) {
        let mut folds = self.folds.borrow_mut();
        for id in ids {
            folds[*id].add(v);
        }
    }

    fn repeated(&self) {
        self.repeated.set(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_gives_what_the_tree_computes() {
        let nodes: Vec<Value> =
            serde_json::from_str(r#"[1, "2.5", true, null, [3], {"a": 4}, "x", -0.5]"#).unwrap();
        let mut f = Fold::default();
        nodes.iter().for_each(|v| f.add(v));
        let nums: Vec<f64> = nodes
            .iter()
            .filter_map(|v| super::super::to_number(v).ok())
            .collect();
        assert_eq!(f.result(Aggregate::Count), Some(8.0));
        assert_eq!(
            f.result(Aggregate::Sum).unwrap().to_bits(),
            nums.iter().sum::<f64>().to_bits()
        );
        assert_eq!(f.result(Aggregate::Min), Some(-0.5));
        assert_eq!(f.result(Aggregate::Max), Some(2.5));
        assert_eq!(
            f.result(Aggregate::Avg),
            Some(nums.iter().sum::<f64>() / 4.0)
        );
        let none = Fold::default();
        assert_eq!(
            none.result(Aggregate::Sum).map(f64::to_bits),
            Some(0.0f64.to_bits())
        );
        assert_eq!(none.result(Aggregate::Max), None);
        assert_eq!(none.result(Aggregate::Count), Some(0.0));
    }
}
