//! Protecting the gateway from its clients: who the client is, how often it may ask, how many
//! live feeds it may hold open.
//!
//! - [`client_ip`]: the address a request comes from. `X-Forwarded-For` is believed only when the
//!   TCP peer is a configured trusted proxy, and then only up to the first hop that is not one.
//! - [`rate_limit`]: middleware taking a token from the client's bucket (shared by every gateway
//!   through Redis, see `maildrop_store::ratelimit`); `429` with `Retry-After` when empty. If Redis
//!   cannot answer, the request goes through: a limiter outage must not become an API outage.
//! - [`WatcherSlots`]: caps on open WebSockets, SSE streams and waits, per client IP and per
//!   gateway, each held by a [`WatcherSlot`] for as long as the feed is open.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maildrop_runtime::cidr::CidrList;
use maildrop_store::ratelimit::Decision;

use crate::error::ApiError;
use crate::state::AppState;

/// The client's address: the peer, or (behind trusted proxies) the nearest untrusted hop.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &CidrList) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    // Right to left: each trusted proxy appended the address it saw.
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !trusted.contains(hop) {
            break;
        }
    }
    client
}

/// The client address of a request, from the connection and the state's trusted proxies.
pub fn request_ip(state: &AppState, request: &Request) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()?
        .0
        .ip();
    Some(client_ip(peer, request.headers(), &state.trusted_proxies))
}

/// Middleware: one token per request.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (Some(limiter), Some(ip)) = (state.rate_limiter.as_ref(), request_ip(&state, &request))
    else {
        return next.run(request).await;
    };
    match limiter.take(ip).await {
        Ok(Decision::Allowed) => next.run(request).await,
        Ok(Decision::Limited { retry_after }) => {
            tracing::debug!(client = %ip, ?retry_after, "Rate limited.");
            ApiError::RateLimited { retry_after }.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "Rate limiter unavailable; letting the request through.");
            next.run(request).await
        }
    }
}

/// Caps on live feeds.
pub struct WatcherSlots {
    per_ip: usize,
    total: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open live feed; frees its slot when dropped.
pub struct WatcherSlot {
    slots: Arc<WatcherSlots>,
    ip: IpAddr,
}

impl WatcherSlots {
    pub fn new(per_ip: u32, total: u32) -> Self {
        Self {
            per_ip: per_ip as usize,
            total: total as usize,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<WatcherSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.total {
            metrics::counter!("maildrop_gateway_watchers_refused_total", "scope" => "server")
                .increment(1);
            return Err(ApiError::TooManyWatchers {
                scope: "this server",
            });
        }
        let mine = open.1.entry(ip).or_insert(0);
        if *mine >= self.per_ip {
            metrics::counter!("maildrop_gateway_watchers_refused_total", "scope" => "client")
                .increment(1);
            return Err(ApiError::TooManyWatchers {
                scope: "your address",
            });
        }
        *mine += 1;
        open.0 += 1;
        metrics::gauge!("maildrop_gateway_watchers_open").set(open.0 as f64);
        Ok(WatcherSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Open feeds (for metrics and tests).
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        metrics::gauge!("maildrop_gateway_watchers_open").set(open.0 as f64);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted: CidrList = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted: CidrList = "10.0.0.0/8".parse().unwrap();
        // A client may put anything on the left; only what our proxies appended counts.
        let h = xff("6.6.6.6, 198.51.100.7, 10.0.0.2");
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn watcher_slots_cap_per_ip_and_in_total() {
        let slots = Arc::new(WatcherSlots::new(2, 3));
        let a1 = slots.acquire(ip("192.0.2.1")).unwrap();
        let _a2 = slots.acquire(ip("192.0.2.1")).unwrap();
        assert!(slots.acquire(ip("192.0.2.1")).is_err());
        let _b1 = slots.acquire(ip("192.0.2.2")).unwrap();
        assert!(
            slots.acquire(ip("192.0.2.3")).is_err(),
            "the gateway is full"
        );
        drop(a1);
        let _a3 = slots.acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(slots.open(), 3);
    }
}
