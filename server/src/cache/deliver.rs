//! Delivery of a stored answer: 304 to a matching conditional, 206/416 to a range, else the
//! body unit by unit with one unit of read-ahead — from the store or from a replica.

use super::*;

/// Where a stored body is read from: the shard's store, or a replica's bytes.
pub(super) enum StoredBody<'a> {
    Store(&'a Rc<Store>, &'a ObjectInfo),
    Memory(Bytes),
}

impl StoredBody<'_> {
    pub(super) fn len(&self) -> u64 {
        match self {
            StoredBody::Store(_, info) => info.body_len,
            StoredBody::Memory(b) => b.len() as u64,
        }
    }

    pub(super) async fn read(
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

fn slow_piece(
    part: Result<BodyPart, arrow_storage::StorageError>,
) -> Result<BodyPart, arrow_storage::StorageError> {
    Ok(BodyPart::Bytes(slow_copy(&part?)))
}

impl ShardCache {
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

    /// Keep the replica an owning shard sent for `req`'s key, if the node's replica epoch is
    /// still `epoch`, the one read when the request was sent (a purge or a disk change since
    /// may have removed what the copy holds).
    pub fn keep_replica(&self, req: &CacheRequest, meta: &Bytes, body: Bytes, epoch: u64) {
        let now = self
            .replica_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        if now != epoch {
            return;
        }
        let Some(meta) = Meta::decode(meta) else {
            return;
        };
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

    /// Serve a stored object. `None` when its body cannot be read (gone, corrupt): the caller
    /// falls back to a fill, so the viewer never sees the failure.
    pub(super) async fn serve_stored(
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
    pub(super) async fn serve_body(
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
            let mut ahead = match &body {
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
            if took < plen {
                // A slow viewer: no read-ahead from now on, nothing held while it drains.
                self.metrics.send_pieces_dropped.inc();
                read_ahead = false;
                ahead = None;
                if sink.writable().await.is_err() {
                    out.aborted = true;
                    return Some(out);
                }
            }
            let next = match ahead {
                Some(task) => task.await,
                // From a slow viewer on, pieces of at most SLOW_PIECE_BYTES of its own.
                _ if !read_ahead => slow_piece(body.read(pos, end - pos, want_span).await),
                _ => body.read(pos, end - pos, want_span).await,
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
    pub(super) async fn unsatisfiable(
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

    pub(super) fn common_headers(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_viewers_piece_is_a_small_copy_of_its_own() {
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        match slow_piece(Ok(BodyPart::Bytes(chunk.clone()))) {
            Ok(BodyPart::Bytes(b)) => {
                assert_eq!(b.len(), SLOW_PIECE_BYTES);
                assert!(b.iter().all(|&x| x == 7));
                // A copy: the chunk buffer is not kept alive by the piece.
                assert_ne!(b.as_ptr(), chunk.as_ptr());
            }
            _ => panic!("bytes expected"),
        }
        match slow_piece(Ok(BodyPart::Bytes(Bytes::from_static(b"tail")))) {
            Ok(BodyPart::Bytes(b)) => assert_eq!(&b[..], b"tail"),
            _ => panic!("bytes expected"),
        }
    }
}
