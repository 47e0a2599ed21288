//! The cluster table: one shared-memory file (under /dev/shm) with a header and one fixed
//! record per node, written by the comet receiver only and read lock-free by every shard, the
//! DNS responder and `arrow status` in another process.
//!
//! Layout (every field a little-endian `u64` word, accessed only through atomics):
//! - header, 8 words: magic, layout (version | record words | max nodes), comet interval ms,
//!   missing intervals, records in use (high-water mark), writer pid, generation (+1 per
//!   upsert), 1 reserved;
//! - `max_nodes` records of [`RECORD_WORDS`] words. Word 0 of a record is its seqlock sequence:
//!   odd while the writer changes the record. A reader copies the record between two reads of
//!   the sequence and retries when they differ or are odd, so it never sees a torn record.
//!
//! Liveness is computed by the reader: a record last written more than
//! `missing_intervals × comet_interval_ms` ago (CLOCK_MONOTONIC, shared by every process of the
//! host) is out of service. A node that stops sending is thus out of service for every node
//! within `missing_intervals + 1` intervals, and a returning node gets its record back (found by
//! name).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Mutex;

use memmap2::{Mmap, MmapMut};

use crate::comet::{Comet, DiskState};
use crate::ClusterError;

/// "ARWCLTB1" as a little-endian word.
const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"ARWCLTB1");
/// Layout version of the table file.
pub const TABLE_VERSION: u64 = 1;
/// Words of the header.
pub const HEADER_WORDS: usize = 8;
/// Words of one record (512 bytes).
pub const RECORD_WORDS: usize = 64;
const NAME_WORD: usize = 16;
const NAME_WORDS: usize = 32;
const _: () = assert!(NAME_WORDS * 8 >= crate::comet::NAME_MAX_BYTES);
const _: () = assert!(NAME_WORD + NAME_WORDS <= RECORD_WORDS);
/// Reads of a record whose sequence stays odd before a reader gives up on it (its writer died
/// mid-write); the record is skipped in that snapshot.
const READ_SPINS_MAX: u32 = 10_000;

const H_MAGIC: usize = 0;
const H_LAYOUT: usize = 1;
const H_INTERVAL: usize = 2;
const H_MISSING: usize = 3;
const H_USED: usize = 4;
const H_PID: usize = 5;
const H_GENERATION: usize = 6;

const F_USED: u64 = 1;
const F_MIRRORING: u64 = 2;
const F_ADMITTING: u64 = 4;

/// When a node counts as out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub comet_interval_ms: u64,
    pub missing_intervals: u32,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            comet_interval_ms: 500,
            missing_intervals: 3,
        }
    }
}

impl Liveness {
    /// Age above which a node is out of service.
    pub fn max_age_ms(&self) -> u64 {
        self.comet_interval_ms * u64::from(self.missing_intervals)
    }
}

/// One node as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub addr: Option<IpAddr>,
    pub http_port: u16,
    /// When this node's last comet was accepted (receiver's CLOCK_MONOTONIC, ms).
    pub last_seen_ms: u64,
    /// `now − last_seen_ms` at the snapshot.
    pub age_ms: u64,
    /// Send time of the last comet (sender's wall clock, unix ms).
    pub sent_time_ms: u64,
    pub boot_id: u64,
    pub sequence: u64,
    pub brpu_bps: u64,
    /// min(C_cpu, C_net, C_disk), bits/s.
    pub capacity_bps: u64,
    /// Bytes of healthy storage: the hashing weight.
    pub weight: u64,
    pub users: u32,
    pub disks_online: u16,
    pub disks_degraded: u16,
    pub disks_total: u16,
    pub mirroring: bool,
    /// The node said it admits a new viewer under its own guarantee.
    pub admitting: bool,
    /// Comets accepted from this node since its record was taken.
    pub comets: u64,
    /// Computed from age: `age_ms ≤ missing_intervals × comet_interval_ms`.
    pub in_service: bool,
}

