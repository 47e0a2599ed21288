//! Conformance through the tools users and other CDNs are judged by, against a real node: the
//! HTTP Working Group's shared-cache suite (cache-tests.fyi), REDbot, and real players (hls.js,
//! dash.js) in headless Chromium. Each script starts its own origin and node (every listener on
//! port 0, reported back) and exits 0 (pass), 1 (problems, listed) or 2 (could not run, with the
//! reason): anything but 0 fails the test. They run one at a time (each is CPU-heavy).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use arrow_tests::arrow_bin;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run `scripts/<name>` with `args` and `env`; panics with its output unless it exits 0.
fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts").join(name))
        .args(args)
        .env("ARROW_BIN", arrow_bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = match out.status.code() {
        Some(0) => return stdout,
        Some(1) => "found problems",
        Some(2) => "could not run",
        _ => "failed",
    };
    panic!("{name} {why} ({}):\n{stdout}\n{stderr}", out.status);
}

#[test]
fn http_wg_cache_tests_have_no_required_failure() {
    let results = tempfile::tempdir().unwrap();
    let json = results.path().join("results.json");
    // The suite checks that CDN-Cache-Control reaches the client (cdn-private, cdn-no-cache):
    // configured as for a CDN below Arrow.
    let out = run(
        "cache_tests.sh",
        &[json.to_str().unwrap()],
        &[("ARROW_HOST_EXTRA", "keep_cdn_cache_control = true")],
    );
    let failures: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("REQUIRED FAILURES:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    assert_eq!(failures, 0, "{out}");
    // CDN-Cache-Control: the tests none of nginx, Varnish, Traffic Server or Squid pass.
    let results = std::fs::read_to_string(&json).unwrap();
    for id in [
        "cdn-max-age",
        "cdn-fresh-cc-nostore",
        "cdn-no-store-cc-fresh",
        "cdn-private",
    ] {
        assert!(
            results.contains(&format!("\"{id}\": true"))
                || results.contains(&format!("\"{id}\":true")),
            "{id} did not pass:\n{out}"
        );
    }
}

#[test]
fn redbot_finds_no_caching_validation_or_range_problem() {
    run("redbot_check.sh", &[], &[]);
}

#[test]
fn hls_and_dash_play_through_arrow_in_chromium_without_stalls() {
    run("browser_play.sh", &[], &[]);
}
