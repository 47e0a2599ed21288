//! The compact per-disk RAM index: two dense slot arenas (24 bytes per slot) — ids below
//! `dir_entries` are directory entry numbers (objects with records of their own, and packs),
//! ids from `dir_entries` on are packed objects (no entry of their own: they live in a pack,
//! `layout.rs`) — an open-addressing hash table of `u32` entries (slot id +
//! key-hash tag bits: 3 for a 16 TiB disk, 12 for a 32 GB one) keyed by the 64-bit key hash, and a
//! metadata arena. Keys are not kept in
//! RAM: the full key is in the on-disk record and its 128-bit hash is checked on read.
//!
//! ```text
//! Slot (24 B): key_hash u64 | word u64 | block u32 | meta_off u32
//!   word  = body_len (40 bits) | rec (3) | state (2) | gen (19)
//!   rec   = record blocks beyond the minimum a record of this body length needs (0..=5), or 7:
//!           fragmented (block = fragment-table index; the table holds data extents + record),
//!           or 6: packed (body_len 20 bits | offset in the pack / 8, 20 bits; block = the
//!           pack's directory entry)
//!   block = contiguous: first block (data blocks, derived from body_len and chunk_bytes, then
//!           the record); free slot: next free slot id
//! table: n u32 entries (n any size, home = fastrange(key_hash, n)), linear probing,
//!        backward-shift deletion (no tombstones); load kept in [0.56, 0.8], 2/3 after a rebuild
//! bound: 24 B x 33/32 (arena growth step) + 4 B / 0.56 = 31.9 B per slot id (≥ 2,048 slots),
//!        so per object while every slot id holds one (a full cache); each object in the
//!        fragment table adds 16 B + 8 B per extent
//! ```
//!
//! Generations wrap after 2^19 reuses of one slot; a reader holding an `ObjectInfo` that old is
//! still stopped by the record's key-hash and body-length check unless the slot holds the same
//! key again, at the same length.
//!
//! Capacity limits: ≤ 2^29 - 1 slots (directory and packed ids together), bodies
//! < 1 TiB (40 bits), records ≤ 65,535 blocks (the directory entry's u16), metadata arena
//! ≤ 32 GiB. Objects whose data is not one run right before the record (or whose record is
//! larger than expected) keep their extents in the fragment table instead.

use crate::layout::{blocks_for, DirEntry, Extent, Record, ENTRY_FLAG_FRAG};

/// Slot is unused.
pub const STATE_FREE: u32 = 0;
/// Record written, directory entry being written; not yet visible to lookup.
pub const STATE_COMMITTING: u32 = 1;
/// Visible to lookup.
pub const STATE_LIVE: u32 = 2;
/// Being removed: invisible, entry being zeroed, blocks not yet reusable.
pub const STATE_FREEING: u32 = 3;

/// Generation bits kept per slot (directory entries and records carry the same masked value).
pub const GEN_BITS: u32 = 19;
/// Mask of a slot generation.
pub const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
/// Largest body length a slot holds (40 bits: 1 TiB - 1).
pub const BODY_LEN_MAX: u64 = (1 << BODY_BITS) - 1;
/// Slots per index at most: slot ids take the low 29 bits of a table entry and the all-ones id
/// marks an empty entry, so ids are below 2^29 - 1.
pub const SLOTS_MAX: u32 = (1 << ID_BITS) - 1;

const BODY_BITS: u32 = 40;
const REC_SHIFT: u32 = BODY_BITS;
const REC_FRAG: u64 = 7;
const REC_PACKED: u64 = 6;
const REC_EXTRA_MAX: u32 = 5;
/// Bits of a packed slot's body length (the rest of the 40 holds its offset in the pack / 8).
const PACKED_LEN_BITS: u32 = 20;
const PACKED_LEN_MASK: u64 = (1 << PACKED_LEN_BITS) - 1;
const STATE_SHIFT: u32 = BODY_BITS + 3;
const GEN_SHIFT: u32 = STATE_SHIFT + 2;
const _: () = assert!(GEN_SHIFT + GEN_BITS == 64);

/// Slot-id bits of a table entry at most (the rest of the entry is key-hash tag bits).
const ID_BITS: u32 = 29;
const EMPTY: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX;
const NO_META: u32 = u32::MAX;
/// Table entries at least.
const TABLE_MIN: usize = 16;
/// Metadata records start on this alignment; `meta_off` counts units of it, so the arena can
/// grow to 32 GiB (compaction keeps garbage below the live bytes).
const META_ALIGN_BYTES: usize = 8;

/// One object's RAM state: exactly 24 bytes (layout in the module doc).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// 64-bit key hash (hash table key).
    pub key_hash: u64,
    word: u64,
    block: u32,
    meta_off: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 24);

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            key_hash: 0,
            word: 0,
            block: NO_SLOT,
            meta_off: NO_META,
        }
    }
}

