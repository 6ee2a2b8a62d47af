//! `extract`: a pure function from a JSON document and compiled metric specs to samples.
//!
//! Sits between [`crate::fetch`] and [`crate::store`]. No I/O, no clock, no globals: the same
//! document and specs always give the same samples, sorted by label values. An item that cannot
//! produce a sample (missing value, non-numeric text, a label that is an object...) is skipped
//! and counted by kind; it never fails the other items or the source. The one exception is a
//! block that asks for it (`on_duplicate: error`).
//!
//! Two entry points give the same samples: [`extract`] walks a parsed document, and
//! [`extract_bytes`] (what polls use) reads a response body along the source's [`ReadPlan`]
//! without building the document: `plan` says what any lookup can reach, `stream` reads it
//! (items into slots, or as small trees), `labels` stores each series' label values in one
//! allocation. Large bodies are extracted on a second thread while the first parses.

mod collect;
mod fold;
pub mod labels;
mod parallel;
pub mod plan;
pub mod selector;
pub mod spec;

use crate::read::{Collector, ItemPath, Items, Key, Stop, Streaming, slots, tree};
use std::borrow::Cow;
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
    let root = DocRoot {
        tree: doc,
        folds: None,
    };
    for block in blocks {
        let mut run = BlockRun::new(block);
        block.each.for_each(doc, &mut |item, caps| {
            run.item(Item::Node(item), root, caps)
        });
        run.finish(&mut out)?;
    }
    Ok(out)
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

/// Parses `body` and runs every metric block over it, building only what `plan` (made from
/// the same `blocks`) reads. Gives what [`extract`] gives on the fully parsed document.
pub fn extract_bytes(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
) -> Result<Extraction, ReadError> {
    // Below this, a second thread costs more than it saves.
    const PIPELINE_MIN_BYTES: usize = 256 * 1024;
    // Asked once: the answer reads cgroup files, which a poll should not do each time.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pipelined = body.len() >= PIPELINE_MIN_BYTES && cores > 1;
    extract_bytes_in(body, blocks, plan, pipelined)
}

/// [`extract_bytes`], choosing whether a second thread helps: items found by a scan are read
/// on both (see [`ReadPlan::is_scanned`]), or extracted on the second while the first parses
/// (other slotted plans). Same results; tests compare all.
pub fn extract_bytes_in(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    pipelined: bool,
) -> Result<Extraction, ReadError> {
    read_body(body, blocks, plan, pipelined.then_some(parallel::BATCH))
}

/// [`extract_bytes_in`] on two threads, with items handed over `batch` at a time. Small
/// batches let tests cross batch boundaries on small documents.
#[doc(hidden)]
pub fn extract_bytes_batched(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    batch: usize,
) -> Result<Extraction, ReadError> {
    read_body(body, blocks, plan, Some(batch.max(1)))
}

/// Reads `body` only by scanning for items, on two threads, `batch` items at a time: `None`
/// where [`extract_bytes_in`] would fall back to its other readers (the plan is not
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
}

