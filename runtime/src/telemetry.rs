//! Logging set-up, once per process.

use tracing_subscriber::EnvFilter;

use crate::args::{LogArgs, LogFormat};

/// Installs the global subscriber. A bad filter stops start-up with the variable's name.
pub fn init(args: &LogArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log)
        .map_err(|e| format!("MAILDROP_LOG: invalid filter {:?}: {e}", args.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("logging already initialised: {e}"))
}

/// An error and its causes on one line (`outer: cause: root cause`), for the last log line of a
/// stage that stops on an error.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
