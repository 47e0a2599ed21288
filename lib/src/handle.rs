//! The per-thread handle: the node's routing config, a read-only mapping of its cluster table
//! and a cached snapshot of it, refreshed when the table's generation changes or after
//! `refresh_ms`, so a lookup costs one atomic load, one coarse clock read and the placement
//! arithmetic: no lock, no system call, no allocation (once the snapshot's buffers have grown
//! to the table's size).
//!
//! ```text
//! lookup(key) → refresh? (generation word, CLOCK_MONOTONIC_COARSE) → state (missing, foreign,
//! newer, stale, no node) → designated_bytes(nodes, key, guarantee) → self / mirror / peer /
//! overflow → caller's RouteResult
//! route(host, path) → normalize_host_into → rule → domain, hash_input_of → cluster_key_into →
//! lookup
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use arrow_cluster::keys::{cluster_key_into, normalize_host_into, HOST_MAX_BYTES};
use arrow_cluster::{designated_by_key_hash, ClusterError, NodeView, Table};
use regex::CaptureLocations;

use crate::config::LibConfig;
use crate::ffi::{NodeOut, RouteKeys, RouteResult, ADDR_BYTES, MIRRORS_MAX, NAME_BYTES};
use crate::status::*;

/// Longest cluster key a host + path gives: a 253-byte domain and 32 hex digits.
pub const CLUSTER_KEY_MAX_BYTES: usize = HOST_MAX_BYTES + 32;
/// Upper bound of the refresh period, whatever the comet interval.
const REFRESH_MS_MAX: u64 = 100;
/// Placement cache entries (16 B each: 1 MiB per handle), in sets of [`CACHE_WAYS`]: a
/// title's objects share one key, so 64 Ki entries hold the placements of the titles a front
/// end sees at once with few conflicts (a direct-mapped 16 Ki-entry cache recomputed a third of
/// 16 Ki distinct keys).
const CACHE_ENTRIES: usize = 1 << 16;
/// Entries per set (the older of the two is replaced).
const CACHE_WAYS: usize = 2;
const _: () = assert!(CACHE_ENTRIES.is_power_of_two());
/// A cached "no node admits" (overflow).
const CACHED_NONE: u32 = u32::MAX;

/// One placement result: valid while `epoch` is the handle's.
#[derive(Clone, Copy, Default)]
struct CacheEntry {
    /// The key's probe hash ([`probe_hash`]), its identity in the cache.
    probe: u64,
    epoch: u32,
    node: u32,
}

/// The cache's own hash of a key: a word at a time (rustc-hash's FxHasher, whose output bits are
/// mixed for table indexing). The placement hash (FNV-1a over the key, a byte at a time, fixed by
/// cluster/PLACEMENT.md) is computed only on a miss; a hit costs this and a probe.
fn probe_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// CLOCK_MONOTONIC_COARSE in ms: the table's clock at tick resolution, read without a syscall.
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is supported on Linux ≥ 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// `ip:port` text of a node, as nginx's `proxy_pass` takes it.
#[derive(Clone, Copy)]
struct AddrText {
    bytes: [u8; ADDR_BYTES],
    len: usize,
}

impl AddrText {
    fn of(node: &NodeView) -> AddrText {
        use std::io::Write;
        let mut t = AddrText {
            bytes: [0; ADDR_BYTES],
            len: 0,
        };
        let Some(ip) = node.addr.filter(|_| node.http_port != 0) else {
            return t;
        };
        let mut cur = std::io::Cursor::new(&mut t.bytes[..ADDR_BYTES - 1]);
        let ok = match ip {
            std::net::IpAddr::V4(v4) => write!(cur, "{v4}:{}", node.http_port),
            std::net::IpAddr::V6(v6) => write!(cur, "[{v6}]:{}", node.http_port),
        };
        if ok.is_ok() {
            t.len = cur.position() as usize;
        }
        t
    }
}

