//! Small objects in packs: many more objects than directory entries, removals and metadata
//! updates that persist, whole-pack eviction that gives space back, and version-1 slabs refused.

mod common;

use arrow_storage::{StorageError, Store};
use bytes::Bytes;

async fn put(store: &Store, key: &[u8], body: &[u8], meta: &[u8]) -> Result<(), StorageError> {
    let disk = store.pick_disk(key).unwrap();
    let mut w = store.writer(disk, key, Bytes::copy_from_slice(meta), None)?;
    w.write(body).await?;
    w.finish().await.map(|_| ())
}

async fn get(store: &Store, key: &[u8]) -> Option<(Bytes, Bytes)> {
    let disk = store.pick_disk(key)?;
    let info = store.lookup(disk, key)?;
    let body = store.read(&info, 0, info.body_len).await.unwrap();
    Some((body, info.meta))
}

fn key(i: u32) -> Vec<u8> {
    format!("small.example/segment/{i}.vtt").into_bytes()
}

fn body(i: u32) -> Vec<u8> {
    common::body_bytes(u64::from(i), 200 + (i as usize * 37) % 1800)
}

#[test]
fn small_objects_share_packs_and_removals_and_updates_survive_reopen() {
    let dir = common::odirect_tempdir();
    // 4 MiB: 64 directory entries; 2,000 objects only fit in packs.
    let cfg = common::config(dir.path(), 1, 4 << 20, 64 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        // Concurrent writers: their records share packs and group commits.
        let store = std::rc::Rc::new(store);
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let store = std::rc::Rc::clone(&store);
            tasks.push(monoio::spawn(async move {
                for i in (t..2_000).step_by(8) {
                    put(&store, &key(i), &body(i), b"m1").await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let d = &store.stats().disks[0];
        assert_eq!(d.objects, 2_000);
        assert_eq!(d.evictions, 0);
        assert_eq!(d.packed_objects, 2_000);
        assert!(d.packs >= 1 && d.packs <= 4, "packs: {}", d.packs);
        let disk = store.disks()[0].0;
        for i in (0..2_000u32).step_by(3) {
            assert!(store.remove(disk, &key(i)).await.unwrap());
        }
        for i in (1..2_000u32).step_by(10).filter(|i| i % 3 != 0) {
            assert!(store
                .update_meta(disk, &key(i), Bytes::from_static(b"m2"))
                .await
                .unwrap());
        }
        // A key written again: the old record dies, the new one is what is read.
        put(&store, &key(2), b"replaced", b"m3").await.unwrap();
        let check = |store: std::rc::Rc<Store>| async move {
            for i in 0..2_000u32 {
                let got = get(&store, &key(i)).await;
                if i == 2 {
                    assert_eq!(
                        got,
                        Some((Bytes::from_static(b"replaced"), Bytes::from_static(b"m3")))
                    );
                } else if i % 3 == 0 {
                    assert!(got.is_none(), "removed object {i} came back");
                } else {
                    let (b, m) = got.unwrap_or_else(|| panic!("object {i} missing"));
                    assert_eq!(&b[..], &body(i)[..], "object {i}");
                    let want: &[u8] = if i % 10 == 1 { b"m2" } else { b"m1" };
                    assert_eq!(&m[..], want, "metadata of {i}");
                }
            }
            assert_eq!(store.stats().disks[0].errors, 0);
        };
        check(std::rc::Rc::clone(&store)).await;
        let objects = store.stats().disks[0].objects;
        drop(store);
        let (store, refused) = Store::open(cfg).await.unwrap();
        assert!(refused.is_empty());
        assert_eq!(store.stats().disks[0].objects, objects);
        check(std::rc::Rc::new(store)).await;
    });
}

#[test]
fn packs_are_evicted_whole_and_their_space_comes_back() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 1, 4 << 20, 64 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        // ~25 MB of small objects through a 4 MiB disk: a few rounds of whole-pack eviction.
        let n = 12_000u32;
        for i in 0..n {
            put(&store, &key(i), &body(i), b"m").await.unwrap();
        }
        let d = &store.stats().disks[0];
        assert!(d.evictions > 0);
        assert_eq!(d.errors, 0);
        assert_eq!(d.quarantined_bytes, 0);
        // Packs come back whole: what is left is well used (no pack kept for a few members).
        assert!(
            d.live_bytes * 10 > d.size_bytes * 6,
            "live {} of {}",
            d.live_bytes,
            d.size_bytes
        );
        // The newest objects are there (eviction takes the oldest packs first).
        for i in n - 200..n {
            let (b, _) = get(&store, &key(i)).await.expect("newest objects stay");
            assert_eq!(&b[..], &body(i)[..]);
        }
        let objects = d.objects;
        drop(store);
        let (store, _) = Store::open(cfg).await.unwrap();
        assert_eq!(store.stats().disks[0].objects, objects);
        let mut found = 0;
        for i in 0..n {
            if let Some((b, _)) = get(&store, &key(i)).await {
                assert_eq!(&b[..], &body(i)[..]);
                found += 1;
            }
        }
        assert_eq!(found, objects);
    });
}

#[test]
fn a_version_1_slab_is_refused_with_how_to_reformat_it() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 1, 4 << 20, 64 * 1024, 10);
    let path = cfg.disks[0].path.clone();
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        drop(store);
    });
    // Rewrite the superblock as version 1 (with a valid checksum).
    let mut raw = std::fs::read(&path).unwrap();
    raw[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&raw[..4092]);
    raw[4092..4096].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &raw).unwrap();
    common::run(async {
        let (store, refused) = Store::open(cfg).await.unwrap();
        assert!(store.disks().is_empty());
        assert_eq!(refused.len(), 1);
        let why = &refused[0].reason;
        assert!(why.contains("format version 1"), "{why}");
        assert!(why.contains("dd if=/dev/zero"), "{why}");
    });
}
