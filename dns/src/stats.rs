//! Counters of the responder's defences, written by its thread and readable from any thread
//! through [`crate::DnsHandle::stats`]. They are not yet rendered by the server's `/metrics`
//! (the server does not keep the DNS handle where the admin endpoint could read it).

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the responder started.
#[derive(Debug, Default)]
pub struct DnsStats {
    tcp_refused_per_source: AtomicU64,
    tcp_refused_full: AtomicU64,
    tcp_idle_evicted: AtomicU64,
    tcp_message_timeouts: AtomicU64,
    udp_truncated: AtomicU64,
    formerr: AtomicU64,
}

/// A copy of [`DnsStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounters {
    /// TCP connections closed at accept because their source had
    /// `tcp_connections_per_source_max` open.
    pub tcp_refused_per_source: u64,
    /// TCP connections closed at accept because `tcp_connections_max` were open and none idle.
    pub tcp_refused_full: u64,
    /// Idle TCP connections closed to make room for a new one.
    pub tcp_idle_evicted: u64,
    /// TCP connections closed because a query did not arrive whole (or its answer was not
    /// written) within `tcp_message_ms`.
    pub tcp_message_timeouts: u64,
    /// UDP answers sent with TC=1.
    pub udp_truncated: u64,
    /// Answers with RCODE FORMERR (UDP and TCP).
    pub formerr: u64,
}

impl DnsStats {
    /// The counters now.
    pub fn snapshot(&self) -> DnsCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsCounters {
            tcp_refused_per_source: get(&self.tcp_refused_per_source),
            tcp_refused_full: get(&self.tcp_refused_full),
            tcp_idle_evicted: get(&self.tcp_idle_evicted),
            tcp_message_timeouts: get(&self.tcp_message_timeouts),
            udp_truncated: get(&self.udp_truncated),
            formerr: get(&self.formerr),
        }
    }

    pub(crate) fn refused_per_source(&self) {
        self.tcp_refused_per_source.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn refused_full(&self) {
        self.tcp_refused_full.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn idle_evicted(&self) {
        self.tcp_idle_evicted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn message_timeout(&self) {
        self.tcp_message_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn truncated(&self) {
        self.udp_truncated.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn formerr(&self) {
        self.formerr.fetch_add(1, Ordering::Relaxed);
    }
}
