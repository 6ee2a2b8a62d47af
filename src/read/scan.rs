//! Finding items (for a consumer that reads them on several cores, `extract::parallel`):
//! the structure above a slotted plan's items is walked and checked here; each item is
//! handed to a receiver that says where it ends, by reading it or only by delimiting it with
//! [`value_end`], which counts brackets outside strings and is several times faster than
//! reading.
//!
//! Guarantee: [`walk`] succeeds only where a full parse would, provided every item it hands
//! over is parsed whole, then or later (its text is one complete JSON value). Everything between the
//! items (punctuation, member names, values nobody reads) is checked here, names and skipped
//! values by `serde_json` itself. It gives no error messages: on anything unexpected it
//! stops, and the caller reads the body again the usual way, which says what is wrong and
//! where ([`super::stream`]).

use std::borrow::Cow;

use serde::de::DeserializeSeed;
use serde_json::value::RawValue;

use super::need::{Need, Seen};
use super::parse::{Key, KeySeed};
use super::quick;
#[cfg(target_arch = "x86_64")]
use super::simd::{self, block};

/// Why a walk stopped. The body must be read the usual way instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bail {
    /// Not valid JSON here, or a shape this reader leaves to the other one.
    Other,
    /// A member on the way to items appears twice: a full parse keeps only the last one, so
    /// the items under the first must not count (the tree reader sorts that out).
    Repeated,
}

/// Whether [`walk`] can read documents for this plan: items are read into slots, and nothing
/// on the way to them is built or needs an array's length.
pub(crate) fn scannable(need: &Need) -> bool {
    need.slotted.is_some()
        || (need.items.is_empty()
            && !need.all
            && !need.from_end
            && need.children().filter(|c| c.has_items).all(scannable))
}

/// Receives each item a walk finds: its node in the plan, where it starts in the text and the
/// keys leading to it; says where it ends (reading it, or with [`value_end`]). `Err` stops
/// the walk.
pub(crate) type Found<'f, 'de, 'p> =
    &'f mut dyn FnMut(&'p Need, usize, &[Key<'de>]) -> Result<usize, Bail>;

/// Walks `text` along the plan from `root`, handing each slotted item to `found`.
pub(crate) fn walk<'de, 'p>(
    text: &'de str,
    root: &'p Need,
    found: Found<'_, 'de, 'p>,
) -> Result<(), Bail> {
    let mut w = Walker {
        text,
        b: text.as_bytes(),
        pos: 0,
        path: Vec::new(),
        found,
    };
    w.ws();
    w.value(root)?;
    w.ws();
    if w.pos == w.b.len() {
        Ok(())
    } else {
        Err(Bail::Other)
    }
}

struct Walker<'de, 'p, 'f> {
    text: &'de str,
    b: &'de [u8],
    pos: usize,
    path: Vec<Key<'de>>,
    found: Found<'f, 'de, 'p>,
}

