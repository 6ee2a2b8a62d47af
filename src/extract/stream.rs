//! Parsing with a [`ReadPlan`] (inside `extract`, between the fetched body and the blocks):
//! only what the plan needs is built; the rest of the document is checked for syntax and
//! skipped. Streamed plans hand each item to an `Items` receiver as soon as it is parsed:
//! a slotted item as the raw JSON of the nodes its lookups reach (built into values where it
//! is extracted, possibly on another thread), other items as small trees.
//!
//! Both readers give the same nodes a full parse would give wherever the plan reads: members
//! in document order (a repeated member keeps its first position and last value, as
//! `serde_json` does), and arrays whose elements are looked up by index keep their length,
//! with `null` standing for the elements nobody reads.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::collect::Collector;
use super::fold::Folding;
use super::plan::{KeysSeen, Need, ReadPlan};
use super::scan::Seen;

/// A member name or an array position on the way from the root to an item.
#[derive(Debug, Clone)]
pub(crate) enum Key<'a> {
    Name(Cow<'a, str>),
    Index(usize),
}

impl Key<'_> {
    /// As a capture binds it: the name, or the index in decimal.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Key::Name(n) => Cow::Borrowed(n),
            Key::Index(i) => Cow::Owned(i.to_string()),
        }
    }
}

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

/// Builds an item's slots from their raw JSON into `out`, which holds the previous item's:
/// a string slot reuses the string built there. `escapes`: whether the item's strings may
/// hold escapes (not where [`super::quick`] read it: it leaves those to `serde_json`). On a
/// value that is valid JSON but cannot be built (a number out of range, nesting deeper than
/// 128), the raw text that failed.
pub(crate) fn build_slots<'de>(
    slots: &[Option<&'de str>],
    out: &mut Vec<Option<Value>>,
    escapes: bool,
) -> Result<(), (serde_json::Error, &'de str)> {
    out.resize(slots.len(), None);
    for (raw, value) in slots.iter().zip(out.iter_mut()) {
        match raw {
            Some(r) => build_slot(r, value, escapes).map_err(|e| (e, *r))?,
            None => *value = None,
        }
    }
    Ok(())
}

/// Most slots a label reads are strings without escapes, whose value is their text between
/// the quotes. Built directly (into the last item's string when there is one), they cost no
/// parse and, from the second item on, no allocation: a third of a 100k-pod read's
/// allocations went to such strings.
fn build_slot(
    raw: &str,
    value: &mut Option<Value>,
    escapes: bool,
) -> Result<(), serde_json::Error> {
    // The raw text is one complete, valid JSON value with no surrounding whitespace (the
    // parser that cut it out checked it), so a leading quote means a whole valid string.
    let plain = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|inner| !escapes || memchr::memchr(b'\\', inner.as_bytes()).is_none());
    match (plain, value) {
        (Some(inner), Some(Value::String(s))) => {
            s.clear();
            s.push_str(inner);
        }
        (Some(inner), value) => *value = Some(Value::String(inner.to_owned())),
        (None, value) => {
            *value = Some(match plain_number(raw) {
                Some(n) => Value::Number(n),
                None => serde_json::from_str(raw)?,
            })
        }
    }
    Ok(())
}

/// The number a value slot usually holds, where it is built exactly as `serde_json` builds
/// it without the cost of a parser: an integer of up to 19 digits, or a decimal whose digits
/// fit in f64's mantissa with at most 22 after the point (one correctly rounded division by
/// an exact power of ten, the operation `serde_json` does there). Anything else (exponents,
/// negative zero, more digits, what is not a number) is left to `serde_json`.
fn plain_number(raw: &str) -> Option<Number> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, text) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest.as_bytes()),
        None => (false, raw.as_bytes()),
    };
    if !text.first()?.is_ascii_digit() {
        return None;
    }
    let mut mantissa = 0u64;
    let mut digits = 0;
    let mut fraction = None;
    for (i, c) in text.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 19 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
            }
            b'.' if fraction.is_none() => fraction = Some(text.len() - i - 1),
            _ => return None,
        }
    }
    if negative && mantissa == 0 {
        return None;
    }
    match fraction {
        None if negative => i64::try_from(mantissa).ok().map(|m| Number::from(-m)),
        None => Some(Number::from(mantissa)),
        Some(f) if mantissa <= 1 << 53 && f < POW10.len() => {
            let v = mantissa as f64 / POW10[f];
            Number::from_f64(if negative { -v } else { v })
        }
        Some(_) => None,
    }
}

