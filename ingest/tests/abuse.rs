//! Hostile and broken clients against a real ingest over raw TCP: oversize and malformed input,
//! SMTP smuggling, sequence errors, error floods, relay probes, slow and many clients.
//!
//! Each test starts its own `nats-server`, `redis-server` and ingest (see `common`), so the
//! RECEIVED stream holds exactly what that test's clients got accepted: a count taken after a
//! session is final, because `250` is only written once JetStream has the message.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use common::{Ingest, Reply, Smtp, address, dot_stuffed, message};

fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

/// Sends a normal message on `smtp` and checks it is accepted and stored as sent.
async fn deliver_normally(ingest: &Ingest, smtp: &mut Smtp, subject: &str) -> anyhow::Result<()> {
    let raw = message(subject);
    let reply = smtp
        .send_message("alice@example.org", &[&address("bob")], &raw)
        .await?;
    ensure!(reply.code == 250, "a normal message after abuse: {reply}");
    let received = ingest.received_once(reply.queued_id()?).await?;
    ensure!(received.body == raw, "the normal message changed");
    Ok(())
}

#[tokio::test]
async fn an_oversize_message_gets_552_and_the_connection_stays_usable() -> anyhow::Result<()> {
    let ingest = Ingest::start_with(&["--max-message-size", "10000"]).await?;
    let mut smtp = ingest.connect().await?;
    let ehlo = smtp.expect("EHLO client.example.org", 250).await?;
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 10000"), "{ehlo}");

    // DATA: the body is read to its end, then refused.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 20_000 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789012345678901234567890\r\n");
    }
    let reply = smtp
        .send_message("alice@example.org", &[&address("bob")], &big)
        .await?;
    assert_eq!(
        (reply.code, reply.enhanced()),
        (552, Some("5.3.4")),
        "{reply}"
    );

    // A declared size over the limit is refused at MAIL.
    smtp.expect("MAIL FROM:<alice@example.org> SIZE=20000", 552)
        .await?;

    // BDAT: the chunk is read and dropped, then refused.
    smtp.expect("MAIL FROM:<alice@example.org>", 250).await?;
    smtp.expect(&format!("RCPT TO:<{}>", address("bob")), 250)
        .await?;
    smtp.send(format!("BDAT {} LAST\r\n", big.len())).await?;
    smtp.send(&big).await?;
    let reply = smtp.reply().await?;
    assert_eq!(reply.code, 552, "{reply}");

    deliver_normally(&ingest, &mut smtp, "after oversize").await?;
    assert_eq!(ingest.received().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_overlong_command_line_gets_500() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let mut smtp = ingest.greeted().await?;
    let reply = smtp.command(&format!("NOOP {}", "x".repeat(1_000))).await?;
    assert_eq!(
        (reply.code, reply.enhanced()),
        (500, Some("5.5.2")),
        "{reply}"
    );
    let reply = smtp
        .command(&format!("MAIL FROM:<{}@example.org>", "a".repeat(1_000)))
        .await?;
    assert_eq!(reply.code, 500, "{reply}");
    // 100 KB without a line end: skipped without being buffered, answered once it ends.
    smtp.send(vec![b'A'; 100_000]).await?;
    let reply = smtp.command("").await?;
    assert_eq!(reply.code, 500, "{reply}");

    smtp.expect("NOOP", 250).await?;
    deliver_normally(&ingest, &mut smtp, "after long lines").await?;
    Ok(())
}

#[tokio::test]
async fn nul_bytes_are_refused_in_bodies_and_commands() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let mut smtp = ingest.greeted().await?;
    let reply = smtp
        .send_message(
            "alice@example.org",
            &[&address("bob")],
            b"Subject: nul\r\n\r\nbefore\0after\r\n",
        )
        .await?;
    assert_eq!(
        (reply.code, reply.enhanced()),
        (550, Some("5.6.0")),
        "{reply}"
    );
    let reply = smtp.command("NO\0OP").await?;
    assert_eq!(reply.code, 500, "{reply}");

    deliver_normally(&ingest, &mut smtp, "after NUL").await?;
    assert_eq!(ingest.received().await?.len(), 1);
    Ok(())
}

