//! On-disk format of one disk (a slab file or a raw block device).
//!
//! All I/O is O_DIRECT, in whole 4 KiB blocks at 4 KiB-aligned offsets. Block numbers are `u32`
//! (a disk is at most 16 TiB).
//!
//! ```text
//! block 0                  superblock (4 KiB): magic "ARROWSL1", format version 2, flags (bit 0 =
//!                          offline), disk UUID, size_bytes, chunk_bytes, geometry, epoch, crc32c
//! blocks 1 .. data_start   directory: dir_entries entries of 512 bytes, 8 per block. Entry i
//!                          belongs to index slot i. An entry is all zeroes (free) or:
//!                            magic "AENT" | crc32c | gen | flags | meta_len | key_hash (u64) |
//!                            body_len | first_block | data_blocks | rec_blocks | ticks | meta
//!                          The directory is the commit point: an object exists once its entry is
//!                          on disk with a valid crc (written after its data and record are
//!                          durable), and stops existing once its entry is zeroed (written before
//!                          its blocks are reused).
//!                          A *pack* entry (flag PACK) stands for many small objects: key_hash =
//!                          the pack's sequence number, body_len = bytes of committed records,
//!                          first_block/data_blocks = the pack's extent, meta = member count (u16)
//!                          and a bitmap of dead members (bit set = removed). Members 0..count
//!                          exist; a member stops existing once its bit is on disk.
//! blocks data_start ..     data area, managed in 4 KiB blocks by the extent allocator. Per object:
//!                            [data chunks ...][record]   (contiguous when the allocator allows)
//!                          Small objects (body <= chunk_bytes) have no data chunks: the body sits
//!                          inline in the record. Large objects store body chunk i at body offset
//!                          i * chunk_bytes of the concatenated data extents, each chunk with its
//!                          crc32c in the record.
//!                          record = magic "AREC" | crc32c (whole record) | record_len | version |
//!                            flags (inline) | gen | key_hash128 | body_len | chunk_bytes |
//!                            key_len | extent count | chunk count | key | extents | chunk crcs |
//!                            inline body
//!                          A pack (at most PACK_BLOCKS) holds packed records back to back, each
//!                          at an 8-byte aligned offset, except that a record that would touch
//!                          more blocks than its length needs starts at the next block when the
//!                          gap is at most 1/8 of it (the gap is zeroes), so most records of up
//!                          to 4 KiB are one block read; it grows in place (a flush writes the
//!                          blocks from the last partial one on, then the entry with the new
//!                          count: one group commit for every record appended meanwhile):
//!                            magic "APRC" | head_crc (crc32c of the pack's sequence number,
//!                            then bytes 8 .. 48 + body_len: a record left by an earlier pack on
//!                            these blocks never passes for one of this pack) |
//!                            tail_crc (crc32c of key + meta) | record_len | gen | body_len |
//!                            key_len | meta_len | member (its index in the pack) | key_hash128 |
//!                            body | key | meta
//! ```
//!
//! The directory holds `size_bytes / 64 KiB` entries (0.78 % of the disk). Objects whose packed
//! record is at most PACK_RECORD_BYTES_MAX (64 KiB) go into packs and take no entry of their own,
//! so the directory never limits the object count: the RAM index does (see `index.rs`). Recovery
//! reads the superblock and the directory (sequentially), the committed part of every pack (small
//! objects' keys, metadata and bodies, all crc-checked), plus the record of the rare object whose
//! data is fragmented over several extents. Version 1 slabs (one entry per 32 KiB, no packs) are
//! refused with a message saying how to reformat them.

use crate::error::StorageError;
use std::path::Path;

