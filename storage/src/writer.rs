//! Streaming write of one object: body bytes fill a chunk buffer; each full chunk is written
//! (O_DIRECT) to extents from the allocator with its crc32c; `finish` writes the record (key,
//! extents, chunk crcs, or the whole body inline for objects up to one chunk), syncs, and only
//! then commits the directory entry and publishes the object to lookup. An object whose packed
//! record is at most 64 KiB goes into the disk's open pack instead and is committed by the
//! pack's next group commit (`packer.rs`). Dropping an unfinished writer frees its blocks.

use crate::disk::Disk;
use crate::error::StorageError;
use crate::index::Location;
use crate::layout::{
    blocks_for, packed_record_len, Extent, Record, BLOCK_BYTES, PACK_RECORD_BYTES_MAX,
};
use crate::packer::PackedObject;
use crate::slab::AlignedBuf;
use crate::{DiskId, ObjectInfo};
use bytes::Bytes;
use monoio::buf::IoBuf;
use std::rc::Rc;

/// Largest number of extents one object may be spread over.
const EXTENTS_PER_OBJECT_MAX: usize = 65_536;

/// What a writer has put on the disk so far, shared with readers of the object while it is being
/// written (read-while-write through storage): whole chunks already written (their extents and
/// crcs), and whether the writer is still at it, committed the object, or gave up (its blocks
/// may then be reused: nothing may be read through it any more).
pub struct WriteProgress {
    pub(crate) disk: DiskId,
    pub(crate) chunk_bytes: u32,
    pub(crate) inner: std::cell::RefCell<ProgressInner>,
}

pub(crate) struct ProgressInner {
    pub(crate) data: Vec<Extent>,
    pub(crate) chunk_crcs: Vec<u32>,
    /// Body bytes in whole written chunks (readable through the progress).
    pub(crate) written_bytes: u64,
    pub(crate) state: ProgressState,
    /// The stored object, once committed.
    pub(crate) committed: Option<ObjectInfo>,
    /// The chunk last read back through this progress (index, whole chunk): viewers behind a
    /// fill's window are usually at about the same place, and share it instead of each reading
    /// (and holding) a copy. Dropped at commit, when reads go to the stored object.
    pub(crate) last_read: Option<(u64, bytes::Bytes)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Writing,
    /// Committed as (slot, gen): readable while that slot still holds that generation.
    Committed(u32, u32),
    Abandoned,
}

impl WriteProgress {
    /// Body bytes that can be read through this progress now (whole chunks written so far; all
    /// of the body once committed).
    pub fn readable_bytes(&self) -> u64 {
        let i = self.inner.borrow();
        match i.state {
            ProgressState::Abandoned => 0,
            _ => i.written_bytes,
        }
    }

    /// The stored object, once the writer has committed it.
    pub fn committed(&self) -> Option<ObjectInfo> {
        self.inner.borrow().committed.clone()
    }

    /// False once the writer gave up (nothing may be read through it any more).
    pub fn alive(&self) -> bool {
        self.inner.borrow().state != ProgressState::Abandoned
    }
}

/// Writes one object; see the module doc.
pub struct ObjectWriter {
    progress: Rc<WriteProgress>,
    disk: Rc<Disk>,
    key: Vec<u8>,
    key_hash128: u128,
    meta: Bytes,
    buf: Option<AlignedBuf>,
    buf_len: usize,
    chunk_bytes: u32,
    body_len: u64,
    body_len_max: u64,
    data: Vec<Extent>,
    chunk_crcs: Vec<u32>,
    slot: Option<u32>,
    record: Option<Extent>,
    /// (pack entry, offset) once the record is appended to a pack.
    packed: Option<(u32, u32)>,
    io_in_flight: bool,
    entry_written: bool,
    done: bool,
}

