//! Packs of small objects, in RAM: per disk, the packs it holds (their extents, members and dead
//! members), which one is open for appends, and the open pack's bytes. The disk format is in
//! `layout.rs`; the I/O (append, group commit, sealing) in `packer.rs`; eviction and removal in
//! `disk.rs`, which frees a pack once it is sealed and all its members are gone.
//!
//! RAM: 8 bytes per member (offset and slot id) beside the index's slot, plus the open pack's
//! buffer (1 MiB) per disk and shard.

use crate::layout::{blocks_for, encode_pack_members, DirEntry, Extent, ENTRY_FLAG_PACK};
use crate::slab::AlignedBuf;
use std::collections::HashMap;

/// A member's slot id once the member is dead (removed, evicted, replaced or abandoned).
pub(crate) const DEAD: u32 = u32::MAX;

/// One object of a pack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    /// Byte offset of its record in the pack.
    pub offset: u32,
    /// Its index slot, or DEAD.
    pub slot: u32,
}

/// One pack.
pub(crate) struct Pack {
    /// Sequence number (newest pack highest), stored in the entry's key-hash field.
    pub seq: u64,
    /// The pack's blocks (cut to what it uses when sealed).
    pub extent: Extent,
    /// Blocks cut off at sealing; returned once an entry with the shorter extent is durable.
    pub tail: Option<Extent>,
    /// Members in offset order.
    pub members: Vec<Member>,
    /// Members not dead.
    pub alive: u32,
    /// Bytes of records appended (the next record's offset, before alignment).
    pub used: u32,
    /// Records known to be on the disk (what an entry written now may count).
    pub durable_members: u32,
    /// Bytes of those records.
    pub durable_bytes: u32,
    /// Members covered by a durable entry: committed.
    pub committed_members: u32,
    /// The pack's bytes while it takes appends (released when sealed and flushed).
    pub buf: Option<AlignedBuf>,
    /// No more appends.
    pub sealed: bool,
    /// A flush is running.
    pub flushing: bool,
    /// Sealed and every member gone: its blocks are pending free.
    pub freeing: bool,
    /// A flush failed: its unflushed members cannot commit.
    pub failed: bool,
}

impl Pack {
    /// The directory entry this pack should have on disk now (generation of its entry slot).
    pub fn entry(&self, gen: u32) -> DirEntry {
        let mut meta = Vec::new();
        encode_pack_members(
            self.members[..self.durable_members as usize]
                .iter()
                .map(|m| m.slot == DEAD),
            &mut meta,
        );
        DirEntry {
            gen,
            flags: ENTRY_FLAG_PACK,
            key_hash: self.seq,
            body_len: u64::from(self.durable_bytes),
            first_block: self.extent.start,
            data_blocks: self.extent.blocks,
            rec_blocks: 0,
            ticks: 0,
            meta,
        }
    }

    /// Index of the member at `offset`.
    pub fn member_at(&self, offset: u32) -> Option<usize> {
        self.members
            .binary_search_by_key(&offset, |m| m.offset)
            .ok()
    }

    /// Mark the member at `offset` dead; true if it was alive.
    pub fn kill(&mut self, offset: u32) -> bool {
        match self.member_at(offset) {
            Some(i) if self.members[i].slot != DEAD => {
                self.members[i].slot = DEAD;
                self.alive -= 1;
                true
            }
            _ => false,
        }
    }

    /// Cut the extent to the blocks the records use; the rest becomes the tail (returned once an
    /// entry with the shorter extent is durable). True if anything was cut.
    pub fn cut_to_used(&mut self) -> bool {
        let used_blocks = (blocks_for(u64::from(self.used)) as u32).max(1);
        if used_blocks >= self.extent.blocks {
            return false;
        }
        self.tail = Some(Extent {
            start: self.extent.start + used_blocks,
            blocks: self.extent.blocks - used_blocks,
        });
        self.extent.blocks = used_blocks;
        true
    }

    /// Blocks this pack holds (its extent and an unreturned tail).
    pub fn blocks(&self) -> u64 {
        u64::from(self.extent.blocks) + self.tail.map_or(0, |t| u64::from(t.blocks))
    }
}

/// The packs of one disk, by directory entry id.
#[derive(Default)]
pub(crate) struct Packs {
    pub by_entry: HashMap<u32, Pack>,
    /// The pack taking appends.
    pub open: Option<u32>,
    /// Sequence number of the next pack.
    pub next_seq: u64,
    /// Packed objects alive (committing or live).
    pub members_alive: u64,
    /// A pack is being opened (others wait for it).
    pub opening: bool,
}

impl Packs {
    pub fn get(&self, entry: u32) -> Option<&Pack> {
        self.by_entry.get(&entry)
    }
    pub fn get_mut(&mut self, entry: u32) -> Option<&mut Pack> {
        self.by_entry.get_mut(&entry)
    }
}
