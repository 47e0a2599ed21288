//! `arrow-bench replay` end to end: a generated 2,000-request trace → decisions CSV.

use std::fmt::Write as _;
use std::process::Command;

/// Deterministic `timestamp,key,size` CSV (LCG; skewed keys, three size classes).
fn trace_csv(requests: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut csv = String::from("timestamp,key,size\n");
    for i in 0..requests {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (300f64.powf(u) - 1.0) as u64;
        let (key, size_bytes) = match rank % 10 {
            0 => (format!("/vod/{rank}/index.m3u8"), 1_000 + rank * 7),
            9 if rank > 200 => (format!("/dl/{rank}.bin"), 30_000_000 + rank),
            _ => (format!("/vod/seg/{rank}.m4s"), 600_000 + rank * 9_000),
        };
        writeln!(csv, "{},{key},{size_bytes}", i * 20).unwrap();
    }
    csv
}

#[test]
fn replay_writes_one_decision_per_request_in_trace_order() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let csv = trace_csv(2_000);
    std::fs::write(&trace, &csv).unwrap();
    let trace_keys: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    for policy in ["lru-sp", "byte-mode"] {
        let decisions = dir.path().join(format!("{policy}.csv"));
        let out = Command::new(env!("CARGO_BIN_EXE_arrow-bench"))
            .args(["replay", "--trace"])
            .arg(&trace)
            .args([
                "--capacity-bytes",
                "50000000",
                "--policy",
                policy,
                "--decisions",
            ])
            .arg(&decisions)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{policy}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let ratios: Vec<f64> = stdout
            .split_whitespace()
            .skip_while(|w| *w != "OHR")
            .skip(1)
            .step_by(2)
            .take(2)
            .map(|w| w.parse().unwrap())
            .collect();
        assert_eq!(ratios.len(), 2, "{policy}: {stdout}");
        assert!(
            ratios.iter().all(|r| (0.0..=1.0).contains(r)),
            "{policy}: {stdout}"
        );
        assert!(
            ratios[0] > 0.0,
            "{policy}: a skewed trace must hit: {stdout}"
        );
        let rows = std::fs::read_to_string(&decisions).unwrap();
        let mut lines = rows.lines();
        assert_eq!(lines.next(), Some("key,hit"));
        let rows: Vec<(&str, &str)> = lines.map(|l| l.rsplit_once(',').unwrap()).collect();
        assert_eq!(rows.len(), 2_000);
        for (i, (key, hit)) in rows.iter().enumerate() {
            assert_eq!(*key, trace_keys[i], "{policy}: row {i}");
            assert!(*hit == "0" || *hit == "1");
        }
        let hits = rows.iter().filter(|r| r.1 == "1").count() as f64;
        assert!(
            (hits / 2_000.0 - ratios[0]).abs() < 1e-4,
            "{policy}: OHR matches the rows"
        );
    }
}

#[test]
fn replay_rejects_an_unknown_policy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    std::fs::write(&trace, trace_csv(10)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_arrow-bench"))
        .args(["replay", "--trace"])
        .arg(&trace)
        .args(["--capacity-bytes", "1000", "--policy", "lru"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lru-sp"));
}
