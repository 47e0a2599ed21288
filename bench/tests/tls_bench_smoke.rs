//! Keeps bench/tls_bench.sh from rotting: one short round of every HTTPS scenario against Arrow
//! and nginx (OpenSSL) with a few keys, checking that each peer served, without errors, with no
//! origin request during the hit runs (its SMOKE line). The figures are not asserted.

use std::path::Path;
use std::process::Command;

#[test]
fn tls_bench_runs_every_scenario_against_arrow_and_nginx() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let arrow = std::env::var_os("ARROW_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| target.join("debug/arrow"));
    assert!(
        arrow.exists(),
        "no arrow binary at {} (scripts/test.sh builds it)",
        arrow.display()
    );
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
        .env(
            "BASE_PORT",
            (22000 + (std::process::id() % 1500) * 10).to_string(),
        )
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
