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
//! Memory: 20 bytes per cached object ([`Node`]) plus at most one live ghost entry per
//! `capacity_objects` (up to 2 × 8 bytes in the FIFO ring, which is compacted when half of it is
//! dead, + about 10 bytes in the hash table): 46 bytes per object in the worst case.
//!
//! Measured (`bench/policy_compare.sh`, and the kit's four 3M-request traces at 1/5/10 % of
//! the working set): the decisions equal libCacheSim's S3FIFO request for request, so the byte
//! hit ratio is S3FIFO's on every configuration (e.g. base α=0.8 5 %: BHR 0.437 vs LRU-SP 0.324).
//! Variants tried on the 12 configurations, none kept because none was better on all of them:
//! SMALL 5–8 % (+0.1–0.2 point BHR on base and churn α=1.0, −0.03–0.15 point on churn α=0.8),
//! GHOST 50/70/110/300 % (300 %: −1.3 points on base α=0.8 5 %), MAIN counter 3 bits,
//! promotion after 1 hit, and a count-min sketch of long-term frequency (4×8-bit rows, halving)
//! used to send frequent misses straight to MAIN (−2.5 points) or to spare frequent MAIN tails
//! (up to −2 points at 1 % on churn). [`ByteModeParams`] keeps the first knobs for experiments.

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
}

