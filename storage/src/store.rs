//! The Store: one shard's disks, its RAM tier, and the public API the server codes against.

use crate::disk::Disk;
use crate::error::StorageError;
use crate::hashing::{key_hash128, rendezvous_pick};
use crate::index::{BODY_LEN_MAX, STATE_LIVE};
use crate::layout::{BLOCK_BYTES, KEY_BYTES_MAX, META_BYTES_MAX};
use crate::ram_tier::{self, Held, RamSpan, RamTier};
use crate::recover::open_disk;
use crate::uring::DiskRing;
use crate::writer::{ObjectWriter, ProgressState, WriteProgress};
use crate::{reader, DiskId, DiskRefusal, ObjectInfo, StoreConfig};
use bytes::Bytes;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// Counters and gauges of one disk.
#[derive(Clone, Debug)]
pub struct DiskStats {
    /// Disk UUID.
    pub id: DiskId,
    /// Path it was opened by.
    pub path: PathBuf,
    /// Online (false: offline by errors or by the admin).
    pub online: bool,
    /// Configured size.
    pub size_bytes: u64,
    /// Bytes not free: superblock, directory, and allocated data blocks.
    pub used_bytes: u64,
    /// Sum of the bodies of visible objects.
    pub live_bytes: u64,
    /// Visible objects.
    pub objects: u64,
    /// Objects evicted by the policy.
    pub evictions: u64,
    /// Disk faults counted (I/O errors, short reads, checksum mismatches).
    pub errors: u64,
    /// Object reads served from the disk.
    pub reads: u64,
    /// Objects written.
    pub writes: u64,
    /// Body bytes read from the disk (RAM-tier hits excluded).
    pub read_bytes: u64,
    /// Reads of object bodies issued to the disk.
    pub read_ops: u64,
    /// Time at least one body read was in flight on this disk, ns.
    pub read_busy_ns: u64,
    /// RAM bytes per object of the index (slot arena + hash table + fragment lists; keys are not
    /// in RAM; metadata blobs are counted in `meta_bytes`; the policy in `policy_bytes_per_object`).
    pub index_bytes_per_object: f64,
    /// RAM bytes of the metadata arena.
    pub meta_bytes: u64,
    /// RAM bytes per object of the eviction policy.
    pub policy_bytes_per_object: u64,
    /// Objects whose data is split over several extents (the rest are one extent each).
    pub fragmented_objects: u64,
    /// Blocks held back after an aborted write or a failed directory write (freed at restart).
    pub quarantined_bytes: u64,
    /// Packs of small objects on the disk.
    pub packs: u64,
    /// Objects stored in packs (committing or live).
    pub packed_objects: u64,
}

/// Gauges of the RAM tier.
#[derive(Clone, Debug)]
pub struct RamTierStats {
    /// Bytes held.
    pub bytes: u64,
    /// Capacity.
    pub capacity_bytes: u64,
    /// Reads served from RAM.
    pub hits: u64,
    /// Reads that went to disk.
    pub misses: u64,
    /// Units read from the disk that the full tier did not take (first recent read).
    pub declined: u64,
}

/// Everything `Store::stats` reports.
#[derive(Clone, Debug)]
pub struct StoreStats {
    /// Per disk.
    pub disks: Vec<DiskStats>,
    /// The RAM tier.
    pub ram_tier: RamTierStats,
}

/// One shard's storage: its disks and RAM tier. Used from one thread; methods take `&self`
/// so it can be shared as `Rc<Store>` by many tasks.
pub struct Store {
    /// Replaced whole by [`Store::replace_disk`]; never borrowed across an `.await`.
    disks: RefCell<Vec<Rc<Disk>>>,
    ram: RefCell<RamTier>,
    cfg: StoreConfig,
    ring: Rc<DiskRing>,
}

