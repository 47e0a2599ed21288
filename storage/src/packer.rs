//! Small objects into packs (format in `layout.rs`, RAM state in `pack.rs`): a writer appends its
//! packed record to the disk's open pack (opening one when there is none, sealing the full one),
//! then waits for a group commit to cover it. One flush writes every record appended since the
//! last one (from the last partial block on), then the pack's directory entry with the new member
//! count, and syncs once: one fdatasync for all the objects appended meanwhile, however many
//! (records are crc-checked and carry their member index, so an entry that reached the disk
//! before its records only costs those uncommitted members at recovery). Writers that arrive while a flush runs are carried by the next one.
//!
//! Sealing cuts the pack's extent to the blocks it uses; the cut-off tail returns to the
//! allocator once an entry with the shorter extent is durable. A sealed pack whose members are
//! all gone is freed (`Disk::reap_pack`): entry zeroed durably, then its blocks returned.

use crate::disk::Disk;
use crate::error::StorageError;
use crate::layout::{
    blocks_for, encode_packed, packed_offset, packed_record_len, BLOCK_BYTES, PACK_BLOCKS,
    PACK_MEMBERS_MAX,
};
use crate::pack::{Member, Pack};
use crate::slab::AlignedBuf;
use monoio::buf::IoBuf;

/// A record of the object being packed.
pub(crate) struct PackedObject<'a> {
    pub slot: u32,
    pub gen: u32,
    pub key_hash128: u128,
    pub key: &'a [u8],
    pub meta: &'a [u8],
    pub body: &'a [u8],
}

enum Step {
    Done,
    Wait,
    Flush,
}

impl Disk {
    /// Append `obj`'s record to the open pack; returns (pack entry, byte offset). The record is
    /// not committed until [`Disk::pack_commit`] returns.
    pub(crate) async fn pack_append(
        &self,
        obj: &PackedObject<'_>,
    ) -> Result<(u32, u32), StorageError> {
        let len = packed_record_len(obj.key.len(), obj.meta.len(), obj.body.len());
        loop {
            let open = {
                let st = self.st.borrow();
                if !st.online {
                    return Err(self.offline_error());
                }
                st.packs.open
            };
            let Some(entry) = open else {
                self.open_pack(len).await?;
                continue;
            };
            let sealed = {
                let mut st = self.st.borrow_mut();
                let p = st.packs.get_mut(entry).expect("open pack in the table");
                let at = packed_offset(p.used as usize, len);
                let room = p.extent.blocks as usize * BLOCK_BYTES as usize;
                if at + len <= room && p.members.len() < PACK_MEMBERS_MAX && !p.failed {
                    let buf = p.buf.as_mut().expect("open pack has its buffer");
                    encode_packed(
                        &mut buf.as_mut_slice()[at..at + len],
                        p.seq,
                        p.members.len() as u32,
                        obj.gen,
                        obj.key_hash128,
                        obj.key,
                        obj.meta,
                        obj.body,
                    );
                    p.members.push(Member {
                        offset: at as u32,
                        slot: obj.slot,
                    });
                    p.alive += 1;
                    p.used = (at + len) as u32;
                    st.packs.members_alive += 1;
                    return Ok((entry, at as u32));
                }
                // Full: seal it, keeping only the blocks it uses.
                p.sealed = true;
                p.cut_to_used();
                st.packs.open = None;
                entry
            };
            if let Err(e) = self.settle_pack(sealed).await {
                tracing::warn!(path = %self.path.display(), error = %e, "sealing a pack");
            }
        }
    }

    /// Open a pack big enough for a record of `len` bytes (one pack opens at a time).
    async fn open_pack(&self, len: usize) -> Result<(), StorageError> {
        if self.st.borrow().packs.opening {
            self.waiters.until(|| !self.st.borrow().packs.opening).await;
            return Ok(());
        }
        self.st.borrow_mut().packs.opening = true;
        let res = self.open_pack_inner(len).await;
        self.st.borrow_mut().packs.opening = false;
        self.waiters.wake_all();
        res
    }

    async fn open_pack_inner(&self, len: usize) -> Result<(), StorageError> {
        let entry = self.alloc_slot().await?;
        let need = (blocks_for(len as u64) as u32).max(1);
        // A whole pack if a run that long is free (or can be made free), else what is there.
        let ext = match self.alloc(PACK_BLOCKS, None, false).await {
            Ok(e) if e.blocks >= need => Ok(e),
            Ok(e) => {
                self.st.borrow_mut().free.free(e);
                self.alloc(need, None, true).await
            }
            Err(e) => Err(e),
        };
        let ext = match ext {
            Ok(e) => e,
            Err(e) => {
                self.st.borrow_mut().index.release(entry);
                return Err(e);
            }
        };
        let mut st = self.st.borrow_mut();
        let seq = st.packs.next_seq;
        st.packs.next_seq += 1;
        st.packs.by_entry.insert(
            entry,
            Pack {
                seq,
                extent: ext,
                tail: None,
                members: Vec::new(),
                alive: 0,
                used: 0,
                durable_members: 0,
                durable_bytes: 0,
                committed_members: 0,
                buf: Some(AlignedBuf::new(ext.blocks as usize * BLOCK_BYTES as usize)),
                sealed: false,
                flushing: false,
                freeing: false,
                failed: false,
            },
        );
        st.packs.open = Some(entry);
        Ok(())
    }