/// What lookups from the root read, built by a first pass: the items may come before it.
/// Aggregates the plan folds are folded in the same pass; a member repeated on their way
/// makes it read again without folds (only a tree tells which occurrence counts).
fn root_lookups(
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

fn finish(runs: Vec<BlockRun<'_>>) -> Result<Extraction, ExtractError> {
    let mut out = Extraction::default();
    for run in runs {
        run.finish(&mut out)?;
    }
    Ok(out)
}

/// The body as text. The check is SIMD (`simdutf8`: a 15.8 MB body in under 1 ms, against
/// 2 to 3 ms for the standard library's); only a body that fails it is checked again, to say
/// where.
fn utf8(body: &[u8]) -> Result<&str, ReadError> {
    simdutf8::basic::from_utf8(body).map_err(|_| {
        let valid = std::str::from_utf8(body).map_or_else(|e| e.valid_up_to(), str::len);
        let (line, column) = line_column(&body[..valid]);
        ReadError::NotUtf8 { line, column }
    })
}

/// `batch`: on two threads, with batches of that size; `None`: on this one.
fn read_body(
    body: &[u8],
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    batch: Option<usize>,
) -> Result<Extraction, ReadError> {
    let pipelined = batch.is_some();
    let body = utf8(body)?;
    if !plan.streamed {
        let Some(collector) = Collector::new(body, plan.collect_names()) else {
            let doc = tree::parse(body, &plan.root)?;
            return Ok(extract(&doc, blocks)?);
        };
        let doc = tree::parse_collecting(body, &plan.root, &collector)?;
        if collector.is_spoiled() {
            return Ok(extract(&doc, blocks)?);
        }
        return collect::extract(body, &doc, blocks, plan, &collector.into_found());
    }
    let (tree, folds) = root_lookups(body, plan)?;
    let root = DocRoot {
        tree: &tree,
        folds: folds.as_deref(),
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
        return Ok(extract(&doc, blocks)?);
    };
    Ok(finish(runs)?)
}

// Streamed plans read nothing from captured nodes (see `plan`): those are null.
static NONE: Value = Value::Null;

/// Calls `f` with the captures of block `b`'s item, from the keys on its path. Up to four
/// are kept on the stack: every item of a large body has them, and an allocation each showed
/// in profiles.
fn with_captures<'k>(
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

/// A slot's raw JSON that `serde_json` could not build, placed in the whole body.
fn value_error(body: &str, raw: &str, e: serde_json::Error) -> ReadError {
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
fn line_column(before: &[u8]) -> (usize, usize) {
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    (
        before.iter().filter(|b| **b == b'\n').count() + 1,
        before.len() - line_start + 1,
    )
}

/// Hands an item of slotted node `id`, its slots built, to each of the node's blocks.
fn slotted_item(
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
struct Inline<'b, 'p, 'de> {
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

mod pipeline {
    //! Parsing on one thread, extraction on another: the parser finds each item's slots
    //! (raw JSON, borrowed from the body) and sends them in batches, in document order,
    //! through a bounded channel; the other thread builds the values and extracts. Emptied
    //! batches go back to the parser to be filled again.

    use std::sync::mpsc;

    use serde_json::Value;

    use super::plan::ReadPlan;
    use super::{
        BlockRun, Bound, DocRoot, Item, MetricSpec, NONE, ReadError, slotted_item, value_error,
    };
    use crate::read::{ItemPath, Items, Key, Stop, Streaming, slots};

    /// Items per batch: enough to make the channel's cost negligible.
    const BATCH: usize = 1024;

    enum Entry {
        /// An item of slotted node `id`; its slots and keys start at these offsets.
        Slotted {
            id: usize,
            slots: usize,
            keys: usize,
        },
        /// An item built as a tree (rare in slotted plans: an array element that two index
        /// lookups share), with its captures' keys.
        Node {
            block: usize,
            value: Value,
            keys: Vec<String>,
        },
    }

    struct Batch<'de> {
        entries: Vec<Entry>,
        slots: Vec<Option<&'de str>>,
        keys: Vec<Key<'de>>,
    }

    impl Batch<'_> {
        /// Sized for a batch of the common shapes (a few slots and keys per item), so that
        /// filling it does not reallocate.
        fn new() -> Self {
            Batch {
                entries: Vec::with_capacity(BATCH),
                slots: Vec::with_capacity(BATCH * 4),
                keys: Vec::with_capacity(BATCH * 4),
            }
        }

        fn clear(&mut self) {
            self.entries.clear();
            self.slots.clear();
            self.keys.clear();
        }
    }

    struct Sender<'de, 'p> {
        batch: Batch<'de>,
        tx: mpsc::SyncSender<Batch<'de>>,
        /// Batches the extractor is done with.
        empty: mpsc::Receiver<Batch<'de>>,
        plan: &'p ReadPlan,
    }

    impl Sender<'_, '_> {
        fn sent(&mut self) -> Result<(), Stop> {
            if self.batch.entries.len() < BATCH {
                return Ok(());
            }
            let next = self.empty.try_recv().unwrap_or_else(|_| Batch::new());
            // Fails only if the extractor stopped (a value it could not build, or a panic):
            // its result says why.
            self.tx
                .send(std::mem::replace(&mut self.batch, next))
                .map_err(|_| Stop)
        }
    }

    impl<'de> Items<'de> for Sender<'de, '_> {
        fn node(&mut self, block: usize, item: &Value, path: &ItemPath<'_, '_, '_>) {
            if !self.plan.lets_through(block, item) {
                return;
            }
            let keys = self.plan.capture_depths[block]
                .iter()
                .map(|d| path.key(*d).into_owned())
                .collect();
            self.batch.entries.push(Entry::Node {
                block,
                value: item.clone(),
                keys,
            });
            // A stopped extractor is seen at the next slotted item.
            let _ = self.sent();
        }

        fn slotted(
            &mut self,
            id: usize,
            slots: &mut Vec<Option<&'de str>>,
            path: &[Key<'de>],
        ) -> Result<(), Stop> {
            let b = &mut self.batch;
            b.entries.push(Entry::Slotted {
                id,
                slots: b.slots.len(),
                keys: b.keys.len(),
            });
            b.slots.append(slots);
            b.keys.extend_from_slice(path);
            self.sent()
        }
    }

    /// Where the slots and keys of the slotted entry after `i` start.
    fn next_offsets(batch: &Batch<'_>, i: usize) -> (usize, usize) {
        batch.entries[i + 1..]
            .iter()
            .find_map(|e| match e {
                Entry::Slotted { slots, keys, .. } => Some((*slots, *keys)),
                Entry::Node { .. } => None,
            })
            .unwrap_or((batch.slots.len(), batch.keys.len()))
    }

    fn extract_batch(
        runs: &mut [BlockRun<'_>],
        plan: &ReadPlan,
        root: DocRoot<'_>,
        body: &str,
        batch: &Batch<'_>,
        values: &mut Vec<Option<Value>>,
    ) -> Result<(), ReadError> {
        for (i, e) in batch.entries.iter().enumerate() {
            match e {
                Entry::Slotted { id, slots, keys } => {
                    let (slots_end, keys_end) = next_offsets(batch, i);
                    slots::build_slots(&batch.slots[*slots..slots_end], values, true)
                        .map_err(|(e, raw)| value_error(body, raw, e))?;
                    let path = &batch.keys[*keys..keys_end];
                    slotted_item(runs, plan, root, *id, values, path);
                }
                Entry::Node { block, value, keys } => {
                    let caps: Vec<Bound> = keys
                        .iter()
                        .map(|k| Bound {
                            key: k.as_str().into(),
                            node: &NONE,
                        })
                        .collect();
                    runs[*block].item(Item::Node(value), root, &caps);
                }
            }
        }
        Ok(())
    }

    pub(super) fn run<'b>(
        body: &str,
        blocks: &'b [MetricSpec],
        plan: &ReadPlan,
        root: DocRoot<'_>,
    ) -> Result<Option<Vec<BlockRun<'b>>>, ReadError> {
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Batch>(4);
            let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
            let extractor = scope.spawn(move || {
                let mut runs: Vec<BlockRun> = blocks.iter().map(BlockRun::new).collect();
                let mut values = Vec::new();
                for mut batch in rx {
                    extract_batch(&mut runs, plan, root, body, &batch, &mut values)?;
                    batch.clear();
                    let _ = empty_tx.send(batch);
                }
                Ok::<_, ReadError>(runs)
            });
            let mut sender = Sender {
                batch: Batch::new(),
                tx,
                empty: empty_rx,
                plan,
            };
            let parsed = crate::read::stream::parse(body, &plan.root, &mut sender);
            let Sender { batch, tx, .. } = sender;
            if matches!(parsed, Ok(Streaming::Done)) && !batch.entries.is_empty() {
                let _ = tx.send(batch);
            }
            drop(tx);
            let extracted = extractor
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            // The extractor's error first: it is why the parse was stopped, if it was.
            let runs = extracted?;
            Ok((parsed? == Streaming::Done).then_some(runs))
        })
    }
}

