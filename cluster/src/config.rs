//! The `[cluster]` section of Arrow's TOML config: typed, unknown keys rejected, every default
//! stated beside its field.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// Upper bound on `max_nodes`: the table stays a few hundred KiB.
pub const MAX_NODES_LIMIT: u32 = 4096;
/// Placeholder in `table_path` replaced by the node name.
pub const TABLE_PATH_NODE_PLACEHOLDER: &str = "{node}";

/// Cluster configuration of one node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's canonical name. Default: none — the name comes from a reverse lookup (PTR
    /// or /etc/hosts) of `advertise_addr` (see [`crate::resolve_node_name`]).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Address whose reverse lookup names this node, also sent in comets so peers (and the DNS
    /// responder) know where to reach it. Default: none — the source address of this host's
    /// default route is used for naming, and peers take the comet's source address.
    #[serde(default)]
    pub advertise_addr: Option<IpAddr>,
    /// Shared-memory file of the cluster table; `{node}` is replaced by the node name.
    /// Default: `/dev/shm/arrow-cluster-{node}`. Tests running several nodes on one host give
    /// each its own path.
    #[serde(default = "default_table_path")]
    pub table_path: PathBuf,
    /// Multicast group and port comets go to, IPv4 or IPv6, e.g. `239.255.77.77:7777` or
    /// `[ff15::77]:7777`. Default: none (unicast `peers` only).
    #[serde(default)]
    pub group: Option<SocketAddr>,
    /// Interface for multicast: a name (`eth0`) or one of its addresses. Default: none — the
    /// kernel's choice (the default route's interface).
    #[serde(default)]
    pub interface: Option<String>,
    /// Unicast peers comets are sent to (clouds without multicast). Default: empty.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// Socket comets from unicast peers arrive on; required when `peers` is set. Default: none.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Interval between two comets of this node, in milliseconds. Default: 500.
    #[serde(default = "default_comet_interval_ms")]
    pub comet_interval_ms: u64,
    /// A node whose comets have been missing for this many intervals is out of service.
    /// Default: 3.
    #[serde(default = "default_missing_intervals")]
    pub missing_intervals: u32,
    /// Cluster secret authenticating comets (HMAC-SHA256); at least 16 bytes. Required.
    pub secret: String,
    /// The secret being rotated out: comets signed with it are still accepted (this node signs
    /// with `secret` only). Rotate by setting the new `secret` and the old one here on every
    /// node, then removing this key once every node has been reloaded. Default: none.
    #[serde(default)]
    pub secret_previous: Option<String>,
    /// Per-node keys (optional): this node's Ed25519 secret key, a file holding 64 hex digits
    /// (`arrow keygen` writes one). With `node_keys`, every comet is also signed by its sender,
    /// so a node that leaks the cluster secret still cannot speak for another node.
    /// Default: none.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Per-node keys (optional): every node's Ed25519 public key (64 hex digits) by node name.
    /// When set, comets not signed by the key of the name they carry are dropped (counted as
    /// `unsigned`). Default: none (the cluster secret alone authenticates comets).
    #[serde(default)]
    pub node_keys: std::collections::BTreeMap<String, String>,
    /// A new node does not act as the designated node for any key until it has listened to the
    /// cluster this long (it waits, then routes with what it heard), so a restarted node never
    /// fills other nodes' keys from the origin. Default: two comet intervals.
    #[serde(default)]
    pub warmup_ms: Option<u64>,
    /// A connection counts as a viewer (for brpu and admission) while it delivered media bytes
    /// within this many milliseconds; idle connections and pulls by other nodes never count.
    /// Default: 10000.
    #[serde(default = "default_viewer_window_ms")]
    pub viewer_window_ms: u64,
    /// Comets accepted per second from one source address before the rest are dropped unread
    /// (counted as `rate_limited`), so a flood costs bounded CPU. Default: four per comet
    /// interval, at least 8.
    #[serde(default)]
    pub comets_per_source_per_s: Option<u32>,
    /// Records in the cluster table: the most nodes this cluster holds. Default: 256.
    #[serde(default = "default_max_nodes")]
    pub max_nodes: u32,
    /// brpu guarantee in bits/s: a node admits a new viewer only while it can keep it. Align it
    /// with the top rendition's bitrate. Default: 0 (no guarantee: admission never overflows).
    #[serde(default)]
    pub brpu_guarantee_bps: u64,
    /// NIC line rate in bits/s (C_net ceiling). Default: none — read from
    /// `/sys/class/net/<interface>/speed` when `interface` names one, else unconstrained.
    #[serde(default)]
    pub line_rate_bps: Option<u64>,
    /// Share of the line rate viewers may use (C_net = line rate × net_safety). Default: 0.9.
    #[serde(default = "default_net_safety")]
    pub net_safety: f64,
    /// Cluster headroom (capacity / (users × guarantee)) below which nodes start keeping the
    /// copies they pull (mirroring on). Default: 1.2.
    #[serde(default = "default_mirror_low_watermark")]
    pub mirror_low_watermark: f64,
    /// Cluster headroom above which mirroring stops again. Default: 2.0.
    #[serde(default = "default_mirror_high_watermark")]
    pub mirror_high_watermark: f64,
    /// Largest difference between a comet's send time and this node's clock, in milliseconds;
    /// older or future comets are dropped as stale (bounds replays across sender restarts).
    /// 0 disables the check. Default: 60000.
    #[serde(default = "default_max_clock_skew_ms")]
    pub max_clock_skew_ms: u64,
}

