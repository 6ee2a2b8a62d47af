//! `extract`: a pure function from a JSON document and compiled metric specs to samples.
//!
//! Sits between [`crate::read`] and [`crate::store`]. No I/O, no clock, no globals: the same
//! document and specs always give the same samples, sorted by label values. An item that cannot
//! produce a sample (missing value, non-numeric text, a label that is an object...) is skipped
//! and counted by kind; it never fails the other items or the source. The one exception is a
//! block that asks for it (`on_duplicate: error`).
//!
//! Two entry points give the same samples: [`extract`] walks a parsed document, and
//! [`extract_bytes`] (what polls use) reads a response body through [`crate::read`] along the
//! source's [`ReadPlan`], without building the document.
//!
//! The meaning, a file each: `spec` (compiled blocks), `selector` (JSONPath), `plan` (what the
//! blocks read, as a read plan), `block` (one block over its items), `label_templates` and
//! `labels` (label values, and their storage), `values` (values, mappings, conversions,
//! timestamps), `filters` (`| lower`, `| time`...), `aggregate`, `duplicates` (merges and
//! `fill`), `samples` (what comes out), `error`. How a body
//! reaches the blocks: `body` (inline), `pipeline` (parse on one thread, extract on
//! another), `parallel` (items found by a scan, read on both), `fold` (aggregates from the
//! root, folded while the first pass parses), `collect` (items of a descendant search, built
//! one at a time).

mod aggregate;
mod block;
mod body;
mod collect;
mod duplicates;
mod error;
pub mod filters;
mod fold;
mod label_templates;
pub mod labels;
mod parallel;
mod pipeline;
pub mod plan;
mod samples;
pub mod selector;
pub mod spec;
mod values;

use serde_json::Value;

use block::BlockRun;
use body::DocRoot;

pub use body::Threads;
pub use error::{ExtractError, ItemError, ReadError};
pub use samples::{Extraction, FamilySamples, Merged, MetricReport, Problem, Series};
pub use values::{parse_number, to_number};

pub use label_templates::render_node;
pub use labels::{Labels, LabelsBuilder};
pub use plan::ReadPlan;
pub use selector::{Selected, Selector};
pub use spec::{
    Aggregate, Binding, Bound, Conversion, DynamicFamily, DynamicName, Each, GroupBy, Item, Lookup,
    MetricKind, MetricSpec, OnDuplicate, Output, OutputKind, Part, Scope, Template,
    TimestampFormat, TimestampSpec, ValueSpec, is_metric_name,
};

/// Runs every metric block over `doc`.
pub fn extract(doc: &Value, blocks: &[MetricSpec]) -> Result<Extraction, ExtractError> {
    body::finish(tree_runs(doc, blocks, &[]))
}

/// Every block over `doc`, not finished.
fn tree_runs<'b>(doc: &Value, blocks: &'b [MetricSpec], parent: &[String]) -> Vec<BlockRun<'b>> {
    let root = DocRoot {
        tree: doc,
        folds: None,
        parent,
    };
    blocks
        .iter()
        .map(|block| {
            let mut run = BlockRun::new(block);
            block.each.for_each(doc, &mut |item, caps| {
                run.item(Item::Node(item), root, caps)
            });
            run
        })
        .collect()
}

/// Parses `body` and runs every metric block over it, building only what `plan` (made from
/// the same `blocks`) reads: what polls use. Gives what [`extract`] gives on the fully parsed
/// document, whatever `threads` says.
pub fn extract_bytes(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    threads: Threads,
) -> Result<Extraction, ReadError> {
    body::read_body(body, blocks, plan, body::batch_for(body, threads))
}

/// One page of a paginated response, read along the plan but not finished: the pages of a
/// poll are joined ([`Pages::join`]) and finished once, so that duplicates across pages
/// follow `on_duplicate` and aggregates see every page. A block without `each` (the
/// document is its item) reads the first page only.
pub struct Pages {
    runs: Vec<block::RunState>,
}

impl Pages {
    /// Reads one page's body (`plan` made from `blocks`); `parent`: the labels of the list
    /// item whose request gave it (`fan_out`), else empty.
    pub fn read(
        body: &[u8],
        blocks: &[MetricSpec],
        plan: &ReadPlan,
        threads: Threads,
        parent: &[String],
    ) -> Result<Self, ReadError> {
        let runs = body::read_runs(body, blocks, plan, body::batch_for(body, threads), parent)?;
        Ok(Self {
            runs: runs.into_iter().map(BlockRun::into_state).collect(),
        })
    }

    /// Items on the page, as the block with `each` that matched the most counts them: 0 is
    /// an empty page.
    pub fn items(&self, blocks: &[MetricSpec]) -> usize {
        self.runs
            .iter()
            .zip(blocks)
            .filter(|(_, b)| !b.each.whole)
            .map(|(r, _)| r.items)
            .max()
            .unwrap_or(0)
    }

    /// Series held so far (before duplicates are merged).
    pub fn series(&self) -> usize {
        self.runs.iter().map(block::RunState::series).sum()
    }

    /// Adds the next page (a block without `each` keeps the first page's item).
    pub fn join(&mut self, next: Pages, blocks: &[MetricSpec]) {
        for ((run, later), block) in self.runs.iter_mut().zip(next.runs).zip(blocks) {
            if !block.each.whole {
                run.join(later);
            }
        }
    }

    /// Adds another document of the same poll (a fan-out item's answer): every block
    /// takes its items, including those without `each`.
    pub fn append(&mut self, next: Pages) {
        for (run, later) in self.runs.iter_mut().zip(next.runs) {
            run.join(later);
        }
    }

    /// The extraction of all pages joined.
    pub fn finish(self, blocks: &[MetricSpec]) -> Result<Extraction, ExtractError> {
        body::finish(
            self.runs
                .into_iter()
                .zip(blocks)
                .map(|(state, block)| BlockRun::from_state(block, state))
                .collect(),
        )
    }
}

/// Ways into the readers that let tests check each one alone.
#[doc(hidden)]
pub mod testing {
    pub use super::body::extract_scanned as scanned;
}

#[cfg(test)]
mod tests;
