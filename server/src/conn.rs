//! One viewer connection: read a request head (bounded bytes and time), route it, answer,
//! repeat while keep-alive (pipelined requests are answered in order from the same buffer).
//!
//! head → host rule → keys → cluster route (self / peer / overflow) → key-to-disk hashing →
//! owning shard: local `ShardCache::serve`, or a bounded cross-shard channel whose replies
//! are written here.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::cache::{CacheRequest, Outcome};
use crate::cluster_link::Route;
use crate::ctx::{Reply, ShardCtx, ShardMsg};
use crate::forward::{upstream_headers, Purpose};
use crate::http::connection_value;
use crate::http::{self, BodyKind, Request};
use crate::keys;
use crate::metrics::CacheResult;
use crate::netio::Transport;
use crate::sink::SocketSink;

enum ReadHead {
    Request(Request),
    Closed,
    Refused(u16, String),
}

pub async fn handle(ctx: Rc<ShardCtx>, stream: TcpStream, peer: std::net::SocketAddr, tls: bool) {
    let _ = stream.set_nodelay(true);
    let limits = ctx.node.limits.load_full();
    limit_unsent(&stream, limits.send_unsent_bytes_max);
    // Empty: the first read takes the buffer it needs (a small one for a plain request head).
    let mut buf: Vec<u8> = Vec::new();
    let mut stream = Transport::plain(stream);
    if tls && !Box::pin(accept_tls(&ctx, &mut stream, &mut buf, peer)).await {
        return;
    }
    let aborted = serve(&ctx, &mut stream, buf, peer, &limits).await;
    // What a last response left encrypted goes out, then close_notify; nothing more for a
    // connection cut off (slow, stalled, reset), whose session is dropped with its buffers.
    if !aborted {
        Box::pin(stream.close(Duration::from_millis(limits.body_timeout_ms))).await;
    }
}

/// The TLS handshake of a connection on a TLS listener, within the handshake deadline and the
/// shard's bound on handshakes in flight. A plain HTTP request gets a 400 that says so (as
/// nginx answers); every failure is counted by reason and closes the connection.
async fn accept_tls(
    ctx: &Rc<ShardCtx>,
    io: &mut Transport,
    buf: &mut Vec<u8>,
    peer: std::net::SocketAddr,
) -> bool {
    use crate::tls::HandshakeFailure;
    let Some(tls) = ctx.node.tls.load_full() else {
        return false;
    };
    if ctx.tls_handshakes.get() >= tls.handshakes_in_flight_max {
        ctx.metrics.tls.failed(HandshakeFailure::Limit);
        return false;
    }
    let mut session = match crate::tls::Session::server(tls.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "TLS session not created");
            return false;
        }
    };
    ctx.tls_handshakes.set(ctx.tls_handshakes.get() + 1);
    let deadline = Instant::now() + tls.handshake_timeout;
    let r = session.handshake(&mut io.stream, deadline, buf).await;
    ctx.tls_handshakes.set(ctx.tls_handshakes.get() - 1);
    match r {
        Ok(()) => {
            ctx.metrics
                .tls
                .completed(session.resumed(), session.version(), session.cipher());
            let mut session = Box::new(session);
            if tls.ktls {
                // kTLS: the socket encrypts and decrypts itself from here; the connection is
                // served like a plain one (splice, and the owning shard writing to it directly).
                match session.into_kernel(&io.stream) {
                    Ok(()) => {
                        ctx.metrics.tls.ktls.inc();
                        return true;
                    }
                    Err(crate::tls::KernelHandover::Kept(s)) if s.has_records() => {
                        io.tls = Some(s);
                        return true;
                    }
                    Err(crate::tls::KernelHandover::Kept(s)) => session = s,
                    Err(crate::tls::KernelHandover::Broken(e)) => {
                        tracing::warn!(error = %e, "kTLS hand-over failed; connection closed");
                        ctx.metrics.tls.ktls_failed.inc();
                        return false;
                    }
                }
            }
            // User space: this crate's record layer (no allocation per record).
            match session.into_records() {
                Ok(s) | Err(crate::tls::KernelHandover::Kept(s)) => {
                    io.tls = Some(s);
                    true
                }
                Err(crate::tls::KernelHandover::Broken(e)) => {
                    tracing::warn!(error = %e, "TLS record layer hand-over failed; connection closed");
                    ctx.metrics
                        .tls
                        .failed(crate::tls::HandshakeFailure::Protocol);
                    false
                }
            }
        }
        Err(f) => {
            ctx.metrics.tls.failed(f);
            if f == HandshakeFailure::PlainHttp {
                let rid = ctx.next_request_id();
                let resp = http::error_response(
                    400,
                    &ctx.node.name,
                    "The plain HTTP request was sent to HTTPS port",
                    false,
                    &rid,
                    b"",
                );
                let _ = write_all(io, resp, Duration::from_secs(1)).await;
                ctx.metrics.bad_requests.inc();
                ctx.metrics.request(400, CacheResult::Local, 0);
                ctx.access_log(peer, None, 400, 0, CacheResult::Local, &rid);
            }
            false
        }
    }
}

