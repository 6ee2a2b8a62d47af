//! The buffer a response body is received into (inside `fetch`, while the body arrives).
//!
//! Guarantee: the bytes come out as they went in, whatever the body's size and whether its
//! length was announced. A large body (1 MiB and more, its Content-Length known, on Linux)
//! gets a mapping of its own instead of the heap's memory, because a poll receives it into
//! memory fresh from the OS (the last poll's was handed back), where every page faults on
//! its first write:
//! - its pages are mapped ahead of the data on another core (`MADV_POPULATE_WRITE`), in
//!   windows that grow with the bytes received (8 MiB first, then as much again as has
//!   arrived), so an announced length is address space, not memory: a response that
//!   announces 60 MB and sends 10 bytes costs 8 MiB at most;
//! - in 2 MiB pages where the kernel gives them (`MADV_HUGEPAGE`): a 100k-pod fetch
//!   faulted 280 to 940 times instead of about 3,900. A mapping of its own keeps that flag
//!   off the heap, whose small allocations would then fault 2 MiB at a time;
//! - it goes back to the OS as soon as the body is dropped.
//!
//! A 100k-pod fetch (15.8 MB) took 11.3 to 12.1 ms instead of 12.9 to 13.4 ms with the
//! heap's buffer and the same pre-mapping (BENCHMARKS.md). An older kernel refuses either
//! advice and the pages simply fault as they are written.

use bytes::Bytes;

/// Bodies from this size up are received into a mapping of their own.
pub(super) const MAPPED_MIN: usize = 1 << 20;

pub(super) enum Buffer {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped(mapped::Mapped),
}

impl Buffer {
    /// A buffer for a body of `expected` bytes (its Content-Length), if that is known.
    pub(super) fn new(expected: Option<u64>) -> Self {
        let expected = expected.and_then(|n| usize::try_from(n).ok());
        #[cfg(target_os = "linux")]
        if let Some(m) = expected
            .filter(|n| *n >= MAPPED_MIN)
            .and_then(mapped::Mapped::new)
        {
            return Buffer::Mapped(m);
        }
        Buffer::Heap(Vec::with_capacity(expected.unwrap_or(0)))
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Buffer::Heap(v) => v.len(),
            #[cfg(target_os = "linux")]
            Buffer::Mapped(m) => m.as_ref().len(),
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        match self {
            Buffer::Heap(v) => v.extend_from_slice(chunk),
            #[cfg(target_os = "linux")]
            Buffer::Mapped(m) => {
                if !m.push(chunk) {
                    // More than announced (hyper stops at the Content-Length, so this is
                    // only a guard): on the heap from here on.
                    let mut v = Vec::with_capacity(m.as_ref().len() + chunk.len());
                    v.extend_from_slice(m.as_ref());
                    v.extend_from_slice(chunk);
                    *self = Buffer::Heap(v);
                }
            }
        }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        match self {
            Buffer::Heap(v) => v.into(),
            #[cfg(target_os = "linux")]
            Buffer::Mapped(m) => Bytes::from_owner(m),
        }
    }
}

#[cfg(target_os = "linux")]
pub(super) mod mapped {
    use std::ptr::NonNull;

    const HUGE: usize = 2 << 20;
    /// Mapped ahead at first; each later window is as large as what has arrived.
    pub(crate) const FIRST_WINDOW: usize = 8 << 20;

    /// Anonymous memory of its own, filled from the start.
    pub(crate) struct Mapped {
        ptr: NonNull<u8>,
        len: usize,
        cap: usize,
        /// Bytes from the start asked to be mapped ahead so far.
        ahead: usize,
    }

    // SAFETY: `Mapped` owns its mapping as a `Vec<u8>` owns its allocation; nothing else
    // refers to it.
    unsafe impl Send for Mapped {}
    // SAFETY: shared access only reads (`as_ref`).
    unsafe impl Sync for Mapped {}

    impl Mapped {
        /// `None` if the OS refuses the mapping (the heap is used instead). Must be called
        /// within a tokio runtime (the pages are mapped ahead on its blocking pool).
        pub(crate) fn new(cap: usize) -> Option<Self> {
            // SAFETY: a new private anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    cap,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            let mut m = Mapped {
                ptr: NonNull::new(p.cast())?,
                len: 0,
                cap,
                ahead: 0,
            };
            let (start, end) = (p as usize, p as usize + cap);
            let (huge_start, huge_end) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
            if huge_end > huge_start {
                // SAFETY: the range lies inside the mapping just made; the advice changes
                // which pages back it, not its content. Before any write, so that the
                // first faults already take 2 MiB pages.
                unsafe {
                    libc::madvise(
                        huge_start as *mut libc::c_void,
                        huge_end - huge_start,
                        libc::MADV_HUGEPAGE,
                    );
                }
            }
            m.map_ahead();
            Some(m)
        }

