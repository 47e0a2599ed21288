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
    /// Fills still receiving from upstream (the bound of `fills_in_flight_max`; fills that
    /// only wait for their disk commit do not count).
    fetching: Rc<Cell<usize>>,
    /// Copies of small objects other shards own ([`crate::replica`]).
    pub replicas: RefCell<crate::replica::Replicas>,
    /// The node's replica epoch (replicas of an older one are dropped).
    pub replica_epoch: Arc<std::sync::atomic::AtomicU64>,
}

/// Where a stored body is read from: the shard's store, or a replica's bytes.
enum StoredBody<'a> {
    Store(&'a Rc<Store>, &'a ObjectInfo),
    Memory(Bytes),
}

impl StoredBody<'_> {
    fn len(&self) -> u64 {
        match self {
            StoredBody::Store(_, info) => info.body_len,
            StoredBody::Memory(b) => b.len() as u64,
        }
    }

    async fn read(
        &self,
        pos: u64,
        len: u64,
        want_span: bool,
    ) -> Result<BodyPart, arrow_storage::StorageError> {
        match self {
            StoredBody::Store(store, info) => store.read_part(info, pos, len, want_span).await,
            StoredBody::Memory(b) => {
                let end = (pos + len).min(b.len() as u64);
                Ok(BodyPart::Bytes(b.slice(pos as usize..end as usize)))
            }
        }
    }
}

/// Counts a fill as fetching until dropped (body complete, failed, or abandoned).
struct Fetching(Rc<Cell<usize>>);

impl Fetching {
    fn new(c: &Rc<Cell<usize>>) -> Fetching {
        c.set(c.get() + 1);
        Fetching(c.clone())
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

enum FillState {
    Pending,
    /// The origin answered; `stored` tells whether the object is being written.
    Head(Rc<FillHead>),
    /// The origin confirmed the stored copy (304): refreshed metadata.
    NotModified(Meta),
    /// The origin could not be reached or failed; viewers decide (stale-if-error or 502).
    Failed(String),
}

struct FillHead {
    status: u16,
    header_block: Bytes,
    len: Option<u64>,
    /// Shared with every waiting viewer (a storable response). When false, only the viewer
    /// that started the fill reads it; each other viewer fetches for itself.
    shared: bool,
    /// The body is kept in the fill (false: too big; even the leader fetches for itself).
    buffered: bool,
    /// The stored metadata, when storable (validators for conditional viewers).
    validators: Option<Meta>,
    /// Interim 102/103 heads of the origin, for the viewer that started the fill.
    interim: Vec<Bytes>,
    /// For a response with Vary: the request fields it varies on and the leader's variant key.
    /// A viewer whose own variant key differs fetches for itself.
    variant: Option<(Vec<String>, String)>,
}

/// The part of a fill's body held in memory: `pieces` in body order, starting at body offset
/// `base`, `bytes` in all (at most about `fill_window_bytes`).
#[derive(Default)]
struct FillWindow {
    base: u64,
    pieces: std::collections::VecDeque<Bytes>,
    bytes: u64,
}

impl FillWindow {
    /// The held bytes from body offset `pos` to the end of the piece that holds it: Ok(None) if
    /// `pos` has not arrived yet, Err(()) if it was already dropped from the window.
    fn at(&self, pos: u64) -> Result<Option<Bytes>, ()> {
        if pos < self.base {
            return Err(());
        }
        let mut start = self.base;
        for p in &self.pieces {
            let end = start + p.len() as u64;
            if pos < end {
                return Ok(Some(p.slice((pos - start) as usize..)));
            }
            start = end;
        }
        Ok(None)
    }
}

struct Fill {
    state: RefCell<FillState>,
    window: RefCell<FillWindow>,
    received: Cell<u64>,
    /// The whole body has arrived (the disk commit may still be running).
    complete: Cell<bool>,
    /// The fill task has ended.
    done: Cell<bool>,
    error: Cell<bool>,
    event: event_listener::Event,
    budget: Rc<Cell<u64>>,
    /// The disk writer's progress while the body is stored: viewers that fell behind the window
    /// read from it (read-while-write through storage).
    progress: RefCell<Option<Rc<WriteProgress>>>,
    /// A fill only its leader reads (not shared): the bytes the leader has taken. The fill stays
    /// at most a window ahead of it, so the origin is read at the viewer's pace.
    consumed: Cell<u64>,
    /// Viewers streaming this fill right now.
    readers: Cell<usize>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        let held = self.window.borrow().bytes;
        self.budget.set(self.budget.get().saturating_sub(held));
    }
}

impl Fill {
    fn notify(&self) {
        self.event.notify(usize::MAX);
    }

    async fn wait_until(&self, mut ready: impl FnMut(&Fill) -> bool) {
        loop {
            if ready(self) {
                return;
            }
            let l = self.event.listen();
            if ready(self) {
                return;
            }
            l.await;
        }
    }

    /// Append a piece, then drop pieces from the front while the window is over `window_max`
    /// and every viewer can still get them: from the disk (stored fills), or because the only
    /// reader has taken them (fills that are not shared). A shared fill without a disk copy
    /// drops them anyway; a viewer that falls that far behind is cut off.
    fn push(&self, piece: Bytes, window_max: u64, shared: bool) {
        let n = piece.len() as u64;
        let mut w = self.window.borrow_mut();
        w.pieces.push_back(piece);
        w.bytes += n;
        self.budget.set(self.budget.get() + n);
        drop(w);
        self.received.set(self.received.get() + n);
        self.trim(window_max, shared);
        self.notify();
    }

