//! LRU-SP (Cheng & Kambayashi, COMPSAC 2000), exactly as `bench/policy-kit/lrusp.py`.
//!
//! ```text
//! insert(id, s)  → p = 1, link at the MRU end of group ⌊log2(s/p)⌋
//! touch(id)      → p += 1, unlink, link at the MRU end of group ⌊log2(s/p)⌋ (maybe a new one)
//! victim(now)    → among the LRU tails of the non-empty groups, the highest t·s/p
//!                  (t = now − last access); p is forgotten when the object leaves
//! ```
//!
//! Layout: one flat arena of [`Node`]s indexed by slot id (20 bytes per object: prev, next,
//! last access, packed size, p), one head/tail pair per group, and the list of non-empty groups
//! in the order they became non-empty. The group of an object is not stored: it is recomputed
//! from (s, p), which is exact integer arithmetic.
//!
//! Tie-break (matches lrusp.py): the reference scans a Python dict of groups, whose order is the
//! order in which each group was (re)created — a group that empties is deleted and, when it
//! fills again, goes to the end — and keeps the first strictly higher cost. We keep the same
//! order in `group_order` and also take the first group with the strictly highest cost. Costs
//! are compared exactly (`t₁·s₁·p₂ > t₂·s₂·p₁` in u128) where the reference uses floats; the
//! two differ only for costs closer than one part in 2⁵³.

use super::{Evictor, PackedSize};

const NIL: u32 = u32::MAX;
/// Smallest group: ⌊log2(1 / (2³² − 1))⌋ = −32.
const GROUP_MIN: i32 = -32;
/// Groups −32..=63 (a `u64` size over p = 1 is below 2⁶⁴).
const GROUP_COUNT: usize = 96;

/// Per-object state; `hits == 0` marks a free slot.
#[derive(Clone, Copy, Debug)]
struct Node {
    prev: u32,
    next: u32,
    last_access_ticks: u32,
    size: PackedSize,
    /// p: accesses while cached (1 on insert), saturating.
    hits: u32,
}

const FREE_NODE: Node = Node {
    prev: NIL,
    next: NIL,
    last_access_ticks: 0,
    size: PackedSize(0),
    hits: 0,
};

const _: () = assert!(std::mem::size_of::<Node>() == 20);

/// One LRU list: `head` is the MRU end, `tail` the LRU end (the eviction candidate).
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

/// LRU-SP state for one disk.
#[derive(Debug)]
pub struct LruSp {
    nodes: Vec<Node>,
    groups: [List; GROUP_COUNT],
    /// Non-empty groups (as indexes into `groups`) in the order they became non-empty.
    group_order: Vec<u8>,
    capacity_objects: u32,
    len: u32,
}

/// ⌊log2(s/p)⌋ for s ≥ 0, p ≥ 1, in exact integer arithmetic (0/p counts as group −1, like
/// Python's `frexp(0.0)[1] - 1`).
pub(crate) fn size_group(size_bytes: u64, hits: u32) -> i32 {
    debug_assert!(hits >= 1);
    let p = u64::from(hits);
    if size_bytes == 0 {
        return -1;
    }
    if size_bytes >= p {
        return 63 - (size_bytes / p).leading_zeros() as i32;
    }
    // s < p: ⌊log2(s/p)⌋ = −k with k the smallest integer such that s·2^k ≥ p.
    let k0 = (63 - p.leading_zeros()) - (63 - size_bytes.leading_zeros());
    let k = if (u128::from(size_bytes) << k0) >= u128::from(p) {
        k0
    } else {
        k0 + 1
    };
    -(k as i32)
}

fn group_index(size_bytes: u64, hits: u32) -> usize {
    let g = size_group(size_bytes, hits);
    debug_assert!((GROUP_MIN..GROUP_MIN + GROUP_COUNT as i32).contains(&g));
    (g - GROUP_MIN) as usize
}

impl LruSp {
    /// An empty policy for ids below `capacity_objects`; memory grows with the highest id seen.
    pub fn new(capacity_objects: u32) -> Self {
        LruSp {
            nodes: Vec::new(),
            groups: [List {
                head: NIL,
                tail: NIL,
            }; GROUP_COUNT],
            group_order: Vec::with_capacity(GROUP_COUNT),
            capacity_objects,
            len: 0,
        }
    }

