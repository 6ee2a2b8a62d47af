//! Arbitrary bytes as an API response, through every extraction feature.
#![no_main]

use std::sync::LazyLock;

use jsonbridge::config::{self, Origin};
use jsonbridge::extract::{MetricSpec, extract};
use libfuzzer_sys::fuzz_target;

static SPECS: LazyLock<Vec<MetricSpec>> = LazyLock::new(|| {
    let text = include_str!("../specs.yaml");
    let origin = Origin {
        name: "fuzz".into(),
        base_dir: "/".into(),
    };
    config::parse(text, &origin, &|_| None).unwrap().sources[0].metrics.clone()
});

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = extract(&doc, &SPECS);
    }
});
