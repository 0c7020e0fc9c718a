//! Arbitrary bytes, split at fuzzer-chosen points, through an SMTP [`Session`]; the harness in
//! `harness/smtp_session.rs` says what is checked and how the input is laid out.
//!
//! [`Session`]: maildrop_ingest::smtp::Session

#![no_main]

use libfuzzer_sys::fuzz_target;

// The corpus test (`ingest/tests/fuzz_corpus.rs`) uses parts of the harness that this does not.
#[allow(dead_code)]
#[path = "../harness/smtp_session.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
