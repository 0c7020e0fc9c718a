//! The fuzz corpus as a regression test on stable Rust: every file in `fuzz/corpus/<target>/` goes
//! through that target's own harness (`fuzz/harness/<target>.rs`, included here), so CI checks the
//! same invariants on every seed, and on every crash input once it is minimised and added there,
//! without a nightly toolchain or libFuzzer.
//!
//! SMTP seeds are also replayed cut in other ways (all at once, byte by byte, irregular pieces),
//! and the named seeds of both targets must still give the answer they were written for, so a seed
//! that stops reaching the code it was meant for is noticed.

#[path = "../../fuzz/harness/proxy_header.rs"]
mod proxy_header;
#[path = "../../fuzz/harness/smtp_session.rs"]
mod smtp_session;

use std::path::{Path, PathBuf};

use maildrop_ingest::proxy::{Header, Parse};

/// Cuts to replay every file with: (largest piece, seed); 0 is all at once.
const CUTS: [(u8, u16); 4] = [(0, 0), (1, 0), (3, 7), (16, 1234)];

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (name, data)
        })
        .collect()
}

/// The reply codes and number of deliveries each hand-written seed was written to produce.
fn expected(name: &str) -> Option<(&'static [u16], usize)> {
    Some(match name {
        "normal" => (&[250, 250, 250, 354, 250, 221], 1),
        // The second delivery is answered with a temporary failure by the harness.
        "pipelined" => (
            &[250, 250, 250, 250, 354, 250, 250, 250, 250, 354, 451, 221],
            2,
        ),
        "bdat" => (&[250, 250, 250, 250, 250, 250, 221], 1),
        "smuggling" => (&[250, 250, 250, 354, 550, 221], 0),
        "starttls" => (&[250, 220], 0),
        // The first client check is answered Accept, the second (after EHLO again) Defer.
        "greylist" => (
            &[250, 250, 250, 250, 354, 250, 250, 250, 451, 451, 554, 221],
            1,
        ),
        "limits" => (
            &[
                500, 250, 250, 550, 250, 354, 550, 250, 250, 354, 552, 500, 421,
            ],
            0,
        ),
        _ => return None,
    })
}

#[test]
fn every_smtp_session_seed_keeps_the_invariants() {
    let files = corpus("smtp_session");
    assert!(!files.is_empty(), "fuzz/corpus/smtp_session is empty");
    let mut checked = 0;
    for (name, data) in &files {
        let summary = smtp_session::run(data);
        if let Some((codes, deliveries)) = expected(name) {
            assert_eq!(summary.codes(), codes, "reply codes of seed {name}");
            assert_eq!(
                summary.deliveries().len(),
                deliveries,
                "deliveries of seed {name}"
            );
            checked += 1;
        }
        if data.len() >= 4 {
            for (max, seed) in CUTS {
                let mut recut = data.clone();
                recut[1] = max;
                recut[2..4].copy_from_slice(&seed.to_le_bytes());
                smtp_session::run(&recut);
            }
        }
    }
    assert!(checked >= 7, "only {checked} named seeds found");
    eprintln!("replayed {} smtp_session corpus files", files.len());
}

#[test]
fn the_smtp_seeds_deliver_what_was_sent() {
    let files = corpus("smtp_session");
    let body = |name: &str| {
        let (_, data) = files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("seed {name} is missing"));
        let summary = smtp_session::run(data);
        summary.deliveries()[0].body.to_vec()
    };
    let normal = body("normal");
    assert!(normal.ends_with(b"Hi Bob,\r\n.a line that starts with a dot\r\n"));
    assert_eq!(
        body("bdat"),
        b"Subject: b\r\n\r\nbare\nlf and\r.\r\n..not unstuffed\r\n"
    );
}

/// What each hand-written PROXY seed parses to: the client address (`None` for a header that
/// names none). Every seed is a header followed by this `EHLO`, which must be left to the session.
fn expected_proxy(name: &str) -> Option<Option<&'static str>> {
    Some(match name {
        "v1_tcp4" | "v2_tcp4" => Some("198.51.100.22:35646"),
        "v1_tcp6" => Some("[2001:db8::1]:65535"),
        "v2_tcp6_tlv" => Some("[2001:db8::1]:12345"),
        "v1_unknown" | "v2_local" | "v2_unix" => None,
        _ => return None,
    })
}

const AFTER_PROXY_HEADER: &[u8] = b"EHLO client.example.org\r\n";

#[test]
fn every_proxy_header_seed_keeps_the_invariants() {
    let files = corpus("proxy_header");
    assert!(!files.is_empty(), "fuzz/corpus/proxy_header is empty");
    let mut checked = 0;
    for (name, data) in &files {
        let answer = proxy_header::run(data);
        let Some(source) = expected_proxy(name) else {
            continue;
        };
        let Ok(Parse::Complete { header, len }) = answer else {
            panic!("seed {name}: {answer:?}");
        };
        assert_eq!(
            header.source().map(|s| s.to_string()).as_deref(),
            source,
            "seed {name}"
        );
        assert_eq!(&data[len..], AFTER_PROXY_HEADER, "seed {name}");
        if source.is_none() {
            assert_eq!(header, Header::Local, "seed {name}");
        }
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} named seeds found");
    eprintln!("replayed {} proxy_header corpus files", files.len());
}
