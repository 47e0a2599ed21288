//! `arrow-bench`: measurement tools for Arrow.
//!
//! ```text
//! arrow-bench replay --trace T.csv --capacity-bytes N --policy lru-sp|byte-mode --decisions OUT.csv
//!     trace → in-memory index + storage eviction policy → key,hit decisions + OHR/BHR
//! arrow-bench dns-serve --listen ADDR [--nodes N] [--core C]
//!     Arrow's DNS responder over a fixed directory (for bench/dns_bench.sh)
//! arrow-bench storage-read --file F --size-bytes N --pattern rand4k|seq1m --iodepth D --seconds S
//!     fill F through the storage engine → D concurrent lookup+read → ops/s, MB/s (vs fio:
//!     bench/storage_vs_fio.sh)
//! arrow-bench restart --objects N --file F
//!     fill a slab with N objects → time reopening it → restart seconds, index bytes/object
//! arrow-bench cluster-sim [--nodes 100 --titles 20000 --requests 200000 --zipf-s 0.9]
//!     discrete simulation of cluster placement: forwarding vs mirror count, key movement, load
//! arrow-bench table-writer --path /dev/shm/T [--nodes 3 --interval-ms 100 --seconds 60]
//!     keep a cluster table fresh with fake nodes (the library benchmarks: bench/lib_bench.sh)
//! arrow-bench placement [--nodes 3 --keys 65536 --seconds 2]
//!     the node's in-process placement per lookup (the peer of the library's lookups)
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cluster_sim;
mod dns_serve;
mod fill_ratio;
mod replay;
mod restart_bench;
mod storage_bench;
mod table_writer;

#[derive(Debug, Parser)]
#[command(name = "arrow-bench", about = "Arrow benchmarks and trace tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a timestamp,key,size trace through an eviction policy; write key,hit decisions.
    Replay(replay::ReplayArgs),
    /// Serve zone dx.bench.test with Arrow's DNS responder over a fixed directory.
    DnsServe(dns_serve::DnsServeArgs),
    /// Read through the storage engine (compare with fio: bench/storage_vs_fio.sh).
    StorageRead(storage_bench::StorageReadArgs),
    /// Fill a slab with N objects, then time reopening it.
    Restart(restart_bench::RestartArgs),
    /// Fill new slabs with small objects until the first eviction: body bytes ÷ slab size.
    FillRatio(fill_ratio::FillRatioArgs),
    /// Simulate cluster placement: forwarding vs mirror count, key movement, bounded load.
    ClusterSim(cluster_sim::ClusterSimArgs),
    /// Keep a cluster table fresh with fake nodes (for the library benchmarks).
    TableWriter(table_writer::TableWriterArgs),
    /// The node's in-process placement cost per lookup.
    Placement(table_writer::PlacementArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Replay(args) => replay::run(args).map_err(|e| e.to_string()),
        Command::DnsServe(args) => dns_serve::run(args),
        Command::StorageRead(args) => storage_bench::run(args),
        Command::Restart(args) => restart_bench::run(args),
        Command::FillRatio(args) => fill_ratio::run(args),
        Command::ClusterSim(args) => cluster_sim::run(args),
        Command::TableWriter(args) => table_writer::run_writer(args),
        Command::Placement(args) => table_writer::run_placement(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("arrow-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
