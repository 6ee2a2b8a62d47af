//! The JSON reader (between `fetch` and `extract`): reads a response body along a read plan
//! (`Need`) and builds, hands over or folds only what the plan asks for; the rest is checked
//! for syntax and skipped.
//!
//! It knows JSON and the plan, nothing about metrics: a plan's items, slots, folds and
//! collecting rules are numbers the consumer chose, handed back as they are met. The plan is
//! a tree that mirrors the document (`need`): members by name, elements by index (negative
//! from the end), a wildcard, where a subtree is read whole, where items are, and descendant
//! searches by name as rules that apply at any depth below.
//!
//! The readers, each falling back to the one above it on anything unusual:
//! - `tree`: a pruned tree of what the plan reads. Nodes that only folds read are handed to
//!   a `Folds` instead of built; members a collecting rule finds stay text (`collector`).
//! - `stream`: walks towards the plan's items without building anything and hands each to
//!   an `Items` receiver as it is parsed, as a small tree or, for a slotted item, as the raw
//!   text of each node its reads reach (one slot each, built by `slots` where it is used).
//! - `scan`: for slotted plans with nothing above the items that needs an array's length,
//!   finds items by counting brackets outside strings, 64 bytes at a time, checking the
//!   structure above them; `quick` reads each item's slots in one pass over its bytes (SSE2
//!   for strings and numbers; an array of plain numbers settled on bit masks), leaving
//!   escapes, deep nesting, repeated members and errors to `stream`.
//!
//! `parse` holds what the `serde_json`-based readers share; `simd` the only unsafe code
//! (SSE2 byte classes over fixed-size blocks), each block with its safety argument.
//!
//! Guarantee: wherever the plan reads, the values are those `serde_json` (with
//! `float_roundtrip`) gives for the whole document, a member repeated on the way to items is
//! reported (only a tree says which occurrence counts), and every reader accepts and refuses
//! what `serde_json` does where it reads. `check` tests this on any text; the tests run it on
//! a corpus and on generated text, the `reader` fuzz target on arbitrary bytes.

#![deny(unsafe_code)]

#[doc(hidden)]
pub mod check;
mod collector;
mod need;
mod parse;
pub(crate) mod quick;
pub(crate) mod scan;
#[allow(unsafe_code)]
mod simd;
pub(crate) mod slots;
pub(crate) mod stream;
pub(crate) mod tree;

pub(crate) use collector::Collector;
pub(crate) use need::{Need, SlotRef, Step};
pub(crate) use parse::Key;
pub(crate) use stream::{ItemPath, Items, Stop, Streaming};
pub(crate) use tree::Folds;

#[cfg(test)]
pub(crate) mod tests;

/// Reads the slots of an item the scan found at `start` (ending at `end`, when the scan
/// delimited it): by the quick reader, or, where it declines or disagrees on the end, by
/// `serde_json`. Gives where the item ends and whether its strings may hold escapes (only
/// where `serde_json` read them: the quick reader leaves escapes to it).
pub(crate) fn read_found<'de>(
    text: &'de str,
    start: usize,
    end: Option<usize>,
    need: &Need,
    slots: &mut Vec<Option<&'de str>>,
) -> Result<(usize, bool), scan::Bail> {
    slots.resize(need.slotted.map_or(0, |s| s.count), None);
    match (quick::read(text, start, need, slots), end) {
        (Some(e), None) => return Ok((e, false)),
        (Some(e), Some(want)) if e == want => return Ok((e, false)),
        _ => {}
    }
    let end = match end {
        Some(e) => e,
        None => scan::value_end(text.as_bytes(), start).ok_or(scan::Bail::Other)?,
    };
    stream::fill_slots(&text[start..end], need, slots).map_err(|_| scan::Bail::Other)?;
    Ok((end, true))
}
