//! Model test: seeded random put / get / range-get / remove / fill (evict) / reopen against an
//! in-memory model. Objects may be missing (evicted), but any object present is byte-identical to
//! the last version written, and removed objects never come back.

mod common;

use arrow_storage::{StorageError, Store};
use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

const KEYS: u32 = 96;

fn key(k: u32) -> Vec<u8> {
    format!("foo.com/title{}/seg-{k}.m4s", k % 5).into_bytes()
}

fn body_for(k: u32, version: u32, len: usize) -> Vec<u8> {
    common::body_bytes(u64::from(k) << 32 | u64::from(version), len)
}

#[derive(Clone)]
struct Version {
    body: Vec<u8>,
    meta: Vec<u8>,
}

async fn check_key(store: &Store, model: &HashMap<u32, Option<Version>>, k: u32, rng: &mut StdRng) {
    let disk = store.pick_disk(&key(k)).expect("a disk");
    let found = store.lookup(disk, &key(k));
    let want = model.get(&k).cloned().flatten();
    match (found, want) {
        (None, _) => {}
        (Some(_), None) => panic!("key {k}: present but removed or never written"),
        (Some(info), Some(v)) => {
            assert_eq!(info.body_len as usize, v.body.len(), "key {k} length");
            assert_eq!(&info.meta[..], &v.meta[..], "key {k} meta");
            let (off, len) = if v.body.is_empty() || rng.gen_bool(0.5) {
                (0, v.body.len())
            } else {
                let off = rng.gen_range(0..v.body.len());
                (off, rng.gen_range(0..=v.body.len() - off))
            };
            match store.read(&info, off as u64, len as u64).await {
                Ok(got) => assert_eq!(
                    &got[..],
                    &v.body[off..off + len],
                    "key {k} bytes {off}+{len}"
                ),
                Err(StorageError::Gone) => {}
                Err(e) => panic!("key {k}: read failed: {e}"),
            }
        }
    }
}

fn run_model(seed: u64, steps: usize) {
    let dir = common::odirect_tempdir();
    let cfg = common::config(dir.path(), 2, 3 << 20, 16 * 1024, 1000);
    common::run(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut store, refused) = Store::open(cfg.clone()).await.unwrap();
        assert!(refused.is_empty());
        let mut model: HashMap<u32, Option<Version>> = HashMap::new();
        let mut versions: HashMap<u32, u32> = HashMap::new();
        let mut evictions = 0u64;
        for step in 0..steps {
            let k = rng.gen_range(0..KEYS);
            match rng.gen_range(0..100) {
                0..=39 => {
                    let ver = versions.entry(k).or_insert(0);
                    *ver += 1;
                    let len = match rng.gen_range(0..10) {
                        0 => 0,
                        1..=5 => rng.gen_range(1..20_000),
                        _ => rng.gen_range(20_000..400_000),
                    };
                    let v = Version {
                        body: body_for(k, *ver, len),
                        meta: format!("m{k}.{ver}").into_bytes(),
                    };
                    let disk = store.pick_disk(&key(k)).unwrap();
                    let mut w = store
                        .writer(disk, &key(k), Bytes::from(v.meta.clone()), Some(len as u64))
                        .unwrap();
                    for piece in v.body.chunks(rng.gen_range(1000..70_000)) {
                        w.write(piece).await.unwrap();
                    }
                    if rng.gen_range(0..20) == 0 {
                        drop(w); // aborted write: the old version (if any) stays
                        continue;
                    }
                    let info = w.finish().await.unwrap();
                    assert_eq!(info.body_len as usize, v.body.len());
                    model.insert(k, Some(v));
                }
                40..=49 => {
                    let disk = store.pick_disk(&key(k)).unwrap();
                    store.remove(disk, &key(k)).await.unwrap();
                    model.insert(k, None);
                }
                50..=52 => {
                    // Lookup, then overwrite: the stale handle reads Gone, never new bytes.
                    let disk = store.pick_disk(&key(k)).unwrap();
                    if let Some(old) = store.lookup(disk, &key(k)) {
                        let ver = versions.entry(k).or_insert(0);
                        *ver += 1;
                        let v = Version {
                            body: body_for(k, *ver, 5000),
                            meta: b"new".to_vec(),
                        };
                        let mut w = store
                            .writer(disk, &key(k), Bytes::from(v.meta.clone()), None)
                            .unwrap();
                        w.write(&v.body).await.unwrap();
                        w.finish().await.unwrap();
                        model.insert(k, Some(v));
                        if old.body_len > 0 {
                            assert!(matches!(
                                store.read(&old, 0, old.body_len).await,
                                Err(StorageError::Gone)
                            ));
                        }
                    }
                }
                53..=54 => {
                    evictions += store.stats().disks.iter().map(|d| d.evictions).sum::<u64>();
                    drop(store);
                    let (s, refused) = Store::open(cfg.clone()).await.unwrap();
                    assert!(refused.is_empty(), "step {step}: {refused:?}");
                    store = s;
                }
                55 => {
                    let disk = store.pick_disk(&key(k)).unwrap();
                    let meta = format!("refreshed{step}").into_bytes();
                    if store
                        .update_meta(disk, &key(k), Bytes::from(meta.clone()))
                        .await
                        .unwrap()
                    {
                        if let Some(Some(v)) = model.get_mut(&k) {
                            v.meta = meta;
                        }
                    }
                }
                _ => check_key(&store, &model, k, &mut rng).await,
            }
        }
        for k in 0..KEYS {
            check_key(&store, &model, k, &mut rng).await;
        }
        let stats = store.stats();
        for d in &stats.disks {
            assert!(d.used_bytes <= d.size_bytes);
            assert_eq!(d.errors, 0, "{d:?}");
        }
        evictions += stats.disks.iter().map(|d| d.evictions).sum::<u64>();
        eprintln!("{stats:?}");
        assert!(evictions > 0, "the model should fill the disks");
    });
}

#[test]
fn model_random_sequences_match() {
    let seeds: u64 = std::env::var("ARROW_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    for seed in 0..seeds {
        run_model(seed, 1000);
    }
}
