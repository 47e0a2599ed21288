//! Open a disk: format it if new, check its superblock (a bad one refuses only this disk), then
//! rebuild the index from the directory — one sequential pass over `dir_entries * 512` bytes, plus
//! one record read per fragmented object and one read of the committed part of each pack (its
//! members' keys, metadata and bodies, every record crc-checked). Entries that fail their crc,
//! overlap another object, leave the data area or repeat a key are zeroed on disk before the
//! disk takes writes; pack members that fail their checks or repeat a key get their dead bit.

use crate::alloc::FreeMap;
use crate::disk::{unix_secs, Disk};
use crate::index::{Index, Location, BODY_LEN_MAX, GEN_MASK, SLOTS_MAX};
use crate::layout::{
    blocks_for, decode_pack_members, DirEntry, Extent, Geometry, PackedHead, Record, Superblock,
    BLOCK_BYTES, DIR_ENTRIES_PER_BLOCK, DIR_ENTRY_BYTES, ENTRY_FLAG_FRAG, ENTRY_FLAG_PACK,
    PACKED_ALIGN, PACK_BLOCKS,
};
use crate::pack::{Member, Pack, Packs, DEAD};
use crate::policy::interleaved;
use crate::slab::{AlignedBuf, SlabFile};
use crate::uring::DiskRing;
use crate::DiskSpec;
use std::collections::HashMap;
use std::rc::Rc;

/// Directory blocks read per I/O during recovery.
const SCAN_BLOCKS_PER_READ: u64 = 256;
/// Packed ids per byte of data area at most: one per 256 bytes (records are at least the 48-byte
/// header plus key and metadata; RAM grows only with the objects actually held).
const DATA_BYTES_PER_PACKED_ID: u64 = 256;

/// Packed ids a disk of geometry `geo` may hold.
pub(crate) fn packed_capacity(geo: &Geometry) -> u32 {
    u32::try_from(geo.data_blocks() * BLOCK_BYTES / DATA_BYTES_PER_PACKED_ID).unwrap_or(u32::MAX)
}

/// A member recovered from a pack.
struct Recovered {
    gen: u32,
    key_hash: u64,
    body_len: u64,
    meta: Vec<u8>,
}

