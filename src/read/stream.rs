//! Reading a document with its items streamed: the parser walks towards the nodes the plan
//! marks as items (`Need::items`) without building anything, and hands each item to an
//! [`Items`] receiver as soon as it is parsed: a slotted item as the raw JSON of the nodes
//! its reads reach (built into values by the receiver, possibly on another thread), other
//! items as small trees ([`super::tree`]). The rest of the document is checked for syntax
//! and skipped.
//!
//! The items, and what is built of them, are those a full parse would give, in document
//! order; a member repeated on the way to items ends the parse with
//! [`Streaming::Repeated`] (only a tree tells which occurrence counts).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::need::{KeysSeen, Need, Seen};
use super::parse::{Key, KeySeed, counted_elements, in_order, reparse};

/// The keys from the root to an item: those read by the streaming parser, then those inside
/// the subtree that was built around the item.
pub(crate) struct ItemPath<'p, 'de, 'v> {
    outer: &'p [Key<'de>],
    inner: &'p [Key<'v>],
}

impl ItemPath<'_, '_, '_> {
    pub(crate) fn key(&self, depth: usize) -> Cow<'_, str> {
        match self.outer.get(depth) {
            Some(k) => k.text(),
            None => self.inner[depth - self.outer.len()].text(),
        }
    }
}

/// Where a streamed plan's items go, in document order.
pub(crate) trait Items<'de> {
    /// An item of block `block` built as a tree.
    fn node(&mut self, block: usize, item: &Value, path: &ItemPath<'_, '_, '_>);
    /// An item of the slotted node `id` of the plan: its slots as raw JSON (which may be
    /// taken), its path. `Err` stops the parse (the receiver keeps the reason).
    fn slotted(
        &mut self,
        id: usize,
        slots: &mut Vec<Option<&'de str>>,
        path: &[Key<'de>],
    ) -> Result<(), Stop>;
}

/// Parsing was stopped by the receiver of the items.
#[derive(Debug)]
pub(crate) struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

/// How a streamed parse ended without a syntax error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Streaming {
    Done,
    /// A member on the way to items appears twice. A full parse keeps only the last one, so
    /// the items handed over from the first must be discarded and the document read as a
    /// tree instead.
    Repeated,
}

/// Parses a whole document along `need` (from the root), calling `items` for every item in
/// document order. On a syntax error the items already handed over must be discarded by the
/// caller.
pub(crate) fn parse<'de>(
    text: &'de str,
    need: &Need,
    items: &mut dyn Items<'de>,
) -> Result<Streaming, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut ctx = Ctx {
        path: Vec::new(),
        items,
        slots: Vec::new(),
        repeated: false,
    };
    let parsed = Streamed {
        need,
        ctx: &mut ctx,
    }
    .deserialize(&mut de);
    if ctx.repeated {
        return Ok(Streaming::Repeated);
    }
    parsed?;
    de.end()?;
    Ok(Streaming::Done)
}

/// Reads one slotted item, whose text is exactly `text`, into `slots` (one per slot of
/// `need`, its node in the plan).
pub(crate) fn fill_slots<'de>(
    text: &'de str,
    need: &Need,
    slots: &mut Vec<Option<&'de str>>,
) -> Result<(), serde_json::Error> {
    slots.clear();
    slots.resize(need.slotted.map_or(0, |s| s.count), None);
    let mut de = serde_json::Deserializer::from_str(text);
    Filler {
        need,
        values: slots,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// The streaming parser's state: where it is, where items go, the current item's slots.
struct Ctx<'a, 'de> {
    path: Vec<Key<'de>>,
    items: &'a mut dyn Items<'de>,
    slots: Vec<Option<&'de str>>,
    /// Set when parsing stopped at a repeated member (see [`Streaming::Repeated`]).
    repeated: bool,
}

/// Walks towards items without building anything; at an item, reads it (into slots, or as a
/// built subtree) and hands it, and any items below it, to the sink.
struct Streamed<'n, 'c, 'a, 'de> {
    need: &'n Need,
    ctx: &'c mut Ctx<'a, 'de>,
}

impl<'de> DeserializeSeed<'de> for Streamed<'_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let Streamed { need, ctx } = self;
        if let Some(slots) = need.slotted {
            ctx.slots.clear();
            ctx.slots.resize(slots.count, None);
            Filler {
                need,
                values: &mut ctx.slots,
            }
            .deserialize(d)?;
            ctx.items
                .slotted(slots.id, &mut ctx.slots, &ctx.path)
                .map_err(<D::Error as de::Error>::custom)
        } else if !need.items.is_empty() || need.all {
            let v = super::tree::build(need, d)?;
            dispatch(need, &v, &ctx.path, &mut Vec::new(), ctx.items);
            Ok(())
        } else {
            d.deserialize_any(Streamed { need, ctx })
        }
    }
}