/// One block's extraction in progress: items go in one at a time, in document order.
struct BlockRun<'b> {
    block: &'b MetricSpec,
    problems: Problems,
    /// Per output.
    series: Vec<Vec<Series>>,
    items: usize,
    labels: LabelsBuilder,
    /// Per output: whether its series are known to be in strict label order (no duplicate),
    /// so that [`BlockRun::finish`] need not check. Only [`BlockRun::check_order`] sets it.
    ordered: Vec<bool>,
}

impl<'b> BlockRun<'b> {
    fn new(block: &'b MetricSpec) -> Self {
        Self {
            block,
            problems: BTreeMap::new(),
            series: vec![Vec::new(); block.outputs.len()],
            items: 0,
            labels: LabelsBuilder::default(),
            ordered: vec![false; block.outputs.len()],
        }
    }

    /// Checks whether each output's series are in strict label order (on the thread that
    /// extracted them: a large body's runs are checked in parallel, batch by batch, instead
    /// of all at the end).
    fn check_order(&mut self) {
        for (ordered, series) in self.ordered.iter_mut().zip(&self.series) {
            *ordered = in_order(series);
        }
    }

    fn item(&mut self, item: Item<'_>, doc: DocRoot<'_>, caps: &[Bound<'_>]) {
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

    /// Adds what the same block made of the items right after this run's.
    fn absorb(&mut self, later: BlockRun<'b>) {
        for (k, (s, l)) in self.series.iter_mut().zip(later.series).enumerate() {
            // Still in order if both parts are and the seam is.
            self.ordered[k] = self.ordered[k]
                && later.ordered[k]
                && match (s.last(), l.first()) {
                    (Some(a), Some(b)) => a.labels < b.labels,
                    _ => true,
                };
            s.extend(l);
        }
        for (k, (count, example)) in later.problems {
            self.problems.entry(k).or_insert((0, example)).0 += count;
        }
        self.items = later.items;
    }

    fn finish(self, out: &mut Extraction) -> Result<(), ExtractError> {
        let BlockRun {
            block,
            mut problems,
            series,
            items,
            labels: _,
            ordered,
        } = self;
        for (k, (output, mut s)) in block.outputs.iter().zip(series).enumerate() {
            let label_names = output_label_names(block, output);
            let dups = if ordered[k] {
                Duplicates {
                    dropped: 0,
                    first_example: None,
                }
            } else {
                resolve_duplicates(&mut s, block.on_duplicate)
            };
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

/// Whether `series` are in strict label order: sorted, without duplicates.
fn in_order(series: &[Series]) -> bool {
    series.is_sorted_by(|a, b| a.labels < b.labels)
}

/// Sorts by labels and merges equal label sets by `policy` (stable sort: document order is
/// kept among equals, so "first" and "last" mean what they say).
fn resolve_duplicates(series: &mut Vec<Series>, policy: OnDuplicate) -> Duplicates {
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
    root: DocRoot<'_>,
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
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<f64, ItemError> {
    let conv = &output.conversion;
    let raw = match &output.value {
        ValueSpec::Constant(v) => Ok(*v),
        ValueSpec::Lookup(l) => match l.select(item, root.tree, caps) {
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
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<String, ItemError> {
    let ValueSpec::Lookup(l) = &output.value else {
        return Err(ItemError::ValueMissing {
            path: value_path(&output.value),
        });
    };
    match l.select(item, root.tree, caps) {
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
    root: DocRoot<'_>,
    caps: &[Bound<'_>],
) -> Result<i64, ItemError> {
    let path = || t.lookup.display().to_string();
    let v = match t.lookup.select(item, root.tree, caps) {
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
    root: DocRoot<'_>,
    item: Item<'_>,
    caps: &[Bound<'_>],
    out: &mut String,
) -> Result<(), ItemError> {
    for part in &t.parts {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Capture(i) => out.push_str(&caps[*i].key),
            Part::Lookup(l) => match l.select(item, root.tree, caps) {
                Selected::One(v) => match v {
                    Value::String(s) => out.push_str(s),
                    Value::Number(n) => {
                        use std::fmt::Write;
                        // Written in place: a numeric label (a port, an id) is common enough
                        // not to allocate a string per item for it.
                        let _ = write!(out, "{n}");
                    }
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