/// Every way a bare CR or LF can fake the end of data (CVE-2023-51766), each followed by a forged
/// transaction. Whatever the variant, the session stores at most one message, never the forged
/// one: ours reads the body to its real end and refuses it.
#[tokio::test]
async fn bare_line_end_smuggling_never_injects_a_message() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let fakes: [&[u8]; 6] = [
        b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n",
    ];
    let injected = address("injected");
    for (i, fake) in fakes.iter().enumerate() {
        let before = ingest.received().await?.len();
        let mut smtp = ingest.greeted().await?;
        smtp.expect("MAIL FROM:<alice@example.org>", 250).await?;
        smtp.expect(&format!("RCPT TO:<{}>", address("bob")), 250)
            .await?;
        smtp.expect("DATA", 354).await?;
        let mut attack = format!("Subject: smuggling {i}\r\n\r\nhello").into_bytes();
        attack.extend_from_slice(fake);
        attack.extend_from_slice(
            format!(
                "MAIL FROM:<ceo@example.org>\r\nRCPT TO:<{injected}>\r\nDATA\r\n\
                 Subject: injected {i}\r\n\r\nforged\r\n.\r\nQUIT\r\n"
            )
            .as_bytes(),
        );
        smtp.send(&attack).await?;
        let replies = smtp.until_closed().await?;
        assert_eq!(codes(&replies), [550, 221], "variant {fake:?}: {replies:?}");
        assert_eq!(replies[0].enhanced(), Some("5.6.11"));

        let after = ingest.received().await?;
        assert!(
            after.len() - before <= 1,
            "variant {fake:?} stored {} messages",
            after.len() - before
        );
        for stored in &after {
            assert!(
                !stored.mailboxes().contains(&"injected"),
                "variant {fake:?} injected a message: {stored:?}"
            );
        }
    }
    assert_eq!(ingest.received().await?.len(), 0);
    Ok(())
}

