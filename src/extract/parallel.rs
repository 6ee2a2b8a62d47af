//! Large bodies read on two cores (inside `extract`, for plans that [`super::scan`] can
//! walk): this thread walks the document and hands its items over in batches; each batch is
//! extracted by whichever thread is free: a helper thread, or this one when the helper is
//! still busy with the previous batch. Each item is read by [`super::quick`] (or by
//! `serde_json` where that one is unsure) either as this thread finds it, while the helper is
//! busy, or with its batch, when the helper was waiting for work: so neither waits long for
//! the other. The batches' results are joined in document order, so the extraction is the
//! one a single thread gives (same series, same item numbers in problems, same first example
//! of each problem).
//!
//! Anything unexpected (invalid JSON, a value that cannot be built, a repeated member on the
//! way to items) gives up with no result: the caller then reads the body the usual way,
//! which reports the error as a full parse does.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TrySendError};

use super::block::BlockRun;
use super::body::{DocRoot, slotted_item};
use super::plan::ReadPlan;
use super::samples::Series;
use super::spec::MetricSpec;
use crate::read::scan::{self, Bail};
use crate::read::{Key, Need, quick, slots};

/// Items per batch: enough to make handing one over negligible, few enough that neither
/// thread waits long for the other at the end.
pub(super) const BATCH: usize = 1024;

/// An item found by the scan: its node in the plan, its text, where its keys start, and where
/// its slots start if the quick reader read it.
struct Found<'p> {
    need: &'p Need,
    start: usize,
    end: usize,
    keys: usize,
    slots: Option<usize>,
}

struct Batch<'de, 'p> {
    /// Its place in the document.
    seq: usize,
    /// Per block, its items before this batch: item numbers continue from there.
    before: Vec<usize>,
    items: Vec<Found<'p>>,
    keys: Vec<Key<'de>>,
    slots: Vec<Option<&'de str>>,
}

impl<'de> Batch<'de, '_> {
    /// Reads the item at `start` into new slots at the end of the batch's: where it ends and
    /// where its slots start, or `None` (no slot added) if the quick reader leaves it.
    fn read(&mut self, text: &'de str, need: &Need, start: usize) -> Option<(usize, usize)> {
        let at = self.slots.len();
        let count = need.slotted.expect("scanned items are slotted").count;
        self.slots.resize(at + count, None);
        let end = quick::read(text, start, need, &mut self.slots[at..]);
        if end.is_none() {
            self.slots.truncate(at);
        }
        Some((end?, at))
    }

    fn new(seq: usize, before: &[usize], size: usize) -> Self {
        Batch {
            seq,
            before: before.to_vec(),
            items: Vec::with_capacity(size),
            keys: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// The batch after this one, sized like this one: its keys and slots would otherwise
    /// grow from nothing, copied at each doubling.
    fn next(&self, before: &[usize], size: usize) -> Self {
        let mut b = Batch::new(self.seq + 1, before, size);
        b.keys.reserve(self.keys.len());
        b.slots.reserve(self.slots.len());
        b
    }
}

/// What each block made of one batch, the batch's place, and how many bytes of the body its
/// items span.
pub(super) struct Done<'b> {
    pub(super) seq: usize,
    pub(super) runs: Vec<BlockRun<'b>>,
    pub(super) span: usize,
}

/// The batches' runs, joined in document order as they are done, by whichever thread finished
/// the batch next in order. Joining them (and checking their order, see
/// [`BlockRun::check_order`]) is spread over the read instead of left to one thread once both
/// are done: what a 100k-pod read did on one thread after the helper was done went from 4 to
/// 5 ms to under 1 ms (BENCHMARKS.md).
pub(super) struct Joined<'b> {
    /// Batches 0 to `next - 1`, joined.
    runs: Option<Vec<BlockRun<'b>>>,
    next: usize,
    /// Batches done before an earlier one.
    early: BTreeMap<usize, Done<'b>>,
    /// The body's length, to size the joined series from the first batch's.
    len: usize,
}