/// Bytes per block: the unit of allocation and of every I/O.
pub const BLOCK_BYTES: u64 = 4096;
/// Bytes per directory entry.
pub const DIR_ENTRY_BYTES: usize = 512;
/// Directory entries per block.
pub const DIR_ENTRIES_PER_BLOCK: u32 = (BLOCK_BYTES as usize / DIR_ENTRY_BYTES) as u32;
/// One directory entry per this many bytes of disk.
pub const DIR_SPACING_BYTES: u64 = 64 * 1024;
/// Format version written by this code; any other version is refused.
pub const FORMAT_VERSION: u32 = 2;
/// Packed record magic.
pub const PACKED_MAGIC: u32 = u32::from_le_bytes(*b"APRC");
/// Fixed part of a packed record.
pub const PACKED_HEADER_BYTES: usize = 48;
/// Packed records start at offsets that are multiples of this.
pub const PACKED_ALIGN: usize = 8;
/// Blocks of a pack at most (1 MiB).
pub const PACK_BLOCKS: u32 = 256;
/// Largest packed record (header, body, key, metadata): larger objects get records of their own.
pub const PACK_RECORD_BYTES_MAX: usize = 64 * 1024;
/// Members of one pack at most: the dead-member bitmap fits the entry's metadata field.
pub const PACK_MEMBERS_MAX: usize = (META_BYTES_MAX - 2) * 8;
/// Superblock magic.
pub const SUPER_MAGIC: u64 = u64::from_le_bytes(*b"ARROWSL1");
/// Directory entry magic.
pub const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"AENT");
/// Record magic.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"AREC");
/// Fixed part of a directory entry.
pub const ENTRY_HEADER_BYTES: usize = 48;
/// Largest metadata blob (it lives in the directory entry).
pub const META_BYTES_MAX: usize = DIR_ENTRY_BYTES - ENTRY_HEADER_BYTES;
/// Largest cache key.
pub const KEY_BYTES_MAX: usize = 2048;
/// Fixed part of a record.
pub const RECORD_HEADER_BYTES: usize = 64;
/// Smallest disk accepted.
pub const DISK_BYTES_MIN: u64 = 1024 * 1024;
/// Record flag: the body is inline.
pub const RECORD_FLAG_INLINE: u16 = 1;
/// Superblock flag: the disk is offline.
pub const SUPER_FLAG_OFFLINE: u32 = 1;

const _: () = assert!((BLOCK_BYTES as usize).is_multiple_of(DIR_ENTRY_BYTES));
const _: () = assert!(META_BYTES_MAX <= u16::MAX as usize);

/// Where things are on one disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Configured size (never exceeded).
    pub size_bytes: u64,
    /// Blocks in the disk.
    pub total_blocks: u64,
    /// Directory entries (= index slots).
    pub dir_entries: u32,
    /// First directory block.
    pub dir_start_block: u64,
    /// First data block.
    pub data_start_block: u64,
    /// Chunk size of large objects.
    pub chunk_bytes: u32,
}

impl Geometry {
    /// Lay out a disk of `size_bytes` (rounded down to whole blocks).
    pub fn new(size_bytes: u64, chunk_bytes: u32) -> Result<Geometry, StorageError> {
        if size_bytes < DISK_BYTES_MIN {
            return Err(StorageError::Config(format!(
                "disk size {size_bytes} bytes below the minimum {DISK_BYTES_MIN}"
            )));
        }
        if chunk_bytes == 0 || !u64::from(chunk_bytes).is_multiple_of(BLOCK_BYTES) {
            return Err(StorageError::Config(format!(
                "chunk_bytes {chunk_bytes} is not a positive multiple of {BLOCK_BYTES}"
            )));
        }
        let total_blocks = size_bytes / BLOCK_BYTES;
        if total_blocks > u64::from(u32::MAX) {
            return Err(StorageError::Config(format!(
                "disk size {size_bytes} bytes above the 16 TiB per-disk limit"
            )));
        }
        let entries = (size_bytes / DIR_SPACING_BYTES).max(u64::from(DIR_ENTRIES_PER_BLOCK));
        let dir_blocks = entries.div_ceil(u64::from(DIR_ENTRIES_PER_BLOCK));
        let dir_entries = u32::try_from(dir_blocks * u64::from(DIR_ENTRIES_PER_BLOCK))
            .map_err(|_| StorageError::Config("too many directory entries".into()))?;
        Ok(Geometry {
            size_bytes,
            total_blocks,
            dir_entries,
            dir_start_block: 1,
            data_start_block: 1 + dir_blocks,
            chunk_bytes,
        })
    }

    /// Blocks in the directory.
    pub fn dir_blocks(&self) -> u64 {
        self.data_start_block - self.dir_start_block
    }

    /// Blocks in the data area.
    pub fn data_blocks(&self) -> u64 {
        self.total_blocks - self.data_start_block
    }
}

