//! Pieces both readers parse with ([`super::tree`] and [`super::stream`]): member names
//! borrowed where they can be, the keys on a path, arrays read in order or counted from the
//! end, and objects built to size.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A member name or an array position on the way from the root to an item.
#[derive(Debug, Clone)]
pub(crate) enum Key<'a> {
    Name(Cow<'a, str>),
    Index(usize),
}

impl Key<'_> {
    /// As text: the name, or the index in decimal.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Key::Name(n) => Cow::Borrowed(n),
            Key::Index(i) => Cow::Owned(i.to_string()),
        }
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

/// Reads an array front to back: `element(seq, i)` reads element `i` (or meets the end) and
/// says whether there was one.
pub(crate) fn in_order<'de, A: SeqAccess<'de>>(
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
pub(crate) fn counted_elements<'de, A, F>(
    seq: &mut A,
    tail: Option<usize>,
    mut f: F,
) -> Result<(), A::Error>
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

/// Re-reads an element kept as raw text once its array's length was known.
pub(crate) fn reparse<'de, S, E>(raw: &'de RawValue, seed: S) -> Result<S::Value, E>
where
    S: DeserializeSeed<'de>,
    E: de::Error,
{
    let mut de = serde_json::Deserializer::from_str(raw.get());
    seed.deserialize(&mut de).map_err(E::custom)
}

/// An object of exactly these members, in this order; a repeated name keeps its first place
/// and its last value, as inserting them one by one does.
pub(crate) fn sized(members: Vec<(String, Value)>) -> Map<String, Value> {
    members.into_iter().collect()
}
