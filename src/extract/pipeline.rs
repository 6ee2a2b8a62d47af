//! Parsing on one thread, extraction on another: the parser finds each item's slots
//! (raw JSON, borrowed from the body) and sends them in batches, in document order,
//! through a bounded channel; the other thread builds the values and extracts. Emptied
//! batches go back to the parser to be filled again.

use std::sync::mpsc;

use serde_json::Value;

use super::block::BlockRun;
use super::body::{DocRoot, NONE, slotted_item};
use super::error::{ReadError, value_error};
use super::plan::ReadPlan;
use super::spec::{Bound, Item, MetricSpec};
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