/// The decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Disk identity.
    pub uuid: u128,
    /// Layout.
    pub geometry: Geometry,
    /// Offline flag (remembered across restarts).
    pub offline: bool,
    /// Unix seconds at creation: tick 0 of the eviction policy clock.
    pub epoch_unix_secs: u64,
}

/// CRC-32C (Castagnoli) of `data`: the checksum of every on-disk structure and body chunk.
/// Computed by `crc-fast` (carry-less multiplication, AVX-512 where the CPU has it) rather than
/// the `crc32c` crate: less CPU per disk-tier hit (BENCHMARKS.md, 2026-12-04); the values are the
/// same (the format did not change, see the test below).
pub fn crc(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// CRC-32C of the concatenation of `parts`.
pub fn crc_of(parts: &[&[u8]]) -> u32 {
    let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    for p in parts {
        d.update(p);
    }
    d.finalize() as u32
}

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}
fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}
fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

const SUPER_CRC_AT: usize = BLOCK_BYTES as usize - 4;

impl Superblock {
    /// Encode into one block.
    pub fn encode(&self, block: &mut [u8]) {
        assert_eq!(block.len(), BLOCK_BYTES as usize);
        block.fill(0);
        let g = &self.geometry;
        put_u64(block, 0, SUPER_MAGIC);
        put_u32(block, 8, FORMAT_VERSION);
        put_u32(block, 12, if self.offline { SUPER_FLAG_OFFLINE } else { 0 });
        block[16..32].copy_from_slice(&self.uuid.to_le_bytes());
        put_u64(block, 32, g.size_bytes);
        put_u32(block, 40, BLOCK_BYTES as u32);
        put_u32(block, 44, g.chunk_bytes);
        put_u32(block, 48, g.dir_entries);
        put_u64(block, 56, g.dir_start_block);
        put_u64(block, 64, g.data_start_block);
        put_u64(block, 72, g.total_blocks);
        put_u64(block, 80, self.epoch_unix_secs);
        let crc = crc(&block[..SUPER_CRC_AT]);
        put_u32(block, SUPER_CRC_AT, crc);
    }

    /// Decode and check one block; the error text says why a disk is refused.
    pub fn decode(block: &[u8], path: &Path) -> Result<Superblock, String> {
        if block.len() < BLOCK_BYTES as usize {
            return Err(format!("{}: superblock truncated", path.display()));
        }
        if get_u64(block, 0) != SUPER_MAGIC {
            return Err(format!(
                "{}: no Arrow superblock (bad magic)",
                path.display()
            ));
        }
        if crc(&block[..SUPER_CRC_AT]) != get_u32(block, SUPER_CRC_AT) {
            return Err(format!("{}: superblock checksum mismatch", path.display()));
        }
        let version = get_u32(block, 8);
        if version == 1 {
            return Err(format!(
                "{}: format version 1 (written by an Arrow before small-object packs); this build \
                 reads version {FORMAT_VERSION} only. Its cached objects cannot be read: delete the \
                 slab file or zero its first block (dd if=/dev/zero of={} bs=4096 count=1 \
                 oflag=direct conv=notrunc) and Arrow formats it anew",
                path.display(),
                path.display()
            ));
        }
        if version != FORMAT_VERSION {
            return Err(format!(
                "{}: unknown format version {version} (this build reads {FORMAT_VERSION})",
                path.display()
            ));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&block[16..32]);
        let size_bytes = get_u64(block, 32);
        let chunk_bytes = get_u32(block, 44);
        let geometry = Geometry::new(size_bytes, chunk_bytes)
            .map_err(|e| format!("{}: bad superblock geometry: {e}", path.display()))?;
        let stored = Geometry {
            size_bytes,
            total_blocks: get_u64(block, 72),
            dir_entries: get_u32(block, 48),
            dir_start_block: get_u64(block, 56),
            data_start_block: get_u64(block, 64),
            chunk_bytes,
        };
        if get_u32(block, 40) != BLOCK_BYTES as u32 || stored != geometry {
            return Err(format!(
                "{}: superblock geometry inconsistent",
                path.display()
            ));
        }
        Ok(Superblock {
            uuid: u128::from_le_bytes(uuid),
            geometry,
            offline: get_u32(block, 12) & SUPER_FLAG_OFFLINE != 0,
            epoch_unix_secs: get_u64(block, 80),
        })
    }
}

/// A run of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First block (absolute).
    pub start: u32,
    /// Number of blocks.
    pub blocks: u32,
}

