//! Key hashing: the 128-bit key hash (md5 of the cache key; its low 64 bits index the RAM table)
//! and weighted rendezvous (highest random weight) hashing of keys over disks.

use crate::DiskId;
use md5::{Digest, Md5};

/// 128-bit hash of a cache key.
pub fn key_hash128(key: &[u8]) -> u128 {
    u128::from_le_bytes(Md5::digest(key).into())
}

fn mix64(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Score of `disk` with `weight` for a key hash: -weight / ln(u), u uniform in (0, 1) from the
/// (key, disk) pair. The disk with the highest score owns the key; each disk's share of keys is
/// proportional to its weight, and removing a disk moves only the keys it owned.
fn score(key_hash: u128, disk: DiskId, weight: u64) -> f64 {
    let d = mix64((disk.0 as u64) ^ mix64((disk.0 >> 64) as u64));
    let h = mix64((key_hash as u64) ^ d ^ mix64((key_hash >> 64) as u64));
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(weight as f64) / u.ln()
}

/// Weighted rendezvous pick of a disk for `key` (None if there are no disks of non-zero weight).
pub fn rendezvous_pick(key: &[u8], disks: impl Iterator<Item = (DiskId, u64)>) -> Option<DiskId> {
    let h = key_hash128(key);
    disks
        .filter(|&(_, w)| w > 0)
        .map(|(d, w)| (score(h, d, w), d))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1 .0.cmp(&b.1 .0)))
        .map(|(_, d)| d)
}
