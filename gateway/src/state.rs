//! What every handler can reach.

use std::sync::Arc;

use maildrop_store::{MailStore, StatsStore};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

#[derive(Clone)]
pub struct AppState {
    pub mail: MailStore,
    pub stats: StatsStore,
    pub js: async_nats::jetstream::Context,
    pub hub: Arc<Hub>,
    pub domains: Arc<Vec<String>>,
    /// Cancelled on shutdown: WebSockets close instead of holding the server open.
    pub cancel: CancellationToken,
}
