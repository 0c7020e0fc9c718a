//! One SMTP client session: the only code that touches the SMTP socket.
//!
//! A session claims message numbers from the shared budget until it runs out or the deadline
//! passes. Each claimed number is one transaction attempt, sent or not, so a run against a dead
//! server ends too (with every attempt counted as a failure). A connection carries
//! `per_connection` transactions (`RSET` between them), then `QUIT`; a connection that broke, timed
//! out or got `421` is dropped and the next attempt opens a new one. Replies are parsed by
//! [`crate::smtp`].
//!
//! The latency of a transaction runs from writing `MAIL FROM` to reading the `250` after the
//! message: the part of a delivery the ingest is responsible for, including its JetStream publish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::message::{Generator, Message, SENDER};
use crate::smtp::{Reply, data_payload, parse_reply};
use crate::stats::{self, Failure, Failures};
use crate::track::Tracker;

/// The name the client greets with.
const EHLO: &[u8] = b"EHLO bench.maildrop.localhost\r\n";

/// What the sessions of one run share.
pub struct Shared {
    pub target: SocketAddr,
    pub per_connection: u32,
    pub messages: u64,
    pub start: Instant,
    /// Messages per second to start, all sessions together.
    pub rate: Option<f64>,
    pub deadline: Instant,
    pub reply_timeout: Duration,
    pub tracker: Option<Arc<Tracker>>,
    pub next: AtomicU64,
}

impl Shared {
    /// The next message number, or `None` when the count is reached or time is up.
    fn claim(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        (seq < self.messages).then_some(seq)
    }

    /// When message `seq` is due at the run's rate (`None`: at once).
    fn due(&self, seq: u64) -> Option<Instant> {
        self.rate
            .map(|rate| self.start + Duration::from_secs_f64(seq as f64 / rate))
    }
}

/// What one session did.
pub struct SessionResult {
    pub sent: u64,
    pub accepted: u64,
    pub failures: Failures,
    pub latency: Histogram<u64>,
    pub bytes: u64,
    pub connections: u64,
}

/// Runs one session to the end of the budget.
pub async fn run(shared: Arc<Shared>, mut generator: Generator) -> SessionResult {
    let mut result = SessionResult {
        sent: 0,
        accepted: 0,
        failures: Failures::default(),
        latency: stats::histogram(),
        bytes: 0,
        connections: 0,
    };
    let mut conn: Option<Conn> = None;
    while let Some(seq) = shared.claim() {
        if let Some(due) = shared.due(seq) {
            if due >= shared.deadline {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        let message = generator.message(seq);
        let payload = data_payload(&message.bytes);
        result.sent += 1;
        result.bytes += message.bytes.len() as u64;
        let outcome = attempt(&shared, &mut conn, &message, &payload, &mut result).await;
        match outcome {
            Ok((reply, started, done)) => {
                result.accepted += 1;
                stats::record(&mut result.latency, done - started);
                if let Some(tracker) = &shared.tracker {
                    tracker.accepted(seq, message.mailbox_index, reply.queued_id(), done);
                }
            }
            Err(failure) => {
                let reusable = matches!(failure, Failure::Code(code) if code != 421);
                result.failures.add(failure);
                if !reusable {
                    conn = None;
                }
            }
        }
        if let Some(c) = &mut conn
            && c.transactions >= shared.per_connection
        {
            c.quit().await;
            conn = None;
        }
    }
    if let Some(mut c) = conn {
        c.quit().await;
    }
    result
}

/// One transaction, opening a connection first if there is none.
async fn attempt(
    shared: &Shared,
    conn: &mut Option<Conn>,
    message: &Message,
    payload: &[u8],
    result: &mut SessionResult,
) -> Result<(Reply, Instant, Instant), Failure> {
    let c = match conn {
        Some(c) => {
            c.command(b"RSET\r\n", 250).await?;
            c
        }
        None => {
            result.connections += 1;
            conn.insert(Conn::open(shared.target, shared.reply_timeout).await?)
        }
    };
    c.transactions += 1;
    let started = Instant::now();
    let mail = format!("MAIL FROM:<{SENDER}> SIZE={}\r\n", message.bytes.len());
    c.command(mail.as_bytes(), 250).await?;
    let rcpt = format!("RCPT TO:<{}>\r\n", message.recipient);
    c.command(rcpt.as_bytes(), 250).await?;
    c.command(b"DATA\r\n", 354).await?;
    let reply = c.command(payload, 250).await?;
    Ok((reply, started, Instant::now()))
}

/// An open SMTP connection after `EHLO`.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
    transactions: u32,
}

impl Conn {
    async fn open(target: SocketAddr, timeout: Duration) -> Result<Self, Failure> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(target))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|_| Failure::Connect)?;
        // Commands are small writes answered one by one: Nagle would hold them back.
        stream.set_nodelay(true).map_err(|_| Failure::Io)?;
        let mut conn = Self {
            stream,
            buf: Vec::with_capacity(1024),
            timeout,
            transactions: 0,
        };
        expect(conn.reply().await?, 220)?;
        conn.command(EHLO, 250).await?;
        Ok(conn)
    }

    /// Writes `bytes` and reads the reply, which must be `code`.
    async fn command(&mut self, bytes: &[u8], code: u16) -> Result<Reply, Failure> {
        tokio::time::timeout(self.timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|_| Failure::Io)?;
        expect(self.reply().await?, code)
    }

    async fn reply(&mut self) -> Result<Reply, Failure> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(_) => return Err(Failure::BadReply),
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| Failure::Timeout)?
                .map_err(|_| Failure::Io)?;
            if n == 0 {
                return Err(Failure::Io);
            }
        }
    }

    /// Says goodbye; the answer does not change any count.
    async fn quit(&mut self) {
        let _ = self.command(b"QUIT\r\n", 221).await;
    }
}