/// A decoded directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Slot generation.
    pub gen: u32,
    /// Entry flags (bit 0: data fragmented, extents in the record).
    pub flags: u16,
    /// 64-bit key hash.
    pub key_hash: u64,
    /// Body length.
    pub body_len: u64,
    /// Contiguous objects: first data block (record follows the data). Fragmented: record block.
    pub first_block: u32,
    /// Data blocks (0 for inline bodies).
    pub data_blocks: u32,
    /// Record blocks.
    pub rec_blocks: u16,
    /// Policy ticks at commit.
    pub ticks: u32,
    /// Metadata blob.
    pub meta: Vec<u8>,
}

/// Directory entry flag: data extents listed in the record only.
pub const ENTRY_FLAG_FRAG: u16 = 1;
/// Directory entry flag: a pack of small objects (see the module doc).
pub const ENTRY_FLAG_PACK: u16 = 2;

/// The member count and dead bitmap of a pack entry's metadata field.
pub fn encode_pack_members(dead: impl Iterator<Item = bool>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0, 0]);
    let mut count = 0usize;
    for (i, d) in dead.enumerate() {
        if i % 8 == 0 {
            out.push(0);
        }
        if d {
            *out.last_mut().expect("bitmap byte") |= 1 << (i % 8);
        }
        count = i + 1;
    }
    assert!(count <= PACK_MEMBERS_MAX);
    out[..2].copy_from_slice(&(count as u16).to_le_bytes());
}

/// Decode a pack entry's metadata: (member count, dead flag of each member). None if malformed.
pub fn decode_pack_members(meta: &[u8]) -> Option<Vec<bool>> {
    if meta.len() < 2 {
        return None;
    }
    let count = get_u16(meta, 0) as usize;
    if count > PACK_MEMBERS_MAX || meta.len() != 2 + count.div_ceil(8) {
        return None;
    }
    Some(
        (0..count)
            .map(|i| meta[2 + i / 8] & (1 << (i % 8)) != 0)
            .collect(),
    )
}

/// Bytes a packed record takes (before alignment).
pub fn packed_record_len(key_len: usize, meta_len: usize, body_len: usize) -> usize {
    PACKED_HEADER_BYTES + body_len + key_len + meta_len
}

/// Where the next record of `len` bytes goes in a pack whose records end at `used`: the next
/// 8-byte offset, or the next block if from there it would touch more blocks than it needs and
/// the gap left is at most an eighth of the record (so a record that fits a block is mostly one
/// read, and padding never costs more than 1/8 of the space).
pub fn packed_offset(used: usize, len: usize) -> usize {
    let at = used.next_multiple_of(PACKED_ALIGN);
    let block = BLOCK_BYTES as usize;
    let in_block = at % block;
    let straddles = in_block != 0 && (in_block + len).div_ceil(block) > len.div_ceil(block);
    if straddles && block - in_block <= len / 8 {
        at.next_multiple_of(block)
    } else {
        at
    }
}

/// crc32c of a packed record's header and body, seeded with its pack's sequence number.
fn packed_head_crc(seq: u64, bytes: &[u8]) -> u32 {
    crc_of(&[&seq.to_le_bytes(), bytes])
}

/// Encode a packed record into `out` (exactly `packed_record_len` bytes): member `member` of
/// the pack with sequence number `seq`.
#[allow(clippy::too_many_arguments)]
pub fn encode_packed(
    out: &mut [u8],
    seq: u64,
    member: u32,
    gen: u32,
    key_hash128: u128,
    key: &[u8],
    meta: &[u8],
    body: &[u8],
) {
    let len = packed_record_len(key.len(), meta.len(), body.len());
    assert_eq!(out.len(), len);
    put_u32(out, 0, PACKED_MAGIC);
    put_u32(out, 12, len as u32);
    put_u32(out, 16, gen);
    put_u32(out, 20, body.len() as u32);
    put_u16(out, 24, key.len() as u16);
    put_u16(out, 26, meta.len() as u16);
    put_u32(out, 28, member);
    out[32..48].copy_from_slice(&key_hash128.to_le_bytes());
    let body_end = PACKED_HEADER_BYTES + body.len();
    out[PACKED_HEADER_BYTES..body_end].copy_from_slice(body);
    out[body_end..body_end + key.len()].copy_from_slice(key);
    out[body_end + key.len()..].copy_from_slice(meta);
    let tail = crc(&out[body_end..]);
    put_u32(out, 8, tail);
    let head = packed_head_crc(seq, &out[8..body_end]);
    put_u32(out, 4, head);
}

