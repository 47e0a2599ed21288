//! A shard's context and the node-wide state the shards share: the disk map, the cross-shard
//! messages, the node (config, channels, counters, cluster link) and `ShardCtx`, the state of one
//! shard's thread that every request handler reads.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_storage::DiskId;
use bytes::Bytes;

use crate::cache::{CacheRequest, Outcome, ShardCache};
use crate::config::Config;
use crate::http::Request;
use crate::metrics::{CacheResult, ShardMetrics};

/// A disk as the whole node sees it: which shard owns it and whether it takes keys.
pub struct DiskEntry {
    pub id: DiskId,
    pub weight: u64,
    pub shard: usize,
    pub path: String,
    pub online: AtomicBool,
}

/// Messages between shards (the only cross-shard traffic on the data path).
pub enum ShardMsg {
    /// Serve a cacheable request whose disk this shard owns; replies stream back.
    Serve {
        req: Box<CacheRequest>,
        reply: async_channel::Sender<Reply>,
    },
    /// Serve a cacheable request whose disk this shard owns straight to the viewer's socket
    /// (`socket` is a duplicate of the accepting shard's descriptor, which waits and writes
    /// nothing meanwhile, so pipelined responses stay in order); replies carry only the outcome.
    ServeOnSocket {
        req: Box<CacheRequest>,
        socket: std::os::fd::OwnedFd,
        reply: async_channel::Sender<Reply>,
    },
    /// A viewer connection accepted by another shard, handed over to even out the shards'
    /// connection counts (the sender counted it open here already).
    Adopt {
        socket: std::os::fd::OwnedFd,
        peer: std::net::SocketAddr,
        /// Accepted on a TLS listener: the handshake is still to come.
        tls: bool,
    },
    /// Remove a key (from every disk of the shard) or every key under a prefix.
    Purge {
        key: Option<String>,
        prefix: Option<String>,
        reply: async_channel::Sender<Result<usize, String>>,
    },
    /// Storage statistics, rendered as text lines by the shard.
    Stats {
        reply: async_channel::Sender<ShardStats>,
    },
    SetDisk {
        disk: DiskId,
        online: bool,
        reply: async_channel::Sender<Result<(), String>>,
    },
    /// Open a disk's configured path again (a swapped device): see `Store::replace_disk`.
    ReplaceDisk {
        disk: DiskId,
        reply: async_channel::Sender<Result<(), String>>,
    },
}

pub enum Reply {
    Data(Vec<u8>, Bytes),
    /// A copy of the small object just served, for the accepting shard's replicas: its stored
    /// head (encoded [`crate::freshness::Meta`]) and whole body. Sent before `Done`.
    Replica {
        meta: Bytes,
        body: Bytes,
    },
    Done(Outcome),
}

#[derive(Default)]
pub struct ShardStats {
    pub disks: Vec<crate::metrics::DiskLine>,
    pub ram: Option<crate::metrics::RamLine>,
}

/// Node-wide state shared by every shard.
pub struct Node {
    pub cfg: Arc<Config>,
    pub name: String,
    pub disks: OnceLock<Vec<DiskEntry>>,
    pub senders: Vec<async_channel::Sender<ShardMsg>>,
    pub metrics: Vec<Arc<ShardMetrics>>,
    pub cluster: Option<crate::cluster_link::ClusterLink>,
    /// Open client (non-admin) connections on all shards: bounded by `limits.connections_max`.
    pub viewer_connections: std::sync::atomic::AtomicUsize,
    /// The access log (its writer thread), when configured.
    pub access_log: OnceLock<crate::access_log::AccessLog>,
    /// The host rules in force: `cfg.hosts` at start, swapped by a reload (SIGHUP).
    pub rules: arc_swap::ArcSwap<Vec<crate::config::HostRule>>,
    /// The limits in force: `cfg.limits` at start, swapped by a reload (SIGHUP). Read them
    /// here, never from `cfg` (only `cross_shard_queue_max` is fixed at start).
    pub limits: crate::config::LiveLimits,
    /// Configured disks refused at start (shown in /disks and /metrics).
    pub refused_disks: OnceLock<Vec<crate::shard::RefusedDisk>>,
    /// The DNS responder's counters, once it runs.
    pub dns_stats: OnceLock<Arc<arrow_dns::DnsStats>>,
    /// This run's start time (unix seconds): the first part of request ids.
    pub run_id: u64,
    /// Moves whenever a disk goes offline or online (keys change owners): every shard's
    /// replicas of an older epoch are dropped ([`crate::cache::replica`]).
    pub replica_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Viewer TLS in force (certificates, suites, handshake bounds): built at start, swapped by
    /// a reload; new handshakes take the current one.
    pub tls: arc_swap::ArcSwapOption<crate::tls::TlsServer>,
    /// Ticket keys: kept across reloads (sessions resume on every shard and after a certificate
    /// reload) unless the ticket key file's contents or the rotation change.
    tls_tickets: std::sync::Mutex<Option<Arc<crate::tls::TicketKeys>>>,
    /// The TLS 1.2 session-id cache: one for the node's life.
    tls_sessions: OnceLock<Arc<dyn rustls::server::StoresServerSessions>>,
    /// kTLS: whether connections are handed to the kernel after their handshake (`tls.ktls`
    /// "auto" and the start-up probe succeeded), or why not. Set once at start.
    pub ktls: OnceLock<Result<(), String>>,
    /// Reloads done (a generation count) and the last one's outcome, for `POST /reload`.
    pub reloads: std::sync::Mutex<(u64, Result<String, String>)>,
    pub(crate) shutdown: AtomicBool,
}

