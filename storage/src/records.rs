//! Decoded records of objects with several chunks, kept per disk so a viewer reading such an
//! object chunk by chunk reads each chunk alone instead of the record again with every one.
//! Bounded in bytes (RECORDS_BYTES_MAX per disk, oldest out first). An entry is used only for
//! the same slot, generation, key hash, body length and extents as the RAM index holds now; a
//! chunk whose crc does not match a cached record drops the entry and is read again with its
//! record from the disk, so a stale entry can cost a read, never a wrong byte or a false fault.

use crate::layout::{Extent, Record};
use crate::ObjectInfo;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Bytes of cached records per disk at most (a record of a 1 GiB object in 1 MiB chunks is
/// ~4 KiB: about a thousand such objects).
pub(crate) const RECORDS_BYTES_MAX: usize = 4 << 20;

#[derive(Default)]
pub(crate) struct RecordCache {
    map: HashMap<u32, Rc<Record>>,
    order: VecDeque<u32>,
    bytes: usize,
}

fn cost(rec: &Record) -> usize {
    96 + rec.key.len() + rec.extents.len() * 8 + rec.chunk_crcs.len() * 4
}

impl RecordCache {
    /// The record of `obj` (slot `obj.slot`), if cached for this very object at `extents`.
    pub(crate) fn get(&self, obj: &ObjectInfo, extents: &[Extent]) -> Option<Rc<Record>> {
        let rec = self.map.get(&obj.slot)?;
        (rec.gen == obj.gen
            && rec.key_hash128 == obj.key_hash128
            && rec.body_len == obj.body_len
            && rec.extents == extents)
            .then(|| Rc::clone(rec))
    }

    /// Keep `rec` as the record of `slot` (it replaces an older one of the slot).
    pub(crate) fn insert(&mut self, slot: u32, rec: Rc<Record>) {
        let c = cost(&rec);
        if c > RECORDS_BYTES_MAX / 4 {
            return;
        }
        self.remove(slot);
        while self.bytes + c > RECORDS_BYTES_MAX {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(r) = self.map.remove(&old) {
                self.bytes -= cost(&r);
            }
        }
        self.bytes += c;
        self.map.insert(slot, rec);
        self.order.push_back(slot);
    }

    /// Forget the record of `slot` (its order entry goes when it reaches the front).
    pub(crate) fn remove(&mut self, slot: u32) {
        if let Some(r) = self.map.remove(&slot) {
            self.bytes -= cost(&r);
            self.order.retain(|&s| s != slot);
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(gen: u32, chunks: usize) -> Record {
        Record {
            gen,
            key_hash128: 7,
            body_len: chunks as u64 * 1024,
            chunk_bytes: 1024,
            key: b"k".to_vec(),
            extents: vec![Extent {
                start: 10,
                blocks: 1,
            }],
            chunk_crcs: vec![0; chunks],
            inline_body: None,
        }
    }

    fn info(slot: u32, gen: u32, chunks: usize) -> ObjectInfo {
        ObjectInfo {
            disk: crate::DiskId(0),
            slot,
            gen,
            body_len: chunks as u64 * 1024,
            key_hash128: 7,
            meta: bytes::Bytes::new(),
        }
    }

    #[test]
    fn only_the_same_object_at_the_same_extents_gets_the_record() {
        let mut c = RecordCache::default();
        c.insert(3, Rc::new(rec(5, 4)));
        let ext = rec(5, 4).extents;
        assert!(c.get(&info(3, 5, 4), &ext).is_some());
        assert!(c.get(&info(3, 6, 4), &ext).is_none(), "another generation");
        assert!(c.get(&info(3, 5, 3), &ext).is_none(), "another length");
        assert!(c.get(&info(4, 5, 4), &ext).is_none(), "another slot");
        let moved = [Extent {
            start: 11,
            blocks: 1,
        }];
        assert!(c.get(&info(3, 5, 4), &moved).is_none(), "other extents");
        c.remove(3);
        assert!(c.get(&info(3, 5, 4), &ext).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let mut c = RecordCache::default();
        for slot in 0..100_000u32 {
            c.insert(slot, Rc::new(rec(1, 64)));
            assert!(c.bytes() <= RECORDS_BYTES_MAX);
        }
        assert!(c.map.len() < 100_000);
        assert!(c.get(&info(99_999, 1, 64), &rec(1, 64).extents).is_some());
        assert!(c.get(&info(0, 1, 64), &rec(1, 64).extents).is_none());
        // Huge records are not kept at all.
        c.insert(1, Rc::new(rec(1, RECORDS_BYTES_MAX)));
        assert!(c
            .get(&info(1, 1, RECORDS_BYTES_MAX), &rec(1, 1).extents)
            .is_none());
    }
}