/// The library's state for one thread (nginx worker, PowerDNS backend instance).
pub struct Handle {
    pub(crate) cfg: LibConfig,
    locs: Vec<CaptureLocations>,
    table: Option<Table>,
    table_id: (u64, u64),
    /// Why the table cannot be used, or `ARROW_OK`.
    state: i32,
    pub(crate) nodes: Vec<NodeView>,
    addrs: Vec<AddrText>,
    self_idx: Option<usize>,
    generation: u64,
    taken_ms: u64,
    refresh_ms: u64,
    /// Refreshes so far (the DNS directory rebuilds its copy when it changes).
    pub(crate) refreshes: u64,
    /// Placement results by key hash (placement depends on the key only through
    /// `fnv1a64(key)`), valid while the placement inputs of the snapshot stay the same.
    cache: Box<[CacheEntry]>,
    epoch: u32,
    /// The placement inputs of the snapshot the cache is valid for: per node, name length,
    /// weight and (in service, admits at the guarantee); the names in `sig_names`.
    sig: Vec<u64>,
    sig_names: String,
    /// The DNS directory and the refresh it was built at.
    pub(crate) dns_dir: Option<(u64, std::sync::Arc<crate::dns::SnapDir>)>,
}

impl Handle {
    pub fn new(cfg: LibConfig) -> Handle {
        let locs = cfg.rules.iter().map(|r| r.capture_locations()).collect();
        let mut h = Handle {
            cfg,
            locs,
            table: None,
            table_id: (0, 0),
            state: ARROW_E_NO_TABLE,
            nodes: Vec::new(),
            addrs: Vec::new(),
            self_idx: None,
            generation: 0,
            taken_ms: 0,
            refresh_ms: REFRESH_MS_MAX,
            refreshes: 0,
            cache: vec![CacheEntry::default(); CACHE_ENTRIES].into_boxed_slice(),
            epoch: 1,
            sig: Vec::new(),
            sig_names: String::new(),
            dns_dir: None,
        };
        h.refresh(coarse_ms());
        h
    }

    /// The table state after a refresh if one is due: `ARROW_OK` or why it cannot be used.
    pub fn state(&mut self) -> i32 {
        self.refresh_if_due();
        self.state
    }

    pub(crate) fn refresh_if_due(&mut self) {
        let now = coarse_ms();
        let moved = self
            .table
            .as_ref()
            .is_some_and(|t| t.generation() != self.generation);
        if moved || now.saturating_sub(self.taken_ms) >= self.refresh_ms {
            self.refresh(now);
        }
    }

