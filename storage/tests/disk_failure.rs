//! Disk failure: a disk overwritten with garbage or truncated mid-run goes offline after its
//! error threshold, the other disks keep serving with zero errors, the failed disk's keys become
//! misses that are stored on healthy disks, the offline state survives reopen, and set_online
//! brings the disk back. A corrupt superblock or unknown format version refuses only that disk.

mod common;

use arrow_storage::layout::{Geometry, BLOCK_BYTES};
use arrow_storage::{DiskId, StorageError, Store};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const DISK_BYTES: u64 = 16 << 20;
const CHUNK_BYTES: u32 = 64 * 1024;
const THRESHOLD: u32 = 3;

fn key(i: u32) -> Vec<u8> {
    format!("foo.com/t/{i}.ts").into_bytes()
}

async fn put(store: &Store, disk: DiskId, k: &[u8]) {
    let body = common::generated_body(k, 100_000);
    let mut w = store
        .writer(disk, k, Bytes::from_static(b"m"), Some(body.len() as u64))
        .unwrap();
    w.write(&body).await.unwrap();
    w.finish().await.unwrap();
}

fn garble_data_area(path: &Path) {
    let geo = Geometry::new(DISK_BYTES, CHUNK_BYTES).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(geo.data_start_block * BLOCK_BYTES))
        .unwrap();
    let garbage = common::body_bytes(99, (geo.data_blocks() * BLOCK_BYTES) as usize);
    f.write_all(&garbage).unwrap();
    f.sync_all().unwrap();
}

async fn fail_one_disk(damage: impl Fn(&Path)) {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 3, DISK_BYTES, CHUNK_BYTES, THRESHOLD);
    let (store, refused) = Store::open(cfg.clone()).await.unwrap();
    assert!(refused.is_empty());
    let mut placed: HashMap<u32, DiskId> = HashMap::new();
    for i in 0..60 {
        let disk = store.pick_disk(&key(i)).unwrap();
        put(&store, disk, &key(i)).await;
        placed.insert(i, disk);
    }
    let bad = placed[&0];
    let bad_path = store
        .stats()
        .disks
        .iter()
        .find(|d| d.id == bad)
        .unwrap()
        .path
        .clone();
    damage(&bad_path);

    // Read everything: the damaged disk's reads fail until it goes offline; the others never fail.
    for i in 0..60 {
        let disk = placed[&i];
        let Some(info) = store.lookup(disk, &key(i)) else {
            assert_eq!(disk, bad, "a healthy disk lost key {i}");
            continue;
        };
        match store.read(&info, 0, info.body_len).await {
            Ok(body) => assert_eq!(&body[..], &common::generated_body(&key(i), 100_000)[..]),
            Err(e) => {
                assert_eq!(disk, bad, "healthy disk read failed: {e}");
                assert!(
                    e.is_disk_fault() || matches!(e, StorageError::Offline { .. }),
                    "{e}"
                );
            }
        }
    }
    let stats = store.stats();
    for d in &stats.disks {
        if d.id == bad {
            assert!(!d.online, "damaged disk still online: {d:?}");
            assert!(d.errors >= u64::from(THRESHOLD));
        } else {
            assert!(d.online);
            assert_eq!(d.errors, 0, "{d:?}");
        }
    }
    // Only the failed disk's keys move; they are misses, then get stored on healthy disks.
    for i in 0..60 {
        let now = store.pick_disk(&key(i)).unwrap();
        if placed[&i] == bad {
            assert_ne!(now, bad);
            assert!(store.lookup(now, &key(i)).is_none());
            put(&store, now, &key(i)).await;
            let info = store.lookup(now, &key(i)).unwrap();
            let body = store.read(&info, 0, info.body_len).await.unwrap();
            assert_eq!(&body[..], &common::generated_body(&key(i), 100_000)[..]);
        } else {
            assert_eq!(now, placed[&i], "key {i} of a healthy disk moved");
        }
    }
    assert!(matches!(
        store.writer(bad, b"x", Bytes::new(), None),
        Err(StorageError::Offline { .. })
    ));
    drop(store);

    // Offline survives reopen; set_online brings the disk back.
    let (store, refused) = Store::open(cfg).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let state: HashMap<DiskId, bool> = store
        .disks()
        .into_iter()
        .map(|(d, _, on)| (d, on))
        .collect();
    assert!(!state[&bad]);
    assert_eq!(state.values().filter(|&&on| on).count(), 2);
    store.set_online(bad, true).await.unwrap();
    assert!(store.disks().iter().all(|&(_, _, on)| on));
    assert_eq!(store.pick_disk(&key(0)), Some(bad));
}

#[test]
fn garbage_overwritten_disk_goes_offline_others_serve() {
    common::run(fail_one_disk(garble_data_area));
}