impl NodeView {
    /// A node in service with one healthy disk, no users and `capacity_bps` of headroom, as if
    /// its first comet had just arrived: the starting point of simulations and tests.
    pub fn fresh(name: impl Into<String>, weight: u64, capacity_bps: u64) -> NodeView {
        NodeView {
            name: name.into(),
            addr: None,
            http_port: 80,
            last_seen_ms: 0,
            age_ms: 0,
            sent_time_ms: 0,
            boot_id: 1,
            sequence: 1,
            brpu_bps: capacity_bps,
            capacity_bps,
            weight,
            users: 0,
            disks_online: 1,
            disks_degraded: 0,
            disks_total: 1,
            mirroring: false,
            admitting: true,
            comets: 1,
            in_service: true,
        }
    }

    /// Can this node take one more viewer and still give each `guarantee_bps`?
    /// `capacity / (users + 1) ≥ guarantee`; a zero guarantee admits always.
    pub fn admits(&self, guarantee_bps: u64) -> bool {
        guarantee_bps == 0 || self.capacity_bps / (u64::from(self.users) + 1) >= guarantee_bps
    }
}

/// CLOCK_MONOTONIC in milliseconds: the same clock in every process of the host.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

enum Mapping {
    Writer {
        _map: MmapMut,
        _lock: File,
        state: Mutex<WriterState>,
    },
    Reader {
        _map: Mmap,
    },
}

#[derive(Default)]
struct WriterState {
    by_name: HashMap<String, usize>,
}

/// The shared-memory cluster table (see the module docs).
pub struct Table {
    path: PathBuf,
    words: *const AtomicU64,
    max_nodes: usize,
    mapping: Mapping,
}

// SAFETY: `words` points into a mapping owned by `mapping` that lives as long as the Table and
// is never remapped; every access to it goes through `AtomicU64` (no plain reads or writes), and
// writer-side bookkeeping is behind a Mutex.
unsafe impl Send for Table {}
// SAFETY: as above: shared access is only through atomics and the writer Mutex.
unsafe impl Sync for Table {}

fn table_len_bytes(max_nodes: usize) -> usize {
    (HEADER_WORDS + max_nodes * RECORD_WORDS) * 8
}

fn layout_word(max_nodes: u32) -> u64 {
    TABLE_VERSION | (RECORD_WORDS as u64) << 16 | u64::from(max_nodes) << 32
}

impl Table {
    /// Opens (or creates) the table as its single writer with the default liveness.
    pub fn create(path: &Path, max_nodes: u32) -> Result<Table, ClusterError> {
        Self::create_with(path, max_nodes, Liveness::default())
    }

