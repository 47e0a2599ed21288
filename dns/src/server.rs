//! The responder's thread: sockets bound by the caller, one monoio io_uring runtime, pinned.
//!
//! spawn(cfg) → validate config and zones → bind UDP + TCP per listen address (errors returned
//! here) → std thread (pinned to `core`) → IoUringDriver runtime → per UDP socket: recv_from →
//! handle → send_to; per TCP listener: accept → admit → per connection: wait for the first
//! byte of a query (`tcp_idle_ms`) → the rest of len16 + message within `tcp_message_ms` →
//! handle → write len16 + response within `tcp_message_ms`.
//! `DnsHandle::shutdown` wakes the runtime from any thread, cancels every pending accept/recv
//! and joins the thread.
//!
//! TCP limits (one client must not be able to take DNS over TCP from everyone else):
//! - at most `tcp_connections_per_source_max` open connections per source address; further
//!   ones from it are closed at accept;
//! - at most `tcp_connections_max` open in all; when full, a new connection evicts the one idle
//!   the longest (waiting for the first byte of its next query; one reading a query or writing
//!   an answer is never evicted); with none idle, the new one is closed at accept;
//! - a query must arrive whole within `tcp_message_ms` of its first byte, so a client that
//!   dribbles bytes is closed; between queries a connection may stay idle `tcp_idle_ms`.
//!
//! The table of open connections (`TcpTable`) holds at most `tcp_connections_max` entries in
//! each of its maps. Counters are kept in [`DnsStats`]; whatever a peer causes is logged at most
//! once per second per kind, with the number of lines held back.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{
    AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent, CancelableAsyncReadRentExt, Canceller,
};
use monoio::net::udp::UdpSocket;
use monoio::net::{TcpListener, TcpStream};

use crate::config::DnsConfig;
use crate::error::DnsError;
use crate::handler::{handle, handle_cacheable, Transport, HEADER_BYTES};
use crate::log_limit::LogLimit;
use crate::stats::DnsStats;
use crate::zone::Zones;
use crate::Directory;

/// Largest DNS message over TCP (the 2-byte length prefix).
pub const TCP_MESSAGE_MAX_BYTES: usize = u16::MAX as usize;
/// Receive buffer of a UDP socket: any datagram fits, so none is silently cut.
const UDP_RECV_BYTES: usize = u16::MAX as usize;
/// First capacity of a UDP task's send buffer (grows to the largest answer it sent).
const UDP_SEND_BYTES_INITIAL: usize = 4096;
/// Receives kept in flight per UDP socket: while one task waits for its send to complete, the
/// others' receives are already queued in the ring, so one io_uring_enter serves many queries.
const UDP_RECEIVERS_PER_SOCKET: usize = 8;
/// Tries to find a port free for both UDP and TCP when the configured port is 0.
const EPHEMERAL_BIND_ATTEMPTS: usize = 16;
/// Pause after a failed accept (EMFILE, ENOBUFS) so the loop does not spin.
const ACCEPT_BACKOFF_MS: u64 = 10;
/// At most one log line per this long for each kind of peer-caused event.
const PEER_LOG_INTERVAL_MS: u64 = 1000;
/// RCODE FORMERR, in the low bits of the header's fourth byte.
const RCODE_FORMERR: u8 = 1;
const RCODE_BITS: u8 = 0x0f;
/// TC, in the header's third byte.
const TC_BIT: u8 = 0b0000_0010;

/// Malformed queries (answered FORMERR).
static MALFORMED_LOG: LogLimit = LogLimit::new(PEER_LOG_INTERVAL_MS);
/// TCP connections refused, evicted or timed out.
static TCP_LIMIT_LOG: LogLimit = LogLimit::new(PEER_LOG_INTERVAL_MS);

