//! Keeps bench/shards.sh from rotting: one short round of the 1 KiB scenario with one and two
//! shards, checking that each row has the node's CPU per hit and the per-shard thread figures
//! (CPU, sleeps, preemptions, page faults) for every shard, without errors. The figures are not
//! asserted.

mod common;

use std::process::Command;

#[test]
fn shards_bench_reports_per_shard_figures_for_one_and_two_shards() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("ignored: bench/shards.sh needs 2 cores and this machine has 1");
        return;
    }
    let root = common::repo_root();
    let arrow = common::arrow_bin();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(root.join("bench/shards.sh"))
        .arg(out.path())
        .env("ARROW_BIN", &arrow)
        .env("SCENARIOS", "hit1k")
        .env("NGINX_BOTH", "0")
        .env("ROUNDS", "1")
        .env("DURATION_S", "1")
        .env("CONNS", "4")
        .env("DISK_BYTES", "268435456")
        .env("BASE_PORT", common::base_port(37000))
        .env("SCRATCH", out.path().join("scratch"))
        .env("FILES", out.path().join("files"))
        .current_dir(root)
        .output()
        .expect("run bash bench/shards.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench/shards.sh failed ({:?})\nstderr:\n{stderr}",
        output.status
    );
    let rows = std::fs::read_to_string(out.path().join("shards.jsonl")).expect("shards.jsonl");
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    for shards in [1u64, 2] {
        let row = rows
            .iter()
            .find(|r| r["shards"] == shards && r["peer"] == "arrow")
            .unwrap_or_else(|| panic!("no row for {shards} shard(s)\nstderr:\n{stderr}"));
        assert_eq!(row["errors"], 0, "errors in {row}");
        assert!(row["cpu_us_per_hit"].as_f64().unwrap() > 0.0, "{row}");
        for key in [
            "shard_cpu_us_per_hit",
            "shard_sleeps_per_hit",
            "shard_preempted_per_hit",
            "shard_faults_per_hit",
        ] {
            let v = row[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key} in {row}"));
            assert_eq!(
                v.len() as u64,
                shards,
                "{key}: one entry per shard in {row}"
            );
        }
        let per_shard: f64 = row["shard_cpu_us_per_hit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!(
            per_shard > 0.0 && per_shard <= row["cpu_us_per_hit"].as_f64().unwrap() + 1.0,
            "the shards' CPU is part of the node's: {row}"
        );
        assert!(row["pieces_dropped_per_hit"].is_number(), "{row}");
    }
}
