//! byte-freq: prototype (documentation below is rewritten once the design settles).

use std::collections::VecDeque;

use super::lru_sp::grow_arena;
use super::{Evictor, PackedSize};

const NIL: u32 = u32::MAX;

/// Tuning knobs; [`ByteFreqParams::DEFAULT`] is what [`super::new_evictor`] uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ByteFreqParams {
    /// SMALL (probation window) share of the capacity, in percent.
    pub small_percent: u64,
    /// Hits while in SMALL that promote an object to MAIN.
    pub promote_hits: u8,
    /// Saturation of MAIN's CLOCK counter.
    pub freq_max: u8,
    /// Sketch estimate (this request included) at or above which a miss goes straight to MAIN.
    pub direct_main_count: u8,
    /// At SMALL's exit, a candidate whose sketch count beats MAIN's next victim's goes to MAIN.
    pub admit_compare: bool,
    /// Margin for `admit_compare`: candidate must exceed victim + margin.
    pub admit_margin: u8,
    /// Sketch counters per row per tracked object (rounded to a power of two).
    pub sketch_width_factor: u32,
    /// Halve the sketch after this many increments per tracked object.
    pub sketch_reset_factor: u32,
    /// Largest admitted object, in percent of the capacity.
    pub max_object_percent: u64,
    /// Bytes of ghost history as % of capacity (0 = the sketch is the only history).
    pub ghost_percent: u64,
    /// On entering MAIN, the CLOCK counter starts at the sketch count minus this (255 = 0).
    pub main_init_sub: u8,
}

impl ByteFreqParams {
    /// Defaults.
    pub const DEFAULT: ByteFreqParams = ByteFreqParams {
        small_percent: 10,
        promote_hits: 2,
        freq_max: 3,
        direct_main_count: 255,
        admit_compare: true,
        admit_margin: 0,
        sketch_width_factor: 1,
        sketch_reset_factor: 10,
        max_object_percent: 10,
        ghost_percent: 90,
        main_init_sub: 255,
    };
}

/// Admissions waiting for their insert.
pub const PENDING_MAX: usize = 256;

const QUEUE_NONE: u8 = 0;
const QUEUE_SMALL: u8 = 1;
const QUEUE_MAIN: u8 = 2;

#[derive(Clone, Copy, Debug)]
struct Node {
    prev: u32,
    next: u32,
    size: PackedSize,
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

/// Count-min sketch of 4-bit counters, 4 rows, halved every `reset_after` increments.
#[derive(Debug)]
struct Sketch {
    /// 16 counters per word; row r uses words [r * row_words, (r + 1) * row_words).
    words: Vec<u64>,
    row_mask: u32,
    increments: u64,
    reset_after: u64,
}

const SKETCH_ROWS: usize = 4;
const SKETCH_SEEDS: [u32; SKETCH_ROWS] = [0x9E37_79B9, 0x85EB_CA6B, 0xC2B2_AE35, 0x27D4_EB2F];

fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

impl Sketch {
    fn new(counters_per_row: u32, reset_after: u64) -> Self {
        let counters = counters_per_row.max(16).next_power_of_two();
        Sketch {
            words: vec![0; SKETCH_ROWS * (counters as usize / 16)],
            row_mask: counters - 1,
            increments: 0,
            reset_after: reset_after.max(1),
        }
    }

    fn slot(&self, row: usize, fingerprint: u32) -> (usize, u32) {
        let h = mix32(fingerprint ^ SKETCH_SEEDS[row]) & self.row_mask;
        let row_words = (self.row_mask as usize + 1) / 16;
        (row * row_words + (h / 16) as usize, (h % 16) * 4)
    }

    fn estimate(&self, fingerprint: u32) -> u8 {
        (0..SKETCH_ROWS)
            .map(|row| {
                let (w, shift) = self.slot(row, fingerprint);
                ((self.words[w] >> shift) & 0xF) as u8
            })
            .min()
            .unwrap_or(0)
    }

    fn increment(&mut self, fingerprint: u32, reset_after: u64) {
        self.reset_after = reset_after.max(1);
        let slots: [(usize, u32); SKETCH_ROWS] = std::array::from_fn(|r| self.slot(r, fingerprint));
        let min = slots
            .iter()
            .map(|&(w, s)| (self.words[w] >> s) & 0xF)
            .min()
            .unwrap_or(0);
        if min < 15 {
            // conservative update: only the minimal counters grow
            for &(w, s) in &slots {
                if (self.words[w] >> s) & 0xF == min {
                    self.words[w] += 1 << s;
                }
            }
        }
        self.increments += 1;
        if self.increments >= self.reset_after {
            self.increments = 0;
            for w in &mut self.words {
                *w = (*w >> 1) & 0x7777_7777_7777_7777;
            }
        }
    }
}

/// byte-freq state for one disk.
#[derive(Debug)]
pub struct ByteFreq {
    nodes: Vec<Node>,
    small: Queue,
    main: Queue,
    sketch: Sketch,
    ghost: super::byte_mode::Ghost,
    pending: VecDeque<(u32, u64, bool)>,
    small_capacity_bytes: u64,
    main_capacity_bytes: u64,
    max_object_bytes: u64,
    capacity_objects: u32,
    params: ByteFreqParams,
    has_evicted: bool,
    last_victim: u32,
    len: u32,
}

fn fingerprint_of(key_hash: u64) -> u32 {
    ((key_hash >> 32) as u32).max(1)
}

impl ByteFreq {
    /// An empty policy for ids below `capacity_objects` and `capacity_bytes` payload bytes.
    pub fn new(capacity_objects: u32, capacity_bytes: u64) -> Self {
        Self::with_params(capacity_objects, capacity_bytes, ByteFreqParams::DEFAULT)
    }