/// The header of a packed record, checked with the body (`head_crc`); key and metadata are
/// checked by [`PackedHead::tail`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedHead {
    /// Slot generation at write.
    pub gen: u32,
    /// Full 128-bit key hash.
    pub key_hash128: u128,
    /// Body length.
    pub body_len: usize,
    /// Key bytes.
    pub key_len: usize,
    /// Metadata bytes.
    pub meta_len: usize,
    /// Whole record.
    pub record_len: usize,
    /// Its index in the pack.
    pub member: u32,
    tail_crc: u32,
}

impl PackedHead {
    /// Decode the record at the start of `buf`, which holds at least its header and body, and
    /// check the header and body against `head_crc` (for the pack with sequence number `seq`).
    pub fn decode(buf: &[u8], seq: u64) -> Option<PackedHead> {
        if buf.len() < PACKED_HEADER_BYTES || get_u32(buf, 0) != PACKED_MAGIC {
            return None;
        }
        let body_len = get_u32(buf, 20) as usize;
        let key_len = get_u16(buf, 24) as usize;
        let meta_len = get_u16(buf, 26) as usize;
        let record_len = get_u32(buf, 12) as usize;
        let body_end = PACKED_HEADER_BYTES.checked_add(body_len)?;
        if body_end > buf.len()
            || record_len != packed_record_len(key_len, meta_len, body_len)
            || packed_head_crc(seq, &buf[8..body_end]) != get_u32(buf, 4)
        {
            return None;
        }
        let mut h = [0u8; 16];
        h.copy_from_slice(&buf[32..48]);
        Some(PackedHead {
            gen: get_u32(buf, 16),
            key_hash128: u128::from_le_bytes(h),
            body_len,
            key_len,
            meta_len,
            record_len,
            member: get_u32(buf, 28),
            tail_crc: get_u32(buf, 8),
        })
    }

    /// Key and metadata of the record at the start of `buf` (which holds all of it), checked.
    pub fn tail<'a>(&self, buf: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let from = PACKED_HEADER_BYTES + self.body_len;
        let tail = buf.get(from..self.record_len)?;
        if crc(tail) != self.tail_crc {
            return None;
        }
        Some(tail.split_at(self.key_len))
    }

    /// The body within `buf`.
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[PACKED_HEADER_BYTES..PACKED_HEADER_BYTES + self.body_len]
    }
}

impl DirEntry {
    /// Encode into a 512-byte entry.
    pub fn encode(&self, out: &mut [u8]) {
        assert_eq!(out.len(), DIR_ENTRY_BYTES);
        assert!(self.meta.len() <= META_BYTES_MAX);
        out.fill(0);
        put_u32(out, 0, ENTRY_MAGIC);
        put_u32(out, 8, self.gen);
        put_u16(out, 12, self.flags);
        put_u16(out, 14, self.meta.len() as u16);
        put_u64(out, 16, self.key_hash);
        put_u64(out, 24, self.body_len);
        put_u32(out, 32, self.first_block);
        put_u32(out, 36, self.data_blocks);
        put_u16(out, 40, self.rec_blocks);
        put_u32(out, 44, self.ticks);
        out[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + self.meta.len()].copy_from_slice(&self.meta);
        let crc = crc(&out[8..]);
        put_u32(out, 4, crc);
    }

    /// Decode a 512-byte entry: Ok(None) for a free (all-zero) entry, Err(()) for a corrupt one.
    #[allow(clippy::result_unit_err)]
    pub fn decode(buf: &[u8]) -> Result<Option<DirEntry>, ()> {
        assert_eq!(buf.len(), DIR_ENTRY_BYTES);
        let magic = get_u32(buf, 0);
        if magic == 0 && buf.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if magic != ENTRY_MAGIC || crc(&buf[8..]) != get_u32(buf, 4) {
            return Err(());
        }
        let meta_len = get_u16(buf, 14) as usize;
        if meta_len > META_BYTES_MAX {
            return Err(());
        }
        Ok(Some(DirEntry {
            gen: get_u32(buf, 8),
            flags: get_u16(buf, 12),
            key_hash: get_u64(buf, 16),
            body_len: get_u64(buf, 24),
            first_block: get_u32(buf, 32),
            data_blocks: get_u32(buf, 36),
            rec_blocks: get_u16(buf, 40),
            ticks: get_u32(buf, 44),
            meta: buf[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + meta_len].to_vec(),
        }))
    }
}

