//! Building a slotted item's values from the raw JSON the readers kept for each slot.

use serde_json::{Number, Value};

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