impl<'b> Joined<'b> {
    fn add(&mut self, done: Done<'b>) {
        self.early.insert(done.seq, done);
        while let Some(done) = self.early.remove(&self.next) {
            self.next += 1;
            let Some(joined) = &mut self.runs else {
                self.runs = Some(Self::sized(done, self.len));
                continue;
            };
            for (run, part) in joined.iter_mut().zip(done.runs) {
                run.absorb(part);
            }
        }
    }

    /// The first batch's runs, their series sized for the whole body as if every batch was
    /// like the first: growing them batch by batch would copy them again at each doubling.
    /// All of them together reserve at most the body's size: a first batch of small items
    /// in a large body of something else must not ask for more memory than the body holds
    /// (untouched, the room costs no resident memory; refused, it would end the process).
    pub(super) fn sized(first: Done<'b>, len: usize) -> Vec<BlockRun<'b>> {
        let mut runs = first.runs;
        let scale = len as f64 / first.span.max(1) as f64;
        let vectors = runs.iter().map(|r| r.series.len()).sum::<usize>().max(1);
        let most = len / std::mem::size_of::<Series>() / vectors;
        for series in runs.iter_mut().flat_map(|r| r.series.iter_mut()) {
            let whole = (series.len() as f64 * scale * 1.05) as usize;
            series.reserve(whole.min(most).saturating_sub(series.len()));
        }
        runs
    }

    /// All batches' runs, joined; `batches` were made.
    fn finish(self, blocks: &'b [MetricSpec], batches: usize) -> Vec<BlockRun<'b>> {
        debug_assert!(self.early.is_empty() && self.next == batches);
        let mut runs = self
            .runs
            .unwrap_or_else(|| blocks.iter().map(BlockRun::new).collect());
        for series in runs.iter_mut().flat_map(|r| r.series.iter_mut()) {
            // An estimate well above what came (the first batch's items were smaller than the
            // rest) gives back what it took.
            if series.capacity() > series.len() + series.len() / 4 + 1024 {
                series.shrink_to_fit();
            }
        }
        runs
    }
}

/// Reads `text` with `plan` (which must be scannable), `batch` items at a time. `Err` when
/// the body must be read the usual way (see the module doc).
pub(super) fn run<'b>(
    text: &str,
    blocks: &'b [MetricSpec],
    plan: &ReadPlan,
    root: DocRoot<'_>,
    batch: usize,
) -> Result<Vec<BlockRun<'b>>, Bail> {
    run_with(text, blocks, plan, root, batch, |waiting| !waiting)
}

