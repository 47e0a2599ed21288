//! arrow-lib: Arrow's routing as a C library (`libarrow_cdn.so`, `libarrow_cdn.a`, `include/arrow.h`)
//! for front ends that are not Arrow — nginx with the Lua module (`lua/`) and PowerDNS with the
//! lua2 backend (`pdns/`) — so they route exactly as the node beside them does.
//!
//! ```text
//! arrow_open(node config) → Handle (one per thread): host rules, guarantee, overflow CDN,
//!                           DNS zones, the table path — parsed with the node's own types
//! arrow_route(host, path) → keys (arrow_cluster::keys) → cluster key ─┐
//! arrow_lookup(key) ──────────────────────────────────────────────────┤
//!        table snapshot (read-only mmap of /dev/shm, seqlock records; re-read when the
//!        generation word moves or after comet_interval/4) → arrow_cluster::designated_bytes
//!        → action (self / peer / mirror / overflow / local) + flags (error, overload, self,
//!          mirror) + designated node + mirror set → caller's struct arrow_result
//! arrow_dns_answer(qname, qtype) → arrow_dns::handle (the node's responder code) → records
//! ```
//!
//! Placement, key derivation and the DNS answers are the node's code (crates `arrow-cluster`
//! and `arrow-dns` without its server), so the library cannot drift from the node. Lookups
//! take no lock, make no system call and allocate nothing in steady state; any number of
//! processes may read the table at once (its records are seqlocked).

mod config;
mod dns;
pub mod ffi;
mod handle;
pub mod status;

pub use config::LibConfig;
pub use ffi::{NodeOut, RouteKeys, RouteResult, ADDR_BYTES, KEY_BYTES, MIRRORS_MAX, NAME_BYTES};
pub use handle::{Handle, CLUSTER_KEY_MAX_BYTES};
