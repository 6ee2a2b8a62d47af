//! Reading a slotted item without `serde_json` (for each item that [`super::scan`] found,
//! before its slots are built): one pass over the item's bytes that checks its syntax and
//! keeps the raw text of the nodes its plan marks as slots.
//!
//! Guarantee: where [`read`] returns `Some`, the item is valid JSON and its slots are the
//! ones [`super::stream::fill_slots`] gives. It covers what APIs send almost always: names
//! and strings without escapes, numbers, literals, moderate nesting. On anything else (an
//! escape, a repeated member the plan reads, deep nesting, a syntax error) it returns
//! `None` and the item is read by `serde_json`, which builds what is unusual and words the
//! error. Being wrong is never an option here; being unsure is cheap.

use super::need::Need;
use super::parse::TAIL_MAX;
pub(crate) use super::simd::NumberClasses;
#[cfg(target_arch = "x86_64")]
use super::simd::{self, block};

/// Deeper items are left to `serde_json`, whose own limit (128) then applies.
const MAX_DEPTH: usize = 32;

/// Reads the item that starts at `start` in `text` into `slots`, one per slot of `need`, its
/// node in the plan: where it ends, or `None` to read it with `serde_json` instead (the
/// slots are then left half filled).
pub(crate) fn read<'de>(
    text: &'de str,
    start: usize,
    need: &Need,
    slots: &mut [Option<&'de str>],
) -> Option<usize> {
    slots.fill(None);
    let mut r = Reader {
        text,
        b: text.as_bytes(),
        pos: start,
        depth: 0,
        slots,
    };
    r.value(need)?;
    Some(r.pos)
}

struct Reader<'de, 's> {
    text: &'de str,
    b: &'de [u8],
    pos: usize,
    depth: usize,
    slots: &'s mut [Option<&'de str>],
}