/// [`run`], with `read_here` telling whether this thread reads the items of its next batch
/// itself, from whether the helper waits for one (tests force each way).
pub(super) fn run_with<'b, 'de, 'p>(
    text: &'de str,
    blocks: &'b [MetricSpec],
    plan: &'p ReadPlan,
    root: DocRoot<'_>,
    batch: usize,
    read_here: fn(bool) -> bool,
) -> Result<Vec<BlockRun<'b>>, Bail> {
    debug_assert!(plan.scanned);
    // Whether the helper waits for a batch.
    let waiting = AtomicBool::new(true);
    let joined = Mutex::new(Joined {
        runs: None,
        next: 0,
        early: BTreeMap::new(),
        len: text.len(),
    });
    let join = |done: Done<'b>| joined.lock().unwrap_or_else(|e| e.into_inner()).add(done);
    std::thread::scope(|scope| {
        // One batch waits while the helper works on another; more would only let this
        // thread run further ahead, then wait for the helper at the end.
        let (tx, rx) = mpsc::sync_channel::<Batch>(1);
        let (waiting, join) = (&waiting, &join);
        let helper = scope.spawn(move || {
            loop {
                waiting.store(true, Ordering::Relaxed);
                let Ok(b) = rx.recv() else { break };
                waiting.store(false, Ordering::Relaxed);
                join(extract(blocks, plan, root, text, &b)?);
            }
            Ok::<_, Bail>(())
        });
        let mut counts = vec![0; blocks.len()];
        let mut current = Batch::new(0, &counts, batch);
        // Reading an item also finds its end, but costs several times what only finding its
        // end (bracket counting) does. This thread reads the items of a batch while the
        // helper is busy, and only delimits them, for the helper to read, while it waits:
        // neither thread waits long for the other.
        let mut here = read_here(true);
        let mut on_item = |need: &'p Need, start: usize, path: &[Key<'de>]| {
            count(plan, need, &mut counts);
            let keys = current.keys.len();
            current.keys.extend_from_slice(path);
            let read = if here {
                current.read(text, need, start)
            } else {
                None
            };
            let (end, slots) = match read {
                Some((end, at)) => (end, Some(at)),
                None => (
                    scan::value_end(text.as_bytes(), start).ok_or(Bail::Other)?,
                    None,
                ),
            };
            current.items.push(Found {
                need,
                start,
                end,
                keys,
                slots,
            });
            if current.items.len() < batch {
                return Ok(end);
            }
            let next = current.next(&counts, batch);
            let sent = tx.try_send(std::mem::replace(&mut current, next));
            here = read_here(waiting.load(Ordering::Relaxed));
            match sent {
                Ok(()) => Ok(end),
                Err(TrySendError::Full(full)) => {
                    join(extract(blocks, plan, root, text, &full)?);
                    Ok(end)
                }
                // The helper gave up: so does this thread.
                Err(TrySendError::Disconnected(_)) => Err(Bail::Other),
            }
        };
        let walked = scan::walk(text, &plan.root, &mut on_item);
        let batches = current.seq + usize::from(!current.items.is_empty());
        if walked.is_ok() && !current.items.is_empty() {
            join(extract(blocks, plan, root, text, &current)?);
        }
        drop(tx);
        helper
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        walked?;
        Ok(batches)
    })
    .map(|batches| {
        joined
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .finish(blocks, batches)
    })
}

/// Counts an item found at `need` for every block that reads it.
fn count(plan: &ReadPlan, need: &Need, per_block: &mut [usize]) {
    let id = need.slotted.expect("scanned items are slotted").id;
    plan.slotted[id]
        .items
        .iter()
        .for_each(|b| per_block[*b] += 1);
}

/// Parses and extracts the items of one batch, and checks the order of what it made.
fn extract<'b>(
    blocks: &'b [MetricSpec],
    plan: &ReadPlan,
    root: DocRoot<'_>,
    text: &str,
    batch: &Batch<'_, '_>,
) -> Result<Done<'b>, Bail> {
    let mut runs: Vec<BlockRun> = blocks.iter().map(BlockRun::new).collect();
    let mut items = vec![0; blocks.len()];
    batch
        .items
        .iter()
        .for_each(|f| count(plan, f.need, &mut items));
    for ((run, before), n) in runs.iter_mut().zip(&batch.before).zip(items) {
        run.items = *before;
        // Most outputs make one series per item: sized once instead of doubling.
        run.series.iter_mut().for_each(|s| s.reserve(n));
    }
    let mut parsed = Vec::new();
    let mut values = Vec::new();
    for (i, f) in batch.items.iter().enumerate() {
        let keys_end = batch.items.get(i + 1).map_or(batch.keys.len(), |n| n.keys);
        let slotted = f.need.slotted.expect("scanned items are slotted");
        // Whether `serde_json` filled the slots: only then may their strings hold escapes.
        let (slots, escapes) = match f.slots {
            Some(at) => (&batch.slots[at..at + slotted.count], false),
            None => {
                let (_, escapes) =
                    crate::read::read_found(text, f.start, Some(f.end), f.need, &mut parsed)?;
                (&parsed[..], escapes)
            }
        };
        slots::build_slots(slots, &mut values, escapes).map_err(|_| Bail::Other)?;
        let id = slotted.id;
        slotted_item(
            &mut runs,
            plan,
            root,
            id,
            &values,
            &batch.keys[f.keys..keys_end],
        );
    }
    runs.iter_mut().for_each(BlockRun::check_order);
    let span = match (batch.items.first(), batch.items.last()) {
        (Some(first), Some(last)) => last.end - first.start,
        _ => 0,
    };
    Ok(Done {
        seq: batch.seq,
        runs,
        span,
    })
}
