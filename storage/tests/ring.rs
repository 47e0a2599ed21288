//! The shard's disk ring (arrow_storage::uring) on real O_DIRECT files: data round-trips, errors
//! come back as values, more operations than the ring holds all complete, and an operation
//! dropped before its completion is reaped later without disturbing the others, and an operation
//! polled again after it completed panics instead of submitting its SQE a second time.

mod common;

use arrow_storage::slab::AlignedBuf;
use arrow_storage::uring::DiskRing;
use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;

fn open_direct(path: &std::path::Path, blocks: usize) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    f.set_len((blocks * BLOCK) as u64).unwrap();
    f
}

fn block_pattern(i: usize) -> AlignedBuf {
    let mut b = AlignedBuf::new(BLOCK);
    for (j, byte) in b.as_mut_slice().iter_mut().enumerate() {
        *byte = (i * 31 + j * 7) as u8;
    }
    b
}

/// Polls its future once, then drops it (if it was still pending, it is abandoned in flight).
struct PollOnce<F>(Option<F>);

impl<F: Future + Unpin> Future for PollOnce<F> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut f = self.0.take().expect("polled once");
        Poll::Ready(Pin::new(&mut f).poll(cx).is_pending())
    }
}

async fn wait_idle(ring: &DiskRing) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ring.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} ops never completed",
            ring.in_flight()
        );
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn writes_and_reads_round_trip_and_errors_are_values() {
    let dir = common::odirect_tempdir();
    let file = open_direct(&dir.path().join("rt.slab"), 64);
    let fd = file.as_raw_fd();
    common::run(async move {
        let ring = DiskRing::new().unwrap();
        let writes: Vec<_> = (0..64)
            .map(|i| ring.write(fd, block_pattern(i), (i * BLOCK) as u64))
            .collect();
        for w in writes {
            let (res, _) = w.await;
            assert_eq!(res.unwrap(), BLOCK as u32);
        }
        let (res, ()) = ring.sync_data(fd).await;
        res.unwrap();
        // All 64 reads in flight at once, completing in any order.
        let reads: Vec<_> = (0..64)
            .map(|i| ring.read(fd, AlignedBuf::for_read(BLOCK), (i * BLOCK) as u64))
            .collect();
        for (i, r) in reads.into_iter().enumerate() {
            let (res, buf) = r.await;
            assert_eq!(res.unwrap(), BLOCK as u32);
            assert_eq!(buf.as_slice(), block_pattern(i).as_slice(), "block {i}");
        }
        // Past the end: a short (zero-byte) read, not an error.
        let (res, _) = ring
            .read(fd, AlignedBuf::for_read(BLOCK), (64 * BLOCK) as u64)
            .await;
        assert_eq!(res.unwrap(), 0);
        // A misaligned O_DIRECT read and a closed descriptor: errors, as values.
        let (res, _) = ring.read(fd, AlignedBuf::for_read(BLOCK), 100).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let (res, _) = ring.read(-1, AlignedBuf::for_read(BLOCK), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(ring.in_flight(), 0);
    });
    drop(file);
}

#[test]
fn more_operations_than_the_ring_holds_all_complete() {
    let dir = common::odirect_tempdir();
    let file = open_direct(&dir.path().join("many.slab"), 256);
    let fd = file.as_raw_fd();
    common::run(async move {
        let ring = DiskRing::new().unwrap();
        for i in 0..256 {
            let (res, _) = ring.write(fd, block_pattern(i), (i * BLOCK) as u64).await;
            res.unwrap();
        }
        // 3,000 reads from 3,000 tasks: several times the ring's 512 entries.
        let tasks: Vec<_> = (0..3000)
            .map(|n| {
                let ring = ring.clone();
                monoio::spawn(async move {
                    let i = (n * 7919) % 256;
                    let (res, buf) = ring
                        .read(fd, AlignedBuf::for_read(BLOCK), (i * BLOCK) as u64)
                        .await;
                    assert_eq!(res.unwrap(), BLOCK as u32);
                    buf.as_slice() == block_pattern(i).as_slice()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await, "a read returned another block's bytes");
        }
        assert_eq!(ring.in_flight(), 0);
    });
    drop(file);
}

#[test]
fn a_dropped_operation_is_reaped_later_and_the_others_are_unaffected() {
    let dir = common::odirect_tempdir();
    let file = open_direct(&dir.path().join("drop.slab"), 128);
    let fd = file.as_raw_fd();
    common::run(async move {
        let ring = DiskRing::new().unwrap();
        for i in 0..128 {
            let (res, _) = ring.write(fd, block_pattern(i), (i * BLOCK) as u64).await;
            res.unwrap();
        }
        // Start 1 MiB reads and abandon them after their first poll: their buffers become
        // orphans held by the ring until the kernel completes them.
        // (A read can complete within its first poll: go on until some were really abandoned.)
        let mut abandoned = 0;
        for attempt in 0..2000 {
            if attempt >= 32 && abandoned > 0 {
                break;
            }
            let op = ring.read(fd, AlignedBuf::for_read(32 * BLOCK), 0);
            if PollOnce(Some(op)).await {
                abandoned += 1;
            }
        }
        // Reads issued meanwhile complete with the right bytes.
        for i in 0..128 {
            let (res, buf) = ring
                .read(fd, AlignedBuf::for_read(BLOCK), (i * BLOCK) as u64)
                .await;
            assert_eq!(res.unwrap(), BLOCK as u32);
            assert_eq!(buf.as_slice(), block_pattern(i).as_slice());
        }
        assert!(abandoned > 0, "every read completed within its first poll");
        wait_idle(&ring).await;
        // Dropping the ring with orphans in flight waits for them (no use after free).
        // (A read can complete within its first poll: keep abandoning until one is in flight.)
        for _ in 0..1000 {
            PollOnce(Some(ring.read(fd, AlignedBuf::for_read(32 * BLOCK), 0))).await;
            if ring.in_flight() > 0 {
                break;
            }
        }
        assert!(ring.in_flight() > 0, "no orphan left to wait for");
        drop(ring);
    });
    drop(file);
}

/// Polls a completed operation once more, inside `catch_unwind`: true if that poll panicked.
struct PollAgain<F>(F, bool);

impl<F: Future + Unpin> Future for PollAgain<F> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        if !this.1 {
            match Pin::new(&mut this.0).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => this.1 = true,
            }
        }
        let op = &mut this.0;
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = Pin::new(op).poll(cx);
        }));
        Poll::Ready(again.is_err())
    }
}

#[test]
fn an_operation_polled_after_completion_panics_and_submits_nothing() {
    let dir = common::odirect_tempdir();
    let file = open_direct(&dir.path().join("again.slab"), 4);
    let fd = file.as_raw_fd();
    common::run(async move {
        let ring = DiskRing::new().unwrap();
        let (res, _) = ring.write(fd, block_pattern(0), 0).await;
        res.unwrap();
        let before = ring.stats();
        let panicked = PollAgain(ring.read(fd, AlignedBuf::for_read(BLOCK), 0), false).await;
        assert!(panicked, "a second poll of a completed read did not panic");
        // Nothing was resubmitted: no op in flight, and only the one read completed.
        assert_eq!(ring.in_flight(), 0);
        monoio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ring.in_flight(), 0);
        let after = ring.stats();
        assert_eq!(
            after.completions - before.completions,
            1,
            "the second poll reached the kernel"
        );
    });
    drop(file);
}
