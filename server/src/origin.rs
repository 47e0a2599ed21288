//! Origin pull: an HTTP/1.1 client with a per-shard keep-alive pool, timeouts, origins ordered
//! by measured response time, failover and bounded retries.
//!
//! fetch(rule, request) → order origins by EWMA latency → connect (pooled or new, bounded time)
//! → write request → read head (bounded bytes and time) → `OriginResponse` whose body is read
//! piece by piece (Content-Length, chunked, or until close); a fully read keep-alive
//! connection returns to the pool.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::config::{HostRule, Origin};
use crate::netio::Transport;

const ORIGIN_HEAD_BYTES_MAX: usize = 64 * 1024;
const ORIGIN_HEADERS_MAX: usize = 128;
const READ_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("origin {origin}: connect: {source}")]
    Connect { origin: String, source: io::Error },
    #[error("origin {origin}: timed out ({what})")]
    Timeout { origin: String, what: &'static str },
    #[error("origin {origin}: {what}: {source}")]
    Io {
        origin: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("origin {origin}: bad response: {reason}")]
    Protocol { origin: String, reason: String },
}

/// Which idle connections may carry a request: same address, and for TLS the same verification
/// (the client configuration, held so that its identity stays its own) and the same server name.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    tls: Option<(ConfigRef, rustls_pki_types::ServerName<'static>)>,
}

/// A client configuration compared and hashed by identity.
#[derive(Clone)]
struct ConfigRef(std::sync::Arc<rustls::ClientConfig>);

impl PartialEq for ConfigRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ConfigRef {}

impl std::hash::Hash for ConfigRef {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::sync::Arc::as_ptr(&self.0).hash(h)
    }
}

impl PoolKey {
    fn of(origin: &Origin) -> PoolKey {
        PoolKey {
            addr: origin.addr,
            tls: origin
                .tls
                .as_ref()
                .map(|t| (ConfigRef(t.config.clone()), t.name.clone())),
        }
    }
}

/// An idle pooled connection is not reused after this long (origins close theirs: nginx's
/// keepalive_timeout is 75 s) and is closed at the next sweep, so connections under keys no
/// longer used (a reload's old rules) do not stay open.
const ORIGIN_IDLE_MAX: Duration = Duration::from_secs(30);

/// Per-shard origin state: idle connections and measured latencies.
pub struct OriginClient {
    /// Idle connections by [`PoolKey`].
    idle: RefCell<HashMap<PoolKey, Vec<(Transport, Instant)>>>,
    /// EWMA of time to response head (µs); failures push it up.
    latency_us: RefCell<HashMap<SocketAddr, f64>>,
    limits: crate::config::LiveLimits,
}

/// A request to send upstream.
pub struct OriginRequest<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub host: &'a str,
    /// Extra header lines (already rendered `Name: value\r\n`).
    pub extra_headers: &'a str,
    pub body: &'a [u8],
}

/// Interim heads kept per response.
pub const INTERIM_HEADS_MAX: usize = 4;

pub struct OriginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Interim 102/103 heads the origin sent before this one, as received (at most
    /// [`INTERIM_HEADS_MAX`]), for the viewer that asked (RFC 9110 §15.2: a proxy forwards
    /// them). 100 Continue is not among them: the node sent the body without waiting.
    pub interim: Vec<bytes::Bytes>,
    pub body: BodyReader,
    pub origin: Origin,
    pub head_latency: Duration,
}

impl OriginResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Framing {
    Length(u64),
    Chunked(ChunkState),
    Close,
    Done,
}

#[derive(Clone, Copy)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// The body of an origin response, read in pieces.
pub struct BodyReader {
    conn: Option<Transport>,
    buf: Vec<u8>,
    framing: Framing,
    keep_alive: bool,
    pool: PoolKey,
    origin: String,
    client: Rc<OriginClient>,
    timeout: Duration,
    /// Known total length (Content-Length), if any.
    pub len: Option<u64>,
}

impl OriginClient {
    pub fn new(limits: crate::config::LiveLimits) -> Rc<OriginClient> {
        Rc::new(OriginClient {
            idle: RefCell::new(HashMap::new()),
            latency_us: RefCell::new(HashMap::new()),
            limits,
        })
    }

    /// Origins of `rule` ordered by measured latency (unmeasured first, in config order).
    pub fn ordered(&self, rule: &HostRule) -> Vec<Origin> {
        let lat = self.latency_us.borrow();
        let mut v: Vec<(f64, usize, Origin)> = rule
            .origins
            .iter()
            .enumerate()
            .map(|(i, o)| (lat.get(&o.addr).copied().unwrap_or(0.0), i, o.clone()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, _, o)| o).collect()
    }