/// A running responder. Dropping it shuts the responder down, like [`DnsHandle::shutdown`].
pub struct DnsHandle {
    local_addrs: Vec<SocketAddr>,
    stats: Arc<DnsStats>,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl DnsHandle {
    /// The bound addresses, one per configured `listen` entry (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The responder's counters (refused, evicted and timed-out TCP connections, truncated UDP
    /// answers, FORMERR answers); live, readable from any thread.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }

    /// Stops accepting and receiving, and waits for the responder's thread to exit.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.trigger();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("dns responder thread panicked");
            }
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts the responder on its own thread. Config, bind, runtime and pinning errors are
/// returned here, before any query is served.
pub fn spawn(cfg: DnsConfig, dir: Arc<dyn Directory>) -> Result<DnsHandle, DnsError> {
    cfg.validate()?;
    let zones = Zones::new(&cfg.zones)?;
    let mut udp = Vec::with_capacity(cfg.listen.len());
    let mut tcp = Vec::with_capacity(cfg.listen.len());
    let mut local_addrs = Vec::with_capacity(cfg.listen.len());
    for addr in &cfg.listen {
        let (u, t, local) = bind_pair(*addr)?;
        udp.push(u);
        tcp.push(t);
        local_addrs.push(local);
    }
    let limits = TcpLimits {
        connections_max: cfg.tcp_connections_max,
        per_source_max: cfg.tcp_connections_per_source_max,
        idle: Duration::from_millis(cfg.tcp_idle_ms),
        message: Duration::from_millis(cfg.tcp_message_ms),
    };
    let stats = Arc::new(DnsStats::default());
    let thread_stats = stats.clone();
    let stop = Arc::new(StopSignal::default());
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), DnsError>>(1);
    let thread_stop = stop.clone();
    let core = cfg.core;
    let thread = std::thread::Builder::new()
        .name("arrow-dns".to_string())
        .spawn(move || {
            let serving = Serving {
                zones: Rc::new(zones),
                dir,
                limits,
                stats: thread_stats,
            };
            run(core, serving, udp, tcp, thread_stop, ready_tx)
        })
        .map_err(|e| DnsError::Thread {
            reason: e.to_string(),
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(DnsHandle {
            local_addrs,
            stats,
            stop,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(DnsError::Thread {
                reason: "responder thread exited before it was ready".to_string(),
            })
        }
    }
}

/// Binds UDP then TCP on the same address; with port 0, retries until a port is free for both.
fn bind_pair(
    addr: SocketAddr,
) -> Result<(std::net::UdpSocket, std::net::TcpListener, SocketAddr), DnsError> {
    let attempts = if addr.port() == 0 {
        EPHEMERAL_BIND_ATTEMPTS
    } else {
        1
    };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(addr).map_err(|source| DnsError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        let local = udp.local_addr().map_err(|source| DnsError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        match std::net::TcpListener::bind(local) {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(source) => last_err = Some(source),
        }
    }
    Err(DnsError::Bind {
        proto: "tcp",
        addr,
        source: last_err.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    })
}

#[derive(Debug, Clone, Copy)]
struct TcpLimits {
    connections_max: usize,
    per_source_max: usize,
    idle: Duration,
    message: Duration,
}

/// What every task of the responder answers with and counts into.
#[derive(Clone)]
struct Serving {
    zones: Rc<Zones>,
    dir: Arc<dyn Directory>,
    limits: TcpLimits,
    stats: Arc<DnsStats>,
}

fn run(
    core: Option<usize>,
    serving: Serving,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    stop: Arc<StopSignal>,
    ready: mpsc::SyncSender<Result<(), DnsError>>,
) {
    if let Some(core) = core {
        let pinned = core_affinity::get_core_ids()
            .and_then(|ids| ids.into_iter().find(|id| id.id == core))
            .is_some_and(core_affinity::set_for_current);
        if !pinned {
            let _ = ready.send(Err(DnsError::Affinity { core }));
            return;
        }
    }
    let mut runtime = match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(runtime) => runtime,
        Err(source) => {
            let _ = ready.send(Err(DnsError::Runtime { source }));
            return;
        }
    };
    runtime.block_on(serve(serving, udp, tcp, stop, ready));
}

async fn serve(
    serving: Serving,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    stop: Arc<StopSignal>,
    ready: mpsc::SyncSender<Result<(), DnsError>>,
) {
    let mut udp_sockets = Vec::with_capacity(udp.len());
    let mut listeners = Vec::with_capacity(tcp.len());
    for socket in udp {
        let addr = socket.local_addr();
        match UdpSocket::from_std(socket) {
            Ok(s) => udp_sockets.push(s),
            Err(source) => {
                let addr = addr.unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let _ = ready.send(Err(DnsError::Bind {
                    proto: "udp",
                    addr,
                    source,
                }));
                return;
            }
        }
    }
    for listener in tcp {
        let addr = listener.local_addr();
        match TcpListener::from_std(listener) {
            Ok(l) => listeners.push(l),
            Err(source) => {
                let addr = addr.unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let _ = ready.send(Err(DnsError::Bind {
                    proto: "tcp",
                    addr,
                    source,
                }));
                return;
            }
        }
    }
    let canceller = Canceller::new();
    let stopping = Rc::new(Cell::new(false));
    let mut tasks =
        Vec::with_capacity(udp_sockets.len() * UDP_RECEIVERS_PER_SOCKET + listeners.len());
    for socket in udp_sockets {
        let socket = Rc::new(socket);
        let cache = Rc::new(RefCell::new(AnswerCache::new()));
        for _ in 0..UDP_RECEIVERS_PER_SOCKET {
            tasks.push(monoio::spawn(udp_loop(
                socket.clone(),
                serving.clone(),
                cache.clone(),
                canceller.handle(),
                stopping.clone(),
            )));
        }
    }
    let table = Rc::new(RefCell::new(TcpTable::new(serving.limits)));
    for listener in listeners {
        tasks.push(monoio::spawn(accept_loop(
            listener,
            serving.clone(),
            table.clone(),
            canceller.handle(),
            stopping.clone(),
        )));
    }
    let _ = ready.send(Ok(()));
    StopWait { signal: &stop }.await;
    stopping.set(true);
    let _ = canceller.cancel();
    let open = table.borrow_mut().take_all();
    for conn in open {
        let _ = conn.cancel();
    }
    for task in tasks {
        task.await;
    }
}

/// Answers of recent UDP queries, keyed by the query bytes after the ID, shared by the receive
/// tasks of one socket. An answer is kept for `ANSWER_CACHE_MS` (the directory's own snapshot
/// lag), so a change of the cluster shows within that; names answered by headroom are never kept.
/// Bounded: cleared when full.
struct AnswerCache {
    map: HashMap<Box<[u8]>, (Instant, Vec<u8>), rustc_hash::FxBuildHasher>,
}

const ANSWER_CACHE_MS: u64 = 50;
const ANSWER_CACHE_ENTRIES_MAX: usize = 16 * 1024;

impl AnswerCache {
    fn new() -> AnswerCache {
        AnswerCache {
            map: HashMap::with_hasher(rustc_hash::FxBuildHasher),
        }
    }

    /// Copies the kept answer to `query` into `out` with the query's ID; false if there is none
    /// or it is older than `ANSWER_CACHE_MS`.
    fn answer_into(&self, query: &[u8], now: Instant, out: &mut Vec<u8>) -> bool {
        let Some((at, response)) = self.map.get(&query[2..]) else {
            return false;
        };
        if now.duration_since(*at) > Duration::from_millis(ANSWER_CACHE_MS) {
            return false;
        }
        out.clear();
        out.extend_from_slice(response);
        out[..2].copy_from_slice(&query[..2]);
        true
    }

    fn put(&mut self, query: &[u8], now: Instant, response: &[u8]) {
        if self.map.len() >= ANSWER_CACHE_ENTRIES_MAX {
            self.map.clear();
        }
        match self.map.get_mut(&query[2..]) {
            Some((at, kept)) => {
                *at = now;
                kept.clear();
                kept.extend_from_slice(response);
            }
            None => {
                self.map.insert(query[2..].into(), (now, response.to_vec()));
            }
        }
    }
}

async fn udp_loop(
    socket: Rc<UdpSocket>,
    serving: Serving,
    cache: Rc<RefCell<AnswerCache>>,
    cancel: CancelHandle,
    stopping: Rc<Cell<bool>>,
) {
    let mut buf = Vec::with_capacity(UDP_RECV_BYTES);
    // The send buffer travels to the kernel and back on every answer: no allocation per query
    // on the cached path.
    let mut out: Vec<u8> = Vec::with_capacity(UDP_SEND_BYTES_INITIAL);
    while !stopping.get() {
        let (result, returned) = socket.cancelable_recv_from(buf, cancel.clone()).await;
        buf = returned;
        match result {
            Ok((len_bytes, peer)) => {
                let query = &buf[..len_bytes.min(buf.len())];
                let now = Instant::now();
                let mut ready =
                    query.len() >= HEADER_BYTES && cache.borrow().answer_into(query, now, &mut out);
                if !ready {
                    if let Some((r, cacheable)) =
                        handle_cacheable(&serving.zones, &*serving.dir, query, Transport::UDP)
                    {
                        if cacheable && r.len() >= 2 {
                            cache.borrow_mut().put(query, now, &r);
                        }
                        out = r;
                        ready = true;
                    }
                }
                if ready {
                    count_answer(&serving.stats, &out, peer);
                    if out.get(2).is_some_and(|flags| flags & TC_BIT != 0) {
                        serving.stats.truncated();
                    }
                    let (sent, back) = socket.send_to(out, peer).await;
                    out = back;
                    if let Err(e) = sent {
                        tracing::debug!(%peer, error = %e, "dns udp send failed");
                    }
                }
            }
            // ICMP errors of earlier sends surface here (ECONNREFUSED); cancellation at stop.
            Err(e) => tracing::debug!(error = %e, "dns udp recv failed"),
        }
        buf.clear();
    }
}

/// Counts a FORMERR answer and logs it, at most once per second per process.
fn count_answer(stats: &DnsStats, response: &[u8], peer: SocketAddr) {
    if response
        .get(3)
        .is_some_and(|rcode| rcode & RCODE_BITS == RCODE_FORMERR)
    {
        stats.formerr();
        if let Some(suppressed) = MALFORMED_LOG.check_now() {
            tracing::info!(%peer, suppressed, "dns: malformed query answered FORMERR");
        }
    }
}

/// Logs a TCP connection refused, evicted or timed out, at most once per second per process.
fn log_tcp_limit(peer: IpAddr, what: &'static str) {
    if let Some(suppressed) = TCP_LIMIT_LOG.check_now() {
        tracing::debug!(%peer, suppressed, "dns tcp: {what}");
    }
}

async fn accept_loop(
    listener: TcpListener,
    serving: Serving,
    table: Rc<RefCell<TcpTable>>,
    cancel: CancelHandle,
    stopping: Rc<Cell<bool>>,
) {
    while !stopping.get() {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                let source = peer.ip().to_canonical();
                let admitted = table.borrow_mut().admit(source);
                match admitted {
                    Admit::Open {
                        id,
                        cancel,
                        evicted,
                    } => {
                        if let Some(evicted) = evicted {
                            // The evicted connection's pending read ends with ECANCELED.
                            let _ = evicted.cancel();
                            serving.stats.idle_evicted();
                            log_tcp_limit(source, "connection limit reached, idle one evicted");
                        }
                        monoio::spawn(connection(
                            stream,
                            peer,
                            serving.clone(),
                            ConnGuard {
                                table: table.clone(),
                                id,
                            },
                            cancel,
                        ));
                    }
                    Admit::SourceFull => {
                        serving.stats.refused_per_source();
                        log_tcp_limit(source, "per-source connection limit reached, closing");
                        drop(stream);
                    }
                    Admit::Full => {
                        serving.stats.refused_full();
                        log_tcp_limit(source, "connection limit reached and none idle, closing");
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                if stopping.get() {
                    break;
                }
                tracing::debug!(error = %e, "dns tcp accept failed");
                monoio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
            }
        }
    }
}

/// Why a connection's loop ended early.
enum Ended {
    /// EOF, an error, the idle timeout, eviction or shutdown: nothing to count.
    Quietly,
    /// A query did not arrive whole, or its answer was not written, within `tcp_message_ms`.
    MessageTimeout,
}

/// Serves length-prefixed queries on one connection until EOF, an error, the idle timeout, the
/// message deadline, eviction or shutdown. Queries are answered in order.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    serving: Serving,
    guard: ConnGuard,
    cancel: CancelHandle,
) {
    if let Ended::MessageTimeout =
        serve_connection(&mut stream, peer, &serving, &guard, &cancel).await
    {
        serving.stats.message_timeout();
        log_tcp_limit(
            peer.ip(),
            "query or answer not done within tcp_message_ms, closing",
        );
    }
}

async fn serve_connection(
    stream: &mut TcpStream,
    peer: SocketAddr,
    serving: &Serving,
    guard: &ConnGuard,
    cancel: &CancelHandle,
) -> Ended {
    let limits = serving.limits;
    loop {
        // Idle (evictable): wait for the first byte of the next query.
        let first = Vec::with_capacity(2);
        let prefix =
            match monoio::time::timeout(limits.idle, stream.cancelable_read(first, cancel.clone()))
                .await
            {
                Ok((Ok(n), prefix)) if n > 0 => prefix,
                _ => return Ended::Quietly,
            };
        // Busy: the rest of the query must arrive by the deadline.
        if !guard.set_busy() {
            return Ended::Quietly;
        }
        let deadline = Instant::now() + limits.message;
        let prefix = if prefix.len() < 2 {
            match read_exact(stream, 1, deadline, cancel).await {
                Read::Done(rest) => [prefix[0], rest[0]],
                Read::TimedOut => return Ended::MessageTimeout,
                Read::Failed => return Ended::Quietly,
            }
        } else {
            [prefix[0], prefix[1]]
        };
        let len_bytes = usize::from(u16::from_be_bytes(prefix));
        if len_bytes == 0 {
            return Ended::Quietly;
        }
        let query = match read_exact(stream, len_bytes, deadline, cancel).await {
            Read::Done(query) => query,
            Read::TimedOut => return Ended::MessageTimeout,
            Read::Failed => return Ended::Quietly,
        };
        if let Some(response) = handle(&serving.zones, &*serving.dir, &query, Transport::Tcp) {
            count_answer(&serving.stats, &response, peer);
            debug_assert!(response.len() <= TCP_MESSAGE_MAX_BYTES);
            let Ok(len_prefix) = u16::try_from(response.len()) else {
                return Ended::Quietly;
            };
            let mut framed = Vec::with_capacity(2 + response.len());
            framed.extend_from_slice(&len_prefix.to_be_bytes());
            framed.extend_from_slice(&response);
            match monoio::time::timeout(limits.message, stream.write_all(framed)).await {
                Ok((Ok(_), _)) => {}
                Ok((Err(_), _)) => return Ended::Quietly,
                Err(_) => return Ended::MessageTimeout,
            }
        }
        if !guard.set_idle() {
            return Ended::Quietly;
        }
    }
}

enum Read {
    Done(Vec<u8>),
    TimedOut,
    /// EOF, an error or cancellation (eviction, shutdown).
    Failed,
}

/// Reads exactly `len_bytes` by `deadline`.
async fn read_exact(
    stream: &mut TcpStream,
    len_bytes: usize,
    deadline: Instant,
    cancel: &CancelHandle,
) -> Read {
    let buf = Vec::with_capacity(len_bytes).slice_mut(0..len_bytes);
    let left = deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, stream.cancelable_read_exact(buf, cancel.clone())).await {
        Ok((Ok(_), buf)) => Read::Done(buf.into_inner()),
        Ok((Err(_), _)) => Read::Failed,
        Err(_) => Read::TimedOut,
    }
}

