//! The shard's disk ring: a raw io_uring (the `io-uring` crate) that carries every slab read,
//! write and fdatasync, next to monoio's own ring, which keeps the sockets.
//!
//! ```text
//! RingOp::poll ─ in flight < CAP? ─no→ wait for room (woken by reap)
//!              └ yes → push SQE, io_uring_enter(submit) now ─→ slot Waiting(waker)
//! kernel: CQE on the disk ring → registered eventfd ticks
//! reaper task (monoio): read(eventfd) returns → reap(): each CQE → slot Done(res), wake its task
//! ```
//!
//! Why a second ring: monoio pushes an SQE and submits it only when the executor parks, after
//! every runnable task has run, so a queue of reads reaches the device in waves (one
//! `io_uring_enter` per ~32 reads at depth 32) and the device idles while the shard verifies the
//! previous wave. Here each read enters the kernel as soon as its task issues it, the way fio
//! does with `iodepth_batch_submit=1`, and completions still wake tasks through monoio (the
//! eventfd read is an ordinary monoio operation), so the executor never blocks outside its ring.
//!
//! Ownership: an operation's buffer stays in its [`RingOp`] until the completion arrives; an op
//! dropped early leaves its buffer in its slot (an orphan) until the kernel is done with it, and
//! dropping the ring waits for every operation still in flight before memory is freed.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue, types, IoUring};
use monoio::buf::{IoBuf, IoBufMut};

/// Submission queue entries; also the most operations in flight at once (CAP), so the
/// completion queue (twice as large) can never overflow and a push never finds the queue full.
const RING_ENTRIES: u32 = 512;

enum Slot {
    Free,
    /// Submitted; the task to wake when it completes (None until first polled).
    Waiting(Option<Waker>),
    /// Completed with this result (bytes or -errno), not yet taken.
    Done(i32),
    /// Its op was dropped before completion: the buffer waits here for the kernel to finish.
    Orphan(#[allow(dead_code)] Box<dyn Any>),
}

/// One shard's disk ring. Create it inside the shard's monoio runtime (it spawns its reaper
/// task there) and use it only from that thread.
pub struct DiskRing {
    ring: RefCell<IoUring>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    in_flight: Cell<u32>,
    /// Tasks waiting for room (in flight == CAP); all woken when any op completes.
    room_waiters: RefCell<Vec<Waker>>,
    /// The eventfd the kernel ticks on every completion (the reaper reads a duplicate).
    eventfd: OwnedFd,
    submit_errors: Cell<u64>,
    stats: Cell<RingStats>,
}

/// Counters of one ring since it was created.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingStats {
    /// Completions taken.
    pub completions: u64,
    /// Reaps that found at least one completion.
    pub reaps: u64,
    /// Completions taken 16 or more at a time (the device answering in bursts).
    pub completions_in_bursts: u64,
    /// Submits the kernel refused for the moment (retried with the next submit or reap).
    pub submit_errors: u64,
}

