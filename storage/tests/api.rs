//! API behaviour: ranged reads over chunk boundaries, fragmented objects (and their recovery),
//! metadata refresh, purge by prefix, limits, and space efficiency for a media mix.

mod common;

use arrow_storage::{StorageError, Store};
use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};

async fn put(store: &Store, key: &[u8], body: &[u8], meta: &[u8]) {
    let disk = store.pick_disk(key).unwrap();
    let mut w = store
        .writer(disk, key, Bytes::copy_from_slice(meta), None)
        .unwrap();
    for piece in body.chunks(30_000) {
        w.write(piece).await.unwrap();
    }
    w.finish().await.unwrap();
}

async fn get(store: &Store, key: &[u8], off: u64, len: u64) -> Option<Bytes> {
    let disk = store.pick_disk(key)?;
    let info = store.lookup(disk, key)?;
    Some(store.read(&info, off, len).await.unwrap())
}

#[test]
fn ranged_reads_cross_chunk_boundaries_and_reject_out_of_range() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 1, 16 << 20, 16 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        let body = common::body_bytes(1, 100_003);
        put(&store, b"big", &body, b"m").await;
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let off = rng.gen_range(0..body.len());
            let len = rng.gen_range(0..=body.len() - off);
            let got = get(&store, b"big", off as u64, len as u64).await.unwrap();
            assert_eq!(&got[..], &body[off..off + len]);
        }
        let disk = store.pick_disk(b"big").unwrap();
        let info = store.lookup(disk, b"big").unwrap();
        assert!(matches!(
            store.read(&info, 100_000, 4).await,
            Err(StorageError::Range { .. })
        ));
        assert!(matches!(
            store.read(&info, u64::MAX, 2).await,
            Err(StorageError::Range { .. })
        ));
        assert_eq!(store.read(&info, 100_003, 0).await.unwrap().len(), 0);
    });
}

#[test]
fn fragmented_objects_read_back_and_survive_reopen() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 1, 4 << 20, 16 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        // Checkerboard the disk with objects of 19 blocks (one directory entry per 64 KiB of disk
        // holds 64 of them), free every other one, then write large
        // objects that must be spread over the holes.
        for i in 0..53u32 {
            put(
                &store,
                format!("small{i}").as_bytes(),
                &common::body_bytes(u64::from(i), 73_728),
                b"s",
            )
            .await;
        }
        assert!(
            store.stats().disks[0].used_bytes > (4 << 20) * 9 / 10,
            "disk should be nearly full"
        );
        assert_eq!(store.stats().disks[0].evictions, 0);
        let disk = store.disks()[0].0;
        for i in (0..53u32).step_by(2) {
            assert!(store
                .remove(disk, format!("small{i}").as_bytes())
                .await
                .unwrap());
        }
        let big: Vec<Vec<u8>> = (0..3u64)
            .map(|i| common::body_bytes(100 + i, 150_000))
            .collect();
        for (i, b) in big.iter().enumerate() {
            put(&store, format!("big{i}").as_bytes(), b, b"b").await;
        }
        // Then again after a reopen (the first store closed first: a slab has one owner).
        let mut first = Some(store);
        for reopen in [false, true] {
            let reopened;
            let store = if reopen {
                drop(first.take());
                reopened = Store::open(cfg.clone()).await.unwrap().0;
                &reopened
            } else {
                first.as_ref().unwrap()
            };
            assert_eq!(store.stats().disks[0].evictions, 0);
            assert!(
                store.stats().disks[0].fragmented_objects > 0,
                "big objects should be fragmented"
            );
            for (i, b) in big.iter().enumerate() {
                let got = get(store, format!("big{i}").as_bytes(), 0, b.len() as u64)
                    .await
                    .unwrap();
                assert_eq!(&got[..], &b[..]);
                let got = get(store, format!("big{i}").as_bytes(), 70_000, 50_000)
                    .await
                    .unwrap();
                assert_eq!(&got[..], &b[70_000..120_000]);
            }
            for i in (1..53u32).step_by(2) {
                let got = get(store, format!("small{i}").as_bytes(), 0, 73_728)
                    .await
                    .unwrap();
                assert_eq!(&got[..], &common::body_bytes(u64::from(i), 73_728)[..]);
            }
            for i in (0..53u32).step_by(2) {
                assert!(get(store, format!("small{i}").as_bytes(), 0, 1)
                    .await
                    .is_none());
            }
            assert_eq!(store.stats().disks[0].errors, 0);
        }
    });
}