/// The open TCP connections of every listener, for the per-source limit and eviction. Each map
/// holds at most `tcp_connections_max` entries.
struct TcpTable {
    limits: TcpLimits,
    next_id: u64,
    next_idle_seq: u64,
    conns: HashMap<u64, OpenConn, rustc_hash::FxBuildHasher>,
    per_source: HashMap<IpAddr, usize, rustc_hash::FxBuildHasher>,
    /// Idle connections by when they became idle (a sequence number): the first is the one
    /// idle the longest.
    idle: BTreeMap<u64, u64>,
}

struct OpenConn {
    source: IpAddr,
    /// The key in `TcpTable::idle` while idle.
    idle_seq: Option<u64>,
    /// Cancels the connection's pending read (eviction, shutdown).
    canceller: Canceller,
}

/// The outcome of a new connection.
enum Admit {
    /// Served: its table id and the handle its reads are cancelled through; `evicted` is the
    /// canceller of the idle connection that made room for it, to be cancelled by the caller.
    Open {
        id: u64,
        cancel: CancelHandle,
        evicted: Option<Canceller>,
    },
    /// Its source has `tcp_connections_per_source_max` open.
    SourceFull,
    /// `tcp_connections_max` are open and none is idle.
    Full,
}

impl TcpTable {
    fn new(limits: TcpLimits) -> TcpTable {
        TcpTable {
            limits,
            next_id: 0,
            next_idle_seq: 0,
            conns: HashMap::with_hasher(rustc_hash::FxBuildHasher),
            per_source: HashMap::with_hasher(rustc_hash::FxBuildHasher),
            idle: BTreeMap::new(),
        }
    }

