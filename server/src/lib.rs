//! arrow-server — the caching HTTP node.
//!
//! ```text
//! accept (shard's SO_REUSEPORT socket, CPU-steered) → conn.rs: httparse head (bounded)
//!   → keys.rs: host rule → cache key, hash input, cluster key
//!   → route.rs: designated node? self / pull from peer / overflow 302
//!   → shard.rs: key-to-disk hashing → owning shard (local, or bounded cross-shard channel)
//!   → cache/: hit (RAM tier / O_DIRECT slab) | stale | revalidate | miss → fill
//!       fill: origin.rs fetch (pooled, failover) → viewers + disk writer → commit
//! ```
//! `freshness.rs` holds the RFC 9111 rules, `admin.rs` the admin endpoints, `metrics.rs` the
//! counters, `node.rs` start-up and shutdown, `demo.rs` the built-in demo origin.

pub mod access_log;
pub mod admin;
pub mod cluster_link;
pub mod config;
pub mod conn;
pub mod ctx;
pub mod demo;
pub mod dns_link;
pub mod forward;
pub mod freshness;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod netio;
pub mod node;
pub mod notify;
pub mod origin;
pub mod pace;

pub mod cache;
pub mod route;
pub mod shard;
pub mod sink;
pub mod splice;
pub mod steer;
pub mod tls;
pub mod tls_records;
pub mod vary;
pub mod viewers;
