//! The compact per-disk RAM index: a dense slot arena (32 bytes per slot, slot id = directory
//! entry number = eviction-policy id), an open-addressing hash table of `u32` slot ids keyed by the
//! 64-bit key hash, and a metadata arena. Keys are not kept in RAM: the full key is in the on-disk
//! record and its 128-bit hash is checked on read.

use crate::layout::{DirEntry, Extent, ENTRY_FLAG_FRAG};

/// Slot is unused.
pub const STATE_FREE: u32 = 0;
/// Record written, directory entry being written; not yet visible to lookup.
pub const STATE_COMMITTING: u32 = 1;
/// Visible to lookup.
pub const STATE_LIVE: u32 = 2;
/// Being removed: invisible, entry being zeroed, blocks not yet reusable.
pub const STATE_FREEING: u32 = 3;

const GEN_MASK: u32 = (1 << 30) - 1;
const FRAG_BIT: u32 = 1 << 31;
const EMPTY: u32 = u32::MAX;
const TOMB: u32 = u32::MAX - 1;
const BODY_LEN_MAX: u64 = (1 << 48) - 1;
const NO_META: u32 = u32::MAX;
/// Metadata records start on this alignment; `meta_off` counts units of it, so the arena can
/// grow to 32 GiB (far beyond what any disk's directory can fill: every directory entry holds
/// at most 464 metadata bytes, and compaction keeps garbage below the live bytes).
const META_ALIGN_BYTES: usize = 8;

/// One object's RAM state: exactly 32 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    /// 64-bit key hash (hash table key).
    pub key_hash: u64,
    len_rec: u64,
    /// Contiguous: first data block (record follows the data). Fragmented: record block.
    pub first_block: u32,
    data: u32,
    meta_off: u32,
    gen_state: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

impl Slot {
    /// Body length.
    pub fn body_len(&self) -> u64 {
        self.len_rec >> 16
    }
    /// Record blocks.
    pub fn rec_blocks(&self) -> u16 {
        (self.len_rec & 0xffff) as u16
    }
    /// Generation (changes whenever the slot gets a new object).
    pub fn gen(&self) -> u32 {
        self.gen_state & GEN_MASK
    }
    /// STATE_*.
    pub fn state(&self) -> u32 {
        self.gen_state >> 30
    }
    fn set_state(&mut self, state: u32) {
        self.gen_state = (self.gen_state & GEN_MASK) | (state << 30);
    }
    /// True if the data extents are kept in the fragment table.
    pub fn is_frag(&self) -> bool {
        self.data & FRAG_BIT != 0
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
    slots: Vec<Slot>,
    free_ids: Vec<u32>,
    capacity_slots: u32,
    table: Vec<u32>,
    table_used: usize,
    live: usize,
    meta: Vec<u8>,
    meta_garbage_bytes: usize,
    frags: Vec<Box<[Extent]>>,
    free_frags: Vec<u32>,
}

impl Index {
    /// An empty index with room for `capacity_slots` objects (the directory size).
    pub fn new(capacity_slots: u32) -> Index {
        Index {
            slots: Vec::new(),
            free_ids: Vec::new(),
            capacity_slots,
            table: vec![EMPTY; 16],
            table_used: 0,
            live: 0,
            meta: Vec::new(),
            meta_garbage_bytes: 0,
            frags: Vec::new(),
            free_frags: Vec::new(),
        }
    }

    /// Slot by id.
    pub fn slot(&self, id: u32) -> &Slot {
        &self.slots[id as usize]
    }

    /// Slot by id, if it exists.
    pub fn get(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize)
    }