/// Hands the items in an already built subtree to the sink, in document order.
fn dispatch<'v>(
    need: &Need,
    v: &'v Value,
    outer: &[Key<'_>],
    inner: &mut Vec<Key<'v>>,
    items: &mut dyn Items<'_>,
) {
    for b in &need.items {
        items.node(*b, v, &ItemPath { outer, inner });
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(n) = need.member(k).filter(|n| n.has_items) {
                    inner.push(Key::Name(Cow::Borrowed(k)));
                    dispatch(n, child, outer, inner, items);
                    inner.pop();
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                if let Some(n) = need.element(i, a.len()).filter(|n| n.has_items) {
                    inner.push(Key::Index(i));
                    dispatch(&n, child, outer, inner, items);
                    inner.pop();
                }
            }
        }
        _ => {}
    }
}

/// Visitors that only look at arrays and objects.
macro_rules! ignore_scalars {
    () => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_none<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

impl<'de> Visitor<'de> for Streamed<'_, '_, '_, 'de> {
    type Value = ();

    ignore_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.need.member(&key).filter(|n| n.has_items) {
                Some(need) => {
                    if !seen.first(self.need, key.clone()) {
                        self.ctx.repeated = true;
                        return Err(de::Error::custom("repeated member"));
                    }
                    self.ctx.path.push(Key::Name(key));
                    map.next_value_seed(Streamed {
                        need,
                        ctx: self.ctx,
                    })?;
                    self.ctx.path.pop();
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let need = self.need;
        if need.from_end {
            let ctx = self.ctx;
            return counted_elements(&mut seq, need.tail, |i, len, raw| {
                if let Some(n) = need.element(i, len).filter(|n| n.has_items) {
                    ctx.path.push(Key::Index(i));
                    reparse::<_, A::Error>(raw, Streamed { need: &n, ctx })?;
                    ctx.path.pop();
                }
                Ok(())
            });
        }
        let ctx = self.ctx;
        in_order(&mut seq, |seq, i| {
            match need.element(i, 0).filter(|n| n.has_items) {
                Some(n) => {
                    ctx.path.push(Key::Index(i));
                    let got = seq.next_element_seed(Streamed { need: &n, ctx })?;
                    ctx.path.pop();
                    Ok(got.is_some())
                }
                None => Ok(seq.next_element::<IgnoredAny>()?.is_some()),
            }
        })
    }
}

/// Reads a slotted item: finds each node the plan marks as a slot and keeps its raw JSON in its
/// slot (built later, possibly on another thread); skips the rest.
struct Filler<'n, 'v, 'de> {
    need: &'n Need,
    values: &'v mut [Option<&'de str>],
}

impl<'de> Filler<'_, '_, 'de> {
    fn keep(&mut self, raw: &'de RawValue) {
        for s in &self.need.slots {
            self.values[*s] = Some(raw.get());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Filler<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
        if !self.need.all {
            return d.deserialize_any(self);
        }
        let raw = <&'de RawValue>::deserialize(d)?;
        self.keep(raw);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Filler<'_, '_, 'de> {
    type Value = ();

    ignore_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A repeated member replaces the earlier one whole, as in a built tree: what the
        // earlier one filled is emptied first.
        let mut seen = KeysSeen::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let found = self.need.keys.iter().position(|(k, _)| *k == *key);
            let need = match found {
                Some(p) => {
                    let need = &self.need.keys[p].1;
                    if seen.repeat(p) {
                        let mut filled = Vec::new();
                        need.slots_below(&mut filled);
                        filled.into_iter().for_each(|s| self.values[s] = None);
                    }
                    Some(need)
                }
                None => self.need.any.as_deref(),
            };
            match need {
                Some(need) => map.next_value_seed(Filler {
                    need,
                    values: self.values,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let need = self.need;
        if need.from_end {
            let values = self.values;
            return counted_elements(&mut seq, need.tail, |i, len, raw| {
                match need.element(i, len) {
                    // Read whole: the raw text already is what the slot keeps.
                    Some(n) if n.all => Filler { need: &n, values }.keep(raw),
                    Some(n) => reparse::<_, A::Error>(raw, Filler { need: &n, values })?,
                    None => {}
                }
                Ok(())
            });
        }
        let values = self.values;
        in_order(&mut seq, |seq, i| match need.element(i, 0) {
            Some(n) => Ok(seq
                .next_element_seed(Filler { need: &n, values })?
                .is_some()),
            None => Ok(seq.next_element::<IgnoredAny>()?.is_some()),
        })
    }
}