/// An object record (written after the data chunks, before the directory entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Slot generation.
    pub gen: u32,
    /// Full 128-bit key hash.
    pub key_hash128: u128,
    /// Body length.
    pub body_len: u64,
    /// Chunk size the body was written with.
    pub chunk_bytes: u32,
    /// The cache key.
    pub key: Vec<u8>,
    /// Data extents, in body order.
    pub extents: Vec<Extent>,
    /// crc32c of each chunk.
    pub chunk_crcs: Vec<u32>,
    /// The body, when inline.
    pub inline_body: Option<Vec<u8>>,
}

impl Record {
    /// Bytes the encoded record takes.
    pub fn encoded_len(
        key_len: usize,
        extents: usize,
        chunks: usize,
        inline_len: Option<usize>,
    ) -> usize {
        RECORD_HEADER_BYTES + key_len + extents * 8 + chunks * 4 + inline_len.unwrap_or(0)
    }

    /// Encode into `out` (whole blocks, zero padded); returns the record length in bytes.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let len = Self::encoded_len(
            self.key.len(),
            self.extents.len(),
            self.chunk_crcs.len(),
            self.inline_body.as_ref().map(Vec::len),
        );
        assert!(out.len() >= len);
        out.fill(0);
        put_u32(out, 0, RECORD_MAGIC);
        put_u32(out, 8, len as u32);
        put_u16(out, 12, FORMAT_VERSION as u16);
        put_u16(
            out,
            14,
            if self.inline_body.is_some() {
                RECORD_FLAG_INLINE
            } else {
                0
            },
        );
        put_u32(out, 16, self.gen);
        out[20..36].copy_from_slice(&self.key_hash128.to_le_bytes());
        put_u64(out, 36, self.body_len);
        put_u32(out, 44, self.chunk_bytes);
        put_u16(out, 48, self.key.len() as u16);
        put_u32(out, 52, self.extents.len() as u32);
        put_u32(out, 56, self.chunk_crcs.len() as u32);
        let mut at = RECORD_HEADER_BYTES;
        out[at..at + self.key.len()].copy_from_slice(&self.key);
        at += self.key.len();
        for e in &self.extents {
            put_u32(out, at, e.start);
            put_u32(out, at + 4, e.blocks);
            at += 8;
        }
        for &c in &self.chunk_crcs {
            put_u32(out, at, c);
            at += 4;
        }
        if let Some(body) = &self.inline_body {
            out[at..at + body.len()].copy_from_slice(body);
            at += body.len();
        }
        debug_assert_eq!(at, len);
        let crc = crc(&out[8..len]);
        put_u32(out, 4, crc);
        len
    }

    /// Decode and verify; returns the record and the byte offset of the inline body in `buf`.
    pub fn decode(buf: &[u8]) -> Option<(Record, usize)> {
        let head = RecordHead::decode(buf)?;
        Some((Record::from_head(buf, &head), head.body_at))
    }

    /// The whole record of `buf`, whose header `head` was decoded (and verified) from it.
    pub fn from_head(buf: &[u8], head: &RecordHead) -> Record {
        let mut at = RECORD_HEADER_BYTES;
        let key = buf[at..at + head.key_len].to_vec();
        at += head.key_len;
        let mut extents = Vec::with_capacity(head.extents);
        for _ in 0..head.extents {
            extents.push(Extent {
                start: get_u32(buf, at),
                blocks: get_u32(buf, at + 4),
            });
            at += 8;
        }
        let mut chunk_crcs = Vec::with_capacity(head.chunks);
        for _ in 0..head.chunks {
            chunk_crcs.push(get_u32(buf, at));
            at += 4;
        }
        debug_assert_eq!(at, head.body_at);
        Record {
            gen: head.gen,
            key_hash128: head.key_hash128,
            body_len: head.body_len,
            chunk_bytes: head.chunk_bytes,
            key,
            extents,
            chunk_crcs,
            inline_body: None,
        }
    }
}

