//! The JSON reader (between `fetch` and `extract`): reads a response body along a read plan
//! (`Need`) and builds, hands over or folds only what the plan asks for; the rest is
//! checked for syntax and skipped.
//!
//! It knows JSON and the plan, nothing about metrics: a plan's items, slots, folds and
//! collecting rules are numbers the consumer chose, handed back as they are met. Two readers
//! share the plan: `tree` builds a pruned tree (folding and keeping members as text on the
//! way), `stream` hands items to an `Items` receiver as it reaches them. For slotted
//! items, `scan` finds them by counting brackets and `quick` reads them without
//! `serde_json`; both fall back to the readers above on anything unusual. Their only unsafe
//! code (SSE2 byte classes) is in `simd`, each block with its safety argument.
//!
//! Guarantee: wherever the plan reads, the values are those `serde_json` (with
//! `float_roundtrip`) gives for the whole document, and every reader accepts and refuses the
//! same texts it does (the tests in `tests` check it on a corpus and on generated text).

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
