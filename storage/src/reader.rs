//! Ranged read of one object: check the slot generation, read the record (key hash, chunk crcs,
//! or the inline body), read only the chunks the range needs, verify each crc32c, and check the
//! generation again after the I/O so an object evicted or replaced meanwhile is `Gone`, never
//! another object's bytes.
//!
//! ```text
//! packed slot ─────────────────────────────▶ one read: header + body (crc over both)
//! record only (inline body) ───────────────▶ one read: the record
//! one chunk, record cached (records.rs) ───▶ one read: the chunk
//! the last chunk (record right behind it) ─▶ one read: chunk + record
//! any other chunk ─────────────────────────▶ two reads at once: chunk, record
//! a range over several chunks ─────────────▶ the record, then its chunks
//! ```

use crate::disk::Disk;
use crate::error::StorageError;
use crate::index::{Location, STATE_LIVE};
use crate::layout::{
    blocks_for, Extent, PackedHead, Record, RecordHead, BLOCK_BYTES, PACKED_HEADER_BYTES,
    PACK_RECORD_BYTES_MAX,
};
use crate::slab::AlignedBuf;
use crate::ObjectInfo;
use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;

fn still_current(disk: &Disk, obj: &ObjectInfo) -> bool {
    let st = disk.st.borrow();
    st.index
        .get(obj.slot)
        .is_some_and(|s| s.state() == STATE_LIVE && s.gen() == obj.gen)
}

/// A failed I/O or check: Gone if the object changed meanwhile, else a disk fault.
async fn failed(disk: &Disk, obj: &ObjectInfo, err: StorageError) -> StorageError {
    if still_current(disk, obj) {
        disk.fault(err).await
    } else {
        StorageError::Gone
    }
}

fn corrupt(disk: &Disk, what: &'static str, block: u32) -> StorageError {
    StorageError::Corrupt {
        what,
        path: disk.path.clone(),
        offset_bytes: u64::from(block) * BLOCK_BYTES,
    }
}

/// The checked header of `obj`'s record, read into `buf` from `block`: a record that fails its
/// crc is a fault (or `Gone` if the slot changed meanwhile); one of the same slot and generation
/// but another key — a 64-bit hash collision at lookup, or the slot changed — is not this object.
async fn record_head_of(
    disk: &Disk,
    obj: &ObjectInfo,
    buf: &[u8],
    block: u32,
) -> Result<RecordHead, StorageError> {
    let Some(head) = RecordHead::decode(buf) else {
        return Err(failed(disk, obj, corrupt(disk, "record", block)).await);
    };
    if head.gen != obj.gen || head.body_len != obj.body_len || head.key_hash128 != obj.key_hash128 {
        return Err(
            if still_current(disk, obj) && head.key_hash128 == obj.key_hash128 {
                disk.fault(corrupt(disk, "record", block)).await
            } else {
                StorageError::Gone
            },
        );
    }
    Ok(head)
}

