//! A cap on the connections one client address holds open at once
//! (`http.max_connections_per_address`), so that one address cannot take
//! every one of `http.max_connections` slots with slow or idle
//! connections and keep everyone else waiting in the listen queue.
//!
//! actix-web cannot refuse a connection, but it shows each new one to a
//! callback ([`ConnectionCap::on_connect`], given to `HttpServer::on_connect`)
//! before it reads a byte: a connection over the cap is shut down there
//! (both directions), so the server reads end-of-stream, closes it and
//! frees its slot at once. A connection under the cap leaves a
//! [`ConnectionSlot`] in its connection data, which gives the place back
//! when the connection ends.
//!
//! Addresses are counted as the TCP peer sees them: IPv4 per address,
//! IPv6 per /64 (one host usually holds a whole /64). Trusted proxies
//! (`proxy.trusted`) are not capped: every client behind them shares
//! their address.

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

use crate::metrics::Metrics;
use stamps_config::TrustedProxies;

/// How often refused connections are reported in the log, at most.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Counts the open connections of each client address and refuses those
/// over the cap. Share one among the workers in an `Arc`.
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use stamps_http::{ConnectionCap, TrustedProxies};
///
/// let cap = Arc::new(ConnectionCap::new(2, TrustedProxies::default()));
/// let client: IpAddr = "192.0.2.7".parse().unwrap();
/// let first = cap.admit(client).unwrap();
/// let _second = cap.admit(client).unwrap();
/// assert!(cap.admit(client).is_none()); // a third at once is refused
/// drop(first); // a connection ends: its place is free again
/// assert!(cap.admit(client).is_some());
/// ```
#[derive(Debug)]
pub struct ConnectionCap {
    per_address: usize,
    trusted: TrustedProxies,
    open: Mutex<HashMap<IpAddr, usize>>,
    metrics: Option<Arc<Metrics>>,
    /// Refused since the last report in the log, and when that was.
    unreported: AtomicU64,
    reported: Mutex<Option<Instant>>,
}

/// A place under a [`ConnectionCap`], held by one open connection (in its
/// connection data): dropping it, when the connection ends, frees it.
#[derive(Debug)]
pub struct ConnectionSlot {
    cap: Arc<ConnectionCap>,
    /// The address counted; `None` for a connection that is not counted.
    key: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.cap.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

impl ConnectionCap {
    /// At most `per_address` connections open at once from one address
    /// (0: no cap), addresses in `trusted` excepted.
    pub fn new(per_address: usize, trusted: TrustedProxies) -> Self {
        Self {
            per_address,
            trusted,
            open: Mutex::new(HashMap::new()),
            metrics: None,
            unreported: AtomicU64::new(0),
            reported: Mutex::new(None),
        }
    }

    /// The same cap, counting refusals in `metrics`
    /// (`stamps_connections_refused_total`).
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// A place for a new connection from `peer`, or `None` when its
    /// address holds the cap already. Trusted proxies, and every address
    /// when there is no cap, get a place that counts nothing.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionSlot> {
        let peer = peer.to_canonical();
        if self.per_address == 0 || self.trusted.contains(peer) {
            return Some(ConnectionSlot {
                cap: self.clone(),
                key: None,
            });
        }
        let key = address_of(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.per_address {
            drop(open);
            self.refused();
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            cap: self.clone(),
            key: Some(key),
        })
    }

    /// The callback for `HttpServer::on_connect`: admits the connection
    /// (`io` is a `TcpStream`, or rustls' `TlsStream` over one) and keeps
    /// its place in the connection data, or shuts it down.
    pub fn on_connect(self: &Arc<Self>, io: &dyn Any, data: &mut Extensions) {
        let Some(tcp) = tcp_of(io) else { return };
        // No peer (it hung up already): nothing to count.
        let Ok(peer) = tcp.peer_addr() else { return };
        match self.admit(peer.ip()) {
            Some(slot) => {
                data.insert(slot);
            }
            // The server then reads end-of-stream and closes it. A failed
            // shutdown (the peer is gone) leaves nothing to close.
            None => {
                let _ = rustix::net::shutdown(tcp, rustix::net::Shutdown::Both);
            }
        }
    }

    /// Connections open now from `peer`'s address (as counted).
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&address_of(peer.to_canonical()))
            .copied()
            .unwrap_or(0)
    }

    /// Counts one refusal; logs how many there were at most every
    /// [`REPORT_EVERY`] (a flood of them is one line, not one each).
    fn refused(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.record_connection_refused();
        }
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if reported.is_none_or(|at| now.duration_since(at) >= REPORT_EVERY) {
            *reported = Some(now);
            let refused = self.unreported.swap(0, Ordering::Relaxed);
            tracing::warn!(
                refused,
                per_address = self.per_address,
                "connections refused: their address already held http.max_connections_per_address"
            );
        }
    }
}

/// The TCP connection under `io`, plain or TLS.
fn tcp_of(io: &dyn Any) -> Option<&TcpStream> {
    if let Some(tcp) = io.downcast_ref::<TcpStream>() {
        return Some(tcp);
    }
    io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
        .map(|tls| tls.get_ref().0)
}

/// What one client is counted as: an IPv4 address, or an IPv6 /64.
fn address_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_address_gets_its_own_places_and_a_closed_connection_frees_one() {
        let cap = Arc::new(ConnectionCap::new(2, TrustedProxies::default()));
        let a = [cap.admit(ip("10.0.0.1")), cap.admit(ip("10.0.0.1"))];
        assert!(a.iter().all(Option::is_some));
        assert!(cap.admit(ip("10.0.0.1")).is_none());
        // Another address is not affected.
        let b = cap.admit(ip("10.0.0.2"));
        assert!(b.is_some());
        assert_eq!(cap.open_from(ip("10.0.0.1")), 2);
        drop(a);
        assert_eq!(cap.open_from(ip("10.0.0.1")), 0);
        assert!(cap.admit(ip("10.0.0.1")).is_some());
        drop(b);
        // Nothing is kept for addresses with nothing open.
        assert!(cap.open.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let cap = Arc::new(ConnectionCap::new(1, TrustedProxies::default()));
        let _one = cap.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(cap.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(cap.admit(ip("2001:db8:1:3::1")).is_some());
        let _v4 = cap.admit(ip("192.0.2.1")).unwrap();
        assert!(cap.admit(ip("::ffff:192.0.2.1")).is_none());
    }

    #[test]
    fn trusted_proxies_and_a_zero_cap_are_never_refused() {
        let proxies = TrustedProxies::new(vec!["10.9.0.0/16".parse().unwrap()]);
        let cap = Arc::new(ConnectionCap::new(1, proxies));
        let held: Vec<_> = (0..50).map(|_| cap.admit(ip("10.9.1.1"))).collect();
        assert!(held.iter().all(Option::is_some));
        assert_eq!(cap.open_from(ip("10.9.1.1")), 0);
        drop(held);

        let uncapped = Arc::new(ConnectionCap::new(0, TrustedProxies::default()));
        let held: Vec<_> = (0..50).map(|_| uncapped.admit(ip("10.0.0.1"))).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(uncapped.open.lock().unwrap().is_empty());
    }
}
