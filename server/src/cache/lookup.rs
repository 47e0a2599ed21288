//! Lookup: what the key's stored object (or its absence) means for this request.

use super::*;

impl ShardCache {
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
    pub(super) async fn serve_found(
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
                                    // The refresh may have stored the object anew (a small
                                    // object's metadata lives in its packed record): then it
                                    // is the one found now.
                                    let current = match (&self.store, req.disk) {
                                        (Some(store), Some(disk)) => store
                                            .lookup(disk, req.cache_key.as_bytes())
                                            .unwrap_or(info),
                                        _ => info,
                                    };
                                    if let Some(o) = self
                                        .serve_stored(
                                            req,
                                            &current,
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
                if self.fetching.get() >= self.limits.load().fills_in_flight_max {
                    return self.pass_through(req, sink).await;
                }
                // Fill memory is bounded per shard: a new fill may hold up to one window, so
                // past the bound the miss streams through a bounded buffer, uncached.
                let over = {
                    let limits = self.limits.load();
                    self.fill_bytes.get() + limits.fill_window_bytes > limits.fill_buffer_bytes_max
                };
                if over {
                    self.metrics.fills_over_memory.inc();
                    return self.pass_through(req, sink).await;
                }
                let (fill, leader) = self.join_or_start(req, None);
                self.stream_fill(req, &fill, CacheResult::Miss, leader, sink)
                    .await
            }
        }
    }
}
