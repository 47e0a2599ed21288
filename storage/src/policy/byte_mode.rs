//! Byte-hit mode: S3-FIFO (Yang et al., SOSP 2023, as in libCacheSim's `S3FIFO.c`) with a
//! bounded ghost table, for disks where origin bytes cost more than origin requests.
//!
//! Why not LRU-SP here: LRU-SP evicts a large new object (p = 1, cost t·s/p huge) before it can
//! build a count, and forgets the count on eviction, so large popular files are almost never
//! served from cache. S3-FIFO is size-neutral (a byte of a 300 MB file competes with a byte of a
//! manifest on request frequency alone, which is what byte hit ratio rewards) and remembers
//! recently evicted one-hit objects in a ghost table.
//!
//! ```text
//! admit(key, s)  → s ≥ small_capacity: refuse (never cache an object that would flush the
//!                  small queue); ghost hit ⇒ remember "goes to main" for this admission
//! insert(id, s)  → ghost hit: MRU of MAIN, else MRU of SMALL (before the first eviction,
//!                  a full SMALL spills into MAIN)
//! touch(id)      → freq = min(freq + 1, 3)           (no list movement: lazy promotion)
//! victim()       → MAIN over its share or SMALL empty:
//!                      MAIN tail with freq ≥ 1 → reinsert at MAIN head, freq −= 1 (2-bit CLOCK)
//!                      first MAIN tail with freq 0 → victim
//!                  else SMALL tail with freq ≥ 2 → move to MAIN head (freq 0)
//!                      first SMALL tail with freq < 2 → victim; on its remove() its
//!                      fingerprint enters the GHOST (FIFO)
//! ```
//!
//! Sizes: SMALL holds 10 % of `capacity_bytes`, MAIN the rest; the GHOST remembers evicted
//! SMALL objects whose sizes sum to at most 90 % of `capacity_bytes` and whose count is at most
//! `capacity_objects` (both bounds are enforced; oldest forgotten first).
//!
//! Identity: the ghost needs the key of an evicted object, but [`Evictor::insert`] only gets a
//! slot id. `admit(key_hash, size)` therefore records a pending admission (32-bit key
//! fingerprint, size, ghost hit) in a bounded list ([`PENDING_MAX`] entries, oldest dropped),
//! and `insert(id, size)` takes the most recent pending admission with the same size. A caller
//! that calls `admit` right before `insert` (the replay tool) gets exact S3-FIFO; a caller with
//! several fetches in flight may rarely swap the fingerprints of two same-size objects, which
//! only changes a placement decision. An `insert` with no pending admission (restart recovery)
//! goes to SMALL with an unknown key (it is not remembered in the ghost).
//!
//! Memory: 20 bytes per cached object ([`Node`]) plus at most one ghost entry per
//! `capacity_objects` (8 bytes in the FIFO ring + about 10 bytes in the hash table): 38 bytes
//! per object in the worst case.

use std::collections::{HashMap, VecDeque};

use super::lru_sp::grow_arena;
use super::{Evictor, PackedSize};

const NIL: u32 = u32::MAX;

/// Tuning knobs; [`ByteModeParams::DEFAULT`] is what [`super::new_evictor`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteModeParams {
    /// SMALL queue share of the capacity, in percent (libCacheSim: 10).
    pub small_percent: u64,
    /// Ghost byte budget as a share of the capacity, in percent (libCacheSim: 90).
    pub ghost_percent: u64,
    /// Hits while in SMALL needed to be promoted to MAIN (libCacheSim: 2).
    pub move_to_main_hits: u8,
    /// Saturation of the per-object hit counter in MAIN's CLOCK (libCacheSim: 3, 2 bits).
    pub freq_max: u8,
    /// A missed object whose long-term request count (frequency sketch, this request
    /// included) is at least this goes straight to MAIN; 0 = no sketch (plain S3-FIFO).
    pub sketch_main_min: u8,
    /// The sketch halves its counters every `sketch_age_factor × width` requests.
    pub sketch_age_factor: u32,
    /// A MAIN tail with no recent hit but a long-term count of at least this gets another
    /// round (at most `SKETCH_SPARES_MAX` per victim); 0 = off.
    pub sketch_keep_min: u8,
}

impl ByteModeParams {
    /// libCacheSim's S3FIFO defaults.
    pub const S3FIFO: ByteModeParams = ByteModeParams {
        small_percent: 10,
        ghost_percent: 90,
        move_to_main_hits: 2,
        freq_max: 3,
        sketch_main_min: 0,
        sketch_age_factor: 0,
        sketch_keep_min: 0,
    };
    /// The byte mode's defaults.
    pub const DEFAULT: ByteModeParams = ByteModeParams::S3FIFO;
}
/// Admissions waiting for their insert.
pub const PENDING_MAX: usize = 256;

