//! `arrow-bench dns-serve`: Arrow's DNS responder over a fixed directory, for bench/dns_bench.sh.
//!
//! Zone `dx.bench.test` (domain `bench.test`), name server `ns1.dx.bench.test` at 127.0.0.1,
//! nodes `n01…nNN.dx.bench.test` at 10.0.0.1…N. The directory is the mapping the PowerDNS Lua
//! script and the Knot zone of the benchmark reproduce:
//! - designated node of `bench.test<32 hex>` = node (first 8 hex digits as u32 mod N) + 1;
//! - headroom: n01, n02, … round robin.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_dns::{demo_zone, Answer, Directory, DnsConfig, ZoneConfig};

/// Most nodes the fixed directory can name (10.0.0.1 … 10.0.0.250).
const NODES_MAX: usize = 250;

#[derive(Debug, clap::Args)]
pub struct DnsServeArgs {
    /// Address to answer on, UDP and TCP.
    #[arg(long, default_value = "127.0.0.1:5300")]
    listen: SocketAddr,
    /// Number of nodes in the fixed directory (1..=250).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Core to pin the responder to (default: not pinned).
    #[arg(long)]
    core: Option<usize>,
}

/// The fixed directory of the benchmark.
struct BenchDirectory {
    nodes: Vec<String>,
    turn: AtomicUsize,
}

impl Directory for BenchDirectory {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        // The key ends in 32 hex digits; the first 8 of them pick the node.
        let start = cluster_key.len().checked_sub(32)?;
        let prefix = cluster_key.get(start..start + 8)?;
        let value = u32::from_str_radix(prefix, 16).ok()?;
        let index = value as usize % self.nodes.len();
        Some(Answer::Node(self.nodes[index].clone()))
    }

    fn by_headroom(&self) -> Option<Answer> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(Answer::Node(self.nodes[turn % self.nodes.len()].clone()))
    }
}

fn node_name(index: usize) -> String {
    format!("n{:02}.dx.bench.test", index + 1)
}

fn bench_zone(nodes: usize) -> ZoneConfig {
    let mut zone = demo_zone();
    zone.name = "dx.bench.test".to_string();
    zone.domain = "bench.test".to_string();
    zone.ns = vec!["ns1.dx.bench.test".to_string()];
    zone.glue = BTreeMap::from([(
        "ns1.dx.bench.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]);
    zone.nodes = (0..nodes)
        .map(|i| {
            let last_octet = u8::try_from(i + 1).unwrap_or(u8::MAX);
            (
                node_name(i),
                vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet))],
            )
        })
        .collect();
    zone
}

/// Serves until the process is killed.
pub fn run(args: &DnsServeArgs) -> Result<(), String> {
    if args.nodes == 0 || args.nodes > NODES_MAX {
        return Err(format!("--nodes must be within 1..={NODES_MAX}"));
    }
    let dir = Arc::new(BenchDirectory {
        nodes: (0..args.nodes).map(node_name).collect(),
        turn: AtomicUsize::new(0),
    });
    let cfg = DnsConfig {
        listen: vec![args.listen],
        zones: vec![bench_zone(args.nodes)],
        core: args.core,
        tcp_connections_max: 256,
        tcp_connections_per_source_max: 16,
        tcp_idle_ms: 10_000,
        tcp_message_ms: 500,
    };
    let handle = arrow_dns::spawn(cfg, dir).map_err(|e| e.to_string())?;
    for addr in handle.local_addrs() {
        println!("arrow-bench dns-serve: listening on {addr} (udp+tcp)");
    }
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designated_node_follows_the_first_hex_digits() {
        let dir = BenchDirectory {
            nodes: (0..4).map(node_name).collect(),
            turn: AtomicUsize::new(0),
        };
        // 0xaa22fad1 % 4 == 1 → n02.
        assert_eq!(
            dir.designated("bench.testaa22fad1ed4a441d54fa664f53d5b0ee"),
            Some(Answer::Node("n02.dx.bench.test".to_string()))
        );
        assert_eq!(dir.designated("short"), None);
        assert_eq!(
            dir.by_headroom(),
            Some(Answer::Node("n01.dx.bench.test".to_string()))
        );
        arrow_dns::Zones::new(&[bench_zone(4)]).expect("bench zone is valid");
    }
}
