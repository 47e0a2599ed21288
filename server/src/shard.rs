//! Shards: one pinned monoio io_uring executor per configured core, with its own listeners,
//! disks (`Store`), origin pool and fills. The node-wide state (`Node`) is read-only on the
//! data path except for atomics; shards talk only through the bounded channels of `ShardMsg`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::CacheResult;
use arrow_storage::Store;
use bytes::Bytes;
use monoio::net::TcpListener;

use crate::cache::ShardCache;
use crate::ctx::{DiskEntry, Node, Reply, ShardCtx, ShardMsg, ShardStats};
use crate::origin::OriginClient;
use crate::sink::Sink;

/// A sink that relays a response to another shard through a bounded channel.
struct ChannelSink(async_channel::Sender<Reply>);

impl Sink for ChannelSink {
    async fn send(&mut self, head: Vec<u8>, body: Bytes) -> std::io::Result<()> {
        self.0
            .send(Reply::Data(head, body))
            .await
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

/// Everything a shard thread needs to start.
pub struct ShardStart {
    pub shard: usize,
    pub core: usize,
    pub node: Arc<Node>,
    /// Viewer listeners, each with whether it speaks TLS.
    pub listeners: Vec<(std::net::TcpListener, bool)>,
    pub admin: Option<std::net::TcpListener>,
    pub inbox: async_channel::Receiver<ShardMsg>,
    /// Reports this shard's disks (or the error) to the starter, then waits for the table.
    /// The shard's disks, and the ones refused at start (path, reason).
    #[allow(clippy::type_complexity)]
    pub ready: std::sync::mpsc::Sender<Result<(Vec<DiskEntry>, Vec<RefusedDisk>), String>>,
    pub go: std::sync::mpsc::Receiver<()>,
}

/// Run one shard to completion (until shutdown has drained it).
pub fn run(start: ShardStart) {
    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: start.core });
    if !pinned {
        tracing::warn!(
            shard = start.shard,
            core = start.core,
            "could not pin shard to its core"
        );
    }
    let mut rt = match build_runtime(true).or_else(|e| {
        // Kernels before 6.1 refuse DEFER_TASKRUN (EINVAL): a plain ring there.
        if e.raw_os_error() == Some(libc::EINVAL) {
            build_runtime(false)
        } else {
            Err(e)
        }
    }) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = start.ready.send(Err(format!(
                "shard {}: cannot create an io_uring runtime: {e} (is io_uring allowed? check RLIMIT_MEMLOCK and kernel.io_uring_disabled)",
                start.shard
            )));
            return;
        }
    };
    rt.block_on(shard_main(start));
}

/// The shard's monoio runtime. `deferred`: its ring is set up SINGLE_ISSUER + DEFER_TASKRUN,
/// so the kernel finishes socket operations (a recv whose data has arrived, a poll) only when
/// the shard asks for completions — when it has run every runnable task and parks — instead of
/// at the end of whatever syscall the shard is in (a `send`), where the recv raced the other
/// core's softirq for the socket lock: at 4 connections it was the largest entry of a shard's
/// profile (`perf record -g`: `__send → task_work_run → io_recv → lock_sock`); a 1 KiB
/// hit at 4 connections cost 16.3 µs of CPU instead of 12.7 (`SCENARIOS=hit1k CONNS=4
/// bench/shards.sh`, BENCHMARKS.md).
fn build_runtime(
    deferred: bool,
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut urb = io_uring_monoio::IoUring::builder();
    if deferred {
        urb.setup_single_issuer().setup_defer_taskrun();
    }
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(urb)
        .enable_timer()
        .build()
}

