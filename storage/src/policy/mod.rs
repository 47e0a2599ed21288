//! Eviction policies: which cached object leaves the disk next.
//!
//! ```text
//! store miss → Evictor::admit? → loop { victim() → caller remove(id) + free space } → insert(id)
//! store hit  → Evictor::touch(id)
//! purge      → Evictor::remove(id)
//! ```
//!
//! Three policies share the [`Evictor`] interface:
//! * [`PolicyKind::LruSp`] — LRU-SP (cost t·s/p, LRU groups by ⌊log2(s/p)⌋), the default; best
//!   object hit ratio. See [`lru_sp`].
//! * [`PolicyKind::ByteMode`] — a size-aware S3-FIFO variant with a bounded ghost table, for
//!   operators who pay for origin bytes rather than requests. See [`byte_mode`].
//! * [`PolicyKind::ByteFreq`] — S3-FIFO's queues plus a count-min sketch (TinyLFU-style) that
//!   lets frequent objects into MAIN; byte hit ratio above S3-FIFO at 20 B per object, sketch
//!   and ghost included. See [`byte_freq`].
//!
//! Ids are dense `u32` slot ids allocated by the caller's index arena; each policy keeps its
//! per-object state in flat arenas indexed by id, bounded by `capacity_objects`.

pub mod byte_freq;
pub mod byte_mode;
pub mod lru_sp;

use std::fmt;
use std::str::FromStr;

/// Which eviction policy a disk runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// LRU-SP: best object hit ratio (`"lru-sp"`).
    LruSp,
    /// Byte-hit mode: S3-FIFO's byte hit ratio (`"byte-mode"`).
    ByteMode,
    /// S3-FIFO + frequency-sketch admission: best byte hit ratio (`"byte-freq"`).
    ByteFreq,
}

/// A policy name that is not `lru-sp`, `byte-mode` or `byte-freq`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown eviction policy {name:?} (expected \"lru-sp\", \"byte-mode\" or \"byte-freq\")")]
pub struct UnknownPolicy {
    /// The name that was given.
    pub name: String,
}

impl PolicyKind {
    /// Every policy, in the order they were added.
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::LruSp,
        PolicyKind::ByteMode,
        PolicyKind::ByteFreq,
    ];
}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "lru-sp" => Ok(PolicyKind::LruSp),
            "byte-mode" => Ok(PolicyKind::ByteMode),
            "byte-freq" => Ok(PolicyKind::ByteFreq),
            _ => Err(UnknownPolicy {
                name: text.to_owned(),
            }),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::LruSp => "lru-sp",
            PolicyKind::ByteMode => "byte-mode",
            PolicyKind::ByteFreq => "byte-freq",
        })
    }
}

/// An eviction policy over objects identified by dense `u32` slot ids.
///
/// Contract (asserted, a violation is a caller bug and panics):
/// * `insert` only for an id that is not tracked, `touch`/`remove` only for a tracked id;
/// * ids are `< capacity_objects` given to [`new_evictor`];
/// * `victim` does not remove: the caller calls `remove(id)` and frees the space, and loops
///   until the new object fits. `victim` on an empty policy returns `None`.
///
/// `now_ticks` is the caller's clock (e.g. seconds or request count); it may wrap, only
/// differences `now − last_access` (wrapping) are used.
pub trait Evictor: Send {
    /// Starts tracking `id` (a miss that was admitted and has been stored).
    fn insert(&mut self, id: u32, size_bytes: u64, now_ticks: u32);
    /// A hit on a tracked object.
    fn touch(&mut self, id: u32, now_ticks: u32);
    /// Stops tracking `id` (purge, delete, or after eviction of the victim).
    fn remove(&mut self, id: u32);
    /// The next object to evict, without removing it; `None` when nothing is tracked.
    fn victim(&mut self, now_ticks: u32) -> Option<u32>;
    /// Whether a missed object should be stored at all. LRU-SP always admits.
    fn admit(&mut self, key_hash: u64, size_bytes: u64, now_ticks: u32) -> bool;
    /// RAM cost per tracked object of this policy's structures, in bytes.
    fn bytes_per_object(&self) -> usize;
}

/// Builds the policy `kind` for a disk holding at most `capacity_objects` objects (the id
/// bound) and `capacity_bytes` payload bytes.
pub fn new_evictor(
    kind: PolicyKind,
    capacity_objects: u32,
    capacity_bytes: u64,
) -> Box<dyn Evictor> {
    match kind {
        PolicyKind::LruSp => Box::new(lru_sp::LruSp::new(capacity_objects)),
        PolicyKind::ByteMode => {
            Box::new(byte_mode::ByteMode::new(capacity_objects, capacity_bytes))
        }
        PolicyKind::ByteFreq => {
            Box::new(byte_freq::ByteFreq::new(capacity_objects, capacity_bytes))
        }
    }
}