/// Parses a whole document, building only what `plan` reads.
pub fn parse_pruned(text: &str, plan: &ReadPlan) -> Result<Value, serde_json::Error> {
    parse_need(text, &plan.root)
}

/// [`parse_pruned`], keeping the members found for the plan's collecting blocks as text in
/// `collector` (the tree holds a placeholder for each, see [`super::collect`]). When they
/// cannot all be kept so, the tree is built as [`parse_pruned`] builds it and `collector`
/// says it is spoiled.
pub(crate) fn parse_collecting(
    text: &str,
    plan: &ReadPlan,
    collector: &Collector,
) -> Result<Value, serde_json::Error> {
    let aside = Aside {
        folding: None,
        collector: Some(collector),
    };
    match parse_with(text, &plan.root, aside) {
        Err(_) if collector.is_spoiled() => parse_pruned(text, plan),
        parsed => parsed,
    }
}

/// Parses a whole document, building only what `need` (from the root) reads.
pub(crate) fn parse_need(text: &str, need: &Need) -> Result<Value, serde_json::Error> {
    parse_with(text, need, Aside::default())
}

/// [`parse_need`], adding the nodes `need` folds to `folding` instead of building them.
pub(crate) fn parse_need_folding(
    text: &str,
    need: &Need,
    folding: &Folding,
) -> Result<Value, serde_json::Error> {
    let aside = Aside {
        folding: Some(folding),
        collector: None,
    };
    parse_with(text, need, aside)
}

fn parse_with(text: &str, need: &Need, aside: Aside<'_>) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Pruned(need, aside, &[]).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
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

/// Parses a whole document with a streamed plan, calling `sink` for every item in document
/// order. On a syntax error the items already handed over must be discarded by the caller.
pub(crate) fn parse_streamed<'de>(
    text: &'de str,
    plan: &ReadPlan,
    items: &mut dyn Items<'de>,
) -> Result<Streaming, serde_json::Error> {
    debug_assert!(plan.streamed);
    let mut de = serde_json::Deserializer::from_str(text);
    let mut ctx = Ctx {
        path: Vec::new(),
        items,
        slots: Vec::new(),
        repeated: false,
    };
    let parsed = Streamed {
        need: &plan.root,
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

/// Descendant searches in force: (member name, what is read of each member found).
type Rules = [(String, Need)];

/// What a pruned parse does besides building: with a [`Folding`], nodes that only folds read
/// are added to them and not kept; with a [`Collector`], the members that collecting rules
/// find are kept as text.
#[derive(Clone, Copy, Default)]
struct Aside<'a> {
    folding: Option<&'a Folding>,
    collector: Option<&'a Collector>,
}

impl Aside<'_> {
    /// Member `key` of an object, found by `rules` (and read by `base`, if not `None`):
    /// `Some` if the collector keeps it as text (`Err` if one of its rules finds it but it
    /// cannot be kept so: the parse must start again without collecting).
    fn collects<E: de::Error>(
        &self,
        base: Option<&Need>,
        rules: &Rules,
        key: &str,
    ) -> Result<bool, E> {
        let Some(c) = self.collector.filter(|c| c.names(key)) else {
            return Ok(false);
        };
        let mut found = rules.iter().filter(|(k, _)| k == key);
        match (found.next(), found.next()) {
            (None, _) => Ok(false),
            (Some((_, r)), None) if base.is_none() && r.collect.is_some() => Ok(true),
            _ => Err(c.spoil()),
        }
    }

    /// The collector, where a search it collects for is in force at a node read whole with
    /// `need` below `rules` (the subtree may hold members the search finds).
    fn watching(&self, need: &Need, rules: &Rules) -> Option<&Collector> {
        self.collector
            .filter(|c| rules.iter().chain(&need.deep).any(|(k, _)| c.names(k)))
    }
}

/// Builds what a [`Need`] reads, with what [`Aside`] does besides. `Rules` are descendant
/// searches from above: every member they name gets their need too, and below members
/// nothing else reads they are looked for by [`Descend`], which keeps only what leads to one.
#[derive(Clone, Copy)]
struct Pruned<'n, 'a, 'r>(&'n Need, Aside<'a>, &'r Rules);

/// What the rules give member `key`: `base` merged with the needs of the rules that name it
/// (`None` where nothing reads it).
fn with_rules<'a>(base: Option<&'a Need>, rules: &Rules, key: &str) -> Option<Cow<'a, Need>> {
    let mut found = rules.iter().filter(|(k, _)| k == key).peekable();
    if found.peek().is_none() {
        return base.map(Cow::Borrowed);
    }
    let mut n = base.cloned().unwrap_or_default();
    for (_, r) in found {
        n.merge(r);
    }
    n.finish();
    Some(Cow::Owned(n))
}