impl Store {
    /// Open (creating missing slab files) every disk of `cfg`. A disk that cannot be used is
    /// returned as a refusal naming its path; the others open.
    pub async fn open(cfg: StoreConfig) -> Result<(Store, Vec<DiskRefusal>), StorageError> {
        let mut disks: Vec<Rc<Disk>> = Vec::new();
        let mut refused = Vec::new();
        // One ring for this shard's disks, created on the shard's runtime.
        let ring = DiskRing::new().map_err(|e| {
            StorageError::Config(format!("io_uring for the disks could not be set up: {e}"))
        })?;
        for spec in &cfg.disks {
            match open_disk(spec, cfg.chunk_bytes, &ring, None).await {
                Ok(d) => {
                    if disks.iter().any(|o| o.id == d.id) {
                        refused.push(DiskRefusal {
                            path: spec.path.clone(),
                            reason: format!(
                                "{}: disk {} is configured twice",
                                spec.path.display(),
                                d.id
                            ),
                        });
                        continue;
                    }
                    disks.push(Rc::new(d));
                }
                Err(reason) => {
                    tracing::error!(path = %spec.path.display(), %reason, "disk refused");
                    refused.push(DiskRefusal {
                        path: spec.path.clone(),
                        reason,
                    });
                }
            }
        }
        Ok((
            Store {
                disks: RefCell::new(disks),
                ram: RefCell::new(RamTier::new(cfg.ram_tier_bytes)),
                cfg,
                ring,
            },
            refused,
        ))
    }

    fn disk(&self, id: DiskId) -> Result<Rc<Disk>, StorageError> {
        self.disks
            .borrow()
            .iter()
            .find(|d| d.id == id)
            .cloned()
            .ok_or(StorageError::UnknownDisk(id))
    }

    /// The open disks (a snapshot: safe to hold across an `.await`).
    fn all_disks(&self) -> Vec<Rc<Disk>> {
        self.disks.borrow().clone()
    }

    /// Replace disk `id` by what its configured path holds now (a swapped device, or a file
    /// recreated in its place), without a restart: the old disk goes offline (its objects and
    /// RAM-tier units are gone with it), the path is opened again — a blank device or file is
    /// formatted with the same UUID, so keys keep their placement over the node's disks; one
    /// holding this disk is recovered; one holding another Arrow disk is refused — and the new
    /// disk comes online. On an error the old disk stays, offline.
    pub async fn replace_disk(&self, id: DiskId) -> Result<(), StorageError> {
        let old = self.disk(id)?;
        let spec = self
            .cfg
            .disks
            .iter()
            .find(|s| s.path == old.path)
            .cloned()
            .ok_or(StorageError::UnknownDisk(id))?;
        old.st.borrow_mut().online = false;
        self.ram.borrow_mut().remove_disk(id.0);
        old.file.unlock();
        let new = open_disk(&spec, self.cfg.chunk_bytes, &self.ring, Some(id.0))
            .await
            .map_err(StorageError::Config)?;
        {
            let mut disks = self.disks.borrow_mut();
            if let Some(slot) = disks.iter_mut().find(|d| d.id == id) {
                *slot = Rc::new(new);
            }
        }
        old.waiters.wake_all();
        self.set_online(id, true).await
    }

    /// (id, weight = size_bytes, online) of every open disk.
    pub fn disks(&self) -> Vec<(DiskId, u64, bool)> {
        self.disks
            .borrow()
            .iter()
            .map(|d| (d.id, d.geo.size_bytes, d.online()))
            .collect()
    }

    /// Weighted rendezvous pick over this store's online disks.
    pub fn pick_disk(&self, key: &[u8]) -> Option<DiskId> {
        rendezvous_pick(
            key,
            self.disks
                .borrow()
                .iter()
                .filter(|d| d.online())
                .map(|d| (d.id, d.geo.size_bytes)),
        )
    }

    /// The visible object of `key` on `disk` (counts as an access for the eviction policy).
    pub fn lookup(&self, disk: DiskId, key: &[u8]) -> Option<ObjectInfo> {
        let d = self.disk(disk).ok()?;
        let h = key_hash128(key);
        let now = d.now_ticks();
        let mut st = d.st.borrow_mut();
        if !st.online {
            return None;
        }
        let id = st.index.find(h as u64)?;
        st.policy.touch(id, now);
        let s = *st.index.slot(id);
        Some(ObjectInfo {
            disk,
            meta: Bytes::copy_from_slice(st.index.meta(id)),
            body_len: s.body_len(),
            slot: id,
            gen: s.gen(),
            key_hash128: h,
        })
    }

