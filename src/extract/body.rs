//! Extraction from a response body (what polls use): the body is read along the source's
//! [`ReadPlan`] by [`crate::read`], and the items it hands over go to the blocks as they come
//! (inline, on a second thread through [`super::pipeline`], or found by a scan and read on
//! both through [`super::parallel`]); anything the fast readers cannot settle falls back to a
//! tree. Every way gives what [`super::extract`] gives on the parsed document.

use std::borrow::Cow;

use serde_json::Value;

use super::block::BlockRun;
use super::error::{ExtractError, ReadError, line_column, value_error};
use super::plan::ReadPlan;
use super::samples::Extraction;
use super::spec::{Bound, Item, MetricSpec};
use super::{collect, fold, parallel, pipeline, tree_runs};
use crate::read::{Collector, ItemPath, Items, Key, Stop, Streaming, slots, tree};

/// How many threads reading a body may use. Every choice gives the same extraction (the
/// tests compare them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// A second one where the body is large enough for it to pay (what polls use).
    Auto,
    /// This one only.
    One,
    /// Two: items found by a scan are read on both (see [`ReadPlan::is_scanned`]), or
    /// extracted on the second while the first parses (other slotted plans).
    Two,
    /// [`Threads::Two`], with items handed over this many at a time: small batches let
    /// tests cross batch boundaries on small documents.
    #[doc(hidden)]
    Batched(usize),
}

/// The batch size to read with, `None` for one thread.
pub(super) fn batch_for(body: &[u8], threads: Threads) -> Option<usize> {
    // Below this, a second thread costs more than it saves.
    const PIPELINE_MIN_BYTES: usize = 256 * 1024;
    // Asked once: the answer reads cgroup files, which a poll should not do each time.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    match threads {
        Threads::Auto => {
            let cores =
                *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            (body.len() >= PIPELINE_MIN_BYTES && cores > 1).then_some(parallel::BATCH)
        }
        Threads::One => None,
        Threads::Two => Some(parallel::BATCH),
        Threads::Batched(n) => Some(n.max(1)),
    }
}

/// Reads `body` only by scanning for items, on two threads, `batch` items at a time: `None`
/// where [`super::extract_bytes`] would fall back to its other readers (the plan is not
/// scannable, the body is not valid JSON, a member on the way to items is repeated, a value
/// cannot be built). Lets tests check that valid documents do take this way.
#[doc(hidden)]
pub fn extract_scanned(
    body: &str,
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    batch: usize,
) -> Option<Result<Extraction, ExtractError>> {
    if !plan.scanned {
        return None;
    }
    let (tree, folds) = root_lookups(body, plan).ok()?;
    let root = DocRoot {
        tree: &tree,
        folds: folds.as_deref(),
        parent: &[],
    };
    let runs = parallel::run(body, blocks, plan, root, batch.max(1)).ok()?;
    Some(finish(runs))
}

/// The document root as lookups from `$` see it: the tree of what they read and, where the
/// plan folds aggregates, their results by fold id (see [`fold`]).
#[derive(Clone, Copy)]
pub(crate) struct DocRoot<'a> {
    pub(crate) tree: &'a Value,
    pub(crate) folds: Option<&'a [fold::Fold]>,
    /// The labels of the list item whose request gave this document (`fan_out`), for
    /// [`super::Part::Parent`]; empty otherwise.
    pub(crate) parent: &'a [String],
}

/// What lookups from the root read, built by a first pass: the items may come before it.
/// Aggregates the plan folds are folded in the same pass; a member repeated on their way
/// makes it read again without folds (only a tree tells which occurrence counts).
pub(super) fn root_lookups(
    body: &str,
    plan: &ReadPlan,
) -> Result<(Value, Option<Vec<fold::Fold>>), serde_json::Error> {
    let Some(need) = &plan.first else {
        return Ok((Value::Null, None));
    };
    if plan.folds.is_empty() {
        return Ok((tree::parse(body, need)?, None));
    }
    let folding = fold::Folding::new(plan.folds.len());
    match tree::parse_folding(body, need, &folding) {
        Ok(tree) => Ok((tree, Some(folding.into_folds()))),
        Err(_) if folding.repeated.get() => {
            let plain = plan.first_plain.as_ref().unwrap_or(need);
            Ok((tree::parse(body, plain)?, None))
        }
        Err(e) => Err(e),
    }
}

pub(super) fn finish(runs: Vec<BlockRun<'_>>) -> Result<Extraction, ExtractError> {
    let mut out = Extraction::default();
    for run in runs {
        run.finish(&mut out)?;
    }
    Ok(out)
}

/// The body as text. The check is SIMD (`simdutf8`: a 15.8 MB body in under 1 ms, against
/// 2 to 3 ms for the standard library's); only a body that fails it is checked again, to say
/// where.
pub(super) fn utf8(body: &[u8]) -> Result<&str, ReadError> {
    simdutf8::basic::from_utf8(body).map_err(|_| {
        let valid = std::str::from_utf8(body).map_or_else(|e| e.valid_up_to(), str::len);
        let (line, column) = line_column(&body[..valid]);
        ReadError::NotUtf8 { line, column }
    })
}

/// `batch`: on two threads, with batches of that size; `None`: on this one.
pub(super) fn read_body(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    batch: Option<usize>,
) -> Result<Extraction, ReadError> {
    Ok(finish(read_runs(body, blocks, plan, batch, &[])?)?)
}