/// The rules in force below a node: those from above and its own.
fn rules_below<'a>(above: &'a Rules, need: &Need) -> Cow<'a, Rules> {
    if need.deep.is_empty() {
        Cow::Borrowed(above)
    } else {
        Cow::Owned(above.iter().chain(&need.deep).cloned().collect())
    }
}

/// Looks below a node nothing reads for the members descendant searches name: `None` where
/// there is none, else the node with only the way to them.
struct Descend<'a, 'r>(Aside<'a>, &'r Rules);

impl<'de> DeserializeSeed<'de> for Descend<'_, '_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Descend<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if self.0.collects(None, self.1, &key)? {
                let v = keep(self.0, map.next_value()?, self.1)?;
                out.push((key.into_owned(), v));
                continue;
            }
            match with_rules(None, self.1, &key) {
                Some(n) => {
                    let v = map.next_value_seed(Pruned(&n, self.0, self.1))?;
                    out.push((key.into_owned(), v));
                }
                None => {
                    if let Some(v) = map.next_value_seed(Descend(self.0, self.1))? {
                        out.push((key.into_owned(), v));
                    }
                }
            }
        }
        Ok((!out.is_empty()).then_some(Value::Object(sized(out))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Descend(self.0, self.1))? {
            out.extend(v);
        }
        Ok((!out.is_empty()).then_some(Value::Array(out)))
    }
}

/// Keeps a member's value as text in the collector (`rules` were in force where it was
/// found); its place in the tree holds a placeholder.
fn keep<E: de::Error>(aside: Aside<'_>, raw: &RawValue, rules: &Rules) -> Result<Value, E> {
    let c = aside
        .collector
        .expect("only a collecting parse keeps members");
    c.keep(raw.get(), rules.iter().map(|(k, _)| k.as_str()))
}

impl Pruned<'_, '_, '_> {
    /// Hands `v` to the folds of this node, if any.
    fn fold(&self, v: Value) -> Value {
        if let Some(f) = self.1.folding
            && !self.0.folds.is_empty()
        {
            f.add(&self.0.folds, &v);
        }
        v
    }

    /// Whether a child read with `child` is left out of the tree (only folds read it).
    fn leaves_out(&self, child: &Need) -> bool {
        self.1.folding.is_some() && child.fold_only
    }
}

impl<'de> DeserializeSeed<'de> for Pruned<'_, '_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.all {
            if let Some(c) = self.1.watching(self.0, self.2) {
                let raw = <&RawValue>::deserialize(d)?;
                let searched = self.2.iter().chain(&self.0.deep);
                c.check_whole(raw.get(), searched.map(|(k, _)| k.as_str()))?;
                return reparse(raw, Whole);
            }
            Whole.deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

/// Builds a whole subtree as `Value::deserialize` does, with each object and array sized to
/// what it holds instead of grown by doubling: a tree of many small objects costs much less
/// (an object of one member took room for three).
struct Whole;

impl<'de> DeserializeSeed<'de> for Whole {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Whole {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key.into_owned(), map.next_value_seed(Whole)?));
        }
        Ok(Value::Object(sized(members)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Whole)? {
            out.push(v);
        }
        out.shrink_to_fit();
        Ok(Value::Array(out))
    }
}

/// An object of exactly these members, in this order; a repeated name keeps its first place
/// and its last value, as inserting them one by one does.
fn sized(members: Vec<(String, Value)>) -> Map<String, Value> {
    members.into_iter().collect()
}

/// Re-reads an element kept as raw text once its array's length was known.
fn reparse<'de, S, E>(raw: &'de RawValue, seed: S) -> Result<S::Value, E>
where
    S: DeserializeSeed<'de>,
    E: de::Error,
{
    let mut de = serde_json::Deserializer::from_str(raw.get());
    seed.deserialize(&mut de).map_err(E::custom)
}