impl DiskRing {
    /// A ring and its reaper task on the current monoio runtime.
    pub fn new() -> io::Result<Rc<DiskRing>> {
        // SINGLE_ISSUER: only this thread submits. Not COOP_TASKRUN: with it, a completion
        // waited for the shard's next entry into the kernel, and at low concurrency a 64 KiB
        // disk-tier hit took 2x the time and 1.6x the CPU (bench/disktier.sh CONNS=1: 1,573 vs
        // 2,900 req/s). Kernels before 6.0 refuse SINGLE_ISSUER: use a plain ring there.
        let ring = match IoUring::builder().setup_single_issuer().build(RING_ENTRIES) {
            Ok(ring) => ring,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                IoUring::builder().build(RING_ENTRIES)?
            }
            Err(e) => return Err(e),
        };
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let reaper_fd = eventfd.try_clone()?;
        let reaper_file = monoio::fs::File::from_std(std::fs::File::from(reaper_fd))?;
        let this = Rc::new(DiskRing {
            ring: RefCell::new(ring),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            room_waiters: RefCell::new(Vec::new()),
            eventfd,
            submit_errors: Cell::new(0),
            stats: Cell::new(RingStats::default()),
        });
        monoio::spawn(reap_loop(Rc::downgrade(&this), reaper_file));
        Ok(this)
    }

    /// Operations submitted and not yet completed (orphans included).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// Counters since creation.
    pub fn stats(&self) -> RingStats {
        RingStats {
            submit_errors: self.submit_errors.get(),
            ..self.stats.get()
        }
    }

    /// Read into all of `buf` (its `bytes_total`) at byte `offset` of `fd`.
    pub fn read<T: IoBufMut + 'static>(
        self: &Rc<Self>,
        fd: RawFd,
        mut buf: T,
        offset: u64,
    ) -> RingOp<T> {
        let len = u32::try_from(buf.bytes_total()).expect("one read is below 4 GiB");
        let sqe = opcode::Read::new(types::Fd(fd), buf.write_ptr(), len)
            .offset(offset)
            .build();
        RingOp::new(self, sqe, buf)
    }

    /// Write all of `buf` (its `bytes_init`) at byte `offset` of `fd`.
    pub fn write<T: IoBuf + 'static>(self: &Rc<Self>, fd: RawFd, buf: T, offset: u64) -> RingOp<T> {
        let len = u32::try_from(buf.bytes_init()).expect("one write is below 4 GiB");
        let sqe = opcode::Write::new(types::Fd(fd), buf.read_ptr(), len)
            .offset(offset)
            .build();
        RingOp::new(self, sqe, buf)
    }

    /// fdatasync `fd`.
    pub fn sync_data(self: &Rc<Self>, fd: RawFd) -> RingOp<()> {
        let sqe = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        RingOp::new(self, sqe, ())
    }

    /// Push one SQE and submit it now. None if the ring is at CAP.
    fn start(&self, sqe: &squeue::Entry) -> Option<u32> {
        if self.in_flight.get() >= RING_ENTRIES {
            return None;
        }
        let idx = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Slot::Free);
                (slots.len() - 1) as u32
            }
        };
        self.slots.borrow_mut()[idx as usize] = Slot::Waiting(None);
        self.in_flight.set(self.in_flight.get() + 1);
        let mut ring = self.ring.borrow_mut();
        // SAFETY: the entry's buffer lives in the RingOp (or, if that is dropped, in this slot)
        // until its completion is reaped; in flight <= CAP = SQ size, so the queue has room
        // (entries a failed submit left behind count in `in_flight` too).
        let pushed = unsafe {
            ring.submission()
                .push(&sqe.clone().user_data(u64::from(idx)))
        };
        debug_assert!(pushed.is_ok(), "SQ full below CAP");
        self.submit(&ring);
        Some(idx)
    }

    /// io_uring_enter for whatever is queued. A refused submit (EAGAIN/EBUSY: kernel short of
    /// memory) leaves the entries queued; the next submit, reap or poll of a queued op sends them.
    fn submit(&self, ring: &IoUring) {
        loop {
            match ring.submit() {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    self.submit_errors.set(self.submit_errors.get() + 1);
                    tracing::debug!(error = %e, "disk ring submit deferred");
                    return;
                }
            }
        }
    }

    /// Entries pushed but not yet taken by the kernel.
    fn queued(&self) -> usize {
        self.ring.borrow_mut().submission().len()
    }

    /// Take every completion: mark slots done, free orphans, wake tasks. Returns how many.
    fn reap(&self) -> usize {
        let mut woken: Vec<Waker> = Vec::new();
        let mut n = 0;
        {
            let mut ring = self.ring.borrow_mut();
            let mut slots = self.slots.borrow_mut();
            let mut free = self.free.borrow_mut();
            for cqe in ring.completion() {
                n += 1;
                let idx = cqe.user_data() as usize;
                let Some(slot) = slots.get_mut(idx) else {
                    continue;
                };
                match std::mem::replace(slot, Slot::Done(cqe.result())) {
                    Slot::Waiting(w) => woken.extend(w),
                    Slot::Orphan(_) => {
                        *slot = Slot::Free;
                        free.push(idx as u32);
                        self.in_flight.set(self.in_flight.get() - 1);
                    }
                    // A completion for a slot not in flight cannot happen; keep it as it was.
                    other => *slot = other,
                }
            }
            if n > 0 && !ring.submission().is_empty() {
                self.submit(&ring);
            }
        }
        if n > 0 {
            let mut st = self.stats.get();
            st.completions += n as u64;
            st.reaps += 1;
            if n >= 16 {
                st.completions_in_bursts += n as u64;
            }
            self.stats.set(st);
            woken.append(&mut self.room_waiters.borrow_mut());
        }
        for w in woken {
            w.wake();
        }
        n
    }

    /// The result of op `idx` if it completed (freeing its slot), else record `waker`.
    fn poll_slot(&self, idx: u32, waker: &Waker) -> Option<i32> {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[idx as usize];
        match slot {
            Slot::Done(res) => {
                let res = *res;
                *slot = Slot::Free;
                self.free.borrow_mut().push(idx);
                self.in_flight.set(self.in_flight.get() - 1);
                Some(res)
            }
            Slot::Waiting(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                None
            }
            Slot::Free | Slot::Orphan(_) => unreachable!("polled a slot it does not own"),
        }
    }

    /// The op of `idx` is dropped: free the slot if done, else keep `buf` there until it is.
    fn abandon(&self, idx: u32, buf: Box<dyn Any>) {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[idx as usize];
        if matches!(slot, Slot::Done(_)) {
            *slot = Slot::Free;
            self.free.borrow_mut().push(idx);
            self.in_flight.set(self.in_flight.get() - 1);
        } else {
            *slot = Slot::Orphan(buf);
        }
    }
}