        /// Asks for the next window to be mapped ahead, on the blocking pool, once the bytes
        /// received come within half a window of what was mapped.
        fn map_ahead(&mut self) {
            if self.ahead >= self.cap || self.len + self.ahead.max(FIRST_WINDOW) / 2 < self.ahead {
                return;
            }
            let from = self.ahead;
            let to = (from + from.max(FIRST_WINDOW)).min(self.cap);
            self.ahead = to;
            let start = self.ptr.as_ptr() as usize + from;
            let len = to - from;
            tokio::task::spawn_blocking(move || {
                // SAFETY: madvise only reads its arguments. MADV_POPULATE_WRITE faults pages
                // in as a write would, without writing, so it may run beside the writes. If
                // it runs after the mapping is gone, it fails, or maps pages of whatever
                // mapping took the range, unchanged. Its result does not matter.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE);
                }
            });
        }

        /// Appends `chunk`; `false` (nothing appended) if it does not fit.
        pub(crate) fn push(&mut self, chunk: &[u8]) -> bool {
            if chunk.len() > self.cap - self.len {
                return false;
            }
            // SAFETY: the destination is inside the mapping (checked above) and past the
            // bytes written so far, which no reference can reach (`as_ref` borrows `self`).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    chunk.as_ptr(),
                    self.ptr.as_ptr().add(self.len),
                    chunk.len(),
                );
            }
            self.len += chunk.len();
            self.map_ahead();
            true
        }

        /// The mapping's start and length, for tests.
        #[cfg(test)]
        pub(crate) fn range(&self) -> (usize, usize) {
            (self.ptr.as_ptr() as usize, self.cap)
        }
    }

    impl AsRef<[u8]> for Mapped {
        fn as_ref(&self) -> &[u8] {
            // SAFETY: the first `len` bytes were written by `push`.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // SAFETY: the mapping is this value's own, and no reference to it outlives it.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.cap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(expected: Option<u64>, chunks: &[&[u8]]) -> Buffer {
        let mut b = Buffer::new(expected);
        for c in chunks {
            b.push(c);
        }
        b
    }

    #[tokio::test]
    async fn bytes_come_out_as_they_went_in() {
        let big = vec![7u8; MAPPED_MIN + 3];
        let (head, tail) = big.split_at(1000);
        for (expected, chunks, want) in [
            (None, vec![&b"ab"[..], b"c"], b"abc".to_vec()),
            (Some(3), vec![&b"ab"[..], b"c"], b"abc".to_vec()),
            (Some(big.len() as u64), vec![head, tail], big.clone()),
            // Fewer bytes than announced, and more.
            (Some(big.len() as u64 + 10), vec![head, tail], big.clone()),
            (Some(big.len() as u64 - 1), vec![head, tail], big.clone()),
            (Some(MAPPED_MIN as u64), vec![], vec![]),
        ] {
            let b = filled(expected, &chunks);
            assert_eq!(b.len(), want.len());
            assert_eq!(b.into_bytes(), want, "{expected:?}");
        }
    }

    /// Pages of `[start, start + len)` in memory.
    #[cfg(target_os = "linux")]
    fn resident(start: usize, len: usize) -> usize {
        let mut v = vec![0u8; len.div_ceil(4096)];
        // SAFETY: the range is a live mapping of the caller's; `v` has a byte per page.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, len, v.as_mut_ptr()) };
        assert_eq!(r, 0);
        v.iter().filter(|p| **p & 1 == 1).count()
    }

    /// Waits (10 s at most) until `cond` holds for the resident pages, returning them.
    #[cfg(target_os = "linux")]
    fn wait_resident(start: usize, len: usize, cond: impl Fn(usize) -> bool) -> usize {
        let mut n = 0;
        for _ in 0..1000 {
            n = resident(start, len);
            if cond(n) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        n
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_announced_length_is_address_space_not_memory() {
        use mapped::FIRST_WINDOW;
        // A response announcing 60 MB that sends 10 bytes: the first window is mapped ahead,
        // nothing more (a 2 MiB page at each end of it may come along).
        let cap = 60 << 20;
        let mut b = Buffer::new(Some(cap as u64));
        b.push(b"0123456789");
        let Buffer::Mapped(m) = &b else {
            panic!("a large body should be mapped");
        };
        let (start, len) = m.range();
        let window = FIRST_WINDOW / 4096;
        let n = wait_resident(start, len, |n| n >= window);
        assert!(n >= window, "the first window is mapped ahead: {n} pages");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = resident(start, len);
        assert!(n <= window + 1024, "{n} pages resident for 10 bytes");
        // As bytes arrive, the windows follow them to the end.
        let chunk = vec![1u8; 1 << 20];
        while b.len() + chunk.len() <= cap {
            b.push(&chunk);
        }
        let Buffer::Mapped(m) = &b else {
            panic!("still mapped");
        };
        let pages = len / 4096;
        assert_eq!(wait_resident(start, len, |n| n == pages), pages);
        let _ = m;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_large_body_gets_a_mapping_of_its_own_in_large_pages_mapped_ahead() {
        use std::io::BufRead;
        let cap = 64 << 20;
        let Buffer::Mapped(m) = Buffer::new(Some(cap as u64)) else {
            panic!("a large body should be mapped");
        };
        let (start, len) = m.range();
        // The pre-mapping runs on another thread: wait for it (a few ms) up to 10 s.
        let window = mapped::FIRST_WINDOW / 4096;
        assert!(wait_resident(start, len, |n| n >= window) >= window);
        // Its 2 MiB-aligned inside is advised for large pages: in smaps, its area's VmFlags
        // show `hg`.
        let inside = start.next_multiple_of(2 << 20);
        let smaps = std::io::BufReader::new(std::fs::File::open("/proc/self/smaps").unwrap());
        let mut in_area = false;
        let mut flags = None;
        for line in smaps.lines().map(Result::unwrap) {
            if let Some((from, to)) = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'))
                .filter(|_| !line.starts_with(|c: char| c.is_ascii_uppercase()))
            {
                let (from, to) = (
                    usize::from_str_radix(from, 16).unwrap(),
                    usize::from_str_radix(to, 16).unwrap(),
                );
                in_area = (from..to).contains(&inside);
            } else if in_area && line.starts_with("VmFlags:") {
                flags = Some(line);
            }
        }
        let flags = flags.expect("the mapping is listed");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
        drop(m);
    }
}