    /// Opens the table at `path` as its single writer: takes an exclusive lock on the file,
    /// keeps its records when the layout matches (a restarted node sees the cluster at once),
    /// else replaces the file with a fresh one (readers of the old file keep the old inode).
    pub fn create_with(
        path: &Path,
        max_nodes: u32,
        liveness: Liveness,
    ) -> Result<Table, ClusterError> {
        if !(1..=crate::config::MAX_NODES_LIMIT).contains(&max_nodes) {
            return Err(ClusterError::Config(format!(
                "max_nodes = {max_nodes} must be within 1..={}",
                crate::config::MAX_NODES_LIMIT
            )));
        }
        let io = |op, source| ClusterError::TableIo {
            op,
            path: path.to_owned(),
            source,
        };
        let expected_len = table_len_bytes(max_nodes as usize) as u64;
        let mut replaced = false;
        let file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(|e| io("open", e))?;
            // SAFETY: flock on a valid open descriptor; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let pid = Table::open_readonly(path)
                        .map(|t| t.header(H_PID))
                        .unwrap_or(0);
                    return Err(ClusterError::TableBusy {
                        path: path.to_owned(),
                        pid,
                    });
                }
                return Err(io("flock", err));
            }
            let len = file.metadata().map_err(|e| io("stat", e))?.len();
            if len == 0 || replaced || (len == expected_len && header_matches(&file, max_nodes)) {
                break file;
            }
            // A foreign or differently sized file: replace it rather than resize a mapping
            // other processes may hold.
            std::fs::remove_file(path).map_err(|e| io("unlink", e))?;
            replaced = true;
        };
        if file.metadata().map_err(|e| io("stat", e))?.len() == 0 {
            file.set_len(expected_len).map_err(|e| io("truncate", e))?;
        }
        // SAFETY: the file is exactly `expected_len` bytes and only this process writes it (we
        // hold its exclusive flock); other processes only read it, through atomics.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io("mmap", e))?;
        let words = map.as_mut_ptr() as *const AtomicU64;
        let table = Table {
            path: path.to_owned(),
            words,
            max_nodes: max_nodes as usize,
            mapping: Mapping::Writer {
                _map: map,
                _lock: file,
                state: Mutex::new(WriterState::default()),
            },
        };
        table.init_as_writer(max_nodes, liveness);
        Ok(table)
    }

    /// Maps an existing table read-only (another process's view, e.g. `arrow status`).
    pub fn open_readonly(path: &Path) -> Result<Table, ClusterError> {
        let io = |op, source| ClusterError::TableIo {
            op,
            path: path.to_owned(),
            source,
        };
        let layout = |reason: String| ClusterError::TableLayout {
            path: path.to_owned(),
            reason,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        let len = file.metadata().map_err(|e| io("stat", e))?.len() as usize;
        if len < HEADER_WORDS * 8 {
            return Err(layout(format!("{len} bytes is shorter than the header")));
        }
        // SAFETY: the mapping is read-only and accessed only through atomic loads; the writer
        // never shrinks the file (it replaces the file instead), so the length stays valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io("mmap", e))?;
        let words = map.as_ptr() as *const AtomicU64;
        let mut table = Table {
            path: path.to_owned(),
            words,
            max_nodes: 0,
            mapping: Mapping::Reader { _map: map },
        };
        if table.header(H_MAGIC) != TABLE_MAGIC {
            return Err(layout(
                "bad magic (not a cluster table, or being created)".into(),
            ));
        }
        let layout_word = table.header(H_LAYOUT);
        let max_nodes = (layout_word >> 32) as usize;
        if layout_word & 0xffff > TABLE_VERSION {
            return Err(ClusterError::TableVersion {
                path: path.to_owned(),
                found: layout_word & 0xffff,
                supported: TABLE_VERSION,
            });
        }
        if layout_word & 0xffff != TABLE_VERSION
            || (layout_word >> 16) & 0xffff != RECORD_WORDS as u64
        {
            return Err(layout(format!("unsupported layout word {layout_word:#x}")));
        }
        if max_nodes == 0 || len < table_len_bytes(max_nodes) {
            return Err(layout(format!(
                "{len} bytes is too short for {max_nodes} records"
            )));
        }
        table.max_nodes = max_nodes;
        Ok(table)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_nodes(&self) -> u32 {
        self.max_nodes as u32
    }

    /// The liveness rule recorded in the header by the writer.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            comet_interval_ms: self.header(H_INTERVAL),
            missing_intervals: self.header(H_MISSING) as u32,
        }
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < HEADER_WORDS + self.max_nodes * RECORD_WORDS);
        // SAFETY: `index` is within the mapping (asserted above: the header, or a record below
        // max_nodes, whose length was checked against the file at open); the mapping is page
        // aligned, so every word is 8-byte aligned as AtomicU64 requires.
        unsafe { &*self.words.add(index) }
    }

    fn header(&self, index: usize) -> u64 {
        let value = self.word(index).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        value
    }

    fn rec(&self, slot: usize, index: usize) -> &AtomicU64 {
        assert!(slot < self.max_nodes && index < RECORD_WORDS);
        self.word(HEADER_WORDS + slot * RECORD_WORDS + index)
    }

    fn init_as_writer(&self, max_nodes: u32, liveness: Liveness) {
        let Mapping::Writer { state, .. } = &self.mapping else {
            unreachable!("init_as_writer on a reader");
        };
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        self.word(H_LAYOUT)
            .store(layout_word(max_nodes), Ordering::Relaxed);
        self.word(H_INTERVAL)
            .store(liveness.comet_interval_ms, Ordering::Relaxed);
        self.word(H_MISSING)
            .store(u64::from(liveness.missing_intervals), Ordering::Relaxed);
        self.word(H_PID)
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        let used = (self.word(H_USED).load(Ordering::Relaxed) as usize).min(self.max_nodes);
        self.word(H_USED).store(used as u64, Ordering::Relaxed);
        // Records a dead writer left half-written, and records from a previous boot of the host
        // (CLOCK_MONOTONIC restarted below their last_seen, e.g. a table outside /dev/shm) are
        // cleared; the others are indexed by name.
        let now_ms = monotonic_ms();
        for slot in 0..used {
            let seq = self.rec(slot, 0).load(Ordering::Relaxed);
            let from_the_future = self.rec(slot, 4).load(Ordering::Relaxed) > now_ms;
            if seq % 2 == 1 || from_the_future {
                // Same protocol as upsert: odd while clearing, so readers retry.
                self.rec(slot, 0).store(seq | 1, Ordering::Relaxed);
                fence(Ordering::Release);
                for i in 1..RECORD_WORDS {
                    self.rec(slot, i).store(0, Ordering::Relaxed);
                }
                self.rec(slot, 0).store((seq | 1) + 1, Ordering::Release);
                continue;
            }
            let words = self.copy_words(slot);
            if words[1] & F_USED != 0 {
                state.by_name.insert(record_name(&words), slot);
            }
        }
        self.word(H_MAGIC).store(TABLE_MAGIC, Ordering::Release);
    }

    fn copy_words(&self, slot: usize) -> [u64; RECORD_WORDS] {
        let mut words = [0u64; RECORD_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.rec(slot, i).load(Ordering::Relaxed);
        }
        words
    }

    /// A consistent copy of a record, or `None` when it stays mid-write (dead writer).
    fn read_record(&self, slot: usize) -> Option<[u64; RECORD_WORDS]> {
        let seq = self.rec(slot, 0);
        for _ in 0..READ_SPINS_MAX {
            let before = seq.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let words = self.copy_words(slot);
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == before {
                return Some(words);
            }
        }
        None
    }

    /// Upserts so far: a reader whose copy has the same generation holds the same records.
    pub fn generation(&self) -> u64 {
        self.header(H_GENERATION)
    }

    /// Every node on record, with `in_service` computed at CLOCK_MONOTONIC now.
    pub fn snapshot(&self) -> Vec<NodeView> {
        self.snapshot_at(monotonic_ms())
    }

    /// Every node on record, with ages computed at `now_ms` (injectable clock for tests).
    pub fn snapshot_at(&self, now_ms: u64) -> Vec<NodeView> {
        let mut nodes = Vec::new();
        self.snapshot_into(now_ms, &mut nodes);
        nodes
    }

    /// [`Self::snapshot_at`] into `out`, reusing its views (and their names' buffers): once
    /// `out` has held as many nodes with names as long, a snapshot allocates nothing.
    pub fn snapshot_into(&self, now_ms: u64, out: &mut Vec<NodeView>) {
        let used = (self.header(H_USED) as usize).min(self.max_nodes);
        let max_age_ms = self.liveness().max_age_ms();
        let mut n = 0;
        for slot in 0..used {
            let Some(w) = self.read_record(slot) else {
                continue;
            };
            if w[1] & F_USED == 0 {
                continue;
            }
            if n == out.len() {
                out.push(NodeView::fresh(String::new(), 0, 0));
            }
            view_into(&w, now_ms, max_age_ms, &mut out[n]);
            n += 1;
        }
        out.truncate(n);
    }

    /// Pid of the process that last opened the table as its writer.
    pub fn writer_pid(&self) -> u64 {
        self.header(H_PID)
    }

    /// The node named `name`, if on record.
    pub fn get_at(&self, name: &str, now_ms: u64) -> Option<NodeView> {
        self.snapshot_at(now_ms)
            .into_iter()
            .find(|n| n.name == name)
    }

    /// Writes `comet` into its sender's record (found by name; a new sender takes a free record,
    /// else the record of the node out of service the longest). Writer only.
    /// Returns the record index.
    pub fn upsert(&self, comet: &Comet, now_ms: u64) -> Result<usize, ClusterError> {
        let Mapping::Writer { state, .. } = &self.mapping else {
            return Err(ClusterError::TableReadOnly {
                path: self.path.clone(),
            });
        };
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let (slot, comets) = match state.by_name.get(&comet.name) {
            Some(&slot) => (slot, self.rec(slot, 13).load(Ordering::Relaxed) + 1),
            None => {
                let slot = self.free_slot(&mut state, &comet.name, now_ms)?;
                state.by_name.insert(comet.name.clone(), slot);
                (slot, 1)
            }
        };
        let words = record_words(comet, now_ms, comets);
        let seq = self.rec(slot, 0);
        let before = seq.load(Ordering::Relaxed);
        debug_assert_eq!(before % 2, 0);
        seq.store(before + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, w) in words.iter().enumerate().skip(1) {
            self.rec(slot, i).store(*w, Ordering::Relaxed);
        }
        seq.store(before + 2, Ordering::Release);
        self.word(H_GENERATION).fetch_add(1, Ordering::Release);
        Ok(slot)
    }

    fn free_slot(
        &self,
        state: &mut WriterState,
        name: &str,
        now_ms: u64,
    ) -> Result<usize, ClusterError> {
        let used = self.word(H_USED).load(Ordering::Relaxed) as usize;
        let taken: std::collections::HashSet<usize> = state.by_name.values().copied().collect();
        if let Some(slot) = (0..used).find(|s| !taken.contains(s)) {
            return Ok(slot);
        }
        if used < self.max_nodes {
            self.word(H_USED).store(used as u64 + 1, Ordering::Release);
            return Ok(used);
        }
        let max_age_ms = self.liveness().max_age_ms();
        let oldest = (0..used)
            .map(|s| (s, self.rec(s, 4).load(Ordering::Relaxed)))
            .filter(|&(_, seen)| now_ms.saturating_sub(seen) > max_age_ms)
            .min_by_key(|&(_, seen)| seen);
        match oldest {
            Some((slot, _)) => {
                state.by_name.retain(|_, s| *s != slot);
                Ok(slot)
            }
            None => Err(ClusterError::TableFull {
                max_nodes: self.max_nodes as u32,
                name: name.to_owned(),
            }),
        }
    }

    /// `(boot_id, sequence)` last accepted from `name` and how long it has been silent at
    /// `now_ms`, in ms: the replay state the receiver checks. Writer side.
    pub fn last_accepted(&self, name: &str, now_ms: u64) -> Option<((u64, u64), u64)> {
        let Mapping::Writer { state, .. } = &self.mapping else {
            return None;
        };
        let slot = *state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)?;
        let w = self.read_record(slot)?;
        Some(((w[6], w[7]), now_ms.saturating_sub(w[4])))
    }
}