    fn trim(&self, window_max: u64, shared: bool) {
        let mut w = self.window.borrow_mut();
        let on_disk = self.progress.borrow().as_ref().map(|p| p.readable_bytes());
        while w.bytes > window_max && w.pieces.len() > 1 {
            let front = w.pieces[0].len() as u64;
            let droppable = if !shared {
                self.consumed.get() >= w.base + front
            } else {
                on_disk.is_none_or(|d| d >= w.base + front)
            };
            if !droppable {
                break;
            }
            w.pieces.pop_front();
            w.base += front;
            w.bytes -= front;
            self.budget.set(self.budget.get().saturating_sub(front));
        }
    }
}

/// Decrements a fill's reader count when a viewer stops streaming it.
struct Reading<'a>(&'a Fill);

impl<'a> Reading<'a> {
    fn new(f: &'a Fill) -> Reading<'a> {
        f.readers.set(f.readers.get() + 1);
        Reading(f)
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.readers.set(self.0.readers.get() - 1);
        self.0.notify();
    }
}

fn is_pending(f: &Fill) -> bool {
    matches!(*f.state.borrow(), FillState::Pending)
}

impl ShardCache {
    pub fn new(
        store: Option<Rc<Store>>,
        origin: Rc<OriginClient>,
        cfg: Arc<Config>,
        metrics: Arc<ShardMetrics>,
        node_name: Rc<str>,
        replica_epoch: Arc<std::sync::atomic::AtomicU64>,
    ) -> Rc<ShardCache> {
        let replicas = crate::replica::Replicas::new(
            cfg.storage.replica_bytes_max,
            cfg.storage.replica_object_bytes_max,
        );
        Rc::new(ShardCache {
            replicas: RefCell::new(replicas),
            replica_epoch,
            store,
            origin,
            cfg,
            metrics,
            node_name,
            fills: RefCell::new(HashMap::new()),
            cors: RefCell::new(HashMap::new()),
            fill_bytes: Rc::new(Cell::new(0)),
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
            .fill_buffer_bytes_max
            .set(self.cfg.limits.fill_buffer_bytes_max);
        self.metrics
            .replica_bytes
            .set(self.replicas.borrow().bytes());
    }

    /// Serve `req` from this shard's replica of its key, if there is a fresh one of the
    /// current epoch (`None`: ask the owning shard).
    pub async fn serve_replica(&self, req: &CacheRequest, sink: &mut impl Sink) -> Option<Outcome> {
        let epoch = self
            .replica_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        let (meta, body) = {
            let mut replicas = self.replicas.borrow_mut();
            let r = replicas.get(&req.cache_key, epoch)?;
            if r.meta.usability(freshness::now_s()) != Usability::Fresh {
                replicas.remove(&req.cache_key);
                return None;
            }
            (Rc::clone(&r.meta), r.body.clone())
        };
        self.metrics.replica_hits.inc();
        self.serve_body(req, StoredBody::Memory(body), &meta, CacheResult::Hit, sink)
            .await
    }

    /// Keep the replica an owning shard sent for `req`'s key.
    pub fn keep_replica(&self, req: &CacheRequest, meta: &Bytes, body: Bytes) {
        let Some(meta) = Meta::decode(meta) else {
            return;
        };
        let epoch = self
            .replica_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.replicas_made.inc();
        self.replicas
            .borrow_mut()
            .insert(&req.cache_key, Rc::new(meta), body, epoch);
    }

    /// On the owning shard, after a hit for another shard: the stored head and whole body of
    /// `req`'s object when the other shard may keep a replica of it (a fresh, whole 200 of at
    /// most `storage.replica_object_bytes_max`, not a Vary stub or variant).
    pub async fn replica_source(&self, req: &CacheRequest) -> Option<(Bytes, Bytes)> {
        let max = {
            let r = self.replicas.borrow();
            if !r.enabled() {
                return None;
            }
            r.object_bytes_max()
        };
        let store = self.store.as_ref()?;
        let info = store.lookup(req.disk?, req.cache_key.as_bytes())?;
        if info.body_len > max {
            return None;
        }
        let meta = Meta::decode(&info.meta)?;
        if meta.status != 200
            || meta.vary.is_some()
            || meta.usability(freshness::now_s()) != Usability::Fresh
        {
            return None;
        }
        let len = info.body_len;
        let mut body = BytesMut::with_capacity(len as usize);
        while (body.len() as u64) < len {
            let pos = body.len() as u64;
            match store.read_part(&info, pos, len - pos, false).await.ok()? {
                BodyPart::Bytes(b) if !b.is_empty() => body.extend_from_slice(&b),
                _ => return None,
            }
        }
        Some((info.meta.clone(), body.freeze()))
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

    /// Write (or update) the Vary stub under `primary`: it names `fields` and lists `key`'s
    /// variant; past [`crate::vary::VARIANTS_MAX`] the oldest variant is removed.
    async fn record_variant(
        &self,
        store: &Store,
        disk: DiskId,
        primary: &str,
        fields: &[String],
        key: &str,
        meta: &Meta,
    ) {
        let Some(hash) = crate::vary::variant_hash(key) else {
            return;
        };
        let old = store
            .lookup(disk, primary.as_bytes())
            .and_then(|i| Meta::decode(&i.meta))
            .and_then(|m| m.vary);
        let mut stub = match old {
            Some(s) if s.fields == fields => s,
            _ => freshness::VaryStub {
                fields: fields.to_vec(),
                variants: Vec::new(),
            },
        };
        if stub.variants.contains(&hash) {
            return;
        }
        stub.variants.push(hash);
        let mut evicted = Vec::new();
        while stub.variants.len() > crate::vary::VARIANTS_MAX {
            evicted.push(stub.variants.remove(0));
        }
        let blob = Meta {
            header_block: Bytes::new(),
            etag: None,
            last_modified: None,
            vary: Some(stub),
            ..meta.clone()
        }
        .encode();
        match store.writer(disk, primary.as_bytes(), blob, Some(0)) {
            Ok(w) => {
                if let Err(e) = w.finish().await {
                    tracing::debug!(key = primary, error = %e, "vary stub not stored");
                }
            }
            Err(e) => tracing::debug!(key = primary, error = %e, "vary stub not admitted"),
        }
        for h in evicted {
            self.metrics.vary_variants_evicted.inc();
            let _ = store
                .remove(disk, crate::vary::key_of(primary, &h).as_bytes())
                .await;
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

    /// Serve one cacheable request into `sink`.
    pub async fn serve(self: &Rc<Self>, req: &CacheRequest, sink: &mut impl Sink) -> Outcome {
        if let (Some(store), Some(disk)) = (&self.store, req.disk) {
            if let Some(info) = store.lookup(disk, req.cache_key.as_bytes()) {
                match Meta::decode(&info.meta) {
                    // A Vary stub: the request's own variant, on the same disk.
                    Some(Meta {
                        vary: Some(stub), ..
                    }) => {
                        let mut v = req.clone();
                        v.cache_key = crate::vary::variant_key(
                            &req.cache_key,
                            &stub.fields,
                            &req.vary_source,
                        );
                        let found = store
                            .lookup(disk, v.cache_key.as_bytes())
                            .and_then(|i| Meta::decode(&i.meta).map(|m| (i, m)))
                            .filter(|(_, m)| m.vary.is_none());
                        return self.serve_found(&v, found, sink).await;
                    }
                    Some(meta) => return self.serve_found(req, Some((info, meta)), sink).await,
                    None => {}
                }
            }
        }
        self.serve_found(req, None, sink).await
    }

    /// Serve `req` given what its key's lookup found (`None`: a miss).
    async fn serve_found(
        self: &Rc<Self>,
        req: &CacheRequest,
        found: Option<(arrow_storage::ObjectInfo, Meta)>,
        sink: &mut impl Sink,
    ) -> Outcome {
        let now = freshness::now_s();
        if let Some((info, meta)) = found {
            {
                {
                    match meta.usability(now) {
                        Usability::Fresh => {
                            if let Some(o) = self
                                .serve_stored(req, &info, &meta, CacheResult::Hit, sink)
                                .await
                            {
                                return o;
                            }
                        }
                        Usability::StaleWhileRevalidate => {
                            self.background_revalidate(req, &meta);
                            if let Some(o) = self
                                .serve_stored(req, &info, &meta, CacheResult::Stale, sink)
                                .await
                            {
                                return o;
                            }
                        }
                        Usability::MustRevalidate => {
                            let (fill, leader) = self.join_or_start(req, Some(&meta));
                            fill.wait_until(|f| !is_pending(f)).await;
                            let state = match &*fill.state.borrow() {
                                FillState::NotModified(m) => Some(Ok(m.clone())),
                                FillState::Failed(e) => Some(Err(e.clone())),
                                _ => None,
                            };
                            match state {
                                Some(Ok(m)) => {
                                    if let Some(o) = self
                                        .serve_stored(
                                            req,
                                            &info,
                                            &m,
                                            CacheResult::Revalidated,
                                            sink,
                                        )
                                        .await
                                    {
                                        return o;
                                    }
                                }
                                Some(Err(e)) => {
                                    if meta.stale_if_error_ok(now) {
                                        if let Some(o) = self
                                            .serve_stored(
                                                req,
                                                &info,
                                                &meta,
                                                CacheResult::Stale,
                                                sink,
                                            )
                                            .await
                                        {
                                            return o;
                                        }
                                    }
                                    return self.error(req, 502, &e, sink).await;
                                }
                                None => {
                                    return self
                                        .stream_fill(req, &fill, CacheResult::Miss, leader, sink)
                                        .await
                                }
                            }
                        }
                    }
                }
            }
        }
        let existing = self.fills.borrow().get(&req.cache_key).cloned();
        match existing {
            Some(fill) => {
                // Freshness on arrival (RFC 9111 §4.2): once the fill's answer is known, a viewer
                // arriving later joins it only while that answer is fresh — one stale on arrival
                // (max-age=0, Expires ≤ Date, Age beyond max-age) is fetched anew.
                let stale_on_arrival = match &*fill.state.borrow() {
                    FillState::Head(h) => h
                        .validators
                        .as_ref()
                        .is_some_and(|m| m.usability(now) != Usability::Fresh),
                    _ => false,
                };
                if stale_on_arrival {
                    return self.pass_through(req, sink).await;
                }
                // A body that has fully arrived is served from memory with no origin wait.
                let result = if fill.complete.get() {
                    CacheResult::Hit
                } else {
                    CacheResult::Fetching
                };
                self.stream_fill(req, &fill, result, false, sink).await
            }
            None => {
                // Origin fetches of distinct keys are bounded; past the bound a viewer fetches
                // for itself.
                if self.fetching.get() >= self.cfg.limits.fills_in_flight_max {
                    return self.pass_through(req, sink).await;
                }
                // Fill memory is bounded per shard: a new fill may hold up to one window, so
                // past the bound the miss streams through a bounded buffer, uncached.
                let limits = &self.cfg.limits;
                if self.fill_bytes.get() + limits.fill_window_bytes > limits.fill_buffer_bytes_max {
                    self.metrics.fills_over_memory.inc();
                    return self.pass_through(req, sink).await;
                }
                let (fill, leader) = self.join_or_start(req, None);
                self.stream_fill(req, &fill, CacheResult::Miss, leader, sink)
                    .await
            }
        }
    }

    /// The fill in flight for the key, or a new one started in its own task (it goes on when
    /// the viewer that started it leaves).
    /// Returns the fill and whether this viewer started it (its leader).
    fn join_or_start(
        self: &Rc<Self>,
        req: &CacheRequest,
        stale: Option<&Meta>,
    ) -> (Rc<Fill>, bool) {
        if let Some(f) = self.fills.borrow().get(&req.cache_key) {
            return (f.clone(), false);
        }
        let fill = Rc::new(Fill {
            state: RefCell::new(FillState::Pending),
            window: RefCell::new(FillWindow::default()),
            received: Cell::new(0),
            complete: Cell::new(false),
            done: Cell::new(false),
            error: Cell::new(false),
            event: event_listener::Event::new(),
            budget: self.fill_bytes.clone(),
            progress: RefCell::new(None),
            consumed: Cell::new(0),
            readers: Cell::new(0),
        });
        self.fills
            .borrow_mut()
            .insert(req.cache_key.clone(), fill.clone());
        self.metrics.fills_started.inc();
        let this = self.clone();
        let req = req.clone();
        let stale = stale.cloned();
        let f = fill.clone();
        let fetching = Fetching::new(&self.fetching);
        monoio::spawn(async move {
            this.run_fill(&req, &f, stale.as_ref(), fetching).await;
            f.done.set(true);
            f.notify();
            this.fills.borrow_mut().remove(&req.cache_key);
        });
        (fill, true)
    }

    fn background_revalidate(self: &Rc<Self>, req: &CacheRequest, meta: &Meta) {
        if !self.fills.borrow().contains_key(&req.cache_key) {
            let _ = self.join_or_start(req, Some(meta));
        }
    }

    async fn run_fill(
        self: &Rc<Self>,
        req: &CacheRequest,
        fill: &Fill,
        stale: Option<&Meta>,
        fetching: Fetching,
    ) {
        let rule = self.rule(req);
        let mut extra = req.forward_headers.clone();
        if let Some(m) = stale {
            if let Some(e) = &m.etag {
                extra.push_str(&format!("If-None-Match: {e}\r\n"));
            }
            if let Some(lm) = &m.last_modified {
                extra.push_str(&format!("If-Modified-Since: {lm}\r\n"));
            }
        }
        let host = rule.origin_host.as_deref().unwrap_or(&req.host);
        let started = std::time::Instant::now();
        let mut resp = None;
        if let Some(peer) = req.upstream_peer {
            // Mirror: pull from the designated node, marked so it never forwards again.
            let pull = format!("{extra}X-Arrow-Pull: {}\r\n", self.node_name);
            let origin = crate::config::Origin {
                url: format!("http://{peer}"),
                host_port: req.host.clone(),
                addr: peer,
            };
            let request = OriginRequest {
                method: "GET",
                path_and_query: &req.path_and_query,
                host: &req.host,
                extra_headers: &pull,
                body: &[],
            };
            match self.origin.fetch_one(&origin, &request).await {
                Ok(r) if r.status < 500 => resp = Some(Ok(r)),
                Ok(r) => {
                    tracing::warn!(%peer, status = r.status, "mirror pull failed; using the origin")
                }
                Err(e) => tracing::warn!(%peer, error = %e, "mirror pull failed; using the origin"),
            }
        }
        let resp = match resp {
            Some(r) => r,
            None => {
                self.origin
                    .fetch(
                        rule,
                        &OriginRequest {
                            method: "GET",
                            path_and_query: &req.path_and_query,
                            host,
                            extra_headers: &extra,
                            body: &[],
                        },
                    )
                    .await
            }
        };
        self.metrics.origin_latency.observe(started.elapsed());
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.metrics.origin_errors.inc();
                *fill.state.borrow_mut() = FillState::Failed(e.to_string());
                fill.notify();
                return;
            }
        };
        let response_time = freshness::now_s();
        // The response delay of RFC 9111 §4.2.3 in whole seconds elapsed, not the difference of
        // two clock readings rounded to seconds (which adds a second to a 1 ms fetch that
        // crosses a second boundary).
        let request_time = response_time.saturating_sub(started.elapsed().as_secs());
        self.learn_cors(req.rule, &resp.headers);
        let head = OriginHead {
            status: resp.status,
            headers: &resp.headers,
        };
        if let (Some(m), 304) = (stale, resp.status) {
            let refreshed = m.refreshed(&head, request_time, response_time, &self.policy(rule));
            if let (Some(store), Some(disk)) = (&self.store, req.disk) {
                if let Some(blob) = refreshed.encode_bounded(arrow_storage::layout::META_BYTES_MAX)
                {
                    if let Err(e) = store
                        .update_meta(disk, req.cache_key.as_bytes(), blob)
                        .await
                    {
                        tracing::warn!(key = %req.cache_key, error = %e, "metadata refresh failed");
                    }
                }
            }
            *fill.state.borrow_mut() = FillState::NotModified(refreshed);
            fill.notify();
            return;
        }
        if stale.is_some() && resp.status >= 500 {
            *fill.state.borrow_mut() = FillState::Failed(format!("origin status {}", resp.status));
            fill.notify();
            return;
        }
        let storable =
            match freshness::evaluate(&head, request_time, response_time, &self.policy(rule)) {
                Storable::Yes(m) => Some(m),
                Storable::No(why) => {
                    tracing::debug!(key = %req.cache_key, why, "not storable");
                    None
                }
            };
        let too_big = resp
            .body
            .len
            .is_some_and(|l| l > self.cfg.limits.object_bytes_max);
        let shared = storable.is_some() && !too_big;
        let header_block = render_origin_headers(&resp, Some(&self.policy(rule)));
        // Vary: the response is stored under the leader's variant key, with a stub under the
        // cache key naming the fields (crate::vary); without Vary, under the cache key itself.
        let primary = crate::vary::primary_of(&req.cache_key).to_string();
        let variant = match crate::vary::fields(head.all("vary")) {
            Ok(f) if !f.is_empty() => {
                let key = crate::vary::variant_key(&primary, &f, &req.vary_source);
                Some((f, key))
            }
            _ => None,
        };
        let store_key = variant.as_ref().map_or(primary.clone(), |(_, k)| k.clone());
        *fill.state.borrow_mut() = FillState::Head(Rc::new(FillHead {
            status: resp.status,
            header_block,
            len: resp.body.len,
            shared,
            buffered: !too_big,
            validators: storable.clone(),
            variant: variant.clone(),
            interim: std::mem::take(&mut resp.interim),
        }));
        fill.notify();
        if too_big {
            return;
        }
        let mut writer = match (&self.store, req.disk, &storable) {
            (Some(store), Some(disk), Some(meta)) => {
                match meta.encode_bounded(arrow_storage::layout::META_BYTES_MAX) {
                    None => {
                        tracing::warn!(key = %req.cache_key, "response headers too large to store");
                        None
                    }
                    Some(blob) => {
                        if let Some((fields, key)) = &variant {
                            self.record_variant(store, disk, &primary, fields, key, meta)
                                .await;
                        }
                        match store.writer(disk, store_key.as_bytes(), blob, resp.body.len) {
                            Ok(w) => Some(w),
                            Err(e) => {
                                tracing::debug!(key = %req.cache_key, error = %e, "not admitted to disk");
                                None
                            }
                        }
                    }
                }
            }
            _ => None,
        };
        *fill.progress.borrow_mut() = writer.as_ref().map(|w| w.progress());
        let window_max = self.cfg.limits.fill_window_bytes;
        loop {
            // A fill only its leader reads runs at most a window ahead of it (the origin is read
            // at the viewer's pace); it ends when that viewer leaves.
            if !shared && fill.window.borrow().bytes > window_max {
                let taken = fill.consumed.get();
                if fill.readers.get() == 0 {
                    // The viewer may not have started reading yet (or asked only for the head):
                    // give it a moment, then stop fetching a body nobody reads.
                    monoio::time::sleep(std::time::Duration::from_millis(100)).await;
                    if fill.readers.get() == 0 && fill.consumed.get() == taken {
                        fill.error.set(true);
                        return;
                    }
                    continue;
                }
                fill.wait_until(|f| f.consumed.get() > taken || f.readers.get() == 0)
                    .await;
                fill.trim(window_max, shared);
                continue;
            }
            match resp.body.next().await {
                Ok(Some(piece)) => {
                    self.metrics.origin_bytes.add(piece.len() as u64);
                    fill.push(piece.clone(), window_max, shared);
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.write(&piece).await {
                            tracing::warn!(key = %req.cache_key, error = %e, "disk write failed; object not stored");
                            writer = None;
                        }
                        // A chunk that reached the disk lets the window drop what it covers.
                        fill.trim(window_max, shared);
                    }
                    if fill.received.get() > self.cfg.limits.object_bytes_max {
                        // A body without a length outgrew the bound: stop holding it. Viewers
                        // reading this fill see the response cut short (connection closed).
                        tracing::warn!(key = %req.cache_key, "body exceeds object_bytes_max; fill abandoned");
                        fill.error.set(true);
                        return;
                    }
                }
                Ok(None) => {
                    fill.complete.set(true);
                    fill.notify();
                    break;
                }
                Err(e) => {
                    tracing::warn!(key = %req.cache_key, error = %e, "origin body failed");
                    self.metrics.origin_errors.inc();
                    fill.error.set(true);
                    return; // writer dropped unfinished: the torn object is never visible
                }
            }
        }
        drop(fetching);
        if let Some(w) = writer {
            if let Err(e) = w.finish().await {
                tracing::warn!(key = %req.cache_key, error = %e, "object commit failed");
            }
        }
    }

    /// Stream a fill's response to one viewer.
    async fn stream_fill(
        self: &Rc<Self>,
        req: &CacheRequest,
        fill: &Rc<Fill>,
        result: CacheResult,
        leader: bool,
        sink: &mut impl Sink,
    ) -> Outcome {
        fill.wait_until(|f| !is_pending(f)).await;
        let head = match &*fill.state.borrow() {
            FillState::Head(h) => Ok(h.clone()),
            FillState::Failed(e) => Err(e.clone()),
            FillState::NotModified(_) => Err(String::new()),
            FillState::Pending => unreachable!("waited for a head"),
        };
        let head = match head {
            Ok(h) => h,
            Err(e) if e.is_empty() => {
                // A revalidation confirmed the stored copy: serve it from the store.
                return Box::pin(self.serve(req, sink)).await;
            }
            Err(e) => return self.error(req, 502, &e, sink).await,
        };
        // A response that may not be shared goes only to the viewer that asked for it; the
        // others that joined meanwhile fetch for themselves. So does a viewer of another variant.
        let other_variant = head.variant.as_ref().is_some_and(|(f, key)| {
            crate::vary::variant_key(crate::vary::primary_of(&req.cache_key), f, &req.vary_source)
                != *key
        });
        if !(head.shared || leader && head.buffered) || (other_variant && !leader) {
            return self.pass_through(req, sink).await;
        }
        let head_shared = head.shared;
        // The origin's interim heads go to the viewer that asked (never from the cache).
        if leader && req.interim_ok {
            for i in &head.interim {
                if sink.send(i.to_vec(), Bytes::new()).await.is_err() {
                    break;
                }
            }
        }
        if req.if_none_match.is_some() || req.if_modified_since.is_some() {
            if let Some(v) = &head.validators {
                if head.status == 200
                    && freshness::not_modified(
                        v,
                        req.if_none_match.as_deref(),
                        req.if_modified_since.as_deref(),
                    )
                {
                    let mut h = HeadWriter::new(304);
                    for (name, value) in [("ETag", &v.etag), ("Last-Modified", &v.last_modified)] {
                        if let Some(x) = value {
                            h.header(name, x);
                        }
                    }
                    h.raw(&freshness::not_modified_fields(&v.header_block));
                    self.common_headers(&mut h, req, result, v.current_age_s(freshness::now_s()));
                    let aborted = sink.send(h.finish(), Bytes::new()).await.is_err();
                    return Outcome {
                        status: 304,
                        result,
                        body_bytes: 0,
                        aborted,
                    };
                }
            }
        }
        // The total length decides ranges; without it, wait for the end before a range.
        let range_value = req.range.as_deref().filter(|_| head.status == 200);
        let len = match (head.len, range_value) {
            (Some(l), _) => Some(l),
            (None, Some(_)) => {
                fill.wait_until(|f| f.done.get() || f.error.get()).await;
                if fill.error.get() {
                    return self.error(req, 502, "origin body failed", sink).await;
                }
                Some(fill.received.get())
            }
            (None, None) => None,
        };
        let spec = parse_range(range_value, len.unwrap_or(0));
        // Only a range this node cuts gets its own Content-Range; an origin's 206 keeps its own.
        let ranged = len.is_some() && matches!(spec, RangeSpec::Bytes { .. });
        let (status, first, last) = match (len, spec) {
            (Some(_), RangeSpec::Bytes { first, last }) => (206, first, Some(last)),
            (Some(l), RangeSpec::Unsatisfiable) => {
                return self
                    .unsatisfiable(req, l, &head.header_block, result, sink)
                    .await;
            }
            (Some(l), RangeSpec::Whole) => (head.status, 0, l.checked_sub(1)),
            (None, _) => (head.status, 0, None),
        };
        let chunked = len.is_none();
        // Age as RFC 9111 §4.2.3 computes it (the origin's Age and Date included), not 0.
        let age = head
            .validators
            .as_ref()
            .map_or(0, |m| m.current_age_s(freshness::now_s()));
        let mut h = HeadWriter::new(status);
        h.raw_without(
            &head.header_block,
            if ranged {
                CACHE_WRITES_FIELDS
            } else {
                CACHE_WRITES_FIELDS_WHOLE
            },
        );
        self.common_headers(&mut h, req, result, age);
        if ranged {
            h.header(
                "Content-Range",
                format!("bytes {first}-{}/{}", last.unwrap_or(0), len.unwrap_or(0)),
            );
        }
        let body_len = last.map_or(0, |l| l + 1 - first);
        if chunked {
            h.header("Transfer-Encoding", "chunked");
        } else {
            h.header("Content-Length", body_len);
        }
        let head_bytes = h.finish();
        let mut out = Outcome {
            status,
            result,
            body_bytes: 0,
            aborted: false,
        };
        if req.head_only || (!chunked && body_len == 0) {
            out.aborted = sink.send(head_bytes, Bytes::new()).await.is_err();
            return out;
        }
        let mut pending_head = Some(head_bytes);
        let end = last.map(|l| l + 1);
        let _reading = Reading::new(fill);
        let mut pos = first; // next body byte this viewer needs
        loop {
            if end.is_some_and(|e| pos >= e) {
                break;
            }
            let held = fill.window.borrow().at(pos);
            let piece = match held {
                Ok(Some(p)) => p,
                Ok(None) => {
                    if fill.error.get() {
                        out.aborted = true;
                        return out;
                    }
                    if fill.done.get() || fill.complete.get() && pos >= fill.received.get() {
                        break;
                    }
                    fill.wait_until(|f| f.received.get() > pos || f.done.get() || f.error.get())
                        .await;
                    continue;
                }
                Err(()) => {
                    // Behind the window: read what the disk writer has put down.
                    let progress = fill.progress.borrow().clone();
                    let read = match (&self.store, progress) {
                        (Some(store), Some(p)) => store
                            .read_written(&p, pos, end.map_or(u64::MAX, |e| e - pos))
                            .await
                            .ok(),
                        _ => None,
                    };
                    match read {
                        Some(b) if !b.is_empty() => {
                            self.metrics.fill_disk_reads.inc();
                            b
                        }
                        _ => {
                            self.metrics.fill_viewers_cut.inc();
                            out.aborted = true;
                            return out;
                        }
                    }
                }
            };
            let piece = match end {
                Some(e) if pos + piece.len() as u64 > e => piece.slice(..(e - pos) as usize),
                _ => piece,
            };
            let plen = piece.len() as u64;
            let head = pending_head.take().unwrap_or_default();
            let took = if chunked {
                sink.send(head, chunk_frame(piece)).await.map(|_| plen)
            } else {
                sink.send_part(head, BodyPart::Bytes(piece)).await
            };
            match took {
                Ok(n) => {
                    pos += n;
                    out.body_bytes += n;
                    if !head_shared {
                        fill.consumed.set(pos);
                        fill.notify();
                    }
                    if n < plen && sink.writable().await.is_err() {
                        out.aborted = true;
                        return out;
                    }
                }
                Err(_) => {
                    out.aborted = true;
                    return out;
                }
            }
        }
        if chunked {
            let head = pending_head.take().unwrap_or_default();
            out.aborted = sink
                .send(head, Bytes::from_static(b"0\r\n\r\n"))
                .await
                .is_err();
        } else if let Some(head) = pending_head {
            out.aborted = sink.send(head, Bytes::new()).await.is_err();
        }
        out
    }

    /// Serve a stored object. `None` when its body cannot be read (gone, corrupt): the caller
    /// falls back to a fill, so the viewer never sees the failure.
    async fn serve_stored(
        &self,
        req: &CacheRequest,
        info: &ObjectInfo,
        meta: &Meta,
        result: CacheResult,
        sink: &mut impl Sink,
    ) -> Option<Outcome> {
        let store = self.store.as_ref()?;
        self.serve_body(req, StoredBody::Store(store, info), meta, result, sink)
            .await
    }

    /// A stored answer (head from `meta`, body from `body`): 304 to a matching conditional,
    /// 206/416 to a range, else the whole body, unit by unit with one unit of read-ahead.
    async fn serve_body(
        &self,
        req: &CacheRequest,
        body: StoredBody<'_>,
        meta: &Meta,
        result: CacheResult,
        sink: &mut impl Sink,
    ) -> Option<Outcome> {
        let now = freshness::now_s();
        let age = meta.current_age_s(now);
        if meta.status == 200
            && freshness::not_modified(
                meta,
                req.if_none_match.as_deref(),
                req.if_modified_since.as_deref(),
            )
        {
            let mut h = HeadWriter::new(304);
            for (name, value) in [("ETag", &meta.etag), ("Last-Modified", &meta.last_modified)] {
                if let Some(v) = value {
                    h.header(name, v);
                }
            }
            h.raw(&freshness::not_modified_fields(&meta.header_block));
            self.common_headers(&mut h, req, result, age);
            let aborted = sink.send(h.finish(), Bytes::new()).await.is_err();
            return Some(Outcome {
                status: 304,
                result,
                body_bytes: 0,
                aborted,
            });
        }
        let len = body.len();
        let range_value = req.range.as_deref().filter(|_| meta.status == 200);
        let (status, first, end) = match parse_range(range_value, len) {
            RangeSpec::Whole => (meta.status, 0, len),
            RangeSpec::Bytes { first, last } => (206, first, last + 1),
            RangeSpec::Unsatisfiable => {
                return Some(
                    self.unsatisfiable(req, len, &meta.header_block, result, sink)
                        .await,
                );
            }
        };
        // The first piece is read before the head, so a bad object falls back to a fill.
        let want_span = sink.can_splice();
        let mut part = if req.head_only || first >= end {
            None
        } else {
            match body.read(first, end - first, want_span).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(key = %req.cache_key, error = %e, "stored object unreadable; refetching");
                    self.metrics.storage_read_errors.inc();
                    return None;
                }
            }
        };
        let mut h = HeadWriter::new(status);
        h.raw_without(&meta.header_block, cache_writes(status));
        self.common_headers(&mut h, req, result, age);
        if status == 206 {
            h.header("Content-Range", format!("bytes {first}-{}/{len}", end - 1));
        }
        h.header("Content-Length", end - first);
        let mut out = Outcome {
            status,
            result,
            body_bytes: 0,
            aborted: false,
        };
        let mut head = h.finish();
        if part.is_none() {
            out.aborted = sink.send(head, Bytes::new()).await.is_err();
            return Some(out);
        }
        // Each piece is one unit of the body (a chunk, or a whole small body): while it is sent,
        // the next one is read (read-ahead of one unit), unless the viewer proved slow. A piece
        // the viewer's socket does not take within the hold time is dropped and read again
        // once the socket has room (from the RAM tier, which keeps a unit read twice).
        let mut pos = first;
        let mut read_ahead = true;
        while let Some(p) = part.take() {
            let plen = p.len();
            let next_pos = pos + plen;
            let ahead = match &body {
                StoredBody::Store(store, info) if read_ahead && next_pos < end => {
                    let store = Rc::clone(store);
                    let info = (*info).clone();
                    Some(monoio::spawn(async move {
                        store
                            .read_part(&info, next_pos, end - next_pos, want_span)
                            .await
                    }))
                }
                _ => None,
            };
            let took = match sink.send_part(std::mem::take(&mut head), p).await {
                Ok(n) => n,
                Err(_) => {
                    out.aborted = true;
                    return Some(out);
                }
            };
            pos += took;
            out.body_bytes += took;
            if pos >= end {
                break;
            }
            let next = if took < plen {
                // A slow viewer: no read-ahead from now on, nothing held while it drains.
                self.metrics.send_pieces_dropped.inc();
                read_ahead = false;
                drop(ahead);
                if sink.writable().await.is_err() {
                    out.aborted = true;
                    return Some(out);
                }
                body.read(pos, end - pos, want_span).await
            } else {
                match ahead {
                    Some(task) => task.await,
                    None => body.read(pos, end - pos, want_span).await,
                }
            };
            match next {
                Ok(p) if !p.is_empty() => part = Some(p),
                Ok(_) => {
                    out.aborted = true;
                    return Some(out);
                }
                Err(e) => {
                    tracing::warn!(key = %req.cache_key, error = %e, "stored object read failed mid-body");
                    self.metrics.storage_read_errors.inc();
                    out.aborted = true;
                    return Some(out);
                }
            }
        }
        Some(out)
    }