/// The policy of a disk whose ids come in two ranges — directory ids `0..dir_entries` and packed
/// ids `dir_entries..` (`index.rs`) — over an inner policy that sees them interleaved (directory
/// id i as 2i, packed id dir_entries + k as 2k + 1), so the inner policy's arrays grow with the
/// ids in use (at most twice the larger range's) rather than from `dir_entries` on.
pub fn interleaved(
    kind: PolicyKind,
    dir_entries: u32,
    packed_ids: u32,
    capacity_bytes: u64,
) -> Box<dyn Evictor> {
    let ids = 2 * u64::from(dir_entries.max(packed_ids)) + 2;
    Box::new(Interleaved {
        inner: new_evictor(kind, u32::try_from(ids).unwrap_or(u32::MAX), capacity_bytes),
        dir_entries,
    })
}

struct Interleaved {
    inner: Box<dyn Evictor>,
    dir_entries: u32,
}

impl Interleaved {
    fn inner_id(&self, id: u32) -> u32 {
        if id < self.dir_entries {
            2 * id
        } else {
            2 * (id - self.dir_entries) + 1
        }
    }
    fn outer_id(&self, p: u32) -> u32 {
        if p.is_multiple_of(2) {
            p / 2
        } else {
            self.dir_entries + p / 2
        }
    }
}

impl Evictor for Interleaved {
    fn insert(&mut self, id: u32, size_bytes: u64, now_ticks: u32) {
        let p = self.inner_id(id);
        self.inner.insert(p, size_bytes, now_ticks);
    }
    fn touch(&mut self, id: u32, now_ticks: u32) {
        let p = self.inner_id(id);
        self.inner.touch(p, now_ticks);
    }
    fn remove(&mut self, id: u32) {
        let p = self.inner_id(id);
        self.inner.remove(p);
    }
    fn victim(&mut self, now_ticks: u32) -> Option<u32> {
        self.inner.victim(now_ticks).map(|p| self.outer_id(p))
    }
    fn admit(&mut self, key_hash: u64, size_bytes: u64, now_ticks: u32) -> bool {
        self.inner.admit(key_hash, size_bytes, now_ticks)
    }
    fn bytes_per_object(&self) -> usize {
        self.inner.bytes_per_object()
    }
}

/// Compact object size: exact bytes below 2³¹, else 4 KiB units rounded up (flag in bit 31),
/// which covers objects up to 8 TiB in 4 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PackedSize(u32);

const PACKED_UNIT_FLAG: u32 = 1 << 31;
const PACKED_UNIT_SHIFT: u32 = 12;

impl PackedSize {
    pub(crate) fn new(size_bytes: u64) -> Self {
        if size_bytes < u64::from(PACKED_UNIT_FLAG) {
            PackedSize(size_bytes as u32)
        } else {
            let units = size_bytes.div_ceil(1 << PACKED_UNIT_SHIFT);
            let units = units.min(u64::from(PACKED_UNIT_FLAG - 1)) as u32;
            PackedSize(PACKED_UNIT_FLAG | units)
        }
    }

    pub(crate) fn bytes(self) -> u64 {
        if self.0 & PACKED_UNIT_FLAG == 0 {
            u64::from(self.0)
        } else {
            u64::from(self.0 & !PACKED_UNIT_FLAG) << PACKED_UNIT_SHIFT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_kind_round_trips_through_text() {
        for kind in PolicyKind::ALL {
            assert_eq!(kind.to_string().parse::<PolicyKind>(), Ok(kind));
        }
        assert!("lru".parse::<PolicyKind>().is_err());
    }

    #[test]
    fn packed_size_is_exact_below_2_gib_and_rounds_up_above() {
        for size_bytes in [0, 1, 4095, 4096, 300_000_000, (1 << 31) - 1] {
            assert_eq!(PackedSize::new(size_bytes).bytes(), size_bytes);
        }
        assert_eq!(PackedSize::new(1 << 31).bytes(), 1 << 31);
        assert_eq!(PackedSize::new((1 << 31) + 1).bytes(), (1 << 31) + 4096);
        assert_eq!(
            PackedSize::new(u64::MAX).bytes(),
            u64::from(PACKED_UNIT_FLAG - 1) << 12
        );
    }

    #[test]
    fn victim_on_empty_policy_is_none() {
        for kind in PolicyKind::ALL {
            let mut evictor = new_evictor(kind, 16, 1 << 20);
            assert_eq!(evictor.victim(0), None);
            evictor.insert(3, 100, 0);
            evictor.remove(3);
            assert_eq!(evictor.victim(1), None);
        }
    }
}