/// Read body bytes `[offset, offset + len)` of `obj` from `disk`.
pub(crate) async fn read_range(
    disk: &Disk,
    obj: &ObjectInfo,
    offset: u64,
    len: u64,
) -> Result<Bytes, StorageError> {
    if !disk.online() {
        return Err(disk.offline_error());
    }
    if !still_current(disk, obj) {
        return Err(StorageError::Gone);
    }
    if let Some(at) = packed_span(disk, obj.slot) {
        return read_packed(disk, obj, at, offset, len).await;
    }
    let loc: Location = disk.st.borrow().index.location(obj.slot);
    if !loc.data.is_empty() && len > 0 {
        let cached = disk.records.borrow().get(obj, &loc.data);
        if let Some(rec) = cached {
            if let Some(out) = read_chunk_of(disk, obj, &rec, offset, len).await? {
                return Ok(out);
            }
            // Not this object's chunk after all (a stale entry): read it with its record.
            disk.records.borrow_mut().remove(obj.slot);
        }
        if let Some(out) = read_chunk_with_record(disk, obj, &loc, offset, len).await? {
            return Ok(out);
        }
    }
    let rec_buf = AlignedBuf::for_read(loc.record.blocks as usize * BLOCK_BYTES as usize);
    let (res, rec_buf) = disk
        .file
        .read_blocks(rec_buf, u64::from(loc.record.start))
        .await;
    if let Err(e) = res {
        return Err(failed(disk, obj, e).await);
    }
    // The header alone (crc-checked over the whole record): an inline body needs nothing else.
    let head = record_head_of(disk, obj, rec_buf.as_slice(), loc.record.start).await?;
    disk.st.borrow_mut().reads += 1;
    if len == 0 {
        return Ok(Bytes::new());
    }
    let out = if head.inline {
        let start = head.body_at + offset as usize;
        Bytes::from_owner(rec_buf).slice(start..start + len as usize)
    } else {
        let rec = Record::from_head(rec_buf.as_slice(), &head);
        drop(rec_buf);
        read_chunks(disk, obj, &rec, offset, len).await?
    };
    if !still_current(disk, obj) {
        return Err(StorageError::Gone);
    }
    Ok(out)
}

/// A range inside one chunk of `obj`, whose record is `rec` (cached): the chunk alone is read.
/// `None` if the range spans chunks or the chunk does not match the record's crc (the caller
/// reads it again with the record from the disk, which decides whether it is corrupt).
async fn read_chunk_of(
    disk: &Disk,
    obj: &ObjectInfo,
    rec: &Record,
    offset: u64,
    len: u64,
) -> Result<Option<Bytes>, StorageError> {
    let cb = u64::from(rec.chunk_bytes);
    let c = offset / cb;
    if cb == 0 || (offset + len - 1) / cb != c || c as usize >= rec.chunk_crcs.len() {
        return Ok(None);
    }
    let chunk_start = c * cb;
    let chunk_len = cb.min(rec.body_len - chunk_start) as usize;
    let buf = match read_extent_blocks(
        disk,
        &rec.extents,
        chunk_start / BLOCK_BYTES,
        blocks_for(chunk_len as u64),
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return Err(failed(disk, obj, e).await),
    };
    if crate::layout::crc(&buf.as_slice()[..chunk_len]) != rec.chunk_crcs[c as usize] {
        return Ok(None);
    }
    disk.st.borrow_mut().reads += 1;
    if !still_current(disk, obj) {
        return Err(StorageError::Gone);
    }
    let lo = (offset - chunk_start) as usize;
    Ok(Some(Bytes::from_owner(buf).slice(lo..lo + len as usize)))
}

