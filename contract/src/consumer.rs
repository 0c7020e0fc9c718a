//! Durable consumer names. One name per job: instances of a stage that share a name share the work.

/// The filter's consumer on `RECEIVED`.
pub const FILTER: &str = "filter";
/// A shadow filter's consumer on `RECEIVED` (`--shadow`): every message again, beside production.
pub const FILTER_SHADOW: &str = "filter-shadow";
/// The store-writer's consumer on `VERDICTS`, filtered to accepted verdicts.
pub const STORE_WRITER: &str = "store-writer";
/// The reporter's consumers, one per stream.
pub const REPORTER_RECEIVED: &str = "reporter-received";
pub const REPORTER_VERDICTS: &str = "reporter-verdicts";
pub const REPORTER_MAILBOX: &str = "reporter-mailbox";
pub const REPORTER_REJECTED: &str = "reporter-rejected";
pub const REPORTER_SHADOW: &str = "reporter-shadow";
/// The spam-source reporter's consumers: rejected verdicts, and ingest rejections.
pub const REPORTS_VERDICTS: &str = "reports-verdicts";
pub const REPORTS_REJECTED: &str = "reports-rejected";
