//! Fills: one origin fetch per key in flight, shared by every viewer that wants it while it
//! runs (read-while-write), its body held in a bounded window and written to the disk.

use super::*;

/// Counts a fill as fetching until dropped (body complete, failed, or abandoned).
pub(super) struct Fetching(Rc<Cell<usize>>);

impl Fetching {
    pub(super) fn new(c: &Rc<Cell<usize>>) -> Fetching {
        c.set(c.get() + 1);
        Fetching(c.clone())
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

pub(super) enum FillState {
    Pending,
    /// The origin answered; `stored` tells whether the object is being written.
    Head(Rc<FillHead>),
    /// The origin confirmed the stored copy (304): refreshed metadata.
    NotModified(Meta),
    /// The origin could not be reached or failed; viewers decide (stale-if-error or 502).
    Failed(String),
}

pub(super) struct FillHead {
    pub(super) status: u16,
    pub(super) header_block: Bytes,
    pub(super) len: Option<u64>,
    /// Shared with every waiting viewer (a storable response). When false, only the viewer
    /// that started the fill reads it; each other viewer fetches for itself.
    pub(super) shared: bool,
    /// The body is kept in the fill (false: too big; even the leader fetches for itself).
    pub(super) buffered: bool,
    /// The stored metadata, when storable (validators for conditional viewers).
    pub(super) validators: Option<Meta>,
    /// Interim 102/103 heads of the origin, for the viewer that started the fill.
    pub(super) interim: Vec<Bytes>,
    /// For a response with Vary: the request fields it varies on and the leader's variant key.
    /// A viewer whose own variant key differs fetches for itself.
    pub(super) variant: Option<(Vec<String>, String)>,
}

/// The part of a fill's body held in memory: `pieces` in body order, starting at body offset
/// `base`, `bytes` in all (at most about `fill_window_bytes`).
#[derive(Default)]
pub(super) struct FillWindow {
    pub(super) base: u64,
    pub(super) pieces: std::collections::VecDeque<Bytes>,
    pub(super) bytes: u64,
}

impl FillWindow {
    /// The held bytes from body offset `pos` to the end of the piece that holds it: Ok(None) if
    /// `pos` has not arrived yet, Err(()) if it was already dropped from the window.
    pub(super) fn at(&self, pos: u64) -> Result<Option<Bytes>, ()> {
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

pub(super) struct Fill {
    pub(super) state: RefCell<FillState>,
    pub(super) window: RefCell<FillWindow>,
    pub(super) received: Cell<u64>,
    /// The whole body has arrived (the disk commit may still be running).
    pub(super) complete: Cell<bool>,
    /// The fill task has ended.
    pub(super) done: Cell<bool>,
    pub(super) error: Cell<bool>,
    pub(super) event: event_listener::Event,
    pub(super) budget: Rc<Cell<u64>>,
    /// The shard's highest `budget` so far (`arrow_fill_buffer_bytes_peak`).
    pub(super) budget_peak: Rc<Cell<u64>>,
    /// The disk writer's progress while the body is stored: viewers that fell behind the window
    /// read from it (read-while-write through storage).
    pub(super) progress: RefCell<Option<Rc<WriteProgress>>>,
    /// A fill only its leader reads (not shared): the bytes the leader has taken. The fill stays
    /// at most a window ahead of it, so the origin is read at the viewer's pace.
    pub(super) consumed: Cell<u64>,
    /// Viewers streaming this fill right now.
    pub(super) readers: Cell<usize>,
    /// A purge or an unsafe-method invalidation named the key while the fill ran: what it
    /// stores is removed again when it ends, and later viewers start a fill of their own.
    pub(super) purged: Cell<bool>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        let held = self.window.borrow().bytes;
        self.budget.set(self.budget.get().saturating_sub(held));
    }
}

impl Fill {
    pub(super) fn notify(&self) {
        self.event.notify(usize::MAX);
    }

    pub(super) async fn wait_until(&self, mut ready: impl FnMut(&Fill) -> bool) {
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
    pub(super) fn push(&self, piece: Bytes, window_max: u64, shared: bool) {
        let n = piece.len() as u64;
        let mut w = self.window.borrow_mut();
        w.pieces.push_back(piece);
        w.bytes += n;
        self.budget.set(self.budget.get() + n);
        self.budget_peak
            .set(self.budget_peak.get().max(self.budget.get()));
        drop(w);
        self.received.set(self.received.get() + n);
        self.trim(window_max, shared);
        self.notify();
    }

    /// Drop every piece of the window once the disk copy covers all that arrived (the object is
    /// committed): viewers still streaming the fill read the rest from the store.
    pub(super) fn release_window(&self) {
        let on_disk = self.progress.borrow().as_ref().map(|p| p.readable_bytes());
        if on_disk.is_none_or(|d| d < self.received.get()) {
            return;
        }
        let mut w = self.window.borrow_mut();
        let held = w.bytes;
        w.base += held;
        w.pieces.clear();
        w.bytes = 0;
        self.budget.set(self.budget.get().saturating_sub(held));
    }

    pub(super) fn trim(&self, window_max: u64, shared: bool) {
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
pub(super) struct Reading<'a>(&'a Fill);

impl<'a> Reading<'a> {
    pub(super) fn new(f: &'a Fill) -> Reading<'a> {
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

pub(super) fn is_pending(f: &Fill) -> bool {
    matches!(*f.state.borrow(), FillState::Pending)
}

impl ShardCache {
    /// Write (or update) the Vary stub under `primary`: it names `fields` and lists `key`'s
    /// variant; past [`crate::vary::VARIANTS_MAX`] the oldest variant is removed.
    pub(super) async fn record_variant(
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

    /// The fill in flight for the key, or a new one started in its own task (it goes on when
    /// the viewer that started it leaves).
    /// Returns the fill and whether this viewer started it (its leader).
    pub(super) fn join_or_start(
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
            budget_peak: self.fill_bytes_peak.clone(),
            progress: RefCell::new(None),
            consumed: Cell::new(0),
            readers: Cell::new(0),
            purged: Cell::new(false),
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
            if f.purged.get() {
                // Purged while it ran: the object it committed (or refreshed) is not the
                // cache's any more. Nothing yields between the commit and this removal, so no
                // viewer arriving after the purge is served it.
                if let (Some(store), Some(disk)) = (&this.store, req.disk) {
                    if let Err(e) = store.remove(disk, req.cache_key.as_bytes()).await {
                        tracing::warn!(key = %req.cache_key, error = %e, "purged fill's object not removed");
                    }
                }
            }
            f.done.set(true);
            f.notify();
            let mut fills = this.fills.borrow_mut();
            // A purge may have replaced it with a newer fill of the key already.
            if fills.get(&req.cache_key).is_some_and(|g| Rc::ptr_eq(g, &f)) {
                fills.remove(&req.cache_key);
            }
        });
        (fill, true)
    }

    /// A purge of `key` (and its variants) or of every key under `prefix`: the fills of those
    /// keys in flight on this shard are marked purged and leave the table, so what they store
    /// goes again when they end and viewers from now on fetch anew. Returns how many.
    pub fn purge_fills(&self, key: Option<&str>, prefix: Option<&str>) -> usize {
        let variants = key.map(|k| format!("{k}{}", crate::vary::VARIANT_MARK));
        let mut fills = self.fills.borrow_mut();
        let before = fills.len();
        fills.retain(|k, f| {
            let named = key.is_some_and(|p| k == p)
                || variants.as_deref().is_some_and(|v| k.starts_with(v))
                || prefix.is_some_and(|p| k.starts_with(p));
            if named {
                f.purged.set(true);
            }
            !named
        });
        before - fills.len()
    }

    pub(super) fn background_revalidate(self: &Rc<Self>, req: &CacheRequest, meta: &Meta) {
        if !self.fills.borrow().contains_key(&req.cache_key) {
            let _ = self.join_or_start(req, Some(meta));
        }
    }

    pub(super) async fn run_fill(
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
                tls: None,
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
            .is_some_and(|l| l > self.limits.load().object_bytes_max);
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
        let window_max = self.limits.load().fill_window_bytes;
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
                    if fill.received.get() > self.limits.load().object_bytes_max {
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
            match w.finish().await {
                // Committed: the whole body is readable from the store, so the window goes now
                // rather than with the last viewer still streaming this fill (a slow viewer
                // would otherwise keep a whole window alive for as long as it reads).
                Ok(_) => fill.release_window(),
                Err(e) => {
                    tracing::warn!(key = %req.cache_key, error = %e, "object commit failed")
                }
            }
        }
    }

    /// Stream a fill's response to one viewer.
    pub(super) async fn stream_fill(
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
        let mut slow = false; // its socket once took less than a whole piece
                              // Chunked framing needs bytes; otherwise RAM-tier units may go as spans.
        let want_span = sink.can_splice() && !chunked;
        loop {
            if end.is_some_and(|e| pos >= e) {
                break;
            }
            let held = fill.window.borrow().at(pos);
            let part = match held {
                Ok(Some(p)) => BodyPart::Bytes(match end {
                    Some(e) if pos + p.len() as u64 > e => p.slice(..(e - pos) as usize),
                    _ => p,
                }),
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
                    // Behind the window: read what the disk writer has put down, or, once the
                    // object is committed, the stored object as a hit reads it (a RAM-tier unit
                    // goes to the socket as a span, shared by every viewer, not as a copy each).
                    let progress = fill.progress.borrow().clone();
                    let len_max = end.map_or(u64::MAX, |e| e - pos);
                    let read = match (&self.store, progress) {
                        (Some(store), Some(p)) => match p.committed() {
                            Some(obj) => store.read_part(&obj, pos, len_max, want_span).await.ok(),
                            None => store
                                .read_written(&p, pos, len_max)
                                .await
                                .ok()
                                .map(BodyPart::Bytes),
                        },
                        _ => None,
                    };
                    match read {
                        Some(p) if !p.is_empty() => {
                            self.metrics.fill_disk_reads.inc();
                            // A slow viewer keeps a small copy of its own, not a whole unit.
                            if slow {
                                BodyPart::Bytes(slow_copy(&p))
                            } else {
                                p
                            }
                        }
                        _ => {
                            self.metrics.fill_viewers_cut.inc();
                            out.aborted = true;
                            return out;
                        }
                    }
                }
            };
            let plen = part.len();
            let head = pending_head.take().unwrap_or_default();
            let took = if chunked {
                let piece = match part {
                    BodyPart::Bytes(b) => b,
                    BodyPart::Span(sp) => sp.to_bytes(),
                };
                sink.send(head, chunk_frame(piece)).await.map(|_| plen)
            } else {
                sink.send_part(head, part).await
            };
            match took {
                Ok(n) => {
                    pos += n;
                    out.body_bytes += n;
                    if !head_shared {
                        fill.consumed.set(pos);
                        fill.notify();
                    }
                    if n < plen {
                        slow = true;
                        if sink.writable().await.is_err() {
                            out.aborted = true;
                            return out;
                        }
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
}
