//! Arbitrary bytes as an API response, read the way polls read them (a read plan: pruned
//! tree, or streamed into slots on one thread or two, or found by a scan and read on two),
//! against extraction over the fully parsed document: whatever `serde_json` parses must read
//! without error and give the same series, problems and counts.
#![no_main]

use std::sync::LazyLock;

use jsonbridge::config::{self, Origin, Source};
use jsonbridge::extract::{Extraction, Threads, extract, extract_bytes};
use libfuzzer_sys::fuzz_target;

fn source(text: &str) -> Source {
    let origin = Origin {
        name: "fuzz".into(),
        base_dir: "/".into(),
    };
    (*config::parse(text, &origin, &|_| None).unwrap().sources[0]).clone()
}

static SOURCES: LazyLock<[Source; 4]> = LazyLock::new(|| {
    [
        source(include_str!("../specs.yaml")),
        source(include_str!("../specs-slotted.yaml")),
        source(include_str!("../specs-rooted.yaml")),
        source(include_str!("../specs-scanned.yaml")),
    ]
});

fn comparable(x: &Extraction) -> String {
    let mut out = String::new();
    for f in &x.families {
        out += &format!("{} {:?}\n", f.family, f.label_names);
        for s in &f.series {
            out += &format!("  {:?} {:x} {:?}\n", s.labels, s.value.to_bits(), s.timestamp_ms);
        }
    }
    out + &format!("{:?}\n{:?}\n{}", x.problems, x.reports, x.dropped)
}

fuzz_target!(|data: &[u8]| {
    let doc = serde_json::from_slice::<serde_json::Value>(data).ok();
    for s in SOURCES.iter() {
        for way in 0..3 {
            let read = match way {
                2 => extract_bytes(data, &s.metrics, &s.plan, Threads::Batched(2)),
                _ => extract_bytes(data, &s.metrics, &s.plan, if way == 1 { Threads::Two } else { Threads::One }),
            };
            let Some(doc) = &doc else { continue };
            match (extract(doc, &s.metrics), read) {
                (Ok(a), Ok(b)) => assert_eq!(comparable(&a), comparable(&b)),
                (Err(a), Err(jsonbridge::extract::ReadError::Extract(b))) => assert_eq!(a, b),
                (a, b) => panic!("tree: {:?}\nread: {:?}", a.is_ok(), b.err()),
            }
        }
    }
});
