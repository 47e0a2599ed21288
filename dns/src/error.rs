//! Errors of configuring and starting the responder. Query handling has no error values: every
//! bad query is answered with an RCODE or dropped.

use std::net::SocketAddr;

/// Why the responder could not be configured or started. None of these is retryable without a
/// change (of config, of the port, or of the machine), except `Bind` when the port is in use.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A zone in the config is invalid.
    #[error("dns zone {zone:?}: {reason}")]
    Config { zone: String, reason: String },
    /// `listen` is empty, or another server-level setting is invalid.
    #[error("dns config: {reason}")]
    Server { reason: String },
    /// A UDP socket or TCP listener could not be bound.
    #[error("dns {proto} bind {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The io_uring runtime could not be built (kernel without io_uring, memlock limit, …).
    #[error("dns runtime: {source}")]
    Runtime { source: std::io::Error },
    /// The configured core does not exist or the thread could not be pinned to it.
    #[error("dns: cannot pin to core {core}")]
    Affinity { core: usize },
    /// The responder thread could not be started, or died before it was ready.
    #[error("dns thread: {reason}")]
    Thread { reason: String },
}