fn header_matches(file: &File, max_nodes: u32) -> bool {
    let mut head = [0u8; 16];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut head, 0).is_ok()
        && u64::from_le_bytes(head[..8].try_into().unwrap_or_default()) == TABLE_MAGIC
        && u64::from_le_bytes(head[8..].try_into().unwrap_or_default()) == layout_word(max_nodes)
}

fn record_words(comet: &Comet, now_ms: u64, comets: u64) -> [u64; RECORD_WORDS] {
    let mut w = [0u64; RECORD_WORDS];
    let count = |state| comet.disks.iter().filter(|d| d.state == state).count() as u64;
    let (family, addr) = match comet.addr {
        None => (0u64, [0u8; 16]),
        Some(IpAddr::V4(v4)) => (4, v4.to_ipv6_mapped().octets()),
        Some(IpAddr::V6(v6)) => (6, v6.octets()),
    };
    let mut flags = F_USED;
    if comet.mirroring {
        flags |= F_MIRRORING;
    }
    if comet.admitting {
        flags |= F_ADMITTING;
    }
    w[1] = flags
        | family << 8
        | u64::from(comet.http_port) << 16
        | count(DiskState::Online) << 32
        | (comet.disks.len() as u64) << 48;
    w[2] = u64::from_le_bytes(addr[..8].try_into().unwrap_or_default());
    w[3] = u64::from_le_bytes(addr[8..].try_into().unwrap_or_default());
    w[4] = now_ms;
    w[5] = comet.time_ms;
    w[6] = comet.boot_id;
    w[7] = comet.sequence;
    w[8] = comet.brpu_bps;
    w[9] = comet.capacity_bps;
    w[10] = comet.weight;
    w[11] = u64::from(comet.users) | (comet.name.len() as u64) << 32;
    w[12] = count(DiskState::Degraded);
    w[13] = comets;
    let name = comet.name.as_bytes();
    for (i, chunk) in name.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        w[NAME_WORD + i] = u64::from_le_bytes(word);
    }
    w
}

