//! The RAM tier: an LRU of hot objects' bodies, bounded in bytes per Store (shard), consulted
//! before the disk. Entries carry the slot generation, so a replaced object is never served.
//!
//! Small bodies live on the heap as [`Bytes`]. Bodies of at least [`ARENA_BODY_BYTES_MIN`] live
//! in a per-tier arena (one anonymous mapping, page-aligned regions), so the HTTP side can hand
//! their pages to the socket (vmsplice into a pipe, splice to the socket): the socket references
//! the pages instead of copying the body, as sendfile does for nginx's page-cache files. A region
//! is never rewritten in place: when its object leaves the tier and no [`RamSpan`] holds it any
//! more, its pages are dropped from the mapping (MADV_DONTNEED; pages a socket still references
//! stay alive, unchanged, until sent) and only then is the region reused.
//!
//! ```text
//!   insert(body) ─ small ─▶ heap Bytes ─────────────────▶ get → Held::Heap(Bytes)
//!               └ large ─▶ Arena::alloc → copy into region ▶ get → Held::Arena(Rc<Region>) → RamSpan
//!   evict / replace ─▶ drop Rc<Region> ─(last holder)─▶ MADV_DONTNEED → free list
//! ```

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::rc::Rc;

/// (disk, unit): a unit is one chunk of one slot, see [`unit`].
type Key = (u128, u64);

/// The tier's id of chunk `chunk` of the object in slot `slot` (bodies up to one chunk long are
/// one unit, chunk 0).
pub fn unit(slot: u32, chunk: u32) -> u64 {
    u64::from(chunk) << 32 | u64::from(slot)
}

/// Most units the admission history remembers (bounds its memory: ~40 bytes each).
const GHOST_UNITS_MAX: usize = 65_536;

/// Bodies at least this large go to the arena (below it, a copy costs less than the splice
/// system calls).
pub const ARENA_BODY_BYTES_MIN: u64 = 64 * 1024;
/// Allocation unit of the arena (a page: splice moves whole pages by reference).
const PAGE_BYTES: u64 = 4096;

/// A body held by the tier.
#[derive(Clone)]
pub enum Held {
    /// On the heap.
    Heap(Bytes),
    /// In the arena.
    Arena(Rc<Region>),
}

impl Held {
    /// Body bytes `[offset, offset + len)` (a copy out of the arena for arena bodies).
    pub fn bytes(&self, offset: u64, len: u64) -> Bytes {
        match self {
            Held::Heap(b) => b.slice(offset as usize..(offset + len) as usize),
            Held::Arena(r) => r.read(offset, len),
        }
    }

    /// A span of an arena body; None for heap bodies.
    pub fn span(&self, offset: u64, len: u64) -> Option<RamSpan> {
        match self {
            Held::Arena(region) => Some(RamSpan {
                region: Rc::clone(region),
                offset,
                len,
            }),
            Held::Heap(_) => None,
        }
    }
}

struct Entry {
    gen: u32,
    body: Held,
    /// Bytes charged against the capacity (arena bodies: whole pages).
    charged_bytes: u64,
    stamp: u64,
}

/// The arena (an anonymous mapping) and its free regions (page-aligned offset → length).
pub struct Arena {
    map: memmap2::MmapRaw,
    free: RefCell<BTreeMap<u64, u64>>,
}