/// The fixed part of a verified record, decoded without copying the key, extents or crcs (the
/// read path of inline bodies needs none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    /// Slot generation.
    pub gen: u32,
    /// Full 128-bit key hash.
    pub key_hash128: u128,
    /// Body length.
    pub body_len: u64,
    /// Chunk size the body was written with.
    pub chunk_bytes: u32,
    /// True if the body is inline (at `body_at`).
    pub inline: bool,
    /// Key bytes.
    pub key_len: usize,
    /// Data extents listed.
    pub extents: usize,
    /// Chunk crcs listed.
    pub chunks: usize,
    /// Byte offset of the inline body (the end of the crc list).
    pub body_at: usize,
}

impl RecordHead {
    /// Check magic, length and crc32c of the record at the start of `buf` and decode its header.
    pub fn decode(buf: &[u8]) -> Option<RecordHead> {
        if buf.len() < RECORD_HEADER_BYTES || get_u32(buf, 0) != RECORD_MAGIC {
            return None;
        }
        let len = get_u32(buf, 8) as usize;
        if len < RECORD_HEADER_BYTES || len > buf.len() {
            return None;
        }
        if crc(&buf[8..len]) != get_u32(buf, 4) {
            return None;
        }
        let flags = get_u16(buf, 14);
        let mut h = [0u8; 16];
        h.copy_from_slice(&buf[20..36]);
        let key_len = get_u16(buf, 48) as usize;
        let extents = get_u32(buf, 52) as usize;
        let chunks = get_u32(buf, 56) as usize;
        let body_len = get_u64(buf, 36);
        let inline = flags & RECORD_FLAG_INLINE != 0;
        let inline_len = if inline {
            usize::try_from(body_len).ok()?
        } else {
            0
        };
        let body_at = RECORD_HEADER_BYTES
            .checked_add(key_len)?
            .checked_add(extents.checked_mul(8)?)?
            .checked_add(chunks.checked_mul(4)?)?;
        if body_at.checked_add(inline_len)? != len {
            return None;
        }
        Some(RecordHead {
            gen: get_u32(buf, 16),
            key_hash128: u128::from_le_bytes(h),
            body_len,
            chunk_bytes: get_u32(buf, 44),
            inline,
            key_len,
            extents,
            chunks,
            body_at,
        })
    }
}