const QUEUE_NONE: u8 = 0;
const QUEUE_SMALL: u8 = 1;
const QUEUE_MAIN: u8 = 2;

/// Per-object state; `queue == QUEUE_NONE` marks a free slot.
#[derive(Clone, Copy, Debug)]
struct Node {
    prev: u32,
    next: u32,
    size: PackedSize,
    /// Upper 32 bits of the key hash (0 = unknown).
    fingerprint: u32,
    freq: u8,
    queue: u8,
}

const FREE_NODE: Node = Node {
    prev: NIL,
    next: NIL,
    size: PackedSize(0),
    fingerprint: 0,
    freq: 0,
    queue: QUEUE_NONE,
};

const _: () = assert!(std::mem::size_of::<Node>() == 20);

/// A FIFO list: insert at `head`, evict from `tail`.
#[derive(Clone, Copy, Debug)]
struct Queue {
    head: u32,
    tail: u32,
    bytes: u64,
}

const EMPTY_QUEUE: Queue = Queue {
    head: NIL,
    tail: NIL,
    bytes: 0,
};

/// A bounded FIFO of fingerprints of objects evicted from SMALL.
#[derive(Debug)]
struct Ghost {
    /// fingerprint → sequence number (wrapping) of its live ring entry.
    live: HashMap<u32, u32>,
    /// (fingerprint, size); the entry at index i has sequence `front_seq + i`. Entries whose
    /// sequence is not the one in `live` are dead (taken or re-remembered).
    ring: VecDeque<(u32, PackedSize)>,
    front_seq: u32,
    live_bytes: u64,
    bytes_max: u64,
    entries_max: usize,
}

impl Ghost {
    fn new(bytes_max: u64, entries_max: usize) -> Self {
        Ghost {
            live: HashMap::new(),
            ring: VecDeque::new(),
            front_seq: 0,
            live_bytes: 0,
            bytes_max,
            entries_max,
        }
    }

    /// Forgets `fingerprint`; true if it was remembered.
    fn take(&mut self, fingerprint: u32) -> bool {
        let Some(seq) = self.live.remove(&fingerprint) else {
            return false;
        };
        // The ring entry stays (dead) until it reaches the front; its bytes leave now.
        let (_, size) = self.ring[seq.wrapping_sub(self.front_seq) as usize];
        self.live_bytes -= size.bytes();
        true
    }

    fn remember(&mut self, fingerprint: u32, size: PackedSize) {
        if self.entries_max == 0 || size.bytes() > self.bytes_max {
            return;
        }
        self.take(fingerprint);
        let seq = self.front_seq.wrapping_add(self.ring.len() as u32);
        self.ring.push_back((fingerprint, size));
        self.live.insert(fingerprint, seq);
        self.live_bytes += size.bytes();
        while self.live_bytes > self.bytes_max || self.ring.len() > self.entries_max {
            let Some((fp, old_size)) = self.ring.pop_front() else {
                break;
            };
            let old_seq = self.front_seq;
            self.front_seq = self.front_seq.wrapping_add(1);
            if self.live.get(&fp) == Some(&old_seq) {
                self.live.remove(&fp);
                self.live_bytes -= old_size.bytes();
            }
        }
    }
}

/// Count-min sketch of request counts with conservative update and periodic halving
/// (TinyLFU's "reset"): a long memory of how often each key was asked for, in fixed RAM.
#[derive(Debug)]
struct Sketch {
    /// `SKETCH_ROWS` rows of `width` saturating 8-bit counters.
    counters: Vec<u8>,
    width_mask: u64,
    increments: u64,
    age_every: u64,
}

const SKETCH_ROWS: usize = 4;
/// MAIN tails spared by their long-term count per victim search.
const SKETCH_SPARES_MAX: u32 = 16;
/// Most counters per row (4 rows × 4 Mi × 1 byte = 16 MiB).
const SKETCH_WIDTH_MAX: usize = 1 << 22;

impl Sketch {
    fn new(keys: u32, age_factor: u32) -> Self {
        let width = (keys as usize).next_power_of_two().clamp(1024, SKETCH_WIDTH_MAX);
        Sketch {
            counters: vec![0; SKETCH_ROWS * width],
            width_mask: width as u64 - 1,
            increments: 0,
            age_every: width as u64 * u64::from(age_factor.max(1)),
        }
    }

    fn slots(&self, fingerprint: u32) -> [usize; SKETCH_ROWS] {
        let mut h = u64::from(fingerprint).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut out = [0; SKETCH_ROWS];
        for (row, slot) in out.iter_mut().enumerate() {
            h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 29;
            *slot = row * (self.width_mask as usize + 1) + (h & self.width_mask) as usize;
        }
        out
    }

    fn estimate(&self, fingerprint: u32) -> u8 {
        self.slots(fingerprint).iter().map(|&i| self.counters[i]).min().unwrap_or(0)
    }

