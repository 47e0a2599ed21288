//! Comet admission: datagram → authenticate + parse → own echo? → replay/freshness check →
//! table upsert. Every drop is counted by cause.

use std::net::{IpAddr, SocketAddr};
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
    pub(crate) dropped_rate_limited: AtomicU64,
    pub(crate) dropped_unsigned: AtomicU64,
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
    /// Over the per-source (or overall) receive rate: dropped before authentication.
    pub dropped_rate_limited: u64,
    /// Per-node keys are configured and the comet is not signed by its sender's key.
    pub dropped_unsigned: u64,
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
            + self.dropped_rate_limited
            + self.dropped_unsigned
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
            dropped_rate_limited: l(&self.dropped_rate_limited),
            dropped_unsigned: l(&self.dropped_unsigned),
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
    RateLimited,
    Unsigned,
}

/// Sources remembered by the rate limiter; beyond this, new sources share one bucket.
const RATE_SOURCES_MAX: usize = 4096;

/// Token buckets per source address plus one for every source together, refilled per second:
/// a flood from one address (or spoofed from many) costs at most this many HMAC checks.
#[derive(Debug)]
struct RateLimiter {
    per_source_per_s: f64,
    all_per_s: f64,
    sources: std::collections::HashMap<IpAddr, (f64, u64)>,
    overflow: (f64, u64),
    all: (f64, u64),
}

impl RateLimiter {
    fn new(per_source_per_s: u32, max_nodes: u32) -> Self {
        let per_source_per_s = f64::from(per_source_per_s.max(1));
        let all_per_s = per_source_per_s * f64::from(max_nodes.max(1)) * 2.0;
        RateLimiter {
            per_source_per_s,
            all_per_s,
            sources: std::collections::HashMap::new(),
            overflow: (per_source_per_s, 0),
            all: (all_per_s, 0),
        }
    }

    /// Takes one token from `bucket` (burst: one second's worth) at `now_ms`.
    fn take(bucket: &mut (f64, u64), per_s: f64, now_ms: u64) -> bool {
        let elapsed_s = now_ms.saturating_sub(bucket.1) as f64 / 1000.0;
        bucket.0 = (bucket.0 + elapsed_s * per_s).min(per_s);
        bucket.1 = now_ms;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn allow(&mut self, source: Option<IpAddr>, now_ms: u64) -> bool {
        let per_source = self.per_source_per_s;
        if self.sources.len() >= RATE_SOURCES_MAX {
            // Forget sources silent for a minute before sharing the overflow bucket.
            self.sources
                .retain(|_, b| now_ms.saturating_sub(b.1) < 60_000);
        }
        let full = self.sources.len() >= RATE_SOURCES_MAX;
        let bucket = match source {
            Some(ip) if !full || self.sources.contains_key(&ip) => {
                self.sources.entry(ip).or_insert((per_source, now_ms))
            }
            _ => &mut self.overflow,
        };
        Self::take(bucket, per_source, now_ms) && Self::take(&mut self.all, self.all_per_s, now_ms)
    }
}

/// Admits comets into the table (the table's single writer).
pub struct Receiver {
    /// The current secret first, then the one being rotated out.
    keys: Vec<CometKey>,
    /// Per-node public keys: when set, every comet must be signed by its sender's key.
    node_keys: std::collections::HashMap<String, ed25519_dalek::VerifyingKey>,
    limiter: std::sync::Mutex<RateLimiter>,
    table: Arc<Table>,
    self_name: String,
    self_boot_id: u64,
    max_clock_skew_ms: u64,
    counters: Arc<ClusterCounters>,
}

impl Receiver {
    /// `keys`: the current secret first, then any being rotated out (at least one).
    /// `per_source_per_s`: comets accepted per second from one address; `max_nodes` bounds the
    /// rate of all sources together (twice that many sources' worth).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        keys: Vec<CometKey>,
        table: Arc<Table>,
        self_name: String,
        self_boot_id: u64,
        max_clock_skew_ms: u64,
        counters: Arc<ClusterCounters>,
        per_source_per_s: u32,
        max_nodes: u32,
    ) -> Self {
        assert!(!keys.is_empty(), "a receiver needs a secret");
        Receiver {
            keys,
            node_keys: std::collections::HashMap::new(),
            limiter: std::sync::Mutex::new(RateLimiter::new(per_source_per_s, max_nodes)),
            table,
            self_name,
            self_boot_id,
            max_clock_skew_ms,
            counters,
        }
    }

    /// Require every comet to be signed (Ed25519) by the key listed for its sender's name;
    /// names without a key are refused.
    pub fn with_node_keys(
        mut self,
        node_keys: std::collections::HashMap<String, ed25519_dalek::VerifyingKey>,
    ) -> Self {
        self.node_keys = node_keys;
        self
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
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(source.map(|s| s.ip()), mono_now_ms);
        if !allowed {
            bump(&c.dropped_rate_limited);
            return Admission::RateLimited;
        }
        let mut decoded = Comet::decode_signed(bytes, &self.keys[0]);
        for key in &self.keys[1..] {
            if matches!(&decoded, Err(e) if e.is_forged()) {
                decoded = Comet::decode_signed(bytes, key);
            }
        }
        let mut comet = match decoded {
            Ok((comet, signature)) => {
                if !self.node_keys.is_empty() && comet.name != self.self_name {
                    let signed_by_sender = match (self.node_keys.get(&comet.name), signature) {
                        (Some(vk), Some((sig, body))) => vk
                            .verify_strict(body, &ed25519_dalek::Signature::from_bytes(&sig))
                            .is_ok(),
                        _ => false,
                    };
                    if !signed_by_sender {
                        bump(&c.dropped_unsigned);
                        tracing::debug!(?source, name = %comet.name, "comet not signed by its sender's key");
                        return Admission::Unsigned;
                    }
                }
                comet
            }
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
            last.map_or(0, |(_, silent_ms)| silent_ms),
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