/// Blocks needed for `bytes`.
pub fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_crc32c_as_slabs_were_written() {
        assert_eq!(crc(b"123456789"), 0xe306_9283);
        let data: Vec<u8> = (0..(1u32 << 20) + 4099)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        for len in [0, 1, 7, 64, 4095, 4096, 65_536, 1 << 20, data.len()] {
            assert_eq!(crc(&data[..len]), crc32c::crc32c(&data[..len]), "len {len}");
        }
        let (a, b) = data.split_at(12_345);
        assert_eq!(crc_of(&[a, b]), crc32c::crc32c_append(crc32c::crc32c(a), b));
    }

    #[test]
    fn superblock_round_trips_and_rejects_flipped_bit() {
        let g = Geometry::new(64 << 20, 1 << 20).unwrap();
        let sb = Superblock {
            uuid: 7,
            geometry: g,
            offline: true,
            epoch_unix_secs: 99,
        };
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        sb.encode(&mut block);
        assert_eq!(Superblock::decode(&block, Path::new("x")).unwrap(), sb);
        block[100] ^= 1;
        assert!(Superblock::decode(&block, Path::new("x"))
            .unwrap_err()
            .contains("checksum"));
    }

    #[test]
    fn record_round_trips_and_rejects_flipped_bit() {
        let rec = Record {
            gen: 3,
            key_hash128: 0x1234_5678_9abc,
            body_len: 5,
            chunk_bytes: 4096,
            key: b"foo.com/a".to_vec(),
            extents: vec![Extent {
                start: 10,
                blocks: 2,
            }],
            chunk_crcs: vec![1, 2],
            inline_body: Some(b"hello".to_vec()),
        };
        let mut buf = vec![0u8; 4096];
        let len = rec.encode(&mut buf);
        let (back, body_at) = Record::decode(&buf).unwrap();
        assert_eq!(&buf[body_at..len], b"hello");
        assert_eq!(back.key, rec.key);
        assert_eq!(back.extents, rec.extents);
        buf[70] ^= 4;
        assert!(Record::decode(&buf).is_none());
    }

    #[test]
    fn packed_record_round_trips_and_rejects_flipped_bits() {
        let len = packed_record_len(3, 4, 5);
        let mut buf = vec![0u8; len];
        encode_packed(&mut buf, 41, 3, 7, 99, b"key", b"meta", b"hello");
        // Another pack's sequence number: not a record of that pack.
        assert!(PackedHead::decode(&buf, 40).is_none());
        let head = PackedHead::decode(&buf, 41).unwrap();
        assert_eq!((head.gen, head.key_hash128, head.body_len), (7, 99, 5));
        assert_eq!(head.member, 3);
        assert_eq!(head.body(&buf), b"hello");
        assert_eq!(head.tail(&buf), Some((&b"key"[..], &b"meta"[..])));
        // The header and body alone are enough to check them.
        assert!(PackedHead::decode(&buf[..PACKED_HEADER_BYTES + 5], 41).is_some());
        let mut body_flip = buf.clone();
        body_flip[PACKED_HEADER_BYTES + 1] ^= 1;
        assert!(PackedHead::decode(&body_flip, 41).is_none());
        let mut meta_flip = buf.clone();
        meta_flip[len - 1] ^= 1;
        let head = PackedHead::decode(&meta_flip, 41).unwrap();
        assert!(head.tail(&meta_flip).is_none());
    }

    #[test]
    fn packed_records_touch_no_more_blocks_than_they_need() {
        // Back to back at 8-byte offsets while they fit...
        assert_eq!(packed_offset(1001, 1000), 1008);
        assert_eq!(packed_offset(3000, 1000), 3000);
        // ...a record that would straddle a block it could fit in starts at the next one when
        // the gap is small (at most 1/8 of the record)...
        assert_eq!(packed_offset(3984, 1324), 4096);
        assert_eq!(packed_offset(3600, 3990), 4096);
        // ...and straddles otherwise (a 2 KiB record does not waste half a block)...
        assert_eq!(packed_offset(2104, 2100), 2104);
        assert_eq!(packed_offset(3200, 1000), 3200);
        // ...and a record longer than a block straddles only as many as it must.
        assert_eq!(packed_offset(3000, 4500), 3000);
        assert_eq!(packed_offset(4000, 4500), 4096);
        assert_eq!(packed_offset(0, 4096), 0);
    }

    #[test]
    fn pack_members_round_trip() {
        let dead: Vec<bool> = (0..19).map(|i| i % 3 == 0).collect();
        let mut meta = Vec::new();
        encode_pack_members(dead.iter().copied(), &mut meta);
        assert!(meta.len() <= META_BYTES_MAX);
        assert_eq!(decode_pack_members(&meta).unwrap(), dead);
        meta.push(0);
        assert!(decode_pack_members(&meta).is_none());
    }

    #[test]
    fn version_1_is_refused_with_a_way_out() {
        let g = Geometry::new(64 << 20, 1 << 20).unwrap();
        let sb = Superblock {
            uuid: 7,
            geometry: g,
            offline: false,
            epoch_unix_secs: 99,
        };
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        sb.encode(&mut block);
        put_u32(&mut block, 8, 1);
        let crc = crc(&block[..SUPER_CRC_AT]);
        put_u32(&mut block, SUPER_CRC_AT, crc);
        let err = Superblock::decode(&block, Path::new("/x.slab")).unwrap_err();
        assert!(err.contains("format version 1"), "{err}");
        assert!(err.contains("dd if=/dev/zero of=/x.slab"), "{err}");
    }

    #[test]
    fn dir_entry_round_trips_and_zero_is_free() {
        let e = DirEntry {
            gen: 1,
            flags: 0,
            key_hash: 42,
            body_len: 1000,
            first_block: 9,
            data_blocks: 0,
            rec_blocks: 1,
            ticks: 5,
            meta: b"meta".to_vec(),
        };
        let mut buf = vec![0u8; DIR_ENTRY_BYTES];
        e.encode(&mut buf);
        assert_eq!(DirEntry::decode(&buf).unwrap(), Some(e));
        assert_eq!(DirEntry::decode(&[0u8; DIR_ENTRY_BYTES]).unwrap(), None);
        buf[20] ^= 1;
        assert!(DirEntry::decode(&buf).is_err());
    }
}
