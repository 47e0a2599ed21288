//! One open disk: its slab file, superblock, index, free map and eviction policy, plus the
//! operations that keep the directory (the commit point) and the free map in step:
//! page commits, group fdatasync, eviction, and error counting / going offline.

use crate::alloc::FreeMap;
use crate::error::StorageError;
use crate::index::{Index, STATE_LIVE};
use crate::layout::{
    Extent, Geometry, Superblock, BLOCK_BYTES, DIR_ENTRIES_PER_BLOCK, DIR_ENTRY_BYTES,
};
use crate::pack::{Packs, DEAD};
use crate::policy::Evictor;
use crate::slab::{AlignedBuf, SlabFile};
use crate::DiskId;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::task::{Poll, Waker};
use std::time::Instant;

/// Wakers of tasks waiting for a disk state change (a page write or sync finishing, space freed).
#[derive(Default)]
pub(crate) struct Waiters(RefCell<Vec<Waker>>);

impl Waiters {
    pub(crate) fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.0.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once `cond()` holds (re-checked after every `wake_all`).
    pub(crate) fn until<'a>(
        &'a self,
        cond: impl Fn() -> bool + 'a,
    ) -> impl Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            if cond() {
                Poll::Ready(())
            } else {
                self.0.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// Mutable state of a disk (never borrowed across an `.await`).
pub(crate) struct DiskState {
    pub index: Index,
    pub free: FreeMap,
    pub policy: Box<dyn Evictor>,
    pub online: bool,
    pub errors: u64,
    pub evictions: u64,
    pub reads: u64,
    pub writes: u64,
    pub live_bytes: u64,
    pub pending_free_blocks: u64,
    pub quarantined_blocks: u64,
    pub packs: Packs,
    busy_pages: HashSet<u32>,
    sync_requested: u64,
    sync_done: u64,
    sync_running: bool,
}

/// Read accounting of a disk for the brpu's disk bound: bytes and reads completed, and the time
/// at least one read was in flight (the disk's busy time as this node drives it).
#[derive(Default)]
pub(crate) struct ReadClock {
    in_flight: Cell<u32>,
    busy_since: Cell<Option<Instant>>,
    busy_ns: Cell<u64>,
    bytes: Cell<u64>,
    ops: Cell<u64>,
}

/// One read in flight; dropping it (done or abandoned) stops the busy clock when it was the last.
pub(crate) struct ReadTiming<'a>(&'a ReadClock);

impl ReadClock {
    pub(crate) fn start(&self) -> ReadTiming<'_> {
        if self.in_flight.get() == 0 {
            self.busy_since.set(Some(Instant::now()));
        }
        self.in_flight.set(self.in_flight.get() + 1);
        ReadTiming(self)
    }

    /// (bytes read, reads, busy ns) so far, the running busy period included.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        let running = self
            .busy_since
            .get()
            .filter(|_| self.in_flight.get() > 0)
            .map_or(0, |t| t.elapsed().as_nanos() as u64);
        (
            self.bytes.get(),
            self.ops.get(),
            self.busy_ns.get() + running,
        )
    }
}

impl ReadTiming<'_> {
    pub(crate) fn done(self, bytes: u64) {
        self.0.bytes.set(self.0.bytes.get() + bytes);
        self.0.ops.set(self.0.ops.get() + 1);
    }
}

impl Drop for ReadTiming<'_> {
    fn drop(&mut self) {
        let c = self.0;
        c.in_flight.set(c.in_flight.get() - 1);
        if c.in_flight.get() == 0 {
            if let Some(t) = c.busy_since.take() {
                c.busy_ns
                    .set(c.busy_ns.get() + t.elapsed().as_nanos() as u64);
            }
        }
    }
}

/// One open disk.
pub(crate) struct Disk {
    pub id: DiskId,
    pub path: PathBuf,
    pub file: SlabFile,
    pub geo: Geometry,
    pub epoch_unix_secs: u64,
    pub error_threshold: u32,
    pub st: RefCell<DiskState>,
    pub waiters: Waiters,
    pub reads: ReadClock,
    /// Records of multi-chunk objects read lately (`records.rs`).
    pub records: RefCell<crate::records::RecordCache>,
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Disk {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sb: &Superblock,
        path: PathBuf,
        file: SlabFile,
        error_threshold: u32,
        index: Index,
        free: FreeMap,
        policy: Box<dyn Evictor>,
        live_bytes: u64,
        packs: Packs,
    ) -> Disk {
        Disk {
            id: DiskId(sb.uuid),
            path,
            file,
            geo: sb.geometry,
            epoch_unix_secs: sb.epoch_unix_secs,
            error_threshold: error_threshold.max(1),
            st: RefCell::new(DiskState {
                index,
                free,
                policy,
                online: !sb.offline,
                errors: 0,
                evictions: 0,
                reads: 0,
                writes: 0,
                live_bytes,
                pending_free_blocks: 0,
                quarantined_blocks: 0,
                packs,
                busy_pages: HashSet::new(),
                sync_requested: 0,
                sync_done: 0,
                sync_running: false,
            }),
            waiters: Waiters::default(),
            reads: ReadClock::default(),
            records: RefCell::default(),
        }
    }

