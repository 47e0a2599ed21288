//! The cache on the shard that owns the key's disk: lookup → fresh hit / stale / revalidate /
//! miss, with one origin fetch per key in flight (coalescing) and read-while-write (every
//! waiting viewer and the disk writer get the body as it arrives).
//!
//! serve(req) → store.lookup(disk, cache key)
//!   hit & fresh            → stream from RAM tier / slab (X-Cache: HIT)
//!   hit & stale-while-rev. → stream stale (X-Cache: STALE), revalidate in the background
//!   hit & must revalidate  → conditional fill: 304 → refresh meta, HIT; error → stale-if-error
//!   miss                   → join the key's fill (FETCHING) or start it (MISS)
//! fill task: origin fetch → head → (storable? store.writer) → pieces to waiters + writer
//!            → finish (the object becomes visible only now).
//!
//! By stage: `lookup.rs` (lookup → fresh / stale / revalidate / miss), `fill.rs` (coalesced
//! origin fetches with read-while-write and the fill window), `deliver.rs` (a stored body to
//! the viewer: 304, ranges, unit by unit; replicas), `pass.rs` (uncached answers),
//! `replica.rs` (copies of small objects other shards own).

mod deliver;
mod fill;
mod lookup;
mod pass;
pub mod replica;

pub use pass::{render_origin_headers, stream_origin_response};
// The stages' own types and helpers, for each other (children import `super::*`).
use fill::*;
use pass::*;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use arrow_storage::{BodyPart, DiskId, ObjectInfo, Store, WriteProgress};
use bytes::{Bytes, BytesMut};

use crate::config::{Config, HostRule};
use crate::freshness::{self, Meta, OriginHead, Storable, Usability};
use crate::http::connection_value;
use crate::http::{parse_range, HeadWriter, RangeSpec};
use crate::metrics::{CacheResult, ShardMetrics};
use crate::origin::{OriginClient, OriginRequest, OriginResponse};
use crate::sink::Sink;

/// The most body bytes a slow viewer's send holds (while its socket takes nothing, for at most
/// `limits.send_hold_ms`): the piece is copied out of what the read handed over — a whole chunk
/// buffer from the disk, or a RAM-tier span — which goes back at once. A slow viewer thus pins
/// no chunk buffer and no region of the tier's arena (regions pinned by many slow sends
/// fragmented the arena until the tier could take nothing).
const SLOW_PIECE_BYTES: usize = 64 * 1024;

/// A slow viewer's piece: a copy of at most [`SLOW_PIECE_BYTES`] of `part`, so the chunk buffer
/// or RAM-tier span it came from goes back at once.
fn slow_copy(part: &BodyPart) -> Bytes {
    let b: &[u8] = match part {
        BodyPart::Bytes(b) => b,
        BodyPart::Span(s) => s.as_slice(),
    };
    Bytes::copy_from_slice(&b[..b.len().min(SLOW_PIECE_BYTES)])
}

/// A cacheable request, owned so that it can cross to the owning shard.
#[derive(Debug, Clone)]
pub struct CacheRequest {
    pub head_only: bool,
    pub host: String,
    pub path_and_query: String,
    pub cache_key: String,
    pub rule: usize,
    pub disk: Option<DiskId>,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub keep_alive: bool,
    /// Pre-rendered extra response header lines (debug headers).
    pub extra_headers: String,
    /// Fill from this designated node instead of the origin (mirroring).
    pub upstream_peer: Option<std::net::SocketAddr>,
    /// The request's id, in the access log and on error answers (`X-Request-Id`).
    pub request_id: String,
    /// The host rules when the request arrived (`rule` indexes them; a reload swaps the
    /// node's rules, never these).
    pub rules: Arc<Vec<HostRule>>,
    /// The request's header lines for choosing a stored variant ([`crate::vary::source_of`]).
    pub vary_source: String,
    /// The viewer speaks HTTP/1.1 (interim 1xx heads may be sent to it).
    pub interim_ok: bool,
    /// The viewer's request headers for the origin on a fill ([`crate::forward`], without
    /// Range and conditionals; with Via and X-Forwarded-For).
    pub forward_headers: String,
}

/// What happened, for the access log and metrics.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: u16,
    pub result: CacheResult,
    pub body_bytes: u64,
    /// The response was cut short: the connection must close.
    pub aborted: bool,
}

/// Fields a cached answer writes itself (whatever the origin's stored head said): one
/// Accept-Ranges and, on a 206, one Content-Range, never two. A stored 200's own
/// Content-Range is replayed with the whole body.
const CACHE_WRITES_FIELDS: &[&str] = &["accept-ranges", "content-range"];

const CACHE_WRITES_FIELDS_WHOLE: &[&str] = &["accept-ranges"];

