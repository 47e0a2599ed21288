//! Keeps bench/tls_bench.sh from rotting: one short round of every HTTPS scenario against Arrow
//! and nginx (OpenSSL) with a few keys, checking that each peer served, without errors, with no
//! origin request during the hit runs (its SMOKE line). The figures are not asserted.

mod common;

use std::process::Command;

#[test]
fn tls_bench_runs_every_scenario_against_arrow_and_nginx() {
    let root = common::repo_root();
    let arrow = common::arrow_bin();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(root.join("bench/tls_bench.sh"))
        .arg(out.path())
        .env("ARROW_BIN", &arrow)
        .env("SMOKE", "1")
        .env("ROUNDS", "1")
        .env("DURATION_S", "1")
        .env("CONNECTIONS", "4")
        .env("SMALL_COUNT", "20")
        .env("LARGE_COUNT", "2")
        .env("ARROW_DISK_BYTES", "268435456")
        .env("BASE_PORT", common::base_port(22000))
        .env("SCRATCH", out.path().join("scratch"))
        .env("FILES", out.path().join("files"))
        .current_dir(root)
        .output()
        .expect("bash bench/tls_bench.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("SMOKE ok"),
        "tls_bench.sh smoke failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    for scenario in ["tls1k", "tls1m", "handshake", "resume"] {
        assert!(stdout.contains(scenario), "no {scenario} line:\n{stdout}");
    }
}