fn default_table_path() -> PathBuf {
    PathBuf::from("/dev/shm/arrow-cluster-{node}")
}
fn default_comet_interval_ms() -> u64 {
    500
}
fn default_missing_intervals() -> u32 {
    3
}
fn default_max_nodes() -> u32 {
    256
}
fn default_net_safety() -> f64 {
    0.9
}
fn default_mirror_low_watermark() -> f64 {
    1.2
}
fn default_mirror_high_watermark() -> f64 {
    2.0
}
fn default_max_clock_skew_ms() -> u64 {
    60_000
}
fn default_viewer_window_ms() -> u64 {
    10_000
}

impl ClusterConfig {
    /// A config with every default and the given secret (for tests and examples).
    pub fn with_secret(secret: &str) -> Self {
        ClusterConfig {
            node_name: None,
            advertise_addr: None,
            table_path: default_table_path(),
            group: None,
            interface: None,
            peers: Vec::new(),
            listen: None,
            comet_interval_ms: default_comet_interval_ms(),
            missing_intervals: default_missing_intervals(),
            secret: secret.to_owned(),
            secret_previous: None,
            signing_key_file: None,
            node_keys: Default::default(),
            warmup_ms: None,
            viewer_window_ms: default_viewer_window_ms(),
            comets_per_source_per_s: None,
            max_nodes: default_max_nodes(),
            brpu_guarantee_bps: 0,
            line_rate_bps: None,
            net_safety: default_net_safety(),
            mirror_low_watermark: default_mirror_low_watermark(),
            mirror_high_watermark: default_mirror_high_watermark(),
            max_clock_skew_ms: default_max_clock_skew_ms(),
        }
    }

    /// How long a starting node listens before it acts as a designated node.
    pub fn warmup_ms(&self) -> u64 {
        self.warmup_ms.unwrap_or(2 * self.comet_interval_ms)
    }

    /// Comets per second accepted from one source.
    pub fn comets_per_source_per_s(&self) -> u32 {
        self.comets_per_source_per_s.unwrap_or_else(|| {
            let per_s = 4_000 / self.comet_interval_ms.max(1);
            (per_s as u32).max(8)
        })
    }