impl Arena {
    fn new(capacity_bytes: u64) -> io::Result<Arena> {
        let size = capacity_bytes / PAGE_BYTES * PAGE_BYTES;
        let map: memmap2::MmapRaw = memmap2::MmapOptions::new()
            .len(size as usize)
            .map_anon()?
            .into();
        // Transparent huge pages where the system allows them (THP "madvise" or "always"): a
        // spliced body then pins a few 2 MiB folios instead of hundreds of 4 KiB pages. Freeing a
        // region inside a huge page splits it; the kernel recollapses later. Best effort.
        // SAFETY: advice over exactly our own mapping.
        let _ = unsafe { libc::madvise(map.as_mut_ptr().cast(), map.len(), libc::MADV_HUGEPAGE) };
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(0, size);
        }
        Ok(Arena {
            map,
            free: RefCell::new(free),
        })
    }

    /// First fit; None if no free region is large enough.
    fn alloc(&self, len_bytes: u64) -> Option<u64> {
        let mut free = self.free.borrow_mut();
        let (&off, &len) = free.iter().find(|(_, &l)| l >= len_bytes)?;
        free.remove(&off);
        if len > len_bytes {
            free.insert(off + len_bytes, len - len_bytes);
        }
        Some(off)
    }

    /// Drop the region's pages from the mapping (a pipe or socket still referencing one keeps
    /// it, unchanged, until sent; the next write here faults in fresh pages) and return it to the
    /// free list, merged with its free neighbours.
    fn release(&self, off: u64, len_bytes: u64) {
        // SAFETY: the range lies inside our own mapping and no live Region covers it (this is
        // the last holder's drop), so nothing reads these bytes any more.
        let rc = unsafe {
            libc::madvise(
                self.map.as_mut_ptr().add(off as usize).cast(),
                len_bytes as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            // The pages stay mapped; a write into a reused region would then change pages a
            // socket may still reference. Keep the region out of circulation instead.
            tracing::warn!(
                error = %io::Error::last_os_error(),
                off,
                len_bytes,
                "ram tier: dropping a freed region's pages failed; region retired"
            );
            return;
        }
        let mut free = self.free.borrow_mut();
        let (mut start, mut len) = (off, len_bytes);
        if let Some((&prev_off, &prev_len)) = free.range(..start).next_back() {
            if prev_off + prev_len == start {
                free.remove(&prev_off);
                start = prev_off;
                len += prev_len;
            }
        }
        if let Some(&next_len) = free.get(&(off + len_bytes)) {
            free.remove(&(off + len_bytes));
            len += next_len;
        }
        free.insert(start, len);
    }
}

/// A body's region of the arena. Written once, before the first clone of its Rc exists; read
/// only while held; dropping the last holder frees it.
pub struct Region {
    arena: Rc<Arena>,
    off: u64,
    alloc_bytes: u64,
    len_bytes: u64,
}

impl Region {
    fn slice(&self, offset: u64, len: u64) -> &[u8] {
        assert!(offset + len <= self.len_bytes, "span inside the body");
        // SAFETY: inside the mapping (alloc gave [off, off + alloc_bytes) and len_bytes ≤
        // alloc_bytes); the bytes were written at insert and are not written again while this
        // Region lives (see the type's comment), and the mapping outlives it (Rc<Arena>).
        unsafe {
            std::slice::from_raw_parts(
                self.arena.map.as_ptr().add((self.off + offset) as usize),
                len as usize,
            )
        }
    }

    fn read(&self, offset: u64, len: u64) -> Bytes {
        Bytes::copy_from_slice(self.slice(offset, len))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.arena.release(self.off, self.alloc_bytes);
    }
}

/// Body bytes of an object in the arena, held for the duration of a send: while a span lives,
/// its region is neither freed nor rewritten, so its pages can be handed to a pipe (vmsplice).
pub struct RamSpan {
    region: Rc<Region>,
    offset: u64,
    len: u64,
}

impl RamSpan {
    /// The bytes, in place.
    pub fn as_slice(&self) -> &[u8] {
        self.region.slice(self.offset, self.len)
    }
    /// Length.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The bytes, copied out (for sinks that cannot splice).
    pub fn to_bytes(&self) -> Bytes {
        self.region.read(self.offset, self.len)
    }
}

/// Bounded LRU of object bodies.
pub struct RamTier {
    capacity_bytes: u64,
    bytes: u64,
    map: HashMap<Key, Entry>,
    lru: BTreeMap<u64, Key>,
    next_stamp: u64,
    arena: Option<Rc<Arena>>,
    /// Admission history: units read from the disk and not admitted, newest last, covering at
    /// most `capacity_bytes` of bodies (and GHOST_UNITS_MAX units). A unit read again while it is
    /// remembered is admitted; `ghost` maps it to its sequence number in `ghost_fifo`.
    ghost: HashMap<Key, u64>,
    ghost_fifo: std::collections::VecDeque<(Key, u64, u64)>,
    ghost_bytes: u64,
    ghost_seq: u64,
    /// Reads served from RAM.
    pub hits: u64,
    /// Reads that went to disk.
    pub misses: u64,
    /// Units read from the disk that the tier did not take (first read while the tier is full).
    pub declined: u64,
}

impl RamTier {
    /// An empty tier holding at most `capacity_bytes` of bodies. Large bodies go to an arena; if
    /// it cannot be mapped, every body stays on the heap (logged).
    pub fn new(capacity_bytes: u64) -> RamTier {
        let arena = if capacity_bytes / 8 >= ARENA_BODY_BYTES_MIN {
            match Arena::new(capacity_bytes) {
                Ok(a) => Some(Rc::new(a)),
                Err(e) => {
                    tracing::warn!(error = %e, "ram tier: no arena mapping; large bodies kept on the heap (copied on send)");
                    None
                }
            }
        } else {
            None
        };
        RamTier {
            capacity_bytes,
            bytes: 0,
            map: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            arena,
            ghost: HashMap::new(),
            ghost_fifo: std::collections::VecDeque::new(),
            ghost_bytes: 0,
            ghost_seq: 0,
            hits: 0,
            misses: 0,
            declined: 0,
        }
    }

