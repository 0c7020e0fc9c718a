//! How long to hold a reply back: a growing delay for clients that keep failing, and an optional
//! fixed delay before the replies to `MAIL`, `RCPT` and `DATA`.
//!
//! Both are policy, so they live here rather than in the SMTP session: the session only reports
//! what it did ([`Session::bad_commands`](crate::smtp::Session::bad_commands),
//! [`Session::answered`](crate::smtp::Session::answered)) and this pure function turns that into a
//! wait, which the server sleeps before writing the reply (interrupted by shutdown).
//!
//! - **Error delay.** Before the reply to the n-th failed command, `min(n × step, max)`. Dictionary
//!   attacks and broken bots make many errors and pay for each; a person who mistypes once in `nc`
//!   does not notice 100 ms. With the defaults (100 ms step, 500 ms cap, 20 failed commands before
//!   the connection is closed) a client that does nothing but fail is held about 9 s before its
//!   `421`, which slows abuse without tying up a connection slot for long. A `0s` step turns it off.
//! - **Command tarpit.** Before the replies to `MAIL`, `RCPT` and `DATA`, a fixed wait (the old
//!   service used 2 s; off by default). Impatient spam software gives up; real MTAs wait minutes.
//!   `BDAT` is not delayed itself: its transaction already paid at `MAIL` and `RCPT`.
//!
//! When both apply to one reply, the longer wins; they are not added.

use std::time::Duration;

use crate::smtp::Verb;

/// The delays, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tarpit {
    /// Added per failed command so far; zero disables the error delay.
    pub error_step: Duration,
    /// The longest error delay.
    pub error_max: Duration,
    /// Before the replies to `MAIL`, `RCPT` and `DATA`; zero disables it.
    pub commands: Duration,
}

impl Tarpit {
    /// The wait before writing a reply that answers `answered`; `failed` is the session's count of
    /// failed commands when this reply is one of them, `None` otherwise.
    pub fn delay(&self, answered: Option<Verb>, failed: Option<u32>) -> Duration {
        let command = match answered {
            Some(Verb::Mail | Verb::Rcpt | Verb::Data) => self.commands,
            _ => Duration::ZERO,
        };
        let error = failed.map_or(Duration::ZERO, |n| {
            self.error_step.saturating_mul(n).min(self.error_max)
        });
        command.max(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn tarpit(step_ms: u32, max_ms: u32, commands_ms: u32) -> Tarpit {
        Tarpit {
            error_step: MS * step_ms,
            error_max: MS * max_ms,
            commands: MS * commands_ms,
        }
    }

    #[test]
    fn errors_wait_longer_each_time_up_to_the_cap() {
        let t = tarpit(100, 500, 0);
        let waits: Vec<_> = (1..=7)
            .map(|n| t.delay(Some(Verb::Unknown), Some(n)))
            .collect();
        assert_eq!(waits, [100, 200, 300, 400, 500, 500, 500].map(|ms| MS * ms));
    }

    #[test]
    fn the_defaults_hold_a_failing_client_for_seconds_not_minutes() {
        let t = tarpit(100, 500, 0);
        let total: Duration = (1..=20).map(|n| t.delay(None, Some(n))).sum();
        assert_eq!(total, Duration::from_secs(9));
    }

    #[test]
    fn successes_are_not_delayed_by_the_error_delay() {
        let t = tarpit(100, 500, 0);
        assert_eq!(t.delay(Some(Verb::Rcpt), None), Duration::ZERO);
    }

    #[test]
    fn the_command_tarpit_holds_mail_rcpt_and_data_only() {
        let t = tarpit(0, 0, 2000);
        for verb in [Verb::Mail, Verb::Rcpt, Verb::Data] {
            assert_eq!(t.delay(Some(verb), None), MS * 2000, "{verb:?}");
        }
        for verb in [Verb::Ehlo, Verb::Helo, Verb::Bdat, Verb::Rset, Verb::Quit] {
            assert_eq!(t.delay(Some(verb), None), Duration::ZERO, "{verb:?}");
        }
        assert_eq!(t.delay(None, None), Duration::ZERO);
    }

    #[test]
    fn the_longer_delay_wins() {
        let t = tarpit(100, 500, 300);
        assert_eq!(t.delay(Some(Verb::Rcpt), Some(1)), MS * 300);
        assert_eq!(t.delay(Some(Verb::Rcpt), Some(5)), MS * 500);
    }

    #[test]
    fn zero_turns_everything_off() {
        let t = Tarpit::default();
        assert_eq!(t.delay(Some(Verb::Mail), Some(1000)), Duration::ZERO);
    }
}