    /// Wait until the member at `offset` of pack `entry` is committed (flushing when no flush
    /// is running: the group commit).
    pub(crate) async fn pack_commit(&self, entry: u32, offset: u32) -> Result<(), StorageError> {
        loop {
            let step = {
                let st = self.st.borrow();
                let p = st.packs.get(entry).ok_or(StorageError::WriterCancelled)?;
                let i = p.member_at(offset).ok_or(StorageError::WriterCancelled)?;
                if (i as u32) < p.committed_members {
                    Step::Done
                } else if p.failed || !st.online {
                    return Err(self.pack_failed(entry));
                } else if p.flushing {
                    Step::Wait
                } else {
                    Step::Flush
                }
            };
            match step {
                Step::Done => return Ok(()),
                // Until this member is committed or no flush runs. (Waiting for the flush to end
                // alone would starve: a writer that just finished can start the next flush before
                // the woken waiters look, and they would wait for that one too, and so on.)
                Step::Wait => {
                    self.waiters
                        .until(|| {
                            self.st.borrow().packs.get(entry).is_none_or(|p| {
                                !p.flushing
                                    || p.member_at(offset)
                                        .is_none_or(|i| (i as u32) < p.committed_members)
                            })
                        })
                        .await
                }
                Step::Flush => self.flush_pack(entry).await?,
            }
        }
    }

    fn pack_failed(&self, entry: u32) -> StorageError {
        if !self.online() {
            return self.offline_error();
        }
        let block = self
            .st
            .borrow()
            .packs
            .get(entry)
            .map_or(0, |p| p.extent.start);
        StorageError::Io {
            op: "pack write",
            path: self.path.clone(),
            offset_bytes: u64::from(block) * BLOCK_BYTES,
            source: std::io::Error::other("an earlier write of this pack failed"),
        }
    }

    /// One group commit of pack `entry`: records appended since the last flush, sync, entry,
    /// sync. The caller checked that no flush is running.
    async fn flush_pack(&self, entry: u32) -> Result<(), StorageError> {
        let (write, members, bytes, sealed) = {
            let mut st = self.st.borrow_mut();
            let p = st
                .packs
                .get_mut(entry)
                .ok_or(StorageError::WriterCancelled)?;
            debug_assert!(!p.flushing);
            p.flushing = true;
            let from = p.durable_bytes / BLOCK_BYTES as u32;
            let to = blocks_for(u64::from(p.used)) as u32;
            let write = match (&p.buf, to > from) {
                (Some(buf), true) => {
                    let lo = from as usize * BLOCK_BYTES as usize;
                    let hi = to as usize * BLOCK_BYTES as usize;
                    let mut copy = AlignedBuf::for_read(hi - lo);
                    copy.as_mut_slice().copy_from_slice(&buf.as_slice()[lo..hi]);
                    Some((copy, u64::from(p.extent.start + from)))
                }
                _ => None,
            };
            (write, p.members.len() as u32, p.used, p.sealed)
        };
        let mut res = Ok(());
        if let Some((copy, block)) = write {
            // No sync between the records and the entry: `commit_entries` syncs once for both.
            // If power fails after the entry reached the device but before the records did,
            // recovery finds records that fail their crc (or carry another member index) and
            // gives those members their dead bit; their writers never got Ok (that waits for
            // the sync), so nothing reported committed is lost.
            let (r, _) = self.file.write_blocks(copy.slice(..), block).await;
            res = r;
        }
        if res.is_ok() {
            {
                let mut st = self.st.borrow_mut();
                if let Some(p) = st.packs.get_mut(entry) {
                    p.durable_members = members;
                    p.durable_bytes = bytes;
                }
            }
            res = self.commit_entries(&[entry]).await;
        }
        {
            let mut st = self.st.borrow_mut();
            let mut tail = None;
            if let Some(p) = st.packs.get_mut(entry) {
                p.flushing = false;
                if res.is_ok() {
                    p.committed_members = members;
                    if sealed && members as usize == p.members.len() {
                        p.buf = None;
                        if !p.freeing {
                            tail = p.tail.take();
                        }
                    }
                } else {
                    p.failed = true;
                }
            }
            if let Some(t) = tail {
                st.free.free(t);
            }
        }
        self.waiters.wake_all();
        match res {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fault(e).await),
        }
    }

    /// After sealing pack `entry`: flush what is left (its shorter extent included, which
    /// returns the tail), and free it if nothing in it is alive any more.
    pub(crate) async fn settle_pack(&self, entry: u32) -> Result<(), StorageError> {
        loop {
            let step = {
                let st = self.st.borrow();
                let Some(p) = st.packs.get(entry) else {
                    return Ok(());
                };
                if p.failed {
                    return Err(self.pack_failed(entry));
                }
                if p.buf.is_none() && (p.tail.is_none() || p.freeing) {
                    Step::Done
                } else if p.flushing {
                    Step::Wait
                } else {
                    Step::Flush
                }
            };
            match step {
                Step::Done => break,
                Step::Wait => self.flush_ended(entry).await,
                Step::Flush => self.flush_pack(entry).await?,
            }
        }
        self.reap_pack(entry).await
    }

    /// Free pack `entry` if it is sealed and all its members are gone: zero its entry durably,
    /// then return its blocks.
    pub(crate) async fn reap_pack(&self, entry: u32) -> Result<(), StorageError> {
        {
            let mut st = self.st.borrow_mut();
            let Some(p) = st.packs.get_mut(entry) else {
                return Ok(());
            };
            if !p.sealed || p.alive != 0 || p.freeing {
                return Ok(());
            }
            p.freeing = true;
            let blocks = p.blocks();
            st.pending_free_blocks += blocks;
        }
        self.flush_ended(entry).await;
        let res = self.commit_entries(&[entry]).await;
        self.finish_freeing_packs(&[entry], res.is_ok());
        res
    }

    /// Resolves once pack `entry` has no flush running (or is gone).
    async fn flush_ended(&self, entry: u32) {
        self.waiters
            .until(|| {
                self.st
                    .borrow()
                    .packs
                    .get(entry)
                    .is_none_or(|p| !p.flushing)
            })
            .await
    }
}