    fn drop_table(&mut self, state: i32) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.table = None;
        self.state = state;
        self.nodes.clear();
        self.addrs.clear();
        self.self_idx = None;
    }

    fn refresh(&mut self, now_coarse: u64) {
        self.taken_ms = now_coarse;
        self.refreshes += 1;
        // A restarted writer may have replaced the file (new inode): follow the path. stat()
        // takes the path from a stack buffer (std does so for short paths).
        let path: &Path = &self.cfg.table_path;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) => return self.drop_table(ARROW_E_NO_TABLE),
        };
        let id = (meta.dev(), meta.ino());
        let shrunk = self
            .table
            .as_ref()
            .is_some_and(|t| meta.len() < table_bytes(t.max_nodes()));
        if self.table.is_none() || id != self.table_id || shrunk {
            match Table::open_readonly(path) {
                Ok(t) => {
                    let liveness = t.liveness();
                    self.refresh_ms = (liveness.comet_interval_ms / 4).clamp(1, REFRESH_MS_MAX);
                    self.table = Some(t);
                    self.table_id = id;
                }
                Err(e) => return self.drop_table(error_code(&e)),
            }
        }
        let Some(table) = self.table.as_ref() else {
            return;
        };
        self.generation = table.generation();
        let now = arrow_cluster::monotonic_ms();
        table.snapshot_into(now, &mut self.nodes);
        self.addrs.clear();
        self.addrs.extend(self.nodes.iter().map(AddrText::of));
        self.self_idx = self.nodes.iter().position(|n| n.name == self.cfg.self_name);
        let max_age_ms = table.liveness().max_age_ms();
        self.revalidate_cache();
        let newest = self.nodes.iter().map(|n| n.last_seen_ms).max();
        self.state = match newest {
            None => ARROW_E_NO_NODE,
            Some(seen) if now.saturating_sub(seen) > max_age_ms => ARROW_E_STALE,
            Some(_) if !self.nodes.iter().any(|n| n.in_service && n.weight > 0) => ARROW_E_NO_NODE,
            Some(_) => ARROW_OK,
        };
    }

    /// Keeps the cache when the new snapshot places every key as the last one did (the same
    /// nodes in the same order, with the same weights, service state and admission); otherwise
    /// starts a new epoch. Buffers are reused: no allocation in steady state.
    fn revalidate_cache(&mut self) {
        let g = self.cfg.guarantee_bps;
        let (mut same, mut i, mut at) = (true, 0, 0);
        let words = self.nodes.len() * 3;
        same &= self.sig.len() == words;
        for n in &self.nodes {
            let flags = u64::from(n.in_service) | u64::from(n.admits(g)) << 1;
            let entry = [n.name.len() as u64, n.weight, flags];
            same = same
                && self.sig[i..i + 3] == entry
                && self.sig_names.get(at..at + n.name.len()) == Some(n.name.as_str());
            i += 3;
            at += n.name.len();
        }
        if same {
            return;
        }
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.sig.clear();
        self.sig_names.clear();
        for n in &self.nodes {
            let flags = u64::from(n.in_service) | u64::from(n.admits(g)) << 1;
            self.sig
                .extend_from_slice(&[n.name.len() as u64, n.weight, flags]);
            self.sig_names.push_str(&n.name);
        }
    }

    /// The designated node's index for a key (through the cache).
    fn designated_index(&mut self, key: &[u8]) -> Option<usize> {
        let probe = probe_hash(key);
        // The set from the hash's high bits.
        let set = (probe >> 32) as usize & (CACHE_ENTRIES / CACHE_WAYS - 1);
        let ways = &mut self.cache[set * CACHE_WAYS..(set + 1) * CACHE_WAYS];
        if let Some(hit) = ways
            .iter()
            .find(|e| e.epoch == self.epoch && e.probe == probe)
        {
            return (hit.node != CACHED_NONE).then_some(hit.node as usize);
        }
        let key_hash = arrow_cluster::fnv1a64(key);
        let idx = designated_by_key_hash(&self.nodes, key_hash, self.cfg.guarantee_bps)
            .and_then(|d| self.nodes.iter().position(|n| std::ptr::eq(n, d)));
        // Newest first: the entry in way 0 moves to way 1 (the older one goes).
        ways.copy_within(0..CACHE_WAYS - 1, 1);
        ways[0] = CacheEntry {
            probe,
            epoch: self.epoch,
            node: idx.map_or(CACHED_NONE, |i| i as u32),
        };
        idx
    }

    fn self_serving_or_overflow(&self, out: &mut RouteResult) {
        match &self.cfg.overflow_base {
            Some(_) => out.action = ARROW_ACT_OVERFLOW,
            None => {
                // As the node without a CDN: serve it here.
                out.action = ARROW_ACT_LOCAL;
                out.flags |= ARROW_F_SELF;
            }
        }
    }

    fn fill_node(&self, idx: usize, out: &mut NodeOut) {
        let name = self.nodes[idx].name.as_bytes();
        let n = name.len().min(NAME_BYTES - 1);
        out.name[..n].copy_from_slice(&name[..n]);
        out.name[n] = 0;
        out.name_len = n as u16;
        let a = &self.addrs[idx];
        out.addr[..a.len].copy_from_slice(&a.bytes[..a.len]);
        out.addr[a.len] = 0;
        out.addr_len = a.len as u16;
        out.port = if a.len > 0 {
            self.nodes[idx].http_port
        } else {
            0
        };
    }

    /// The route of a cluster key (any bytes). Returns `out.status`.
    pub fn lookup(&mut self, key: &[u8], opts: u32, out: &mut RouteResult) -> i32 {
        self.refresh_if_due();
        out.reset();
        if self.state != ARROW_OK {
            out.status = self.state;
            out.flags = ARROW_F_ERROR;
            self.self_serving_or_overflow(out);
            return out.status;
        }
        // Admission of a new viewer on this node (the node's own check at a connection's
        // first request), by the admitting flag of its last comet.
        if opts & ARROW_Q_NEW_VIEWER != 0
            && self.self_idx.is_some_and(|i| !self.nodes[i].admitting)
            && self.cfg.overflow_base.is_some()
        {
            out.flags |= ARROW_F_OVERLOAD;
            out.action = ARROW_ACT_OVERFLOW;
            return out.status;
        }
        let Some(idx) = self.designated_index(key) else {
            // In-service nodes, none admits at the guarantee.
            out.flags |= ARROW_F_OVERLOAD;
            self.self_serving_or_overflow(out);
            return out.status;
        };
        self.fill_node(idx, &mut out.node);
        if Some(idx) == self.self_idx {
            out.flags |= ARROW_F_SELF;
            out.action = ARROW_ACT_SELF;
        } else if self.addrs[idx].len == 0 {
            out.action = ARROW_ACT_LOCAL;
        } else if self.self_idx.is_some_and(|i| self.nodes[i].mirroring) {
            out.flags |= ARROW_F_MIRROR;
            out.action = ARROW_ACT_MIRROR;
        } else {
            out.action = ARROW_ACT_PEER;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if i == idx || !n.in_service || !n.mirroring {
                continue;
            }
            if (out.mirrors_listed as usize) < MIRRORS_MAX {
                let slot = out.mirrors_listed as usize;
                self.fill_node(i, &mut out.mirrors[slot]);
                out.mirrors_listed += 1;
            }
            out.mirrors_total += 1;
        }
        out.status
    }

    /// The route of a request: the host rules of the node's config derive the cluster key of
    /// `host` + `path_and_query` (the raw request target), then [`Self::lookup`]. `keys`, when
    /// given, receives the cluster key and where the domain and hash input are.
    pub fn route(
        &mut self,
        host: &[u8],
        path_and_query: &[u8],
        opts: u32,
        out: &mut RouteResult,
        keys: Option<&mut RouteKeys>,
    ) -> i32 {
        let mut host_buf = [0u8; HOST_MAX_BYTES];
        let mut key_buf = [0u8; CLUSTER_KEY_MAX_BYTES];
        let (Ok(host), Ok(path)) = (
            std::str::from_utf8(host),
            std::str::from_utf8(path_and_query),
        ) else {
            out.reset();
            out.status = ARROW_E_ARG;
            out.flags = ARROW_F_ERROR;
            return ARROW_E_ARG;
        };
        let rule = normalize_host_into(host, &mut host_buf).and_then(|h| {
            self.cfg
                .rules
                .iter()
                .position(|r| r.matches(h))
                .map(|i| (h, i))
        });
        let Some((host, i)) = rule else {
            out.reset();
            out.status = ARROW_E_NO_RULE;
            out.flags = ARROW_F_ERROR;
            return ARROW_E_NO_RULE;
        };
        let rule = &self.cfg.rules[i];
        let domain = rule.domain_of(host);
        let hash_input = rule.hash_input_of(&mut self.locs[i], path);
        let key = cluster_key_into(domain.as_bytes(), hash_input.as_bytes(), &mut key_buf)
            .expect("a normalized host fits CLUSTER_KEY_MAX_BYTES");
        if let Some(k) = keys {
            k.cluster_key[..key.len()].copy_from_slice(key);
            k.cluster_key[key.len()] = 0;
            k.cluster_key_len = key.len() as u32;
            k.domain_len = domain.len() as u32;
            // The hash input is a slice of `path`.
            k.hash_input_offset = (hash_input.as_ptr() as usize - path.as_ptr() as usize) as u32;
            k.hash_input_len = hash_input.len() as u32;
            k.rule = i as u32;
        }
        let key_len = key.len();
        self.lookup(&key_buf[..key_len], opts, out)
    }
}

fn table_bytes(max_nodes: u32) -> u64 {
    ((arrow_cluster::TABLE_HEADER_WORDS + max_nodes as usize * arrow_cluster::RECORD_WORDS) * 8)
        as u64
}

/// The C error code of a table that cannot be opened.
fn error_code(e: &ClusterError) -> i32 {
    match e {
        ClusterError::TableVersion { .. } => ARROW_E_TABLE_VERSION,
        ClusterError::TableLayout { .. } => ARROW_E_TABLE_FOREIGN,
        _ => ARROW_E_NO_TABLE,
    }
}