    /// Body bytes `[offset, offset + len)` of `obj`: RAM tier first, else only the chunks needed,
    /// each crc-checked. `Err(Gone)` if the object was evicted or replaced since lookup.
    pub async fn read(
        &self,
        obj: &ObjectInfo,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        self.readable(obj, offset, len)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut parts = Vec::new();
        let mut pos = offset;
        while pos < offset + len {
            let part = match self.read_part(obj, pos, offset + len - pos, false).await? {
                BodyPart::Bytes(b) => b,
                BodyPart::Span(s) => s.to_bytes(),
            };
            pos += part.len() as u64;
            parts.push(part);
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        let mut out = bytes::BytesMut::with_capacity(len as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    /// The next piece of `obj`'s body from `offset`: at most `len_max` bytes and never past the
    /// end of the unit (one chunk of a chunked body, or the whole of a body up to one chunk) that
    /// holds `offset`. The unit comes from the RAM tier, or from one crc-checked disk read that
    /// the tier may keep ([`RamTier::admit`]). With `want_span`, a unit held in the tier's arena
    /// comes back as a [`RamSpan`] (to splice); otherwise as bytes (a slice of the disk buffer,
    /// not a copy, for a unit the tier declined).
    pub async fn read_part(
        &self,
        obj: &ObjectInfo,
        offset: u64,
        len_max: u64,
        want_span: bool,
    ) -> Result<BodyPart, StorageError> {
        let len_max = len_max.min(obj.body_len.saturating_sub(offset));
        let d = self.readable(obj, offset, len_max)?;
        if len_max == 0 {
            return Ok(BodyPart::Bytes(Bytes::new()));
        }
        let cb = u64::from(d.geo.chunk_bytes);
        let (chunk, unit_start, unit_len) = if obj.body_len <= cb {
            (0u32, 0u64, obj.body_len)
        } else {
            let c = offset / cb;
            (c as u32, c * cb, cb.min(obj.body_len - c * cb))
        };
        let at = offset - unit_start;
        let len = len_max.min(unit_len - at);
        let unit = ram_tier::unit(obj.slot, chunk);
        let tier_max = self.ram.borrow().object_bytes_max();
        if unit_len <= tier_max {
            if let Some(held) = self.ram.borrow_mut().get(obj.disk.0, unit, obj.gen) {
                return Ok(part_of(&held, at, len, want_span));
            }
        }
        let body = timed_read(&d, obj, unit_start, unit_len).await?;
        let admitted = unit_len <= tier_max && {
            let mut ram = self.ram.borrow_mut();
            ram.admit(obj.disk.0, unit, unit_len)
                && ram
                    .insert(obj.disk.0, unit, obj.gen, body.clone())
                    .is_some()
        };
        if admitted {
            // Re-read through the tier so an arena body is handed out as a span.
            if let Some(held) = self.ram.borrow_mut().get(obj.disk.0, unit, obj.gen) {
                return Ok(part_of(&held, at, len, want_span));
            }
        }
        Ok(BodyPart::Bytes(
            body.slice(at as usize..(at + len) as usize),
        ))
    }

    /// Body bytes from `offset` (at most `len_max`, never past the end of its chunk) of an object
    /// still being written, through its writer's [`WriteProgress`]: whole chunks already on the
    /// disk are read back and crc-checked; once committed, the stored object is read. `Gone` if
    /// the writer gave up (its blocks may be reused), `Range` if the chunk is not written yet.
    pub async fn read_written(
        &self,
        progress: &WriteProgress,
        offset: u64,
        len_max: u64,
    ) -> Result<Bytes, StorageError> {
        let committed = progress.inner.borrow().committed.clone();
        if let Some(obj) = committed {
            return Ok(match self.read_part(&obj, offset, len_max, false).await? {
                BodyPart::Bytes(b) => b,
                BodyPart::Span(s) => s.to_bytes(),
            });
        }
        let d = self.disk(progress.disk)?;
        if !d.online() {
            return Err(d.offline_error());
        }
        let cb = u64::from(progress.chunk_bytes);
        let c = offset / cb;
        let at = (offset - c * cb) as usize;
        let len = len_max.min(cb - at as u64) as usize;
        let (extents, crc) = {
            let p = progress.inner.borrow();
            if p.state != ProgressState::Writing {
                return Err(StorageError::Gone);
            }
            if (c + 1) * cb > p.written_bytes || len_max == 0 {
                return Err(StorageError::Range {
                    offset_bytes: offset,
                    len_bytes: len_max,
                    body_len_bytes: p.written_bytes,
                });
            }
            if let Some((last, chunk)) = &p.last_read {
                if *last == c {
                    return Ok(chunk.slice(at..at + len));
                }
            }
            (p.data.clone(), p.chunk_crcs[c as usize])
        };
        let timing = d.reads.start();
        let res =
            reader::read_extent_blocks(&d, &extents, c * cb / BLOCK_BYTES, cb / BLOCK_BYTES).await;
        // The writer may have given up meanwhile and its blocks been reused: then nothing read
        // here is this object's.
        if !progress.alive() {
            return Err(StorageError::Gone);
        }
        let buf = match res {
            Ok(b) => b,
            Err(e) => return Err(d.fault(e).await),
        };
        if crate::layout::crc(&buf.as_slice()[..cb as usize]) != crc {
            return Err(d
                .fault(StorageError::Corrupt {
                    what: "chunk",
                    path: d.path.clone(),
                    offset_bytes: extents.first().map_or(0, |e| u64::from(e.start)) * BLOCK_BYTES,
                })
                .await);
        }
        timing.done(cb);
        let chunk = Bytes::from_owner(buf).slice(..cb as usize);
        {
            let mut p = progress.inner.borrow_mut();
            if p.state == ProgressState::Writing {
                p.last_read = Some((c, chunk.clone()));
            }
        }
        Ok(chunk.slice(at..at + len))
    }

    /// The checks every read makes first: the range lies in the body, the disk is online, and
    /// the slot still holds the object that was looked up.
    fn readable(&self, obj: &ObjectInfo, offset: u64, len: u64) -> Result<Rc<Disk>, StorageError> {
        let in_body = matches!(offset.checked_add(len), Some(end) if end <= obj.body_len);
        if !in_body {
            return Err(StorageError::Range {
                offset_bytes: offset,
                len_bytes: len,
                body_len_bytes: obj.body_len,
            });
        }
        let d = self.disk(obj.disk)?;
        if !d.online() {
            return Err(d.offline_error());
        }
        let current = {
            let st = d.st.borrow();
            st.index
                .get(obj.slot)
                .is_some_and(|s| s.state() == STATE_LIVE && s.gen() == obj.gen)
        };
        if !current {
            return Err(StorageError::Gone);
        }
        Ok(d)
    }

    /// Units of `slot`'s body (for dropping them from the RAM tier).
    fn units_of(d: &Disk, slot: u32) -> u32 {
        let len = d.st.borrow().index.slot(slot).body_len();
        len.div_ceil(u64::from(d.geo.chunk_bytes)).max(1) as u32
    }

    /// Start writing `key` to `disk`. Err if the disk is offline or unknown, the key, metadata or
    /// hinted body is too large, or the eviction policy does not admit the object.
    pub fn writer(
        &self,
        disk: DiskId,
        key: &[u8],
        meta: Bytes,
        body_len_hint: Option<u64>,
    ) -> Result<ObjectWriter, StorageError> {
        let d = self.disk(disk)?;
        if !d.online() {
            return Err(d.offline_error());
        }
        check_len("key", key.len(), KEY_BYTES_MAX)?;
        check_len("metadata", meta.len(), META_BYTES_MAX)?;
        // An object may take at most a quarter of the data area (and the index holds < 1 TiB).
        let body_len_max = (d.geo.data_blocks() * BLOCK_BYTES / 4).min(BODY_LEN_MAX);
        if let Some(hint) = body_len_hint {
            if hint > body_len_max {
                return Err(StorageError::TooLarge {
                    what: "body",
                    got_bytes: hint,
                    max_bytes: body_len_max,
                });
            }
        }
        let h = key_hash128(key);
        let now = d.now_ticks();
        if !d
            .st
            .borrow_mut()
            .policy
            .admit(h as u64, body_len_hint.unwrap_or(0), now)
        {
            return Err(StorageError::NotAdmitted);
        }
        Ok(ObjectWriter::new(d, key, h, meta, body_len_max))
    }

    /// Replace the metadata of `key` on `disk` (revalidation). Ok(false) if not present.
    pub async fn update_meta(
        &self,
        disk: DiskId,
        key: &[u8],
        meta: Bytes,
    ) -> Result<bool, StorageError> {
        check_len("metadata", meta.len(), META_BYTES_MAX)?;
        let d = self.disk(disk)?;
        if !d.online() {
            return Err(d.offline_error());
        }
        let h = key_hash128(key);
        let packed = {
            let st = d.st.borrow();
            let Some(id) = st.index.find(h as u64) else {
                return Ok(false);
            };
            st.index.is_packed_id(id)
        };
        if packed {
            // A packed object's metadata is in its record: write the object again with the new
            // metadata (the old one leaves durably first, as for any replacement).
            let Some(obj) = self.lookup(disk, key) else {
                return Ok(false);
            };
            let body = match self.read(&obj, 0, obj.body_len).await {
                Ok(b) => b,
                Err(StorageError::Gone) => return Ok(false),
                Err(e) => return Err(e),
            };
            let mut w = ObjectWriter::new(Rc::clone(&d), key, h, meta, obj.body_len);
            w.write(&body).await?;
            w.finish().await?;
            return Ok(true);
        }
        let id = {
            let mut st = d.st.borrow_mut();
            let Some(id) = st.index.find(h as u64) else {
                return Ok(false);
            };
            st.index.set_meta(id, &meta);
            id
        };
        d.commit_entries(&[id]).await?;
        Ok(true)
    }

    /// Remove `key` from `disk` durably. Ok(false) if not present.
    pub async fn remove(&self, disk: DiskId, key: &[u8]) -> Result<bool, StorageError> {
        let d = self.disk(disk)?;
        let h = key_hash128(key);
        let Some(id) = d.st.borrow().index.find(h as u64) else {
            return Ok(false);
        };
        let units = Self::units_of(&d, id);
        self.ram.borrow_mut().remove_object(disk.0, id, units);
        d.drop_slots(&[id], false).await?;
        Ok(true)
    }

    /// Remove every object whose key starts with `prefix`, on every online disk (reads each
    /// object's record to learn its key). Returns how many were removed.
    pub async fn purge_prefix(&self, prefix: &[u8]) -> Result<usize, StorageError> {
        let mut removed = 0usize;
        for d in &self.all_disks() {
            if !d.online() {
                continue;
            }
            let ids: Vec<(u32, u32)> = {
                let st = d.st.borrow();
                st.index
                    .live_ids()
                    .into_iter()
                    .map(|id| (id, st.index.slot(id).gen()))
                    .collect()
            };
            for (id, gen) in ids {
                let Some(key) = reader::record_key(d, id, gen).await? else {
                    continue;
                };
                if !key.starts_with(prefix) {
                    continue;
                }
                let still =
                    d.st.borrow()
                        .index
                        .get(id)
                        .is_some_and(|s| s.state() == STATE_LIVE && s.gen() == gen);
                if still {
                    let units = Self::units_of(d, id);
                    self.ram.borrow_mut().remove_object(d.id.0, id, units);
                    d.drop_slots(&[id], false).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Take a disk offline or bring it back (written to its superblock). Bringing it back resets
    /// its error count.
    pub async fn set_online(&self, disk: DiskId, online: bool) -> Result<(), StorageError> {
        let d = self.disk(disk)?;
        d.write_superblock(!online).await?;
        {
            let mut st = d.st.borrow_mut();
            st.online = online;
            if online {
                st.errors = 0;
            }
        }
        if !online {
            self.ram.borrow_mut().remove_disk(disk.0);
        }
        Ok(())
    }

    /// Make everything written durable (graceful shutdown). Commits are already synchronous; this
    /// syncs each online disk once more.
    /// Read bandwidth of the online disks together, bits/s, measured with random 1 MiB
    /// O_DIRECT reads over each disk's data area, `depth` in flight, until `reads_max` reads or
    /// `budget` per disk: the start-up estimate of the disk's share of brpu (refined later by
    /// observed reads). 0 when nothing could be read.
    pub async fn probe_read_bps(
        &self,
        depth: usize,
        reads_max: usize,
        budget: std::time::Duration,
    ) -> u64 {
        const SPAN_BLOCKS: u64 = (1 << 20) / BLOCK_BYTES;
        let mut total_bps = 0.0f64;
        for d in &self.all_disks() {
            if !d.online() {
                continue;
            }
            let lo = d.geo.data_start_block;
            let hi = d.geo.total_blocks.saturating_sub(SPAN_BLOCKS);
            if hi <= lo {
                continue;
            }
            let started = std::time::Instant::now();
            let issued = Rc::new(std::cell::Cell::new(0usize));
            let mut tasks = Vec::new();
            for t in 0..depth.max(1) {
                let (d, issued) = (Rc::clone(d), Rc::clone(&issued));
                // SplitMix64 over a per-task seed: a spread of offsets, nothing more.
                let mut state = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ d.id.0 as u64;
                tasks.push(monoio::spawn(async move {
                    let mut bytes = 0u64;
                    let mut buf =
                        crate::slab::AlignedBuf::for_read((SPAN_BLOCKS * BLOCK_BYTES) as usize);
                    while issued.get() < reads_max && started.elapsed() < budget {
                        issued.set(issued.get() + 1);
                        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        let mut z = state;
                        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                        let block = lo + (z ^ (z >> 31)) % (hi - lo);
                        let (res, b) = d.file.read_blocks(buf, block).await;
                        buf = b;
                        if res.is_err() {
                            break;
                        }
                        bytes += SPAN_BLOCKS * BLOCK_BYTES;
                    }
                    bytes
                }));
            }
            let mut bytes = 0u64;
            for t in tasks {
                bytes += t.await;
            }
            let secs = started.elapsed().as_secs_f64();
            if bytes > 0 && secs > 0.0 {
                total_bps += bytes as f64 * 8.0 / secs;
            }
        }
        total_bps as u64
    }

    pub async fn flush(&self) -> Result<(), StorageError> {
        for d in &self.all_disks() {
            if d.online() {
                d.durable().await?;
            }
        }
        Ok(())
    }

    /// Counters of this shard's disk ring (every slab read, write and sync it completed).
    pub fn ring_stats(&self) -> crate::uring::RingStats {
        self.ring.stats()
    }

    /// Per-disk and RAM-tier figures.
    pub fn stats(&self) -> StoreStats {
        let disks = self
            .disks
            .borrow()
            .iter()
            .map(|d| {
                let st = d.st.borrow();
                let objects = st.index.live() as u64;
                let free_bytes = st.free.free_blocks() * BLOCK_BYTES;
                let (read_bytes, read_ops, read_busy_ns) = d.reads.totals();
                DiskStats {
                    read_bytes,
                    read_ops,
                    read_busy_ns,
                    id: d.id,
                    path: d.path.clone(),
                    online: st.online,
                    size_bytes: d.geo.size_bytes,
                    used_bytes: d.geo.total_blocks * BLOCK_BYTES - free_bytes,
                    live_bytes: st.live_bytes,
                    objects,
                    evictions: st.evictions,
                    errors: st.errors,
                    reads: st.reads,
                    writes: st.writes,
                    index_bytes_per_object: st.index.fixed_bytes() as f64 / objects.max(1) as f64,
                    meta_bytes: st.index.meta_bytes() as u64,
                    policy_bytes_per_object: st.policy.bytes_per_object() as u64,
                    quarantined_bytes: st.quarantined_blocks * BLOCK_BYTES,
                    fragmented_objects: st.index.fragmented() as u64,
                    packs: st.packs.by_entry.len() as u64,
                    packed_objects: st.packs.members_alive,
                }
            })
            .collect();
        let ram = self.ram.borrow();
        StoreStats {
            disks,
            ram_tier: RamTierStats {
                bytes: ram.bytes(),
                capacity_bytes: ram.capacity_bytes(),
                hits: ram.hits,
                misses: ram.misses,
                declined: ram.declined,
            },
        }
    }
}

/// A piece of a body as [`Store::read_part`] hands it out.
pub enum BodyPart {
    /// Pages of the RAM tier's arena (splice them; they never change while held).
    Span(RamSpan),
    /// Bytes (a RAM-tier heap body, or a disk buffer).
    Bytes(Bytes),
}

impl BodyPart {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            BodyPart::Span(s) => s.len(),
            BodyPart::Bytes(b) => b.len() as u64,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn part_of(held: &Held, at: u64, len: u64, want_span: bool) -> BodyPart {
    match held.span(at, len) {
        Some(span) if want_span => BodyPart::Span(span),
        _ => BodyPart::Bytes(held.bytes(at, len)),
    }
}

/// A body read from the disk, counted for the disk's read bandwidth (bytes, reads, busy time).
async fn timed_read(
    d: &Rc<Disk>,
    obj: &ObjectInfo,
    offset: u64,
    len: u64,
) -> Result<Bytes, StorageError> {
    let timing = d.reads.start();
    let body = reader::read_range(d, obj, offset, len).await?;
    timing.done(body.len() as u64);
    Ok(body)
}

fn check_len(what: &'static str, got: usize, max: usize) -> Result<(), StorageError> {
    if got > max {
        return Err(StorageError::TooLarge {
            what,
            got_bytes: got as u64,
            max_bytes: max as u64,
        });
    }
    Ok(())
}
