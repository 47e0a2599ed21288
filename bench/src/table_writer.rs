//! `arrow-bench table-writer`: keeps a cluster table fresh with N fake nodes (a comet per node
//! per interval, as the comet receiver writes them) for the library benchmarks
//! (bench/lib_bench.sh), and `arrow-bench placement`: the node's in-process placement cost
//! (`arrow_cluster::designated` over a snapshot), the peer of the library's lookups.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_cluster::{Comet, Liveness, NodeView, Table};

#[derive(Debug, clap::Args)]
pub struct TableWriterArgs {
    /// Table file to create (e.g. /dev/shm/arrow-bench-table).
    #[arg(long)]
    pub path: PathBuf,
    /// Nodes named n01.<domain> … with 1 TiB each.
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    #[arg(long, default_value = "bench.test")]
    pub domain: String,
    /// HTTP address every node announces (ip:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: std::net::SocketAddr,
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Stop after this long.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

pub fn run_writer(a: &TableWriterArgs) -> Result<(), String> {
    let liveness = Liveness {
        comet_interval_ms: a.interval_ms,
        missing_intervals: 3,
    };
    let table = Table::create_with(&a.path, a.nodes.max(1), liveness).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut seq = 0;
    while Instant::now() < end {
        seq += 1;
        for i in 1..=a.nodes {
            let comet = Comet {
                name: format!("n{i:02}.{}", a.domain),
                boot_id: 1,
                sequence: seq,
                time_ms: seq,
                addr: Some(a.http.ip()),
                http_port: a.http.port(),
                brpu_bps: 10_000_000_000,
                capacity_bps: 10_000_000_000,
                weight: 1 << 40,
                users: 0,
                mirroring: false,
                admitting: true,
                disks: Vec::new(),
            };
            table
                .upsert(&comet, arrow_cluster::monotonic_ms())
                .map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(a.interval_ms));
    }
    let _ = std::fs::remove_file(&a.path);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PlacementArgs {
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Distinct keys cycled through.
    #[arg(long, default_value_t = 65_536)]
    pub keys: u32,
    #[arg(long, default_value_t = 2)]
    pub seconds: u64,
}

/// The keys the library bench (lib/bench/lookup_bench.c) looks up: `bench.test` + 32 hex.
pub fn bench_key(i: u32) -> String {
    let h = arrow_cluster::fmix64(u64::from(i) + 1);
    let h2 = arrow_cluster::fmix64(h);
    format!("bench.test{h:016x}{h2:016x}")
}

pub fn run_placement(a: &PlacementArgs) -> Result<(), String> {
    let nodes: Vec<NodeView> = (1..=a.nodes)
        .map(|i| NodeView::fresh(format!("n{i:02}.bench.test"), 1 << 40, 10_000_000_000))
        .collect();
    let keys: Vec<String> = (0..a.keys.max(1)).map(bench_key).collect();
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let (mut n, start) = (0u64, Instant::now());
    let mut sink = 0usize;
    let mut at = 0usize;
    while Instant::now() < end {
        for _ in 0..4096 {
            let k = &keys[at];
            at = (at + 1) % keys.len();
            sink += arrow_cluster::designated(&nodes, k, 0).map_or(0, |n| n.name.len());
        }
        n += 4096;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "placement_lookups_per_s={:.0} nodes={} keys={} (sink {sink})",
        n as f64 / secs,
        a.nodes,
        a.keys
    );
    Ok(())
}
