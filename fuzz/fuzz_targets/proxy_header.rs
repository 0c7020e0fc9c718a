//! Arbitrary bytes at the start of a connection through the PROXY protocol parser; the harness in
//! `harness/proxy_header.rs` says what is checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The corpus test (`ingest/tests/fuzz_corpus.rs`) uses parts of the harness that this does not.
#[allow(dead_code)]
#[path = "../harness/proxy_header.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let _ = harness::run(data);
});
