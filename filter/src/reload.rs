//! The running rule set, and reloading it without a restart.
//!
//! [`LiveRules`] holds the rule set behind an [`ArcSwap`]: every message takes the current set once
//! (`current()`, a lock-free load) and is judged by that set from start to end, however often it
//! is swapped meanwhile, so a verdict's version is always the set that really judged it.
//!
//! [`watch`] re-reads the rule file every `MAILDROP_RULES_RELOAD_EVERY` and at once on `SIGHUP`.
//! It compares the file's bytes with the last bytes it tried, so an unchanged file costs a read
//! and no parse; a changed file that loads is swapped in (logged with the old and new version);
//! one that does not is logged as an error once and the running set stays: a typo in production
//! never leaves the filter without rules.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::rules::{RuleSet, fnv1a};
use crate::ruleset::{self, Context, LoadError};

/// The rule set in force, and where it came from.
pub struct LiveRules {
    current: ArcSwap<RuleSet>,
    path: Option<PathBuf>,
    context: Context,
    /// Hash of the file's bytes last tried, loaded or not.
    last_tried: Mutex<Option<u64>>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file's bytes are the ones last tried.
    Unchanged,
    /// Loaded; the version is the new one (it may equal the old one if only comments changed).
    Loaded { version: String },
}

impl LiveRules {
    /// The rule file at `path` (the built-in rules when `None`); an error if it does not load.
    pub fn load(path: Option<PathBuf>, context: Context) -> Result<Self, LoadError> {
        let (rules, hash) = match &path {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|source| LoadError::Read {
                    path: p.clone(),
                    source,
                })?;
                (ruleset::load(p, &context)?, Some(fnv1a(&bytes)))
            }
            None => (ruleset::defaults(&context), None),
        };
        Ok(Self {
            current: ArcSwap::from_pointee(rules),
            path,
            context,
            last_tried: Mutex::new(hash),
        })
    }

    /// A fixed rule set (tests, replays): reloading does nothing.
    pub fn fixed(rules: RuleSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(rules),
            path: None,
            context: Context::default(),
            last_tried: Mutex::new(None),
        }
    }

    /// The rule set in force now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Re-reads the rule file; swaps in its rule set if its bytes changed since the last try (or
    /// always when `force`). On an error the running set stays.
    pub fn reload(&self, force: bool) -> Result<Reload, LoadError> {
        let Some(path) = &self.path else {
            return Ok(Reload::Unchanged);
        };
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        let hash = fnv1a(&bytes);
        {
            let mut last = self.last_tried.lock().expect("reload lock");
            if !force && *last == Some(hash) {
                return Ok(Reload::Unchanged);
            }
            *last = Some(hash);
        }
        // As strict as the first load (`read_to_string`): a file refused at start is refused here.
        let text = std::str::from_utf8(&bytes).map_err(|e| LoadError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let rules =
            ruleset::from_text(text, &self.context).map_err(|source| LoadError::Invalid {
                path: path.clone(),
                source,
            })?;
        let version = rules.version().to_owned();
        self.current.store(Arc::new(rules));
        Ok(Reload::Loaded { version })
    }

    /// Reloads and logs the outcome.
    fn reload_and_log(&self, force: bool) {
        let old = self.current().version().to_owned();
        match self.reload(force) {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Loaded { version }) if version == old => {
                tracing::debug!(ruleset = %version, "Rule file re-read; the rule set is the same.");
            }
            Ok(Reload::Loaded { version }) => {
                let rules = self.current();
                tracing::info!(
                    from = %old,
                    ruleset = %version,
                    rules = ?rules.names().collect::<Vec<_>>(),
                    threshold = rules.threshold(),
                    "Rule set reloaded."
                );
            }
            Err(e) => tracing::error!(
                error = %maildrop_runtime::telemetry::chain(&e),
                ruleset = %old,
                "Rule file not loaded; keeping the running rule set."
            ),
        }
    }
}