fn expect(reply: Reply, code: u16) -> Result<Reply, Failure> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(Failure::Code(reply.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RunTag;
    use crate::size::SizeSpec;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A scripted SMTP server that accepts everything, or answers `DATA` bodies with `final_code`.
    async fn fake_server(final_code: u16) -> (SocketAddr, tokio::task::JoinHandle<u64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let mut connections = 0;
            while let Ok(Ok((stream, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                connections += 1;
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 fake\r\n").await.unwrap();
                    let mut in_data = false;
                    let mut n = 0;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = if in_data {
                            if line != "." {
                                continue;
                            }
                            in_data = false;
                            n += 1;
                            format!("{final_code} 2.0.0 Ok: queued as ID{n}\r\n")
                        } else if line.starts_with("EHLO") {
                            "250-fake\r\n250 PIPELINING\r\n".into()
                        } else if line == "DATA" {
                            in_data = true;
                            "354 go\r\n".into()
                        } else if line == "QUIT" {
                            w.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        } else {
                            "250 2.0.0 Ok\r\n".into()
                        };
                        w.write_all(reply.as_bytes()).await.unwrap();
                    }
                });
            }
            connections
        });
        (addr, handle)
    }

    fn shared(target: SocketAddr, per_connection: u32, messages: u64) -> Arc<Shared> {
        Arc::new(Shared {
            target,
            per_connection,
            messages,
            start: Instant::now(),
            rate: None,
            deadline: Instant::now() + Duration::from_secs(10),
            reply_timeout: Duration::from_secs(5),
            tracker: None,
            next: AtomicU64::new(0),
        })
    }

    fn generator() -> Generator {
        Generator::new(RunTag::from_u64(1), "x.test", 10, SizeSpec::Fixed(1024), 1)
    }

    #[tokio::test]
    async fn one_message_per_connection() {
        let (addr, server) = fake_server(250).await;
        let r = run(shared(addr, 1, 5), generator()).await;
        assert_eq!((r.sent, r.accepted, r.failures.total()), (5, 5, 0));
        assert_eq!(r.connections, 5);
        assert_eq!(r.latency.len(), 5);
        assert_eq!(r.bytes, 5 * 1024);
        assert_eq!(server.await.unwrap(), 5);
    }

    #[tokio::test]
    async fn connections_are_reused_with_rset() {
        let (addr, server) = fake_server(250).await;
        let r = run(shared(addr, 4, 10), generator()).await;
        assert_eq!((r.sent, r.accepted), (10, 10));
        assert_eq!(r.connections, 3);
        assert_eq!(server.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn refusals_are_counted_by_code_and_the_connection_kept() {
        let (addr, _server) = fake_server(451).await;
        let r = run(shared(addr, 3, 3), generator()).await;
        assert_eq!((r.sent, r.accepted), (3, 0));
        assert_eq!(r.failures.summary(), "451: 3");
        assert_eq!(r.connections, 1);
    }

    #[tokio::test]
    async fn a_dead_server_ends_the_run_with_connect_errors() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let r = run(shared(addr, 1, 4), generator()).await;
        assert_eq!((r.sent, r.accepted), (4, 0));
        assert_eq!(r.failures.summary(), "connect error: 4");
    }

    #[tokio::test]
    async fn a_rate_spaces_the_messages_out() {
        let (addr, _server) = fake_server(250).await;
        let s = Arc::new(Shared {
            rate: Some(100.0),
            ..Arc::try_unwrap(shared(addr, 1, 6)).ok().unwrap()
        });
        assert_eq!(s.due(0), Some(s.start));
        assert_eq!(s.due(5), Some(s.start + Duration::from_millis(50)));
        let r = run(s.clone(), generator()).await;
        assert_eq!(r.accepted, 6);
        assert!(s.start.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn the_deadline_stops_the_session() {
        let (addr, _server) = fake_server(250).await;
        let s = Arc::new(Shared {
            deadline: Instant::now(),
            ..Arc::try_unwrap(shared(addr, 1, 100)).ok().unwrap()
        });
        let r = run(s, generator()).await;
        assert_eq!(r.sent, 0);
    }
}
