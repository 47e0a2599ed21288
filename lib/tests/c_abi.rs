//! The hand-written header agrees with the library: a C program compiled with gcc against
//! `include/arrow.h` and linked with `libarrow_cdn.a` sees the layouts and constants the Rust
//! side has, and routes keys as `arrow_cluster::designated` does. Needs gcc (scripts/setup.sh).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_cdn::status::*;
use arrow_cdn::{NodeOut, RouteKeys, RouteResult};
use common::*;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// libarrow_cdn.a of this build: `cargo test` builds the crate as an rlib only, so the static
/// library is built here (once; a no-op when `cargo build -p arrow-lib` already made it).
fn static_lib() -> PathBuf {
    let profile_dir = target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "arrow-lib"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("cargo build").success(),
        "building arrow-lib failed"
    );
    let lib = profile_dir.join("libarrow_cdn.a");
    assert!(lib.exists(), "{} missing after the build", lib.display());
    lib
}

fn compile(dir: &Path) -> PathBuf {
    let lib = static_lib();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = dir.join("abi");
    let out = Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/abi.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("gcc is required (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn the_header_matches_the_library_and_routes_from_c() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(dir.path());
    let mut t = ShmTable::create("cabi");
    let names = [
        "n01.lax.hw.bar.net",
        "n02.lax.hw.bar.net",
        "n03.lax.hw.bar.net",
    ];
    for (i, n) in names.iter().enumerate() {
        let mut s = Spec::new(n, (i as u64 + 1) << 40);
        s.addr = Some(format!("10.0.0.{}", i + 1).parse().unwrap());
        t.put(&s);
    }
    let cfg = write_config(dir.path(), &t.path, "n02.lax.hw.bar.net", 0, false, "");
    let keys: Vec<String> = (0..50)
        .map(|i| arrow_cluster::cluster_key("example.test", &format!("/v/title-{i}")))
        .collect();
    let out = Command::new(&exe).arg(&cfg).args(&keys).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vals: HashMap<&str, i64> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let want: &[(&str, i64)] = &[
        ("ARROW_ABI_VERSION", ARROW_ABI_VERSION.into()),
        ("arrow_abi_version()", ARROW_ABI_VERSION.into()),
        (
            "sizeof(struct arrow_node)",
            std::mem::size_of::<NodeOut>() as i64,
        ),
        (
            "sizeof(struct arrow_result)",
            std::mem::size_of::<RouteResult>() as i64,
        ),
        (
            "sizeof(struct arrow_keys)",
            std::mem::size_of::<RouteKeys>() as i64,
        ),
        (
            "offsetof(struct arrow_node, name_len)",
            std::mem::offset_of!(NodeOut, name_len) as i64,
        ),
        (
            "offsetof(struct arrow_node, port)",
            std::mem::offset_of!(NodeOut, port) as i64,
        ),
        (
            "offsetof(struct arrow_result, node)",
            std::mem::offset_of!(RouteResult, node) as i64,
        ),
        (
            "offsetof(struct arrow_result, mirrors)",
            std::mem::offset_of!(RouteResult, mirrors) as i64,
        ),
        (
            "offsetof(struct arrow_keys, cluster_key_len)",
            std::mem::offset_of!(RouteKeys, cluster_key_len) as i64,
        ),
        (
            "offsetof(struct arrow_keys, rule)",
            std::mem::offset_of!(RouteKeys, rule) as i64,
        ),
        ("ARROW_E_ARG", ARROW_E_ARG.into()),
        ("ARROW_E_CONFIG", ARROW_E_CONFIG.into()),
        ("ARROW_E_NO_TABLE", ARROW_E_NO_TABLE.into()),
        ("ARROW_E_TABLE_FOREIGN", ARROW_E_TABLE_FOREIGN.into()),
        ("ARROW_E_TABLE_VERSION", ARROW_E_TABLE_VERSION.into()),
        ("ARROW_E_STALE", ARROW_E_STALE.into()),
        ("ARROW_E_NO_NODE", ARROW_E_NO_NODE.into()),
        ("ARROW_E_NO_RULE", ARROW_E_NO_RULE.into()),
        ("ARROW_E_BUFFER", ARROW_E_BUFFER.into()),
        ("ARROW_E_INTERNAL", ARROW_E_INTERNAL.into()),
        ("ARROW_F_ERROR", ARROW_F_ERROR.into()),
        ("ARROW_F_OVERLOAD", ARROW_F_OVERLOAD.into()),
        ("ARROW_F_SELF", ARROW_F_SELF.into()),
        ("ARROW_F_MIRROR", ARROW_F_MIRROR.into()),
        ("ARROW_ACT_SELF", ARROW_ACT_SELF.into()),
        ("ARROW_ACT_PEER", ARROW_ACT_PEER.into()),
        ("ARROW_ACT_MIRROR", ARROW_ACT_MIRROR.into()),
        ("ARROW_ACT_OVERFLOW", ARROW_ACT_OVERFLOW.into()),
        ("ARROW_ACT_LOCAL", ARROW_ACT_LOCAL.into()),
        ("ARROW_Q_NEW_VIEWER", ARROW_Q_NEW_VIEWER.into()),
    ];
    for (name, v) in want {
        assert_eq!(vals.get(name), Some(v), "{name}\n{text}");
    }
    // Routes from C equal the node's placement over the same table.
    let nodes = t.table.snapshot();
    let mut seen = 0;
    for line in text.lines().filter(|l| l.starts_with("route ")) {
        let f: Vec<&str> = line.split(' ').collect();
        let want = arrow_cluster::designated(&nodes, f[1], 0).unwrap();
        assert_eq!(f[2], "0", "{line}");
        assert_eq!(f[5], want.name, "{line}");
        let self_serving = want.name == "n02.lax.hw.bar.net";
        let (flags, action) = if self_serving {
            (ARROW_F_SELF, ARROW_ACT_SELF)
        } else {
            (0, ARROW_ACT_PEER)
        };
        assert_eq!(
            (f[3], f[4]),
            (flags.to_string().as_str(), action.to_string().as_str()),
            "{line}"
        );
        let i = names.iter().position(|n| *n == want.name).unwrap();
        assert_eq!(f[6], format!("10.0.0.{}:8080", i + 1));
        seen += 1;
    }
    assert_eq!(seen, keys.len());
    // The seed's example keys, through the host rules from C.
    assert!(
        text.contains("keys claw.acaa22fad1ed4a441d54fa664f53d5b0ee 7 /assets3/matrix"),
        "{text}"
    );
}
