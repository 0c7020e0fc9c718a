//! One shutdown shape for every stage.
//!
//! `main` creates the token with [`on_signal`]; every long-running task gets a child of it and stops
//! taking new work once it is cancelled, finishing (or handing back) the work in hand. `main` then
//! waits for its `TaskTracker` with a deadline.

use tokio_util::sync::CancellationToken;

/// A token that is cancelled on the first SIGINT (Ctrl-C) or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received; finishing work in hand.");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C will stop the stage.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// How a stage's main task ended, other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StopError<E> {
    #[error(transparent)]
    Failed(E),
    #[error("the stage panicked")]
    Panicked,
    #[error("work in hand did not finish within {0:?} of the shutdown signal")]
    Deadline(std::time::Duration),
}

/// Waits for a stage's main task; once `cancel` fires, gives it at most `grace` to finish.
pub async fn join<E>(
    mut task: tokio::task::JoinHandle<Result<(), E>>,
    cancel: &CancellationToken,
    grace: std::time::Duration,
) -> Result<(), StopError<E>> {
    let finished = tokio::select! {
        r = &mut task => Some(r),
        _ = cancel.cancelled() => None,
    };
    let result = match finished {
        Some(r) => r,
        None => match tokio::time::timeout(grace, &mut task).await {
            Ok(r) => r,
            Err(_) => {
                task.abort();
                return Err(StopError::Deadline(grace));
            }
        },
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StopError::Failed(e)),
        Err(_) => Err(StopError::Panicked),
    }
}
