//! The SMTP server protocol (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, CHUNKING and STARTTLS) as a state machine without I/O.
//!
//! A [`Session`] takes bytes and gives back [`Action`]s: replies to write, finished transactions to
//! deliver, and "need more input" as a normal outcome. It never touches a socket, a clock or NATS,
//! so every protocol rule is a unit test. The async loop that drives it only moves bytes:
//!
//! ```ignore
//! let mut session = Session::new(config.clone(), peer_ip);
//! write(session.greeting());
//! loop {
//!     match session.next_action(&mut inbuf) {
//!         Action::Reply(r) => write(r.to_bytes()), // may be batched until NeedMoreInput
//!         Action::NeedMoreInput => read_more_into(&mut inbuf),
//!         Action::Deliver(tx) => write(session.delivered(publish(tx).await)),
//!         Action::CheckClient { .. } => write(session.client_checked(greylist().await)),
//!         Action::StartTls => { flush(); upgrade(); inbuf.clear(); session.tls_started() }
//!         Action::Close => break,
//!     }
//! }
//! ```
//!
//! Contract with the caller:
//! - `next_action` consumes what it has used from the buffer. When it returns
//!   [`Action::NeedMoreInput`] the buffer holds fewer than [`Session::max_buffer`] bytes: the
//!   session discards over-long lines and streams message bodies out of the buffer, so the caller
//!   never has to police its size.
//! - After [`Action::Deliver`] the session parses nothing until [`Session::delivered`] is called;
//!   pipelined commands wait in the buffer. Calling `next_action` instead is a bug in the caller,
//!   and the session answers it with [`Action::Close`] rather than guess.
//! - After [`Action::StartTls`], write and flush every reply so far, upgrade the socket, drop
//!   everything left in the buffer, and call [`Session::tls_started`]. Bytes a client pipelined
//!   after `STARTTLS` were sent in plaintext and must never be read as commands of the encrypted
//!   session (CVE-2011-0411). The session enforces this too: it clears the buffer when it accepts
//!   `STARTTLS` and again when it returns `StartTls`, and it parses nothing until `tls_started`.
//! - After [`Action::CheckClient`] the session likewise parses nothing until
//!   [`Session::client_checked`] is called. It is returned only when
//!   [`SessionConfig::check_client`] is set, at the first `RCPT` after each greeting that would
//!   otherwise be accepted: the caller asks its policy (the ingest: greylisting in Redis) whether
//!   this client, by address and `EHLO` name, may send mail now. The verdict holds until the next
//!   greeting, so one connection asks at most once per `EHLO`, and relay attempts and invalid
//!   recipients never cost a lookup. The policy stays outside: the session only knows that a
//!   recipient may have to wait for an answer it cannot compute itself, as a delivery does.
//! - [`Session::shutdown_reply`] and [`Session::timeout_reply`] are the `421`s to write before
//!   closing on shutdown or idle timeout; [`Session::bad_commands`] lets the caller slow down
//!   clients that keep failing (a tarpit) before it writes their replies, and
//!   [`Session::answered`] names the command an action answers, so the caller can pace the replies
//!   to chosen verbs. Neither changes what the session decides.
//!
//! Decisions where the RFCs leave a choice:
//! - **Command lines may end in a bare LF.** Like Postfix, we read up to the LF and drop a CR
//!   before it. This helps people typing into `nc` and cannot be abused: a command line is the
//!   client's own and never another party's content. A CR or NUL *inside* a command line is
//!   refused.
//! - **Message bodies are strict.** Only `<CRLF>.<CRLF>` ends `DATA`, and a body with a bare CR or
//!   LF anywhere is read to its real end and refused with `550 5.6.11` (SMTP smuggling,
//!   CVE-2023-51766); see the `data` module.
//! - **Long body lines are accepted**; NUL bytes are refused with `550 5.6.0`; see `data` and
//!   `body`.
//! - **`VRFY` answers `252`** and `EXPN` answers `502`: neither reveals anything (any name at our
//!   domains is a mailbox, and there are no lists to expand).
//! - **Errors are counted**: every permanent failure of a command line (5xx except `552` and `554`)
//!   counts as a bad command; the one after `max_bad_commands` is answered `421 4.7.0` and the
//!   connection closes. An HTTP request line closes the connection at once, and so does a PROXY
//!   protocol v1 line: a real one is consumed by the caller before the session starts, so one seen
//!   here is forged.