    /// Number of tracked objects.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether no object is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node(&self, id: u32) -> &Node {
        let node = self
            .nodes
            .get(id as usize)
            .unwrap_or_else(|| panic!("lru-sp: id {id} is not tracked"));
        assert!(node.hits != 0, "lru-sp: id {id} is not tracked");
        node
    }

    /// Links `id` at the MRU end of group `g`.
    fn link_mru(&mut self, id: u32, g: usize) {
        let list = self.groups[g];
        if list.head == NIL {
            self.group_order.push(g as u8);
            self.groups[g] = List { head: id, tail: id };
            let node = &mut self.nodes[id as usize];
            node.prev = NIL;
            node.next = NIL;
        } else {
            self.nodes[list.head as usize].prev = id;
            let node = &mut self.nodes[id as usize];
            node.prev = NIL;
            node.next = list.head;
            self.groups[g].head = id;
        }
    }

    /// Unlinks `id` from group `g`, deleting the group from `group_order` if it empties.
    fn unlink(&mut self, id: u32, g: usize) {
        let Node { prev, next, .. } = self.nodes[id as usize];
        if prev == NIL {
            self.groups[g].head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.groups[g].tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        if self.groups[g].head == NIL {
            let pos = self
                .group_order
                .iter()
                .position(|&x| usize::from(x) == g)
                .expect("lru-sp: non-empty group missing from group_order");
            self.group_order.remove(pos);
        }
    }
}

/// Grows `arena` so that `id` is a valid index, at most to `capacity` entries.
pub(crate) fn grow_arena<T: Copy>(arena: &mut Vec<T>, id: u32, capacity: u32, fill: T) {
    assert!(
        id < capacity,
        "policy: id {id} beyond capacity_objects {capacity}"
    );
    let need = id as usize + 1;
    if need > arena.len() {
        if need > arena.capacity() {
            let target = (arena.capacity() * 2)
                .max(need)
                .max(64)
                .min(capacity as usize);
            arena.reserve_exact(target - arena.len());
        }
        arena.resize(need, fill);
    }
}

impl Evictor for LruSp {
    fn insert(&mut self, id: u32, size_bytes: u64, now_ticks: u32) {
        grow_arena(&mut self.nodes, id, self.capacity_objects, FREE_NODE);
        assert!(
            self.nodes[id as usize].hits == 0,
            "lru-sp: id {id} inserted twice"
        );
        let size = PackedSize::new(size_bytes);
        self.nodes[id as usize] = Node {
            prev: NIL,
            next: NIL,
            last_access_ticks: now_ticks,
            size,
            hits: 1,
        };
        self.link_mru(id, group_index(size.bytes(), 1));
        self.len += 1;
    }

    fn touch(&mut self, id: u32, now_ticks: u32) {
        let node = *self.node(id);
        let old_group = group_index(node.size.bytes(), node.hits);
        let hits = node.hits.saturating_add(1);
        let new_group = group_index(node.size.bytes(), hits);
        self.unlink(id, old_group);
        let slot = &mut self.nodes[id as usize];
        slot.hits = hits;
        slot.last_access_ticks = now_ticks;
        self.link_mru(id, new_group);
    }

    fn remove(&mut self, id: u32) {
        let node = *self.node(id);
        self.unlink(id, group_index(node.size.bytes(), node.hits));
        self.nodes[id as usize] = FREE_NODE;
        self.len -= 1;
    }

    fn victim(&mut self, now_ticks: u32) -> Option<u32> {
        // (id, t·s, p) of the best tail so far; cost = t·s/p.
        let mut best: Option<(u32, u128, u128)> = None;
        for &g in &self.group_order {
            let id = self.groups[usize::from(g)].tail;
            let node = &self.nodes[id as usize];
            let age_ticks = now_ticks.wrapping_sub(node.last_access_ticks);
            let ts = u128::from(age_ticks) * u128::from(node.size.bytes());
            let p = u128::from(node.hits);
            let better = match best {
                None => true,
                Some((_, best_ts, best_p)) => ts * best_p > best_ts * p,
            };
            if better {
                best = Some((id, ts, p));
            }
        }
        best.map(|(id, _, _)| id)
    }

    fn admit(&mut self, _key_hash: u64, _size_bytes: u64, _now_ticks: u32) -> bool {
        true
    }

