//! What the bench scripts' smoke tests share: the repository root and the arrow binary.

// Each test file includes this module and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's root (bench/ is one level below it).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
}

/// `ARROW_BIN`, else the debug build under the target directory (scripts/test.sh builds it);
/// fails the test when it is missing.
pub fn arrow_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let arrow = std::env::var_os("ARROW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("debug/arrow"));
    assert!(
        arrow.exists(),
        "no arrow binary at {} (scripts/test.sh builds it)",
        arrow.display()
    );
    arrow
}

/// A base port for a script's servers, spread by the test process's id so that concurrent test
/// runs on one machine do not collide: `first`, then steps of 10 over 1,500 slots.
pub fn base_port(first: u32) -> String {
    (first + (std::process::id() % 1500) * 10).to_string()
}