impl ByteModeParams {
    /// libCacheSim's S3FIFO defaults.
    pub const S3FIFO: ByteModeParams = ByteModeParams {
        small_percent: 10,
        ghost_percent: 90,
        move_to_main_hits: 2,
        freq_max: 3,
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
pub(crate) struct Ghost {
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
    pub(crate) fn new(bytes_max: u64, entries_max: usize) -> Self {
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
    pub(crate) fn take(&mut self, fingerprint: u32) -> bool {
        let Some(seq) = self.live.remove(&fingerprint) else {
            return false;
        };
        // The ring entry stays (dead) until it reaches the front; its bytes leave now.
        let (_, size) = self.ring[seq.wrapping_sub(self.front_seq) as usize];
        self.live_bytes -= size.bytes();
        true
    }

    pub(crate) fn remember(&mut self, fingerprint: u32, size: PackedSize) {
        if self.entries_max == 0 || size.bytes() > self.bytes_max {
            return;
        }
        self.take(fingerprint);
        let seq = self.front_seq.wrapping_add(self.ring.len() as u32);
        self.ring.push_back((fingerprint, size));
        self.live.insert(fingerprint, seq);
        self.live_bytes += size.bytes();
        while self.live_bytes > self.bytes_max || self.live.len() > self.entries_max {
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
        if self.ring.len() > 2 * self.entries_max {
            self.compact();
        }
    }

    /// Drops dead ring entries (amortised O(1): at least half the ring is dead).
    fn compact(&mut self) {
        let mut kept = VecDeque::with_capacity(self.live.len());
        for (i, &(fp, size)) in self.ring.iter().enumerate() {
            let seq = self.front_seq.wrapping_add(i as u32);
            if self.live.get(&fp) == Some(&seq) {
                self.live.insert(fp, kept.len() as u32);
                kept.push_back((fp, size));
            }
        }
        self.ring = kept;
        self.front_seq = 0;
    }
}

/// S3-FIFO state for one disk.
#[derive(Debug)]
pub struct ByteMode {
    nodes: Vec<Node>,
    small: Queue,
    main: Queue,
    ghost: Ghost,
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
        assert!(
            params.small_percent <= 100 && params.move_to_main_hits >= 1 && params.freq_max >= 1
        );
        let small_capacity_bytes =
            (u128::from(capacity_bytes) * u128::from(params.small_percent) / 100) as u64;
        let ghost_bytes =
            (u128::from(capacity_bytes) * u128::from(params.ghost_percent) / 100) as u64;
        ByteMode {
            nodes: Vec::new(),
            small: EMPTY_QUEUE,
            main: EMPTY_QUEUE,
            ghost: Ghost::new(ghost_bytes, capacity_objects as usize),
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
        assert!(
            node.queue != QUEUE_NONE,
            "byte-mode: id {id} is not tracked"
        );
        node
    }

    /// MAIN's 2-bit CLOCK: the first tail with freq 0, reinserting the others.
    fn main_victim(&mut self) -> Option<u32> {
        loop {
            let id = self.main.tail;
            if id == NIL {
                return None;
            }
            let freq = self.nodes[id as usize].freq;
            if freq == 0 {
                return Some(id);
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
        let queue =
            if ghost_hit || (!self.has_evicted && self.small.bytes >= self.small_capacity_bytes) {
                QUEUE_MAIN
            } else {
                QUEUE_SMALL
            };
        self.push_head(id, queue);
    }

    fn touch(&mut self, id: u32, _now_ticks: u32) {
        self.tracked(id);
        let cap = self.params.freq_max.max(self.params.move_to_main_hits);
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
        let ghost_hit = self.ghost.take(fingerprint);
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
        // Node + worst case one live ghost entry per object: ring up to 2 × 8 B (dead entries
        // until compaction), hash table 8 B + control byte at 7/8 load.
        std::mem::size_of::<Node>() + 2 * std::mem::size_of::<(u32, PackedSize)>() + 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    fn key_hash(key: u32) -> u64 {
        u64::from(key + 1) << 32
    }

    /// Replays `(key, size)` requests through the Evictor interface (keys are the ids).
    fn simulate(policy: &mut ByteMode, requests: &[(u32, u64)], capacity_bytes: u64) -> Vec<bool> {
        let mut cached: HashMap<u32, u64> = HashMap::new();
        let mut used_bytes = 0;
        let mut hits = Vec::new();
        for (i, &(key, size_bytes)) in requests.iter().enumerate() {
            let now = i as u32;
            if cached.contains_key(&key) {
                policy.touch(key, now);
                hits.push(true);
                continue;
            }
            hits.push(false);
            if size_bytes > capacity_bytes || !policy.admit(key_hash(key), size_bytes, now) {
                continue;
            }
            while used_bytes + size_bytes > capacity_bytes {
                let victim = policy.victim(now).expect("victim while over capacity");
                policy.remove(victim);
                used_bytes -= cached.remove(&victim).expect("victim is cached");
            }
            policy.insert(key, size_bytes, now);
            cached.insert(key, size_bytes);
            used_bytes += size_bytes;
        }
        hits
    }

    /// libCacheSim's S3FIFO.c written with plain deques (front = oldest): the model.
    fn naive_s3fifo(requests: &[(u32, u64)], capacity_bytes: u64) -> Vec<bool> {
        let small_cap = capacity_bytes / 10;
        let main_cap = capacity_bytes - small_cap;
        let ghost_cap = capacity_bytes * 9 / 10;
        let (mut small, mut main) = (
            VecDeque::<(u32, u64, u8)>::new(),
            VecDeque::<(u32, u64, u8)>::new(),
        );
        let mut ghost = VecDeque::<(u32, u64)>::new();
        let bytes = |q: &VecDeque<(u32, u64, u8)>| q.iter().map(|e| e.1).sum::<u64>();
        let mut has_evicted = false;
        let mut hits = Vec::new();
        for &(k, s) in requests {
            if let Some(e) = small.iter_mut().chain(main.iter_mut()).find(|e| e.0 == k) {
                e.2 = (e.2 + 1).min(3);
                hits.push(true);
                continue;
            }
            hits.push(false);
            let ghost_hit = match ghost.iter().position(|e| e.0 == k) {
                Some(pos) => {
                    ghost.remove(pos);
                    true
                }
                None => false,
            };
            if s >= small_cap {
                continue;
            }
            while bytes(&small) + bytes(&main) + s > capacity_bytes {
                has_evicted = true;
                if bytes(&main) > main_cap || small.is_empty() {
                    loop {
                        let (key, size, freq) = main.pop_front().unwrap();
                        if freq == 0 {
                            break;
                        }
                        main.push_back((key, size, freq.min(3) - 1));
                    }
                } else {
                    while let Some((key, size, freq)) = small.pop_front() {
                        if freq >= 2 {
                            main.push_back((key, size, 0));
                        } else {
                            if size <= ghost_cap {
                                ghost.push_back((key, size));
                            }
                            while ghost.iter().map(|e| e.1).sum::<u64>() > ghost_cap {
                                ghost.pop_front();
                            }
                            break;
                        }
                    }
                }
            }
            if ghost_hit || (!has_evicted && bytes(&small) >= small_cap) {
                main.push_back((k, s, 0));
            } else {
                small.push_back((k, s, 0));
            }
        }
        hits
    }

    #[test]
    fn default_byte_mode_is_s3fifo_exactly_on_random_sequences() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..80 {
            let keys = rng.gen_range(2..60u32);
            let sizes: Vec<u64> = (0..keys).map(|_| rng.gen_range(1..2_000)).collect();
            let requests: Vec<(u32, u64)> = (0..rng.gen_range(50..800))
                .map(|_| {
                    let k = (rng.gen_range(0.0f64..1.0).powi(2) * f64::from(keys)) as u32;
                    (k, sizes[k as usize])
                })
                .collect();
            let total: u64 = sizes.iter().sum();
            let capacity_bytes = rng.gen_range(10..=total.max(11));
            let mut policy = ByteMode::with_params(keys, capacity_bytes, ByteModeParams::S3FIFO);
            let fast = simulate(&mut policy, &requests, capacity_bytes);
            assert_eq!(
                fast,
                naive_s3fifo(&requests, capacity_bytes),
                "round {round} capacity {capacity_bytes}"
            );
        }
    }

    #[test]
    fn ghost_is_bounded_by_count_and_bytes() {
        let mut ghost = Ghost::new(1_000, 8);
        for fp in 1..=100u32 {
            ghost.remember(fp, PackedSize::new(10));
            if fp % 3 == 0 {
                assert!(ghost.take(fp - 1));
            }
            assert!(ghost.live.len() <= 8);
            assert!(ghost.ring.len() <= 2 * 8 + 1);
            assert!(ghost.live_bytes <= 1_000);
        }
        assert!(ghost.take(100));
        assert!(!ghost.take(100));
        assert!(!ghost.take(1), "the oldest fingerprints were forgotten");
        let mut ghost = Ghost::new(25, 100);
        for fp in 1..=10u32 {
            ghost.remember(fp, PackedSize::new(10));
        }
        assert_eq!(ghost.live.len(), 2);
        assert_eq!(ghost.live_bytes, 20);
    }

    #[test]
    fn objects_as_large_as_the_small_queue_are_not_admitted() {
        let mut policy = ByteMode::new(4, 1_000);
        assert!(!policy.admit(1 << 40, 100, 0));
        assert!(policy.admit(1 << 40, 99, 0));
    }

    #[test]
    fn insert_takes_the_pending_admission_of_the_same_size() {
        let mut policy = ByteMode::new(4, 1_000);
        assert!(policy.admit(7 << 32, 10, 0));
        assert!(policy.admit(9 << 32, 20, 0));
        policy.insert(0, 10, 0);
        assert_eq!(policy.nodes[0].fingerprint, 7);
        policy.insert(1, 30, 0); // no admission: unknown key (restart recovery)
        assert_eq!(policy.nodes[1].fingerprint, 0);
        assert_eq!(policy.pending.len(), 1);
    }

    #[test]
    fn evicted_one_hit_object_comes_back_into_main() {
        let mut policy = ByteMode::new(32, 100);
        let mut requests: Vec<(u32, u64)> = vec![(0, 5)];
        requests.extend((1..=30).map(|k| (k, 5))); // push key 0 out of SMALL into the ghost
        requests.push((0, 5));
        let hits = simulate(&mut policy, &requests, 100);
        assert!(!hits[31]);
        assert_eq!(policy.nodes[0].queue, QUEUE_MAIN);
    }
}