    fn record(&self, addr: SocketAddr, sample_us: f64) {
        let mut lat = self.latency_us.borrow_mut();
        let e = lat.entry(addr).or_insert(sample_us);
        *e = 0.8 * *e + 0.2 * sample_us;
    }

    fn penalize(&self, addr: SocketAddr) {
        let penalty = self.limits.load().origin_response_timeout_ms as f64 * 1000.0 * 4.0;
        let mut lat = self.latency_us.borrow_mut();
        let e = lat.entry(addr).or_insert(penalty);
        *e = e.max(penalty);
    }

    fn put_idle(&self, key: PoolKey, conn: Transport) {
        let mut idle = self.idle.borrow_mut();
        // Sweep: connections idle too long are closed, and keys left empty dropped.
        idle.retain(|_, list| {
            list.retain(|(_, at)| at.elapsed() < ORIGIN_IDLE_MAX);
            !list.is_empty()
        });
        let list = idle.entry(key).or_default();
        if list.len() < self.limits.load().origin_idle_connections_max {
            list.push((conn, Instant::now()));
        }
    }

    /// A pooled connection for `key` idle for less than [`ORIGIN_IDLE_MAX`].
    fn take_idle(&self, key: &PoolKey) -> Option<Transport> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some((conn, at)) = list.pop() {
            if at.elapsed() < ORIGIN_IDLE_MAX {
                return Some(conn);
            }
        }
        None
    }

    /// Fetch with failover: origins in latency order, up to 1 + `origin_retries_max` attempts.
    /// A 5xx answer moves on to the next origin while one remains.
    pub async fn fetch(
        self: &Rc<Self>,
        rule: &HostRule,
        req: &OriginRequest<'_>,
    ) -> Result<OriginResponse, FetchError> {
        let origins = self.ordered(rule);
        let attempts = origins.len().min(1 + self.limits.load().origin_retries_max);
        let mut last_err = None;
        for (i, origin) in origins.into_iter().take(attempts).enumerate() {
            match self.fetch_one(&origin, req).await {
                Ok(resp) if resp.status >= 500 && i + 1 < attempts => {
                    self.penalize(origin.addr);
                    tracing::warn!(origin = %origin.url, status = resp.status, "origin error status, failing over");
                    last_err = Some(FetchError::Protocol {
                        origin: origin.url.clone(),
                        reason: format!("status {}", resp.status),
                    });
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    self.penalize(origin.addr);
                    tracing::warn!(error = %e, "origin fetch failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| FetchError::Protocol {
            origin: rule.key.hosts.join(","),
            reason: "no origin configured".into(),
        }))
    }

    /// A new connection (and, for https, its TLS handshake), within the connect timeout.
    async fn connect(&self, origin: &Origin) -> Result<Transport, FetchError> {
        let t = Duration::from_millis(self.limits.load().origin_connect_timeout_ms);
        let deadline = Instant::now() + t;
        match monoio::time::timeout(t, TcpStream::connect_addr(origin.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                let mut io = Transport::plain(s);
                if let Some(tls) = &origin.tls {
                    let mut session =
                        crate::tls::Session::client(tls.config.clone(), tls.name.clone()).map_err(
                            |source| FetchError::Connect {
                                origin: origin.url.clone(),
                                source,
                            },
                        )?;
                    let mut early = Vec::new();
                    session
                        .handshake(&mut io.stream, deadline, &mut early)
                        .await
                        .map_err(|f| FetchError::Protocol {
                            origin: origin.url.clone(),
                            reason: format!("TLS handshake failed ({})", f.as_str()),
                        })?;
                    io.tls = Some(Box::new(session));
                }
                Ok(io)
            }
            Ok(Err(source)) => Err(FetchError::Connect {
                origin: origin.url.clone(),
                source,
            }),
            Err(_) => Err(FetchError::Timeout {
                origin: origin.url.clone(),
                what: "connect",
            }),
        }
    }

    pub async fn fetch_one(
        self: &Rc<Self>,
        origin: &Origin,
        req: &OriginRequest<'_>,
    ) -> Result<OriginResponse, FetchError> {
        let mut head = Vec::with_capacity(256 + req.extra_headers.len());
        head.extend_from_slice(req.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(req.path_and_query.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(req.host.as_bytes());
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(req.extra_headers.as_bytes());
        if !req.body.is_empty() || !matches!(req.method, "GET" | "HEAD") {
            head.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(req.body);

        // A pooled connection may have been closed by the origin: one retry on a new one.
        let pooled = self.take_idle(&PoolKey::of(origin));
        if let Some(conn) = pooled {
            if let Ok(r) = self.exchange(conn, origin, head.clone(), req.method).await {
                return Ok(r);
            }
        }
        let conn = self.connect(origin).await?;
        self.exchange(conn, origin, head, req.method).await
    }

    async fn exchange(
        self: &Rc<Self>,
        mut conn: Transport,
        origin: &Origin,
        head: Vec<u8>,
        method: &str,
    ) -> Result<OriginResponse, FetchError> {
        let started = Instant::now();
        let io_err = |what: &'static str| {
            let o = origin.url.clone();
            move |source| FetchError::Io {
                origin: o,
                what,
                source,
            }
        };
        let timeout = Duration::from_millis(self.limits.load().origin_response_timeout_ms);
        conn.write_all(head, timeout)
            .await
            .map_err(io_err("write request"))?;
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES);
        // Read only when what is held does not parse yet: an interim 1xx and the final head often
        // arrive in one read, and the final head must not wait for bytes that will never come.
        let mut need_read = true;
        let mut interim = Vec::new();
        let (status, headers, head_len) = loop {
            if !need_read {
                need_read = true;
            } else {
                if buf.len() >= ORIGIN_HEAD_BYTES_MAX {
                    return Err(FetchError::Protocol {
                        origin: origin.url.clone(),
                        reason: "response head too large".into(),
                    });
                }
                let spare = std::mem::take(&mut buf);
                let (res, b) =
                    match monoio::time::timeout(timeout, read_more(&mut conn, spare)).await {
                        Ok(x) => x,
                        Err(_) => {
                            return Err(FetchError::Timeout {
                                origin: origin.url.clone(),
                                what: "response head",
                            })
                        }
                    };
                buf = b;
                let n = res.map_err(io_err("read response"))?;
                if n == 0 {
                    return Err(FetchError::Io {
                        origin: origin.url.clone(),
                        what: "read response",
                        source: io::ErrorKind::UnexpectedEof.into(),
                    });
                }
            }
            let mut hs = [httparse::EMPTY_HEADER; ORIGIN_HEADERS_MAX];
            let mut resp = httparse::Response::new(&mut hs);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    if status < 200 {
                        // 1xx interim: keep 102/103 for the viewer, drop 100; the final head
                        // may already be held.
                        if (status == 102 || status == 103) && interim.len() < INTERIM_HEADS_MAX {
                            interim.push(bytes::Bytes::copy_from_slice(&buf[..n]));
                        }
                        buf.drain(..n);
                        need_read = buf.is_empty();
                        continue;
                    }
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).trim().to_string(),
                            )
                        })
                        .collect();
                    break (status, headers, n);
                }
                Ok(httparse::Status::Partial) => continue,
                Err(e) => {
                    return Err(FetchError::Protocol {
                        origin: origin.url.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        };
        let head_latency = started.elapsed();
        self.record(origin.addr, head_latency.as_micros() as f64);
        buf.drain(..head_len);
        let find = |name: &str| {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        let close = find("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("close"));
        let chunked = find("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        let lengths = find("content-length");
        let len = match lengths.first() {
            Some(l) if !chunked => {
                Some(l.trim().parse::<u64>().map_err(|_| FetchError::Protocol {
                    origin: origin.url.clone(),
                    reason: format!("bad Content-Length {l:?}"),
                })?)
            }
            _ => None,
        };
        if lengths
            .iter()
            .any(|l| Some(l.trim()) != lengths.first().map(|f| f.trim()))
        {
            return Err(FetchError::Protocol {
                origin: origin.url.clone(),
                reason: "conflicting Content-Length".into(),
            });
        }
        let no_body = method == "HEAD" || status == 204 || status == 304;
        let framing = if no_body {
            Framing::Done
        } else if chunked {
            Framing::Chunked(ChunkState::Size)
        } else if let Some(l) = len {
            if l == 0 {
                Framing::Done
            } else {
                Framing::Length(l)
            }
        } else {
            Framing::Close
        };
        let keep_alive = !close && !matches!(framing, Framing::Close);
        let mut body = BodyReader {
            conn: Some(conn),
            buf,
            framing,
            keep_alive,
            pool: PoolKey::of(origin),
            origin: origin.url.clone(),
            client: self.clone(),
            timeout: Duration::from_millis(self.limits.load().body_timeout_ms),
            len: if no_body { Some(0) } else { len },
        };
        body.release_if_done();
        Ok(OriginResponse {
            status,
            headers,
            interim,
            body,
            origin: origin.clone(),
            head_latency,
        })
    }
}

async fn read_more(conn: &mut Transport, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    conn.read_more_by(buf, READ_BYTES).await
}

impl BodyReader {
    fn release_if_done(&mut self) {
        if matches!(self.framing, Framing::Done) {
            if let Some(conn) = self.conn.take() {
                if self.keep_alive && self.buf.is_empty() {
                    self.client.put_idle(self.pool.clone(), conn);
                }
            }
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    async fn fill(&mut self) -> Result<usize, FetchError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        let buf = std::mem::take(&mut self.buf);
        match monoio::time::timeout(self.timeout, read_more(conn, buf)).await {
            Ok((res, b)) => {
                self.buf = b;
                res.map_err(|source| FetchError::Io {
                    origin: self.origin.clone(),
                    what: "read body",
                    source,
                })
            }
            Err(_) => Err(FetchError::Timeout {
                origin: self.origin.clone(),
                what: "body",
            }),
        }
    }

    /// The next piece of the body; `Ok(None)` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(rem) => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        return Err(self.eof());
                    }
                    let take = (self.buf.len() as u64).min(rem) as usize;
                    let piece = Bytes::copy_from_slice(&self.buf[..take]);
                    self.buf.drain(..take);
                    let rem = rem - take as u64;
                    self.framing = if rem == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(rem)
                    };
                    self.release_if_done();
                    return Ok(Some(piece));
                }
                Framing::Close => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        self.framing = Framing::Done;
                        self.conn = None;
                        return Ok(None);
                    }
                    let piece = Bytes::from(std::mem::take(&mut self.buf));
                    return Ok(Some(piece));
                }
                Framing::Chunked(state) => match state {
                    ChunkState::Size => match httparse::parse_chunk_size(&self.buf) {
                        Ok(httparse::Status::Complete((n, size))) => {
                            self.buf.drain(..n);
                            self.framing = Framing::Chunked(if size == 0 {
                                ChunkState::Trailers
                            } else {
                                ChunkState::Data(size)
                            });
                        }
                        Ok(httparse::Status::Partial) => {
                            if self.buf.len() > 1024 {
                                return Err(self.protocol("chunk size line too long"));
                            }
                            if self.fill().await? == 0 {
                                return Err(self.eof());
                            }
                        }
                        Err(_) => return Err(self.protocol("bad chunk size")),
                    },
                    ChunkState::Data(rem) => {
                        if self.buf.is_empty() && self.fill().await? == 0 {
                            return Err(self.eof());
                        }
                        let take = (self.buf.len() as u64).min(rem) as usize;
                        let piece = Bytes::copy_from_slice(&self.buf[..take]);
                        self.buf.drain(..take);
                        let rem = rem - take as u64;
                        self.framing = Framing::Chunked(if rem == 0 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(rem)
                        });
                        return Ok(Some(piece));
                    }
                    ChunkState::DataEnd => {
                        if self.buf.len() < 2 {
                            if self.fill().await? == 0 {
                                return Err(self.eof());
                            }
                            continue;
                        }
                        if &self.buf[..2] != b"\r\n" {
                            return Err(self.protocol("missing CRLF after chunk"));
                        }
                        self.buf.drain(..2);
                        self.framing = Framing::Chunked(ChunkState::Size);
                    }
                    ChunkState::Trailers => {
                        // Skip trailer lines up to the empty line.
                        if let Some(pos) = find_crlf(&self.buf) {
                            let line_empty = pos == 0;
                            self.buf.drain(..pos + 2);
                            if line_empty {
                                self.framing = Framing::Done;
                                self.release_if_done();
                                return Ok(None);
                            }
                        } else {
                            if self.buf.len() > 8192 {
                                return Err(self.protocol("trailers too long"));
                            }
                            if self.fill().await? == 0 {
                                return Err(self.eof());
                            }
                        }
                    }
                },
            }
        }
    }

    fn eof(&mut self) -> FetchError {
        self.conn = None;
        FetchError::Io {
            origin: self.origin.clone(),
            what: "read body",
            source: io::ErrorKind::UnexpectedEof.into(),
        }
    }

    fn protocol(&mut self, reason: &str) -> FetchError {
        self.conn = None;
        FetchError::Protocol {
            origin: self.origin.clone(),
            reason: reason.into(),
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}
