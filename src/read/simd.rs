//! The reader's only unsafe code: SSE2 byte classes over blocks of 16 or 64 bytes, for
//! [`super::scan`] (finding where a value ends) and [`super::quick`] (strings and numbers).
//!
//! Each function takes a reference to a whole block, so its bounds are in its type: callers
//! cut the block with [`block`], which checks them. Inside, the unsafe operations are the
//! unaligned loads of bytes that reference covers, and SSE2 intrinsics, which every x86_64
//! CPU has. The tests of `scan` and `quick` check each function against a byte-by-byte
//! version on generated text, and every reader against `serde_json`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The `N` bytes of `b` from `at`. Panics if fewer are left: callers check first.
#[inline(always)]
pub(crate) fn block<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N]
        .try_into()
        .expect("the caller checked the length")
}

/// Per class, a bit per byte of 64: quotes, backslashes, opening and closing brackets.
pub(crate) struct Classes {
    pub(crate) quotes: u64,
    pub(crate) backslashes: u64,
    pub(crate) opens: u64,
    pub(crate) closes: u64,
}

/// A bit per byte of 64 for each class a plain array of numbers is made of.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NumberClasses {
    pub(crate) digit: u64,
    pub(crate) zero: u64,
    pub(crate) dot: u64,
    pub(crate) comma: u64,
    pub(crate) minus: u64,
    pub(crate) close: u64,
}

/// Which of the 64 bytes are quotes, backslashes, opening and closing brackets.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn classes(b: &[u8; 64]) -> Classes {
    let p = b.as_ptr();
    let mut c = Classes {
        quotes: 0,
        backslashes: 0,
        opens: 0,
        closes: 0,
    };
    for part in 0..4 {
        // SAFETY: `p + 16 * part` and the 15 bytes after it are inside `b` (64 bytes);
        // unaligned loads are allowed. The rest only computes on registers.
        unsafe {
            let v = _mm_loadu_si128(p.add(16 * part).cast::<__m128i>());
            // `[` and `]` differ from `{` and `}` by the 0x20 bit only (no other byte maps
            // there).
            let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let mask = |c: u8, v: __m128i| {
                let m = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)));
                u64::from(m as u16) << (16 * part)
            };
            c.quotes |= mask(b'"', v);
            c.backslashes |= mask(b'\\', v);
            c.opens |= mask(b'{', folded);
            c.closes |= mask(b'}', folded);
        }
    }
    c
}

/// A bit per byte of the 16 that is a quote, a backslash or below 0x20.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn special(b: &[u8; 16]) -> u32 {
    // SAFETY: the load reads the 16 bytes of `b`; unaligned loads are allowed. The rest only
    // computes on registers.
    unsafe {
        let v = _mm_loadu_si128(b.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `v <= 0x1f`: the larger of the two is 0x1f only then.
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// The classes of the 64 bytes (see [`NumberClasses`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn number_classes(b: &[u8; 64]) -> NumberClasses {
    let p = b.as_ptr();
    let mut c = NumberClasses::default();
    for i in 0..4 {
        // SAFETY: `p + 16 * i` and the 15 bytes after it are inside `b` (64 bytes);
        // unaligned loads are allowed. The rest only computes on registers.
        unsafe {
            let v = _mm_loadu_si128(p.add(16 * i).cast::<__m128i>());
            let is = |b: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
            let bits = |m: i32| u64::from(m as u16) << (16 * i);
            c.digit |= bits(digit_bits(v));
            c.zero |= bits(is(b'0'));
            c.dot |= bits(is(b'.'));
            c.comma |= bits(is(b','));
            c.minus |= bits(is(b'-'));
            c.close |= bits(is(b']'));
        }
    }
    c
}

/// A bit per byte of the 16 that is an ASCII digit; the bits above are clear.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn digits(b: &[u8; 16]) -> u32 {
    // SAFETY: the load reads the 16 bytes of `b`; unaligned loads are allowed.
    unsafe { digit_bits(_mm_loadu_si128(b.as_ptr().cast::<__m128i>())) as u32 }
}

/// A bit per byte of `v` that is an ASCII digit.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn digit_bits(v: __m128i) -> i32 {
    // SAFETY: SSE2 is part of every x86_64 CPU; this only computes on registers.
    unsafe {
        // A digit is at most 9 above '0', counting without sign.
        let above = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        let digit = _mm_cmpeq_epi8(_mm_min_epu8(above, _mm_set1_epi8(9)), above);
        _mm_movemask_epi8(digit)
    }
}