#[test]
fn truncated_disk_goes_offline_others_serve() {
    common::run(fail_one_disk(|path| {
        let geo = Geometry::new(DISK_BYTES, CHUNK_BYTES).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(geo.data_start_block * BLOCK_BYTES).unwrap();
    }));
}

#[test]
fn corrupt_superblock_and_unknown_version_are_refused_by_path() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 3, DISK_BYTES, CHUNK_BYTES, THRESHOLD);
    common::run(async {
        let (store, refused) = Store::open(cfg.clone()).await.unwrap();
        assert!(refused.is_empty());
        drop(store);
    });
    // disk0: flip a byte of the superblock. disk1: format version 99 with a valid checksum.
    let mut sb0 = std::fs::read(&cfg.disks[0].path).unwrap();
    sb0[40] ^= 0xff;
    write_block0(&cfg.disks[0].path, &sb0[..4096]);
    let mut sb1 = std::fs::read(&cfg.disks[1].path).unwrap()[..4096].to_vec();
    sb1[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = crc32c::crc32c(&sb1[..4092]);
    sb1[4092..].copy_from_slice(&crc.to_le_bytes());
    write_block0(&cfg.disks[1].path, &sb1);
    common::run(async {
        let (store, refused) = Store::open(cfg.clone()).await.unwrap();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0].path, cfg.disks[0].path);
        assert!(refused[0]
            .reason
            .contains(&cfg.disks[0].path.display().to_string()));
        assert!(
            refused[0].reason.contains("checksum"),
            "{}",
            refused[0].reason
        );
        assert_eq!(refused[1].path, cfg.disks[1].path);
        assert!(
            refused[1].reason.contains("version 99"),
            "{}",
            refused[1].reason
        );
        assert_eq!(store.disks().len(), 1);
        let disk = store.pick_disk(b"k").unwrap();
        put(&store, disk, b"k").await;
        assert!(store.lookup(disk, b"k").is_some());
    });
}

fn write_block0(path: &Path, block: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(block).unwrap();
    f.sync_all().unwrap();
}

/// A failed disk swapped without a restart: its path now holds a blank file (a new device);
/// `replace_disk` formats it with the same UUID (placement unchanged), brings it online empty,
/// and the other disks keep every object. A path holding another Arrow disk is refused with
/// what to do, and the disk stays offline.
#[test]
fn a_swapped_disk_comes_back_empty_under_its_own_identity() {
    common::run(async {
        let dir = common::odirect_tempdir();
        let cfg = common::config(dir.path(), 3, DISK_BYTES, CHUNK_BYTES, THRESHOLD);
        let (store, refused) = Store::open(cfg.clone()).await.unwrap();
        assert!(refused.is_empty());
        let mut placed: HashMap<u32, DiskId> = HashMap::new();
        for i in 0..60 {
            let disk = store.pick_disk(&key(i)).unwrap();
            put(&store, disk, &key(i)).await;
            placed.insert(i, disk);
        }
        let bad = placed[&0];
        let stats = store.stats();
        let path = |id: DiskId| {
            stats
                .disks
                .iter()
                .find(|d| d.id == id)
                .unwrap()
                .path
                .clone()
        };
        let bad_path = path(bad);
        let other = *placed.values().find(|&&d| d != bad).unwrap();

        // Another Arrow disk in its place: refused, the disk stays offline.
        std::fs::copy(path(other), &bad_path).unwrap();
        let e = store.replace_disk(bad).await.unwrap_err().to_string();
        assert!(
            e.contains("holds Arrow disk") && e.contains("zero its first block"),
            "{e}"
        );
        assert!(
            !store
                .stats()
                .disks
                .iter()
                .find(|d| d.id == bad)
                .unwrap()
                .online
        );
        assert!(store.lookup(bad, &key(0)).is_none());

        // A blank file (a new device): formatted with the same identity, online, empty.
        std::fs::remove_file(&bad_path).unwrap();
        store.replace_disk(bad).await.unwrap();
        let after = store.stats();
        let d = after.disks.iter().find(|d| d.id == bad).unwrap();
        assert!(d.online && d.objects == 0, "{d:?}");
        for (i, disk) in &placed {
            let found = store.lookup(*disk, &key(*i)).is_some();
            assert_eq!(found, *disk != bad, "key {i} on {disk}");
        }
        // Placement unchanged: the keys of the swapped disk go to it again, and are stored.
        assert_eq!(store.pick_disk(&key(0)), Some(bad));
        put(&store, bad, &key(0)).await;
        let info = store.lookup(bad, &key(0)).unwrap();
        let body = store.read(&info, 0, info.body_len).await.unwrap();
        assert_eq!(&body[..], &common::generated_body(&key(0), 100_000)[..]);
        drop(store);

        // After a restart the replacement is the same disk, with its object.
        let (store, refused) = Store::open(cfg).await.unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        assert!(store.lookup(bad, &key(0)).is_some());
    });
}
