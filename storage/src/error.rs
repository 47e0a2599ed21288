//! Storage errors: values naming the operation, the disk and the offset.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the storage engine. A bad disk is an operating error, never a
/// panic. [`StorageError::Gone`] is not a disk error: the object was evicted or replaced after
/// lookup.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The kernel returned an error for an I/O.
    #[error("{op} on disk {path:?} at offset {offset_bytes} failed: {source}")]
    Io {
        /// What was being done ("read", "write", "sync", "open", ...).
        op: &'static str,
        /// The disk's path.
        path: PathBuf,
        /// Byte offset of the I/O.
        offset_bytes: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Fewer bytes came back than asked for (a truncated file or a failing device).
    #[error(
        "short {op} on disk {path:?} at offset {offset_bytes}: {got_bytes} of {want_bytes} bytes"
    )]
    Short {
        /// "read" or "write".
        op: &'static str,
        /// The disk's path.
        path: PathBuf,
        /// Byte offset of the I/O.
        offset_bytes: u64,
        /// Bytes transferred.
        got_bytes: usize,
        /// Bytes asked for.
        want_bytes: usize,
    },
    /// A checksum or structure check failed.
    #[error("corrupt {what} on disk {path:?} at offset {offset_bytes}")]
    Corrupt {
        /// Which structure ("record", "chunk", "directory entry", ...).
        what: &'static str,
        /// The disk's path.
        path: PathBuf,
        /// Byte offset of the structure.
        offset_bytes: u64,
    },
    /// The object was evicted, removed or replaced after lookup. Not a disk error.
    #[error("object gone (evicted or replaced after lookup)")]
    Gone,
    /// The disk is offline (by error threshold or by the admin).
    #[error("disk {path:?} is offline")]
    Offline {
        /// The disk's path.
        path: PathBuf,
    },
    /// No disk of this store has that id.
    #[error("unknown disk {0}")]
    UnknownDisk(crate::DiskId),
    /// The eviction policy declined to admit the object.
    #[error("object not admitted by the eviction policy")]
    NotAdmitted,
    /// A key, metadata blob or body exceeds a limit.
    #[error("{what} of {got_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// "key", "metadata" or "body".
        what: &'static str,
        /// Size given.
        got_bytes: u64,
        /// Limit.
        max_bytes: u64,
    },
    /// Nothing left to evict and still not enough space (or too many objects in flight).
    #[error("no space left on disk {path:?} for {want_blocks} blocks")]
    NoSpace {
        /// The disk's path.
        path: PathBuf,
        /// Blocks asked for.
        want_blocks: u64,
    },
    /// A read range outside the body.
    #[error("range {offset_bytes}+{len_bytes} outside body of {body_len_bytes} bytes")]
    Range {
        /// Start of the range.
        offset_bytes: u64,
        /// Length of the range.
        len_bytes: u64,
        /// The body's length.
        body_len_bytes: u64,
    },
    /// A write future of this writer was dropped mid-I/O; the writer cannot continue.
    #[error("object writer unusable after a cancelled write")]
    WriterCancelled,
    /// The configuration cannot be used.
    #[error("bad storage config: {0}")]
    Config(String),
}

impl StorageError {
    /// True if this error says something about the disk's health (counts towards its error
    /// threshold).
    pub fn is_disk_fault(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. } | StorageError::Short { .. } | StorageError::Corrupt { .. }
        )
    }
}