/// The request loop of one connection (plain, or TLS after its handshake). True when it ended
/// with a response cut off.
async fn serve(
    ctx: &Rc<ShardCtx>,
    stream: &mut Transport,
    mut buf: Vec<u8>,
    peer: std::net::SocketAddr,
    limits: &crate::config::Limits,
) -> bool {
    let body_timeout = Duration::from_millis(limits.body_timeout_ms);
    let mut served = 0u64;
    let mut aborted = false;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream.stream);
    loop {
        if ctx.node.shutting_down() && buf.is_empty() {
            break;
        }
        let head = read_head(ctx, stream, &mut buf).await;
        let req = match head {
            ReadHead::Request(r) => r,
            ReadHead::Closed => break,
            ReadHead::Refused(status, reason) => {
                ctx.metrics.bad_requests.inc();
                let rid = ctx.next_request_id();
                let resp = http::error_response(status, &ctx.node.name, &reason, false, &rid, b"");
                let mut sink = SocketSink::new(stream, body_timeout);
                use crate::sink::Sink;
                let _ = Box::pin(sink.send(resp, Bytes::new())).await;
                ctx.metrics.request(status, CacheResult::Local, 0);
                ctx.access_log(peer, None, status, 0, CacheResult::Local, &rid);
                break;
            }
        };
        let rid = ctx.next_request_id();
        let started = Instant::now();
        // Expect: 100-continue (RFC 9110 §10.1.1): a client holding its body back is told to
        // send it (bounds are checked as it arrives); another expectation is 417.
        if let Some(expect) = req.header("expect") {
            if !expect.trim().eq_ignore_ascii_case("100-continue") {
                let resp = http::error_response(
                    417,
                    &ctx.node.name,
                    "only Expect: 100-continue is understood",
                    false,
                    &rid,
                    b"",
                );
                let _ = Box::pin(write_all(stream, resp, body_timeout)).await;
                ctx.metrics.request(417, CacheResult::Local, 0);
                break;
            }
            let held_back =
                req.minor_version >= 1 && req.body != BodyKind::None && buf.len() == req.head_len;
            if held_back
                && write_all(
                    stream,
                    b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                    body_timeout,
                )
                .await
                .is_err()
            {
                break;
            }
        }
        // Request bodies: read (bounded) for methods passed to the origin.
        let body = match req.body {
            BodyKind::None => Vec::new(),
            BodyKind::Chunked => {
                match Box::pin(read_chunked_body(
                    stream,
                    &mut buf,
                    req.head_len,
                    limits.request_body_bytes_max,
                    body_timeout,
                ))
                .await
                {
                    Ok(b) => b,
                    Err(ChunkedError::Io) => break,
                    Err(e) => {
                        let (status, reason) = match e {
                            ChunkedError::TooBig => (
                                413,
                                format!(
                                    "request body exceeds {} bytes",
                                    limits.request_body_bytes_max
                                ),
                            ),
                            _ => (400, "malformed chunked request body".to_string()),
                        };
                        let resp =
                            http::error_response(status, &ctx.node.name, &reason, false, &rid, b"");
                        let _ = Box::pin(write_all(stream, resp, body_timeout)).await;
                        ctx.metrics.request(status, CacheResult::Local, 0);
                        break;
                    }
                }
            }
            BodyKind::Length(n) => {
                if n > limits.request_body_bytes_max as u64 {
                    let resp = http::error_response(
                        413,
                        &ctx.node.name,
                        &format!(
                            "request body of {n} bytes exceeds {} bytes",
                            limits.request_body_bytes_max
                        ),
                        false,
                        &rid,
                        b"",
                    );
                    let _ = Box::pin(write_all(stream, resp, body_timeout)).await;
                    ctx.metrics.request(413, CacheResult::Local, 0);
                    break;
                }
                match Box::pin(read_body(
                    stream,
                    &mut buf,
                    req.head_len,
                    n as usize,
                    body_timeout,
                ))
                .await
                {
                    Ok(b) => b,
                    Err(_) => break,
                }
            }
        };
        if req.body == BodyKind::None {
            buf.drain(..req.head_len);
        }
        if buf.is_empty() && buf.capacity() > crate::ctx::IDLE_READ_BYTES {
            // Nothing pipelined, and the buffer grew for a long head: it goes while the
            // response is served (a slow viewer keeps at most the small one); the next read
            // takes a small one again.
            buf = Vec::new();
        }
        let keep_alive = req.keep_alive && !ctx.node.shutting_down();
        // A viewer counts from its request on; pulls by other nodes never count.
        let viewer = !ctx.is_pull(&req, peer.ip());
        if viewer {
            ctx.viewers.begin(fd, &ctx.metrics.viewers_active);
        }
        // Boxed: the answer's state lives on the heap while it runs, so the connection's own
        // task stays small while it waits for the next request (an idle connection's cost).
        let out = Box::pin(respond(
            ctx,
            &req,
            &rid,
            peer.ip(),
            served == 0,
            viewer,
            body,
            keep_alive,
            stream,
        ))
        .await;
        if viewer {
            ctx.viewers
                .end(fd, out.body_bytes > 0, arrow_cluster::monotonic_ms());
        }
        served += 1;
        ctx.metrics.request(out.status, out.result, out.body_bytes);
        ctx.access_log(
            peer,
            Some(&req),
            out.status,
            out.body_bytes,
            out.result,
            &rid,
        );
        tracing::trace!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "request done"
        );
        if !keep_alive || out.aborted {
            aborted = out.aborted;
            break;
        }
    }
    ctx.viewers.close(fd, &ctx.metrics.viewers_active);
    aborted
}