/// A range inside one chunk of an object with data blocks, read together with its record: one
/// read when the chunk is the last one and the record follows it on the disk (the usual layout),
/// else the two reads at once — not the record first and then the chunk. The extents come from
/// the RAM index; the record read with them must name the same extents and chunk size, or
/// `None` is returned and the caller reads the record first (an object written with another
/// `chunk_bytes`, or a slot that changed meanwhile).
async fn read_chunk_with_record(
    disk: &Disk,
    obj: &ObjectInfo,
    loc: &Location,
    offset: u64,
    len: u64,
) -> Result<Option<Bytes>, StorageError> {
    let cb = u64::from(disk.geo.chunk_bytes);
    let c = offset / cb;
    if cb == 0 || (offset + len - 1) / cb != c || c * cb >= obj.body_len {
        return Ok(None);
    }
    let chunk_start = c * cb;
    let chunk_len = cb.min(obj.body_len - chunk_start) as usize;
    let blocks = blocks_for(chunk_len as u64);
    let pieces = map_blocks(&loc.data, chunk_start / BLOCK_BYTES, blocks);
    if pieces.iter().any(Option::is_none) {
        return Ok(None);
    }
    let rec_bytes = loc.record.blocks as usize * BLOCK_BYTES as usize;
    let chunk_bytes = blocks as usize * BLOCK_BYTES as usize;
    let adjacent = matches!(pieces.as_slice(),
        [Some(p)] if u64::from(p.start) + u64::from(p.blocks) == u64::from(loc.record.start));
    // (buffer, where the record starts in it, the chunk's buffer if apart)
    let (rec_buf, rec_at, chunk_buf) = if adjacent {
        let first = pieces[0].expect("checked").start;
        let buf = AlignedBuf::for_read(chunk_bytes + rec_bytes);
        let (res, buf) = disk.file.read_blocks(buf, u64::from(first)).await;
        if let Err(e) = res {
            return Err(failed(disk, obj, e).await);
        }
        (buf, chunk_bytes, None)
    } else {
        let rec_buf = AlignedBuf::for_read(rec_bytes);
        let (rec, chunk) = crate::join::join2(
            disk.file.read_blocks(rec_buf, u64::from(loc.record.start)),
            read_extent_blocks(disk, &loc.data, chunk_start / BLOCK_BYTES, blocks),
        )
        .await;
        let (res, rec_buf) = rec;
        let chunk = match (res, chunk) {
            (Ok(()), Ok(b)) => b,
            (Err(e), _) | (_, Err(e)) => return Err(failed(disk, obj, e).await),
        };
        (rec_buf, 0, Some(chunk))
    };
    let rec_slice = &rec_buf.as_slice()[rec_at..];
    let head = record_head_of(disk, obj, rec_slice, loc.record.start).await?;
    if head.inline {
        return Ok(None);
    }
    let rec = Record::from_head(rec_slice, &head);
    if u64::from(rec.chunk_bytes) != cb
        || rec.extents != loc.data
        || rec.chunk_crcs.len() as u64 != rec.body_len.div_ceil(cb)
    {
        return Ok(None);
    }
    let want = rec.chunk_crcs[c as usize];
    if rec.chunk_crcs.len() > 1 {
        disk.records
            .borrow_mut()
            .insert(obj.slot, std::rc::Rc::new(rec));
    }
    let data = match chunk_buf {
        Some(b) => b,
        None => rec_buf,
    };
    if crate::layout::crc(&data.as_slice()[..chunk_len]) != want {
        return Err(failed(disk, obj, corrupt(disk, "chunk", loc.record.start)).await);
    }
    disk.st.borrow_mut().reads += 1;
    if !still_current(disk, obj) {
        return Err(StorageError::Gone);
    }
    let lo = (offset - chunk_start) as usize;
    Ok(Some(Bytes::from_owner(data).slice(lo..lo + len as usize)))
}

/// (first block, byte offset in it, pack sequence number) of packed slot `id`'s record; None if
/// `id` is not packed.
fn packed_span(disk: &Disk, id: u32) -> Option<(u32, usize, u64)> {
    let st = disk.st.borrow();
    let (entry, offset) = st.index.packed_at(id)?;
    let (start, seq) = st
        .packs
        .get(entry)
        .map_or((0, u64::MAX), |p| (p.extent.start, p.seq));
    let abs = u64::from(start) * BLOCK_BYTES + u64::from(offset);
    Some((
        (abs / BLOCK_BYTES) as u32,
        (abs % BLOCK_BYTES) as usize,
        seq,
    ))
}

/// Read `len` bytes at blocks from `block` covering `at_byte + bytes`.
async fn read_span(
    disk: &Disk,
    block: u32,
    at_byte: usize,
    bytes: usize,
) -> Result<AlignedBuf, StorageError> {
    let blocks = blocks_for((at_byte + bytes) as u64);
    let buf = AlignedBuf::for_read(blocks as usize * BLOCK_BYTES as usize);
    let (res, buf) = disk.file.read_blocks(buf, u64::from(block)).await;
    res.map(|()| buf)
}

