//! Replicas: a shard's copies of small objects whose disk another shard owns.
//!
//! A hit for a key on another shard's disk costs two cross-thread messages (the request to the
//! owning shard, which writes to the viewer's socket, and its outcome back). For a small object
//! that is most of the hit's cost, so the owner ships the body once with the first such hit,
//! and the accepting shard serves the next hits of the key itself, exactly as a RAM-tier hit.
//! The owner keeps every write, eviction and disk decision; a replica is a read-only copy of a
//! committed object and goes away:
//! - when its own freshness ends (the next request crosses to the owner, which revalidates);
//! - on a purge or an unsafe-method invalidation (both reach every shard);
//! - all at once when the node's replica epoch moves (a disk going offline or online: the keys'
//!   owners change);
//! - first in, first out, beyond `storage.replica_bytes_max` per shard.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

use crate::freshness::Meta;

/// One copy: the stored head and the whole body.
pub struct Replica {
    pub meta: Rc<Meta>,
    pub body: Bytes,
    epoch: u64,
    seq: u64,
}

impl Replica {
    fn bytes(&self, key: &str) -> u64 {
        (key.len() + self.body.len() + self.meta.header_block.len()) as u64
    }
}

/// A shard's replicas (used on its thread only).
pub struct Replicas {
    map: HashMap<String, Replica>,
    /// Insertion order (key, seq): entries whose seq no longer matches are gone already.
    order: VecDeque<(String, u64)>,
    seq: u64,
    bytes: u64,
    bytes_max: u64,
    object_bytes_max: u64,
}

impl Replicas {
    pub fn new(bytes_max: u64, object_bytes_max: u64) -> Replicas {
        Replicas {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            bytes_max,
            object_bytes_max,
        }
    }

    /// Replicas are made at all (a bound above zero).
    pub fn enabled(&self) -> bool {
        self.bytes_max > 0 && self.object_bytes_max > 0
    }

    /// The largest body a replica holds.
    pub fn object_bytes_max(&self) -> u64 {
        self.object_bytes_max
    }

    /// Bytes held (keys, heads and bodies).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The replica of `key` made in `epoch` (one of an older epoch is dropped).
    pub fn get(&mut self, key: &str, epoch: u64) -> Option<&Replica> {
        if self.map.get(key)?.epoch != epoch {
            self.remove(key);
            return None;
        }
        self.map.get(key)
    }

    /// Keep a copy of `key` (replacing an older one); too large a body is not kept.
    pub fn insert(&mut self, key: &str, meta: Rc<Meta>, body: Bytes, epoch: u64) {
        if !self.enabled() || body.len() as u64 > self.object_bytes_max {
            return;
        }
        self.remove(key);
        self.seq += 1;
        let r = Replica {
            meta,
            body,
            epoch,
            seq: self.seq,
        };
        let size = r.bytes(key);
        if size > self.bytes_max {
            return;
        }
        while self.bytes + size > self.bytes_max {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|r| r.seq == seq) {
                self.remove(&old);
            }
        }
        self.bytes += size;
        self.order.push_back((key.to_string(), self.seq));
        self.map.insert(key.to_string(), r);
        // Entries of removed or replaced replicas linger in `order` until popped: keep them
        // from outgrowing the live ones.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|r| r.seq == *seq));
        }
    }

    /// Drop the replica of `key`; true if there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(r) => {
                self.bytes -= r.bytes(key);
                true
            }
            None => false,
        }
    }

    /// Drop every replica whose key starts with `prefix`; returns how many.
    pub fn remove_prefix(&mut self, prefix: &str) -> usize {
        let keys: Vec<String> = self
            .map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.iter().filter(|k| self.remove(k)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Rc<Meta> {
        Rc::new(Meta {
            status: 200,
            stored_at_s: 0,
            initial_age_s: 0,
            lifetime_s: 60,
            stale_while_revalidate_s: 0,
            stale_if_error_s: 0,
            always_revalidate: false,
            must_revalidate: false,
            etag: None,
            last_modified: None,
            header_block: Bytes::new(),
            vary: None,
        })
    }

    #[test]
    fn bounded_first_in_first_out_and_by_epoch() {
        let mut r = Replicas::new(3 * 1010, 1000);
        for k in ["k0", "k1", "k2", "k3"] {
            r.insert(k, meta(), Bytes::from(vec![0u8; 1000]), 1);
        }
        assert!(r.bytes() <= 3 * 1010);
        assert!(r.get("k0", 1).is_none(), "the oldest went first");
        assert!(r.get("k3", 1).is_some());
        // too large a body is never kept
        r.insert("big", meta(), Bytes::from(vec![0u8; 1001]), 1);
        assert!(r.get("big", 1).is_none());
        // another epoch: gone
        assert!(r.get("k3", 2).is_none());
        assert!(r.get("k3", 1).is_none());
        assert_eq!(r.remove_prefix("k"), 2);
        assert_eq!(r.bytes(), 0);
        assert!(r.is_empty());
        // replacing one key many times keeps the order list bounded
        for _ in 0..10_000 {
            r.insert("same", meta(), Bytes::from_static(b"x"), 1);
        }
        assert!(r.order.len() <= 2 * r.len() + 65);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn disabled_keeps_nothing() {
        let mut r = Replicas::new(0, 1000);
        r.insert("k", meta(), Bytes::from_static(b"x"), 1);
        assert!(r.get("k", 1).is_none());
    }
}