    /// Policy clock: seconds since the disk's epoch.
    pub(crate) fn now_ticks(&self) -> u32 {
        u32::try_from(unix_secs().saturating_sub(self.epoch_unix_secs)).unwrap_or(u32::MAX)
    }

    pub(crate) fn online(&self) -> bool {
        self.st.borrow().online
    }

    pub(crate) fn offline_error(&self) -> StorageError {
        StorageError::Offline {
            path: self.path.clone(),
        }
    }

    /// Count `err` against the disk if it is a disk fault; past the threshold the disk goes
    /// offline and the flag is written to its superblock (best effort: the disk is failing).
    pub(crate) async fn fault(&self, err: StorageError) -> StorageError {
        if !err.is_disk_fault() {
            return err;
        }
        let went_offline = {
            let mut st = self.st.borrow_mut();
            st.errors += 1;
            if st.online && st.errors >= u64::from(self.error_threshold) {
                st.online = false;
                true
            } else {
                false
            }
        };
        tracing::warn!(disk = %self.id, path = %self.path.display(), error = %err, "disk error");
        if went_offline {
            tracing::error!(disk = %self.id, path = %self.path.display(), "disk taken offline");
            if let Err(e) = self.write_superblock(true).await {
                tracing::warn!(path = %self.path.display(), error = %e, "offline flag not written");
            }
        }
        err
    }

    /// Rewrite the superblock with the given offline flag, durably.
    pub(crate) async fn write_superblock(&self, offline: bool) -> Result<(), StorageError> {
        let sb = Superblock {
            uuid: self.id.0,
            geometry: self.geo,
            offline,
            epoch_unix_secs: self.epoch_unix_secs,
        };
        let mut buf = AlignedBuf::new(BLOCK_BYTES as usize);
        sb.encode(buf.as_mut_slice());
        let (res, _) = self.file.write_blocks(buf, 0).await;
        res?;
        self.file.sync().await
    }

    /// Group fdatasync: returns once a sync that started after this call has completed.
    pub(crate) async fn durable(&self) -> Result<(), StorageError> {
        let ticket = {
            let mut st = self.st.borrow_mut();
            st.sync_requested += 1;
            st.sync_requested
        };
        loop {
            let target = {
                let mut st = self.st.borrow_mut();
                if st.sync_done >= ticket {
                    return Ok(());
                }
                if st.sync_running {
                    None
                } else {
                    st.sync_running = true;
                    Some(st.sync_requested)
                }
            };
            match target {
                Some(target) => {
                    let res = self.file.sync().await;
                    {
                        let mut st = self.st.borrow_mut();
                        st.sync_running = false;
                        if res.is_ok() {
                            st.sync_done = st.sync_done.max(target);
                        }
                    }
                    self.waiters.wake_all();
                    res?;
                }
                None => {
                    self.waiters
                        .until(|| {
                            let st = self.st.borrow();
                            st.sync_done >= ticket || !st.sync_running
                        })
                        .await
                }
            }
        }
    }