/// A packed object's body bytes: one read of its header and body, checked by `head_crc`.
async fn read_packed(
    disk: &Disk,
    obj: &ObjectInfo,
    (block, at, seq): (u32, usize, u64),
    offset: u64,
    len: u64,
) -> Result<Bytes, StorageError> {
    let buf = match read_span(disk, block, at, PACKED_HEADER_BYTES + obj.body_len as usize).await {
        Ok(b) => b,
        Err(e) => return Err(failed(disk, obj, e).await),
    };
    let head = PackedHead::decode(&buf.as_slice()[at..], seq);
    let Some(head) = head.filter(|h| h.body_len as u64 == obj.body_len) else {
        return Err(failed(disk, obj, corrupt(disk, "packed record", block)).await);
    };
    if head.gen != obj.gen || head.key_hash128 != obj.key_hash128 {
        return Err(
            if still_current(disk, obj) && head.key_hash128 == obj.key_hash128 {
                disk.fault(corrupt(disk, "packed record", block)).await
            } else {
                StorageError::Gone
            },
        );
    }
    disk.st.borrow_mut().reads += 1;
    if !still_current(disk, obj) {
        return Err(StorageError::Gone);
    }
    let start = at + PACKED_HEADER_BYTES + offset as usize;
    Ok(Bytes::from_owner(buf).slice(start..start + len as usize))
}

async fn read_chunks(
    disk: &Disk,
    obj: &ObjectInfo,
    rec: &Record,
    offset: u64,
    len: u64,
) -> Result<Bytes, StorageError> {
    let cb = u64::from(rec.chunk_bytes);
    // A crc-valid record can still be inconsistent (a bug that wrote it): never divide by zero
    // or index an empty extent list on its word.
    if cb == 0 || rec.extents.is_empty() || rec.chunk_crcs.len() as u64 != rec.body_len.div_ceil(cb)
    {
        let block = rec.extents.first().map_or(0, |e| e.start);
        return Err(failed(disk, obj, corrupt(disk, "record", block)).await);
    }
    let first = offset / cb;
    let last = (offset + len - 1) / cb;
    let mut parts: Vec<Bytes> = Vec::with_capacity((last - first + 1) as usize);
    for c in first..=last {
        let chunk_start = c * cb;
        let chunk_len = cb.min(rec.body_len - chunk_start) as usize;
        let blocks = blocks_for(chunk_len as u64);
        let buf =
            match read_extent_blocks(disk, &rec.extents, chunk_start / BLOCK_BYTES, blocks).await {
                Ok(b) => b,
                Err(e) => return Err(failed(disk, obj, e).await),
            };
        if crate::layout::crc(&buf.as_slice()[..chunk_len]) != rec.chunk_crcs[c as usize] {
            let block = rec.extents[0].start;
            return Err(failed(disk, obj, corrupt(disk, "chunk", block)).await);
        }
        let lo = offset.max(chunk_start) - chunk_start;
        let hi = (offset + len).min(chunk_start + chunk_len as u64) - chunk_start;
        parts.push(Bytes::from_owner(buf).slice(lo as usize..hi as usize));
    }
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part"));
    }
    let mut out = BytesMut::with_capacity(len as usize);
    for p in parts {
        out.extend_from_slice(&p);
    }
    Ok(out.freeze())
}

/// Logical data blocks `[first, first + count)` of `extents`, read into one buffer (a chunk of a
/// stored object, or of one still being written); the caller checks the crc and that the object
/// is still the one it asked for. Extents that do not cover the range are a corrupt record.
pub(crate) async fn read_extent_blocks(
    disk: &Disk,
    extents: &[Extent],
    first: u64,
    count: u64,
) -> Result<AlignedBuf, StorageError> {
    let mut buf = AlignedBuf::for_read(count as usize * BLOCK_BYTES as usize);
    let mut filled = 0u64;
    for piece in map_blocks(extents, first, count) {
        let Some(piece) = piece else {
            return Err(corrupt(disk, "record extents", 0));
        };
        let from = (filled * BLOCK_BYTES) as usize;
        let to = from + piece.blocks as usize * BLOCK_BYTES as usize;
        let (res, slice) = disk
            .file
            .read_blocks(buf.slice_mut(from..to), u64::from(piece.start))
            .await;
        buf = slice.into_inner();
        res?;
        filled += u64::from(piece.blocks);
    }
    Ok(buf)
}