/// [`read_body`], each block's run left unfinished (for a page: see [`super::Pages`]).
pub(super) fn read_runs<'b>(
    body: &[u8],
    blocks: &'b [MetricSpec],
    plan: &ReadPlan,
    batch: Option<usize>,
    parent: &[String],
) -> Result<Vec<BlockRun<'b>>, ReadError> {
    let pipelined = batch.is_some();
    let body = utf8(body)?;
    if !plan.streamed {
        let Some(collector) = Collector::new(body, plan.collect_names()) else {
            let doc = tree::parse(body, &plan.root)?;
            return Ok(tree_runs(&doc, blocks, parent));
        };
        let doc = tree::parse_collecting(body, &plan.root, &collector)?;
        if collector.is_spoiled() {
            return Ok(tree_runs(&doc, blocks, parent));
        }
        return collect::runs(body, &doc, blocks, plan, &collector.into_found(), parent);
    }
    let (tree, folds) = root_lookups(body, plan)?;
    let root = DocRoot {
        tree: &tree,
        folds: folds.as_deref(),
        parent,
    };
    let scanned = batch
        .filter(|_| plan.scanned)
        .map(|batch| parallel::run(body, blocks, plan, root, batch));
    let read = match scanned {
        Some(Ok(runs)) => Some(runs),
        Some(Err(crate::read::scan::Bail::Repeated)) => None,
        // Not read by the scan (or it gave up: the readers below say why, and where).
        _ if pipelined && plan.is_slotted() => pipeline::run(body, blocks, plan, root)?,
        _ => {
            let mut inline = Inline {
                runs: blocks.iter().map(BlockRun::new).collect(),
                plan,
                root,
                body,
                values: Vec::new(),
                failed: None,
            };
            let parsed = crate::read::stream::parse(body, &plan.root, &mut inline);
            if let Some(e) = inline.failed {
                return Err(e);
            }
            (parsed? == Streaming::Done).then_some(inline.runs)
        }
    };
    let Some(runs) = read else {
        // A repeated member on the way to items: only a tree says which items count.
        let doc: Value = serde_json::from_str(body)?;
        return Ok(tree_runs(&doc, blocks, parent));
    };
    Ok(runs)
}

// Streamed plans read nothing from captured nodes (see `plan`): those are null.

pub(super) static NONE: Value = Value::Null;

/// Calls `f` with the captures of block `b`'s item, from the keys on its path. Up to four
/// are kept on the stack: every item of a large body has them, and an allocation each showed
/// in profiles.
pub(super) fn with_captures<'k>(
    plan: &ReadPlan,
    b: usize,
    key: impl Fn(usize) -> Cow<'k, str>,
    f: impl FnOnce(&[Bound<'k>]),
) {
    const ON_STACK: usize = 4;
    let depths = &plan.capture_depths[b];
    let bound = |d: &usize| Bound {
        key: key(*d),
        node: &NONE,
    };
    if depths.len() <= ON_STACK {
        let mut caps: [Bound<'k>; ON_STACK] = std::array::from_fn(|_| Bound {
            key: Cow::Borrowed(""),
            node: &NONE,
        });
        for (c, d) in caps.iter_mut().zip(depths) {
            *c = bound(d);
        }
        f(&caps[..depths.len()]);
    } else {
        f(&depths.iter().map(bound).collect::<Vec<_>>());
    }
}

/// Hands an item of slotted node `id`, its slots built, to each of the node's blocks.
pub(super) fn slotted_item(
    runs: &mut [BlockRun<'_>],
    plan: &ReadPlan,
    root: DocRoot<'_>,
    id: usize,
    values: &[Option<Value>],
    path: &[Key<'_>],
) {
    let slotted = &plan.slotted[id];
    for (b, bindings) in slotted.items.iter().zip(&slotted.bindings) {
        let run = &mut runs[*b];
        with_captures(
            plan,
            *b,
            |d| path[d].text(),
            |caps| run.item(Item::Slots { values, bindings }, root, caps),
        );
    }
}

/// Extracts each item as the parser hands it over.
pub(super) struct Inline<'b, 'p, 'de> {
    runs: Vec<BlockRun<'b>>,
    plan: &'p ReadPlan,
    /// What lookups from the root read (see `ReadPlan::first`).
    root: DocRoot<'p>,
    body: &'de str,
    /// The current item's slots, built.
    values: Vec<Option<Value>>,
    failed: Option<ReadError>,
}

impl<'de> Items<'de> for Inline<'_, '_, 'de> {
    fn node(&mut self, b: usize, item: &Value, path: &ItemPath<'_, '_, '_>) {
        if !self.plan.lets_through(b, item) {
            return;
        }
        let (run, root) = (&mut self.runs[b], self.root);
        with_captures(
            self.plan,
            b,
            |d| path.key(d),
            |caps| run.item(Item::Node(item), root, caps),
        );
    }

    fn slotted(
        &mut self,
        id: usize,
        slots: &mut Vec<Option<&'de str>>,
        path: &[Key<'de>],
    ) -> Result<(), Stop> {
        if let Err((e, raw)) = slots::build_slots(slots, &mut self.values, true) {
            self.failed = Some(value_error(self.body, raw, e));
            return Err(Stop);
        }
        slotted_item(&mut self.runs, self.plan, self.root, id, &self.values, path);
        Ok(())
    }
}
