//! Errors of the cluster library: operating errors are values that name what failed and where.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Every operating error of the cluster library.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration is inconsistent (see [`crate::ClusterConfig::validate`]).
    #[error("cluster config: {0}")]
    Config(String),

    /// Reverse lookup gave no canonical name for the node's address.
    #[error(
        "node identity: no canonical name for {addr} ({reason}); add a PTR record or an \
         /etc/hosts line for it, or set cluster.node_name"
    )]
    Unresolvable { addr: IpAddr, reason: String },

    /// No address could be found to name this node.
    #[error(
        "node identity: cannot find this node's address ({reason}); set cluster.advertise_addr \
         or cluster.node_name"
    )]
    NoAddress { reason: String },

    /// A node name is not usable as a DNS name (it goes into CNAME answers).
    #[error("node name {name:?} is invalid: {reason}")]
    BadNodeName { name: String, reason: &'static str },

    /// An I/O operation on the shared-memory table failed.
    #[error("cluster table {op} {path}: {source}")]
    TableIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The table file exists but is not a cluster table of this layout.
    #[error("cluster table {path}: {reason}")]
    TableLayout { path: PathBuf, reason: String },

    /// The table was written by a newer Arrow with a layout this build cannot read.
    #[error(
        "cluster table {path}: layout version {found} is newer than this build reads ({supported})"
    )]
    TableVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    /// Another process already writes this table (the comet receiver holds an exclusive lock).
    #[error("cluster table {path} is already written by another process (pid in header: {pid})")]
    TableBusy { path: PathBuf, pid: u64 },

    /// `upsert` on a table opened read-only.
    #[error("cluster table {path} is open read-only")]
    TableReadOnly { path: PathBuf },

    /// Every record holds an in-service node: no record free for a new node.
    #[error("cluster table full: {max_nodes} records hold in-service nodes, {name:?} dropped")]
    TableFull { max_nodes: u32, name: String },

    /// A socket operation of the comet transport failed.
    #[error("comet socket {op} {addr}: {source}")]
    Socket {
        op: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The cluster thread could not be spawned.
    #[error("spawning the cluster thread: {0}")]
    Spawn(#[source] std::io::Error),
}
