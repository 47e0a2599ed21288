//! Answers relayed uncached: pass-through to the origin and its framing.

use super::*;

impl ShardCache {
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

pub(super) fn chunk_frame(piece: Bytes) -> Bytes {
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