    /// Counts one request for `fingerprint`; returns its estimated count afterwards.
    fn increment(&mut self, fingerprint: u32) -> u8 {
        let slots = self.slots(fingerprint);
        let min = slots.iter().map(|&i| self.counters[i]).min().unwrap_or(0);
        let new = min.saturating_add(1);
        for i in slots {
            if self.counters[i] < new {
                self.counters[i] = new;
            }
        }
        self.increments += 1;
        if self.increments % self.age_every == 0 {
            for c in &mut self.counters {
                *c >>= 1;
            }
        }
        new
    }
}

/// S3-FIFO state for one disk.
#[derive(Debug)]
pub struct ByteMode {
    nodes: Vec<Node>,
    small: Queue,
    main: Queue,
    ghost: Ghost,
    sketch: Option<Sketch>,
    /// (fingerprint, size, ghost hit) of admissions not yet inserted, newest last.
    pending: VecDeque<(u32, u64, bool)>,
    small_capacity_bytes: u64,
    main_capacity_bytes: u64,
    capacity_objects: u32,
    params: ByteModeParams,
    has_evicted: bool,
    /// The id last returned by `victim`: its `remove` is an eviction (ghost), not a purge.
    last_victim: u32,
}

fn fingerprint_of(key_hash: u64) -> u32 {
    // 0 means "unknown key".
    ((key_hash >> 32) as u32).max(1)
}

impl ByteMode {
    /// An empty policy for ids below `capacity_objects` and `capacity_bytes` payload bytes.
    pub fn new(capacity_objects: u32, capacity_bytes: u64) -> Self {
        Self::with_params(capacity_objects, capacity_bytes, ByteModeParams::DEFAULT)
    }

    /// Like [`ByteMode::new`] with explicit knobs.
    pub fn with_params(capacity_objects: u32, capacity_bytes: u64, params: ByteModeParams) -> Self {
        assert!(params.small_percent <= 100 && params.move_to_main_hits >= 1 && params.freq_max >= 1);
        let small_capacity_bytes = (u128::from(capacity_bytes) * u128::from(params.small_percent) / 100) as u64;
        let ghost_bytes = (u128::from(capacity_bytes) * u128::from(params.ghost_percent) / 100) as u64;
        ByteMode {
            nodes: Vec::new(),
            small: EMPTY_QUEUE,
            main: EMPTY_QUEUE,
            ghost: Ghost::new(ghost_bytes, capacity_objects as usize),
            sketch: (params.sketch_main_min > 0 || params.sketch_keep_min > 0).then(|| Sketch::new(capacity_objects, params.sketch_age_factor)),
            pending: VecDeque::with_capacity(PENDING_MAX),
            small_capacity_bytes,
            main_capacity_bytes: capacity_bytes - small_capacity_bytes,
            capacity_objects,
            params,
            has_evicted: false,
            last_victim: NIL,
        }
    }

    fn queue_mut(&mut self, queue: u8) -> &mut Queue {
        match queue {
            QUEUE_SMALL => &mut self.small,
            QUEUE_MAIN => &mut self.main,
            _ => unreachable!("byte-mode: no queue {queue}"),
        }
    }

    fn push_head(&mut self, id: u32, queue: u8) {
        let size_bytes = self.nodes[id as usize].size.bytes();
        let q = *self.queue_mut(queue);
        if q.head == NIL {
            *self.queue_mut(queue) = Queue {
                head: id,
                tail: id,
                bytes: size_bytes,
            };
        } else {
            self.nodes[q.head as usize].prev = id;
            let q = self.queue_mut(queue);
            q.head = id;
            q.bytes += size_bytes;
        }
        let node = &mut self.nodes[id as usize];
        node.prev = NIL;
        node.next = q.head; // the old head, NIL if the queue was empty
        node.queue = queue;
    }