async fn shard_main(start: ShardStart) {
    let node = start.node.clone();
    let cfg = node.cfg.clone();
    let shard = start.shard;
    // Open this shard's disks.
    let specs: Vec<arrow_storage::DiskSpec> = cfg
        .disks
        .iter()
        .filter(|d| d.shard == shard)
        .map(|d| arrow_storage::DiskSpec {
            path: d.path.clone(),
            size_bytes: d.size_bytes,
            policy: d.policy.parse().expect("validated policy"),
            error_threshold: d.error_threshold,
        })
        .collect();
    let mut refused_disks = Vec::new();
    let store = if specs.is_empty() {
        None
    } else {
        match Store::open(arrow_storage::StoreConfig {
            disks: specs,
            ram_tier_bytes: cfg.storage.ram_tier_bytes,
            chunk_bytes: cfg.storage.chunk_bytes,
        })
        .await
        {
            Ok((store, refused)) => {
                for r in refused {
                    tracing::error!(shard, path = %r.path.display(), reason = %r.reason, "disk refused; the node keeps its other disks");
                    refused_disks.push(RefusedDisk {
                        path: r.path.display().to_string(),
                        shard,
                        reason: r.reason,
                    });
                }
                Some(Rc::new(store))
            }
            Err(e) => {
                let _ = start
                    .ready
                    .send(Err(format!("shard {shard}: storage: {e}")));
                return;
            }
        }
    };
    let entries = store.as_ref().map_or_else(Vec::new, |s| {
        s.stats()
            .disks
            .iter()
            .map(|d| DiskEntry {
                id: d.id,
                weight: d.size_bytes,
                shard,
                path: d.path.display().to_string(),
                online: AtomicBool::new(d.online),
            })
            .collect()
    });
    if start.ready.send(Ok((entries, refused_disks))).is_err() || start.go.recv().is_err() {
        return;
    }

    let metrics = node.metrics[shard].clone();
    let cache = ShardCache::new(
        store.clone(),
        OriginClient::new(node.limits.clone()),
        cfg.clone(),
        metrics.clone(),
        Rc::from(node.name.as_str()),
        node.replica_epoch.clone(),
        node.limits.clone(),
    );
    let ctx = Rc::new(ShardCtx {
        shard,
        node: node.clone(),
        cache,
        metrics,
        idle: RefCell::new(HashSet::new()),
        connections: std::cell::Cell::new(0),
        route_cache: RefCell::new(crate::cluster_link::RouteCache::default()),
        requests_seen: std::cell::Cell::new(0),
        admin_connections: std::cell::Cell::new(0),
        tls_handshakes: std::cell::Cell::new(0),
        viewers: crate::viewers::Viewers::new(
            node.cfg
                .cluster
                .as_ref()
                .map_or(10_000, |c| c.viewer_window_ms),
        ),
    });

    // The start-up disk probe: what this shard's disks read, before any traffic has measured
    // it (the disk's share of the brpu estimate; observed reads refine it later).
    if let (Some(store), Some(link)) = (store.clone(), node.cluster.as_ref()) {
        let local = link.local.clone();
        monoio::spawn(async move {
            let bps = store
                .probe_read_bps(8, 64, Duration::from_millis(300))
                .await;
            tracing::info!(shard, read_mbit_s = bps / 1_000_000, "disk read probe");
            local.add_disk_probe_bps(bps);
        });
    }

    // Inbox: cross-shard requests and admin calls.
    let inbox = start.inbox.clone();
    let c = ctx.clone();
    monoio::spawn(async move {
        while let Ok(msg) = inbox.recv().await {
            let c = c.clone();
            monoio::spawn(async move { handle_msg(&c, msg).await });
        }
    });

    let mut listener_fds = Vec::new();
    // The admin listener stays open through the drain: /health answers 503 "draining" to load
    // balancers instead of refusing connections.
    let mut admin_fd = None;
    for (l, tls) in start.listeners {
        let _ = l.set_nonblocking(true);
        match TcpListener::from_std(l) {
            Ok(listener) => {
                listener_fds.push(listener.as_raw_fd());
                let c = ctx.clone();
                let kind = if tls { Kind::Tls } else { Kind::Http };
                monoio::spawn(accept_loop(c, listener, kind));
            }
            Err(e) => tracing::error!(shard, error = %e, "listener"),
        }
    }
    if let Some(l) = start.admin {
        let _ = l.set_nonblocking(true);
        if let Ok(listener) = TcpListener::from_std(l) {
            admin_fd = Some(listener.as_raw_fd());
            monoio::spawn(accept_loop(ctx.clone(), listener, Kind::Admin));
        }
    }

    // Housekeeping: disk state sync, log flush; on shutdown close listeners and idle
    // connections, wait for in-flight work, flush the store.
    let mut fed = FedCounters::default();
    let mut ticks = 0u64;
    loop {
        monoio::time::sleep(Duration::from_millis(100)).await;
        ticks += 1;
        if ticks.is_multiple_of(10) {
            // Once a second: the allocator hands this thread's wholly free pages back to the
            // system (buffers of connections gone idle or closed), instead of keeping them
            // until the shard next allocates. Cheap when there is nothing to give back.
            // SAFETY: mi_collect takes no pointers; it only walks the allocator's own state.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
        feed_cluster_stats(&ctx, store.as_deref(), &mut fed);
        ctx.cache.publish_gauges();
        if let (Some(store), Some(disks)) = (&store, node.disks.get()) {
            for d in store.stats().disks {
                if let Some(e) = disks.iter().find(|e| e.id == d.id) {
                    // A disk going offline or online moves keys between owners: replicas of
                    // the old placement go.
                    if e.online.swap(d.online, Ordering::Relaxed) != d.online {
                        node.replica_epoch.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if node.shutting_down() {
            break;
        }
    }
    for fd in &listener_fds {
        // SAFETY: the fd is a listening socket this shard owns and keeps open until the
        // runtime ends; shutdown(2) only wakes its pending accept with an error.
        unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
    }
    let drain_until = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < drain_until {
        for fd in ctx.idle.borrow().iter() {
            // SAFETY: fds in `idle` belong to live connections of this shard (removed before
            // the connection task drops its stream); shutdown(2) makes their read see EOF.
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
        if ctx.connections.get() == ctx.admin_connections.get() && ctx.cache_idle() {
            break;
        }
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(fd) = admin_fd {
        // SAFETY: as for the HTTP listeners above.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    if let Some(store) = &store {
        if let Err(e) = store.flush().await {
            tracing::error!(shard, error = %e, "store flush at shutdown failed");
        }
    }
    tracing::info!(shard, "shard stopped");
}

/// What this shard last reported to the cluster's counters (they take deltas).
#[derive(Default)]
struct FedCounters {
    cpu_ns: u64,
    body_bytes: u64,
    ram_hits: u64,
    ram_misses: u64,
    disk_read_bytes: u64,
    disk_read_ops: u64,
    disk_busy_ns: u64,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Feed the brpu inputs: executor busy time (this thread's CPU time), egress bytes, users,
/// RAM-tier hit/miss share; shard 0 also reports the node's disks and weight.
fn feed_cluster_stats(ctx: &ShardCtx, store: Option<&Store>, fed: &mut FedCounters) {
    let viewers = ctx
        .viewers
        .sweep(arrow_cluster::monotonic_ms(), &ctx.metrics.viewers_active);
    let Some(link) = ctx.node.cluster.as_ref() else {
        return;
    };
    let slot = link.local.shard(ctx.shard);
    let cpu = thread_cpu_ns();
    slot.add_busy_ns(cpu.saturating_sub(fed.cpu_ns));
    fed.cpu_ns = cpu;
    let body = ctx.metrics.body_bytes.get();
    slot.add_bytes_sent(body - fed.body_bytes.min(body));
    fed.body_bytes = body;
    slot.set_users(viewers as u32);
    if let Some(store) = store {
        let s = store.stats();
        // Bytes are not split by tier in the stats: count objects as a proxy for the share.
        slot.add_ram_hit_bytes(s.ram_tier.hits.saturating_sub(fed.ram_hits));
        slot.add_ram_miss_bytes(s.ram_tier.misses.saturating_sub(fed.ram_misses));
        fed.ram_hits = s.ram_tier.hits;
        fed.ram_misses = s.ram_tier.misses;
        // Disk reads of this shard's disks: the observed read bandwidth per busy disk-second.
        let (bytes, ops, busy_ns) = s.disks.iter().fold((0, 0, 0), |(b, o, n), d| {
            (b + d.read_bytes, o + d.read_ops, n + d.read_busy_ns)
        });
        slot.add_disk_reads(
            bytes.saturating_sub(fed.disk_read_bytes),
            ops.saturating_sub(fed.disk_read_ops),
        );
        slot.add_disk_busy_ns(busy_ns.saturating_sub(fed.disk_busy_ns));
        fed.disk_read_bytes = bytes;
        fed.disk_read_ops = ops;
        fed.disk_busy_ns = busy_ns;
    }
    if ctx.shard == 0 {
        if let Some(disks) = ctx.node.disks.get() {
            let mut weight = 0;
            for (i, d) in disks.iter().enumerate() {
                let online = d.online.load(Ordering::Relaxed);
                if online {
                    weight += d.weight;
                }
                let state = if online {
                    arrow_cluster::DiskState::Online
                } else {
                    arrow_cluster::DiskState::Offline
                };
                link.local.set_disk(i, d.id.0.to_be_bytes(), state);
            }
            link.local.set_weight_bytes(weight);
        }
    }
}

/// What a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    /// HTTPS: a TLS handshake first.
    Tls,
    Admin,
}

async fn accept_loop(ctx: Rc<ShardCtx>, listener: TcpListener, kind: Kind) {
    let admin = kind == Kind::Admin;
    let tls = kind == Kind::Tls;
    // The bound is node-wide (connections land on the shard of the core that received them,
    // so a per-shard share would refuse clients early on a busy core); admin connections do
    // not count.
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if ctx.node.shutting_down() {
                    return;
                }
                tracing::warn!(error = %e, "accept");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Draining: no new viewer connections; the admin listener keeps answering (/health
        // says 503 "draining") until the drain ends and closes it.
        if ctx.node.shutting_down() && !admin {
            return;
        }
        ctx.metrics.connections_total.inc();
        if !admin
            && ctx.node.viewer_connections.load(Ordering::Relaxed)
                >= ctx.node.limits.load().connections_max
        {
            ctx.metrics.connections_refused.inc();
            if tls {
                continue; // closed: a plain answer means nothing to a TLS client
            }
            monoio::spawn(async move {
                let mut io = crate::netio::Transport::plain(stream);
                let resp =
                    crate::http::simple_response(503, "arrow", "too many connections", false);
                let mut sink = crate::sink::SocketSink::new(&mut io, Duration::from_secs(1));
                let _ = sink.send(resp, Bytes::new()).await;
            });
            continue;
        }
        if !admin {
            ctx.node.viewer_connections.fetch_add(1, Ordering::Relaxed);
            if let Some(target) = balance_target(&ctx.node, ctx.shard) {
                match hand_off(&ctx, target, stream, peer, tls) {
                    Ok(()) => continue,
                    Err(back) => {
                        serve_connection(&ctx, back, peer, kind);
                        continue;
                    }
                }
            }
        }
        serve_connection(&ctx, stream, peer, kind);
    }
}

/// The shard that should serve a new viewer connection accepted here, if not this one: another
/// shard with clearly fewer open connections. The kernel's steering puts a connection on the
/// shard of the core that received it, which piles every connection onto one shard when one
/// core receives them all (loopback, where the client's own core does; one NIC queue; one
/// client whose flows hash alike). Handing such a connection over once, at accept, costs one
/// message; its requests then run where it lives. With traffic spread by the NIC, the counts
/// stay within the slack and nothing moves.
pub(crate) fn balance_target(node: &crate::ctx::Node, me: usize) -> Option<usize> {
    if node.metrics.len() < 2 {
        return None;
    }
    let open = |i: usize| node.metrics[i].connections_open.get();
    let mine = open(me);
    let (least, fewest) = (0..node.metrics.len())
        .map(|i| (i, open(i)))
        .min_by_key(|&(_, n)| n)?;
    // Slack: two connections plus 1/16 of this shard's, so a spread that is merely uneven by
    // chance (hashing) does not move connections back and forth.
    (least != me && mine >= fewest + 2 + mine / 16).then_some(least)
}

/// Sends a just-accepted connection to shard `target` (which counts it as its own from now:
/// its open-connection count is raised here, before the message arrives, so a burst of
/// accepts does not all pick the same shard). Gives the stream back if the message cannot go.
fn hand_off(
    ctx: &Rc<ShardCtx>,
    target: usize,
    stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: bool,
) -> Result<(), monoio::net::TcpStream> {
    use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
    let Some(tx) = ctx.node.senders.get(target) else {
        return Err(stream);
    };
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of an open socket descriptor; exactly one owner
    // (this `OwnedFd`) closes it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.node.metrics[target].connections_open.inc();
    match tx.try_send(ShardMsg::Adopt { socket, peer, tls }) {
        Ok(()) => {
            ctx.metrics.connections_handed_off.inc();
            Ok(())
        }
        Err(e) => {
            ctx.node.metrics[target].connections_open.dec();
            let ShardMsg::Adopt { socket, .. } = e.into_inner() else {
                unreachable!("the message sent is an Adopt");
            };
            match monoio::net::TcpStream::from_std(std::net::TcpStream::from(socket)) {
                Ok(stream) => Err(stream),
                Err(e) => {
                    // The descriptor is closed with the failed conversion: count the
                    // connection out again.
                    tracing::warn!(error = %e, "connection hand-off failed");
                    ctx.node.viewer_connections.fetch_sub(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        }
    }
}

/// Runs one accepted connection on this shard until it ends. `connections_open` is raised here
/// unless the connection was handed over by another shard (which raised it already).
fn serve_connection(
    ctx: &Rc<ShardCtx>,
    stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    kind: Kind,
) {
    serve_counted(ctx, stream, peer, kind, true);
}

fn serve_counted(
    ctx: &Rc<ShardCtx>,
    stream: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    kind: Kind,
    count_open: bool,
) {
    ctx.connections.set(ctx.connections.get() + 1);
    if count_open {
        ctx.metrics.connections_open.inc();
    }
    let c = ctx.clone();
    let fut = async move {
        if kind == Kind::Admin {
            c.admin_connections.set(c.admin_connections.get() + 1);
            crate::admin::handle(c.clone(), stream).await;
            c.admin_connections.set(c.admin_connections.get() - 1);
        } else {
            crate::conn::handle(c.clone(), stream, peer, kind == Kind::Tls).await;
            c.node.viewer_connections.fetch_sub(1, Ordering::Relaxed);
        }
        c.connections.set(c.connections.get() - 1);
        c.metrics.connections_open.dec();
    };
    monoio::spawn(fut);
}

async fn handle_msg(ctx: &Rc<ShardCtx>, msg: ShardMsg) {
    match msg {
        ShardMsg::Serve { req, reply } => {
            let mut sink = ChannelSink(reply.clone());
            let out = ctx.cache.serve(&req, &mut sink).await;
            let _ = reply.send(Reply::Done(out)).await;
        }
        ShardMsg::ServeOnSocket { req, socket, reply } => {
            let out = match monoio::net::TcpStream::from_std(std::net::TcpStream::from(socket)) {
                Ok(stream) => {
                    let limits = ctx.node.limits.load_full();
                    let mut stream = crate::netio::Transport::plain(stream);
                    let mut sink = crate::sink::SocketSink::new(
                        &mut stream,
                        Duration::from_millis(limits.body_timeout_ms),
                    );
                    sink.pace = Some(crate::pace::Pace::new(&limits, Some(ctx.metrics.clone())));
                    let out = ctx.cache.serve(&req, &mut sink).await;
                    drop(sink);
                    drop(stream);
                    // A small object just hit for another shard: ship a copy, so that shard
                    // serves the key's next hits itself.
                    if out.result == CacheResult::Hit
                        && out.status == 200
                        && !out.aborted
                        && !req.head_only
                        && req.range.is_none()
                    {
                        if let Some((meta, body)) = ctx.cache.replica_source(&req).await {
                            let _ = reply.send(Reply::Replica { meta, body }).await;
                        }
                    }
                    out
                }
                Err(e) => {
                    // Not registered here: relay through the channel instead.
                    tracing::warn!(error = %e, "cross-shard socket hand-over failed; relaying");
                    let mut sink = ChannelSink(reply.clone());
                    ctx.cache.serve(&req, &mut sink).await
                }
            };
            let _ = reply.send(Reply::Done(out)).await;
        }
        ShardMsg::Adopt { socket, peer, tls } => {
            // Counted open by the accepting shard already.
            match monoio::net::TcpStream::from_std(std::net::TcpStream::from(socket)) {
                Ok(stream) => {
                    ctx.metrics.connections_adopted.inc();
                    let kind = if tls { Kind::Tls } else { Kind::Http };
                    serve_counted(ctx, stream, peer, kind, false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "adopting a handed-over connection failed");
                    ctx.metrics.connections_open.dec();
                    ctx.node.viewer_connections.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        ShardMsg::ReplaceDisk { disk, reply } => {
            let r = match &ctx.cache.store {
                Some(s) if s.stats().disks.iter().any(|d| d.id == disk) => {
                    s.replace_disk(disk).await.map_err(|e| e.to_string())
                }
                _ => Err(format!("disk {disk} is not on shard {}", ctx.shard)),
            };
            if let Some(e) = ctx
                .node
                .disks
                .get()
                .and_then(|d| d.iter().find(|e| e.id == disk))
            {
                // Replaced: online (empty, same identity); refused: offline. Either way its
                // keys' owner may have changed, and replicas of them go.
                e.online.store(r.is_ok(), Ordering::Relaxed);
                ctx.node.replica_epoch.fetch_add(1, Ordering::Relaxed);
            }
            match &r {
                Ok(()) => tracing::warn!(%disk, "disk replaced: online, empty"),
                Err(e) => {
                    tracing::error!(%disk, error = %e, "disk replacement refused; the disk stays offline")
                }
            }
            let _ = reply.send(r).await;
        }
        ShardMsg::Purge { key, prefix, reply } => {
            let r = purge_local(ctx, key.as_deref(), prefix.as_deref()).await;
            let _ = reply.send(r).await;
        }
        ShardMsg::Stats { reply } => {
            let _ = reply.send(shard_stats(ctx)).await;
        }
        ShardMsg::SetDisk {
            disk,
            online,
            reply,
        } => {
            let r = match &ctx.cache.store {
                Some(s) if s.stats().disks.iter().any(|d| d.id == disk) => {
                    s.set_online(disk, online).await.map_err(|e| e.to_string())
                }
                _ => Err(format!("disk {disk} is not on shard {}", ctx.shard)),
            };
            if r.is_ok() {
                if let Some(e) = ctx
                    .node
                    .disks
                    .get()
                    .and_then(|d| d.iter().find(|e| e.id == disk))
                {
                    if e.online.swap(online, Ordering::Relaxed) != online {
                        ctx.node.replica_epoch.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = reply.send(r).await;
        }
    }
}

async fn purge_local(
    ctx: &ShardCtx,
    key: Option<&str>,
    prefix: Option<&str>,
) -> Result<usize, String> {
    // Replicas first: this shard's copies of other shards' objects (not counted as purged
    // objects; their owners count those). The epoch moves too, so a copy of a purged object
    // still on its way from its owner (a hit served just before the purge) is not kept.
    ctx.node.replica_epoch.fetch_add(1, Ordering::Relaxed);
    // Fills of the keys still in flight: what they commit is removed when they end.
    ctx.cache.purge_fills(key, prefix);
    {
        let mut replicas = ctx.cache.replicas.borrow_mut();
        if let Some(k) = key {
            replicas.remove(k);
            // its variants, if the key is a Vary stub elsewhere
            replicas.remove_prefix(&format!("{k}#vary:"));
        }
        if let Some(p) = prefix {
            replicas.remove_prefix(p);
        }
    }
    let Some(store) = &ctx.cache.store else {
        return Ok(0);
    };
    let mut n = 0;
    if let Some(k) = key {
        // A Vary stub under the key: its variants go too.
        for d in store.stats().disks {
            let stub = store
                .lookup(d.id, k.as_bytes())
                .and_then(|i| crate::freshness::Meta::decode(&i.meta))
                .and_then(|m| m.vary);
            for h in stub.map(|s| s.variants).unwrap_or_default() {
                let variant = crate::vary::key_of(k, &h);
                if store
                    .remove(d.id, variant.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    n += 1;
                }
            }
        }
        for d in store.stats().disks {
            if store
                .remove(d.id, k.as_bytes())
                .await
                .map_err(|e| e.to_string())?
            {
                n += 1;
            }
        }
    }
    if let Some(p) = prefix {
        n += store
            .purge_prefix(p.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(n)
}

fn shard_stats(ctx: &ShardCtx) -> ShardStats {
    let Some(store) = &ctx.cache.store else {
        return ShardStats::default();
    };
    let s = store.stats();
    ShardStats {
        disks: s
            .disks
            .iter()
            .map(|d| crate::metrics::DiskLine {
                id: d.id.to_string(),
                path: d.path.display().to_string(),
                shard: ctx.shard,
                online: d.online,
                size_bytes: d.size_bytes,
                used_bytes: d.used_bytes,
                objects: d.objects,
                evictions: d.evictions,
                errors: d.errors,
                index_bytes_per_object: d.index_bytes_per_object,
                read_bytes: d.read_bytes,
                read_ops: d.read_ops,
                read_busy_ns: d.read_busy_ns,
                object_bytes: d.live_bytes,
                quarantined_bytes: d.quarantined_bytes,
                packs: d.packs,
                packed_objects: d.packed_objects,
            })
            .collect(),
        ram: Some(crate::metrics::RamLine {
            shard: ctx.shard,
            bytes: s.ram_tier.bytes,
            capacity: s.ram_tier.capacity_bytes,
            hits: s.ram_tier.hits,
            misses: s.ram_tier.misses,
            declined: s.ram_tier.declined,
        }),
    }
}

/// A configured disk the shard could not open: it stays visible in /disks and /metrics.
#[derive(Debug, Clone)]
pub struct RefusedDisk {
    pub path: String,
    pub shard: usize,
    pub reason: String,
}

/// Bind one SO_REUSEPORT socket per shard for `addr`, in shard order, and attach the
/// CPU-affine steering program so the kernel hands a connection to the shard of the core that
/// received it.
pub fn bind_reuseport(
    addr: SocketAddr,
    cores: &[usize],
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out: Vec<Socket> = Vec::with_capacity(cores.len());
    let mut bind_addr = addr;
    for _ in cores {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.bind(&bind_addr.into())?;
        s.listen(4096)?;
        if let Some(a) = s.local_addr()?.as_socket() {
            // After a bind to port 0, the other shards join the port the first one got.
            bind_addr = a;
        }
        out.push(s);
    }
    if cores.len() > 1 {
        if let Err(e) = crate::steer::attach_cpu_steering(&out[0], cores) {
            tracing::warn!(error = %e, "CPU-affine reuseport steering not attached; the kernel will hash connections over shards");
        }
    }
    Ok(out.into_iter().map(Into::into).collect())
}