/// Designated nodes tried for one request before this node serves it from the origin.
const PEER_FAILOVERS_MAX: u32 = 3;

/// Read until a full head is in `buf`; enforce byte and time bounds.
async fn read_head(ctx: &ShardCtx, stream: &mut Transport, buf: &mut Vec<u8>) -> ReadHead {
    let limits = ctx.node.limits.load_full();
    let deadline = Instant::now() + Duration::from_millis(limits.header_timeout_ms);
    let mut first = buf.is_empty();
    loop {
        if !buf.is_empty() {
            match http::parse_request(buf, limits.headers_count_max) {
                Ok(Some(r)) => {
                    if r.head_len > limits.header_bytes_max {
                        return ReadHead::Refused(
                            431,
                            format!("request head exceeds {} bytes", limits.header_bytes_max),
                        );
                    }
                    return ReadHead::Request(r);
                }
                Ok(None) => {
                    if buf.len() > limits.header_bytes_max {
                        return ReadHead::Refused(
                            431,
                            format!("request head exceeds {} bytes", limits.header_bytes_max),
                        );
                    }
                }
                Err(refusal) => return ReadHead::Refused(refusal.status, refusal.reason),
            }
        }
        // Wait for bytes: the idle timeout before a request starts, the header timeout after.
        let wait = if first {
            Duration::from_millis(limits.idle_timeout_ms)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        // One read per wait (no separate readiness poll). A read cut by its timeout loses
        // its buffer, which is fine: the connection is closed then either way.
        let spare = std::mem::take(buf);
        let read = ctx.timed_read(stream, spare, wait, first).await;
        match read {
            None if first => return ReadHead::Closed,
            None => return ReadHead::Refused(408, "request head not received in time".into()),
            Some((res, b)) => {
                *buf = b;
                match res {
                    Ok(0) | Err(_) => return ReadHead::Closed,
                    Ok(_) => {}
                }
            }
        }
        first = false;
    }
}

async fn read_body(
    stream: &mut Transport,
    buf: &mut Vec<u8>,
    head_len: usize,
    n: usize,
    t: Duration,
) -> io::Result<Vec<u8>> {
    while buf.len() < head_len + n {
        let spare = std::mem::take(buf);
        let (res, b) = match monoio::time::timeout(t, stream.read_more(spare)).await {
            Ok(x) => x,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
        *buf = b;
        if res? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    let body = buf[head_len..head_len + n].to_vec();
    buf.drain(..head_len + n);
    Ok(body)
}

/// Why a chunked request body was not read.
#[derive(Debug, PartialEq, Eq)]
enum ChunkedError {
    /// Not chunked coding (bad size line, missing CRLF after a chunk, trailers too long).
    Malformed,
    /// More than the request body bound.
    TooBig,
    /// The connection closed or stalled.
    Io,
}

/// Bytes of a chunk-size line (with extensions) or of the trailer section before it is refused.
const CHUNK_LINE_BYTES_MAX: usize = 4096;

/// Read and decode a chunked request body (RFC 9112 §7.1) that starts at `head_len` in `buf`:
/// at most `max` body bytes, each read within `t`. Trailer fields are read and dropped. On
/// success the head and body are removed from `buf` (pipelined bytes stay).
async fn read_chunked_body(
    stream: &mut Transport,
    buf: &mut Vec<u8>,
    head_len: usize,
    max: usize,
    t: Duration,
) -> Result<Vec<u8>, ChunkedError> {
    let mut body = Vec::new();
    let mut pos = head_len;
    // Chunks.
    loop {
        match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((used, size))) => {
                let size = usize::try_from(size).map_err(|_| ChunkedError::TooBig)?;
                if body.len().saturating_add(size) > max {
                    return Err(ChunkedError::TooBig);
                }
                pos += used;
                if size == 0 {
                    break;
                }
                while buf.len() < pos + size + 2 {
                    fill_more(stream, buf, t).await?;
                }
                if &buf[pos + size..pos + size + 2] != b"\r\n" {
                    return Err(ChunkedError::Malformed);
                }
                body.extend_from_slice(&buf[pos..pos + size]);
                pos += size + 2;
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() - pos > CHUNK_LINE_BYTES_MAX {
                    return Err(ChunkedError::Malformed);
                }
                fill_more(stream, buf, t).await?;
            }
            Err(_) => return Err(ChunkedError::Malformed),
        }
    }
    // Trailer section: field lines up to an empty line.
    let trailer_start = pos;
    loop {
        match buf[pos..].windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                pos += 2;
                break;
            }
            Some(i) => pos += i + 2,
            None => {
                if buf.len() - trailer_start > CHUNK_LINE_BYTES_MAX {
                    return Err(ChunkedError::Malformed);
                }
                fill_more(stream, buf, t).await?;
            }
        }
    }
    buf.drain(..pos);
    Ok(body)
}