impl Slot {
    /// Body length.
    pub fn body_len(&self) -> u64 {
        if self.rec() == REC_PACKED {
            self.word & PACKED_LEN_MASK
        } else {
            self.word & BODY_LEN_MAX
        }
    }
    /// Generation (changes whenever the slot gets a new object).
    pub fn gen(&self) -> u32 {
        (self.word >> GEN_SHIFT) as u32
    }
    /// STATE_*.
    pub fn state(&self) -> u32 {
        ((self.word >> STATE_SHIFT) & 3) as u32
    }
    fn set_state(&mut self, state: u32) {
        self.word = (self.word & !(3 << STATE_SHIFT)) | (u64::from(state) << STATE_SHIFT);
    }
    fn rec(&self) -> u64 {
        (self.word >> REC_SHIFT) & 7
    }
    /// True if the extents are kept in the fragment table.
    pub fn is_frag(&self) -> bool {
        self.rec() == REC_FRAG
    }
    fn pack(gen: u32, state: u32, rec: u64, body_len: u64) -> u64 {
        (u64::from(gen & GEN_MASK) << GEN_SHIFT)
            | (u64::from(state) << STATE_SHIFT)
            | (rec << REC_SHIFT)
            | body_len
    }
}

/// Where an object is on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Data extents in body order (empty for inline bodies).
    pub data: Vec<Extent>,
    /// Record extent.
    pub record: Extent,
}

/// Per-disk index.
pub struct Index {
    /// Ids below `dir_entries`.
    slots: Vec<Slot>,
    /// Ids from `dir_entries` on (packed objects).
    packed: Vec<Slot>,
    /// Head of the free-slot list, threaded through the free slots' `block` (NO_SLOT: empty).
    free_head: u32,
    /// The same for packed ids.
    packed_free_head: u32,
    dir_entries: u32,
    packed_capacity: u32,
    chunk_bytes: u32,
    /// Slot-id bits of a table entry; the others are the tag (`key_hash as u32 & !id_mask`).
    id_mask: u32,
    table: Vec<u32>,
    live: usize,
    meta: Vec<u8>,
    meta_garbage_bytes: usize,
    /// Fragmented objects: data extents, then the record extent.
    frags: Vec<Box<[Extent]>>,
    free_frags: Vec<u32>,
}

/// Table slot of `key_hash` in a table of `n` entries (fastrange: uses the high hash bits).
fn home(key_hash: u64, n: usize) -> usize {
    ((u128::from(key_hash) * n as u128) >> 64) as usize
}

/// Slot-id mask of the table entries of an index of `capacity_slots` (at most SLOTS_MAX) slots:
/// the fewest bits whose all-ones value is not an id, so EMPTY (all ones) is never an entry. The
/// remaining high bits (3 for a 16 TiB disk, 12 for a 32 GB one) hold a key-hash tag, so probes
/// rarely touch a slot of another key.
fn id_mask_for(capacity_slots: u32) -> u32 {
    let bits = 32 - capacity_slots.leading_zeros();
    debug_assert!(bits <= ID_BITS);
    ((1u64 << bits) - 1) as u32
}

impl Index {
    /// An empty index with room for `dir_entries` objects with directory entries (clamped to
    /// SLOTS_MAX) and `packed_capacity` packed ones (clamped so all ids stay below SLOTS_MAX) of a
    /// disk whose large bodies are written in `chunk_bytes` chunks.
    pub fn new(dir_entries: u32, packed_capacity: u32, chunk_bytes: u32) -> Index {
        let dir_entries = dir_entries.min(SLOTS_MAX);
        let packed_capacity = packed_capacity.min(SLOTS_MAX - dir_entries);
        let capacity_slots = dir_entries + packed_capacity;
        Index {
            slots: Vec::new(),
            packed: Vec::new(),
            free_head: NO_SLOT,
            packed_free_head: NO_SLOT,
            dir_entries,
            packed_capacity,
            chunk_bytes: chunk_bytes.max(1),
            id_mask: id_mask_for(capacity_slots),
            table: vec![EMPTY; TABLE_MIN],
            live: 0,
            meta: Vec::new(),
            meta_garbage_bytes: 0,
            frags: Vec::new(),
            free_frags: Vec::new(),
        }
    }

    /// Slot by id.
    pub fn slot(&self, id: u32) -> &Slot {
        self.get(id).expect("slot id in the index")
    }

    fn slot_mut(&mut self, id: u32) -> &mut Slot {
        if id < self.dir_entries {
            &mut self.slots[id as usize]
        } else {
            &mut self.packed[(id - self.dir_entries) as usize]
        }
    }

