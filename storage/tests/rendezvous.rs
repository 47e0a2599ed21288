//! Key-to-disk rendezvous hashing: removing a disk moves only that disk's keys; shares follow
//! weights within 5 % (relative) over 100,000 keys; placement is frozen by a fixture.

use arrow_storage::{rendezvous_pick, DiskId};
use std::collections::HashMap;

const KEYS: u32 = 100_000;

fn disks() -> Vec<(DiskId, u64)> {
    vec![
        (DiskId(0x1111), 1 << 40),
        (DiskId(0x2222), 2 << 40),
        (DiskId(0x3333), 1 << 40),
        (DiskId(0x4444), 4 << 40),
    ]
}

fn key(i: u32) -> Vec<u8> {
    format!("foo.com/assets/{i}/seg.m4s").into_bytes()
}

#[test]
fn removing_a_disk_moves_only_its_keys() {
    let all = disks();
    let fewer: Vec<_> = all.iter().copied().filter(|(d, _)| d.0 != 0x2222).collect();
    let mut moved = 0;
    for i in 0..KEYS {
        let before = rendezvous_pick(&key(i), all.iter().copied()).unwrap();
        let after = rendezvous_pick(&key(i), fewer.iter().copied()).unwrap();
        if before.0 != 0x2222 {
            assert_eq!(before, after, "key {i} moved though its disk stayed");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 0);
}

#[test]
fn shares_follow_weights_within_five_percent() {
    let all = disks();
    let total: u64 = all.iter().map(|d| d.1).sum();
    let mut counts: HashMap<DiskId, u32> = HashMap::new();
    for i in 0..KEYS {
        *counts
            .entry(rendezvous_pick(&key(i), all.iter().copied()).unwrap())
            .or_default() += 1;
    }
    for (d, w) in all {
        let want = f64::from(KEYS) * w as f64 / total as f64;
        let got = f64::from(counts[&d]);
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "disk {d}: {got} keys, expected {want}"
        );
    }
}

#[test]
fn placement_is_frozen() {
    // Fixture: changing the hash changes where every existing object is looked for.
    let picks: Vec<u128> = (0..12)
        .map(|i| rendezvous_pick(&key(i), disks().into_iter()).unwrap().0)
        .collect();
    assert_eq!(picks, FROZEN.to_vec(), "rendezvous placement changed");
}

const FROZEN: [u128; 12] = [
    0x2222, 0x4444, 0x4444, 0x4444, 0x2222, 0x4444, 0x2222, 0x2222, 0x4444, 0x4444, 0x4444, 0x2222,
];

#[test]
fn no_disks_no_pick() {
    assert_eq!(rendezvous_pick(b"k", std::iter::empty()), None);
    assert_eq!(rendezvous_pick(b"k", [(DiskId(1), 0)].into_iter()), None);
}