#[test]
fn update_meta_and_purge_prefix_persist() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 2, 8 << 20, 64 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        for i in 0..20 {
            put(&store, format!("a.com/x/{i}").as_bytes(), b"body", b"old").await;
            put(&store, format!("b.com/y/{i}").as_bytes(), b"body", b"old").await;
        }
        let disk = store.pick_disk(b"b.com/y/3").unwrap();
        assert!(store
            .update_meta(disk, b"b.com/y/3", Bytes::from_static(b"new"))
            .await
            .unwrap());
        assert!(!store
            .update_meta(disk, b"nope", Bytes::from_static(b"new"))
            .await
            .unwrap());
        assert_eq!(store.purge_prefix(b"a.com/").await.unwrap(), 20);
        drop(store);
        let (store, _) = Store::open(cfg).await.unwrap();
        for i in 0..20 {
            let a = format!("a.com/x/{i}");
            let b = format!("b.com/y/{i}");
            assert!(store
                .lookup(store.pick_disk(a.as_bytes()).unwrap(), a.as_bytes())
                .is_none());
            let info = store
                .lookup(store.pick_disk(b.as_bytes()).unwrap(), b.as_bytes())
                .unwrap();
            assert_eq!(
                &info.meta[..],
                if i == 3 { &b"new"[..] } else { &b"old"[..] }
            );
        }
    });
}

#[test]
fn limits_are_errors_not_panics() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 1, 4 << 20, 64 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg).await.unwrap();
        let disk = store.disks()[0].0;
        let meta = Bytes::from(vec![0u8; 10_000]);
        assert!(matches!(
            store.writer(disk, b"k", meta, None),
            Err(StorageError::TooLarge { .. })
        ));
        assert!(matches!(
            store.writer(disk, b"k", Bytes::new(), Some(1 << 40)),
            Err(StorageError::TooLarge { .. })
        ));
        let mut w = store.writer(disk, b"k", Bytes::new(), None).unwrap();
        let mut failed = false;
        for _ in 0..100 {
            if w.write(&[0u8; 65_536]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a body above the per-object limit must be refused");
        drop(w);
        assert!(store.lookup(disk, b"k").is_none());
        let st = &store.stats().disks[0];
        assert!(st.used_bytes <= st.size_bytes);
        assert_eq!(st.quarantined_bytes, 0);
    });
}

#[test]
fn media_mix_space_efficiency_at_least_85_percent() {
    let dir = common::odirect_tempdir();
    let size_bytes: u64 = 128 << 20;
    let cfg = common::config(dir.path(), 1, size_bytes, 1 << 20, 10);
    common::run(async {
        let (store, _) = Store::open(cfg).await.unwrap();
        let disk = store.disks()[0].0;
        let mut rng = StdRng::seed_from_u64(5);
        let mut written = 0u64;
        let mut i = 0u32;
        // Write 1.5x the disk: manifests (1-8 KiB) and media chunks (0.5-4 MiB), 1 in 5 a manifest.
        while written < size_bytes * 3 / 2 {
            let len = if i.is_multiple_of(5) {
                rng.gen_range(1024..8192)
            } else {
                rng.gen_range(512 * 1024..4 << 20)
            };
            let mut w = store
                .writer(
                    disk,
                    format!("k{i}").as_bytes(),
                    Bytes::from_static(b"meta"),
                    Some(len),
                )
                .unwrap();
            let piece = vec![i as u8; 256 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(piece.len() as u64);
                w.write(&piece[..n as usize]).await.unwrap();
                left -= n;
            }
            w.finish().await.unwrap();
            written += len;
            i += 1;
        }
        let st = &store.stats().disks[0];
        let efficiency = st.live_bytes as f64 / st.size_bytes as f64;
        eprintln!(
            "media mix: live {} of {} bytes = {:.1} %, {} objects, {} evictions",
            st.live_bytes,
            st.size_bytes,
            efficiency * 100.0,
            st.objects,
            st.evictions
        );
        assert!(st.evictions > 0);
        assert!(st.used_bytes <= st.size_bytes);
        assert!(efficiency >= 0.85, "space efficiency {efficiency}");
    });
}

#[test]
fn an_object_being_written_reads_back_by_whole_chunks_until_its_writer_gives_up() {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 1, 16 << 20, 16 * 1024, 10);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        let body = common::body_bytes(3, 100_000);
        let disk = store.pick_disk(b"live").unwrap();
        let mut w = store
            .writer(disk, b"live", Bytes::from_static(b"m"), None)
            .unwrap();
        let progress = w.progress();
        // 40,000 bytes in: two whole 16 KiB chunks are on the disk (the third is buffered).
        w.write(&body[..40_000]).await.unwrap();
        assert_eq!(progress.readable_bytes(), 32 * 1024);
        let disk_reads = |s: &Store| s.stats().disks.iter().map(|d| d.read_ops).sum::<u64>();
        let before = disk_reads(&store);
        for off in [0u64, 100, 16 * 1024, 20_000] {
            let got = store.read_written(&progress, off, 1 << 20).await.unwrap();
            let chunk_end = (off / 16384 + 1) * 16384;
            assert_eq!(
                &got[..],
                &body[off as usize..chunk_end as usize],
                "offset {off}"
            );
        }
        // Readers at one chunk share its read (viewers behind a fill's window are at about the
        // same place): two chunks, two reads.
        assert_eq!(disk_reads(&store) - before, 2);
        assert!(matches!(
            store.read_written(&progress, 33_000, 10).await,
            Err(StorageError::Range { .. })
        ));
        // Committed: every byte, through the stored object.
        w.write(&body[40_000..]).await.unwrap();
        let info = w.finish().await.unwrap();
        assert_eq!(progress.readable_bytes(), 100_000);
        let tail = store
            .read_written(&progress, 98_304, 1 << 20)
            .await
            .unwrap();
        assert_eq!(&tail[..], &body[98_304..]);
        assert_eq!(info.body_len, 100_000);
        // A writer that gives up: nothing more is read through its progress.
        let mut w2 = store
            .writer(disk, b"dropped", Bytes::from_static(b"m"), None)
            .unwrap();
        let p2 = w2.progress();
        w2.write(&body[..50_000]).await.unwrap();
        assert!(store.read_written(&p2, 0, 10).await.is_ok());
        drop(w2);
        assert!(!p2.alive());
        assert!(matches!(
            store.read_written(&p2, 0, 10).await,
            Err(StorageError::Gone)
        ));
    });
}