impl<'de> Reader<'de, '_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `c` after optional whitespace.
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// At the first byte of a value: reads what `need` reads of it, skips the rest.
    fn value(&mut self, need: &Need) -> Option<()> {
        if need.all {
            let start = self.pos;
            self.skip_inline()?;
            let raw = &self.text[start..self.pos];
            need.slots.iter().for_each(|s| self.slots[*s] = Some(raw));
            return Some(());
        }
        match self.peek()? {
            b'{' => self.object(need),
            b'[' => self.array(need),
            // `serde_json` parses a scalar it is asked about even when nothing reads it, and
            // refuses numbers beyond f64's range there: such numbers are left to it.
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                let exact = self.number()?;
                (exact && self.pos - start <= 20).then_some(())
            }
            _ => self.skip(),
        }
    }

    fn nest(&mut self) -> Option<()> {
        self.depth += 1;
        self.pos += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// After the members' or elements' opening bracket: `true` if the next is the closing
    /// one (consumed).
    fn empty(&mut self, close: u8) -> bool {
        self.ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
            self.depth -= 1;
        }
        empty
    }

    /// After a member or element: `true` if another follows (comma consumed), `false` at the
    /// closing bracket (consumed).
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.pos += 1;
        if c == b',' {
            self.ws();
            Some(true)
        } else if c == close {
            self.depth -= 1;
            Some(false)
        } else {
            None
        }
    }

    fn object(&mut self, need: &Need) -> Option<()> {
        self.nest()?;
        if self.empty(b'}') {
            return Some(());
        }
        let mut seen = super::need::KeysSeen::default();
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            self.ws();
            let child = match need.keys.iter().position(|(k, _)| k.as_bytes() == key) {
                Some(p) => {
                    // The same test as `serde_json`'s reader: a repeated member empties what
                    // the first one filled, which is left to that reader.
                    if seen.repeat(p) {
                        return None;
                    }
                    Some(&need.keys[p].1)
                }
                None => need.any.as_deref(),
            };
            match child {
                Some(n) => self.value(n)?,
                None => self.skip_inline()?,
            }
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    fn array(&mut self, need: &Need) -> Option<()> {
        if need.from_end {
            return self.array_from_end(need);
        }
        self.nest()?;
        if self.empty(b']') {
            return Some(());
        }
        let mut i = 0;
        loop {
            match need.element(i, 0) {
                Some(n) => self.value(&n)?,
                None => self.skip_inline()?,
            }
            i += 1;
            if !self.more(b']')? {
                return Some(());
            }
        }
    }

    /// An array whose reader counts from the end: every element is checked and delimited
    /// first (only the last `tail` kept when that is all that is read), then the kept ones
    /// are read again knowing the length.
    fn array_from_end(&mut self, need: &Need) -> Option<()> {
        let tail = need.tail.filter(|k| (1..=TAIL_MAX).contains(k));
        let mut ring = [(0, 0); TAIL_MAX];
        let mut all = Vec::new();
        let mut len = 0;
        self.nest()?;
        if let Some((close, commas)) = self.numbers() {
            let base = self.pos;
            let (mut from, mut rest) = (base, commas);
            loop {
                let to = base
                    + match rest {
                        0 => close,
                        r => r.trailing_zeros() as usize,
                    };
                match tail {
                    Some(k) => ring[len % k] = (from, to),
                    None => all.push((from, to)),
                }
                len += 1;
                if rest == 0 {
                    break;
                }
                from = to + 1;
                rest &= rest - 1;
            }
            self.pos = base + close + 1;
            self.depth -= 1;
        } else if !self.empty(b']') {
            loop {
                let start = self.pos;
                self.skip_inline()?;
                match tail {
                    Some(k) => ring[len % k] = (start, self.pos),
                    None => all.push((start, self.pos)),
                }
                len += 1;
                if !self.more(b']')? {
                    break;
                }
            }
        }
        let end = self.pos;
        let first = tail.map_or(0, |k| len.saturating_sub(k));
        for i in first..len {
            let (start, stop) = match tail {
                Some(k) => ring[i % k],
                None => all[i],
            };
            match need.element(i, len) {
                // Checked and delimited above: its text is the slot.
                Some(n) if n.all => {
                    let raw = &self.text[start..stop];
                    n.slots.iter().for_each(|s| self.slots[*s] = Some(raw));
                }
                Some(n) => {
                    self.pos = start;
                    self.depth += 1;
                    self.value(&n)?;
                    self.depth -= 1;
                    debug_assert_eq!(self.pos, stop);
                }
                None => {}
            }
        }
        self.pos = end;
        Some(())
    }

    /// A member name and its closing quote; `None` if it has escapes.
    fn key(&mut self) -> Option<&'de [u8]> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos + 1;
        self.string()?;
        Some(&self.b[start..self.pos - 1])
    }

    /// Checks the value here and moves past it.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' => {
                self.nest()?;
                if self.empty(b'}') {
                    return Some(());
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    self.string()?;
                    self.eat(b':')?;
                    self.ws();
                    self.skip_inline()?;
                    if !self.more(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                self.nest()?;
                if let Some((close, _)) = self.numbers() {
                    self.pos += close + 1;
                    self.depth -= 1;
                    return Some(());
                }
                if self.empty(b']') {
                    return Some(());
                }
                loop {
                    self.skip_inline()?;
                    if !self.more(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// [`Self::skip`], with the members and elements most skipped (numbers and strings) in
    /// the caller's loop instead of a call each.
    #[inline(always)]
    fn skip_inline(&mut self) -> Option<()> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b'"' => self.string(),
            _ => self.skip(),
        }
    }

    /// Just past an array's opening bracket: if the array is plain numbers (no exponent),
    /// commas and nothing else, and ends within 64 bytes, where its closing bracket is from
    /// here and a bit for each comma. Settles most arrays of numbers with a few masks
    /// instead of a step per byte; `None` (anything else, or too near the end of the body)
    /// leaves the array to the byte-by-byte reader, which accepts the same texts.
    #[inline(always)]
    fn numbers(&self) -> Option<(usize, u64)> {
        #[cfg(target_arch = "x86_64")]
        if self.pos + 64 <= self.b.len() {
            let c = simd::number_classes(block(self.b, self.pos));
            return numbers_in(&c);
        }
        None
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    /// At an opening quote: moves past the closing one. `None` on an escape (decoding them is
    /// left to `serde_json`) or a control character (invalid). The text is valid UTF-8.
    #[inline(always)]
    fn string(&mut self) -> Option<()> {
        let from = self.pos + 1;
        let len = special(&self.b[from..])?;
        (self.b[from + len] == b'"').then(|| self.pos = from + len + 1)
    }

    /// At a number's first byte: moves past it if it follows JSON's grammar. `true` when it
    /// has no exponent.
    #[inline(always)]
    fn number(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        #[cfg(target_arch = "x86_64")]
        if i + 16 <= b.len() {
            // Most numbers are digits, maybe a fraction, and end within 16 bytes: one look
            // at which of those bytes are digits settles them.
            let other = !simd::digits(block(b, i));
            let int = other.trailing_zeros() as usize;
            if (1..15).contains(&int) && (int == 1 || b[i] != b'0') {
                match b[i + int] {
                    b'.' => {
                        let frac = (other >> (int + 1)).trailing_zeros() as usize;
                        let end = i + int + 1 + frac;
                        if frac > 0 && end < i + 16 && !matches!(b[end], b'e' | b'E') {
                            self.pos = end;
                            return Some(true);
                        }
                    }
                    b'e' | b'E' => {}
                    _ => {
                        self.pos = i + int;
                        return Some(true);
                    }
                }
            }
        }
        self.number_slowly(i)
    }

    /// [`Self::number`] past its sign, byte by byte.
    #[cold]
    #[inline(never)]
    fn number_slowly(&mut self, mut i: usize) -> Option<bool> {
        let b = self.b;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(b, i + 1),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(b, i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        let exact = !matches!(b.get(i), Some(b'e' | b'E'));
        if !exact {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(b, i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.pos = i;
        Some(exact)
    }
}

/// [`Reader::numbers`] on the classes of the 64 bytes after an opening bracket: JSON's
/// grammar for `[n, n, ...]` with `n = -?(0|[1-9][0-9]*)(.[0-9]+)?`, with no whitespace,
/// checked on the masks.
fn numbers_in(c: &NumberClasses) -> Option<(usize, u64)> {
    let close = c.close.trailing_zeros() as usize;
    if close == 0 || close == 64 {
        return None;
    }
    // Every byte before the closing bracket is a digit, a dot, a comma or a minus.
    let before = (1u64 << close) - 1;
    if (c.digit | c.dot | c.comma | c.minus) & before != before {
        return None;
    }
    let (digit, zero, dot, comma, minus) = (
        c.digit & before,
        c.zero & before,
        c.dot & before,
        c.comma & before,
        c.minus & before,
    );
    // Where numbers start: the first byte, and after each comma (the closing bracket's
    // place too, after a trailing comma, which then fails as no digit).
    let starts = 1 | comma << 1;
    // A number's first digit: where it starts, or after its minus.
    let first = (starts & !minus) | minus << 1;
    let fraction_ends = digit.wrapping_add(dot << 1) & !digit;
    let ok = comma & !(digit << 1) == 0 // a comma follows a digit
        && digit >> (close - 1) & 1 == 1 // and so does the closing bracket
        && minus & !starts == 0 // a minus only opens a number
        && first & !digit == 0 // whose first character after it is a digit
        && (first & zero) << 1 & digit == 0 // with no digit after a leading zero
        && dot & !(digit << 1) == 0 // a dot follows a digit
        && (dot << 1) & !digit == 0 // and is followed by one
        && fraction_ends & dot == 0; // and the digits after it do not end at another dot
    ok.then_some((close, comma))
}

/// Where the first byte at or after `i` that is not a digit is, eight bytes at a time.
fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // Per byte below 0x80 (no carries between bytes): adding 0x50 sets the high bit from
        // '0' up, adding 0x46 from past '9'.
        let low = x & !HIGH;
        let digit = (low + ONES * 0x50) & !(low + ONES * 0x46) & !x & HIGH;
        let other = !digit & HIGH;
        if other != 0 {
            return i + other.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// Where the first quote, backslash or control character is.
pub(crate) fn special(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= b.len() {
        let m = simd::special(block(b, i));
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte's high bit is set where it is a quote, a backslash or below 0x20. The
        // subtraction's borrows only reach bytes above a match, so the lowest is exact.
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote
            | slash.wrapping_sub(ONES) & !slash
            | x.wrapping_sub(ONES * 0x20) & !x)
            & HIGH;
        if found != 0 {
            return Some(i + found.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|c| matches!(c, b'"' | b'\\') || *c < 0x20)
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`NumberClasses`] byte by byte.
    fn classes(b: &[u8]) -> NumberClasses {
        let mut c = NumberClasses::default();
        for (i, byte) in b.iter().take(64).enumerate() {
            let bit = 1u64 << i;
            let set = |m: &mut u64, yes: bool| *m |= if yes { bit } else { 0 };
            set(&mut c.digit, byte.is_ascii_digit());
            set(&mut c.zero, *byte == b'0');
            set(&mut c.dot, *byte == b'.');
            set(&mut c.comma, *byte == b',');
            set(&mut c.minus, *byte == b'-');
            set(&mut c.close, *byte == b']');
        }
        c
    }

    /// What `serde_json` says of the array that `text` (after its opening bracket) starts
    /// with, up to its first closing bracket: its elements if they are all numbers.
    fn serde_numbers(text: &str) -> Option<(usize, usize)> {
        let close = text.find(']')?;
        let elements: Vec<serde_json::Number> =
            serde_json::from_str(&format!("[{}]", &text[..close])).ok()?;
        Some((close, elements.len()))
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        let padded = format!("{text}{}", " ".repeat(64));
        let got = numbers_in(&classes(padded.as_bytes()));
        let plain = text.find(']').is_some_and(|c| {
            (1..64).contains(&c) && text[..c].bytes().all(|b| b"0123456789.,-".contains(&b))
        });
        match (got, serde_numbers(text)) {
            (Some((close, commas)), Some((c, n))) => {
                prop_assert_eq!(close, c, "{}", text);
                prop_assert_eq!(commas.count_ones() as usize + 1, n, "{}", text);
                for at in (0..64).filter(|i| commas >> i & 1 == 1) {
                    prop_assert_eq!(text.as_bytes()[at], b',');
                }
            }
            (Some(_), None) => prop_assert!(false, "accepted what serde_json refuses: {}", text),
            // Anything the masks leave to the byte-by-byte reader is fine, but a plain
            // array of numbers (not empty: that one is quicker to see) is what they are for.
            (None, Some(_)) => prop_assert!(!plain, "a plain array left: {}", text),
            (None, None) => {}
        }
        #[cfg(target_arch = "x86_64")]
        {
            let simd = simd::number_classes(block(padded.as_bytes(), 0));
            let scalar = classes(padded.as_bytes());
            prop_assert_eq!(format!("{simd:?}"), format!("{scalar:?}"));
        }
        Ok(())
    }

    #[test]
    fn arrays_of_numbers_are_settled_on_masks_as_serde_settles_them() {
        for text in [
            "1]",
            "0]",
            "-0]",
            "1,2,3]",
            "12.5,-0.25,0]",
            "10,0.0,-1.05]",
            "]",
            ",]",
            "1,]",
            ",1]",
            "1,,2]",
            "01]",
            "-01]",
            "1.]",
            ".5]",
            "1..2]",
            "1.2.3]",
            "-]",
            "--1]",
            "1-]",
            "1-2]",
            "0.5.]",
            "-.5]",
            "1e5]",
            "1 ]",
            " 1]",
            "1,-]",
            "00]",
            "0,01]",
            "1.05,2.0.1]",
            "123456789012345678901234567890]",
        ] {
            check(text).unwrap();
        }
        // Near the 64-byte edge: the bracket at 63 is read, at 64 it is not.
        check(&format!("{}]", "1".repeat(63))).unwrap();
        check(&format!("{}]", "1".repeat(64))).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn number_masks_never_disagree_with_serde(text in "[0-9.,\\-\\] e]{0,70}") {
            check(&text)?;
        }

        #[test]
        fn plain_number_arrays_are_settled_on_masks(
            numbers in prop::collection::vec(
                prop_oneof![
                    any::<i32>().prop_map(|n| n.to_string()),
                    (any::<i16>(), 0..1000u32).prop_map(|(a, b)| format!("{a}.{b}")),
                ],
                1..8,
            )
        ) {
            check(&format!("{}]", numbers.join(",")))?;
        }
    }
}