/// Reloads `live` every `every` (never on a timer when `None`) and on `SIGHUP`, until `cancel`.
///
/// Without a rule file there is nothing to re-read, but SIGHUP is still caught: its default action
/// would end the process, and the README tells operators to send it.
pub async fn watch(live: Arc<LiveRules>, every: Option<Duration>, cancel: CancellationToken) {
    let every = if live.path.is_some() { every } else { None };
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGHUP; reloading on the timer only.");
            None
        }
    };
    let mut tick = every.map(|every| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let timer = async {
            match tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        let force = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = timer => false,
            _ = hup => {
                if live.path.is_none() {
                    tracing::info!("SIGHUP: no rule file (MAILDROP_RULES); the built-in rules stay.");
                    continue;
                }
                tracing::info!("SIGHUP: re-reading the rule file.");
                true
            }
        };
        let live = live.clone();
        // A file read is blocking I/O; keep it off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || live.reload_and_log(force)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_swapped_in_and_a_bad_one_keeps_the_old_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "threshold = 5.0\n").unwrap();
        let live = LiveRules::load(Some(path.clone()), Context::default()).unwrap();
        let first = live.current();
        assert_eq!(live.reload(false).unwrap(), Reload::Unchanged);

        std::fs::write(&path, "threshold = 3.0\n").unwrap();
        let Reload::Loaded { version } = live.reload(false).unwrap() else {
            panic!("not reloaded")
        };
        assert_ne!(version, first.version());
        assert_eq!(live.current().threshold(), 3.0);
        // A message judged with the old set still holds it.
        assert_eq!(first.threshold(), 5.0);

        std::fs::write(&path, "threshold = [\n").unwrap();
        assert!(live.reload(false).is_err());
        assert_eq!(live.current().version(), version);
        // The same bad bytes are not tried again on the timer...
        assert_eq!(live.reload(false).unwrap(), Reload::Unchanged);
        // ...but a SIGHUP tries again.
        assert!(live.reload(true).is_err());
    }

    #[test]
    fn a_missing_file_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LiveRules::load(Some(dir.path().join("nope.toml")), Context::default()).is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sighup_reloads_without_a_timer() {
        use tokio::signal::unix::{SignalKind, signal};
        // Listening first makes SIGHUP harmless to this process before the watcher listens too
        // (its default action would end the test run).
        let _ours = signal(SignalKind::hangup()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "").unwrap();
        let live = Arc::new(LiveRules::load(Some(path.clone()), Context::default()).unwrap());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch(live.clone(), None, cancel.clone()));
        std::fs::write(&path, "threshold = 8.0\n").unwrap();
        let pid = std::process::id().to_string();
        maildrop_testkit::wait_until(Duration::from_secs(10), "the reload on SIGHUP", || {
            let (live, pid) = (live.clone(), pid.clone());
            async move {
                if live.current().threshold() == 8.0 {
                    return Some(());
                }
                // Until the watcher listens, a signal may come too early: send again each try.
                let sent = tokio::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
                    .await
                    .ok()?;
                assert!(sent.success());
                None
            }
        })
        .await
        .unwrap();
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn without_a_rule_file_the_watcher_still_holds_sighup_until_cancelled() {
        // It used to return at once, leaving SIGHUP's default action (end the process) in place.
        let live = Arc::new(LiveRules::load(None, Context::default()).unwrap());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch(live, Some(Duration::from_millis(10)), cancel.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!task.is_finished(), "the watcher must keep listening");
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_watcher_picks_up_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "").unwrap();
        let live = Arc::new(LiveRules::load(Some(path.clone()), Context::default()).unwrap());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch(
            live.clone(),
            Some(Duration::from_millis(50)),
            cancel.clone(),
        ));
        std::fs::write(&path, "threshold = 9.0\n").unwrap();
        maildrop_testkit::wait_until(Duration::from_secs(10), "the reload", || {
            let live = live.clone();
            async move { (live.current().threshold() == 9.0).then_some(()) }
        })
        .await
        .unwrap();
        cancel.cancel();
        task.await.unwrap();
    }
}