async fn fill_more(
    stream: &mut Transport,
    buf: &mut Vec<u8>,
    t: Duration,
) -> Result<(), ChunkedError> {
    let spare = std::mem::take(buf);
    let (res, b) = monoio::time::timeout(t, stream.read_more(spare))
        .await
        .map_err(|_| ChunkedError::Io)?;
    *buf = b;
    match res {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(ChunkedError::Io),
    }
}

async fn write_all(stream: &mut Transport, data: Vec<u8>, t: Duration) -> io::Result<()> {
    let mut sink = SocketSink::new(stream, t);
    use crate::sink::Sink;
    sink.send(data, Bytes::new()).await
}

fn local_response(
    ctx: &ShardCtx,
    status: u16,
    reason: &str,
    keep_alive: bool,
    rid: &str,
) -> (Vec<u8>, Outcome) {
    (
        http::error_response(status, &ctx.node.name, reason, keep_alive, rid, b""),
        Outcome {
            status,
            result: CacheResult::Local,
            body_bytes: 0,
            aborted: false,
        },
    )
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    ctx: &Rc<ShardCtx>,
    req: &Request,
    rid: &str,
    peer: std::net::IpAddr,
    first_on_connection: bool,
    viewer: bool,
    body: Vec<u8>,
    keep_alive: bool,
    stream: &mut Transport,
) -> Outcome {
    let limits = ctx.node.limits.load_full();
    let timeout = Duration::from_millis(limits.body_timeout_ms);
    let mut sink = SocketSink::new(stream, timeout);
    sink.pace = Some(crate::pace::Pace::new(&limits, Some(ctx.metrics.clone())));
    use crate::sink::Sink;
    let Some(host) = req.host().and_then(keys::normalize_host) else {
        let (r, o) = local_response(ctx, 400, "missing or invalid Host", keep_alive, rid);
        let aborted = sink.send(r, Bytes::new()).await.is_err();
        return Outcome { aborted, ..o };
    };
    // This request keeps the host rules it started with, whatever a reload does meanwhile.
    let rules = ctx.node.rules.load_full();
    let Some(rule_idx) = rules.iter().position(|r| r.matches(&host)) else {
        let (r, o) = local_response(
            ctx,
            404,
            &format!("no host rule serves {host}"),
            keep_alive,
            rid,
        );
        let aborted = sink.send(r, Bytes::new()).await.is_err();
        return Outcome { aborted, ..o };
    };
    let rule = &rules[rule_idx];
    let upstream = |purpose| {
        upstream_headers(
            req,
            peer,
            purpose,
            &rule.origin_headers_set,
            &rule.origin_headers_drop,
        )
    };
    let path = req.path_and_query();
    let debug = ctx.debug(req);
    let k = keys::derive(rule, &host, path, debug || ctx.node.cluster.is_some());
    let cacheable = matches!(req.method.as_str(), "GET" | "HEAD")
        && req.header("authorization").is_none()
        && body.is_empty();

    // A starting node first listens to the cluster (at most the warm-up), so it never acts as
    // the designated node of keys it is unsure of.
    if viewer && cacheable {
        if let Some(left) = ctx.node.cluster.as_ref().and_then(|l| l.warmup_left()) {
            ctx.metrics.warmup_waits.inc();
            monoio::time::sleep(left).await;
        }
    }
    let mut extra = String::new();
    let mut failovers = 0;
    let upstream_peer = loop {
        let admit = first_on_connection && viewer && failovers == 0;
        let route = ctx.route(&k, req, cacheable, admit, !viewer);
        extra.clear();
        if debug {
            route.debug_headers(&k, &ctx.node.name, path, &mut extra);
        }
        match route {
            Route::Overflow { location } => {
                let mut h = http::HeadWriter::new(302);
                h.header("Location", &location)
                    .header("Server", &*ctx.node.name)
                    .header("Cache-Control", "no-store")
                    .header("Content-Length", 0)
                    .header("Connection", connection_value(keep_alive))
                    .raw(extra.as_bytes());
                let aborted = sink.send(h.finish(), Bytes::new()).await.is_err();
                return Outcome {
                    status: 302,
                    result: CacheResult::Local,
                    body_bytes: 0,
                    aborted,
                };
            }
            Route::Peer { ref node, addr, .. } => {
                ctx.metrics.peer_pulls.inc();
                let headers = upstream(Purpose::Relay);
                if let Some(o) = crate::route::pull_from_peer(
                    ctx, req, &host, node, addr, &headers, keep_alive, &extra, &mut sink,
                )
                .await
                {
                    return o;
                }
                // The designated node is gone before the table knows: the next node in
                // placement order (or this node, from the origin) serves, within this request.
                ctx.mark_unreachable(node);
                ctx.metrics.peer_failovers.inc();
                failovers += 1;
                if failovers >= PEER_FAILOVERS_MAX {
                    break None;
                }
            }
            Route::Local { mirror_from, .. } => break mirror_from,
        }
    };

    if !cacheable {
        let headers = upstream(Purpose::Relay);
        return crate::route::pass_to_origin(
            ctx, rule, rule_idx, req, rid, &host, &headers, body, keep_alive, &extra, &mut sink,
        )
        .await;
    }
    let (disk, shard) = match ctx.node.owner(&k.cache_key) {
        Some((d, s)) => (Some(d), s),
        None => (None, ctx.shard),
    };
    let creq = CacheRequest {
        head_only: req.method == "HEAD",
        host,
        path_and_query: path.to_string(),
        cache_key: k.cache_key,
        rule: rule_idx,
        disk,
        range: req.header("range").map(str::to_string),
        if_none_match: req.header("if-none-match").map(str::to_string),
        if_modified_since: req.header("if-modified-since").map(str::to_string),
        keep_alive,
        extra_headers: extra,
        upstream_peer,
        forward_headers: upstream(Purpose::Fill),
        request_id: rid.to_string(),
        rules: rules.clone(),
        interim_ok: req.minor_version >= 1,
        vary_source: crate::vary::source_of(
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        ),
    };
    if shard == ctx.shard {
        return ctx.cache.serve(&creq, &mut sink).await;
    }
    // A small object another shard owns, copied here by an earlier hit ([`crate::cache::replica`]).
    if let Some(o) = ctx.cache.serve_replica(&creq, &mut sink).await {
        return o;
    }
    // Cross-shard: the owning shard writes the response to the viewer's socket itself (a
    // duplicate descriptor; this shard waits and writes nothing meanwhile), so a hit keeps its
    // zero-copy send and costs the same wherever its connection landed. If the descriptor cannot
    // be duplicated, the owning shard serves into a bounded channel and this shard relays.
    ctx.metrics.cross_shard.inc();
    // A replica that comes back is kept only if no purge or disk change happened meanwhile.
    let epoch = ctx
        .node
        .replica_epoch
        .load(std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = async_channel::bounded::<Reply>(8);
    // Over TLS the session lives here: the owning shard serves into the channel.
    let socket = if sink.io.is_tls() {
        None
    } else {
        dup_socket(&sink.io.stream)
    };
    let msg = match socket {
        Some(socket) => ShardMsg::ServeOnSocket {
            req: Box::new(creq.clone()),
            socket,
            reply: tx,
        },
        None => ShardMsg::Serve {
            req: Box::new(creq.clone()),
            reply: tx,
        },
    };
    if ctx.node.senders[shard].send(msg).await.is_err() {
        return ctx
            .cache
            .error(&creq, 503, "owning shard unavailable", &mut sink)
            .await;
    }
    let mut aborted = false;
    while let Ok(reply) = rx.recv().await {
        match reply {
            Reply::Data(head, body) => {
                if !aborted && sink.send(head, body).await.is_err() {
                    aborted = true;
                    rx.close(); // the owning shard sees the closed channel and stops
                }
            }
            Reply::Replica { meta, body } => ctx.cache.keep_replica(&creq, &meta, body, epoch),
            Reply::Done(mut o) => {
                o.aborted |= aborted;
                return o;
            }
        }
    }
    Outcome {
        status: 502,
        result: CacheResult::Local,
        body_bytes: 0,
        aborted: true,
    }
}

/// A close-on-exec duplicate of the viewer's socket, for the owning shard to write to.
fn dup_socket(stream: &TcpStream) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: fcntl on a descriptor the stream keeps open; the result is a new descriptor that
    // only the OwnedFd owns.
    let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "dup of a viewer socket failed");
        return None;
    }
    // SAFETY: fd is fresh and owned by nothing else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Bound the bytes the kernel queues for a viewer beyond what is in flight (TCP_NOTSENT_LOWAT):
/// a viewer that stops reading then holds at most about this much kernel memory (plus its
/// receive window) instead of a whole autotuned send buffer; 0 leaves the kernel's default.
fn limit_unsent(stream: &TcpStream, bytes: u64) {
    use std::os::fd::AsRawFd;
    if bytes == 0 {
        return;
    }
    let v = bytes.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: setsockopt on a socket the stream keeps open, with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set");
    }
}