fn cache_writes(status: u16) -> &'static [&'static str] {
    if status == 206 {
        CACHE_WRITES_FIELDS
    } else {
        CACHE_WRITES_FIELDS_WHOLE
    }
}

/// Per-shard cache state.
pub struct ShardCache {
    pub store: Option<Rc<Store>>,
    pub origin: Rc<OriginClient>,
    pub cfg: Arc<Config>,
    pub metrics: Arc<ShardMetrics>,
    pub node_name: Rc<str>,
    fills: RefCell<HashMap<String, Rc<Fill>>>,
    /// The CORS fields each host rule's origins sent last (by rule index), for the errors this
    /// node generates itself.
    cors: RefCell<HashMap<usize, Bytes>>,
    fill_bytes: Rc<Cell<u64>>,
    /// The highest `fill_bytes` since start.
    fill_bytes_peak: Rc<Cell<u64>>,
    /// Fills still receiving from upstream (the bound of `fills_in_flight_max`; fills that
    /// only wait for their disk commit do not count).
    fetching: Rc<Cell<usize>>,
    /// Copies of small objects other shards own ([`crate::cache::replica`]).
    pub replicas: RefCell<crate::cache::replica::Replicas>,
    /// The limits in force (a reload swaps them).
    pub limits: crate::config::LiveLimits,
    /// The node's replica epoch (replicas of an older one are dropped).
    pub replica_epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl ShardCache {
    pub fn new(
        store: Option<Rc<Store>>,
        origin: Rc<OriginClient>,
        cfg: Arc<Config>,
        metrics: Arc<ShardMetrics>,
        node_name: Rc<str>,
        replica_epoch: Arc<std::sync::atomic::AtomicU64>,
        limits: crate::config::LiveLimits,
    ) -> Rc<ShardCache> {
        let replicas = crate::cache::replica::Replicas::new(
            cfg.storage.replica_bytes_max,
            cfg.storage.replica_object_bytes_max,
        );
        Rc::new(ShardCache {
            replicas: RefCell::new(replicas),
            replica_epoch,
            limits,
            store,
            origin,
            cfg,
            metrics,
            node_name,
            fills: RefCell::new(HashMap::new()),
            cors: RefCell::new(HashMap::new()),
            fill_bytes: Rc::new(Cell::new(0)),
            fill_bytes_peak: Rc::new(Cell::new(0)),
            fetching: Rc::new(Cell::new(0)),
        })
    }

    pub fn fills_in_flight(&self) -> usize {
        self.fills.borrow().len()
    }

    /// Publish the fill gauges (called by the shard's housekeeping).
    pub fn publish_gauges(&self) {
        self.metrics.fills_fetching.set(self.fetching.get() as u64);
        self.metrics.fill_buffer_bytes.set(self.fill_bytes.get());
        self.metrics
            .fill_buffer_bytes_peak
            .set(self.fill_bytes_peak.get());
        self.metrics
            .fill_buffer_bytes_max
            .set(self.limits.load().fill_buffer_bytes_max);
        self.metrics
            .replica_bytes
            .set(self.replicas.borrow().bytes());
        self.metrics
            .read_buffers_pooled_bytes
            .set(arrow_storage::slab::pooled_bytes() as u64);
    }

    /// The CORS lines the origins of host rule `rule` sent last (empty if none yet).
    pub fn cors_of(&self, rule: usize) -> Bytes {
        self.cors.borrow().get(&rule).cloned().unwrap_or_default()
    }

    /// Remember the CORS fields of an origin answer for host rule `rule`.
    pub fn learn_cors(&self, rule: usize, headers: &[(String, String)]) {
        if !headers.iter().any(|(n, _)| freshness::is_cors_field(n)) {
            return;
        }
        let mut b = BytesMut::new();
        for (n, v) in headers.iter().filter(|(n, _)| freshness::is_cors_field(n)) {
            b.extend_from_slice(n.as_bytes());
            b.extend_from_slice(b": ");
            b.extend_from_slice(v.as_bytes());
            b.extend_from_slice(b"\r\n");
        }
        let b = b.freeze();
        let mut cors = self.cors.borrow_mut();
        if cors.get(&rule) != Some(&b) {
            cors.insert(rule, b);
        }
    }

    /// How `rule`'s responses are judged (default TTL, targeted cache-control fields).
    fn policy<'a>(&'a self, rule: &HostRule) -> freshness::Policy<'a> {
        freshness::Policy {
            default_ttl_s: rule.default_ttl_s,
            heuristic_percent: rule.heuristic_freshness_percent,
            own_field: &self.cfg.node.targeted_cache_control,
            keep_cdn_cache_control: rule.keep_cdn_cache_control,
        }
    }

    fn rule<'a>(&self, req: &'a CacheRequest) -> &'a HostRule {
        &req.rules[req.rule]
    }
}