    /// Whether a unit of `len` bytes just read from the disk should enter the tier: always while
    /// the tier has room; once it is full, only a unit read before within the last
    /// `capacity_bytes` of declined reads (its second recent read). A working set many times the
    /// tier (uniform disk-tier traffic) then streams past it instead of evicting a hot body per
    /// read, and a body that keeps being asked for gets in on its second read.
    pub fn admit(&mut self, disk: u128, unit: u64, len: u64) -> bool {
        if len > self.object_bytes_max() {
            return false;
        }
        let key = (disk, unit);
        if self.ghost.remove(&key).is_some() {
            return true;
        }
        if self.bytes + len <= self.capacity_bytes {
            return true;
        }
        self.declined += 1;
        self.ghost_seq += 1;
        self.ghost.insert(key, self.ghost_seq);
        self.ghost_fifo.push_back((key, self.ghost_seq, len));
        self.ghost_bytes += len;
        while self.ghost_bytes > self.capacity_bytes || self.ghost_fifo.len() > GHOST_UNITS_MAX {
            let Some((k, seq, l)) = self.ghost_fifo.pop_front() else {
                break;
            };
            self.ghost_bytes -= l;
            if self.ghost.get(&k) == Some(&seq) {
                self.ghost.remove(&k);
            }
        }
        false
    }

    /// Largest body the tier takes (an eighth of its capacity).
    pub fn object_bytes_max(&self) -> u64 {
        self.capacity_bytes / 8
    }

