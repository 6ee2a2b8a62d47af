//! The label values of one series in one allocation.
//!
//! A snapshot holds one of these per series, so their size is most of jsonbridge's resident
//! memory between polls, and building and freeing them is a good part of a poll. Values are
//! stored one after another, each after its length in bytes, written in ASCII bytes of 6 bits
//! each (0x40 set on all but the last): the text stays valid UTF-8, a length under 64 takes
//! one byte, and the encoding is unambiguous whatever the values contain.

use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<str>);

impl Labels {
    /// The values in order.
    pub fn iter(&self) -> Values<'_> {
        Values(&self.0)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    /// These values followed by `last`.
    pub fn with(&self, last: &str) -> Labels {
        let mut b = LabelsBuilder::default();
        b.buf.push_str(&self.0);
        b.push(last);
        b.finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Labels {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut b = LabelsBuilder::default();
        for v in iter {
            b.push(v.as_ref());
        }
        b.finish()
    }
}

impl From<Vec<String>> for Labels {
    fn from(v: Vec<String>) -> Self {
        v.iter().collect()
    }
}

/// Compares value by value, as a tuple of strings would (not by the encoded text).
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        // Checking the order of a large poll's series compares a pair per series, most of
        // them told apart by their first value: compared as bytes, without an iterator's
        // steps.
        let (mut a, mut b) = (self.iter(), other.iter());
        loop {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) => match x.as_bytes().cmp(y.as_bytes()) {
                    Ordering::Equal => {}
                    unequal => return unequal,
                },
                (x, y) => return x.is_some().cmp(&y.is_some()),
            }
        }
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

pub struct Values<'a>(&'a str);

impl<'a> Iterator for Values<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.0.as_bytes();
        let first = *bytes.first()?;
        if first & 0x40 == 0 {
            // A length under 64, in one byte: most values.
            let value = &self.0[1..1 + usize::from(first)];
            self.0 = &self.0[1 + usize::from(first)..];
            return Some(value);
        }
        let mut len = 0usize;
        let mut at = 0;
        loop {
            let b = *bytes.get(at)?;
            len = (len << 6) | usize::from(b & 0x3f);
            at += 1;
            if b & 0x40 == 0 {
                break;
            }
        }
        let value = &self.0[at..at + len];
        self.0 = &self.0[at + len..];
        Some(value)
    }
}

/// Builds [`Labels`] value by value; reusable, so a poll allocates once per series.
#[derive(Default)]
pub struct LabelsBuilder {
    buf: String,
    /// Where the value being written in pieces starts (see [`LabelsBuilder::value`]).
    mark: usize,
}

/// The length of a value as [`Labels`] writes it before the value: six bits per byte, most
/// significant first, 0x40 set on all but the last. ASCII, so always valid UTF-8.
fn length_prefix(len: usize, out: &mut String) {
    let groups = (usize::BITS - len.leading_zeros()).div_ceil(6).max(1);
    for g in (0..groups).rev() {
        let bits = ((len >> (6 * g)) & 0x3f) as u8;
        let more = if g > 0 { 0x40 } else { 0 };
        out.push(char::from(bits | more));
    }
}

impl LabelsBuilder {
    pub fn push(&mut self, value: &str) {
        length_prefix(value.len(), &mut self.buf);
        self.buf.push_str(value);
    }

    /// The buffer to append the next value to, in pieces; [`LabelsBuilder::commit`] then
    /// ends it. Written in place, after a byte kept for its length: a value is copied once,
    /// not once more from a buffer of its own (a good part of a large poll's labels).
    pub fn value(&mut self) -> &mut String {
        self.mark = self.buf.len();
        self.buf.push('\0');
        &mut self.buf
    }

    /// Ends the value appended since [`LabelsBuilder::value`].
    pub fn commit(&mut self) {
        let len = self.buf.len() - self.mark - 1;
        if len < 64 {
            // SAFETY: the byte at `mark` is the ASCII placeholder `value` pushed; another
            // ASCII byte in its place keeps the text UTF-8.
            unsafe { self.buf.as_bytes_mut()[self.mark] = len as u8 };
        } else {
            let mut prefix = String::new();
            length_prefix(len, &mut prefix);
            self.buf.replace_range(self.mark..self.mark + 1, &prefix);
        }
    }

    /// The labels pushed so far; the builder is empty again.
    pub fn finish(&mut self) -> Labels {
        let l = Labels(self.buf.as_str().into());
        self.buf.clear();
        l
    }

    /// Forgets the values pushed so far (an item that failed half-way).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_whatever_they_hold() {
        let long = "x".repeat(70_000);
        let vals = [
            "",
            "a",
            "10:x",
            ":",
            "é漢",
            "\0\n\"",
            "1",
            &"y".repeat(64),
            &long,
        ];
        let l: Labels = vals.iter().collect();
        assert_eq!(l.iter().collect::<Vec<_>>(), vals);
        assert_eq!(l.len(), vals.len());
        assert_eq!(l.with("z").to_vec().last().unwrap(), "z");
        assert!(Labels::default().is_empty());
        assert_eq!(Labels::default().iter().count(), 0);
    }

    #[test]
    fn order_and_equality_are_those_of_the_values() {
        let l = |v: &[&str]| v.iter().collect::<Labels>();
        // Encoded, "2:ab" > "10:..." would flip these; tuple order must win.
        assert!(l(&["ab", "x"]) < l(&["abcdefghijk", "a"]));
        assert!(l(&["a", "b\u{0}c"]) != l(&["a\u{0}b", "c"]));
        assert!(l(&["b"]) > l(&["a", "z"]));
        assert!(l(&["a"]) < l(&["a", ""]));
        let mut b = LabelsBuilder::default();
        let v = b.value();
        v.push_str("x-");
        v.push('1');
        b.commit();
        b.push("y");
        assert_eq!(b.finish(), l(&["x-1", "y"]));
    }

    #[test]
    fn values_written_in_pieces_are_those_pushed_whole() {
        // Lengths around each size of the length prefix, empty first and last.
        let vals: Vec<String> = [0, 1, 63, 64, 65, 4095, 4096, 70_000, 0]
            .iter()
            .map(|n| "é".repeat(n / 2) + &"z".repeat(n % 2))
            .collect();
        let mut b = LabelsBuilder::default();
        for v in &vals {
            let out = b.value();
            let chars: Vec<char> = v.chars().collect();
            for piece in chars.chunks(3) {
                out.extend(piece);
            }
            b.commit();
        }
        assert_eq!(b.finish(), vals.iter().collect::<Labels>());
    }
}