mod bdat;
mod body;
mod config;
mod data;
mod ehlo;
mod expn;
mod help;
mod mail;
mod noop;
mod parse;
mod quit;
mod rcpt;
mod reply;
mod rset;
mod starttls;
mod transaction;
mod vrfy;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use maildrop_contract::Mailbox;
use tracing::{info, warn};

pub use config::{
    DEFAULT_HOSTNAME, DEFAULT_MAX_BAD_COMMANDS, DEFAULT_MAX_COMMANDS, DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_RECIPIENTS, SessionConfig,
};
pub use parse::Verb;
pub use rcpt::ClientVerdict;
pub use reply::Reply;
pub use transaction::{DeliveryOutcome, Transaction};

#[cfg(test)]
mod attempt_tests;

use bdat::ChunkReader;
use data::DataReader;
use transaction::Draft;

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this reply. Replies may be batched until the next `NeedMoreInput`.
    Reply(Reply),
    /// Read more bytes into the buffer, then call `next_action` again.
    NeedMoreInput,
    /// Publish this transaction, then write the reply of [`Session::delivered`].
    Deliver(Transaction),
    /// Upgrade the connection to TLS, clear the buffer, then call [`Session::tls_started`].
    StartTls,
    /// Decide whether this client may send mail now (e.g. greylisting), then write the reply of
    /// [`Session::client_checked`]. Only with [`SessionConfig::check_client`].
    CheckClient { client_ip: IpAddr, helo: String },
    /// Close the connection (the last reply, if any, was already returned).
    Close,
}

/// What the bytes in the buffer mean now.
#[derive(Debug)]
enum Input {
    /// Command lines.
    Command,
    /// The rest of a command line that was too long, up to its LF.
    LongLine,
    /// A `DATA` body, up to `<CRLF>.<CRLF>`.
    Data { draft: Draft, reader: DataReader },
    /// The octets of one `BDAT` chunk.
    Chunk(ChunkReader),
    /// Nothing until `delivered()`.
    AwaitingDelivery,
    /// Nothing until `tls_started()`.
    AwaitingTls,
    /// Nothing until `client_checked()`; this recipient waits for the verdict.
    AwaitingCheck { recipient: String, mailbox: Mailbox },
    /// Nothing ever again.
    Closed,
}

/// One SMTP connection, from greeting to close.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: IpAddr,
    tls: bool,
    /// The `EHLO`/`HELO` argument; `None` until the client has greeted (again, after `STARTTLS`).
    helo: Option<String>,
    /// The transaction between `MAIL` and the end of its body.
    tx: Option<Draft>,
    input: Input,
    /// An action that follows the reply just returned (`Close` after `QUIT`, `StartTls` after
    /// `220`).
    pending: Option<Action>,
    commands: u32,
    bad_commands: u32,
    /// The caller's verdict on this client since its last greeting ([`Action::CheckClient`]).
    client_verdict: Option<ClientVerdict>,
    /// The verb of the command line the last action answers.
    answered: Option<Verb>,
    /// What the last action refused, kept until the next action for [`Session::attempt`]: the
    /// argument of an `RCPT` line, and the transaction a refused body ended.
    refused_rcpt: Option<String>,
    refused_tx: Option<(String, Vec<String>)>,
}