    /// 416 for a range past the end of a body whose stored head is `block` (its CORS fields
    /// go along, so a browser player can read the status).
    async fn unsatisfiable(
        &self,
        req: &CacheRequest,
        len: u64,
        block: &[u8],
        result: CacheResult,
        sink: &mut impl Sink,
    ) -> Outcome {
        let mut h = HeadWriter::new(416);
        h.raw(&freshness::cors_fields(block));
        self.common_headers(&mut h, req, result, 0);
        h.header("Content-Range", format!("bytes */{len}"))
            .header("Content-Length", 0);
        let aborted = sink.send(h.finish(), Bytes::new()).await.is_err();
        Outcome {
            status: 416,
            result,
            body_bytes: 0,
            aborted,
        }
    }

    fn common_headers(
        &self,
        h: &mut HeadWriter,
        req: &CacheRequest,
        result: CacheResult,
        age: u64,
    ) {
        h.header("Age", age)
            .header("X-Cache", result.as_str())
            .header("Server", &*self.node_name)
            .header("Accept-Ranges", "bytes")
            .header("Connection", connection_value(req.keep_alive))
            .raw(req.extra_headers.as_bytes());
    }

    pub async fn error(
        &self,
        req: &CacheRequest,
        status: u16,
        reason: &str,
        sink: &mut impl Sink,
    ) -> Outcome {
        // The reason may name an origin or a node: logged, never shown to the viewer.
        tracing::warn!(key = %req.cache_key, status, reason, request_id = %req.request_id, "answered with an error");
        let body = format!("{}\n", crate::http::upstream_failure_text(status));
        let mut h = HeadWriter::new(status);
        h.raw(&self.cors_of(req.rule));
        h.header("Server", &*self.node_name)
            .header("X-Cache", "ERROR")
            .header("X-Request-Id", &req.request_id)
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("Content-Length", body.len())
            .header("Connection", connection_value(req.keep_alive))
            .raw(req.extra_headers.as_bytes());
        let body = if req.head_only {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        let aborted = sink.send(h.finish(), body).await.is_err();
        Outcome {
            status,
            result: CacheResult::Pass,
            body_bytes: 0,
            aborted,
        }
    }

    /// Fetch for this viewer alone and stream the answer (not storable, too big, or over the
    /// fill budget).
    pub async fn pass_through(&self, req: &CacheRequest, sink: &mut impl Sink) -> Outcome {
        let rule = self.rule(req);
        let host = rule.origin_host.as_deref().unwrap_or(&req.host);
        let mut extra = req.forward_headers.clone();
        if let Some(r) = &req.range {
            extra.push_str(&format!("Range: {r}\r\n"));
        }
        let resp = self
            .origin
            .fetch(
                rule,
                &OriginRequest {
                    method: if req.head_only { "HEAD" } else { "GET" },
                    path_and_query: &req.path_and_query,
                    host,
                    extra_headers: &extra,
                    body: &[],
                },
            )
            .await;
        match resp {
            Ok(resp) => {
                stream_origin_response(
                    resp,
                    &self.node_name,
                    req.keep_alive,
                    req.head_only,
                    &req.extra_headers,
                    None,
                    Some(&self.policy(rule)),
                    sink,
                )
                .await
            }
            Err(e) => {
                self.metrics.origin_errors.inc();
                self.error(req, 502, &e.to_string(), sink).await
            }
        }
    }
}

/// The origin's headers minus hop-by-hop and recomputed ones, rendered as lines.
/// `policy`: the host rule's, whose targeted cache-control fields are not passed on.
pub fn render_origin_headers(resp: &OriginResponse, policy: Option<&freshness::Policy>) -> Bytes {
    let mut b = BytesMut::with_capacity(256);
    let named = freshness::connection_named(&resp.headers);
    for (n, v) in &resp.headers {
        if (freshness::is_unreplayed_header(n) && !n.eq_ignore_ascii_case("set-cookie"))
            || named.iter().any(|c| n.eq_ignore_ascii_case(c))
            || policy.is_some_and(|p| p.strips(n))
        {
            continue;
        }
        b.extend_from_slice(n.as_bytes());
        b.extend_from_slice(b": ");
        b.extend_from_slice(v.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b.freeze()
}

fn chunk_frame(piece: Bytes) -> Bytes {
    let mut b = BytesMut::with_capacity(piece.len() + 16);
    b.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
    b.extend_from_slice(&piece);
    b.extend_from_slice(b"\r\n");
    b.freeze()
}

/// Relay an origin response to a viewer uncached (X-Cache: MISS, not stored).
#[allow(clippy::too_many_arguments)]
pub async fn stream_origin_response(
    mut resp: OriginResponse,
    node_name: &str,
    keep_alive: bool,
    head_only: bool,
    extra_headers: &str,
    x_cache: Option<&str>,
    policy: Option<&freshness::Policy<'_>>,
    sink: &mut impl Sink,
) -> Outcome {
    for i in std::mem::take(&mut resp.interim) {
        if sink.send(i.to_vec(), Bytes::new()).await.is_err() {
            break;
        }
    }
    let mut h = HeadWriter::new(resp.status);
    h.raw(&render_origin_headers(&resp, policy));
    h.header("X-Cache", x_cache.unwrap_or(CacheResult::Pass.as_str()))
        .header("Server", node_name)
        .header("Connection", connection_value(keep_alive))
        .raw(extra_headers.as_bytes());
    let no_body = head_only || resp.status == 204 || resp.status == 304;
    let chunked = resp.body.len.is_none() && !no_body;
    if let Some(l) = resp.body.len {
        h.header("Content-Length", l);
    } else if chunked {
        h.header("Transfer-Encoding", "chunked");
    }
    let mut out = Outcome {
        status: resp.status,
        result: CacheResult::Pass,
        body_bytes: 0,
        aborted: false,
    };
    let mut head = Some(h.finish());
    if !no_body {
        loop {
            match resp.body.next().await {
                Ok(Some(p)) => {
                    out.body_bytes += p.len() as u64;
                    let p = if chunked { chunk_frame(p) } else { p };
                    if sink.send(head.take().unwrap_or_default(), p).await.is_err() {
                        out.aborted = true;
                        return out;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    out.aborted = true;
                    if let Some(h) = head.take() {
                        let _ = sink.send(h, Bytes::new()).await;
                    }
                    return out;
                }
            }
        }
        if chunked {
            out.aborted = sink
                .send(
                    head.take().unwrap_or_default(),
                    Bytes::from_static(b"0\r\n\r\n"),
                )
                .await
                .is_err();
            return out;
        }
    }
    if let Some(h) = head {
        out.aborted = sink.send(h, Bytes::new()).await.is_err();
    }
    out
}