    /// Admits a connection from `source` (it starts idle), evicting the connection idle the
    /// longest if every slot is taken.
    fn admit(&mut self, source: IpAddr) -> Admit {
        if self.per_source.get(&source).copied().unwrap_or(0) >= self.limits.per_source_max {
            return Admit::SourceFull;
        }
        let mut evicted = None;
        if self.conns.len() >= self.limits.connections_max {
            let Some((_, oldest)) = self.idle.pop_first() else {
                return Admit::Full;
            };
            evicted = self.remove(oldest).map(|conn| conn.canceller);
        }
        let id = self.next_id;
        self.next_id += 1;
        let canceller = Canceller::new();
        let cancel = canceller.handle();
        let idle_seq = self.idle_seq();
        self.idle.insert(idle_seq, id);
        self.conns.insert(
            id,
            OpenConn {
                source,
                idle_seq: Some(idle_seq),
                canceller,
            },
        );
        *self.per_source.entry(source).or_insert(0) += 1;
        Admit::Open {
            id,
            cancel,
            evicted,
        }
    }

    fn idle_seq(&mut self) -> u64 {
        let seq = self.next_idle_seq;
        self.next_idle_seq += 1;
        seq
    }

    /// Marks `id` busy (not evictable); false if it is no longer open (evicted).
    fn set_busy(&mut self, id: u64) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if let Some(seq) = conn.idle_seq.take() {
            self.idle.remove(&seq);
        }
        true
    }

    /// Marks `id` idle (evictable, youngest); false if it is no longer open.
    fn set_idle(&mut self, id: u64) -> bool {
        let seq = self.idle_seq();
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if let Some(old) = conn.idle_seq.replace(seq) {
            self.idle.remove(&old);
        }
        self.idle.insert(seq, id);
        true
    }

    /// Forgets `id` (no-op if it was evicted already).
    fn remove(&mut self, id: u64) -> Option<OpenConn> {
        let conn = self.conns.remove(&id)?;
        if let Some(seq) = conn.idle_seq {
            self.idle.remove(&seq);
        }
        if let Some(count) = self.per_source.get_mut(&conn.source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&conn.source);
            }
        }
        Some(conn)
    }

    /// Forgets every connection, returning their cancellers (shutdown).
    fn take_all(&mut self) -> Vec<Canceller> {
        self.idle.clear();
        self.per_source.clear();
        self.conns.drain().map(|(_, conn)| conn.canceller).collect()
    }
}

/// A connection's entry in the [`TcpTable`], removed when the connection's task ends.
struct ConnGuard {
    table: Rc<RefCell<TcpTable>>,
    id: u64,
}

impl ConnGuard {
    fn set_busy(&self) -> bool {
        self.table.borrow_mut().set_busy(self.id)
    }
    fn set_idle(&self) -> bool {
        self.table.borrow_mut().set_idle(self.id)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.borrow_mut().remove(self.id);
    }
}

/// A stop request that can be raised from any thread and awaited on the responder's runtime
/// (monoio's `sync` feature delivers the cross-thread wake).
#[derive(Default)]
struct StopSignal {
    stopped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl StopSignal {
    fn trigger(&self) {
        self.stopped.store(true, Ordering::Release);
        let waker = match self.waker.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct StopWait<'a> {
    signal: &'a StopSignal,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut slot = match self.signal.waker.lock() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            *slot = Some(cx.waker().clone());
        }
        // Checked after the waker is stored, so a trigger in between is not lost.
        if self.signal.stopped.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
