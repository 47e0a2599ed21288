//! The DNS responder's view of the cluster: `arrow_dns::Directory` over the same table and the
//! same placement function the HTTP side uses, so a content-aware name and an HTTP request for
//! the same cluster key always name the same node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_dns::{Answer, Directory};

use crate::shard::Node;

/// Directory over the cluster table (or over this node alone when no cluster is configured).
pub struct ClusterDirectory {
    table: Option<Arc<arrow_cluster::Table>>,
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
        }
    }
}

impl Directory for ClusterDirectory {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        let Some(table) = &self.table else {
            return Some(Answer::Node(self.self_name.clone()));
        };
        let nodes = table.snapshot();
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
        let nodes = table.snapshot();
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