    /// Number of slot ids ever used (ids are `0..len`).
    pub fn len_ids(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Visible objects.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Take a free slot (state COMMITTING, generation bumped); None when the directory is full.
    pub fn alloc_slot(&mut self) -> Option<u32> {
        let id = match self.free_ids.pop() {
            Some(id) => id,
            None if (self.slots.len() as u32) < self.capacity_slots => {
                self.slots.push(Slot::default());
                self.slots.len() as u32 - 1
            }
            None => return None,
        };
        let s = &mut self.slots[id as usize];
        debug_assert_eq!(s.state(), STATE_FREE);
        s.gen_state = (s.gen().wrapping_add(1) & GEN_MASK) | (STATE_COMMITTING << 30);
        s.meta_off = NO_META;
        Some(id)
    }

    /// Claim slot `id` during recovery (from a directory entry).
    pub fn claim_for_recovery(&mut self, id: u32, gen: u32) {
        if self.slots.len() <= id as usize {
            self.slots.resize(id as usize + 1, Slot::default());
        }
        let s = &mut self.slots[id as usize];
        s.gen_state = (gen & GEN_MASK) | (STATE_COMMITTING << 30);
        s.meta_off = NO_META;
    }

    /// After recovery: every unclaimed id below len_ids becomes free.
    pub fn finish_recovery(&mut self) {
        self.free_ids = (0..self.slots.len() as u32)
            .rev()
            .filter(|&id| self.slots[id as usize].state() == STATE_FREE)
            .collect();
        self.slots.shrink_to_fit();
        self.meta.shrink_to_fit();
        self.rehash();
    }

    /// Fill a COMMITTING slot.
    #[allow(clippy::too_many_arguments)]
    pub fn set_object(
        &mut self,
        id: u32,
        key_hash: u64,
        body_len: u64,
        loc: &Location,
        contiguous: bool,
        meta: &[u8],
    ) {
        assert!(body_len <= BODY_LEN_MAX);
        assert_eq!(self.slots[id as usize].meta_off, NO_META);
        let meta_off = self.push_meta(meta);
        let data = if contiguous {
            loc.data.iter().map(|e| e.blocks).sum::<u32>()
        } else {
            let boxed: Box<[Extent]> = loc.data.clone().into_boxed_slice();
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
            FRAG_BIT | f
        };
        let first_block = if contiguous {
            loc.data.first().map_or(loc.record.start, |e| e.start)
        } else {
            loc.record.start
        };
        let s = &mut self.slots[id as usize];
        assert_eq!(s.state(), STATE_COMMITTING);
        s.key_hash = key_hash;
        s.len_rec = (body_len << 16) | u64::from(loc.record.blocks as u16);
        s.first_block = first_block;
        s.data = data;
        s.meta_off = meta_off;
    }

    /// The location of slot `id`.
    pub fn location(&self, id: u32) -> Location {
        let s = &self.slots[id as usize];
        let rec_blocks = u32::from(s.rec_blocks());
        if s.is_frag() {
            Location {
                data: self.frags[(s.data & !FRAG_BIT) as usize].to_vec(),
                record: Extent {
                    start: s.first_block,
                    blocks: rec_blocks,
                },
            }
        } else {
            let data_blocks = s.data;
            Location {
                data: if data_blocks > 0 {
                    vec![Extent {
                        start: s.first_block,
                        blocks: data_blocks,
                    }]
                } else {
                    Vec::new()
                },
                record: Extent {
                    start: s.first_block + data_blocks,
                    blocks: rec_blocks,
                },
            }
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
        for s in self.slots.iter_mut() {
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
        let off = self.slots[id as usize].meta_off as usize * META_ALIGN_BYTES;
        let len = u16::from_le_bytes([self.meta[off], self.meta[off + 1]]) as usize;
        &self.meta[off + 2..off + 2 + len]
    }

    /// Replace the metadata of a non-free slot.
    pub fn set_meta(&mut self, id: u32, meta: &[u8]) {
        self.meta_garbage_bytes += 2 + self.meta(id).len();
        let off = self.push_meta(meta);
        self.slots[id as usize].meta_off = off;
    }

    /// The directory entry slot `id` should have on disk (None: a zero entry).
    pub fn entry(&self, id: u32) -> Option<DirEntry> {
        let s = self.slots.get(id as usize)?;
        // A COMMITTING slot without an object yet (its record is still being written) has no entry.
        if (s.state() != STATE_COMMITTING && s.state() != STATE_LIVE) || s.meta_off == NO_META {
            return None;
        }
        Some(DirEntry {
            gen: s.gen(),
            flags: if s.is_frag() { ENTRY_FLAG_FRAG } else { 0 },
            key_hash: s.key_hash,
            body_len: s.body_len(),
            first_block: s.first_block,
            data_blocks: if s.is_frag() { 0 } else { s.data },
            rec_blocks: s.rec_blocks(),
            ticks: 0,
            meta: self.meta(id).to_vec(),
        })
    }

    /// Make a COMMITTING slot visible. Returns the slot id it displaced, if the key was present.
    pub fn publish(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        assert_eq!(s.state(), STATE_COMMITTING);
        s.set_state(STATE_LIVE);
        let h = s.key_hash;
        self.table_insert(h, id);
        self.live += 1;
    }

    /// Hide a LIVE slot (state FREEING).
    pub fn unpublish(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        assert_eq!(s.state(), STATE_LIVE);
        s.set_state(STATE_FREEING);
        let h = s.key_hash;
        self.table_remove(h, id);
        self.live -= 1;
    }

    /// Return a COMMITTING or FREEING slot to the free list; its fragment list and metadata go.
    pub fn release(&mut self, id: u32) {
        let s = self.slots[id as usize];
        assert!(s.state() == STATE_COMMITTING || s.state() == STATE_FREEING);
        if s.meta_off != NO_META {
            self.meta_garbage_bytes += 2 + self.meta(id).len();
        }
        if s.is_frag() {
            let f = s.data & !FRAG_BIT;
            self.frags[f as usize] = Box::new([]);
            self.free_frags.push(f);
        }
        let gen = s.gen();
        self.slots[id as usize] = Slot {
            gen_state: gen,
            ..Slot::default()
        };
        self.free_ids.push(id);
    }

    /// The LIVE slot for `key_hash`.
    pub fn find(&self, key_hash: u64) -> Option<u32> {
        let mask = self.table.len() - 1;
        let mut i = (key_hash as usize) & mask;
        loop {
            match self.table[i] {
                EMPTY => return None,
                TOMB => {}
                id => {
                    let s = &self.slots[id as usize];
                    if s.key_hash == key_hash && s.state() == STATE_LIVE {
                        return Some(id);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Ids of all LIVE slots.
    pub fn live_ids(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&id| self.slots[id as usize].state() == STATE_LIVE)
            .collect()
    }

    fn table_insert(&mut self, h: u64, id: u32) {
        if (self.table_used + 1) * 5 > self.table.len() * 4 {
            self.rehash();
        }
        let mask = self.table.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.table[i] {
                EMPTY => {
                    self.table[i] = id;
                    self.table_used += 1;
                    return;
                }
                TOMB => {
                    self.table[i] = id;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn table_remove(&mut self, h: u64, id: u32) {
        let mask = self.table.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.table[i] {
                EMPTY => panic!("slot {id} missing from the hash table"),
                x if x == id => {
                    self.table[i] = TOMB;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn rehash(&mut self) {
        // Load factor at most 0.8 right after a rehash (grows again at 0.8).
        let want = ((self.live + 1) * 5 / 4 + 1).next_power_of_two().max(16);
        let mut table = vec![EMPTY; want];
        let mask = want - 1;
        for &id in self.table.iter().filter(|&&x| x != EMPTY && x != TOMB) {
            let mut i = (self.slots[id as usize].key_hash as usize) & mask;
            while table[i] != EMPTY {
                i = (i + 1) & mask;
            }
            table[i] = id;
        }
        self.table_used = self.live;
        self.table = table;
    }

    /// RAM bytes of the index proper (slot arena, hash table, free list, fragment lists),
    /// excluding keys (not in RAM) and the metadata arena.
    pub fn fixed_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.table.capacity() * 4
            + self.free_ids.capacity() * 4
            + self.frags.iter().map(|f| f.len() * 8 + 16).sum::<usize>()
    }

    /// Objects whose data is split over several extents.
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

    fn put(ix: &mut Index, h: u64) -> u32 {
        let id = ix.alloc_slot().unwrap();
        let loc = Location {
            data: vec![],
            record: Extent {
                start: 100,
                blocks: 1,
            },
        };
        ix.set_object(id, h, 10, &loc, true, b"m");
        ix.publish(id);
        id
    }

    #[test]
    fn find_remove_and_reuse_bump_generation() {
        let mut ix = Index::new(1000);
        let ids: Vec<u32> = (1..=500u64)
            .map(|h| put(&mut ix, h * 0x9e37_79b9))
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(ix.find((i as u64 + 1) * 0x9e37_79b9), Some(id));
        }
        let gen = ix.slot(ids[7]).gen();
        ix.unpublish(ids[7]);
        ix.release(ids[7]);
        assert_eq!(ix.find(8 * 0x9e37_79b9), None);
        let again = put(&mut ix, 12345);
        assert_eq!(again, ids[7]);
        assert_ne!(ix.slot(again).gen(), gen);
        assert_eq!(ix.meta(again), b"m");
        assert_eq!(ix.live(), 500);
    }

    #[test]
    fn directory_full_is_none() {
        let mut ix = Index::new(2);
        put(&mut ix, 1);
        put(&mut ix, 2);
        assert!(ix.alloc_slot().is_none());
    }
}