impl<'de, 'p> Walker<'de, 'p, '_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Consumes `c` (after optional whitespace).
    fn expect(&mut self, c: u8) -> Result<(), Bail> {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Bail::Other)
        }
    }

    /// At the first byte of a value.
    fn value(&mut self, need: &'p Need) -> Result<(), Bail> {
        if need.slotted.is_some() {
            let end = (self.found)(need, self.pos, &self.path)?;
            if end <= self.pos || end > self.b.len() {
                return Err(Bail::Other);
            }
            self.pos = end;
            return Ok(());
        }
        match self.b.get(self.pos) {
            Some(b'{') => self.object(need),
            Some(b'[') => self.array(need),
            _ => self.skip(),
        }
    }

    /// Checks the value here with `serde_json` and moves past it, building nothing.
    fn skip(&mut self) -> Result<(), Bail> {
        let rest = &self.text[self.pos..];
        let mut de = serde_json::Deserializer::from_str(rest);
        let raw =
            <&RawValue as serde::Deserialize>::deserialize(&mut de).map_err(|_| Bail::Other)?;
        self.pos = raw.get().as_ptr() as usize - self.text.as_ptr() as usize + raw.get().len();
        Ok(())
    }

    /// A member name: borrowed when it has no escapes, checked by `serde_json` when it has.
    fn key(&mut self) -> Result<Cow<'de, str>, Bail> {
        if self.b.get(self.pos) != Some(&b'"') {
            return Err(Bail::Other);
        }
        let start = self.pos + 1;
        if let Some(n) = quick::special(&self.b[start..])
            && self.b[start + n] == b'"'
        {
            self.pos = start + n + 1;
            // The body is valid UTF-8 and both ends are ASCII quotes.
            return Ok(Cow::Borrowed(&self.text[start..start + n]));
        }
        let rest = &self.text[self.pos..];
        let mut de = serde_json::Deserializer::from_str(rest);
        let raw =
            <&RawValue as serde::Deserialize>::deserialize(&mut de).map_err(|_| Bail::Other)?;
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let key = KeySeed.deserialize(&mut de).map_err(|_| Bail::Other)?;
        self.pos += raw.get().len();
        Ok(Cow::Owned(key.into_owned()))
    }

    /// Past the opening bracket: whether the container closes at once (`close` consumed).
    fn empty(&mut self, close: u8) -> bool {
        self.pos += 1;
        self.ws();
        let empty = self.b.get(self.pos) == Some(&close);
        self.pos += usize::from(empty);
        empty
    }

    /// After a member or element: `true` past a comma, `false` past `close`.
    fn more(&mut self, close: u8) -> Result<bool, Bail> {
        self.ws();
        let c = self.b.get(self.pos).copied();
        self.pos += 1;
        match c {
            Some(b',') => Ok(true),
            Some(c) if c == close => Ok(false),
            _ => Err(Bail::Other),
        }
    }

    fn object(&mut self, need: &'p Need) -> Result<(), Bail> {
        if self.empty(b'}') {
            return Ok(());
        }
        let mut seen = Seen::default();
        loop {
            self.ws();
            let key = self.key()?;
            self.expect(b':')?;
            self.ws();
            match need.member(&key).filter(|n| n.has_items) {
                Some(n) => {
                    if !seen.first(need, key.clone()) {
                        return Err(Bail::Repeated);
                    }
                    self.path.push(Key::Name(key));
                    self.value(n)?;
                    self.path.pop();
                }
                None => self.skip()?,
            }
            if !self.more(b'}')? {
                return Ok(());
            }
        }
    }

    fn array(&mut self, need: &'p Need) -> Result<(), Bail> {
        if self.empty(b']') {
            return Ok(());
        }
        let mut i = 0;
        loop {
            self.ws();
            match need.element(i, 0).filter(|n| n.has_items) {
                // Without indexes from the end an element's need is always the plan's own.
                Some(Cow::Borrowed(n)) => {
                    self.path.push(Key::Index(i));
                    self.value(n)?;
                    self.path.pop();
                }
                Some(Cow::Owned(_)) => return Err(Bail::Other),
                None => self.skip()?,
            }
            if !self.more(b']')? {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// Where the value starting at `at` ends, judged by quotes and brackets only: the text in
/// between is not checked. `None` if the text ends first or nothing value-like starts there.
pub(crate) fn value_end(b: &[u8], at: usize) -> Option<usize> {
    match b.get(at)? {
        b'{' | b'[' => container_end(b, at),
        b'"' => {
            let mut i = at + 1;
            loop {
                i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
                if b[i] == b'"' {
                    return Some(i + 1);
                }
                i += 2;
            }
        }
        _ => {
            let n = b[at..]
                .iter()
                .position(|c| matches!(c, b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - at);
            (n > 0).then_some(at + n)
        }
    }
}

/// Bracket counting state, carried from one block of bytes to the next.
struct Depth {
    depth: usize,
    in_string: bool,
    /// The byte before this position was a backslash inside a string: this one is escaped.
    escaped_until: usize,
}

impl Depth {
    /// Looks at the byte `c` at `p`, one of `"`, `\`, brackets (others change nothing).
    /// `true` when the outermost container closes there.
    #[inline(always)]
    fn at(&mut self, p: usize, c: u8) -> bool {
        if p < self.escaped_until {
            return false;
        }
        match (self.in_string, c) {
            (true, b'"') => self.in_string = false,
            (true, b'\\') => self.escaped_until = p + 2,
            (true, _) => {}
            (false, b'"') => self.in_string = true,
            (false, b'{' | b'[') => self.depth += 1,
            (false, b'}' | b']') => {
                // Unbalanced text ends the count early; the parse of the item will refuse it.
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// Where the array or object opening at `at` closes.
fn container_end(b: &[u8], at: usize) -> Option<usize> {
    let mut d = Depth {
        depth: 0,
        in_string: false,
        escaped_until: 0,
    };
    let mut i = at;
    #[cfg(target_arch = "x86_64")]
    while i + 64 <= b.len() {
        let simd::Classes {
            quotes,
            backslashes,
            opens,
            closes,
        } = simd::classes(block(b, i));
        if backslashes == 0 && d.escaped_until <= i {
            // Without escapes, a byte is inside a string when an odd number of quotes
            // precede or are it (an opening quote counts as inside, a closing one not).
            let mut inside = quotes;
            for shift in [1, 2, 4, 8, 16, 32] {
                inside ^= inside << shift;
            }
            // The last byte's bit counts all the block's quotes.
            let odd = inside >> 63 == 1;
            if d.in_string {
                inside = !inside;
            }
            d.in_string ^= odd;
            let opens = opens & !inside;
            let mut m = opens | (closes & !inside);
            while m != 0 {
                let p = m.trailing_zeros();
                m &= m - 1;
                if opens & (1 << p) != 0 {
                    d.depth += 1;
                } else {
                    d.depth = d.depth.saturating_sub(1);
                    if d.depth == 0 {
                        return Some(i + p as usize + 1);
                    }
                }
            }
        } else {
            let mut m = quotes | backslashes | opens | closes;
            while m != 0 {
                let p = i + m.trailing_zeros() as usize;
                m &= m - 1;
                if d.at(p, b[p]) {
                    return Some(p + 1);
                }
            }
        }
        i += 64;
    }
    while i < b.len() {
        if d.at(i, b[i]) {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_where_a_parser_says() {
        // Long enough for several 16-byte blocks, with brackets and escapes inside strings
        // and a string ending just before a block boundary.
        let cases = [
            r#"{"a": "}]", "b": [1, {"c": "\"{"}], "d": "\\", "e": {}}"#,
            r#"[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]"#,
            r#"{"k":"0123456789abc\\","x":[{"y":"\\\"]"}]}"#,
            r#""a \" string with ] and }""#,
            "-12.5e3",
            "true",
            r#"["éü", {"ключ": "значение"}, "\u005d"]"#,
        ];
        // Long enough for several 64-byte blocks: strings and brackets across their edges,
        // blocks with escapes and without, a string that fills a block.
        let items: Vec<String> = (0..12)
            .map(|i| match i % 4 {
                0 => format!(r#"{{"n": "p{i} ]}}", "v": [{i}, {{"w": [[]]}}]}}"#),
                1 => format!(r#"{{"n": "q\"{{{i}", "x": ["]", "\\"]}}"#),
                2 => format!(r#"["{}", {{}}]"#, "{[ ".repeat(30)),
                _ => format!(r#"{{"s": "{}\"]", "t": {i}}}"#, "x".repeat(70)),
            })
            .collect();
        let long = format!("[{}]", items.join(", "));
        let mut cases = cases.to_vec();
        cases.push(&long);
        cases.extend(items.iter().map(String::as_str));
        // An escaped quote at every place, the last byte of a block among them, with
        // escape-free blocks after it.
        let escapes: Vec<String> = (0..80)
            .map(|n| {
                format!(
                    r#"{{"s": "{}\"]}}", "u": "{}"}}"#,
                    "x".repeat(n),
                    "y".repeat(70)
                )
            })
            .collect();
        cases.extend(escapes.iter().map(String::as_str));
        for text in cases {
            for pad in 0..70 {
                let body = format!("{}{text},9", " ".repeat(pad));
                let end = value_end(body.as_bytes(), pad).unwrap();
                assert_eq!(&body[pad..end], text, "padding {pad}");
                let _: serde_json::Value = serde_json::from_str(&body[pad..end]).unwrap();
            }
        }
    }

    #[test]
    fn unfinished_values_have_no_end() {
        for text in [
            r#"{"a": [1, 2}"#,
            r#"{"a": "}"#,
            r#"["\"]"#,
            "\"a\\",
            "",
            ",",
        ] {
            assert_eq!(value_end(text.as_bytes(), 0), None, "{text}");
        }
    }
}