    /// Checks the relations between fields; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.secret.len() < 16 {
            return Err("cluster.secret must be at least 16 bytes".into());
        }
        if self.secret_previous.as_ref().is_some_and(|s| s.len() < 16) {
            return Err("cluster.secret_previous must be at least 16 bytes".into());
        }
        if self.warmup_ms.is_some_and(|w| w > 600_000) {
            return Err("cluster.warmup_ms must be at most 600000".into());
        }
        if !(100..=3_600_000).contains(&self.viewer_window_ms) {
            return Err(format!(
                "cluster.viewer_window_ms = {} must be within 100..=3600000",
                self.viewer_window_ms
            ));
        }
        if !self.node_keys.is_empty() && self.signing_key_file.is_none() {
            return Err("cluster.node_keys is set but cluster.signing_key_file is not".into());
        }
        for (name, key) in &self.node_keys {
            crate::identity::check_node_name(name)
                .map_err(|e| format!("cluster.node_keys: {e}"))?;
            if crate::comet::verifying_key_from_hex(key).is_none() {
                return Err(format!(
                    "cluster.node_keys[{name:?}] is not an Ed25519 public key (64 hex digits)"
                ));
            }
        }
        if self.comets_per_source_per_s == Some(0) {
            return Err("cluster.comets_per_source_per_s must be > 0".into());
        }
        if !(10..=60_000).contains(&self.comet_interval_ms) {
            return Err(format!(
                "cluster.comet_interval_ms = {} must be within 10..=60000",
                self.comet_interval_ms
            ));
        }
        if !(1..=1000).contains(&self.missing_intervals) {
            return Err(format!(
                "cluster.missing_intervals = {} must be within 1..=1000",
                self.missing_intervals
            ));
        }
        if !(1..=MAX_NODES_LIMIT).contains(&self.max_nodes) {
            return Err(format!(
                "cluster.max_nodes = {} must be within 1..={MAX_NODES_LIMIT}",
                self.max_nodes
            ));
        }
        if let Some(name) = &self.node_name {
            crate::identity::check_node_name(name).map_err(|e| e.to_string())?;
        }
        if self.table_path.as_os_str().is_empty() {
            return Err("cluster.table_path must not be empty".into());
        }
        if self.group.is_none() && self.peers.is_empty() {
            return Err("cluster: set a multicast `group` or a unicast `peers` list".into());
        }
        if let Some(group) = self.group {
            if !group.ip().is_multicast() {
                return Err(format!("cluster.group {group} is not a multicast address"));
            }
            if group.port() == 0 {
                return Err("cluster.group needs a port".into());
            }
        }
        if !self.peers.is_empty() {
            let Some(listen) = self.listen else {
                return Err("cluster.peers is set but cluster.listen is not".into());
            };
            if let Some(peer) = self.peers.iter().find(|p| p.is_ipv4() != listen.is_ipv4()) {
                return Err(format!(
                    "cluster.peers entry {peer} is not of the address family of cluster.listen \
                     {listen}"
                ));
            }
            if let Some(peer) = self.peers.iter().find(|p| p.port() == 0) {
                return Err(format!("cluster.peers entry {peer} needs a port"));
            }
        }
        if let Some(iface) = &self.interface {
            if iface.is_empty() || (iface.len() > 15 && iface.parse::<IpAddr>().is_err()) {
                return Err(format!(
                    "cluster.interface {iface:?} is neither an interface name nor an address"
                ));
            }
        }
        if let Some(rate) = self.line_rate_bps {
            if rate == 0 {
                return Err("cluster.line_rate_bps must be > 0".into());
            }
        }
        if !(self.net_safety > 0.0 && self.net_safety <= 1.0) {
            return Err(format!(
                "cluster.net_safety = {} must be within (0, 1]",
                self.net_safety
            ));
        }
        let (low, high) = (self.mirror_low_watermark, self.mirror_high_watermark);
        if !(low.is_finite() && high.is_finite() && low > 0.0 && low < high) {
            return Err(format!(
                "cluster.mirror_low_watermark ({low}) must be > 0 and below \
                 cluster.mirror_high_watermark ({high})"
            ));
        }
        Ok(())
    }

    /// `table_path` with `{node}` replaced by the node name.
    pub fn table_path_for(&self, node_name: &str) -> PathBuf {
        let raw = self.table_path.to_string_lossy();
        if raw.contains(TABLE_PATH_NODE_PLACEHOLDER) {
            PathBuf::from(raw.replace(TABLE_PATH_NODE_PLACEHOLDER, node_name))
        } else {
            self.table_path.clone()
        }
    }

    /// This node's name: `node_name` when set, else the reverse lookup of `advertise_addr`.
    pub fn node_identity(&self) -> Result<String, crate::ClusterError> {
        match &self.node_name {
            Some(name) => {
                crate::identity::check_node_name(name)?;
                Ok(crate::identity::canonical(name))
            }
            None => crate::resolve_node_name(self.advertise_addr),
        }
    }
}