fn record_name(w: &[u64; RECORD_WORDS]) -> String {
    let mut name = String::new();
    record_name_into(w, &mut name);
    name
}

/// The record's name into `name` (its buffer reused; no allocation once it is long enough).
fn record_name_into(w: &[u64; RECORD_WORDS], name: &mut String) {
    let len = ((w[11] >> 32) as usize).min(NAME_WORDS * 8);
    let mut bytes = [0u8; NAME_WORDS * 8];
    for (chunk, word) in bytes
        .chunks_exact_mut(8)
        .zip(&w[NAME_WORD..NAME_WORD + NAME_WORDS])
    {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    name.clear();
    match std::str::from_utf8(&bytes[..len]) {
        Ok(text) => name.push_str(text),
        // Only a corrupt or foreign record: the writer stores UTF-8 names.
        Err(_) => name.push_str(&String::from_utf8_lossy(&bytes[..len])),
    }
}

/// The view of a record into `view` (its name's buffer reused).
fn view_into(w: &[u64; RECORD_WORDS], now_ms: u64, max_age_ms: u64, view: &mut NodeView) {
    let mut name = std::mem::take(&mut view.name);
    record_name_into(w, &mut name);
    *view = view_of_named(w, now_ms, max_age_ms, name);
}

fn view_of_named(w: &[u64; RECORD_WORDS], now_ms: u64, max_age_ms: u64, name: String) -> NodeView {
    let mut addr_bytes = [0u8; 16];
    addr_bytes[..8].copy_from_slice(&w[2].to_le_bytes());
    addr_bytes[8..].copy_from_slice(&w[3].to_le_bytes());
    let v6 = Ipv6Addr::from(addr_bytes);
    let addr = match (w[1] >> 8) & 0xff {
        4 => v6.to_ipv4_mapped().map(IpAddr::V4),
        6 => Some(IpAddr::V6(v6)),
        _ => None,
    };
    let age_ms = now_ms.saturating_sub(w[4]);
    NodeView {
        name,
        addr,
        http_port: (w[1] >> 16) as u16,
        last_seen_ms: w[4],
        age_ms,
        sent_time_ms: w[5],
        boot_id: w[6],
        sequence: w[7],
        brpu_bps: w[8],
        capacity_bps: w[9],
        weight: w[10],
        users: w[11] as u32,
        disks_online: (w[1] >> 32) as u16,
        disks_degraded: w[12] as u16,
        disks_total: (w[1] >> 48) as u16,
        mirroring: w[1] & F_MIRRORING != 0,
        admitting: w[1] & F_ADMITTING != 0,
        comets: w[13],
        in_service: age_ms <= max_age_ms,
    }
}

/// A shard's (or the DNS responder's) cached snapshot: re-read only when the table's generation
/// changed or `refresh_ms` passed (liveness depends on time too), so a request costs no copy of
/// the table. Owned by one thread: no lock.
pub struct SnapshotCache {
    table: std::sync::Arc<Table>,
    refresh_ms: u64,
    generation: u64,
    taken_ms: u64,
    nodes: Vec<NodeView>,
}

impl SnapshotCache {
    /// `refresh_ms`: the most a cached in-service state may lag (e.g. a quarter of the comet
    /// interval keeps expiry within `missing_intervals + 1` intervals).
    pub fn new(table: std::sync::Arc<Table>, refresh_ms: u64) -> Self {
        let taken_ms = monotonic_ms();
        let generation = table.generation();
        let nodes = table.snapshot_at(taken_ms);
        SnapshotCache {
            table,
            refresh_ms,
            generation,
            taken_ms,
            nodes,
        }
    }

    /// The nodes as of at most `refresh_ms` before `now_ms` (or newer).
    pub fn nodes_at(&mut self, now_ms: u64) -> &[NodeView] {
        let generation = self.table.generation();
        if generation != self.generation || now_ms.saturating_sub(self.taken_ms) >= self.refresh_ms
        {
            self.table.snapshot_into(now_ms, &mut self.nodes);
            self.generation = generation;
            self.taken_ms = now_ms;
        }
        &self.nodes
    }

    /// [`Self::nodes_at`] with CLOCK_MONOTONIC now.
    pub fn nodes(&mut self) -> &[NodeView] {
        self.nodes_at(monotonic_ms())
    }
}
