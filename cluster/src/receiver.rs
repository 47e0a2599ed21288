//! Comet admission: datagram → authenticate + parse → own echo? → replay/freshness check →
//! table upsert. Every drop is counted by cause.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::comet::{freshness, Comet, CometKey, Freshness};
use crate::table::Table;
use crate::ClusterError;

/// Comet counters of one node (all cumulative).
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub(crate) sent: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) dropped_malformed: AtomicU64,
    pub(crate) dropped_forged: AtomicU64,
    pub(crate) dropped_replayed: AtomicU64,
    pub(crate) dropped_stale: AtomicU64,
    pub(crate) dropped_table_full: AtomicU64,
    pub(crate) own_echo: AtomicU64,
    pub(crate) name_conflicts: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
}

/// A copy of [`ClusterCounters`] for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Datagrams sent (one per destination).
    pub sent: u64,
    pub send_errors: u64,
    /// Comets from other nodes written to the table.
    pub accepted: u64,
    /// Not a comet of this format: bad length, magic, version or fields.
    pub dropped_malformed: u64,
    /// Authentication failed: wrong secret or altered.
    pub dropped_forged: u64,
    /// Not newer than the sender's last accepted comet.
    pub dropped_replayed: u64,
    /// Send time outside the allowed clock skew.
    pub dropped_stale: u64,
    /// No record free for a new node.
    pub dropped_table_full: u64,
    /// Our own comets (multicast loop, or ourselves in the peer list).
    pub own_echo: u64,
    /// Comets bearing our name from another boot: two nodes configured with one name.
    pub name_conflicts: u64,
    pub recv_errors: u64,
}

impl CounterSnapshot {
    /// Every dropped comet, whatever the cause.
    pub fn dropped(&self) -> u64 {
        self.dropped_malformed
            + self.dropped_forged
            + self.dropped_replayed
            + self.dropped_stale
            + self.dropped_table_full
    }
}

impl ClusterCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            sent: l(&self.sent),
            send_errors: l(&self.send_errors),
            accepted: l(&self.accepted),
            dropped_malformed: l(&self.dropped_malformed),
            dropped_forged: l(&self.dropped_forged),
            dropped_replayed: l(&self.dropped_replayed),
            dropped_stale: l(&self.dropped_stale),
            dropped_table_full: l(&self.dropped_table_full),
            own_echo: l(&self.own_echo),
            name_conflicts: l(&self.name_conflicts),
            recv_errors: l(&self.recv_errors),
        }
    }
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    OwnEcho,
    Malformed,
    Forged,
    Replayed,
    Stale,
    TableFull,
}

/// Admits comets into the table (the table's single writer).
pub struct Receiver {
    key: CometKey,
    table: Arc<Table>,
    self_name: String,
    self_boot_id: u64,
    max_clock_skew_ms: u64,
    counters: Arc<ClusterCounters>,
}

impl Receiver {
    pub fn new(
        key: CometKey,
        table: Arc<Table>,
        self_name: String,
        self_boot_id: u64,
        max_clock_skew_ms: u64,
        counters: Arc<ClusterCounters>,
    ) -> Self {
        Receiver {
            key,
            table,
            self_name,
            self_boot_id,
            max_clock_skew_ms,
            counters,
        }
    }

    /// Handles one datagram received from `source` at `mono_now_ms` (CLOCK_MONOTONIC, the
    /// table's clock) and `wall_now_ms` (unix ms, for the skew check).
    pub fn admit(
        &self,
        bytes: &[u8],
        source: Option<SocketAddr>,
        mono_now_ms: u64,
        wall_now_ms: u64,
    ) -> Admission {
        let c = &self.counters;
        let mut comet = match Comet::decode(bytes, &self.key) {
            Ok(comet) => comet,
            Err(e) if e.is_forged() => {
                bump(&c.dropped_forged);
                tracing::debug!(?source, "forged comet dropped");
                return Admission::Forged;
            }
            Err(e) => {
                bump(&c.dropped_malformed);
                tracing::debug!(?source, error = %e, "malformed comet dropped");
                return Admission::Malformed;
            }
        };
        if comet.name == self.self_name {
            if comet.boot_id != self.self_boot_id {
                let n = bump(&c.name_conflicts);
                if n.is_power_of_two() {
                    tracing::warn!(
                        name = %comet.name, ?source,
                        "another node sends comets under this node's name"
                    );
                }
            } else {
                bump(&c.own_echo);
            }
            return Admission::OwnEcho;
        }
        if comet.addr.is_none() {
            comet.addr = source.map(|s| s.ip());
        }
        let last = self.table.last_accepted(&comet.name, mono_now_ms);
        let verdict = freshness(
            &comet,
            last.map(|(pair, _)| pair),
            last.is_some_and(|(_, in_service)| in_service),
            wall_now_ms,
            self.max_clock_skew_ms,
        );
        match verdict {
            Freshness::Replayed => {
                bump(&c.dropped_replayed);
                return Admission::Replayed;
            }
            Freshness::Stale => {
                bump(&c.dropped_stale);
                return Admission::Stale;
            }
            Freshness::Fresh => {}
        }
        match self.table.upsert(&comet, mono_now_ms) {
            Ok(_) => {
                bump(&c.accepted);
                Admission::Accepted
            }
            Err(ClusterError::TableFull { .. }) => {
                bump(&c.dropped_table_full);
                Admission::TableFull
            }
            Err(e) => {
                // Only TableFull and TableReadOnly exist; the receiver owns a writer table.
                tracing::error!(error = %e, "comet upsert failed");
                bump(&c.dropped_table_full);
                Admission::TableFull
            }
        }
    }
}
