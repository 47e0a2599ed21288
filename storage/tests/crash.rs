//! Crash test: a child process (this test binary re-invoked) writes objects continuously from a
//! deterministic generator (content derived from the key) and appends each key to `done.log` once
//! `finish()` returned; the parent kills it with SIGKILL at random moments (ARROW_CRASH_KILLS,
//! default 20). After each restart every object the index returns is byte-identical to the
//! generator's, and every key the child reported complete is present: the stated bound is 0
//! (`finish()` returns only after the directory entry is durable).

mod common;

use arrow_storage::{StorageError, Store};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

const BODY_BYTES_MAX: u64 = 300_000;
const DISK_BYTES: u64 = 256 << 20;
/// Body bytes one run writes at most (then it idles until killed): well under the two disks'
/// capacity, so nothing reported is ever evicted however fast the machine writes.
const RUN_BODY_BYTES_MAX: u64 = 2 * DISK_BYTES * 2 / 5;
const CHUNK_BYTES: u32 = 64 * 1024;

fn cfg(dir: &Path) -> arrow_storage::StoreConfig {
    common::config(dir, 2, DISK_BYTES, CHUNK_BYTES, 1000)
}

/// The child: runs only when re-invoked by `crash_kill_restart_verify`.
#[test]
#[ignore = "child process of crash_kill_restart_verify"]
fn crash_child() {
    let Ok(dir) = std::env::var("ARROW_CRASH_DIR") else {
        return;
    };
    let run: u64 = std::env::var("ARROW_CRASH_RUN").unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(dir);
    common::run(async move {
        let (store, refused) = Store::open(cfg(&dir)).await.unwrap();
        assert!(refused.is_empty());
        let store = Rc::new(store);
        let log = Rc::new(std::cell::RefCell::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("done.log"))
                .unwrap(),
        ));
        let mut tasks = Vec::new();
        let written = Rc::new(std::cell::Cell::new(0u64));
        for t in 0..4u64 {
            let store = Rc::clone(&store);
            let log = Rc::clone(&log);
            let written = Rc::clone(&written);
            tasks.push(monoio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("r{run}/t{t}/k{i}").into_bytes();
                    let body = common::generated_body(&key, BODY_BYTES_MAX);
                    if written.get() + body.len() as u64 > RUN_BODY_BYTES_MAX {
                        // Budget spent: wait for the kill.
                        monoio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    written.set(written.get() + body.len() as u64);
                    let disk = store.pick_disk(&key).unwrap();
                    let mut w = store
                        .writer(disk, &key, Bytes::from(key.clone()), None)
                        .unwrap();
                    for piece in body.chunks(50_000) {
                        w.write(piece).await.unwrap();
                    }
                    w.finish().await.unwrap();
                    let mut line = key.clone();
                    line.push(b'\n');
                    log.borrow_mut().write_all(&line).unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

async fn verify(dir: &Path, reported: &[Vec<u8>]) -> usize {
    let (store, refused) = Store::open(cfg(dir)).await.unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    for key in reported {
        let disk = store.pick_disk(key).unwrap();
        let info = store
            .lookup(disk, key)
            .unwrap_or_else(|| panic!("reported key {} missing", String::from_utf8_lossy(key)));
        let body = store.read(&info, 0, info.body_len).await.unwrap();
        assert_eq!(&body[..], &common::generated_body(key, BODY_BYTES_MAX)[..]);
        assert_eq!(&info.meta[..], &key[..]);
    }
    // Everything else in the index (objects finished but not yet logged) must be intact too.
    let objects: u64 = store.stats().disks.iter().map(|d| d.objects).sum();
    assert!(objects as usize >= reported.len());
    for d in store.stats().disks {
        assert_eq!(d.errors, 0, "{d:?}");
    }
    // Start the next run from empty disks so nothing reported is ever evicted.
    let purged = store.purge_prefix(b"r").await.unwrap();
    assert_eq!(purged as u64, objects);
    purged
}

#[test]
fn crash_kill_restart_verify() {
    let kills: u64 = std::env::var("ARROW_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = common::odirect_tempdir();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut total_reported = 0usize;
    let mut total_found = 0usize;
    for run in 0..kills {
        let _ = std::fs::remove_file(dir.path().join("done.log"));
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("ARROW_CRASH_DIR", dir.path())
            .env("ARROW_CRASH_RUN", run.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let log = std::fs::read(dir.path().join("done.log")).unwrap_or_default();
        let reported: Vec<Vec<u8>> = log
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        total_reported += reported.len();
        total_found += common::run(verify(dir.path(), &reported));
    }
    eprintln!("crash test: {kills} kills, {total_reported} objects reported complete, {total_found} found");
    assert!(total_reported > 0, "the child never completed an object");
}

#[test]
fn stale_handle_after_eviction_is_gone() {
    let dir = common::odirect_tempdir();
    common::run(async {
        let (store, _) = Store::open(common::config(dir.path(), 1, 2 << 20, 16 * 1024, 10))
            .await
            .unwrap();
        let disk = store.disks()[0].0;
        let mut first = None;
        for i in 0..200u32 {
            let key = format!("k{i}");
            let mut w = store
                .writer(disk, key.as_bytes(), Bytes::new(), None)
                .unwrap();
            w.write(&vec![i as u8; 40_000]).await.unwrap();
            let info = w.finish().await.unwrap();
            first.get_or_insert(info);
        }
        let first = first.unwrap();
        assert!(
            store.lookup(disk, b"k0").is_none(),
            "k0 should have been evicted"
        );
        assert!(matches!(
            store.read(&first, 0, 10).await,
            Err(StorageError::Gone)
        ));
        let st = &store.stats().disks[0];
        assert_eq!(st.errors, 0);
        assert!(st.evictions > 0);
        assert!(st.used_bytes <= st.size_bytes);
    });
}