/// Disk pieces of logical data blocks `[first, first + count)`; a None item means the extents do
/// not cover the range (a corrupt record).
fn map_blocks(extents: &[Extent], first: u64, count: u64) -> Vec<Option<Extent>> {
    let mut out = Vec::new();
    let mut logical = 0u64;
    let mut want_from = first;
    let want_to = first + count;
    for e in extents {
        let e_from = logical;
        let e_to = logical + u64::from(e.blocks);
        logical = e_to;
        if e_to <= want_from || want_from >= want_to {
            continue;
        }
        let lo = want_from.max(e_from);
        let hi = want_to.min(e_to);
        out.push(Some(Extent {
            start: e.start + (lo - e_from) as u32,
            blocks: (hi - lo) as u32,
        }));
        want_from = hi;
    }
    if want_from < want_to {
        out.push(None);
    }
    out
}

/// The cache key of LIVE slot `id` at generation `gen`, read from its record (for purge).
/// Ok(None) if the object changed meanwhile or its record is unreadable (counted as a fault).
pub(crate) async fn record_key(
    disk: &Disk,
    id: u32,
    gen: u32,
) -> Result<Option<Vec<u8>>, StorageError> {
    let current = {
        let st = disk.st.borrow();
        matches!(st.index.get(id), Some(s) if s.state() == STATE_LIVE && s.gen() == gen)
    };
    if !current {
        return Ok(None);
    }
    if let Some(span) = packed_span(disk, id) {
        return packed_key(disk, gen, span).await;
    }
    let loc = disk.st.borrow().index.location(id);
    let buf = AlignedBuf::for_read(loc.record.blocks as usize * BLOCK_BYTES as usize);
    let (res, buf) = disk
        .file
        .read_blocks(buf, u64::from(loc.record.start))
        .await;
    if let Err(e) = res {
        disk.fault(e).await;
        return Ok(None);
    }
    match Record::decode(buf.as_slice()) {
        Some((rec, _)) if rec.gen == gen => Ok(Some(rec.key)),
        _ => {
            disk.fault(corrupt(disk, "record", loc.record.start)).await;
            Ok(None)
        }
    }
}

/// The key of the packed record at `at` bytes into `block` (header first, then the rest).
async fn packed_key(
    disk: &Disk,
    gen: u32,
    (block, at, seq): (u32, usize, u64),
) -> Result<Option<Vec<u8>>, StorageError> {
    let head_buf = match read_span(disk, block, at, PACKED_HEADER_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            disk.fault(e).await;
            return Ok(None);
        }
    };
    let raw = &head_buf.as_slice()[at..at + PACKED_HEADER_BYTES];
    let record_len = u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]) as usize;
    let want = record_len.clamp(PACKED_HEADER_BYTES, PACK_RECORD_BYTES_MAX);
    let whole = match read_span(disk, block, at, want).await {
        Ok(b) => b,
        Err(e) => {
            disk.fault(e).await;
            return Ok(None);
        }
    };
    let rec = &whole.as_slice()[at..];
    match PackedHead::decode(rec, seq).and_then(|h| Some((h, h.tail(rec)?))) {
        Some((h, (key, _))) if h.gen == gen => Ok(Some(key.to_vec())),
        _ => {
            disk.fault(corrupt(disk, "packed record", block)).await;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_blocks_splits_over_extents() {
        let ext = [
            Extent {
                start: 100,
                blocks: 3,
            },
            Extent {
                start: 200,
                blocks: 5,
            },
        ];
        let got = map_blocks(&ext, 2, 3);
        assert_eq!(
            got,
            vec![
                Some(Extent {
                    start: 102,
                    blocks: 1
                }),
                Some(Extent {
                    start: 200,
                    blocks: 2
                })
            ]
        );
        assert_eq!(map_blocks(&ext, 7, 2).last(), Some(&None));
    }
}
