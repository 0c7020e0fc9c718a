//! `maildrop-filter export`: the raw messages of a time window, chosen by their recorded verdict,
//! as one mbox file or a folder of `.eml` files, for offline work.
//!
//! Like a replay it only reads the streams (ephemeral ordered consumers, see [`crate::replay`]):
//! the verdicts recorded in `VERDICTS` pick the messages, `RECEIVED` holds their bytes, which are
//! written unchanged. The mbox is *mboxrd*: a `From <sender> <date>` line before each message, and
//! every body line that starts with `>*From ` gains one more `>` so no line can end a message
//! early (and the quoting can be undone exactly).

use std::io::Write;
use std::path::PathBuf;

use async_nats::jetstream;
use clap::{Args, ValueEnum};
use maildrop_contract::subject;
use time::OffsetDateTime;

use crate::replay::{self, ReplayError, Retained, Window};

/// Which messages to export, by recorded verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Rejected,
    Accepted,
    /// Every message in the window, judged or not.
    All,
}

/// The output's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One mboxrd file.
    Mbox,
    /// A folder of `<id>.eml` files.
    Eml,
}

/// `maildrop-filter export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub window: Window,
    #[arg(long, value_enum, default_value = "rejected")]
    pub verdict: Which,
    #[arg(long, value_enum, default_value = "mbox")]
    pub format: Format,
    /// The mbox file, or the folder for `.eml` files (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// One mboxrd entry: the `From ` line, the quoted message, a blank line.
pub fn mbox_entry(sender: &str, received: OffsetDateTime, raw: &[u8]) -> Vec<u8> {
    const ASCTIME: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
    );
    let sender = if sender.is_empty() || sender.contains(char::is_whitespace) {
        "MAILER-DAEMON"
    } else {
        sender
    };
    let date = received.format(ASCTIME).unwrap_or_default();
    let mut out = format!("From {sender} {date}\n").into_bytes();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let quoted = line
            .iter()
            .position(|&b| b != b'>')
            .is_some_and(|i| line[i..].starts_with(b"From "));
        if quoted {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !raw.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Writes the chosen messages; returns how many.
pub async fn export(js: &jetstream::Context, args: &ExportArgs) -> Result<u64, ReplayError> {
    let recorded = replay::recorded_verdicts(js, args.window.since).await?;
    let mut mbox = match args.format {
        Format::Mbox => Some(std::io::BufWriter::new(std::fs::File::create(&args.out)?)),
        Format::Eml => {
            std::fs::create_dir_all(&args.out)?;
            None
        }
    };
    let mut written = 0;
    let bar = replay::progress(0);
    replay::read_stream(js, subject::RECEIVED_STREAM, args.window.since, |m| {
        bar.inc(1);
        let (published, envelope) = match args.window.sort(&m) {
            Retained::Stop => return Ok(false),
            Retained::Skip => return Ok(true),
            Retained::Take {
                published,
                envelope,
                ..
            } => (published, envelope),
        };
        let verdict = recorded.get(&envelope.id.to_string());
        let chosen = match args.verdict {
            Which::All => true,
            Which::Accepted => verdict.is_some_and(|v| v.accepted),
            Which::Rejected => verdict.is_some_and(|v| !v.accepted),
        };
        if !chosen {
            return Ok(true);
        }
        match &mut mbox {
            Some(file) => {
                let received = OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(envelope.received_ms) * 1_000_000,
                )
                .unwrap_or(published);
                file.write_all(&mbox_entry(&envelope.mail_from, received, &m.payload))?;
            }
            None => {
                std::fs::write(args.out.join(format!("{}.eml", envelope.id)), &m.payload)?;
            }
        }
        written += 1;
        Ok(true)
    })
    .await?;
    if let Some(mut file) = mbox {
        file.flush()?;
    }
    bar.finish_and_clear();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_entries_quote_from_lines_and_end_with_a_blank_line() {
        let t = OffsetDateTime::from_unix_timestamp(1_732_900_000).unwrap();
        let raw = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nno From\r\nend";
        let entry = mbox_entry("a@b.example", t, raw);
        let text = String::from_utf8(entry).unwrap();
        assert_eq!(
            text,
            "From a@b.example Fri Nov 29 17:06:40 2024\nSubject: x\r\n\r\n>From here\r\n>>From there\r\nno From\r\nend\n\n"
        );
        let null = String::from_utf8(mbox_entry("", t, b"x\n")).unwrap();
        assert!(null.starts_with("From MAILER-DAEMON "), "{null}");
        assert!(null.ends_with("x\n\n"));
    }
}