#[tokio::test]
async fn commands_before_ehlo_get_503() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let mut smtp = ingest.connect().await?;
    smtp.expect("MAIL FROM:<alice@example.org>", 503).await?;
    smtp.expect(&format!("RCPT TO:<{}>", address("bob")), 503)
        .await?;
    smtp.expect("DATA", 503).await?;
    // The chunk is read and dropped, so the stream stays in step.
    smtp.send("BDAT 5 LAST\r\nhello").await?;
    assert_eq!(smtp.reply().await?.code, 503);

    smtp.expect("EHLO client.example.org", 250).await?;
    deliver_normally(&ingest, &mut smtp, "after 503s").await?;
    assert_eq!(ingest.received().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_flood_of_bad_commands_ends_with_421() -> anyhow::Result<()> {
    let ingest = Ingest::start_with(&["--max-bad-commands", "20"]).await?;
    let mut smtp = ingest.greeted().await?;
    let mut replies = Vec::new();
    for _ in 0..100 {
        let reply = smtp.command("XYZZY").await?;
        let last = reply.code == 421;
        replies.push(reply);
        if last {
            break;
        }
    }
    let codes = codes(&replies);
    assert_eq!(
        codes.len(),
        21,
        "the 421 came after {} commands: {codes:?}",
        codes.len()
    );
    assert!(codes[..20].iter().all(|&c| c == 500), "{codes:?}");
    assert_eq!(replies[20].enhanced(), Some("4.7.0"));
    assert!(
        smtp.until_closed().await?.is_empty(),
        "the connection stays open after 421"
    );
    Ok(())
}

/// A client that sends every byte on its own still gets its message through, and does not hold up
/// a fast client meanwhile.
#[tokio::test]
async fn a_slow_client_sending_byte_by_byte_is_served() -> anyhow::Result<()> {
    let ingest = Arc::new(Ingest::start().await?);
    let raw = message("slow");
    let slow = tokio::spawn({
        let ingest = ingest.clone();
        let raw = raw.clone();
        async move {
            let mut smtp = ingest.connect().await?;
            let mut replies = Vec::new();
            let mut conversation: Vec<Vec<u8>> = vec![
                b"EHLO slow.example.org\r\n".to_vec(),
                b"MAIL FROM:<alice@example.org>\r\n".to_vec(),
                format!("RCPT TO:<{}>\r\n", address("bob")).into_bytes(),
                b"DATA\r\n".to_vec(),
            ];
            conversation.push(dot_stuffed(&raw));
            for bytes in conversation {
                for byte in bytes {
                    smtp.send([byte]).await?;
                    // The slow client's whole point: a pause between octets.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                replies.push(smtp.reply().await?);
            }
            anyhow::Ok(replies)
        }
    });

    let fast = maildrop_testkit::smtp::send_raw(
        ingest.addr,
        "carol@example.org",
        &[&address("carol")],
        &message("fast"),
    )
    .await?;
    assert!(fast.contains("queued as"), "{fast}");

    let replies = slow.await??;
    assert_eq!(codes(&replies), [250, 250, 250, 354, 250]);
    let received = ingest.received_once(replies[4].queued_id()?).await?;
    assert_eq!(received.body, raw);
    assert_eq!(received.envelope.helo, "slow.example.org");
    assert_eq!(ingest.received().await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_connections_each_deliver_one_message() -> anyhow::Result<()> {
    const CLIENTS: usize = 200;
    let ingest = Arc::new(Ingest::start().await?);
    // Every connection is open before any of them starts its transaction.
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (ingest, barrier) = (ingest.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut smtp = ingest.connect().await?;
                barrier.wait().await;
                smtp.expect(&format!("EHLO client-{i}.example.org"), 250)
                    .await?;
                let raw = message(&format!("parallel {i}"));
                let reply = smtp
                    .send_message("alice@example.org", &[&address(&format!("box{i}"))], &raw)
                    .await?;
                ensure!(reply.code == 250, "client {i}: {reply}");
                smtp.expect("QUIT", 221).await?;
                anyhow::Ok((reply.queued_id()?, i, raw))
            })
        })
        .collect();
    let mut sent = Vec::with_capacity(CLIENTS);
    for task in tasks {
        sent.push(tokio::time::timeout(Duration::from_secs(120), task).await???);
    }

    let received = ingest.received().await?;
    assert_eq!(received.len(), CLIENTS);
    for (id, i, raw) in sent {
        let copies: Vec<_> = received.iter().filter(|m| m.envelope.id == id).collect();
        assert_eq!(copies.len(), 1, "message {id} of client {i}");
        assert_eq!(copies[0].mailboxes(), [format!("box{i}").as_str()]);
        assert_eq!(copies[0].body, raw, "body of client {i}");
    }
    Ok(())
}

#[tokio::test]
async fn relay_attempts_get_550() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let mut smtp = ingest.greeted().await?;
    smtp.expect("MAIL FROM:<spammer@example.org>", 250).await?;
    for rcpt in [
        "<victim@example.com>",
        // A source route is dropped: what counts is the final domain.
        "<@maildrop.test:victim@example.com>",
        "<victim@maildrop.test.example.com>",
        "<victim@sub.maildrop.test>",
    ] {
        let reply = smtp.command(&format!("RCPT TO:{rcpt}")).await?;
        assert_eq!(
            (reply.code, reply.enhanced()),
            (550, Some("5.7.1")),
            "{rcpt}: {reply}"
        );
    }
    // The percent hack names one of our local parts, and not a valid one.
    let reply = smtp
        .command("RCPT TO:<victim%example.com@maildrop.test>")
        .await?;
    assert_eq!(reply.code, 553, "{reply}");
    smtp.expect("DATA", 554).await?;
    assert!(ingest.received().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn quoted_and_overlong_local_parts_get_553() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let mut smtp = ingest.greeted().await?;
    smtp.expect("MAIL FROM:<alice@example.org>", 250).await?;
    for rcpt in [
        format!("\"john doe\"@{}", common::DOMAIN),
        format!("\"bob\"@{}", common::DOMAIN),
        address(&"a".repeat(65)),
    ] {
        let reply = smtp.command(&format!("RCPT TO:<{rcpt}>")).await?;
        assert_eq!(
            (reply.code, reply.enhanced()),
            (553, Some("5.1.3")),
            "{rcpt}: {reply}"
        );
    }
    // 64 octets is the limit, and allowed.
    let longest = "b".repeat(64);
    smtp.expect(&format!("RCPT TO:<{}>", address(&longest)), 250)
        .await?;
    smtp.expect("DATA", 354).await?;
    let raw = message("longest local part");
    smtp.send(dot_stuffed(&raw)).await?;
    let reply = smtp.reply().await?;
    assert_eq!(reply.code, 250, "{reply}");
    let received = ingest.received_once(reply.queued_id()?).await?;
    assert_eq!(received.mailboxes(), [longest.as_str()]);
    assert_eq!(ingest.received().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_http_request_is_hung_up_on() -> anyhow::Result<()> {
    let ingest = Ingest::start().await?;
    let mut smtp = ingest.connect().await?;
    smtp.send("POST / HTTP/1.1\r\nHost: maildrop.test\r\nContent-Length: 5\r\n\r\nhello")
        .await?;
    let replies = smtp.until_closed().await?;
    assert_eq!(codes(&replies), [421], "{replies:?}");
    Ok(())
}
