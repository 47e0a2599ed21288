//! Keeps the benchmark harness from rotting: runs `bash bench/run.sh --smoke` (Arrow + a local
//! origin, 1 KiB hits, one short wrk run or a curl loop) and checks what it measured.
//!
//! Set `ARROW_BENCH_SMOKE=0` to skip. The arrow binary is `ARROW_BIN`, else the fresher of
//! target/debug/arrow and target/release/arrow (scripts/test.sh builds the debug one first);
//! when neither exists the test builds the debug one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn ensure_arrow_binary(root: &Path) {
    if std::env::var_os("ARROW_BIN").is_some() {
        return;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    if target.join("debug/arrow").exists() || target.join("release/arrow").exists() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "arrow-server", "--bin", "arrow"])
        .current_dir(root)
        .status()
        .expect("run cargo build for the arrow binary");
    assert!(
        status.success(),
        "cargo build -p arrow-server --bin arrow failed"
    );
}

#[test]
fn run_sh_smoke_measures_arrow_hits() {
    if std::env::var("ARROW_BENCH_SMOKE").as_deref() == Ok("0") {
        eprintln!("ARROW_BENCH_SMOKE=0: harness smoke test skipped");
        return;
    }
    let root = common::repo_root();
    ensure_arrow_binary(root);
    let out = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(root.join("bench/run.sh"))
        .args(["--smoke", "--out"])
        .arg(out.path())
        .current_dir(root)
        .output()
        .expect("run bash bench/run.sh --smoke");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench/run.sh --smoke failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("SMOKE ok"),
        "no 'SMOKE ok' line\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // How long it took is reported, not asserted: speed goals live in benchmarks.
    eprintln!("smoke mode took {elapsed:?}");

    // The recorded run: requests served, no errors, and the origin saw none of them.
    let runs = std::fs::read_to_string(out.path().join("runs.jsonl")).expect("runs.jsonl");
    let line = runs.lines().next().expect("one recorded run");
    for needle in [
        "\"scenario\": \"hit1k\"",
        "\"peer\": \"arrow\"",
        "\"errors\": 0",
        "\"origin_requests\": 0",
        "\"hits_proven\": true",
    ] {
        assert!(line.contains(needle), "{needle} not in {line}");
    }
    assert!(
        !line.contains("\"requests\": 0,"),
        "no request was measured: {line}"
    );
    let machine = std::fs::read_to_string(out.path().join("machine.json")).expect("machine.json");
    assert!(machine.contains("\"nproc\""), "machine.json: {machine}");
}
