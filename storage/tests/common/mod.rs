//! Test harness: a temp dir that accepts O_DIRECT, a monoio io_uring runtime, and a deterministic
//! body generator.
#![allow(dead_code)]

use arrow_storage::{DiskSpec, PolicyKind, StoreConfig};
use std::future::Future;
use std::path::{Path, PathBuf};

/// A temp dir on a filesystem that accepts O_DIRECT (the target dir, else /var/tmp).
pub fn odirect_tempdir() -> tempfile::TempDir {
    let candidates = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from("/var/tmp"),
    ];
    for base in candidates {
        let _ = std::fs::create_dir_all(&base);
        if arrow_storage::slab::supports_o_direct(&base) {
            return tempfile::Builder::new()
                .prefix("arrow-storage-")
                .tempdir_in(&base)
                .expect("tempdir");
        }
    }
    panic!("no directory accepting O_DIRECT (tried the target dir and /var/tmp)");
}

/// Run `fut` on a monoio io_uring runtime.
pub fn run<F: Future>(fut: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(fut)
}

/// A config of `n` disks of `size_bytes` in `dir`.
pub fn config(
    dir: &Path,
    n: usize,
    size_bytes: u64,
    chunk_bytes: u32,
    threshold: u32,
) -> StoreConfig {
    StoreConfig {
        disks: (0..n)
            .map(|i| DiskSpec {
                path: dir.join(format!("disk{i}.slab")),
                size_bytes,
                policy: PolicyKind::LruSp,
                error_threshold: threshold,
            })
            .collect(),
        ram_tier_bytes: 256 * 1024,
        chunk_bytes,
    }
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Seed of a key (FNV-1a then mixed).
pub fn key_seed(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    mix(h)
}

/// `len` bytes derived from `seed`.
pub fn body_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut s = seed;
    while out.len() < len {
        s = mix(s.wrapping_add(0x9e37_79b9_7f4a_7c15));
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The body the deterministic generator makes for `key` (size up to `max_len`).
pub fn generated_body(key: &[u8], max_len: u64) -> Vec<u8> {
    let seed = key_seed(key);
    body_bytes(seed, (seed % max_len) as usize + 1)
}