/// A chunk is read together with its record (one read when it is the last chunk and the record
/// follows it, else both at once): a flipped byte in a middle chunk or in the last one is an
/// error, never the wrong bytes, and the other chunks still read back.
#[test]
fn a_corrupt_chunk_is_an_error_whether_or_not_it_adjoins_the_record() {
    let dir = common::odirect_tempdir();
    let mut cfg = common::config(dir.path(), 1, 16 << 20, 16 * 1024, 1000);
    cfg.ram_tier_bytes = 0;
    let body = common::body_bytes(7, 16 * 1024 * 3 + 5_000);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        put(&store, b"three-and-a-bit", &body, b"m").await;
        for (off, len) in [
            (0, 16_384),
            (16_384, 16_384),
            (49_152, 5_000),
            (20_000, 100),
        ] {
            let got = get(&store, b"three-and-a-bit", off, len).await.unwrap();
            assert_eq!(&got[..], &body[off as usize..(off + len) as usize]);
        }
        store.flush().await.unwrap();
    });
    // Flip one byte in chunk 1 (a middle chunk) and one in chunk 3 (the last, next to the record).
    let path = dir.path().join("disk0.slab");
    let mut slab = std::fs::read(&path).unwrap();
    for at in [20_000usize, 50_000] {
        let needle = &body[at..at + 64];
        let pos = slab
            .windows(64)
            .position(|w| w == needle)
            .expect("body bytes on the slab");
        slab[pos] ^= 0x5a;
    }
    std::fs::write(&path, &slab).unwrap();
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        let disk = store.pick_disk(b"three-and-a-bit").unwrap();
        let info = store.lookup(disk, b"three-and-a-bit").unwrap();
        let got = store.read(&info, 0, 16_384).await.unwrap();
        assert_eq!(&got[..], &body[..16_384]);
        for (off, len) in [(16_384u64, 16_384u64), (49_152, 5_000)] {
            match store.read(&info, off, len).await {
                Err(StorageError::Corrupt { what, .. }) => assert_eq!(what, "chunk"),
                other => panic!("chunk at {off}: {other:?}"),
            }
        }
        let got = store.read(&info, 32_768, 16_384).await.unwrap();
        assert_eq!(&got[..], &body[32_768..49_152]);
    });
}

/// Reading an object of several chunks chunk by chunk reads its record once: the first chunk
/// with the record (two reads at once), every later chunk alone — and a replaced object's
/// cached record is never used for the new one.
#[test]
fn later_chunks_are_read_without_their_record() {
    let dir = common::odirect_tempdir();
    let mut cfg = common::config(dir.path(), 1, 16 << 20, 16 * 1024, 1000);
    cfg.ram_tier_bytes = 0;
    let body = common::body_bytes(9, 16 * 1024 * 4);
    let other = common::body_bytes(10, 16 * 1024 * 4);
    common::run(async {
        let (store, _) = Store::open(cfg.clone()).await.unwrap();
        put(&store, b"four", &body, b"m").await;
        let reads_for = |store: &Store| store.ring_stats().completions;
        for round in 0..2 {
            let before = reads_for(&store);
            for c in 0..4u64 {
                let got = get(&store, b"four", c * 16_384, 16_384).await.unwrap();
                assert_eq!(
                    &got[..],
                    &body[(c * 16_384) as usize..((c + 1) * 16_384) as usize]
                );
            }
            let ios = reads_for(&store) - before;
            // The first round: record + chunk 0, then chunks 1..3 alone; later: chunks alone.
            assert_eq!(ios, if round == 0 { 5 } else { 4 }, "round {round}");
        }
        // Replaced under the same key (a new slot or generation): the new bytes, never the old.
        put(&store, b"four", &other, b"m").await;
        for c in 0..4u64 {
            let got = get(&store, b"four", c * 16_384, 16_384).await.unwrap();
            assert_eq!(
                &got[..],
                &other[(c * 16_384) as usize..((c + 1) * 16_384) as usize]
            );
        }
    });
}