    /// Slot by id, if it exists.
    pub fn get(&self, id: u32) -> Option<&Slot> {
        if id < self.dir_entries {
            self.slots.get(id as usize)
        } else {
            self.packed.get((id - self.dir_entries) as usize)
        }
    }

    /// True for ids of packed objects (no directory entry of their own).
    pub fn is_packed_id(&self, id: u32) -> bool {
        id >= self.dir_entries
    }

    /// Number of directory ids ever used (ids are `0..len`).
    pub fn len_ids(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Ids ever used, both arenas.
    fn all_ids(&self) -> impl Iterator<Item = u32> {
        (0..self.slots.len() as u32)
            .chain(self.dir_entries..self.dir_entries + self.packed.len() as u32)
    }

    /// Visible objects.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Grow a slot arena to `len` slots; capacity grows in steps of 1/32 (so at most 1/32 of
    /// the arena is unused capacity), never beyond `cap`.
    fn grow_arena(arena: &mut Vec<Slot>, len: usize, cap: u32) {
        let have = arena.len();
        if len > arena.capacity() {
            let want = len
                .max(have + (have / 32).max(64))
                .min(cap as usize)
                .max(len);
            arena.reserve_exact(want - have);
        }
        arena.resize(len, Slot::default());
    }

    fn grow_slots(&mut self, len: usize) {
        Self::grow_arena(&mut self.slots, len, self.dir_entries);
    }

    /// Take a free directory slot (state COMMITTING, generation bumped); None when the
    /// directory is full.
    pub fn alloc_slot(&mut self) -> Option<u32> {
        let id = if self.free_head != NO_SLOT {
            let id = self.free_head;
            self.free_head = self.slots[id as usize].block;
            id
        } else if (self.slots.len() as u32) < self.dir_entries {
            self.grow_slots(self.slots.len() + 1);
            self.slots.len() as u32 - 1
        } else {
            return None;
        };
        self.bump(id);
        Some(id)
    }

    /// Take a free packed slot (state COMMITTING, generation bumped); None when the index holds
    /// as many packed objects as it may.
    pub fn alloc_packed_slot(&mut self) -> Option<u32> {
        let id = if self.packed_free_head != NO_SLOT {
            let id = self.packed_free_head;
            self.packed_free_head = self.slot(id).block;
            id
        } else if (self.packed.len() as u32) < self.packed_capacity {
            let len = self.packed.len() + 1;
            Self::grow_arena(&mut self.packed, len, self.packed_capacity);
            self.dir_entries + len as u32 - 1
        } else {
            return None;
        };
        self.bump(id);
        Some(id)
    }

    /// A fresh packed id during recovery (state COMMITTING, generation `gen`).
    pub fn claim_packed_for_recovery(&mut self, gen: u32) -> Option<u32> {
        if self.packed.len() as u32 >= self.packed_capacity {
            return None;
        }
        let len = self.packed.len() + 1;
        Self::grow_arena(&mut self.packed, len, self.packed_capacity);
        let id = self.dir_entries + len as u32 - 1;
        *self.slot_mut(id) = Slot {
            word: Slot::pack(gen, STATE_COMMITTING, 0, 0),
            ..Slot::default()
        };
        Some(id)
    }

    fn bump(&mut self, id: u32) {
        let s = self.slot_mut(id);
        debug_assert_eq!(s.state(), STATE_FREE);
        *s = Slot {
            word: Slot::pack(s.gen().wrapping_add(1), STATE_COMMITTING, 0, 0),
            ..Slot::default()
        };
    }

    /// Claim slot `id` (below SLOTS_MAX) during recovery (from a directory entry).
    pub fn claim_for_recovery(&mut self, id: u32, gen: u32) {
        assert!(id < self.dir_entries, "slot {id} beyond the directory");
        if self.slots.len() <= id as usize {
            self.grow_slots(id as usize + 1);
        }
        self.slots[id as usize] = Slot {
            word: Slot::pack(gen, STATE_COMMITTING, 0, 0),
            ..Slot::default()
        };
    }

    /// After recovery: every unclaimed id below len_ids becomes free (lowest ids reused first).
    pub fn finish_recovery(&mut self) {
        self.free_head = NO_SLOT;
        for id in (0..self.slots.len() as u32).rev() {
            let s = &mut self.slots[id as usize];
            if s.state() == STATE_FREE {
                s.block = self.free_head;
                self.free_head = id;
            }
        }
        self.packed_free_head = NO_SLOT;
        for k in (0..self.packed.len() as u32).rev() {
            let s = &mut self.packed[k as usize];
            if s.state() == STATE_FREE {
                s.block = self.packed_free_head;
                self.packed_free_head = self.dir_entries + k;
            }
        }
        self.slots.shrink_to_fit();
        self.packed.shrink_to_fit();
        self.meta.shrink_to_fit();
        self.rebuild_table();
    }

    /// Data blocks and minimum record blocks of a contiguous object of `body_len` bytes: bodies
    /// up to one chunk are inline in the record; larger ones are whole chunks in one data extent
    /// followed by a record with that extent and one crc per chunk.
    fn contiguous_shape(&self, body_len: u64) -> (u64, u64) {
        let chunk = u64::from(self.chunk_bytes);
        if body_len <= chunk {
            let rec = Record::encoded_len(0, 0, 0, Some(body_len as usize));
            (0, blocks_for(rec as u64))
        } else {
            let chunks = body_len.div_ceil(chunk) as usize;
            let rec = Record::encoded_len(0, 1, chunks, None);
            (blocks_for(body_len), blocks_for(rec as u64))
        }
    }

    /// (first block, extra record blocks) if `loc` has the contiguous shape for `body_len`.
    fn compact_form(&self, body_len: u64, loc: &Location) -> Option<(u32, u64)> {
        let (data_blocks, rec_min) = self.contiguous_shape(body_len);
        let first = match loc.data.as_slice() {
            [] if data_blocks == 0 => loc.record.start,
            [e] if u64::from(e.blocks) == data_blocks
                && u64::from(e.start) + data_blocks == u64::from(loc.record.start) =>
            {
                e.start
            }
            _ => return None,
        };
        let extra = u64::from(loc.record.blocks).checked_sub(rec_min)?;
        (extra <= u64::from(REC_EXTRA_MAX)).then_some((first, extra))
    }

    /// Fill a COMMITTING slot (`body_len` at most BODY_LEN_MAX).
    pub fn set_object(
        &mut self,
        id: u32,
        key_hash: u64,
        body_len: u64,
        loc: &Location,
        meta: &[u8],
    ) {
        assert!(body_len <= BODY_LEN_MAX);
        assert!(!self.is_packed_id(id), "packed slots take set_packed");
        assert_eq!(self.slots[id as usize].meta_off, NO_META);
        let meta_off = self.push_meta(meta);
        let (block, rec) = match self.compact_form(body_len, loc) {
            Some((first, extra)) => (first, extra),
            None => {
                let mut list = Vec::with_capacity(loc.data.len() + 1);
                list.extend_from_slice(&loc.data);
                list.push(loc.record);
                let boxed = list.into_boxed_slice();
                let f = match self.free_frags.pop() {
                    Some(f) => {
                        self.frags[f as usize] = boxed;
                        f
                    }
                    None => {
                        self.frags.push(boxed);
                        self.frags.len() as u32 - 1
                    }
                };
                (f, REC_FRAG)
            }
        };
        let s = &mut self.slots[id as usize];
        assert_eq!(s.state(), STATE_COMMITTING);
        s.key_hash = key_hash;
        s.word = Slot::pack(s.gen(), STATE_COMMITTING, rec, body_len);
        s.block = block;
        s.meta_off = meta_off;
    }

    /// Fill a COMMITTING packed slot: `body_len` bytes at byte `offset` (a multiple of 8) of the
    /// pack whose directory entry is `pack`.
    pub fn set_packed(
        &mut self,
        id: u32,
        key_hash: u64,
        body_len: u64,
        pack: u32,
        offset: u32,
        meta: &[u8],
    ) {
        assert!(self.is_packed_id(id));
        assert!(body_len <= PACKED_LEN_MASK);
        assert!(offset.is_multiple_of(8) && u64::from(offset / 8) <= PACKED_LEN_MASK);
        assert_eq!(self.slot(id).meta_off, NO_META);
        let meta_off = self.push_meta(meta);
        let s = self.slot_mut(id);
        assert_eq!(s.state(), STATE_COMMITTING);
        s.key_hash = key_hash;
        let packed_body = (u64::from(offset / 8) << PACKED_LEN_BITS) | body_len;
        s.word = Slot::pack(s.gen(), STATE_COMMITTING, REC_PACKED, packed_body);
        s.block = pack;
        s.meta_off = meta_off;
    }

    /// (pack directory entry, byte offset in the pack) of a filled packed slot.
    pub fn packed_at(&self, id: u32) -> Option<(u32, u32)> {
        let s = self.get(id)?;
        (s.rec() == REC_PACKED && s.state() != STATE_FREE).then(|| {
            let off = ((s.word & BODY_LEN_MAX) >> PACKED_LEN_BITS) as u32 * 8;
            (s.block, off)
        })
    }

    /// The location of slot `id` (an object with a record of its own).
    pub fn location(&self, id: u32) -> Location {
        assert!(!self.is_packed_id(id), "packed slots have no location");
        let s = &self.slots[id as usize];
        if s.is_frag() {
            let list = &self.frags[s.block as usize];
            let (record, data) = list.split_last().expect("fragment list has the record");
            return Location {
                data: data.to_vec(),
                record: *record,
            };
        }
        let (data_blocks, rec_min) = self.contiguous_shape(s.body_len());
        // Both fit u32: set_object only takes the compact form when the extents matched them.
        let data_blocks = data_blocks as u32;
        Location {
            data: if data_blocks > 0 {
                vec![Extent {
                    start: s.block,
                    blocks: data_blocks,
                }]
            } else {
                Vec::new()
            },
            record: Extent {
                start: s.block + data_blocks,
                blocks: (rec_min + s.rec()) as u32,
            },
        }
    }

    fn push_meta(&mut self, meta: &[u8]) -> u32 {
        if self.meta_garbage_bytes > (1 << 20) && self.meta_garbage_bytes * 2 > self.meta.len() {
            self.compact_meta();
        }
        let pad = self.meta.len().next_multiple_of(META_ALIGN_BYTES) - self.meta.len();
        self.meta.resize(self.meta.len() + pad, 0);
        let off = self.meta.len();
        self.meta
            .extend_from_slice(&(meta.len() as u16).to_le_bytes());
        self.meta.extend_from_slice(meta);
        u32::try_from(off / META_ALIGN_BYTES).expect("metadata arena below 32 GiB")
    }

    fn compact_meta(&mut self) {
        let mut fresh = Vec::with_capacity(self.meta.len() - self.meta_garbage_bytes);
        for s in self.slots.iter_mut().chain(self.packed.iter_mut()) {
            if s.state() == STATE_FREE || s.meta_off == NO_META {
                continue;
            }
            let off = s.meta_off as usize * META_ALIGN_BYTES;
            let len = u16::from_le_bytes([self.meta[off], self.meta[off + 1]]) as usize;
            fresh.resize(fresh.len().next_multiple_of(META_ALIGN_BYTES), 0);
            s.meta_off = (fresh.len() / META_ALIGN_BYTES) as u32;
            fresh.extend_from_slice(&self.meta[off..off + 2 + len]);
        }
        self.meta = fresh;
        self.meta_garbage_bytes = 0;
    }

    /// Metadata of a non-free slot.
    pub fn meta(&self, id: u32) -> &[u8] {
        let off = self.slot(id).meta_off as usize * META_ALIGN_BYTES;
        let len = u16::from_le_bytes([self.meta[off], self.meta[off + 1]]) as usize;
        &self.meta[off + 2..off + 2 + len]
    }

    /// Replace the metadata of a non-free slot.
    pub fn set_meta(&mut self, id: u32, meta: &[u8]) {
        self.meta_garbage_bytes += 2 + self.meta(id).len();
        let off = self.push_meta(meta);
        self.slot_mut(id).meta_off = off;
    }

    /// The directory entry slot `id` should have on disk (None: a zero entry).
    pub fn entry(&self, id: u32) -> Option<DirEntry> {
        if self.is_packed_id(id) {
            return None;
        }
        let s = self.slots.get(id as usize)?;
        // A COMMITTING slot without an object yet (its record is still being written) has no entry.
        if (s.state() != STATE_COMMITTING && s.state() != STATE_LIVE) || s.meta_off == NO_META {
            return None;
        }
        let loc = self.location(id);
        let (first_block, data_blocks) = if s.is_frag() {
            (loc.record.start, 0)
        } else {
            (s.block, loc.data.first().map_or(0, |e| e.blocks))
        };
        Some(DirEntry {
            gen: s.gen(),
            flags: if s.is_frag() { ENTRY_FLAG_FRAG } else { 0 },
            key_hash: s.key_hash,
            body_len: s.body_len(),
            first_block,
            data_blocks,
            // Writers refuse records above u16::MAX blocks; recovery reads them from a u16.
            rec_blocks: loc.record.blocks as u16,
            ticks: 0,
            meta: self.meta(id).to_vec(),
        })
    }

    /// Make a COMMITTING slot visible.
    pub fn publish(&mut self, id: u32) {
        let s = self.slot_mut(id);
        assert_eq!(s.state(), STATE_COMMITTING);
        s.set_state(STATE_LIVE);
        let h = s.key_hash;
        self.live += 1;
        self.table_insert(h, id);
    }

    /// Make a recovered COMMITTING slot visible; the table is built by `finish_recovery`.
    pub fn publish_recovered(&mut self, id: u32) {
        let s = self.slot_mut(id);
        assert_eq!(s.state(), STATE_COMMITTING);
        s.set_state(STATE_LIVE);
        self.live += 1;
    }

    /// Hide a LIVE slot (state FREEING).
    pub fn unpublish(&mut self, id: u32) {
        let s = self.slot_mut(id);
        assert_eq!(s.state(), STATE_LIVE);
        s.set_state(STATE_FREEING);
        let h = s.key_hash;
        self.table_remove(h, id);
        self.live -= 1;
        // Shrink below load 0.56 (rebuilt at 2/3).
        if self.table.len() > TABLE_MIN && self.live * 25 < self.table.len() * 14 {
            self.rebuild_table();
        }
    }

    /// Return a COMMITTING or FREEING slot to the free list; its fragment list and metadata go.
    pub fn release(&mut self, id: u32) {
        let s = *self.slot(id);
        assert!(s.state() == STATE_COMMITTING || s.state() == STATE_FREEING);
        if s.meta_off != NO_META {
            self.meta_garbage_bytes += 2 + self.meta(id).len();
        }
        if s.is_frag() {
            self.frags[s.block as usize] = Box::new([]);
            self.free_frags.push(s.block);
        }
        let head = if self.is_packed_id(id) {
            std::mem::replace(&mut self.packed_free_head, id)
        } else {
            std::mem::replace(&mut self.free_head, id)
        };
        *self.slot_mut(id) = Slot {
            word: Slot::pack(s.gen(), STATE_FREE, 0, 0),
            block: head,
            ..Slot::default()
        };
    }

    /// The LIVE slot for `key_hash`.
    pub fn find(&self, key_hash: u64) -> Option<u32> {
        let n = self.table.len();
        let id_mask = self.id_mask;
        let want = key_hash as u32 & !id_mask;
        let mut i = home(key_hash, n);
        loop {
            let e = self.table[i];
            if e == EMPTY {
                return None;
            }
            if e & !id_mask == want {
                let id = e & id_mask;
                let s = self.slot(id);
                if s.key_hash == key_hash && s.state() == STATE_LIVE {
                    return Some(id);
                }
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Ids of all LIVE slots.
    pub fn live_ids(&self) -> Vec<u32> {
        self.all_ids()
            .filter(|&id| self.slot(id).state() == STATE_LIVE)
            .collect()
    }

    fn entry_of(&self, h: u64, id: u32) -> u32 {
        (h as u32 & !self.id_mask) | id
    }

    /// Put `id` (already counted in `live`) into the table; grows above load 0.8.
    fn table_insert(&mut self, h: u64, id: u32) {
        if self.live * 5 > self.table.len() * 4 {
            // Rebuilds from the LIVE slots, `id` included.
            self.rebuild_table();
            return;
        }
        let n = self.table.len();
        let mut i = home(h, n);
        while self.table[i] != EMPTY {
            i += 1;
            if i == n {
                i = 0;
            }
        }
        self.table[i] = self.entry_of(h, id);
    }

    fn table_remove(&mut self, h: u64, id: u32) {
        let n = self.table.len();
        let want = self.entry_of(h, id);
        let mut i = home(h, n);
        loop {
            match self.table[i] {
                EMPTY => panic!("slot {id} missing from the hash table"),
                e if e == want => break,
                _ => {}
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        // Backward-shift deletion: move later entries of the run into the hole when the hole
        // lies on their probe path, so no tombstones are needed.
        let mut hole = i;
        let mut j = i;
        loop {
            j += 1;
            if j == n {
                j = 0;
            }
            let e = self.table[j];
            if e == EMPTY {
                break;
            }
            let at = home(self.slot(e & self.id_mask).key_hash, n);
            let to_hole = (hole + n - at) % n;
            let to_j = (j + n - at) % n;
            if to_hole < to_j {
                self.table[hole] = e;
                hole = j;
            }
        }
        self.table[hole] = EMPTY;
    }

    /// A new table at load 2/3 holding every LIVE slot (scanned in id order).
    fn rebuild_table(&mut self) {
        let n = (self.live * 3 / 2 + 1).max(TABLE_MIN);
        let mut table = vec![EMPTY; n];
        for id in self.all_ids() {
            let s = self.slot(id);
            if s.state() != STATE_LIVE {
                continue;
            }
            let mut i = home(s.key_hash, n);
            while table[i] != EMPTY {
                i += 1;
                if i == n {
                    i = 0;
                }
            }
            table[i] = (s.key_hash as u32 & !self.id_mask) | id;
        }
        self.table = table;
    }

    /// RAM bytes of the index proper (slot arena, hash table, fragment lists), excluding keys
    /// (not in RAM) and the metadata arena.
    pub fn fixed_bytes(&self) -> usize {
        (self.slots.capacity() + self.packed.capacity()) * std::mem::size_of::<Slot>()
            + self.table.capacity() * 4
            + self.frags.capacity() * std::mem::size_of::<Box<[Extent]>>()
            + self.free_frags.capacity() * 4
            + self
                .frags
                .iter()
                .map(|f| f.len() * std::mem::size_of::<Extent>())
                .sum::<usize>()
    }

    /// Objects whose extents are kept in the fragment table (data split over several extents).
    pub fn fragmented(&self) -> usize {
        self.frags.len() - self.free_frags.len()
    }

    /// RAM bytes of the metadata arena.
    pub fn meta_bytes(&self) -> usize {
        self.meta.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use std::collections::HashMap;

    const CHUNK: u32 = 1 << 20;

    fn inline_loc() -> Location {
        Location {
            data: vec![],
            record: Extent {
                start: 100,
                blocks: 1,
            },
        }
    }

    fn put(ix: &mut Index, h: u64) -> u32 {
        let id = ix.alloc_slot().unwrap();
        ix.set_object(id, h, 10, &inline_loc(), b"m");
        ix.publish(id);
        id
    }

    fn drop_id(ix: &mut Index, id: u32) {
        ix.unpublish(id);
        ix.release(id);
    }

    #[test]
    fn find_remove_and_reuse_bump_generation() {
        let mut ix = Index::new(1000, 0, CHUNK);
        let ids: Vec<u32> = (1..=500u64)
            .map(|h| put(&mut ix, h * 0x9e37_79b9))
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(ix.find((i as u64 + 1) * 0x9e37_79b9), Some(id));
        }
        let gen = ix.slot(ids[7]).gen();
        drop_id(&mut ix, ids[7]);
        assert_eq!(ix.find(8 * 0x9e37_79b9), None);
        let again = put(&mut ix, 12345);
        assert_eq!(again, ids[7]);
        assert_ne!(ix.slot(again).gen(), gen);
        assert_eq!(ix.meta(again), b"m");
        assert_eq!(ix.live(), 500);
    }

    #[test]
    fn packed_slots_live_beside_directory_slots() {
        let mut ix = Index::new(4, 3, CHUNK);
        let d = put(&mut ix, 1);
        assert!(!ix.is_packed_id(d));
        let mut packed = Vec::new();
        for h in 10..13u64 {
            let id = ix.alloc_packed_slot().unwrap();
            assert!(ix.is_packed_id(id));
            ix.set_packed(id, h, 1000 + h, 2, 8 * h as u32, b"m");
            ix.publish(id);
            packed.push(id);
        }
        assert_eq!(ix.alloc_packed_slot(), None, "packed capacity is a bound");
        for (k, &id) in packed.iter().enumerate() {
            let h = 10 + k as u64;
            assert_eq!(ix.find(h), Some(id));
            assert_eq!(ix.slot(id).body_len(), 1000 + h);
            assert_eq!(ix.packed_at(id), Some((2, 8 * h as u32)));
            assert_eq!(ix.meta(id), b"m");
            assert_eq!(
                ix.entry(id),
                None,
                "packed objects have no entry of their own"
            );
        }
        assert_eq!(ix.find(1), Some(d));
        assert_eq!(ix.packed_at(d), None);
        drop_id(&mut ix, packed[1]);
        assert_eq!(ix.find(11), None);
        let again = ix.alloc_packed_slot().unwrap();
        assert_eq!(again, packed[1]);
        assert_eq!(ix.live_ids().len(), 3);
    }

    #[test]
    fn directory_full_is_none() {
        let mut ix = Index::new(2, 0, CHUNK);
        put(&mut ix, 1);
        put(&mut ix, 2);
        assert!(ix.alloc_slot().is_none());
    }

    #[test]
    fn generation_wraps_within_its_bits() {
        let mut ix = Index::new(4, 0, CHUNK);
        ix.claim_for_recovery(0, GEN_MASK);
        ix.set_object(0, 5, 10, &inline_loc(), b"");
        ix.publish_recovered(0);
        ix.finish_recovery();
        assert_eq!(ix.find(5), Some(0));
        assert_eq!(ix.slot(0).gen(), GEN_MASK);
        drop_id(&mut ix, 0);
        let id = put(&mut ix, 6);
        assert_eq!((id, ix.slot(id).gen()), (0, 0));
        assert_eq!(ix.slot(id).body_len(), 10);
        assert_eq!(ix.slot(id).state(), STATE_LIVE);
    }

    /// Every layout round-trips through `location` and `entry`, compact or in the fragment table.
    #[test]
    fn locations_round_trip() {
        let rec = |start, blocks| Extent { start, blocks };
        let key_bytes = 2048;
        let inline_rec = blocks_for(Record::encoded_len(key_bytes, 0, 0, Some(100_000)) as u64);
        let big = 5 * u64::from(CHUNK) + 1;
        let big_blocks = blocks_for(big) as u32;
        let big_rec = blocks_for(Record::encoded_len(key_bytes, 1, 6, None) as u64) as u32;
        let cases: Vec<(u64, Location, bool)> = vec![
            // inline body, record with a long key
            (
                100_000,
                Location {
                    data: vec![],
                    record: rec(7, inline_rec as u32),
                },
                false,
            ),
            (
                0,
                Location {
                    data: vec![],
                    record: rec(9, 1),
                },
                false,
            ),
            // chunked body, record right after the data
            (
                big,
                Location {
                    data: vec![rec(1000, big_blocks)],
                    record: rec(1000 + big_blocks, big_rec),
                },
                false,
            ),
            // record elsewhere
            (
                big,
                Location {
                    data: vec![rec(1000, big_blocks)],
                    record: rec(50, big_rec),
                },
                true,
            ),
            // data in two extents
            (
                big,
                Location {
                    data: vec![rec(1000, 600), rec(3000, big_blocks - 600)],
                    record: rec(20, big_rec),
                },
                true,
            ),
            // record far larger than the body needs
            (
                10,
                Location {
                    data: vec![],
                    record: rec(70, 9),
                },
                true,
            ),
        ];
        let mut ix = Index::new(100, 0, CHUNK);
        for (i, (body_len, loc, frag)) in cases.iter().enumerate() {
            let id = ix.alloc_slot().unwrap();
            ix.set_object(id, i as u64 + 1, *body_len, loc, b"meta");
            assert_eq!(ix.slot(id).is_frag(), *frag, "case {i}");
            assert_eq!(&ix.location(id), loc, "case {i}");
            let e = ix.entry(id).unwrap();
            assert_eq!(e.body_len, *body_len);
            assert_eq!(u32::from(e.rec_blocks), loc.record.blocks);
            if *frag {
                assert_eq!(
                    (e.flags, e.first_block),
                    (ENTRY_FLAG_FRAG, loc.record.start)
                );
            } else {
                let data_blocks: u32 = loc.data.iter().map(|x| x.blocks).sum();
                assert_eq!(e.data_blocks, data_blocks);
                assert_eq!(e.first_block + e.data_blocks, loc.record.start);
            }
            ix.publish(id);
        }
        assert_eq!(ix.fragmented(), 3);
        let id = ix.find(4).unwrap();
        drop_id(&mut ix, id);
        assert_eq!(ix.fragmented(), 2);
        let big_body = Location {
            data: vec![rec(1 << 31, (BODY_LEN_MAX >> 12) as u32 + 1)],
            record: rec(0, 1),
        };
        let id = ix.alloc_slot().unwrap();
        ix.set_object(id, 99, BODY_LEN_MAX, &big_body, b"");
        assert_eq!(ix.slot(id).body_len(), BODY_LEN_MAX);
        assert_eq!(ix.location(id), big_body);
    }

    /// Random publish / unpublish against a HashMap, with hashes crowded at the table's end
    /// (wrap-around); the load stays in [0.56, 0.8] and the bytes per object
    /// within the documented bound.
    #[test]
    fn table_matches_a_model_and_keeps_its_load() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut ix = Index::new(200_000, 0, CHUNK);
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut keys: Vec<u64> = Vec::new();
        let pick_hash = |rng: &mut StdRng| -> u64 {
            // About twice the average density in the last 1/1024 of the hash space, so runs
            // there wrap around to the table's start.
            if rng.gen_ratio(1, 1000) {
                u64::MAX - rng.gen_range(0..1u64 << 54)
            } else {
                rng.gen()
            }
        };
        for round in 0..200_000u32 {
            let grow = if round < 120_000 { 0.8 } else { 0.3 };
            if keys.is_empty() || rng.gen_bool(grow) {
                let h = pick_hash(&mut rng);
                if model.contains_key(&h) {
                    continue;
                }
                let id = put(&mut ix, h);
                model.insert(h, id);
                keys.push(h);
            } else {
                let h = keys.swap_remove(rng.gen_range(0..keys.len()));
                let id = model.remove(&h).unwrap();
                assert_eq!(ix.find(h), Some(id));
                drop_id(&mut ix, id);
                assert_eq!(ix.find(h), None);
            }
            let n = ix.table.len();
            assert!(ix.live * 5 <= n * 4, "load above 0.8");
            assert!(n == TABLE_MIN || ix.live * 25 >= n * 14, "load below 0.56");
            if round % 10_000 == 0 {
                for (&h, &id) in &model {
                    assert_eq!(ix.find(h), Some(id));
                }
                for _ in 0..1000 {
                    let h = pick_hash(&mut rng);
                    assert_eq!(ix.find(h), model.get(&h).copied());
                }
            }
        }
        assert_eq!(ix.live(), model.len());
        // Fill the freed ids again: with every id live the bound holds per object.
        while (ix.live() as u32) < ix.len_ids() {
            let h = pick_hash(&mut rng);
            model.entry(h).or_insert_with(|| put(&mut ix, h));
        }
        let per_object = ix.fixed_bytes() as f64 / ix.live() as f64;
        assert!(per_object <= 32.0, "{per_object} bytes per object");
        ix.finish_recovery();
        for (&h, &id) in &model {
            assert_eq!(ix.find(h), Some(id));
        }
    }
}
