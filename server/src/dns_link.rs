//! The DNS responder's view of the cluster: `arrow_dns::Directory` over the same table and the
//! same placement function the HTTP side uses, so a content-aware name and an HTTP request for
//! the same cluster key always name the same node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_dns::{Answer, Directory};

use crate::ctx::Node;

/// Directory over the cluster table (or over this node alone when no cluster is configured).
pub struct ClusterDirectory {
    table: Option<Arc<arrow_cluster::Table>>,
    /// The table as of at most `SNAPSHOT_TTL` ago (the responder runs on one thread; the
    /// mutex is never contended).
    cache: Mutex<(Option<Instant>, Arc<Vec<arrow_cluster::NodeView>>)>,
    guarantee_bps: u64,
    self_name: String,
    seed: AtomicU64,
}

impl ClusterDirectory {
    pub fn new(node: &Node) -> ClusterDirectory {
        ClusterDirectory {
            table: node.cluster.as_ref().map(|c| c.handle.table()),
            guarantee_bps: node.cluster.as_ref().map_or(0, |c| c.guarantee_bps),
            self_name: node.name.clone(),
            seed: AtomicU64::new(0x5eed),
            cache: Mutex::new((None, Arc::new(Vec::new()))),
        }
    }

    fn nodes(&self, table: &arrow_cluster::Table) -> Arc<Vec<arrow_cluster::NodeView>> {
        const SNAPSHOT_TTL: Duration = Duration::from_millis(50);
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.is_none_or(|t| t.elapsed() > SNAPSHOT_TTL) {
            *c = (Some(Instant::now()), Arc::new(table.snapshot()));
        }
        c.1.clone()
    }
}

impl Directory for ClusterDirectory {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        let Some(table) = &self.table else {
            return Some(Answer::Node(self.self_name.clone()));
        };
        let nodes = self.nodes(table);
        if !nodes.iter().any(|n| n.in_service) {
            return None;
        }
        Some(
            match arrow_cluster::designated(&nodes, cluster_key, self.guarantee_bps) {
                Some(n) => Answer::Node(n.name.clone()),
                None => Answer::Overflow,
            },
        )
    }

    fn by_headroom(&self) -> Option<Answer> {
        let Some(table) = &self.table else {
            return Some(Answer::Node(self.self_name.clone()));
        };
        let nodes = self.nodes(table);
        if !nodes.iter().any(|n| n.in_service) {
            return None;
        }
        let seed = self.seed.fetch_add(1, Ordering::Relaxed);
        Some(
            match arrow_cluster::pick_by_headroom_bounded(&nodes, seed, self.guarantee_bps) {
                Some(n) => Answer::Node(n.name.clone()),
                None => Answer::Overflow,
            },
        )
    }
}

pub fn start(cfg: arrow_dns::DnsConfig, node: &Arc<Node>) -> Result<arrow_dns::DnsHandle, String> {
    let dir: Arc<dyn Directory> = Arc::new(ClusterDirectory::new(node));
    arrow_dns::spawn(cfg, dir).map_err(|e| e.to_string())
}

/// Prometheus lines for the DNS responder's defences.
pub fn metrics_text(c: &arrow_dns::DnsCounters, o: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "# HELP arrow_dns_tcp_refused_total DNS TCP connections closed at accept, by reason.\n# TYPE arrow_dns_tcp_refused_total counter\narrow_dns_tcp_refused_total{{reason=\"per_source\"}} {}\narrow_dns_tcp_refused_total{{reason=\"full\"}} {}",
        c.tcp_refused_per_source, c.tcp_refused_full
    );
    for (name, help, v) in [
        ("arrow_dns_tcp_idle_evicted_total", "Idle DNS TCP connections closed to make room for a new one.", c.tcp_idle_evicted),
        ("arrow_dns_tcp_message_timeouts_total", "DNS TCP connections closed because a message did not arrive (or leave) within tcp_message_ms.", c.tcp_message_timeouts),
        ("arrow_dns_udp_truncated_total", "UDP answers cut to the advertised size with TC set.", c.udp_truncated),
        ("arrow_dns_formerr_total", "Queries answered FORMERR (malformed, including EDNS options).", c.formerr),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
}