    fn bytes_per_object(&self) -> usize {
        std::mem::size_of::<Node>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// Replays `(key, size)` requests with request-index time, like `lrusp.simulate`; keys are
    /// used directly as ids.
    fn simulate(
        evictor: &mut dyn Evictor,
        requests: &[(u32, u64)],
        capacity_bytes: u64,
    ) -> Vec<bool> {
        let mut cached: HashMap<u32, u64> = HashMap::new();
        let mut used_bytes = 0;
        let mut hits = Vec::new();
        for (i, &(key, size_bytes)) in requests.iter().enumerate() {
            let now = i as u32;
            if cached.contains_key(&key) {
                evictor.touch(key, now);
                hits.push(true);
                continue;
            }
            hits.push(false);
            if size_bytes > capacity_bytes || !evictor.admit(u64::from(key), size_bytes, now) {
                continue;
            }
            while used_bytes + size_bytes > capacity_bytes {
                let victim = evictor.victim(now).expect("victim while over capacity");
                evictor.remove(victim);
                used_bytes -= cached.remove(&victim).expect("victim is cached");
            }
            evictor.insert(key, size_bytes, now);
            cached.insert(key, size_bytes);
            used_bytes += size_bytes;
        }
        hits
    }

    /// The self-check of lrusp.py (`python3 lrusp.py` prints [0, 0, 0, 1, 1, 0, 0, 1]).
    ///
    /// capacity 125; i = request index = clock
    /// i0 key1 s100 miss: g = ⌊log2 100⌋ = 6                 groups {6:[1]}            used 100
    /// i1 key2 s10  miss: g = 3                               {6:[1], 3:[2]}            used 110
    /// i2 key3 s10  miss: g = 3                               {6:[1], 3:[2,3]}          used 120
    /// i3 key1 hit: p = 2, s/p = 50 → g 5 (group 6 deleted)   {3:[2,3], 5:[1]}
    /// i4 key1 hit: p = 3, s/p = 33 → g 5, last = 4
    /// i5 key4 s10 miss: 130 > 125 → tails: key2 t=4 → 4·10/1 = 40, key1 t=1 → 100/3 = 33
    ///                   evict key2; insert key4              {3:[3,4], 5:[1]}          used 120
    /// i6 key2 s10 miss: tails: key3 t=4 → 40, key1 t=2 → 200/3 = 67 → evict key1 (the big,
    ///                   old, unpopular one); insert key2     {3:[3,4,2]}               used 30
    /// i7 key3 hit.
    #[test]
    fn lrusp_py_self_check_eviction_order() {
        let ids = [1, 2, 3, 1, 1, 4, 2, 3];
        let sizes = [100, 10, 10, 100, 100, 10, 10, 10];
        let requests: Vec<(u32, u64)> = ids.iter().copied().zip(sizes.iter().copied()).collect();
        let mut policy = LruSp::new(8);
        let hits = simulate(&mut policy, &requests, 125);
        let hits: Vec<u8> = hits.into_iter().map(u8::from).collect();
        assert_eq!(hits, vec![0, 0, 0, 1, 1, 0, 0, 1]);
    }

    #[test]
    fn victim_is_the_highest_cost_tail_and_ties_go_to_the_older_group() {
        let mut policy = LruSp::new(8);
        // Two groups created in order g3 (id 0), then g6 (id 1).
        policy.insert(0, 8, 0); // g3
        policy.insert(1, 64, 0); // g6
                                 // now = 8: costs 8·8 = 64 and 8·64 = 512 → id 1.
        assert_eq!(policy.victim(8), Some(1));
        // Equal costs: id 0 (g3) t=8 s=8 → 64; id 2 (g4, created after g3) t=4 s=16 → 64.
        policy.remove(1);
        policy.insert(2, 16, 4);
        assert_eq!(policy.victim(8), Some(0));
        // Group 3 empties and is recreated last: now group 4 is first in order.
        policy.remove(0);
        policy.insert(0, 8, 0);
        assert_eq!(policy.victim(8), Some(2));
    }

    #[test]
    fn size_group_is_floor_log2_of_s_over_p() {
        let cases: [(u64, u32, i32); 12] = [
            (1, 1, 0),
            (2, 1, 1),
            (3, 1, 1),
            (100, 1, 6),
            (100, 2, 5),
            (100, 3, 5),
            (1, 2, -1),
            (1, 3, -2),
            (2, 3, -1),
            (0, 1, -1),
            (1, u32::MAX, -32),
            (u64::MAX, 1, 63),
        ];
        for (s, p, g) in cases {
            assert_eq!(size_group(s, p), g, "s={s} p={p}");
            if s > 0 && s < (1 << 50) {
                let float_g = ((s as f64) / f64::from(p)).log2().floor() as i32;
                assert_eq!(size_group(s, p), float_g, "s={s} p={p}");
            }
        }
    }

    /// O(n) model: per object (size, p, last access, recency stamp); a group's LRU tail is its
    /// member with the oldest stamp; groups are scanned in the order they were (re)created.
    #[derive(Default)]
    struct NaiveLruSp {
        objects: HashMap<u32, (u64, u32, u32, u64)>,
        group_created: HashMap<i32, u64>,
        stamp: u64,
    }

    impl NaiveLruSp {
        fn group_of(&self, id: u32) -> i32 {
            let (s, p, _, _) = self.objects[&id];
            ((s as f64) / f64::from(p)).log2().floor() as i32
        }
        fn leave_group(&mut self, id: u32) {
            let g = self.group_of(id);
            let others = self
                .objects
                .keys()
                .filter(|&&other| other != id && self.group_of(other) == g)
                .count();
            if others == 0 {
                self.group_created.remove(&g);
            }
        }
        fn join_group(&mut self, id: u32) {
            let g = self.group_of(id);
            self.stamp += 1;
            self.objects.get_mut(&id).unwrap().3 = self.stamp;
            let stamp = self.stamp;
            self.group_created.entry(g).or_insert(stamp);
        }
    }

    impl Evictor for NaiveLruSp {
        fn insert(&mut self, id: u32, size_bytes: u64, now_ticks: u32) {
            self.objects.insert(id, (size_bytes, 1, now_ticks, 0));
            self.join_group(id);
        }
        fn touch(&mut self, id: u32, now_ticks: u32) {
            self.leave_group(id);
            let o = self.objects.get_mut(&id).unwrap();
            o.1 += 1;
            o.2 = now_ticks;
            self.join_group(id);
        }
        fn remove(&mut self, id: u32) {
            self.leave_group(id);
            self.objects.remove(&id);
        }
        fn victim(&mut self, now_ticks: u32) -> Option<u32> {
            let mut groups: Vec<(u64, i32)> =
                self.group_created.iter().map(|(&g, &c)| (c, g)).collect();
            groups.sort();
            let mut best: Option<(f64, u32)> = None;
            for (_, g) in groups {
                let tail = self
                    .objects
                    .iter()
                    .filter(|(&id, _)| self.group_of(id) == g)
                    .min_by_key(|(_, o)| o.3)
                    .map(|(&id, _)| id)
                    .unwrap();
                let (s, p, last, _) = self.objects[&tail];
                let cost = f64::from(now_ticks - last) * s as f64 / f64::from(p);
                if !matches!(best, Some((c, _)) if cost <= c) {
                    best = Some((cost, tail));
                }
            }
            best.map(|(_, id)| id)
        }
        fn admit(&mut self, _: u64, _: u64, _: u32) -> bool {
            true
        }
        fn bytes_per_object(&self) -> usize {
            0
        }
    }

    #[test]
    fn agrees_with_naive_model_on_random_sequences() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..60 {
            let keys = rng.gen_range(2..40u32);
            let sizes: Vec<u64> = (0..keys)
                .map(|_| match rng.gen_range(0..3) {
                    0 => rng.gen_range(1..16),
                    1 => rng.gen_range(1..4096),
                    _ => rng.gen_range(1..1_000_000),
                })
                .collect();
            let requests: Vec<(u32, u64)> = (0..rng.gen_range(50..600))
                .map(|_| {
                    // Skewed popularity so that p grows and objects change groups.
                    let k = (rng.gen_range(0.0f64..1.0).powi(3) * f64::from(keys)) as u32;
                    (k, sizes[k as usize])
                })
                .collect();
            let total: u64 = sizes.iter().sum();
            let capacity_bytes = rng.gen_range(1..=total.max(2));
            let mut fast = LruSp::new(keys);
            let mut naive = NaiveLruSp::default();
            let a = simulate(&mut fast, &requests, capacity_bytes);
            let b = simulate(&mut naive, &requests, capacity_bytes);
            assert_eq!(a, b, "round {round}: capacity {capacity_bytes}");
            assert_eq!(fast.len() as usize, naive.objects.len());
        }
    }

    #[test]
    fn bytes_per_object_is_20() {
        assert_eq!(LruSp::new(1).bytes_per_object(), 20);
    }

    #[test]
    #[should_panic(expected = "beyond capacity_objects")]
    fn id_beyond_capacity_is_a_caller_bug() {
        LruSp::new(4).insert(4, 1, 0);
    }
}
