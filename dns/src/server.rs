//! The responder's thread: sockets bound by the caller, one monoio io_uring runtime, pinned.
//!
//! spawn(cfg) → validate zones → bind UDP + TCP per listen address (errors returned here) →
//! std thread (pinned to `core`) → IoUringDriver runtime → per UDP socket: recv_from → handle →
//! send_to; per TCP listener: accept (≤ `tcp_connections_max` open) → per connection: read
//! len16 + message (idle timeout) → handle → write len16 + response.
//! `DnsHandle::shutdown` wakes the runtime from any thread, cancels every pending accept/recv
//! and joins the thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRentExt, Canceller};
use monoio::net::udp::UdpSocket;
use monoio::net::{TcpListener, TcpStream};

use crate::config::DnsConfig;
use crate::error::DnsError;
use crate::handler::{handle, handle_cacheable, Transport};
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

/// A running responder. Dropping it shuts the responder down, like [`DnsHandle::shutdown`].
pub struct DnsHandle {
    local_addrs: Vec<SocketAddr>,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl DnsHandle {
    /// The bound addresses, one per configured `listen` entry (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
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
    if cfg.listen.is_empty() {
        return Err(DnsError::Server {
            reason: "listen: at least one address is required".to_string(),
        });
    }
    if cfg.tcp_connections_max == 0 || cfg.tcp_idle_ms == 0 {
        return Err(DnsError::Server {
            reason: "tcp_connections_max and tcp_idle_ms must be positive".to_string(),
        });
    }
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
        idle: Duration::from_millis(cfg.tcp_idle_ms),
    };
    let stop = Arc::new(StopSignal::default());
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), DnsError>>(1);
    let thread_stop = stop.clone();
    let core = cfg.core;
    let thread = std::thread::Builder::new()
        .name("arrow-dns".to_string())
        .spawn(move || run(core, zones, dir, udp, tcp, limits, thread_stop, ready_tx))
        .map_err(|e| DnsError::Thread {
            reason: e.to_string(),
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(DnsHandle {
            local_addrs,
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
    idle: Duration,
}

#[allow(clippy::too_many_arguments)]
fn run(
    core: Option<usize>,
    zones: Zones,
    dir: Arc<dyn Directory>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    limits: TcpLimits,
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
    runtime.block_on(serve(Rc::new(zones), dir, udp, tcp, limits, stop, ready));
}

async fn serve(
    zones: Rc<Zones>,
    dir: Arc<dyn Directory>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    limits: TcpLimits,
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
                zones.clone(),
                dir.clone(),
                cache.clone(),
                canceller.handle(),
                stopping.clone(),
            )));
        }
    }
    let open = Rc::new(Cell::new(0usize));
    for listener in listeners {
        tasks.push(monoio::spawn(accept_loop(
            listener,
            zones.clone(),
            dir.clone(),
            limits,
            open.clone(),
            canceller.handle(),
            stopping.clone(),
        )));
    }
    let _ = ready.send(Ok(()));
    StopWait { signal: &stop }.await;
    stopping.set(true);
    let _ = canceller.cancel();
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
    zones: Rc<Zones>,
    dir: Arc<dyn Directory>,
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
                let mut ready = query.len() >= crate::HEADER_BYTES
                    && cache.borrow().answer_into(query, now, &mut out);
                if !ready {
                    if let Some((r, cacheable)) =
                        handle_cacheable(&zones, &*dir, query, Transport::UDP)
                    {
                        if cacheable && r.len() >= 2 {
                            cache.borrow_mut().put(query, now, &r);
                        }
                        out = r;
                        ready = true;
                    }
                }
                if ready {
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

async fn accept_loop(
    listener: TcpListener,
    zones: Rc<Zones>,
    dir: Arc<dyn Directory>,
    limits: TcpLimits,
    open: Rc<Cell<usize>>,
    cancel: CancelHandle,
    stopping: Rc<Cell<bool>>,
) {
    while !stopping.get() {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                if open.get() >= limits.connections_max {
                    tracing::debug!(%peer, "dns tcp connection limit reached, closing");
                    drop(stream);
                    continue;
                }
                let guard = OpenGuard::new(open.clone());
                monoio::spawn(connection(
                    stream,
                    zones.clone(),
                    dir.clone(),
                    limits.idle,
                    cancel.clone(),
                    guard,
                ));
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

/// Serves length-prefixed queries on one connection until EOF, an error, the idle timeout or
/// shutdown. Queries are answered in order.
async fn connection(
    mut stream: TcpStream,
    zones: Rc<Zones>,
    dir: Arc<dyn Directory>,
    idle: Duration,
    cancel: CancelHandle,
    _open: OpenGuard,
) {
    loop {
        let Some(prefix) = read_exact(&mut stream, 2, idle, &cancel).await else {
            return;
        };
        let len_bytes = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if len_bytes == 0 {
            return;
        }
        let Some(query) = read_exact(&mut stream, len_bytes, idle, &cancel).await else {
            return;
        };
        let Some(response) = handle(&zones, &*dir, &query, Transport::Tcp) else {
            continue;
        };
        debug_assert!(response.len() <= TCP_MESSAGE_MAX_BYTES);
        let Ok(len_prefix) = u16::try_from(response.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(2 + response.len());
        framed.extend_from_slice(&len_prefix.to_be_bytes());
        framed.extend_from_slice(&response);
        match monoio::time::timeout(idle, stream.write_all(framed)).await {
            Ok((Ok(_), _)) => {}
            _ => return,
        }
    }
}

/// Reads exactly `len_bytes`, or `None` on EOF, error, timeout or shutdown.
async fn read_exact(
    stream: &mut TcpStream,
    len_bytes: usize,
    idle: Duration,
    cancel: &CancelHandle,
) -> Option<Vec<u8>> {
    let buf = Vec::with_capacity(len_bytes).slice_mut(0..len_bytes);
    match monoio::time::timeout(idle, stream.cancelable_read_exact(buf, cancel.clone())).await {
        Ok((Ok(_), buf)) => Some(buf.into_inner()),
        _ => None,
    }
}

/// Counts an open TCP connection for as long as it lives.
struct OpenGuard {
    open: Rc<Cell<usize>>,
}

impl OpenGuard {
    fn new(open: Rc<Cell<usize>>) -> OpenGuard {
        open.set(open.get() + 1);
        OpenGuard { open }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
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
