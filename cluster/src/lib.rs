//! arrow-cluster: each node holds the complete cluster state and decides alone (no master).
//!
//! ```text
//! shards ──add_*()──▶ LocalStats (per-shard atomics)
//!                         │ sample() every comet_interval_ms, on the cluster thread (service.rs)
//!                         ▼
//!              BrpuMeter (brpu.rs): C_cpu, C_net, C_disk → capacity, brpu, admit(U+1)
//!              MirrorState: cluster headroom vs low/high watermarks (hysteresis)
//!                         │
//!                         ▼ Comet (comet.rs): versioned, HMAC-SHA256 over the cluster secret
//!   transport.rs: multicast group (IPv4/IPv6, TTL 1) and/or unicast peers ──▶ other nodes
//!                                                                             │
//!   other nodes' comets ──▶ receiver.rs: authenticate → replay/skew check ───┘
//!                         │        (drops counted by cause)
//!                         ▼ upsert (the single writer)
//!              Table (table.rs): /dev/shm file, header + one seqlock record per node
//!                         │ lock-free snapshot(): in_service computed from age;
//!                         │ SnapshotCache: re-read only when the generation changes
//!                         ▼
//!   shards (HTTP), DNS responder, `arrow status` (another process, read-only mapping)
//!              placement.rs: designated(nodes, cluster key, guarantee) — weighted rendezvous
//!              hashing bounded by brpu headroom; pick_by_headroom for other DNS names
//! ```
//!
//! Node identity (identity.rs): the canonical name from a reverse lookup of the node's address,
//! or `cluster.node_name`. Cluster key: domain + md5 hex of the hash input.

mod brpu;
mod comet;
mod config;
mod error;
mod identity;
pub mod keys;
mod placement;
mod receiver;
mod service;
mod stats;
mod status;
mod table;
mod transport;

pub use brpu::{
    admits, cluster_headroom, Bottleneck, BrpuLimits, BrpuMeter, BrpuSample, BrpuSnapshot,
    MirrorState,
};
pub use comet::{
    freshness, signing_key_from_hex, verifying_key_from_hex, Comet, CometError, CometKey,
    DiskHealth, DiskState, Freshness, COMET_MAX_BYTES, COMET_VERSION, MAX_DISKS,
};
pub use config::{ClusterConfig, OverflowConfig, MAX_NODES_LIMIT};
pub use error::ClusterError;
pub use identity::{cluster_key, node_name, resolve_node_name, NODE_NAME_MAX_BYTES};
pub use keys::{KeyRule, Keys, QueryKey};
pub use placement::{
    designated, designated_by_key_hash, designated_bytes, fmix64, fnv1a64, home, hrw_hash,
    hrw_score, ln_portable, pick_by_headroom, pick_by_headroom_bounded, ranked, unit_interval,
};
pub use receiver::{Admission, ClusterCounters, CounterSnapshot, Receiver};
pub use service::{start, start_on, wall_ms, ClusterHandle, ClusterService};
pub use stats::{LocalStats, ShardStats};
pub use status::{format_status, human_bps, human_bytes};
pub use table::{
    monotonic_ms, Liveness, NodeView, SnapshotCache, Table, HEADER_WORDS as TABLE_HEADER_WORDS,
    RECORD_WORDS, TABLE_VERSION,
};

/// Placement over one table snapshot with a fixed guarantee: what HTTP and DNS both use.
pub struct Router<'a> {
    nodes: &'a [NodeView],
    guarantee_bps: u64,
}

impl<'a> Router<'a> {
    pub fn new(nodes: &'a [NodeView], guarantee_bps: u64) -> Self {
        Router {
            nodes,
            guarantee_bps,
        }
    }

    /// The designated node for a cluster key; `None`: overflow.
    pub fn designated(&self, cluster_key: &str) -> Option<&'a NodeView> {
        designated(self.nodes, cluster_key, self.guarantee_bps)
    }

    /// The key's home node, ignoring load.
    pub fn home(&self, cluster_key: &str) -> Option<&'a NodeView> {
        home(self.nodes, cluster_key)
    }

    /// Is `node_name` the designated node (self-serving)?
    pub fn is_designated(&self, cluster_key: &str, node_name: &str) -> bool {
        self.designated(cluster_key)
            .is_some_and(|n| n.name == node_name)
    }

    /// A node for a name that is not content-aware; `None`: overflow.
    pub fn pick_by_headroom(&self, seed: u64) -> Option<&'a NodeView> {
        pick_by_headroom_bounded(self.nodes, seed, self.guarantee_bps)
    }
}