    /// Like [`ByteFreq::new`] with explicit knobs.
    pub fn with_params(capacity_objects: u32, capacity_bytes: u64, params: ByteFreqParams) -> Self {
        let pct = |p: u64| (u128::from(capacity_bytes) * u128::from(p) / 100) as u64;
        let small_capacity_bytes = pct(params.small_percent);
        let counters = capacity_objects.saturating_mul(params.sketch_width_factor);
        ByteFreq {
            nodes: Vec::new(),
            small: EMPTY_QUEUE,
            main: EMPTY_QUEUE,
            sketch: Sketch::new(
                counters,
                u64::from(capacity_objects) * u64::from(params.sketch_reset_factor),
            ),
            ghost: super::byte_mode::Ghost::new(
                pct(params.ghost_percent),
                capacity_objects as usize,
            ),
            pending: VecDeque::with_capacity(PENDING_MAX),
            small_capacity_bytes,
            main_capacity_bytes: capacity_bytes - small_capacity_bytes,
            max_object_bytes: pct(params.max_object_percent),
            capacity_objects,
            params,
            has_evicted: false,
            last_victim: NIL,
            len: 0,
        }
    }

    fn queue_mut(&mut self, queue: u8) -> &mut Queue {
        match queue {
            QUEUE_SMALL => &mut self.small,
            QUEUE_MAIN => &mut self.main,
            _ => unreachable!("byte-freq: no queue {queue}"),
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
        node.next = q.head;
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
            .unwrap_or_else(|| panic!("byte-freq: id {id} is not tracked"));
        assert!(
            node.queue != QUEUE_NONE,
            "byte-freq: id {id} is not tracked"
        );
        node
    }

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

    fn reset_period(&self) -> u64 {
        u64::from(self.params.sketch_reset_factor) * u64::from(self.len.max(64))
    }

    fn main_init(&self, id: u32) -> u8 {
        self.count(id)
            .saturating_sub(self.params.main_init_sub)
            .min(self.params.freq_max)
    }

    fn count(&self, id: u32) -> u8 {
        let fp = self.nodes[id as usize].fingerprint;
        if fp == 0 {
            0
        } else {
            self.sketch.estimate(fp)
        }
    }
}

impl Evictor for ByteFreq {
    fn insert(&mut self, id: u32, size_bytes: u64, _now_ticks: u32) {
        grow_arena(&mut self.nodes, id, self.capacity_objects, FREE_NODE);
        assert!(
            self.nodes[id as usize].queue == QUEUE_NONE,
            "byte-freq: id {id} inserted twice"
        );
        let (fingerprint, to_main) = match self.pending.iter().rposition(|p| p.1 == size_bytes) {
            Some(pos) => {
                let (fp, _, to_main) = self.pending.remove(pos).expect("position is in range");
                (fp, to_main)
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
        if to_main {
            self.nodes[id as usize].freq = self.main_init(id);
        }
        let queue =
            if to_main || (!self.has_evicted && self.small.bytes >= self.small_capacity_bytes) {
                QUEUE_MAIN
            } else {
                QUEUE_SMALL
            };
        self.push_head(id, queue);
        self.len += 1;
    }

    fn touch(&mut self, id: u32, _now_ticks: u32) {
        let node = self.tracked(id);
        let cap = self.params.freq_max.max(self.params.promote_hits);
        let node_mut = &mut self.nodes[id as usize];
        node_mut.freq = node_mut.freq.saturating_add(1).min(cap);
        if node.fingerprint != 0 {
            self.sketch.increment(node.fingerprint, self.reset_period());
        }
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
        self.len -= 1;
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
            let id = self.small.tail;
            if self.nodes[id as usize].freq >= self.params.promote_hits {
                self.unlink(id);
                self.nodes[id as usize].freq = self.main_init(id);
                self.push_head(id, QUEUE_MAIN);
                continue;
            }
            if self.params.admit_compare {
                if let Some(v) = self.main_victim() {
                    if self.count(id) > self.count(v).saturating_add(self.params.admit_margin) {
                        self.unlink(id);
                        self.nodes[id as usize].freq = self.main_init(id);
                        self.push_head(id, QUEUE_MAIN);
                        break Some(v);
                    }
                }
            }
            break Some(id);
        };
        self.last_victim = victim.unwrap_or(NIL);
        victim
    }

    fn admit(&mut self, key_hash: u64, size_bytes: u64, _now_ticks: u32) -> bool {
        let fingerprint = fingerprint_of(key_hash);
        self.sketch.increment(fingerprint, self.reset_period());
        let ghost_hit = self.ghost.take(fingerprint);
        let count = self.sketch.estimate(fingerprint);
        if size_bytes > self.max_object_bytes || size_bytes >= self.main_capacity_bytes {
            return false;
        }
        let to_main = ghost_hit || count >= self.params.direct_main_count;
        if self.pending.len() == PENDING_MAX {
            self.pending.pop_front();
        }
        self.pending.push_back((fingerprint, size_bytes, to_main));
        true
    }

    fn bytes_per_object(&self) -> usize {
        std::mem::size_of::<Node>()
            + self.sketch.words.len() * 8 / self.capacity_objects.max(1) as usize
    }
}