/// What a client had said when one of its commands was refused: the ingest records it with the
/// refusal ([`Session::attempt`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    pub helo: Option<String>,
    /// The open (or just refused) transaction's reverse path.
    pub mail_from: Option<String>,
    /// Its recipients, and a recipient refused just now last (as the client wrote its argument).
    pub rcpt_to: Vec<String>,
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, peer: IpAddr) -> Self {
        Self {
            config,
            peer,
            tls: false,
            helo: None,
            tx: None,
            input: Input::Command,
            pending: None,
            commands: 0,
            bad_commands: 0,
            client_verdict: None,
            answered: None,
            refused_rcpt: None,
            refused_tx: None,
        }
    }

    /// Who the client said it was and what it was sending, for the reply just returned by
    /// `next_action` (or `client_checked`). Only meaningful right after a refusal.
    pub fn attempt(&self) -> Attempt {
        let (mail_from, mut rcpt_to) = match (&self.tx, &self.refused_tx) {
            (Some(tx), _) => (Some(tx.mail_from.clone()), tx.rcpt_to.clone()),
            (None, Some((from, rcpt))) => (Some(from.clone()), rcpt.clone()),
            (None, None) => (None, Vec::new()),
        };
        rcpt_to.extend(self.refused_rcpt.clone());
        Attempt {
            helo: self.helo.clone(),
            mail_from,
            rcpt_to,
        }
    }

    /// The `220` to write when the connection opens.
    pub fn greeting(&self) -> Reply {
        Reply::plain(220, format!("{} ESMTP Maildrop", self.config.hostname))
    }

    /// `421 4.3.2`: write it, then close, when the server shuts down.
    pub fn shutdown_reply(&self) -> Reply {
        Reply::new(
            421,
            (4, 3, 2),
            format!(
                "{} Service shutting down, closing connection",
                self.config.hostname
            ),
        )
    }

    /// `421 4.4.2`: write it, then close, when the client has been idle too long.
    pub fn timeout_reply(&self) -> Reply {
        Reply::new(
            421,
            (4, 4, 2),
            format!("{} Timeout, closing connection", self.config.hostname),
        )
    }

    /// Commands that failed so far, for a growing delay before error replies.
    pub fn bad_commands(&self) -> u32 {
        self.bad_commands
    }

    /// The verb of the command line that the action last returned by `next_action` answers:
    /// `Some(Verb::Rcpt)` for the reply to an `RCPT` (and for the `CheckClient` it asks for), `None`
    /// for actions that answer no command line of their own (the end of a body or a chunk, a line
    /// that did not parse, a `Close` after `QUIT`). For pacing replies; it decides nothing.
    pub fn answered(&self) -> Option<Verb> {
        self.answered
    }

    /// The most the session leaves in the buffer when it asks for more input.
    pub fn max_buffer(&self) -> usize {
        self.config.max_line_length.max(1)
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Parses as much of `input` as it can and says what to do next, consuming the bytes it used.
    pub fn next_action(&mut self, input: &mut BytesMut) -> Action {
        self.answered = None;
        self.refused_rcpt = None;
        self.refused_tx = None;
        if let Some(action) = self.pending.take() {
            if action == Action::StartTls {
                discard_plaintext(self.peer, input);
            }
            return action;
        }
        loop {
            let action = match std::mem::replace(&mut self.input, Input::Closed) {
                Input::Command => self.read_command(input),
                Input::LongLine => Some(self.skip_long_line(input)),
                Input::Data { draft, mut reader } => Some(if reader.read(input) {
                    self.answered = None;
                    self.end_of_data(draft, reader)
                } else {
                    self.input = Input::Data { draft, reader };
                    Action::NeedMoreInput
                }),
                Input::Chunk(mut reader) => Some(if reader.read(input) {
                    self.answered = None;
                    bdat::end_of_chunk(self, reader)
                } else {
                    self.input = Input::Chunk(reader);
                    Action::NeedMoreInput
                }),
                Input::AwaitingDelivery => {
                    warn!(client_ip = %self.peer, "next_action called before delivered(); closing.");
                    Some(Action::Close)
                }
                Input::AwaitingTls => {
                    input.clear();
                    warn!(client_ip = %self.peer, "next_action called before tls_started(); closing.");
                    Some(Action::Close)
                }
                Input::AwaitingCheck { .. } => {
                    warn!(client_ip = %self.peer, "next_action called before client_checked(); closing.");
                    Some(Action::Close)
                }
                Input::Closed => Some(Action::Close),
            };
            if let Some(action) = action {
                return action;
            }
        }
    }

    /// The reply to the transaction of the last [`Action::Deliver`]; parsing resumes after it.
    pub fn delivered(&mut self, outcome: DeliveryOutcome) -> Reply {
        if matches!(self.input, Input::AwaitingDelivery) {
            self.input = Input::Command;
        } else {
            warn!(client_ip = %self.peer, "delivered() called with no delivery pending.");
        }
        match outcome {
            DeliveryOutcome::Accepted { id } => {
                Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
            }
            DeliveryOutcome::TemporaryFailure => {
                Reply::new(451, (4, 3, 0), "Temporary failure, please try again later")
            }
            DeliveryOutcome::Rejected { reason } if reason.trim().is_empty() => {
                Reply::new(554, (5, 7, 1), "Message rejected")
            }
            DeliveryOutcome::Rejected { reason } => Reply::new(554, (5, 7, 1), reason),
        }
    }

    /// The reply to the recipient of the last [`Action::CheckClient`], given the caller's verdict on
    /// the client; parsing resumes after it. The verdict holds until the client greets again.
    pub fn client_checked(&mut self, verdict: ClientVerdict) -> Reply {
        rcpt::client_checked(self, verdict)
    }

    /// The connection is now encrypted: the session starts over, and the client must greet again.
    ///
    /// Also usable right after [`Session::new`] for a connection that is TLS from the start.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.pending = None;
        self.client_verdict = None;
        if !matches!(self.input, Input::Closed) {
            self.input = Input::Command;
        }
    }

    /// Reads one command line. `None` means go round again: a `BDAT` chunk has started.
    fn read_command(&mut self, input: &mut BytesMut) -> Option<Action> {
        self.input = Input::Command;
        let max = self.max_buffer();
        let window = &input[..input.len().min(max)];
        if let Some(end) = window.iter().position(|&b| b == b'\n') {
            let line = input.split_to(end + 1);
            return self.command(&line, input);
        }
        if input.len() < max {
            return Some(Action::NeedMoreInput);
        }
        match input[max..].iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.advance(max + end + 1);
                Some(self.long_line())
            }
            None => {
                input.clear();
                self.input = Input::LongLine;
                Some(Action::NeedMoreInput)
            }
        }
    }

    fn skip_long_line(&mut self, input: &mut BytesMut) -> Action {
        match input.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.advance(end + 1);
                self.input = Input::Command;
                self.long_line()
            }
            None => {
                input.clear();
                self.input = Input::LongLine;
                Action::NeedMoreInput
            }
        }
    }

    fn long_line(&mut self) -> Action {
        match self.count_command() {
            Some(close) => close,
            None => self.answer(reply::line_too_long()),
        }
    }

    /// Counts a command line; past the limit, the `421` that ends the connection.
    fn count_command(&mut self) -> Option<Action> {
        self.commands = self.commands.saturating_add(1);
        if self.commands <= self.config.max_commands {
            return None;
        }
        info!(client_ip = %self.peer, commands = self.commands, "Too many commands; closing.");
        Some(self.close_with(reply::too_many_commands(&self.config.hostname)))
    }

    /// Dispatch: one command line to its verb's handler. `None` when the handler needs input
    /// before it can reply (`BDAT`).
    fn command(&mut self, line: &[u8], input: &mut BytesMut) -> Option<Action> {
        if let Some(close) = self.count_command() {
            return Some(close);
        }
        let command = match parse::command_line(line) {
            Ok(command) => command,
            Err(e) => return Some(self.answer(Reply::new(500, (5, 5, 2), e.to_string()))),
        };
        self.answered = Some(command.verb);
        let args = command.args;
        let reply = match command.verb {
            Verb::Ehlo => ehlo::ehlo(self, args),
            Verb::Helo => ehlo::helo(self, args),
            Verb::Mail => mail::mail(self, args),
            Verb::Rcpt => {
                return Some(match rcpt::rcpt(self, args) {
                    Some(reply) => {
                        if !reply.is_positive() {
                            self.refused_rcpt = Some(rcpt::attempted(args));
                        }
                        self.answer(reply)
                    }
                    None => Action::CheckClient {
                        client_ip: self.peer,
                        helo: self.helo.clone().unwrap_or_default(),
                    },
                });
            }
            Verb::Data => data::data(self, args),
            Verb::Bdat => return bdat::bdat(self, args).map(|reply| self.answer(reply)),
            Verb::Rset => rset::rset(self, args),
            Verb::Noop => noop::noop(),
            Verb::Quit => quit::quit(self),
            Verb::Vrfy => vrfy::vrfy(args),
            Verb::Expn => expn::expn(),
            Verb::Help => help::help(self),
            Verb::StartTls => starttls::starttls(self, args, input),
            Verb::Http => {
                info!(client_ip = %self.peer, "HTTP request on the SMTP port; closing.");
                return Some(self.close_with(Reply::new(
                    421,
                    (4, 7, 0),
                    format!("{} This is an SMTP server, closing", self.config.hostname),
                )));
            }
            Verb::Proxy => {
                info!(client_ip = %self.peer, "PROXY header from a client that may not send one; closing.");
                return Some(self.close_with(Reply::new(
                    421,
                    (4, 7, 0),
                    format!(
                        "{} PROXY protocol not accepted from your address, closing",
                        self.config.hostname
                    ),
                )));
            }
            Verb::Unknown => reply::unrecognized(),
        };
        Some(self.answer(reply))
    }

    /// The reply to a command line, counting it if it is a client error.
    fn answer(&mut self, reply: Reply) -> Action {
        if reply.counts_as_error() {
            self.bad_commands = self.bad_commands.saturating_add(1);
            if self.bad_commands > self.config.max_bad_commands {
                info!(
                    client_ip = %self.peer,
                    bad_commands = self.bad_commands,
                    "Too many bad commands; closing."
                );
                return self.close_with(reply::too_many_errors(&self.config.hostname));
            }
        }
        Action::Reply(reply)
    }

    /// After this reply, only `Close`.
    fn closing(&mut self) {
        self.tx = None;
        self.input = Input::Closed;
        self.pending = Some(Action::Close);
    }

    fn close_with(&mut self, reply: Reply) -> Action {
        self.closing();
        Action::Reply(reply)
    }

    fn end_of_data(&mut self, draft: Draft, reader: DataReader) -> Action {
        self.input = Input::Command;
        let sink = reader.into_sink();
        match sink.refusal() {
            Some(reply) => {
                info!(client_ip = %self.peer, reason = %reply.text(), "Message refused.");
                self.refused_tx = Some((draft.mail_from, draft.rcpt_to));
                Action::Reply(reply)
            }
            None => self.deliver(draft, sink.into_bytes()),
        }
    }

    /// Hands a finished transaction to the caller and waits for `delivered()`.
    fn deliver(&mut self, draft: Draft, body: Bytes) -> Action {
        self.input = Input::AwaitingDelivery;
        Action::Deliver(Transaction {
            client_ip: self.peer,
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: draft.mail_from,
            rcpt_to: draft.rcpt_to,
            mailboxes: draft.mailboxes,
            body,
            body_8bit: draft.body_8bit,
            smtputf8: draft.smtputf8,
            tls: self.tls,
        })
    }
}

/// Drops plaintext that arrived after `STARTTLS` (CVE-2011-0411).
fn discard_plaintext(peer: IpAddr, input: &mut BytesMut) {
    if !input.is_empty() {
        info!(client_ip = %peer, octets = input.len(), "Discarded input pipelined after STARTTLS.");
        input.clear();
    }
}
