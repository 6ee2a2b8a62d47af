//! Arbitrary bytes as a config file: errors are fine, panics are not.
#![no_main]

use jsonbridge::config::{self, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let origin = Origin {
            name: "fuzz".into(),
            base_dir: "/".into(),
        };
        let _ = config::parse(text, &origin, &|_| Some("x".into()));
    }
});