/// Open (or create and format) the disk of `spec`. Err is the refusal reason, naming the path.
/// `identity`: the disk must be this one (a replacement keeps the replaced disk's UUID, so key
/// placement over the node's disks does not change): a blank device or file is formatted with
/// it, and one holding another Arrow disk is refused.
pub(crate) async fn open_disk(
    spec: &DiskSpec,
    chunk_bytes: u32,
    ring: &Rc<DiskRing>,
    identity: Option<u128>,
) -> Result<Disk, String> {
    let path = &spec.path;
    let (file, created) = SlabFile::open(path, spec.size_bytes, ring).map_err(|e| e.to_string())?;
    let buf = AlignedBuf::for_read(BLOCK_BYTES as usize);
    let (res, buf) = file.read_blocks(buf, 0).await;
    res.map_err(|e| e.to_string())?;
    if created || buf.as_slice().iter().all(|&b| b == 0) {
        format(&file, spec, chunk_bytes, created, identity)
            .await
            .map_err(|e| e.to_string())?;
    }
    let buf = AlignedBuf::for_read(BLOCK_BYTES as usize);
    let (res, buf) = file.read_blocks(buf, 0).await;
    res.map_err(|e| e.to_string())?;
    let sb = Superblock::decode(buf.as_slice(), path)?;
    if let Some(want) = identity.filter(|&w| w != sb.uuid) {
        return Err(format!(
            "{}: holds Arrow disk {}, not {}; to use it as the replacement, zero its first block (e.g. dd if=/dev/zero of={} bs=4096 count=1 oflag=direct conv=notrunc)",
            path.display(),
            uuid::Uuid::from_u128(sb.uuid),
            uuid::Uuid::from_u128(want),
            path.display()
        ));
    }
    if sb.geometry.size_bytes != spec.size_bytes {
        return Err(format!(
            "{}: configured size {} bytes differs from the disk's {} bytes",
            path.display(),
            spec.size_bytes,
            sb.geometry.size_bytes
        ));
    }
    let geo = sb.geometry;

    // 1. Scan the directory.
    let mut entries: Vec<(u32, DirEntry)> = Vec::new();
    let mut bad: Vec<u32> = Vec::new();
    let mut block = 0u64;
    while block < geo.dir_blocks() {
        let n = SCAN_BLOCKS_PER_READ.min(geo.dir_blocks() - block);
        let buf = AlignedBuf::for_read((n * BLOCK_BYTES) as usize);
        let (res, buf) = file.read_blocks(buf, geo.dir_start_block + block).await;
        res.map_err(|e| format!("{}: directory unreadable: {e}", path.display()))?;
        for (i, raw) in buf.as_slice().chunks_exact(DIR_ENTRY_BYTES).enumerate() {
            let id = (block * u64::from(DIR_ENTRIES_PER_BLOCK)) as u32 + i as u32;
            match DirEntry::decode(raw) {
                Ok(None) => {}
                Ok(Some(e)) => entries.push((id, e)),
                Err(()) => bad.push(id),
            }
        }
        block += n;
    }

    // 2. Locations (fragmented objects: from their record), duplicates dropped; packs apart.
    type Entries = Vec<(u32, DirEntry)>;
    let (pack_entries, entries): (Entries, Entries) = entries
        .into_iter()
        .partition(|(_, e)| e.flags & ENTRY_FLAG_PACK != 0);
    let mut seen: HashMap<u64, u32> = HashMap::with_capacity(entries.len());
    let mut located: Vec<(u32, DirEntry, Location)> = Vec::with_capacity(entries.len());
    for (id, e) in entries {
        // Entries the index cannot hold (written by an older build with wider fields) go too.
        let unfit = id >= SLOTS_MAX || e.gen > GEN_MASK || e.body_len > BODY_LEN_MAX;
        if e.rec_blocks == 0 || unfit || seen.insert(e.key_hash, id).is_some() {
            bad.push(id);
            continue;
        }
        let rec = Extent {
            start: e.first_block,
            blocks: u32::from(e.rec_blocks),
        };
        if e.flags & ENTRY_FLAG_FRAG != 0 {
            match read_extents(&file, &geo, rec, &e).await {
                Some(data) => located.push((id, e, Location { data, record: rec })),
                None => bad.push(id),
            }
        } else {
            let data = if e.data_blocks > 0 {
                vec![Extent {
                    start: e.first_block,
                    blocks: e.data_blocks,
                }]
            } else {
                Vec::new()
            };
            let record = Extent {
                start: e.first_block.wrapping_add(e.data_blocks),
                blocks: u32::from(e.rec_blocks),
            };
            located.push((id, e, Location { data, record }));
        }
    }

    // 2b. Packs: their committed records, read and checked.
    let mut packs: Vec<(u32, DirEntry, PackRecords)> = Vec::new();
    let mut to_read: Vec<(u32, DirEntry, Vec<bool>)> = Vec::with_capacity(pack_entries.len());
    for (id, e) in pack_entries {
        let in_area = u64::from(e.first_block) >= geo.data_start_block
            && u64::from(e.first_block) + u64::from(e.data_blocks) <= geo.total_blocks
            && e.data_blocks > 0
            && e.data_blocks <= PACK_BLOCKS
            && e.body_len <= u64::from(e.data_blocks) * BLOCK_BYTES
            && id < SLOTS_MAX
            && e.gen <= GEN_MASK;
        let members = decode_pack_members(&e.meta).filter(|_| in_area);
        let Some(dead) = members else {
            bad.push(id);
            continue;
        };
        to_read.push((id, e, dead));
    }
    // PACK_READS_AT_ONCE packs in flight: a disk of small objects holds thousands of packs, and
    // one read at a time left the device at queue depth 1 (4 s for a million objects).
    for group in to_read.chunks(PACK_READS_AT_ONCE) {
        let reads = group
            .iter()
            .map(|(_, e, dead)| read_pack(&file, e, dead))
            .collect();
        let records = crate::join::join_all(reads).await;
        for ((id, e, _), records) in group.iter().zip(records) {
            packs.push((*id, e.clone(), records));
        }
    }

    // 3. Free map from the used extents; overlapping or out-of-range objects are dropped.
    let mut used: Vec<(Extent, usize)> = Vec::with_capacity(located.len() + packs.len());
    for (i, (_, _, loc)) in located.iter().enumerate() {
        for e in loc.data.iter().chain([&loc.record]) {
            used.push((*e, i));
        }
    }
    for (k, (_, e, _)) in packs.iter().enumerate() {
        let ext = Extent {
            start: e.first_block,
            blocks: e.data_blocks,
        };
        used.push((ext, located.len() + k));
    }
    let (free, dropped) = FreeMap::from_used(
        geo.data_start_block as u32,
        geo.total_blocks as u32,
        &mut used,
    );
    drop(used);
    let mut keep = vec![true; located.len() + packs.len()];
    for i in dropped {
        keep[i] = false;
    }

    // 4. Index and policy.
    let packed_cap = packed_capacity(&geo);
    let mut index = Index::new(geo.dir_entries, packed_cap, geo.chunk_bytes);
    let data_bytes = geo.data_blocks() * BLOCK_BYTES;
    let mut policy = interleaved(spec.policy, geo.dir_entries, packed_cap, data_bytes);
    let now = u32::try_from(unix_secs().saturating_sub(sb.epoch_unix_secs)).unwrap_or(u32::MAX);
    let mut live_bytes = 0u64;
    let n_located = located.len();
    for (i, (id, e, loc)) in located.into_iter().enumerate() {
        if !keep[i] {
            bad.push(id);
            continue;
        }
        index.claim_for_recovery(id, e.gen);
        index.set_object(id, e.key_hash, e.body_len, &loc, &e.meta);
        index.publish_recovered(id);
        policy.insert(id, e.body_len.max(1), now);
        live_bytes += e.body_len;
    }
    let mut table = Packs::default();
    let mut dirty: Vec<u32> = Vec::new();
    for (k, (id, e, records)) in packs.into_iter().enumerate() {
        if !keep[n_located + k] {
            bad.push(id);
            continue;
        }
        let mut pack = Pack {
            seq: e.key_hash,
            extent: Extent {
                start: e.first_block,
                blocks: e.data_blocks,
            },
            tail: None,
            members: Vec::with_capacity(records.len()),
            alive: 0,
            used: e.body_len as u32,
            durable_members: records.len() as u32,
            durable_bytes: e.body_len as u32,
            committed_members: records.len() as u32,
            buf: None,
            sealed: true,
            flushing: false,
            freeing: false,
            failed: false,
        };
        let mut changed = false;
        for (offset, r) in records {
            let Some(r) = r else {
                pack.members.push(Member { offset, slot: DEAD });
                continue;
            };
            if r.is_none() {
                // Failed its checks: its dead bit goes out below.
                changed = true;
                pack.members.push(Member { offset, slot: DEAD });
                continue;
            }
            let r = r.expect("checked");
            let slot = if seen.insert(r.key_hash, id).is_some() {
                None
            } else {
                index.claim_packed_for_recovery(r.gen & GEN_MASK)
            };
            let Some(slot) = slot else {
                changed = true;
                pack.members.push(Member { offset, slot: DEAD });
                continue;
            };
            index.set_packed(slot, r.key_hash, r.body_len, id, offset, &r.meta);
            index.publish_recovered(slot);
            policy.insert(slot, r.body_len.max(1), now);
            live_bytes += r.body_len;
            pack.alive += 1;
            pack.members.push(Member { offset, slot });
        }
        if pack.alive == 0 {
            bad.push(id);
            continue;
        }
        index.claim_for_recovery(id, e.gen);
        table.next_seq = table.next_seq.max(e.key_hash + 1);
        table.members_alive += u64::from(pack.alive);
        // The pack that was open at shutdown: cut it to what it uses (the tail is returned once
        // the shorter entry is durable, below).
        changed |= pack.cut_to_used();
        if changed {
            dirty.push(id);
        }
        table.by_entry.insert(id, pack);
    }
    index.finish_recovery();
    let disk = Disk::new(
        &sb,
        path.clone(),
        file,
        spec.error_threshold,
        index,
        free,
        policy,
        live_bytes,
        table,
    );
    if !dirty.is_empty() {
        match disk.commit_entries(&dirty).await {
            Ok(()) => {
                let mut st = disk.st.borrow_mut();
                let st = &mut *st;
                for p in st.packs.by_entry.values_mut() {
                    if let Some(t) = p.tail.take() {
                        st.free.free(t);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not rewrite pack entries")
            }
        }
    }
    if !bad.is_empty() {
        bad.sort_unstable();
        tracing::warn!(path = %path.display(), entries = bad.len(), "zeroing bad directory entries");
        if let Err(e) = disk.commit_entries(&bad).await {
            tracing::warn!(path = %path.display(), error = %e, "could not zero bad entries");
        }
    }
    Ok(disk)
}

/// Pack reads recovery keeps in flight at once.
const PACK_READS_AT_ONCE: usize = 16;

/// Each member of a pack in order: its offset and `None` if its dead bit is set, `Some(None)`
/// if its record fails its checks (offsets past the first such record are unknown: they get
/// distinct ones past the pack's committed bytes, keeping the list sorted), else the record.
type PackRecords = Vec<(u32, Option<Option<Recovered>>)>;

async fn read_pack(file: &SlabFile, e: &DirEntry, dead: &[bool]) -> PackRecords {
    let used = e.body_len as usize;
    let buf = AlignedBuf::for_read(blocks_for(used as u64) as usize * BLOCK_BYTES as usize);
    let (res, buf) = file.read_blocks(buf, u64::from(e.first_block)).await;
    let bytes = if res.is_ok() {
        &buf.as_slice()[..used]
    } else {
        &[][..]
    };
    let mut out = Vec::with_capacity(dead.len());
    let mut at = Some(0usize);
    for (i, &is_dead) in dead.iter().enumerate() {
        let parsed = at.and_then(|mut off| {
            // Zeroes where a record would start: the gap before one that starts at a block.
            if bytes.get(off..off + 4).is_some_and(|m| m == [0; 4]) {
                off = off.next_multiple_of(BLOCK_BYTES as usize);
            }
            let rec = bytes.get(off..)?;
            let head = PackedHead::decode(rec, e.key_hash).filter(|h| h.member as usize == i)?;
            let (_, meta) = head.tail(rec)?;
            Some((off, head, meta.to_vec()))
        });
        let Some((off, head, meta)) = parsed else {
            at = None;
            out.push(((used + 8 * (i + 1)) as u32, Some(None)));
            continue;
        };
        at = Some((off + head.record_len).next_multiple_of(PACKED_ALIGN));
        let rec = (!is_dead).then_some(Some(Recovered {
            gen: head.gen,
            key_hash: head.key_hash128 as u64,
            body_len: head.body_len as u64,
            meta,
        }));
        out.push((off as u32, rec));
    }
    out
}

async fn read_extents(
    file: &SlabFile,
    geo: &Geometry,
    rec: Extent,
    entry: &DirEntry,
) -> Option<Vec<Extent>> {
    if u64::from(rec.start) < geo.data_start_block
        || u64::from(rec.start) + u64::from(rec.blocks) > geo.total_blocks
    {
        return None;
    }
    let buf = AlignedBuf::for_read(rec.blocks as usize * BLOCK_BYTES as usize);
    let (res, buf) = file.read_blocks(buf, u64::from(rec.start)).await;
    res.ok()?;
    let (record, _) = Record::decode(buf.as_slice())?;
    let matches = record.gen == entry.gen
        && record.key_hash128 as u64 == entry.key_hash
        && record.body_len == entry.body_len;
    matches.then_some(record.extents)
}

async fn format(
    file: &SlabFile,
    spec: &DiskSpec,
    chunk_bytes: u32,
    created: bool,
    identity: Option<u128>,
) -> Result<(), crate::StorageError> {
    let geometry = Geometry::new(spec.size_bytes, chunk_bytes)?;
    if !created {
        // A device or reused file: zero the directory (a fresh fallocated file reads as zeroes).
        let mut block = 0u64;
        while block < geometry.dir_blocks() {
            let n = SCAN_BLOCKS_PER_READ.min(geometry.dir_blocks() - block);
            let buf = AlignedBuf::new((n * BLOCK_BYTES) as usize);
            let (res, _) = file
                .write_blocks(buf, geometry.dir_start_block + block)
                .await;
            res?;
            block += n;
        }
    }
    let sb = Superblock {
        uuid: identity.unwrap_or_else(|| uuid::Uuid::new_v4().as_u128()),
        geometry,
        offline: false,
        epoch_unix_secs: unix_secs(),
    };
    let mut buf = AlignedBuf::new(BLOCK_BYTES as usize);
    sb.encode(buf.as_mut_slice());
    let (res, _) = file.write_blocks(buf, 0).await;
    res?;
    file.sync().await
}
