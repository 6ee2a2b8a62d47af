//! Reading a document into a pruned tree: only what a [`Need`] reads is built; what only
//! folds read is handed to them ([`Folds`]); members a [`Collector`] keeps stay text.
//!
//! The tree is the one a full parse gives wherever the plan reads: members in document order
//! (a repeated member keeps its first position and last value, as `serde_json` does), and
//! arrays whose elements are looked up by index keep their length, with `null` standing for
//! the elements nobody reads.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use super::collector::Collector;
use super::need::{KeysSeen, Need};
use super::parse::{KeySeed, counted_elements, in_order, reparse, sized};

/// Where a pruned parse hands the nodes the plan folds (`Need::folds`) instead of building
/// them.
pub(crate) trait Folds {
    /// Node `v`, for the folds `ids`.
    fn add(&self, ids: &[usize], v: &Value);
    /// A member on the way to folded nodes appeared twice: the parse stops, and the document
    /// must be read without folds (only a tree tells which occurrence counts).
    fn repeated(&self);
}

/// Parses a whole document, building only what `need` (from the root) reads.
pub fn parse(text: &str, need: &Need) -> Result<Value, serde_json::Error> {
    parse_with(text, need, Aside::default())
}

/// [`parse`], handing the nodes `need` folds to `folds` instead of building them.
pub(crate) fn parse_folding(
    text: &str,
    need: &Need,
    folds: &dyn Folds,
) -> Result<Value, serde_json::Error> {
    let aside = Aside {
        folding: Some(folds),
        collector: None,
    };
    parse_with(text, need, aside)
}

/// [`parse`], keeping the members that rules marked `collect` find as text in `collector`
/// (the tree holds a placeholder for each). When they cannot all be kept so, the tree is
/// built as [`parse`] builds it and `collector` says it is spoiled.
pub(crate) fn parse_collecting(
    text: &str,
    need: &Need,
    collector: &Collector,
) -> Result<Value, serde_json::Error> {
    let aside = Aside {
        folding: None,
        collector: Some(collector),
    };
    match parse_with(text, need, aside) {
        Err(_) if collector.is_spoiled() => parse(text, need),
        parsed => parsed,
    }
}

fn parse_with(text: &str, need: &Need, aside: Aside<'_>) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Pruned(need, aside, &[]).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Builds one value read with `need` from `d` (an item the streaming reader reached).
pub(crate) fn build<'de, D: Deserializer<'de>>(need: &Need, d: D) -> Result<Value, D::Error> {
    Pruned(need, Aside::default(), &[]).deserialize(d)
}

/// Descendant searches in force: (member name, what is read of each member found).
type Rules = [(String, Need)];

/// What a pruned parse does besides building: with [`Folds`], nodes that only folds read are
/// handed to them and not kept; with a [`Collector`], the members that collecting rules find
/// are kept as text.
#[derive(Clone, Copy, Default)]
struct Aside<'a> {
    folding: Option<&'a dyn Folds>,
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
                            f.repeated();
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