/// `[overflow]`: the third-party CDN that takes viewers the cluster cannot keep at the brpu
/// guarantee. Read by the node and by the C library (`lib/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverflowConfig {
    /// Host name of the third-party CDN that takes overflow viewers (HTTP 302, same path).
    pub cdn_host: String,
    /// Scheme of the redirect. Default "https".
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

fn default_scheme() -> String {
    "https".into()
}

impl OverflowConfig {
    /// Checks the section; the error names the key (within `[overflow]`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.cdn_host.is_empty() || self.cdn_host.contains('/') {
            return Err(("cdn_host", "must be a host name".into()));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(("scheme", "must be http or https".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        node_name = "n01.lax.hw.bar.net"
        table_path = "/dev/shm/test-{node}"
        group = "239.255.77.77:7777"
        interface = "eth0"
        secret = "0123456789abcdef0123"
        brpu_guarantee_bps = 8000000
        line_rate_bps = 25000000000
    "#;

    #[test]
    fn example_parses_with_defaults() {
        let cfg: ClusterConfig = toml::from_str(EXAMPLE).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.comet_interval_ms, 500);
        assert_eq!(cfg.missing_intervals, 3);
        assert_eq!(cfg.max_nodes, 256);
        assert_eq!(cfg.net_safety, 0.9);
        assert_eq!(cfg.mirror_low_watermark, 1.2);
        assert_eq!(cfg.mirror_high_watermark, 2.0);
        assert_eq!(
            cfg.table_path_for("n01.lax.hw.bar.net"),
            PathBuf::from("/dev/shm/test-n01.lax.hw.bar.net")
        );
        assert_eq!(cfg.node_identity().unwrap(), "n01.lax.hw.bar.net");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = format!("{EXAMPLE}\nbogus = 1\n");
        let err = toml::from_str::<ClusterConfig>(&text).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let mut cfg = ClusterConfig::with_secret("short");
        cfg.peers = vec!["127.0.0.1:7000".parse().unwrap()];
        assert!(cfg.validate().unwrap_err().contains("secret"));
        cfg.secret = "0123456789abcdef".into();
        assert!(cfg.validate().unwrap_err().contains("listen"));
        cfg.listen = Some("[::1]:7000".parse().unwrap());
        assert!(cfg.validate().unwrap_err().contains("family"));
        cfg.listen = Some("127.0.0.1:7001".parse().unwrap());
        cfg.validate().unwrap();
        cfg.group = Some("10.0.0.1:7777".parse().unwrap());
        assert!(cfg.validate().unwrap_err().contains("multicast"));
        cfg.group = Some("[ff15::77]:7777".parse().unwrap());
        cfg.validate().unwrap();
        cfg.mirror_low_watermark = 3.0;
        assert!(cfg.validate().unwrap_err().contains("watermark"));
    }
}