    /// Write the directory blocks holding `ids` from the index's current state (one writer per
    /// block at a time, so the last write always carries the latest state), then sync.
    pub(crate) async fn commit_entries(&self, ids: &[u32]) -> Result<(), StorageError> {
        let mut pages: Vec<u32> = ids.iter().map(|id| id / DIR_ENTRIES_PER_BLOCK).collect();
        pages.dedup();
        for (i, &page) in pages.iter().enumerate() {
            if pages[..i].contains(&page) {
                continue;
            }
            self.waiters
                .until(|| !self.st.borrow().busy_pages.contains(&page))
                .await;
            let mut buf = AlignedBuf::new(BLOCK_BYTES as usize);
            {
                let mut st = self.st.borrow_mut();
                st.busy_pages.insert(page);
                let out = buf.as_mut_slice();
                for k in 0..DIR_ENTRIES_PER_BLOCK {
                    let id = page * DIR_ENTRIES_PER_BLOCK + k;
                    let at = k as usize * DIR_ENTRY_BYTES;
                    let entry = match st.packs.get(id) {
                        Some(p) if !p.freeing => Some(p.entry(st.index.slot(id).gen())),
                        Some(_) => None,
                        None => st.index.entry(id),
                    };
                    if let Some(e) = entry {
                        e.encode(&mut out[at..at + DIR_ENTRY_BYTES]);
                    }
                }
            }
            let block = self.geo.dir_start_block + u64::from(page);
            let (res, _) = self.file.write_blocks(buf, block).await;
            self.st.borrow_mut().busy_pages.remove(&page);
            self.waiters.wake_all();
            if let Err(e) = res {
                return Err(self.fault(e).await);
            }
        }
        match self.durable().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fault(e).await),
        }
    }

    /// Hide LIVE slot `id` from lookup and the policy; its blocks count as pending free (a
    /// packed object's member is dead from here; its pack's blocks once the pack is sealed and
    /// all its members are gone).
    fn hide(st: &mut DiskState, id: u32) {
        st.policy.remove(id);
        st.index.unpublish(id);
        st.live_bytes -= st.index.slot(id).body_len();
        if let Some((entry, offset)) = st.index.packed_at(id) {
            Self::kill_member(st, entry, offset);
            return;
        }
        let loc = st.index.location(id);
        st.pending_free_blocks += loc
            .data
            .iter()
            .chain([&loc.record])
            .map(|e| u64::from(e.blocks))
            .sum::<u64>();
    }

    /// Mark the member at `offset` of pack `entry` dead; a sealed pack left without members
    /// starts freeing (its blocks pending free until its entry is zeroed).
    pub(crate) fn kill_member(st: &mut DiskState, entry: u32, offset: u32) {
        let Some(p) = st.packs.by_entry.get_mut(&entry) else {
            return;
        };
        if p.kill(offset) {
            st.packs.members_alive -= 1;
        }
        if p.sealed && p.alive == 0 && !p.freeing {
            p.freeing = true;
            st.pending_free_blocks += p.blocks();
        }
    }

    /// Hide LIVE slots `ids` and free them: zero their directory entries durably, then return
    /// their blocks. If the directory write fails the blocks stay quarantined (an entry may still
    /// point at them).
    pub(crate) async fn drop_slots(&self, ids: &[u32], evicted: bool) -> Result<(), StorageError> {
        {
            let mut st = self.st.borrow_mut();
            for &id in ids {
                Self::hide(&mut st, id);
            }
        }
        self.free_hidden(ids, evicted).await
    }

    async fn free_hidden(&self, ids: &[u32], evicted: bool) -> Result<(), StorageError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Objects with entries of their own zero them; packed ones rewrite their packs' entries
        // (dead bits), or zero them when the pack goes.
        let (plain, packed): (Vec<u32>, Vec<u32>) = {
            let st = self.st.borrow();
            ids.iter().partition(|&&id| !st.index.is_packed_id(id))
        };
        let mut packs: Vec<u32> = {
            let st = self.st.borrow();
            packed
                .iter()
                .filter_map(|&id| st.index.packed_at(id).map(|(p, _)| p))
                .filter(|p| st.packs.get(*p).is_some())
                .collect()
        };
        packs.sort_unstable();
        packs.dedup();
        let freeing: Vec<u32> = {
            let st = self.st.borrow();
            packs
                .iter()
                .copied()
                .filter(|&p| st.packs.get(p).is_some_and(|p| p.freeing))
                .collect()
        };
        // A pack being freed is sealed; wait out its last flush so nothing writes it after.
        for &p in &freeing {
            self.waiters
                .until(|| !self.st.borrow().packs.get(p).is_some_and(|p| p.flushing))
                .await;
        }
        if evicted {
            self.st.borrow_mut().evictions += ids.len() as u64;
        }
        let mut entries = plain.clone();
        entries.extend_from_slice(&packs);
        entries.sort_unstable();
        let res = self.commit_entries(&entries).await;
        {
            let mut st = self.st.borrow_mut();
            for &id in &packed {
                st.index.release(id);
            }
            Self::free_packs(&mut st, &freeing, res.is_ok());
            for &id in &plain {
                let loc = st.index.location(id);
                let blocks = loc
                    .data
                    .iter()
                    .chain([&loc.record])
                    .map(|e| u64::from(e.blocks))
                    .sum::<u64>();
                st.pending_free_blocks -= blocks;
                if res.is_ok() {
                    st.index.release(id);
                    for e in loc.data.iter().chain([&loc.record]) {
                        st.free.free(*e);
                    }
                } else {
                    st.quarantined_blocks += blocks;
                }
            }
        }
        self.waiters.wake_all();
        res
    }

    /// Packs `entries` (freeing) leave: blocks back to the allocator if their zeroed entries
    /// are durable (`ok`), else quarantined until a restart (an entry may still name them).
    fn free_packs(st: &mut DiskState, entries: &[u32], ok: bool) {
        for &p in entries {
            let Some(pack) = st.packs.by_entry.remove(&p) else {
                continue;
            };
            st.pending_free_blocks -= pack.blocks();
            if st.packs.open == Some(p) {
                st.packs.open = None;
            }
            if ok {
                st.free.free(pack.extent);
                if let Some(t) = pack.tail {
                    st.free.free(t);
                }
                st.index.release(p);
            } else {
                st.quarantined_blocks += pack.blocks();
            }
        }
    }

    /// [`Self::free_packs`] from outside a borrow; wakes waiters.
    pub(crate) fn finish_freeing_packs(&self, entries: &[u32], ok: bool) {
        Self::free_packs(&mut self.st.borrow_mut(), entries, ok);
        self.waiters.wake_all();
    }

    /// Hide victims until `want_blocks` could be free (at least one victim). Empty if the policy
    /// has nothing left.
    fn pick_victims(&self, want_blocks: u64) -> Vec<u32> {
        let now = self.now_ticks();
        let mut st = self.st.borrow_mut();
        let mut victims = Vec::new();
        while victims.is_empty() || st.free.free_blocks() + st.pending_free_blocks < want_blocks {
            let Some(v) = st.policy.victim(now) else {
                break;
            };
            if st.index.get(v).map(|s| s.state()) != Some(STATE_LIVE) {
                // Not ours to evict (cannot happen while policy and index agree): stop tracking.
                st.policy.remove(v);
                continue;
            }
            // A packed victim in a sealed pack takes its whole pack with it: space comes back a
            // pack at a time (pack-mates were written around the same time). In the open pack
            // it goes alone.
            let mates: Vec<u32> = match st.index.packed_at(v) {
                Some((entry, _)) => match st.packs.get(entry) {
                    Some(p) if p.sealed && !p.freeing => p
                        .members
                        .iter()
                        .map(|m| m.slot)
                        .filter(|&m| m != DEAD && m != v && st.index.slot(m).state() == STATE_LIVE)
                        .collect(),
                    _ => Vec::new(),
                },
                None => Vec::new(),
            };
            Self::hide(&mut st, v);
            victims.push(v);
            for m in mates {
                Self::hide(&mut st, m);
                victims.push(m);
            }
        }
        victims
    }

    /// Allocate `want` blocks (exactly, contiguous, if `contiguous`; else at least one) after
    /// `after` if possible, evicting as needed.
    pub(crate) async fn alloc(
        &self,
        want: u32,
        after: Option<u32>,
        contiguous: bool,
    ) -> Result<Extent, StorageError> {
        loop {
            {
                let mut st = self.st.borrow_mut();
                if !st.online {
                    return Err(self.offline_error());
                }
                let got = if contiguous {
                    st.free.alloc_exact(want, after)
                } else {
                    st.free.alloc(want, after)
                };
                if let Some(e) = got {
                    return Ok(e);
                }
            }
            // Contiguous: free free+pending+want blocks' worth, so a run of `want` is likely to
            // appear in one round instead of one eviction (and one directory sync) per round.
            let target = if contiguous {
                let st = self.st.borrow();
                st.free.free_blocks() + st.pending_free_blocks + u64::from(want)
            } else {
                u64::from(want)
            };
            let victims = self.pick_victims(target);
            if victims.is_empty() {
                if self.st.borrow().pending_free_blocks > 0 {
                    self.waiters
                        .until(|| self.st.borrow().pending_free_blocks == 0)
                        .await;
                    continue;
                }
                return Err(StorageError::NoSpace {
                    path: self.path.clone(),
                    want_blocks: u64::from(want),
                });
            }
            self.free_hidden(&victims, true).await?;
        }
    }

    /// A free index slot, evicting if the directory is full.
    pub(crate) async fn alloc_slot(&self) -> Result<u32, StorageError> {
        self.alloc_id(false).await
    }

    /// A free packed slot, evicting if the index holds all the packed objects it may.
    pub(crate) async fn alloc_packed_slot(&self) -> Result<u32, StorageError> {
        self.alloc_id(true).await
    }

    async fn alloc_id(&self, packed: bool) -> Result<u32, StorageError> {
        loop {
            {
                let mut st = self.st.borrow_mut();
                if !st.online {
                    return Err(self.offline_error());
                }
                let id = if packed {
                    st.index.alloc_packed_slot()
                } else {
                    st.index.alloc_slot()
                };
                if let Some(id) = id {
                    return Ok(id);
                }
            }
            let victims = self.pick_victims(0);
            match victims.is_empty() {
                false => self.free_hidden(&victims, true).await?,
                true => {
                    if self.st.borrow().pending_free_blocks > 0 {
                        self.waiters
                            .until(|| self.st.borrow().pending_free_blocks == 0)
                            .await;
                        continue;
                    }
                    return Err(StorageError::NoSpace {
                        path: self.path.clone(),
                        want_blocks: 0,
                    });
                }
            }
        }
    }
}
