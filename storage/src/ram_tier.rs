//! The RAM tier: an LRU of hot objects' bodies, bounded in bytes per Store (shard), consulted
//! before the disk. Entries carry the slot generation, so a replaced object is never served.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

type Key = (u128, u32);

struct Entry {
    gen: u32,
    body: Bytes,
    stamp: u64,
}

/// Bounded LRU of object bodies.
pub struct RamTier {
    capacity_bytes: u64,
    bytes: u64,
    map: HashMap<Key, Entry>,
    lru: BTreeMap<u64, Key>,
    next_stamp: u64,
    /// Reads served from RAM.
    pub hits: u64,
    /// Reads that went to disk.
    pub misses: u64,
}

impl RamTier {
    /// An empty tier holding at most `capacity_bytes` of bodies.
    pub fn new(capacity_bytes: u64) -> RamTier {
        RamTier {
            capacity_bytes,
            bytes: 0,
            map: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            hits: 0,
            misses: 0,
        }
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
    pub fn get(&mut self, disk: u128, slot: u32, gen: u32) -> Option<Bytes> {
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

    /// Keep a body; evicts least recently used bodies to stay within capacity.
    pub fn insert(&mut self, disk: u128, slot: u32, gen: u32, body: Bytes) {
        let len = body.len() as u64;
        if len > self.object_bytes_max() {
            return;
        }
        self.remove(disk, slot);
        while self.bytes + len > self.capacity_bytes {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&key) {
                self.bytes -= e.body.len() as u64;
            }
        }
        self.next_stamp += 1;
        self.lru.insert(self.next_stamp, (disk, slot));
        self.map.insert(
            (disk, slot),
            Entry {
                gen,
                body,
                stamp: self.next_stamp,
            },
        );
        self.bytes += len;
    }

    /// Forget (disk, slot).
    pub fn remove(&mut self, disk: u128, slot: u32) {
        if let Some(e) = self.map.remove(&(disk, slot)) {
            self.lru.remove(&e.stamp);
            self.bytes -= e.body.len() as u64;
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

    #[test]
    fn lru_stays_within_capacity_and_checks_generation() {
        let mut t = RamTier::new(800);
        for slot in 0..10u32 {
            t.insert(1, slot, 1, Bytes::from(vec![slot as u8; 100]));
        }
        assert!(t.bytes() <= 800);
        assert!(t.get(1, 0, 1).is_none());
        assert_eq!(t.get(1, 9, 1).unwrap()[0], 9);
        assert!(t.get(1, 9, 2).is_none());
        assert!(t.get(1, 9, 1).is_none());
    }
}