    fn unlink(&mut self, id: u32) {
        let Node {
            prev,
            next,
            size,
            queue,
            ..
        } = self.nodes[id as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        let q = self.queue_mut(queue);
        if prev == NIL {
            q.head = next;
        }
        if next == NIL {
            q.tail = prev;
        }
        q.bytes -= size.bytes();
        let node = &mut self.nodes[id as usize];
        node.prev = NIL;
        node.next = NIL;
        node.queue = QUEUE_NONE;
    }

    fn tracked(&self, id: u32) -> Node {
        let node = self
            .nodes
            .get(id as usize)
            .copied()
            .unwrap_or_else(|| panic!("byte-mode: id {id} is not tracked"));
        assert!(node.queue != QUEUE_NONE, "byte-mode: id {id} is not tracked");
        node
    }

    /// MAIN's 2-bit CLOCK: the first tail with freq 0, reinserting the others.
    fn main_victim(&mut self) -> Option<u32> {
        let mut spares = 0;
        loop {
            let id = self.main.tail;
            if id == NIL {
                return None;
            }
            let freq = self.nodes[id as usize].freq;
            if freq == 0 {
                let fingerprint = self.nodes[id as usize].fingerprint;
                let keep = match &self.sketch {
                    Some(sketch) if self.params.sketch_keep_min > 0 && fingerprint != 0 && spares < SKETCH_SPARES_MAX => {
                        sketch.estimate(fingerprint) >= self.params.sketch_keep_min
                    }
                    _ => false,
                };
                if !keep {
                    return Some(id);
                }
                spares += 1;
                self.unlink(id);
                self.push_head(id, QUEUE_MAIN);
                continue;
            }
            self.unlink(id);
            self.nodes[id as usize].freq = freq.min(self.params.freq_max) - 1;
            self.push_head(id, QUEUE_MAIN);
        }
    }

    /// SMALL's tail with fewer than `MOVE_TO_MAIN_HITS` hits, promoting the others to MAIN.
    fn small_victim(&mut self) -> Option<u32> {
        loop {
            let id = self.small.tail;
            if id == NIL {
                return None;
            }
            if self.nodes[id as usize].freq < self.params.move_to_main_hits {
                return Some(id);
            }
            self.unlink(id);
            self.nodes[id as usize].freq = 0;
            self.push_head(id, QUEUE_MAIN);
        }
    }
}

impl Evictor for ByteMode {
    fn insert(&mut self, id: u32, size_bytes: u64, _now_ticks: u32) {
        grow_arena(&mut self.nodes, id, self.capacity_objects, FREE_NODE);
        assert!(
            self.nodes[id as usize].queue == QUEUE_NONE,
            "byte-mode: id {id} inserted twice"
        );
        let (fingerprint, ghost_hit) = match self.pending.iter().rposition(|p| p.1 == size_bytes) {
            Some(pos) => {
                let (fp, _, ghost_hit) = self.pending.remove(pos).expect("position is in range");
                (fp, ghost_hit)
            }
            None => (0, false),
        };
        self.nodes[id as usize] = Node {
            prev: NIL,
            next: NIL,
            size: PackedSize::new(size_bytes),
            fingerprint,
            freq: 0,
            queue: QUEUE_NONE,
        };
        let queue = if ghost_hit || (!self.has_evicted && self.small.bytes >= self.small_capacity_bytes) {
            QUEUE_MAIN
        } else {
            QUEUE_SMALL
        };
        self.push_head(id, queue);
    }

    fn touch(&mut self, id: u32, _now_ticks: u32) {
        self.tracked(id);
        let cap = self.params.freq_max.max(self.params.move_to_main_hits);
        let fingerprint = self.nodes[id as usize].fingerprint;
        if let (Some(sketch), true) = (&mut self.sketch, fingerprint != 0) {
            sketch.increment(fingerprint);
        }
        let node = &mut self.nodes[id as usize];
        node.freq = node.freq.saturating_add(1).min(cap);
    }

    fn remove(&mut self, id: u32) {
        let node = self.tracked(id);
        self.unlink(id);
        if id == self.last_victim {
            self.last_victim = NIL;
            if node.queue == QUEUE_SMALL && node.fingerprint != 0 {
                self.ghost.remember(node.fingerprint, node.size);
            }
        }
        self.nodes[id as usize] = FREE_NODE;
    }

    fn victim(&mut self, _now_ticks: u32) -> Option<u32> {
        self.has_evicted = true;
        let victim = loop {
            if self.small.head == NIL && self.main.head == NIL {
                break None;
            }
            if self.main.bytes > self.main_capacity_bytes || self.small.head == NIL {
                break self.main_victim();
            }
            if let Some(id) = self.small_victim() {
                break Some(id);
            }
            // Every SMALL object was promoted: evict from MAIN.
        };
        self.last_victim = victim.unwrap_or(NIL);
        victim
    }

    fn admit(&mut self, key_hash: u64, size_bytes: u64, _now_ticks: u32) -> bool {
        let fingerprint = fingerprint_of(key_hash);
        let mut ghost_hit = self.ghost.take(fingerprint);
        if let Some(sketch) = &mut self.sketch {
            ghost_hit |= sketch.increment(fingerprint) >= self.params.sketch_main_min;
        }
        if size_bytes >= self.small_capacity_bytes {
            return false;
        }
        if self.pending.len() == PENDING_MAX {
            self.pending.pop_front();
        }
        self.pending.push_back((fingerprint, size_bytes, ghost_hit));
        true
    }

    fn bytes_per_object(&self) -> usize {
        // Node + worst case one ghost entry per object (ring 8 B, hash table 8 B + control
        // byte at 7/8 load).
        std::mem::size_of::<Node>() + std::mem::size_of::<(u32, PackedSize)>() + 10
    }
}