impl<'de> Visitor<'de> for Pruned<'_, '_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    // Scalars are built as `Whole` builds them, then handed to this node's folds.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Whole.visit_bool(v).map(|v| self.fold(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Whole.visit_i64(v).map(|v| self.fold(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Whole.visit_u64(v).map(|v| self.fold(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Whole.visit_f64(v).map(|v| self.fold(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Whole.visit_str(v).map(|v| self.fold(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Whole.visit_string(v).map(|v| self.fold(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Whole.visit_unit().map(|v| self.fold(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Whole.visit_none().map(|v| self.fold(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        // With folds, a member met twice on their way would be counted twice where the tree
        // keeps only the last: stop, and let the document be read without folds.
        let mut named = KeysSeen::default();
        let mut others = std::collections::HashSet::new();
        let rules = rules_below(self.2, self.0);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if self.1.collects(self.0.member(&key), &rules, &key)? {
                let v = keep(self.1, map.next_value()?, &rules)?;
                out.push((key.into_owned(), v));
                continue;
            }
            match with_rules(self.0.member(&key), &rules, &key) {
                Some(n) => {
                    if let Some(f) = self.1.folding
                        && n.has_folds
                    {
                        let again = match self.0.keys.iter().position(|(k, _)| *k == *key) {
                            Some(p) => named.repeat(p),
                            None => !others.insert(key.to_string()),
                        };
                        if again {
                            f.repeated.set(true);
                            return Err(de::Error::custom(
                                "repeated member on the way to folded nodes",
                            ));
                        }
                    }
                    let v = map.next_value_seed(Pruned(&n, self.1, &rules))?;
                    if !self.leaves_out(&n) {
                        out.push((key.into_owned(), v));
                    }
                }
                None if !rules.is_empty() => {
                    if let Some(v) = map.next_value_seed(Descend(self.1, &rules))? {
                        out.push((key.into_owned(), v));
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self.fold(Value::Object(sized(out))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let need = self.0;
        let mut out = Vec::new();
        let rules = rules_below(self.2, need);
        if !rules.is_empty() {
            // Descendant searches look into every element: none is left unread. Elements
            // keep their places where an index reads them; elsewhere only those that lead to
            // something are kept.
            let positions = !need.indexes.is_empty();
            counted_elements(&mut seq, None, |i, len, raw| {
                match need.element(i, len) {
                    Some(n) => out.push(reparse(raw, Pruned(&n, self.1, &rules))?),
                    None => match reparse(raw, Descend(self.1, &rules))? {
                        Some(v) => out.push(v),
                        None if positions => out.push(Value::Null),
                        None => {}
                    },
                }
                Ok(())
            })?;
            return Ok(self.fold(Value::Array(out)));
        }
        if need.from_end {
            let mut next = 0;
            // Read by indexes from both ends and nothing else: the elements between the
            // last one counted from the start and the first one counted from the end are
            // not kept (`[0]` and `[-1]` of what is kept are those of the array).
            let ends = (need.any.is_none() && need.tail.is_none()).then(|| {
                let head = need.indexes.iter().map(|(i, _)| *i + 1).max().unwrap_or(0);
                let tail = need
                    .indexes
                    .iter()
                    .map(|(i, _)| (-*i).max(0))
                    .max()
                    .unwrap_or(0);
                (head.max(0) as usize, tail as usize)
            });
            counted_elements(&mut seq, need.tail, |i, len, raw| {
                // Only counted from the end: the elements before the tail are not kept at
                // all (`[-1]` of the tail is `[-1]` of the array), so a long array costs
                // its tail, not a null per element.
                if need.tail.is_some() && out.is_empty() {
                    next = i;
                }
                if let Some((head, tail)) = ends
                    && len > head + tail
                    && i >= head
                {
                    if i < len - tail {
                        return Ok(());
                    }
                    next = next.max(len - tail);
                }
                // Left-out elements before this one keep their places as nulls.
                out.resize(i - next + out.len(), Value::Null);
                next = i + 1;
                out.push(match need.element(i, len) {
                    Some(n) => reparse(raw, Pruned(&n, self.1, &[]))?,
                    None => Value::Null,
                });
                Ok(())
            })?;
            return Ok(self.fold(Value::Array(out)));
        }
        // Without indexes an element nobody reads is left out; with them it keeps its place,
        // up to the last index read (past it, no index can reach, unless a wildcard does).
        let last = match need.any {
            None => need.indexes.iter().map(|(i, _)| *i).max(),
            Some(_) => Some(i64::MAX),
        };
        let placeholders =
            |i: usize| !need.indexes.is_empty() && last.is_some_and(|l| i as i64 <= l);
        in_order(&mut seq, |seq, i| match need.element(i, 0) {
            Some(n) => match seq.next_element_seed(Pruned(&n, self.1, &[]))? {
                Some(v) => {
                    // Left out where only folds read it and no index counts positions.
                    if !(self.leaves_out(&n) && need.indexes.is_empty()) {
                        out.push(v);
                    }
                    Ok(true)
                }
                None => Ok(false),
            },
            None => {
                let skipped = seq.next_element::<IgnoredAny>()?.is_some();
                if skipped && placeholders(i) {
                    out.push(Value::Null);
                }
                Ok(skipped)
            }
        })?;
        Ok(self.fold(Value::Array(out)))
    }
}

/// A member name, borrowed from the input when it has no escapes.
pub(crate) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
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
            let v = Pruned(need, Aside::default(), &[]).deserialize(d)?;
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

/// Reads an array front to back: `element(seq, i)` reads element `i` (or meets the end) and
/// says whether there was one.
fn in_order<'de, A: SeqAccess<'de>>(
    seq: &mut A,
    mut element: impl FnMut(&mut A, usize) -> Result<bool, A::Error>,
) -> Result<(), A::Error> {
    let mut i = 0;
    while element(seq, i)? {
        i += 1;
    }
    Ok(())
}

/// Longest tail kept without allocating (by both item readers).
pub(crate) const TAIL_MAX: usize = 8;

/// Reads an array whose reader counts from the end: every element is kept as raw text (only
/// the last `tail` when that is all that can be read), then `f` gets each kept element with
/// its index and the array's length, in order.
fn counted_elements<'de, A, F>(seq: &mut A, tail: Option<usize>, mut f: F) -> Result<(), A::Error>
where
    A: SeqAccess<'de>,
    F: FnMut(usize, usize, &'de RawValue) -> Result<(), A::Error>,
{
    match tail {
        Some(k) if (1..=TAIL_MAX).contains(&k) => {
            let mut ring: [Option<&'de RawValue>; TAIL_MAX] = [None; TAIL_MAX];
            let mut len = 0;
            while let Some(r) = seq.next_element()? {
                ring[len % k] = Some(r);
                len += 1;
            }
            for i in len.saturating_sub(k)..len {
                if let Some(r) = ring[i % k] {
                    f(i, len, r)?;
                }
            }
        }
        _ => {
            let mut raw: Vec<&'de RawValue> = Vec::new();
            while let Some(r) = seq.next_element()? {
                raw.push(r);
            }
            let len = raw.len();
            for (i, r) in raw.into_iter().enumerate() {
                f(i, len, r)?;
            }
        }
    }
    Ok(())
}

/// Reads a slotted item: finds each node a lookup leads to and keeps its raw JSON in its
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
        let mut seen = super::plan::KeysSeen::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `serde_json` builds of `raw`, and what a slot holds; `plain` says whether the
    /// slot's number was built without `serde_json`.
    fn same_as_serde(raw: &str) -> Result<bool, TestCaseError> {
        let plain = plain_number(raw).is_some();
        let mut out = Vec::new();
        let built = build_slots(&[Some(raw)], &mut out, true).map(|()| out[0].clone().unwrap());
        match serde_json::from_str::<Value>(raw) {
            Ok(v) => prop_assert_eq!(built.unwrap(), v, "{}", raw),
            Err(_) => prop_assert!(built.is_err() && !plain, "{}", raw),
        }
        Ok(plain)
    }

    #[test]
    fn numbers_built_without_serde_are_the_ones_serde_builds() {
        let plain = [
            "0",
            "7",
            "-7",
            "1.50",
            "4365.883",
            "-0.5",
            "0.1",
            "1844674407370955161",
            "-922337203685477580",
            "900719925474099.2",
            "1.234567890123456",
            "0.000000000000000001",
        ];
        for raw in plain {
            assert!(same_as_serde(raw).unwrap(), "{raw}");
        }
        let left = [
            "-0",
            "-0.0",
            "18446744073709551615",
            "1.2345678901234567890",
            "18446744073709551616",
            "-9223372036854775808",
            "12345678901234567890.5",
            "9007199254740993.5",
            "0.00000000000000000000001",
            "1e3",
            "1.5E-2",
            "\"7\"",
            "null",
            "true",
            "[1]",
        ];
        for raw in left {
            assert!(!same_as_serde(raw).unwrap(), "{raw}");
        }
    }

    proptest! {
        #[test]
        fn any_number_text_builds_as_serde_builds_it(
            negative in any::<bool>(),
            int in "[0-9]{1,20}",
            frac in proptest::option::of("[0-9]{1,24}"),
            float in any::<f64>(),
        ) {
            let int = match int.trim_start_matches('0') {
                "" => "0",
                t => t,
            };
            let sign = if negative { "-" } else { "" };
            let text = match &frac {
                Some(f) => format!("{sign}{int}.{f}"),
                None => format!("{sign}{int}"),
            };
            same_as_serde(&text)?;
            same_as_serde(&float.to_string())?;
            same_as_serde(&format!("{float:?}"))?;
        }
    }
}
