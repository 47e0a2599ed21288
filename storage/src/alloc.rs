//! Space allocator: free extents of 4 KiB blocks, coalesced on free. Objects take one or more
//! extents; the allocator first tries to continue right after the caller's previous extent (so
//! most objects are contiguous), then best fit, then the largest free extent (fragmenting rather
//! than failing, so every free block is usable).

use crate::layout::Extent;
use std::collections::{BTreeMap, BTreeSet};

/// Free extents of one disk's data area.
pub struct FreeMap {
    by_start: BTreeMap<u32, u32>,
    by_len: BTreeSet<(u32, u32)>,
    free_blocks: u64,
}

impl FreeMap {
    /// An empty map (nothing free).
    pub fn new() -> FreeMap {
        FreeMap {
            by_start: BTreeMap::new(),
            by_len: BTreeSet::new(),
            free_blocks: 0,
        }
    }

    /// Build from the used extents of `[start, end)`; returns Err(i) if used extent i overlaps an
    /// earlier one or leaves the area (the caller drops that object).
    pub fn from_used(start: u32, end: u32, used: &mut [(Extent, usize)]) -> (FreeMap, Vec<usize>) {
        used.sort_unstable_by_key(|(e, _)| e.start);
        let mut map = FreeMap::new();
        let mut bad = Vec::new();
        let mut cursor = start;
        for (e, owner) in used.iter() {
            let e_end = u64::from(e.start) + u64::from(e.blocks);
            if e.start < cursor || e_end > u64::from(end) || e.blocks == 0 {
                bad.push(*owner);
                continue;
            }
            if e.start > cursor {
                map.insert(cursor, e.start - cursor);
            }
            cursor = e_end as u32;
        }
        if end > cursor {
            map.insert(cursor, end - cursor);
        }
        (map, bad)
    }

    /// Free blocks.
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }

    /// Number of free extents.
    pub fn extents(&self) -> usize {
        self.by_start.len()
    }

    fn insert(&mut self, start: u32, blocks: u32) {
        self.by_start.insert(start, blocks);
        self.by_len.insert((blocks, start));
        self.free_blocks += u64::from(blocks);
    }

    fn take(&mut self, start: u32, blocks: u32) {
        self.by_start.remove(&start);
        self.by_len.remove(&(blocks, start));
        self.free_blocks -= u64::from(blocks);
    }

    /// Allocate up to `want` blocks (at least one), preferring the block right after `after`.
    /// Returns None only when nothing is free.
    pub fn alloc(&mut self, want: u32, after: Option<u32>) -> Option<Extent> {
        assert!(want > 0);
        let (start, len) = after
            .and_then(|a| self.by_start.get(&a).map(|&l| (a, l)))
            .or_else(|| self.by_len.range((want, 0)..).next().map(|&(l, s)| (s, l)))
            .or_else(|| self.by_len.iter().next_back().map(|&(l, s)| (s, l)))?;
        self.take(start, len);
        let got = want.min(len);
        if len > got {
            self.insert(start + got, len - got);
        }
        Some(Extent { start, blocks: got })
    }

    /// Allocate exactly `want` contiguous blocks (right after `after` if possible, else best
    /// fit); None if no free extent is that long.
    pub fn alloc_exact(&mut self, want: u32, after: Option<u32>) -> Option<Extent> {
        assert!(want > 0);
        let (start, len) = after
            .and_then(|a| self.by_start.get(&a).map(|&l| (a, l)))
            .filter(|&(_, l)| l >= want)
            .or_else(|| self.by_len.range((want, 0)..).next().map(|&(l, s)| (s, l)))?;
        self.take(start, len);
        if len > want {
            self.insert(start + want, len - want);
        }
        Some(Extent {
            start,
            blocks: want,
        })
    }

    /// Return an extent, merging it with free neighbours.
    pub fn free(&mut self, e: Extent) {
        assert!(e.blocks > 0);
        let mut start = e.start;
        let mut blocks = e.blocks;
        if let Some((&ps, &pl)) = self.by_start.range(..start).next_back() {
            assert!(ps + pl <= start, "double free of block {start}");
            if ps + pl == start {
                self.take(ps, pl);
                start = ps;
                blocks += pl;
            }
        }
        let end = start + blocks;
        if let Some((&ns, &nl)) = self.by_start.range(start..).next() {
            assert!(ns >= end, "double free of block {ns}");
            if ns == end {
                self.take(ns, nl);
                blocks += nl;
            }
        }
        self.insert(start, blocks);
    }
}

impl Default for FreeMap {
    fn default() -> Self {
        FreeMap::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_coalesces_back_to_one_extent() {
        let (mut m, bad) = FreeMap::from_used(10, 110, &mut []);
        assert!(bad.is_empty());
        let a = m.alloc(30, None).unwrap();
        let b = m.alloc(30, Some(a.start + a.blocks)).unwrap();
        assert_eq!(b.start, a.start + 30);
        let c = m.alloc(100, None).unwrap();
        assert_eq!(c.blocks, 40);
        assert!(m.alloc(1, None).is_none());
        m.free(b);
        m.free(a);
        m.free(c);
        assert_eq!(m.extents(), 1);
        assert_eq!(m.free_blocks(), 100);
    }

    #[test]
    fn overlapping_used_extents_are_reported() {
        let mut used = vec![
            (
                Extent {
                    start: 10,
                    blocks: 5,
                },
                0,
            ),
            (
                Extent {
                    start: 12,
                    blocks: 5,
                },
                1,
            ),
            (
                Extent {
                    start: 30,
                    blocks: 5,
                },
                2,
            ),
        ];
        let (m, bad) = FreeMap::from_used(10, 40, &mut used);
        assert_eq!(bad, vec![1]);
        assert_eq!(m.free_blocks(), 20);
    }
}