impl ObjectWriter {
    pub(crate) fn new(
        disk: Rc<Disk>,
        key: &[u8],
        key_hash128: u128,
        meta: Bytes,
        body_len_max: u64,
    ) -> ObjectWriter {
        let chunk_bytes = disk.geo.chunk_bytes;
        ObjectWriter {
            progress: Rc::new(WriteProgress {
                disk: disk.id,
                chunk_bytes,
                inner: std::cell::RefCell::new(ProgressInner {
                    data: Vec::new(),
                    chunk_crcs: Vec::new(),
                    written_bytes: 0,
                    state: ProgressState::Writing,
                    committed: None,
                    last_read: None,
                }),
            }),
            disk,
            key: key.to_vec(),
            key_hash128,
            meta,
            // Not zeroed: only written bytes are read back, and flush_chunk zeroes the padding.
            buf: Some(AlignedBuf::for_read(chunk_bytes as usize)),
            buf_len: 0,
            chunk_bytes,
            body_len: 0,
            body_len_max,
            data: Vec::new(),
            chunk_crcs: Vec::new(),
            slot: None,
            record: None,
            packed: None,
            io_in_flight: false,
            entry_written: false,
            done: false,
        }
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// The disk being written.
    pub fn disk(&self) -> DiskId {
        self.disk.id
    }

    /// The shared view of what is written so far (see [`WriteProgress`]).
    pub fn progress(&self) -> Rc<WriteProgress> {
        Rc::clone(&self.progress)
    }

    /// Append body bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        if self.buf.is_none() {
            return Err(StorageError::WriterCancelled);
        }
        if self.body_len + data.len() as u64 > self.body_len_max {
            return Err(StorageError::TooLarge {
                what: "body",
                got_bytes: self.body_len + data.len() as u64,
                max_bytes: self.body_len_max,
            });
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf_len == self.chunk_bytes as usize {
                self.flush_chunk().await?;
            }
            let n = rest.len().min(self.chunk_bytes as usize - self.buf_len);
            let buf = self
                .buf
                .as_mut()
                .expect("chunk buffer present between I/Os");
            buf.as_mut_slice()[self.buf_len..self.buf_len + n].copy_from_slice(&rest[..n]);
            self.buf_len += n;
            self.body_len += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    fn data_end(&self) -> Option<u32> {
        self.data.last().map(|e| e.start + e.blocks)
    }

    async fn flush_chunk(&mut self) -> Result<(), StorageError> {
        let len = self.buf_len;
        let mut buf = self.buf.take().expect("chunk buffer present between I/Os");
        let crc = crate::layout::crc(&buf.as_slice()[..len]);
        let blocks = blocks_for(len as u64) as u32;
        // Padding after the last body byte is written as zeroes, not stale buffer bytes.
        buf.as_mut_slice()[len..blocks as usize * BLOCK_BYTES as usize].fill(0);
        let mut done_blocks = 0u32;
        while done_blocks < blocks {
            let ext = match self
                .disk
                .alloc(blocks - done_blocks, self.data_end(), false)
                .await
            {
                Ok(e) => e,
                Err(e) => {
                    self.buf = Some(buf);
                    return Err(e);
                }
            };
            match self.data.last_mut() {
                Some(last) if last.start + last.blocks == ext.start => last.blocks += ext.blocks,
                _ => self.data.push(ext),
            }
            let from = done_blocks as usize * BLOCK_BYTES as usize;
            let to = from + ext.blocks as usize * BLOCK_BYTES as usize;
            self.io_in_flight = true;
            let (res, slice) = self
                .disk
                .file
                .write_blocks(buf.slice(from..to), u64::from(ext.start))
                .await;
            self.io_in_flight = false;
            buf = slice.into_inner();
            if let Err(e) = res {
                self.buf = Some(buf);
                return Err(self.disk.fault(e).await);
            }
            done_blocks += ext.blocks;
            if self.data.len() > EXTENTS_PER_OBJECT_MAX {
                self.buf = Some(buf);
                return Err(StorageError::NoSpace {
                    path: self.disk.path.clone(),
                    want_blocks: u64::from(blocks),
                });
            }
        }
        self.chunk_crcs.push(crc);
        {
            let mut p = self.progress.inner.borrow_mut();
            p.data.clone_from(&self.data);
            p.chunk_crcs.push(crc);
            p.written_bytes += len as u64;
        }
        self.buf = Some(buf);
        self.buf_len = 0;
        Ok(())
    }

    /// Write the record, sync, commit the directory entry, publish; returns the stored object.
    pub async fn finish(mut self) -> Result<ObjectInfo, StorageError> {
        if self.buf.is_none() || self.io_in_flight {
            return Err(StorageError::WriterCancelled);
        }
        let inline = self.data.is_empty() && self.body_len <= u64::from(self.chunk_bytes);
        if inline
            && packed_record_len(self.key.len(), self.meta.len(), self.body_len as usize)
                <= PACK_RECORD_BYTES_MAX
        {
            return self.finish_packed().await;
        }
        if !inline && self.buf_len > 0 {
            self.flush_chunk().await?;
        }
        let inline_len = inline.then_some(self.body_len as usize);
        let extents = if inline {
            Vec::new()
        } else {
            self.data.clone()
        };
        let rec_len = Record::encoded_len(
            self.key.len(),
            extents.len(),
            self.chunk_crcs.len(),
            inline_len,
        );
        let rec_blocks = blocks_for(rec_len as u64);
        if rec_blocks > u64::from(u16::MAX) {
            return Err(StorageError::TooLarge {
                what: "record",
                got_bytes: rec_len as u64,
                max_bytes: u64::from(u16::MAX) * BLOCK_BYTES,
            });
        }
        let id = self.disk.alloc_slot().await?;
        self.slot = Some(id);
        let gen = self.disk.st.borrow().index.slot(id).gen();
        let record = Record {
            gen,
            key_hash128: self.key_hash128,
            body_len: self.body_len,
            chunk_bytes: self.chunk_bytes,
            key: self.key.clone(),
            extents: extents.clone(),
            chunk_crcs: self.chunk_crcs.clone(),
            inline_body: inline.then(|| {
                self.buf.as_ref().expect("chunk buffer").as_slice()[..self.body_len as usize]
                    .to_vec()
            }),
        };
        let mut rec_buf = AlignedBuf::new(rec_len);
        record.encode(rec_buf.as_mut_slice());
        let rec_ext = self
            .disk
            .alloc(rec_blocks as u32, self.data_end(), true)
            .await?;
        self.record = Some(rec_ext);
        self.io_in_flight = true;
        let (res, _) = self
            .disk
            .file
            .write_blocks(rec_buf, u64::from(rec_ext.start))
            .await;
        self.io_in_flight = false;
        if let Err(e) = res {
            return Err(self.disk.fault(e).await);
        }
        if let Err(e) = self.disk.durable().await {
            return Err(self.disk.fault(e).await);
        }
        let key_hash = self.key_hash128 as u64;
        let loc = Location {
            data: extents,
            record: rec_ext,
        };
        self.disk
            .st
            .borrow_mut()
            .index
            .set_object(id, key_hash, self.body_len, &loc, &self.meta);
        // From here any directory write of this block may carry the entry.
        self.entry_written = true;
        // The old object of this key (if any) leaves the directory before the new one enters.
        self.drop_same_key(key_hash).await?;
        self.disk.commit_entries(&[id]).await?;
        self.drop_same_key(key_hash).await?;
        Ok(self.publish(id, gen))
    }

    /// `finish` of an object that goes into a pack: the old object of the key leaves, the
    /// record is appended to the open pack, and the pack's group commit makes it durable.
    async fn finish_packed(mut self) -> Result<ObjectInfo, StorageError> {
        let key_hash = self.key_hash128 as u64;
        self.drop_same_key(key_hash).await?;
        let id = self.disk.alloc_packed_slot().await?;
        self.slot = Some(id);
        let gen = self.disk.st.borrow().index.slot(id).gen();
        let body_len = self.body_len as usize;
        let (entry, offset) = {
            let buf = self.buf.as_ref().expect("chunk buffer");
            let obj = PackedObject {
                slot: id,
                gen,
                key_hash128: self.key_hash128,
                key: &self.key,
                meta: &self.meta,
                body: &buf.as_slice()[..body_len],
            };
            self.disk.pack_append(&obj).await?
        };
        self.packed = Some((entry, offset));
        self.disk.st.borrow_mut().index.set_packed(
            id,
            key_hash,
            self.body_len,
            entry,
            offset,
            &self.meta,
        );
        self.disk.pack_commit(entry, offset).await?;
        self.drop_same_key(key_hash).await?;
        Ok(self.publish(id, gen))
    }

    /// Make committed slot `id` visible to lookup and the policy.
    fn publish(&mut self, id: u32, gen: u32) -> ObjectInfo {
        let now = self.disk.now_ticks();
        {
            let mut st = self.disk.st.borrow_mut();
            st.index.publish(id);
            st.policy.insert(id, self.body_len.max(1), now);
            st.live_bytes += self.body_len;
            st.writes += 1;
        }
        self.done = true;
        let info = ObjectInfo {
            disk: self.disk.id,
            meta: self.meta.clone(),
            body_len: self.body_len,
            slot: id,
            gen,
            key_hash128: self.key_hash128,
        };
        {
            let mut p = self.progress.inner.borrow_mut();
            p.state = ProgressState::Committed(id, gen);
            p.written_bytes = self.body_len;
            p.committed = Some(info.clone());
            p.last_read = None;
        }
        info
    }

    async fn drop_same_key(&self, key_hash: u64) -> Result<(), StorageError> {
        loop {
            let old = self.disk.st.borrow().index.find(key_hash);
            match old {
                Some(old) => self.disk.drop_slots(&[old], false).await?,
                None => return Ok(()),
            }
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        {
            let mut p = self.progress.inner.borrow_mut();
            p.state = ProgressState::Abandoned;
            p.last_read = None;
        }
        let mut st = self.disk.st.borrow_mut();
        if let Some((entry, offset)) = self.packed {
            // The record is in a pack and a flush may commit (or have committed) it: the member
            // dies in RAM (its dead bit goes out with the pack's next entry write). A sealed
            // pack left without members cannot be freed from here: it stays allocated until a
            // restart, counted as quarantined.
            let st = &mut *st;
            let mut orphan = false;
            let mut killed = false;
            if let Some(p) = st.packs.by_entry.get_mut(&entry) {
                killed = p.kill(offset);
                orphan = p.sealed && p.alive == 0 && !p.freeing;
            }
            if killed {
                st.packs.members_alive -= 1;
            }
            if orphan {
                if let Some(p) = st.packs.by_entry.remove(&entry) {
                    st.quarantined_blocks += p.blocks();
                }
            }
            if let Some(id) = self.slot {
                st.index.release(id);
            }
            return;
        }
        let blocks: u64 = self
            .data
            .iter()
            .chain(self.record.iter())
            .map(|e| u64::from(e.blocks))
            .sum();
        if self.entry_written || self.io_in_flight {
            // An entry or an in-flight write may still reference these blocks: keep them out of
            // the free map until the next restart rebuilds it from the directory.
            st.quarantined_blocks += blocks;
            if !self.entry_written {
                if let Some(id) = self.slot {
                    st.index.release(id);
                }
            }
            return;
        }
        for e in self.data.iter().chain(self.record.iter()) {
            st.free.free(*e);
        }
        if let Some(id) = self.slot {
            st.index.release(id);
        }
        drop(st);
        self.disk.waiters.wake_all();
    }
}