impl Drop for DiskRing {
    fn drop(&mut self) {
        // The kernel may still write into orphaned buffers: wait for every op before they are
        // freed. If waiting fails, leak them rather than free memory under a running read.
        let ring = self.ring.get_mut();
        let mut left = self
            .slots
            .get_mut()
            .iter()
            .filter(|s| matches!(s, Slot::Waiting(_) | Slot::Orphan(_)))
            .count() as u32;
        while left > 0 {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => {
                    std::mem::forget(std::mem::take(self.slots.get_mut()));
                    break;
                }
            }
            left -= ring.completion().count().min(left as usize) as u32;
        }
        // Let the reaper see that the ring is gone and end.
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Wait on the eventfd and reap, until the ring is dropped.
async fn reap_loop(ring: Weak<DiskRing>, eventfd: monoio::fs::File) {
    let mut buf: Vec<u8> = Vec::with_capacity(8);
    loop {
        let (res, b) = eventfd.read_at(buf, 0).await;
        buf = b;
        let Some(ring) = ring.upgrade() else {
            return;
        };
        ring.reap();
        if let Err(e) = res {
            // Not expected; if it happens, keep completions flowing by polling instead.
            tracing::warn!(error = %e, "disk ring eventfd read failed; polling every 1 ms");
            drop(ring);
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// One disk operation; resolves to (bytes transferred or the OS error, the buffer).
pub struct RingOp<T: 'static> {
    ring: Rc<DiskRing>,
    sqe: squeue::Entry,
    idx: Option<u32>,
    buf: Option<T>,
}

// The buffer is never pinned (it moves out when the op resolves), so RingOp need not be either.
impl<T: 'static> Unpin for RingOp<T> {}

impl<T: 'static> RingOp<T> {
    fn new(ring: &Rc<DiskRing>, sqe: squeue::Entry, buf: T) -> RingOp<T> {
        RingOp {
            ring: Rc::clone(ring),
            sqe,
            idx: None,
            buf: Some(buf),
        }
    }
}

impl<T: 'static> Future for RingOp<T> {
    type Output = (io::Result<u32>, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // A completed op no longer owns its buffer: submitting its SQE again would let the
        // kernel write into memory already handed back. Refuse before touching the ring.
        assert!(this.buf.is_some(), "RingOp polled after completion");
        let idx = match this.idx {
            Some(idx) => idx,
            None => match this.ring.start(&this.sqe) {
                Some(idx) => {
                    this.idx = Some(idx);
                    idx
                }
                None => {
                    this.ring.room_waiters.borrow_mut().push(cx.waker().clone());
                    return Poll::Pending;
                }
            },
        };
        // Entries a refused submit left queued: send them now, and if the kernel still refuses,
        // come back (no completion will wake this task for an op the kernel never took).
        if this.ring.queued() > 0 {
            this.ring.submit(&this.ring.ring.borrow());
            if this.ring.queued() > 0 {
                cx.waker().wake_by_ref();
            }
        }
        // Completions the kernel already posted are taken here, without waiting for the reaper.
        this.ring.reap();
        match this.ring.poll_slot(idx, cx.waker()) {
            Some(res) => {
                this.idx = None;
                let buf = this.buf.take().expect("RingOp polled after completion");
                let out = if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as u32)
                };
                Poll::Ready((out, buf))
            }
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for RingOp<T> {
    fn drop(&mut self) {
        if let Some(idx) = self.idx.take() {
            let buf: Box<dyn Any> = Box::new(self.buf.take());
            self.ring.abandon(idx, buf);
        }
    }
}
