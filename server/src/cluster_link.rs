//! The node's link to its cluster as the shards see it: the cluster handle and the counters fed
//! to it, a per-shard snapshot cache of the table, and the routing decision a request gets.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arrow_cluster::NodeView;

use crate::keys::Keys;

/// The header marking an intra-cluster pull; its value is the pulling node's name.
pub const PULL_HEADER: &str = "x-arrow-pull";
pub const SNAPSHOT_TTL: Duration = Duration::from_millis(100);

/// The node's view of its cluster.
pub struct ClusterLink {
    pub handle: arrow_cluster::ClusterHandle,
    /// Counters the shards feed and the cluster thread samples for brpu.
    pub local: std::sync::Arc<arrow_cluster::LocalStats>,
    pub guarantee_bps: u64,
    pub overflow: Option<crate::config::OverflowConfig>,
    /// Until then the node is still hearing the cluster: cacheable requests wait before they
    /// are routed, so a starting node never acts as the designated node of others' keys.
    pub warm_at: Instant,
    /// How long a node that refused a pull is treated as out of service by this node: until the
    /// table has had the time to mark it out (missing intervals + 1).
    pub unreachable_ms: u64,
}

impl ClusterLink {
    /// Time left before the node has heard the cluster long enough to route.
    pub fn warmup_left(&self) -> Option<Duration> {
        let left = self.warm_at.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

#[derive(Default)]
pub struct RouteCache {
    pub(crate) at: Option<Instant>,
    pub(crate) nodes: Rc<Vec<NodeView>>,
    /// Nodes this shard could not reach for a pull, until when (bounded by the table's size:
    /// one entry per node name of the table at most).
    pub(crate) unreachable: Vec<(String, Instant)>,
}

pub enum Route {
    /// Serve from this node's cache; when mirroring, fill it from the designated node.
    Local {
        self_serving: bool,
        designated: Option<String>,
        mirror_from: Option<SocketAddr>,
    },
    Peer {
        node: String,
        addr: SocketAddr,
    },
    Overflow {
        location: String,
    },
}

impl Route {
    /// The debug headers of docs/DESIGN.md (as in the seed's PoC).
    pub fn debug_headers(&self, k: &Keys, self_name: &str, path: &str, out: &mut String) {
        use std::fmt::Write as _;
        let (act, pull_node) = match self {
            Route::Local {
                self_serving: true, ..
            } => ("1 (self-serving)", self_name.to_string()),
            Route::Local { designated, .. } => (
                "0 (mirror)",
                designated.clone().unwrap_or_else(|| self_name.to_string()),
            ),
            Route::Peer { node, .. } => ("0 (pulled from peer)", node.clone()),
            Route::Overflow { .. } => ("2 (overflow)", String::new()),
        };
        let _ = write!(
            out,
            "X-Arrow-Act: {act}\r\nX-Arrow-Hash-Input: {}\r\nX-Arrow-Cluster-Key: {}\r\nX-Arrow-Cache-Key: {}\r\n",
            k.hash_input, k.cluster_key, k.cache_key
        );
        if !pull_node.is_empty() {
            let _ = write!(out, "X-Arrow-Pull-Url: http://{pull_node}{path}\r\n");
        }
    }
}

impl ClusterLink {
    /// `arrow status`-style table of the cluster as this node sees it.
    pub fn status_text(&self) -> String {
        arrow_cluster::format_status(
            &self.handle.table().snapshot(),
            arrow_cluster::monotonic_ms(),
        )
    }

    /// Prometheus lines for brpu, users, mirroring and comet counters.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let b = self.handle.brpu();
        let c = self.handle.counters();
        let mut o = String::new();
        let _ = writeln!(o, "# HELP arrow_brpu_bps Bitrate per user this node can sustain now.\n# TYPE arrow_brpu_bps gauge\narrow_brpu_bps {}", prom_bps(b.brpu_bps));
        let _ = writeln!(o, "# HELP arrow_capacity_bps Bits/s this node can deliver, by bound (cpu, net, disk) and their minimum.\n# TYPE arrow_capacity_bps gauge");
        for (r, v) in [
            ("cpu", b.c_cpu_bps),
            ("net", b.c_net_bps),
            ("disk", b.c_disk_bps),
            ("min", b.capacity_bps),
        ] {
            let _ = writeln!(o, "arrow_capacity_bps{{resource=\"{r}\"}} {}", prom_bps(v));
        }
        let _ = writeln!(
            o,
            "# HELP arrow_brpu_guarantee_bps The bitrate per user the cluster guarantees (cluster.brpu_guarantee_bps).\n# TYPE arrow_brpu_guarantee_bps gauge\narrow_brpu_guarantee_bps {}",
            b.guarantee_bps
        );
        let _ = writeln!(o, "# HELP arrow_users Viewers counted for the brpu (connections that carried media recently).\n# TYPE arrow_users gauge\narrow_users {}", b.users);
        let _ = writeln!(
            o,
            "# HELP arrow_mirroring 1 while this node keeps pulled copies (mirroring on).\n# TYPE arrow_mirroring gauge\narrow_mirroring {}",
            self.handle.mirroring() as u8
        );
        let _ = writeln!(o, "# HELP arrow_comets_sent_total Comets sent.\n# TYPE arrow_comets_sent_total counter\narrow_comets_sent_total {}", c.sent);
        let _ = writeln!(
            o,
            "# HELP arrow_comets_accepted_total Comets accepted into the cluster table.\n# TYPE arrow_comets_accepted_total counter\narrow_comets_accepted_total {}",
            c.accepted
        );
        let _ = writeln!(o, "# HELP arrow_comets_dropped_total Comets dropped, by reason.\n# TYPE arrow_comets_dropped_total counter");
        for (reason, v) in [
            ("malformed", c.dropped_malformed),
            ("forged", c.dropped_forged),
            ("replayed", c.dropped_replayed),
            ("stale", c.dropped_stale),
            ("table_full", c.dropped_table_full),
            ("rate_limited", c.dropped_rate_limited),
            ("unsigned", c.dropped_unsigned),
        ] {
            let _ = writeln!(o, "arrow_comets_dropped_total{{reason=\"{reason}\"}} {v}");
        }
        let now = arrow_cluster::monotonic_ms();
        let nodes = self.handle.table().snapshot();
        let _ = writeln!(o, "# HELP arrow_comet_age_ms Time since each node's last comet was accepted.\n# TYPE arrow_comet_age_ms gauge");
        for n in &nodes {
            let _ = writeln!(
                o,
                "arrow_comet_age_ms{{node=\"{}\"}} {}",
                n.name,
                now.saturating_sub(n.last_seen_ms)
            );
        }
        let _ = writeln!(o, "# HELP arrow_node_in_service 1 while a node of the table is in service (a comet within the missing interval).\n# TYPE arrow_node_in_service gauge");
        for n in &nodes {
            let _ = writeln!(
                o,
                "arrow_node_in_service{{node=\"{}\"}} {}",
                n.name, n.in_service as u8
            );
        }
        o
    }
}

/// A rate for Prometheus: unmeasured (unconstrained, `u64::MAX`) is `+Inf`.
fn prom_bps(bps: u64) -> String {
    if bps == u64::MAX {
        "+Inf".into()
    } else {
        bps.to_string()
    }
}
