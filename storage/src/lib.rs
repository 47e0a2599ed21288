//! arrow-storage — O_DIRECT slab disks with a compact per-disk index and LRU-SP eviction.
//!
//! ```text
//! lookup(disk, key) → md5(key) → index hash table → slot (24 B) + metadata → ObjectInfo
//! read(obj, range)  → RAM tier (LRU of bodies) ─hit→ bytes
//!                   → slot generation check → record read (O_DIRECT, 4 KiB aligned, disk ring)
//!                   → crc32c + key-hash check → chunk reads (only the chunks in range) → crc32c
//!                   → generation re-check → Bytes (zero copy over the aligned buffer)
//! writer(disk, key) → policy admit → write(): chunk buffer → allocator extents (evicting victims:
//!                     zero their directory entries, then free blocks) → O_DIRECT chunk writes
//!                   → finish(): record write → fdatasync → directory entry write → fdatasync
//!                     → visible to lookup (crash bound: 0, finish() returns after the commit)
//!                   → small objects: record appended to the open pack → group commit (pack
//!                     blocks → pack entry → one fdatasync, for every writer waiting)
//! open(cfg)         → per disk: superblock check (refusals name the path) → directory scan
//!                     → free map + index + policy rebuilt
//! ```
//!
//! Bounds (measured with `arrow-bench restart` and `bench/storage_vs_fio.sh`):
//! - crash: an object is durable when `finish()` returns (record fdatasync'd before its directory
//!   entry is written, entry fdatasync'd before `finish()` returns): bound 0. Torn objects have no
//!   directory entry, or one whose crc fails and is zeroed at open.
//! - restart: one sequential read of the directory (512 bytes per 64 KiB of disk), one record
//!   read per fragmented object and one read of each pack's committed bytes (small objects:
//!   their records carry their metadata).
//! - RAM: 24-byte slot + 4-8 bytes of hash table per object (at most 31.9 B per slot id, 30.0
//!   measured at 1,000,000 objects; layout and bound in [`index`]), plus the metadata blob
//!   (+2 bytes, 8-byte aligned) and the policy's bytes; keys stay on disk.
//! - objects per disk: objects with records of their own at most one per 64 KiB of disk (the
//!   directory size); small (packed) objects up to one per 256 bytes of data area, in practice
//!   bounded by index RAM; metadata blob at most 464 bytes; key at most 2,048 bytes; body at most a quarter of the data area
//!   and below 1 TiB.
//!
//! Modules by stage: [`slab`] (I/O seam), [`uring`] (the shard's disk ring behind it), [`layout`]
//! (disk format), [`alloc`] (extents), [`index`] (RAM index), `writer`, `pack` and `packer`
//! (small objects), `reader`, `recover`,
//! [`ram_tier`], `store` (the multi-disk [`Store`]), [`hashing`] (key → disk), [`error`],
//! [`policy`] (eviction).

pub mod alloc;
mod disk;
pub mod error;
pub mod hashing;
pub mod index;
mod join;
pub mod layout;
mod pack;
mod packer;
pub mod policy;
pub mod ram_tier;
mod reader;
mod records;
mod recover;
pub mod slab;
mod store;
pub mod uring;
mod writer;

pub use error::StorageError;
pub use hashing::rendezvous_pick;
pub use policy::PolicyKind;
pub use ram_tier::RamSpan;
pub use store::{BodyPart, DiskStats, RamTierStats, Store, StoreStats};
pub use writer::{ObjectWriter, WriteProgress};

use std::fmt;
use std::path::PathBuf;

/// One configured disk.
#[derive(Clone, Debug)]
pub struct DiskSpec {
    /// Slab file (created and preallocated if missing) or raw block device.
    pub path: PathBuf,
    /// Bytes of the disk to use (never exceeded).
    pub size_bytes: u64,
    /// Eviction policy.
    pub policy: PolicyKind,
    /// Disk faults after which the disk goes offline.
    pub error_threshold: u32,
}

/// A shard's storage configuration.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The shard's disks.
    pub disks: Vec<DiskSpec>,
    /// RAM tier capacity.
    pub ram_tier_bytes: u64,
    /// Chunk size for new disks (a multiple of 4 KiB; 1 MiB is a good default). An existing disk
    /// keeps the chunk size it was formatted with.
    pub chunk_bytes: u32,
}

/// A disk's identity: the UUID in its superblock.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DiskId(pub u128);

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).fmt(f)
    }
}

/// A disk that could not be opened, and why (the reason names the path).
#[derive(Clone, Debug)]
pub struct DiskRefusal {
    /// The configured path.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

/// A visible object, as returned by lookup or finish.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    /// Disk holding it.
    pub disk: DiskId,
    /// The metadata blob given at write (or by update_meta).
    pub meta: bytes::Bytes,
    /// Body length.
    pub body_len: u64,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
    pub(crate) key_hash128: u128,
}
