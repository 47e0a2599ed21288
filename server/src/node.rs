//! Node start-up and shutdown: rlimits, listeners (one SO_REUSEPORT socket per shard), cluster
//! service, shard threads, the DNS responder; then wait for SIGTERM/SIGINT and drain.
//!
//! start → raise rlimits → block signals → bind listeners in shard order (+ steering program)
//! → cluster service (comets, table) → shard threads open their disks → node-wide disk table
//! → shards accept → [DNS core] → sigwait → stop accepting, finish in-flight, flush → exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::ctx::{DiskEntry, Node, ShardMsg};
use crate::shard::{self, ShardStart};

/// Raise RLIMIT_NOFILE to its hard limit and RLIMIT_MEMLOCK as far as allowed (io_uring on
/// kernels before 5.12 charges its rings to memlock).
pub fn raise_rlimits() {
    for (res, name) in [
        (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
    ] {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit the call fills in.
        if unsafe { libc::getrlimit(res, &mut lim) } != 0 {
            continue;
        }
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raising the soft limit up to the hard limit is always permitted.
        if unsafe { libc::setrlimit(res, &want) } != 0 {
            tracing::warn!(
                limit = name,
                "could not raise the soft limit to the hard limit"
            );
        }
    }
}

/// Signals that would end the process by default besides SIGTERM, SIGINT and SIGQUIT (and
/// SIGHUP and SIGUSR1, which the node uses): the node drains on them instead. (SIGPIPE is
/// ignored by the Rust runtime; SIGKILL and SIGSTOP cannot be caught.)
const DRAINING_SIGNALS: [libc::c_int; 9] = [
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set; pthread_sigmask affects
    // only this thread and the threads it spawns afterwards, which inherit the mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGQUIT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        // Every other signal whose default action ends the process drains like SIGTERM.
        for sig in DRAINING_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// SIGHUP: read the config file again; if it is valid and differs from the running one only in
/// what a reload applies (`[[host]]` rules, `[limits]`, the access log), swap those in
/// (requests in flight keep their rules); otherwise keep running as before and say which
/// setting needs a restart. `arrow check-config` runs the same validation.
fn reload(
    node: &Node,
    bound: &[SocketAddr],
    tls_bound: &[SocketAddr],
    admin_bound: Option<SocketAddr>,
) {
    let outcome = try_reload(node, bound, tls_bound, admin_bound);
    match &outcome {
        Ok(m) => tracing::info!("SIGHUP: {m}"),
        Err(e) => tracing::error!(reason = %e, "SIGHUP: reload refused, the running config stays"),
    }
    let mut r = node.reloads.lock().unwrap_or_else(|e| e.into_inner());
    *r = (r.0 + 1, outcome);
}

fn try_reload(
    node: &Node,
    bound: &[SocketAddr],
    tls_bound: &[SocketAddr],
    admin_bound: Option<SocketAddr>,
) -> Result<String, String> {
    let Some(path) = node.cfg.path.as_ref() else {
        return Err("the config was not loaded from a file; nothing to reload".into());
    };
    let mut next = Config::load(path).map_err(|e| e.to_string())?;
    // A listener configured with port 0 is the one that was bound: a file that now names the
    // port it got (as a supervisor may write) describes the same listener.
    for (i, l) in next.node.listen.iter_mut().enumerate() {
        if let (Some(run), Some(b)) = (node.cfg.node.listen.get(i), bound.get(i)) {
            if run.port() == 0 && l == b {
                *l = *run;
            }
        }
    }
    if let (Some(run), Some(next)) = (node.cfg.tls.as_ref(), next.tls.as_mut()) {
        for (i, l) in next.listen.iter_mut().enumerate() {
            if let (Some(r), Some(b)) = (run.listen.get(i), tls_bound.get(i)) {
                if r.port() == 0 && l == b {
                    *l = *r;
                }
            }
        }
    }
    if let (Some(run), Some(b), Some(l)) = (
        node.cfg.node.admin_listen,
        admin_bound,
        next.node.admin_listen.as_mut(),
    ) {
        if run.port() == 0 && *l == b {
            *l = run;
        }
    }
    if let Some(why) = node.cfg.reload_refusal(&next) {
        return Err(why);
    }
    // Certificates next: one that does not load refuses the whole reload (the old ones stay).
    let tls = node.build_tls(&next)?;
    // The access log first: a path that cannot be opened refuses the whole reload.
    if let Some(path) = &next.node.access_log {
        let format = crate::access_log::LogFormat::of(&next.node.access_log_format);
        match node.access_log.get() {
            Some(log) => log.reopen_at(path, format),
            None => match crate::access_log::AccessLog::open(path, format) {
                Ok(log) => {
                    let _ = node.access_log.set(log);
                }
                Err(e) => {
                    return Err(format!("node.access_log {path} cannot be opened: {e}"));
                }
            },
        }
    }
    let rules = next.hosts.len();
    node.rules.store(Arc::new(next.hosts));
    node.limits.store(Arc::new(next.limits));
    let tls_note = if tls.is_some() {
        " and TLS certificates"
    } else {
        ""
    };
    node.tls.store(tls.map(Arc::new));
    Ok(format!(
        "host rules, limits and access log{tls_note} reloaded ({rules} host rules)"
    ))
}

/// The next blocked signal, or `None` after `timeout` (when given) without one.
fn wait_signal(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    match timeout {
        None => {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` holds the signals blocked in every thread; sigwait stores the one
            // taken.
            unsafe { libc::sigwait(set, &mut sig) };
            Some(sig)
        }
        Some(t) => {
            let ts = libc::timespec {
                tv_sec: t.as_secs() as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `set` and `ts` are valid for the call; no siginfo is requested.
            let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
            (sig > 0).then_some(sig)
        }
    }
}

/// The node's name: config, then reverse lookup via the cluster section, then the host name.
pub fn node_name(cfg: &Config) -> Result<String, String> {
    arrow_cluster::node_name(cfg.node.name.as_deref(), cfg.cluster.as_ref())
}

/// What a started node exposes to its caller (tests and `demo` print the addresses).
pub struct Started {
    pub listen: Vec<std::net::SocketAddr>,
    pub tls_listen: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}

/// Run the node until SIGTERM/SIGINT. `on_start` is called once the node accepts.
pub fn run(cfg: Config, on_start: impl FnOnce(&Started)) -> Result<(), String> {
    raise_rlimits();
    let sigset = block_signals();
    let cfg = Arc::new(cfg);
    let name = node_name(&cfg)?;
    let shards = cfg.node.cores.len();

    let mut per_shard: Vec<Vec<(std::net::TcpListener, bool)>> =
        (0..shards).map(|_| Vec::new()).collect();
    let mut listen = Vec::new();
    let mut tls_listen = Vec::new();
    let tls_addrs = cfg.tls.as_ref().map_or(&[][..], |t| &t.listen[..]);
    for (addr, tls) in cfg
        .node
        .listen
        .iter()
        .map(|a| (a, false))
        .chain(tls_addrs.iter().map(|a| (a, true)))
    {
        let key = if tls { "tls.listen" } else { "node.listen" };
        let socks = shard::bind_reuseport(*addr, &cfg.node.cores)
            .map_err(|e| format!("{key} {addr}: {e}"))?;
        let bound = socks[0].local_addr().map_err(|e| e.to_string())?;
        if tls {
            tls_listen.push(bound);
        } else {
            listen.push(bound);
        }
        for (i, s) in socks.into_iter().enumerate() {
            per_shard[i].push((s, tls));
        }
    }
    let admin = match cfg.node.admin_listen {
        Some(a) => Some(bind_admin(a).map_err(|e| format!("node.admin_listen {a}: {e}"))?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());

    let cluster = match &cfg.cluster {
        Some(c) => {
            let local = Arc::new(arrow_cluster::LocalStats::new(shards));
            let handle =
                arrow_cluster::start(c.clone(), name.clone(), listen[0].port(), local.clone())
                    .map_err(|e| format!("cluster: {e}"))?;
            Some(crate::cluster_link::ClusterLink {
                handle,
                local,
                guarantee_bps: c.brpu_guarantee_bps,
                overflow: cfg.overflow.clone(),
                warm_at: std::time::Instant::now() + Duration::from_millis(c.warmup_ms()),
                unreachable_ms: u64::from(c.missing_intervals + 1) * c.comet_interval_ms,
            })
        }
        None => None,
    };

    let mut senders = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..shards {
        let (tx, rx) = async_channel::bounded::<ShardMsg>(cfg.limits.cross_shard_queue_max);
        senders.push(tx);
        inboxes.push(rx);
    }
    let node = Arc::new(Node::new(cfg.clone(), name.clone(), senders, cluster));
    if let Some(t) = node.build_tls(&cfg)? {
        match (t.ktls, node.ktls.get()) {
            (true, _) => tracing::info!("kTLS: records handed to the kernel after each handshake"),
            (false, Some(Err(why))) => tracing::info!(
                reason = %why,
                "kTLS unavailable: TLS records are encrypted in user space"
            ),
            (false, _) => {
                tracing::info!("kTLS off (tls.ktls): TLS records are encrypted in user space")
            }
        }
        node.tls.store(Some(Arc::new(t)));
    }
    if let Some(path) = &cfg.node.access_log {
        let format = crate::access_log::LogFormat::of(&cfg.node.access_log_format);
        let log = crate::access_log::AccessLog::open(path, format)
            .map_err(|e| format!("node.access_log {path}: {e}"))?;
        let _ = node.access_log.set(log);
    }

    let mut threads = Vec::new();
    let mut readies = Vec::new();
    let mut gos = Vec::new();
    let mut admin = admin;
    for (i, (listeners, inbox)) in per_shard.into_iter().zip(inboxes).enumerate() {
        let (rtx, rrx) = std::sync::mpsc::channel();
        let (gtx, grx) = std::sync::mpsc::channel();
        let start = ShardStart {
            shard: i,
            core: cfg.node.cores[i],
            node: node.clone(),
            listeners,
            admin: if i == 0 { admin.take() } else { None },
            inbox,
            ready: rtx,
            go: grx,
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("arrow-shard-{i}"))
                .spawn(move || shard::run(start))
                .map_err(|e| format!("cannot start shard {i}: {e}"))?,
        );
        readies.push(rrx);
        gos.push(gtx);
    }
    let mut table: Vec<DiskEntry> = Vec::new();
    let mut refused = Vec::new();
    for (i, r) in readies.iter().enumerate() {
        match r.recv() {
            Ok(Ok((entries, r))) => {
                table.extend(entries);
                refused.extend(r);
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("shard {i} stopped during start-up")),
        }
    }
    if let Some(link) = &node.cluster {
        // The hashing weight is known now: report it before the first viewer arrives.
        let weight: u64 = table
            .iter()
            .filter(|d| d.online.load(std::sync::atomic::Ordering::Relaxed))
            .map(|d| d.weight)
            .sum();
        link.local.set_weight_bytes(weight);
    }
    let _ = node.disks.set(table);
    let _ = node.refused_disks.set(refused);
    for g in gos {
        let _ = g.send(());
    }

    let dns = match &cfg.dns {
        Some(d) => Some(crate::dns_link::start(d.clone(), &node).map_err(|e| format!("dns: {e}"))?),
        None => None,
    };
    if let Some(d) = &dns {
        tracing::info!(listen = ?d.local_addrs(), "dns responder serving");
        let _ = node.dns_stats.set(d.stats());
    }

    tracing::info!(node = %name, shards, listen = ?listen, tls_listen = ?tls_listen, admin = ?admin_addr, "arrow node accepting");
    if cfg.disks.is_empty() {
        tracing::warn!(
            "no [[disk]] configured: nothing is cached, every request goes to the origin"
        );
    }
    on_start(&Started {
        listen: listen.clone(),
        tls_listen: tls_listen.clone(),
        admin: admin_addr,
    });
    // SIGHUP reloads (never killing the node); SIGUSR1 reopens the access log; SIGTERM,
    // SIGINT, SIGQUIT and every other terminating signal (DRAINING_SIGNALS) drain.
    crate::notify::notify("READY=1");
    let watchdog = crate::notify::watchdog_interval();
    let sig = loop {
        let Some(sig) = wait_signal(&sigset, watchdog) else {
            crate::notify::notify("WATCHDOG=1");
            continue;
        };
        if sig == libc::SIGUSR1 {
            if let Some(log) = node.access_log.get() {
                log.reopen();
                tracing::info!("SIGUSR1: access log reopened");
            }
            continue;
        }
        if sig == libc::SIGHUP {
            reload(&node, &listen, &tls_listen, admin_addr);
            continue;
        }
        break sig;
    };
    tracing::info!(
        signal = sig,
        "shutting down: no new connections, finishing in-flight work; /health answers 503"
    );
    crate::notify::notify("STOPPING=1");
    node.begin_shutdown();
    for t in threads {
        let _ = t.join();
    }
    if let Some(log) = node.access_log.get() {
        log.flush();
    }
    if let Some(d) = dns {
        d.shutdown();
    }
    tracing::info!("arrow node stopped");
    Ok(())
}

/// The admin listener, with SO_REUSEADDR like the HTTP listeners: a node restarted right after a
/// crash binds its port again although connections of the previous process are in TIME_WAIT.
/// A crashed process's listener outlives it until the kernel has torn its io_uring down, so an
/// address in use is retried for up to [`ADMIN_BIND_RETRY`].
fn bind_admin(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let started = std::time::Instant::now();
    loop {
        match bind_admin_once(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < ADMIN_BIND_RETRY =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

const ADMIN_BIND_RETRY: Duration = Duration::from_secs(3);

fn bind_admin_once(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}