    /// Configured capacity.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The body of (disk, slot) if held for generation `gen`; counts a hit or a miss.
    pub fn get(&mut self, disk: u128, slot: u64, gen: u32) -> Option<Held> {
        let key = (disk, slot);
        match self.map.get_mut(&key) {
            Some(e) if e.gen == gen => {
                self.lru.remove(&e.stamp);
                self.next_stamp += 1;
                e.stamp = self.next_stamp;
                self.lru.insert(e.stamp, key);
                self.hits += 1;
                Some(e.body.clone())
            }
            Some(_) => {
                self.remove(disk, slot);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn evict_lru(&mut self) -> bool {
        let Some((_, key)) = self.lru.pop_first() else {
            return false;
        };
        if let Some(e) = self.map.remove(&key) {
            self.bytes -= e.charged_bytes;
        }
        true
    }

    /// Evict the least recently used arena body that only the tier holds (its region comes
    /// back at once); false if every arena body is held by a send.
    fn evict_unheld_lru(&mut self) -> bool {
        let found = self.lru.iter().find_map(|(&stamp, key)| {
            let e = self.map.get(key)?;
            matches!(&e.body, Held::Arena(r) if Rc::strong_count(r) == 1).then_some((stamp, *key))
        });
        let Some((stamp, key)) = found else {
            return false;
        };
        self.lru.remove(&stamp);
        if let Some(e) = self.map.remove(&key) {
            self.bytes -= e.charged_bytes;
        }
        true
    }

    /// Keep a body; evicts least recently used bodies to stay within capacity. Returns what the
    /// tier now holds for the object (None if it was not taken).
    pub fn insert(&mut self, disk: u128, slot: u64, gen: u32, body: Bytes) -> Option<Held> {
        let len = body.len() as u64;
        if len > self.object_bytes_max() {
            return None;
        }
        self.remove(disk, slot);
        let to_arena = len >= ARENA_BODY_BYTES_MIN && self.arena.is_some();
        let charged_bytes = if to_arena {
            len.div_ceil(PAGE_BYTES) * PAGE_BYTES
        } else {
            len
        };
        while self.bytes + charged_bytes > self.capacity_bytes {
            if !self.evict_lru() {
                return None;
            }
        }
        let held = match &self.arena {
            Some(arena) if to_arena => {
                let arena = Rc::clone(arena);
                // Regions still held by spans in flight are not counted in `bytes`, so the
                // file can be fragmented while `bytes` has room: evict until a region fits.
                // Evicting a body whose region a send still holds frees no arena space (slow
                // viewers can hold many): evict the least recent body nobody else holds, and
                // decline this one when there is none, rather than emptying the tier.
                let off = loop {
                    if let Some(off) = arena.alloc(charged_bytes) {
                        break off;
                    }
                    if !self.evict_unheld_lru() {
                        self.declined += 1;
                        return None;
                    }
                };
                let region = Rc::new(Region {
                    arena,
                    off,
                    alloc_bytes: charged_bytes,
                    len_bytes: len,
                });
                // SAFETY: [off, off + len) lies inside the mapping and belongs to this new
                // region alone; no clone of it exists yet, so nobody reads it while it is written.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        body.as_ptr(),
                        region.arena.map.as_mut_ptr().add(off as usize),
                        body.len(),
                    );
                }
                Held::Arena(region)
            }
            _ => Held::Heap(body),
        };
        self.next_stamp += 1;
        self.lru.insert(self.next_stamp, (disk, slot));
        self.map.insert(
            (disk, slot),
            Entry {
                gen,
                body: held.clone(),
                charged_bytes,
                stamp: self.next_stamp,
            },
        );
        self.bytes += charged_bytes;
        Some(held)
    }

    /// Forget (disk, slot).
    pub fn remove(&mut self, disk: u128, slot: u64) {
        if let Some(e) = self.map.remove(&(disk, slot)) {
            self.lru.remove(&e.stamp);
            self.bytes -= e.charged_bytes;
        }
    }

    /// Drop every unit of the object in `slot` (`chunks` units).
    pub fn remove_object(&mut self, disk: u128, slot: u32, chunks: u32) {
        for c in 0..chunks.max(1) {
            self.remove(disk, unit(slot, c));
        }
    }

    /// Forget everything of one disk.
    pub fn remove_disk(&mut self, disk: u128) {
        let keys: Vec<Key> = self.map.keys().filter(|k| k.0 == disk).copied().collect();
        for (d, s) in keys {
            self.remove(d, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(h: Option<Held>) -> Bytes {
        match h {
            Some(Held::Heap(b)) => b,
            _ => panic!("expected a heap body"),
        }
    }

    #[test]
    fn lru_stays_within_capacity_and_checks_generation() {
        let mut t = RamTier::new(800);
        for slot in 0..10u64 {
            t.insert(1, slot, 1, Bytes::from(vec![slot as u8; 100]));
        }
        assert!(t.bytes() <= 800);
        assert!(t.get(1, 0, 1).is_none());
        assert_eq!(heap(t.get(1, 9, 1))[0], 9);
        assert!(t.get(1, 9, 2).is_none());
        assert!(t.get(1, 9, 1).is_none());
    }

    fn body(seed: u8, len: usize) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn large_bodies_live_in_the_arena_and_read_back() {
        let mut t = RamTier::new(8 << 20);
        let b = body(7, 300_000);
        let held = t.insert(1, 1, 1, b.clone()).expect("taken");
        assert!(matches!(held, Held::Arena(_)));
        let got = t.get(1, 1, 1).expect("held");
        assert_eq!(got.bytes(0, b.len() as u64), b);
        assert_eq!(got.bytes(1000, 10), b.slice(1000..1010));
        let span = got.span(4096, 5000).expect("arena body");
        assert_eq!(span.len(), 5000);
        assert_eq!(span.to_bytes(), b.slice(4096..9096));
        // Small bodies stay on the heap.
        assert!(matches!(
            t.insert(1, 2, 1, body(1, 1000)),
            Some(Held::Heap(_))
        ));
    }

    #[test]
    fn a_held_span_keeps_its_bytes_while_the_tier_churns() {
        // Room for 16 bodies of 1 MiB: inserting 40 more evicts the first, and its region is
        // wanted again and again.
        let mut t = RamTier::new(16 << 20);
        let first = body(1, 1 << 20);
        let held = t.insert(1, 0, 1, first.clone()).expect("taken");
        let span = held.span(0, first.len() as u64).expect("arena body");
        drop(held);
        for slot in 1..=40u64 {
            t.insert(1, slot, 1, body(slot as u8 + 1, 1 << 20));
        }
        assert!(t.get(1, 0, 1).is_none(), "evicted");
        assert_eq!(span.to_bytes(), first, "span bytes unchanged");
        assert!(t.bytes() <= 16 << 20);
        // The newest bodies read back intact.
        for slot in 38..=40u64 {
            let got = t.get(1, slot, 1).expect("recent body held");
            assert_eq!(got.bytes(0, 1 << 20), body(slot as u8 + 1, 1 << 20));
        }
        drop(span);
    }

    #[test]
    fn regions_held_by_sends_do_not_empty_the_tier() {
        // 16 MiB: eight 1 MiB bodies whose regions stay held (slow sends), eight more the
        // tier can still evict. A new body needs a region: two evictions make room (freed
        // regions of held bodies do not), and the tier keeps the rest.
        let mut t = RamTier::new(16 << 20);
        let mut spans = Vec::new();
        for slot in 0..16u64 {
            let held = t
                .insert(1, slot, 1, body(slot as u8, 1 << 20))
                .expect("taken");
            if slot % 2 == 0 {
                spans.push(held.span(0, 1 << 20).expect("arena body"));
            }
        }
        // Evict the held ones first (least recent): their regions stay pinned.
        for slot in (1..16u64).step_by(2) {
            assert!(t.get(1, slot, 1).is_some());
        }
        // Room by bytes: the least recent body (0, held) goes; room in the arena: the least
        // recent body nobody holds (1) goes, not every held one before it.
        let taken = t.insert(1, 100, 1, body(100, 1 << 20)).expect("taken");
        assert_eq!(taken.bytes(0, 1 << 20), body(100, 1 << 20));
        assert!(t.get(1, 0, 1).is_none() && t.get(1, 1, 1).is_none());
        let left = (2..16u64).filter(|&s| t.get(1, s, 1).is_some()).count();
        assert_eq!(left, 14, "the tier kept its other bodies");
        // Every remaining arena body held as well: the next body is declined, nothing evicted
        // beyond the room by bytes.
        let mut all = Vec::new();
        for slot in (2..16u64).chain([100]) {
            all.push(
                t.get(1, slot, 1)
                    .expect("held")
                    .span(0, 1 << 20)
                    .expect("arena"),
            );
        }
        assert!(t.insert(1, 101, 1, body(101, 1 << 20)).is_none());
        assert!(t.bytes() >= 13 << 20, "not emptied: {} bytes", t.bytes());
        drop(all);
        drop(spans);
        assert!(
            t.insert(1, 102, 1, body(102, 1 << 20)).is_some(),
            "fits once released"
        );
    }

    #[test]
    fn a_full_tier_admits_a_unit_on_its_second_recent_read() {
        let mut t = RamTier::new(1 << 20);
        // Room: admitted at once.
        assert!(t.admit(1, unit(0, 0), 100_000));
        t.insert(1, unit(0, 0), 1, body(0, 100_000));
        for slot in 1..10u32 {
            assert!(t.admit(1, unit(slot, 0), 100_000));
            t.insert(1, unit(slot, 0), 1, body(slot as u8, 100_000));
        }
        // Full: a first read is declined, the second recent one admitted.
        assert!(!t.admit(1, unit(50, 0), 100_000));
        assert!(!t.admit(1, unit(51, 3), 100_000));
        assert!(t.admit(1, unit(50, 0), 100_000));
        assert!(
            !t.admit(1, unit(50, 0), 100_000),
            "admission consumed the history entry"
        );
        // The history covers about the tier's bytes: a unit read long ago is forgotten.
        assert!(!t.admit(1, unit(60, 0), 100_000));
        for slot in 100..120u32 {
            assert!(!t.admit(1, unit(slot, 0), 100_000));
        }
        assert!(!t.admit(1, unit(60, 0), 100_000));
        assert!(t.ghost_bytes <= 1 << 20);
        assert_eq!(
            t.ghost.len(),
            t.ghost_fifo
                .iter()
                .filter(|(k, s, _)| t.ghost.get(k) == Some(s))
                .count()
        );
        // Bodies above the per-object bound never enter.
        assert!(!t.admit(1, unit(70, 0), 200_000));
        t.remove_object(1, 0, 1);
        assert!(t.get(1, unit(0, 0), 1).is_none());
    }

    #[test]
    fn freed_regions_merge_so_a_large_body_fits_again() {
        let mut t = RamTier::new(2 << 20);
        for slot in 0..16u64 {
            t.insert(1, slot, 1, body(slot as u8, 128 * 1024));
        }
        for slot in 0..16u64 {
            t.remove(1, slot);
        }
        assert_eq!(t.bytes(), 0);
        // An eighth of 2 MiB is 256 KiB: needs merged neighbours after 128 KiB frees.
        assert!(matches!(
            t.insert(1, 99, 1, body(9, 256 * 1024)),
            Some(Held::Arena(_))
        ));
        let free = t.arena.as_ref().unwrap().free.borrow().clone();
        let free_total: u64 = free.values().sum();
        assert_eq!(free_total, (2 << 20) - 256 * 1024);
        assert_eq!(free.len(), 1, "one merged free region: {free:?}");
    }
}
