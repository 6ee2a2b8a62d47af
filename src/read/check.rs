//! The reader against a strict parser (`serde_json` building the whole tree), on any text:
//! what every reader accepts and refuses, and the values it gives where its plan reads. Used
//! by the reader's tests (a corpus and generated text) and by the `reader` fuzz target, so
//! that both check the same things.
//!
//! The plans are made by hand, as a consumer would make them: the whole document; a pruned
//! tree of `$.*.v` and `$.*[-1]`; items at `$.*` built as trees; the same items read into
//! slots (`v` and `name`), by the streaming reader and by the scan with the quick reader.

use serde::de::IgnoredAny;
use serde_json::Value;

use super::need::{Need, SlotRef, Step};
use super::parse::Key;
use super::stream::{ItemPath, Items, Stop, Streaming};
use super::{scan, slots, stream, tree};

/// Checks every reader on `text` against `serde_json`; `Err` says which disagreed and how.
pub fn agrees_with_serde(text: &[u8]) -> Result<(), String> {
    // Bodies are checked for UTF-8 before any reader sees them.
    let Ok(text) = std::str::from_utf8(text) else {
        return Ok(());
    };
    let strict = serde_json::from_str::<Value>(text).ok();
    // Valid syntax, whatever the values (a reader may skip a number out of range that a
    // tree would refuse to build, where nothing reads it).
    let syntax = serde_json::from_str::<IgnoredAny>(text).is_ok();
    let whole = Need {
        all: true,
        ..Need::default()
    };
    match (tree::parse(text, &whole), &strict) {
        (Ok(v), Some(s)) if v == *s => {}
        (Err(_), None) => {}
        (got, want) => return Err(format!("whole tree: {got:?}, serde_json: {want:?}")),
    }
    let accepted = |what: &str, ok: bool| match (ok, syntax, strict.is_some()) {
        (true, false, _) => Err(format!("{what} accepted invalid JSON")),
        (false, _, true) => Err(format!("{what} refused valid JSON")),
        _ => Ok(()),
    };
    let pruned = tree::parse(text, &pruned_plan());
    accepted("the pruned tree", pruned.is_ok())?;
    if let (Ok(p), Some(s)) = (&pruned, &strict) {
        for (a, b) in children(p).iter().zip(children(s)) {
            let ends = |v: &Value| {
                (
                    v.get("v").cloned(),
                    v.as_array().and_then(|a| a.last()).cloned(),
                )
            };
            if ends(a) != ends(b) {
                return Err(format!("pruned tree: {a} where serde_json has {b}"));
            }
        }
        if children(p).len() != children(s).len() {
            return Err(format!("pruned tree: {p} where serde_json has {s}"));
        }
    }
    for slotted in [false, true] {
        let plan = items_plan(slotted);
        let mut got = Collected::default();
        let parsed = stream::parse(text, &plan, &mut got);
        if matches!(parsed, Ok(Streaming::Repeated)) {
            // Read as a tree instead, by the consumer.
            continue;
        }
        let what = if slotted { "slotted items" } else { "items" };
        accepted(what, parsed.is_ok() && got.failed.is_none())?;
        if let (Ok(_), Some(s)) = (parsed, &strict) {
            let want: Vec<Value> = children(s)
                .iter()
                .map(|c| {
                    if slotted {
                        slot_values(c)
                    } else {
                        (*c).clone()
                    }
                })
                .collect();
            if got.items != want {
                return Err(format!(
                    "{what}: {:?} where serde_json has {want:?}",
                    got.items
                ));
            }
        }
    }
    let plan = items_plan(true);
    if scan::scannable(&plan)
        && let Some(items) = scanned(text, &plan)
    {
        match &strict {
            Some(s) => {
                let want: Vec<Value> = children(s).iter().map(|c| slot_values(c)).collect();
                if items != want {
                    return Err(format!("scan: {items:?} where serde_json has {want:?}"));
                }
            }
            None if !syntax => return Err("the scan accepted invalid JSON".into()),
            None => {}
        }
    }
    Ok(())
}

/// `$.*.v` and `$.*[-1]`.
fn pruned_plan() -> Need {
    let mut root = Need::default();
    root.at(&[Step::Wildcard, Step::Name("v".into())]).all = true;
    root.at(&[Step::Wildcard, Step::Index(-1)]).all = true;
    root.finish();
    root
}

/// Items at `$.*`: built whole, or read into two slots (`v`, `name`).
fn items_plan(slotted: bool) -> Need {
    let mut root = Need::default();
    let item = root.at(&[Step::Wildcard]);
    item.items.push(0);
    if slotted {
        for (slot, name) in ["v", "name"].into_iter().enumerate() {
            let n = item.at(&[Step::Name(name.into())]);
            n.all = true;
            n.slots.push(slot);
        }
        item.slotted = Some(SlotRef { id: 0, count: 2 });
    } else {
        item.all = true;
    }
    root.finish();
    root
}

/// The members or elements of `v`, in the order a tree holds them.
fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    }
}

/// What the two slots of an item hold, as `[v, name]` (null where missing).
fn slot_values(item: &Value) -> Value {
    let get = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
    Value::Array(vec![get("v"), get("name")])
}

#[derive(Default)]
struct Collected {
    items: Vec<Value>,
    failed: Option<String>,
}

impl<'de> Items<'de> for Collected {
    fn node(&mut self, _: usize, item: &Value, _: &ItemPath<'_, '_, '_>) {
        self.items.push(item.clone());
    }

    fn slotted(
        &mut self,
        _: usize,
        slots: &mut Vec<Option<&'de str>>,
        _: &[Key<'de>],
    ) -> Result<(), Stop> {
        let mut values = Vec::new();
        match slots::build_slots(slots, &mut values, true) {
            Ok(()) => {
                let v = values.into_iter().map(|v| v.unwrap_or(Value::Null));
                self.items.push(Value::Array(v.collect()));
                Ok(())
            }
            Err((e, _)) => {
                self.failed = Some(e.to_string());
                Err(Stop)
            }
        }
    }
}

/// The items found by the scan, each read as `read_found` reads it; `None` where the scan gives up (the consumer then reads otherwise).
fn scanned(text: &str, plan: &Need) -> Option<Vec<Value>> {
    let mut items = Vec::new();
    let mut failed = false;
    let mut found = |need: &Need, start: usize, _: &[Key<'_>]| {
        let mut raw = Vec::new();
        // As `extract::parallel` reads them: strings the quick reader kept are built
        // without looking for escapes.
        let (end, escapes) = super::read_found(text, start, None, need, &mut raw)?;
        let mut values = Vec::new();
        if slots::build_slots(&raw, &mut values, escapes).is_err() {
            failed = true;
            return Err(scan::Bail::Other);
        }
        let v = values.into_iter().map(|v| v.unwrap_or(Value::Null));
        items.push(Value::Array(v.collect()));
        Ok(end)
    };
    scan::walk(text, plan, &mut found).ok()?;
    (!failed).then_some(items)
}