impl Node {
    pub fn new(
        cfg: Arc<Config>,
        name: String,
        senders: Vec<async_channel::Sender<ShardMsg>>,
        cluster: Option<crate::cluster_link::ClusterLink>,
    ) -> Node {
        let metrics = (0..cfg.node.cores.len())
            .map(|_| Arc::new(ShardMetrics::default()))
            .collect();
        Node {
            rules: arc_swap::ArcSwap::from_pointee(cfg.hosts.clone()),
            limits: Arc::new(arc_swap::ArcSwap::from_pointee(cfg.limits.clone())),
            cfg,
            name,
            disks: OnceLock::new(),
            senders,
            metrics,
            cluster,
            dns_stats: OnceLock::new(),
            refused_disks: OnceLock::new(),
            access_log: OnceLock::new(),
            viewer_connections: std::sync::atomic::AtomicUsize::new(0),
            run_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            shutdown: AtomicBool::new(false),
            tls: arc_swap::ArcSwapOption::empty(),
            reloads: std::sync::Mutex::new((0, Ok(String::new()))),
            ktls: OnceLock::new(),
            tls_tickets: std::sync::Mutex::new(None),
            tls_sessions: OnceLock::new(),
            replica_epoch: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Viewers on the node: connections answered now or that delivered body bytes within the
    /// viewer window ([`crate::viewers`]).
    pub fn users(&self) -> u32 {
        self.metrics
            .iter()
            .map(|m| m.viewers_active.get())
            .sum::<u64>() as u32
    }

    /// Build the viewer TLS of `cfg` (loading its certificates): `Ok(None)` without `[tls]`.
    /// Errors name the setting and the file.
    pub fn build_tls(&self, cfg: &Config) -> Result<Option<crate::tls::TlsServer>, String> {
        let Some(t) = &cfg.tls else {
            return Ok(None);
        };
        let secret = match &t.ticket_key_file {
            Some(f) => Some(
                crate::tls::TicketKeys::from_file(f, t.ticket_rotation_s)
                    .map_err(|e| format!("tls.ticket_key_file: {e}"))?,
            ),
            None => None,
        };
        let tickets = {
            let mut held = self.tls_tickets.lock().unwrap_or_else(|e| e.into_inner());
            let keep = held.as_ref().filter(|k| match &secret {
                Some(new) => new.same_source_as(k),
                None => k.same_source(None, t.ticket_rotation_s),
            });
            match keep {
                Some(k) => k.clone(),
                None => {
                    let k =
                        Arc::new(secret.unwrap_or_else(|| {
                            crate::tls::TicketKeys::random(t.ticket_rotation_s)
                        }));
                    *held = Some(k.clone());
                    k
                }
            }
        };
        let sessions = self
            .tls_sessions
            .get_or_init(|| rustls::server::ServerSessionMemoryCache::new(t.session_cache_entries))
            .clone();
        let default = match (&t.certificate, &t.key) {
            (Some(c), Some(k)) => Some(
                crate::tls::load_certified_key(c, k)
                    .map_err(|e| format!("tls.certificate: {e}"))?,
            ),
            _ => None,
        };
        let mut by_rule = Vec::new();
        for (i, h) in cfg.hosts.iter().enumerate() {
            if let Some((c, k)) = &h.tls_certificate {
                let ck = crate::tls::load_certified_key(c, k)
                    .map_err(|e| format!("host[{i}].tls_certificate: {e}"))?;
                by_rule.push((h.key.clone(), ck));
            }
        }
        let ktls = t.ktls == "auto" && self.ktls.get_or_init(crate::tls::ktls_probe).is_ok();
        let config = crate::tls::server_config(crate::tls::ServerSettings {
            resolver: crate::tls::CertResolver { by_rule, default },
            cipher_suites: t.cipher_suites.clone(),
            tls12: t.tls12,
            tickets,
            sessions,
        })
        .map_err(|e| format!("tls: {e}"))?;
        Ok(Some(crate::tls::TlsServer {
            config,
            ktls,
            handshake_timeout: Duration::from_millis(t.handshake_timeout_ms),
            handshakes_in_flight_max: t.handshakes_in_flight_max,
        }))
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    /// Key-to-disk hashing over the node's online disks: (disk, owning shard).
    pub fn owner(&self, cache_key: &str) -> Option<(DiskId, usize)> {
        let disks = self.disks.get()?;
        let id = arrow_storage::rendezvous_pick(
            cache_key.as_bytes(),
            disks
                .iter()
                .filter(|d| d.online.load(Ordering::Relaxed))
                .map(|d| (d.id, d.weight)),
        )?;
        disks.iter().find(|d| d.id == id).map(|d| (id, d.shard))
    }
}

/// How long a keep-alive connection waiting for its next request keeps a read buffer posted
/// before it waits without one ([`ShardCtx::idle_read`]).
pub const IDLE_BUFFER_LINGER: Duration = Duration::from_millis(200);

/// The read buffer a keep-alive connection posts for its next request.
pub const IDLE_READ_BYTES: usize = 2048;

/// A shard's own state, used only on its thread.
pub struct ShardCtx {
    pub shard: usize,
    pub node: Arc<Node>,
    pub cache: Rc<ShardCache>,
    pub metrics: Arc<ShardMetrics>,
    pub(crate) idle: RefCell<HashSet<RawFd>>,
    pub(crate) connections: std::cell::Cell<usize>,
    pub route_cache: RefCell<crate::cluster_link::RouteCache>,
    pub viewers: crate::viewers::Viewers,
    /// Requests this shard has read (the sequence in request ids).
    pub(crate) requests_seen: std::cell::Cell<u64>,
    /// Open admin connections (among `connections`): the drain does not wait for them.
    pub(crate) admin_connections: std::cell::Cell<usize>,
    /// TLS handshakes in progress on this shard (bounded by `tls.handshakes_in_flight_max`).
    pub(crate) tls_handshakes: std::cell::Cell<usize>,
}

impl ShardCtx {
    /// Read into `buf` for at most `wait`; `None` on timeout. While waiting between requests
    /// (`idle`) the connection is registered, so a shutdown can end the read at once.
    pub async fn timed_read(
        &self,
        io: &mut crate::netio::Transport,
        buf: Vec<u8>,
        wait: Duration,
        idle: bool,
    ) -> Option<(std::io::Result<usize>, Vec<u8>)> {
        let fd = io.stream.as_raw_fd();
        if idle {
            if self.node.shutting_down() {
                return None;
            }
            self.idle.borrow_mut().insert(fd);
        }
        let r = if idle && buf.is_empty() && !io.is_tls() {
            self.idle_read(io, buf, wait).await
        } else if idle && buf.is_empty() && io.tls.as_ref().is_some_and(|t| t.quiet()) {
            self.idle_read_tls(io, buf, wait).await
        } else {
            monoio::time::timeout(wait, io.read_more(buf)).await.ok()
        };
        if idle {
            self.idle.borrow_mut().remove(&fd);
        }
        r
    }

    /// [`ShardCtx::idle_read`] for a TLS connection with nothing buffered: it waits for
    /// readability (no read posted) for the linger, then gives back its session's input buffer
    /// and its request buffer and goes on waiting parked; the record is read once it is there.
    async fn idle_read_tls(
        &self,
        io: &mut crate::netio::Transport,
        mut buf: Vec<u8>,
        wait: Duration,
    ) -> Option<(std::io::Result<usize>, Vec<u8>)> {
        let started = std::time::Instant::now();
        let linger = wait.min(IDLE_BUFFER_LINGER);
        match monoio::time::timeout(linger, io.stream.readable(false)).await {
            Ok(Err(e)) => return Some((Err(e), buf)),
            Ok(Ok(())) => {}
            Err(_) => {
                buf = Vec::new();
                if let Some(t) = io.tls.as_mut() {
                    t.release_idle();
                }
                if let Err(e) = self.parked(io, wait - linger).await? {
                    return Some((Err(e), buf));
                }
            }
        }
        // A record is arriving: the rest of the wait bounds it.
        let left = wait.saturating_sub(started.elapsed());
        monoio::time::timeout(left, io.read_more(buf)).await.ok()
    }

    /// The wait of a plain keep-alive connection for its next request: the read is posted with
    /// a buffer for [`IDLE_BUFFER_LINGER`]; if nothing came by then the read is cancelled
    /// (what it read before the cancel took effect is kept, nothing is lost) and the connection
    /// waits for readability without a buffer ("parked"), taking a fresh one once bytes are
    /// there. An idle connection then holds no user-space read buffer, as nginx's keep-alive
    /// connections hold none.
    async fn idle_read(
        &self,
        io: &mut crate::netio::Transport,
        mut buf: Vec<u8>,
        wait: Duration,
    ) -> Option<(std::io::Result<usize>, Vec<u8>)> {
        use monoio::io::CancelableAsyncReadRent;
        let linger = wait.min(IDLE_BUFFER_LINGER);
        // A request head usually fits; a longer one grows the buffer on the next read.
        buf.reserve(IDLE_READ_BYTES);
        let canceller = io
            .idle_canceller
            .get_or_insert_with(monoio::io::Canceller::new);
        let handle = canceller.handle();
        let (res, buf) = {
            let read = io.stream.cancelable_read(buf, handle);
            let mut read = std::pin::pin!(read);
            monoio::select! {
                r = &mut read => return Some(r),
                _ = monoio::time::sleep(linger) => {}
            }
            // A cancelled Canceller stays cancelled: the connection takes a fresh one.
            if let Some(c) = io.idle_canceller.take() {
                io.idle_canceller = Some(c.cancel());
            }
            read.await
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
            r => return Some((r, buf)),
        }
        drop(buf);
        match self.parked(io, wait - linger).await? {
            Err(e) => Some((Err(e), Vec::new())),
            // Bytes (or the end of the stream) are there: this read returns at once.
            Ok(()) => Some(io.read_more(Vec::new()).await),
        }
    }

    /// Wait for `io` to be readable for at most `wait`, holding no buffer, counted in
    /// `arrow_connections_parked` meanwhile. None: the wait passed.
    async fn parked(
        &self,
        io: &crate::netio::Transport,
        wait: Duration,
    ) -> Option<std::io::Result<()>> {
        struct Counted<'a>(&'a crate::metrics::Counter);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.metrics.connections_parked.inc();
        let _counted = Counted(&self.metrics.connections_parked);
        monoio::time::timeout(wait, io.stream.readable(false))
            .await
            .ok()
    }

    pub fn debug(&self, req: &Request) -> bool {
        self.node.cfg.node.debug_headers
            || req
                .header("x-arrow-debug")
                .is_some_and(|_| self.node.cfg.node.debug_headers)
    }

    /// A new request's id: unique per node run (start time, shard, sequence), short enough to
    /// read aloud from a viewer's error report and find in the access log.
    pub fn next_request_id(&self) -> String {
        let seq = self.requests_seen.get() + 1;
        self.requests_seen.set(seq);
        format!("{:x}-{}-{seq:x}", self.node.run_id, self.shard)
    }

    /// Log one request (`req`: `None` for a request head that could not be parsed).
    #[allow(clippy::too_many_arguments)]
    pub fn access_log(
        &self,
        peer: SocketAddr,
        req: Option<&crate::http::Request>,
        status: u16,
        bytes: u64,
        result: CacheResult,
        request_id: &str,
    ) {
        if let Some(log) = self.node.access_log.get() {
            log.log(&crate::access_log::Entry {
                peer: peer.ip().to_canonical(),
                method: req.map_or("-", |r| r.method.as_str()),
                target: req.map_or("-", |r| r.target.as_str()),
                protocol: match req.map(|r| r.minor_version) {
                    Some(0) => "HTTP/1.0",
                    Some(_) => "HTTP/1.1",
                    None => "-",
                },
                status,
                bytes,
                referer: req.and_then(|r| r.header("referer")),
                user_agent: req.and_then(|r| r.header("user-agent")),
                cache: result.as_str(),
                request_id,
            });
        }
    }
}

impl ShardCtx {
    pub(crate) fn cache_idle(&self) -> bool {
        self.cache.fills_in_flight() == 0
    }
}
