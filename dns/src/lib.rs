//! Arrow's content-aware authoritative DNS responder, on one dedicated core.
//!
//! ```text
//! UDP datagram ─┐                                   ┌─ designated(cluster key) ─┐
//!               ├→ handle(bytes) → zone lookup ─────┤                           ├→ CNAME → bytes
//! TCP (len16) ──┘   (handler.rs)   (zone.rs)        └─ by_headroom() ───────────┘   (TC / len16)
//!                                                       Directory (the cluster table)
//! ```
//!
//! - `config.rs`: the typed TOML schema ([`DnsConfig`], [`ZoneConfig`], [`demo_zone`]).
//! - `zone.rs`: validated zones ([`Zones`]) and the class of each name in a zone.
//! - `handler.rs`: the pure, panic-free [`handle`]: wire bytes in, wire bytes (or drop) out.
//! - `server.rs`: [`spawn`] — a std thread pinned to one core running a monoio io_uring
//!   runtime with a UDP socket and a TCP listener per listen address.
//! - `stats.rs`: [`DnsStats`], the counters of the defences below ([`DnsHandle::stats`]).
//! - `log_limit.rs`: at most one log line per second per kind of peer-caused event.
//!
//! Feature `server` (default) builds `server.rs`, `stats.rs` and `log_limit.rs`; without it the
//! crate is config + zones + handler only (no monoio), as the C library (`lib/`) embeds it.
//!
//! Defences (no single client can take the responder from the others):
//! - TCP: at most `tcp_connections_per_source_max` (default 16) connections per source address
//!   and `tcp_connections_max` (default 256) in all; when all are open, the connection idle the
//!   longest is evicted for a new one; a query must arrive whole within `tcp_message_ms`
//!   (default 500) of its first byte, and a connection may wait `tcp_idle_ms` (default 10000)
//!   between queries.
//! - UDP: an answer is at most min(the requestor's EDNS payload size, the 1232 bytes we
//!   advertise), 512 without EDNS; a larger one is truncated (TC=1).
//! - ANY answers a single RRset (RFC 8482), never the whole node.
//! - Malformed queries, malformed EDNS options included, get FORMERR and no log line per packet.
//!
//! Zone semantics, for zone `dx.claw.ac` of customer domain `claw.ac`:
//! - `<32 hex>.dx.claw.ac` → CNAME (TTL `content_ttl_s`, default 300) to the designated node of
//!   cluster key `claw.ac<32 hex>` (content-aware: a title always lands on one node);
//! - any other single label (`c.dx.claw.ac`) → CNAME (TTL `headroom_ttl_s`, default 5) to a node
//!   picked by brpu headroom;
//! - [`Answer::Overflow`] (or no node in service) → CNAME to the zone's overflow CDN host;
//! - the apex answers SOA and NS (glue in the additional section); configured hosts inside the
//!   zone answer A/AAAA; deeper names are NXDOMAIN; negative answers carry the SOA;
//! - names outside every zone are REFUSED; responses (QR=1) are never answered.

mod config;
mod error;
mod handler;
#[cfg(feature = "server")]
mod log_limit;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod stats;
mod zone;

pub use config::{demo_zone, DnsConfig, ZoneConfig};
pub use error::DnsError;
pub use handler::{
    handle, handle_cacheable, Transport, EDNS_ADVERTISED_BYTES, HEADER_BYTES, QUERY_ADDITIONAL_MAX,
    UDP_PAYLOAD_CAP_BYTES, UDP_PAYLOAD_MIN_BYTES,
};
#[cfg(feature = "server")]
pub use server::{spawn, DnsHandle, TCP_MESSAGE_MAX_BYTES};
#[cfg(feature = "server")]
pub use stats::{DnsCounters, DnsStats};
pub use zone::{Zones, CONTENT_LABEL_BYTES};

/// Where CNAME targets come from. The server implements it over the cluster table; tests and
/// benchmarks use fixed fakes. Called on the responder's core for each query, so it must be
/// cheap and must not block.
pub trait Directory: Send + Sync + 'static {
    /// The designated node (FQDN, no trailing dot) for a cluster key `"<domain><32 hex md5>"`,
    /// or `None` if no node is in service.
    fn designated(&self, cluster_key: &str) -> Option<Answer>;
    /// A node chosen by brpu headroom for non-content-aware names (may differ call to call).
    fn by_headroom(&self) -> Option<Answer>;
}

/// A directory's choice for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// CNAME to this node (FQDN, no trailing dot).
    Node(String),
    /// CNAME to the zone's configured overflow CDN host.
    Overflow,
}
