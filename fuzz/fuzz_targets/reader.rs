//! Arbitrary bytes through the JSON reader alone (no metrics): every reader must accept and
//! refuse what `serde_json` does and give its values where its plan reads (the same check the
//! reader's tests run, `jsonbridge::read::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = jsonbridge::read::check::agrees_with_serde(data) {
        panic!("{e}: {:?}", String::from_utf8_lossy(data));
    }
});
