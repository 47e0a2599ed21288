//! The cluster thread: a plain std thread (off the shards' data path) that every interval
//! samples [`LocalStats`], runs the brpu meter and the mirroring state machine, sends this
//! node's comet and writes its own record; between sends it receives comets (poll with a
//! timeout) and admits them into the table.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::brpu::{cluster_headroom, BrpuLimits, BrpuMeter, BrpuSnapshot, MirrorState};
use crate::comet::{Comet, CometKey};
use crate::receiver::{ClusterCounters, CounterSnapshot, Receiver};
use crate::stats::LocalStats;
use crate::table::{monotonic_ms, Liveness, Table};
use crate::transport::{Transport, RECV_BUFFER_BYTES};
use crate::{ClusterConfig, ClusterError};

/// Longest the thread waits in `poll` before checking for shutdown.
const STOP_CHECK_MS: u64 = 100;

/// Unix time in ms (the comet send time).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

struct Shared {
    stop: AtomicBool,
    counters: Arc<ClusterCounters>,
    mirroring: AtomicBool,
    capacity_bps: AtomicU64,
    guarantee_bps: u64,
    brpu: Mutex<Option<BrpuSnapshot>>,
}

/// Namespace of [`start`].
pub struct ClusterService;

impl ClusterService {
    /// See [`start`].
    pub fn start(
        cfg: ClusterConfig,
        node_name: String,
        http_port: u16,
        local: Arc<LocalStats>,
    ) -> Result<ClusterHandle, ClusterError> {
        start(cfg, node_name, http_port, local)
    }
}

/// A running cluster thread. Dropping it stops the thread too.
pub struct ClusterHandle {
    table: Arc<Table>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    node_name: String,
    local_addr: Option<SocketAddr>,
}

impl ClusterHandle {
    /// The cluster table (writer side; shards and DNS read it lock-free).
    pub fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table)
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// Keep pulled copies (mirroring on)?
    pub fn mirroring(&self) -> bool {
        self.shared.mirroring.load(Ordering::Relaxed)
    }

    /// The last brpu computation (zeros before the first interval).
    pub fn brpu(&self) -> BrpuSnapshot {
        let last = *self.shared.brpu.lock().unwrap_or_else(|p| p.into_inner());
        last.unwrap_or(BrpuSnapshot {
            c_cpu_bps: 0,
            c_net_bps: 0,
            c_disk_bps: 0,
            capacity_bps: 0,
            users: 0,
            brpu_bps: 0,
            guarantee_bps: self.shared.guarantee_bps,
            admit_next: false,
            bottleneck: crate::brpu::Bottleneck::None,
        })
    }

    /// Admission on the data path: with `users` active now, may one more viewer come in?
    /// Uses the capacity of the last interval (one atomic load).
    pub fn admit(&self, users: u32) -> bool {
        let capacity = self.shared.capacity_bps.load(Ordering::Relaxed);
        crate::brpu::admits(capacity, users, self.shared.guarantee_bps)
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The bound unicast comet socket, if `listen` is set.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops the thread and waits for it (at most one poll timeout).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("cluster thread panicked");
            }
        }
    }
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// NIC speed from sysfs (Mbit/s) for a named interface.
fn sysfs_line_rate_bps(interface: Option<&str>) -> Option<u64> {
    let name = interface.filter(|i| i.parse::<IpAddr>().is_err())?;
    if name.contains('/') {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/speed")).ok()?;
    let mbps: i64 = text.trim().parse().ok()?;
    (mbps > 0).then(|| mbps as u64 * 1_000_000)
}

/// Opens the table and sockets, then spawns the cluster thread.
pub fn start(
    cfg: ClusterConfig,
    node_name: String,
    http_port: u16,
    local: Arc<LocalStats>,
) -> Result<ClusterHandle, ClusterError> {
    start_on(cfg, None, node_name, http_port, local)
}

/// Like [`start`], receiving unicast comets on `socket`, bound by the caller (tests bind port 0
/// and hand the sockets in, so no port is released and hoped for).
pub fn start_on(
    cfg: ClusterConfig,
    socket: Option<std::net::UdpSocket>,
    node_name: String,
    http_port: u16,
    local: Arc<LocalStats>,
) -> Result<ClusterHandle, ClusterError> {
    cfg.validate().map_err(ClusterError::Config)?;
    crate::identity::check_node_name(&node_name)?;
    let node_name = crate::identity::canonical(&node_name);
    let liveness = Liveness {
        comet_interval_ms: cfg.comet_interval_ms,
        missing_intervals: cfg.missing_intervals,
    };
    let table = Arc::new(Table::create_with(
        &cfg.table_path_for(&node_name),
        cfg.max_nodes,
        liveness,
    )?);
    let transport = Transport::open(&cfg, socket)?;
    let local_addr = transport.local_addr();
    let line_rate_bps = cfg
        .line_rate_bps
        .or_else(|| sysfs_line_rate_bps(cfg.interface.as_deref()));
    if line_rate_bps.is_none() {
        tracing::warn!(
            "line rate unknown: C_net does not constrain brpu (set cluster.line_rate_bps)"
        );
    }
    let meter = BrpuMeter::new(BrpuLimits {
        shards: local.shard_count() as u32,
        line_rate_bps,
        net_safety: cfg.net_safety,
        disk_ceiling_bps: None,
        guarantee_bps: cfg.brpu_guarantee_bps,
        ewma_alpha: 0.2,
    });
    let counters = Arc::new(ClusterCounters::default());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        counters: Arc::clone(&counters),
        mirroring: AtomicBool::new(false),
        // Unmeasured means unconstrained: viewers are admitted until the first interval.
        capacity_bps: AtomicU64::new(u64::MAX),
        guarantee_bps: cfg.brpu_guarantee_bps,
        brpu: Mutex::new(None),
    });
    // The boot id orders this node's lives for the receivers' replay rule: above the previous
    // boot's even if the clock stepped back (our own record survives in the table).
    let previous_boot = table
        .last_accepted(&node_name, monotonic_ms())
        .map_or(0, |((boot, _), _)| boot);
    let boot_id = wall_ns().max(previous_boot.saturating_add(1)).max(1);
    let advertise = cfg
        .advertise_addr
        .or_else(|| cfg.listen.map(|l| l.ip()).filter(|ip| !ip.is_unspecified()));
    let key = CometKey::new(cfg.secret.as_bytes());
    let mut keys = vec![key.clone()];
    keys.extend(
        cfg.secret_previous
            .as_ref()
            .map(|s| CometKey::new(s.as_bytes())),
    );
    // Per-node keys: our own secret key, and every node's public key (ours must match).
    let signer = match &cfg.signing_key_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ClusterError::Config(format!("cluster.signing_key_file {}: {e}", path.display()))
            })?;
            Some(crate::comet::signing_key_from_hex(&text).ok_or_else(|| {
                ClusterError::Config(format!(
                    "cluster.signing_key_file {}: not an Ed25519 secret key (64 hex digits)",
                    path.display()
                ))
            })?)
        }
    };
    let mut node_keys = std::collections::HashMap::new();
    for (name, key) in &cfg.node_keys {
        let vk = crate::comet::verifying_key_from_hex(key).ok_or_else(|| {
            ClusterError::Config(format!("cluster.node_keys[{name:?}] is not a public key"))
        })?;
        node_keys.insert(crate::identity::canonical(name), vk);
    }
    if let Some(signer) = &signer {
        if !node_keys.is_empty() && node_keys.get(&node_name) != Some(&signer.verifying_key()) {
            return Err(ClusterError::Config(format!(
                "cluster.signing_key_file is not the key cluster.node_keys lists for {node_name}"
            )));
        }
    }
    let receiver = Receiver::new(
        keys,
        Arc::clone(&table),
        node_name.clone(),
        boot_id,
        cfg.max_clock_skew_ms,
        counters,
        cfg.comets_per_source_per_s(),
        cfg.max_nodes,
    )
    .with_node_keys(node_keys);
    let state = Loop {
        interval_ms: cfg.comet_interval_ms,
        guarantee_bps: cfg.brpu_guarantee_bps,
        template: Comet {
            name: node_name.clone(),
            boot_id,
            sequence: 0,
            time_ms: 0,
            addr: advertise,
            http_port,
            brpu_bps: 0,
            capacity_bps: 0,
            weight: 0,
            users: 0,
            mirroring: false,
            admitting: false,
            disks: Vec::new(),
        },
        key,
        signer,
        table: Arc::clone(&table),
        transport,
        receiver,
        meter,
        mirror: MirrorState::new(cfg.mirror_low_watermark, cfg.mirror_high_watermark),
        local,
        shared: Arc::clone(&shared),
    };
    let thread = std::thread::Builder::new()
        .name("arrow-cluster".into())
        .spawn(move || state.run())
        .map_err(ClusterError::Spawn)?;
    Ok(ClusterHandle {
        table,
        shared,
        thread: Some(thread),
        node_name,
        local_addr,
    })
}

struct Loop {
    interval_ms: u64,
    guarantee_bps: u64,
    template: Comet,
    key: CometKey,
    /// This node's own Ed25519 key (per-node keys), signing every comet.
    signer: Option<ed25519_dalek::SigningKey>,
    table: Arc<Table>,
    transport: Transport,
    receiver: Receiver,
    meter: BrpuMeter,
    mirror: MirrorState,
    local: Arc<LocalStats>,
    shared: Arc<Shared>,
}

impl Loop {
    fn run(mut self) {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); RECV_BUFFER_BYTES];
        let mut next_send_ms = monotonic_ms();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = monotonic_ms();
            if now >= next_send_ms {
                self.tick(now);
                next_send_ms += self.interval_ms;
                if next_send_ms <= now {
                    // Fell behind (stopped process, overloaded host): no burst of comets.
                    next_send_ms = now + self.interval_ms;
                }
            }
            let wait_ms = next_send_ms
                .saturating_sub(monotonic_ms())
                .min(STOP_CHECK_MS);
            match self.transport.recv(&mut buf, wait_ms) {
                Ok(Some((len, source))) => {
                    // SAFETY: recv_from initialised the first `len` bytes of `buf`.
                    let bytes =
                        unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, len) };
                    self.receiver
                        .admit(bytes, source, monotonic_ms(), wall_ms());
                }
                Ok(None) => {}
                Err(e) => {
                    self.shared
                        .counters
                        .recv_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "comet receive failed");
                    std::thread::sleep(std::time::Duration::from_millis(wait_ms.max(1)));
                }
            }
        }
    }

    /// One interval: measure, decide mirroring, send our comet, write our own record.
    fn tick(&mut self, now_ms: u64) {
        let snapshot = self.meter.observe(self.local.sample());
        let headroom = cluster_headroom(&self.table.snapshot_at(now_ms), self.guarantee_bps);
        let mirroring = self.mirror.update(headroom);
        let comet = &mut self.template;
        comet.sequence += 1;
        comet.time_ms = wall_ms();
        comet.brpu_bps = snapshot.brpu_bps;
        comet.capacity_bps = snapshot.capacity_bps;
        comet.users = snapshot.users;
        comet.weight = self.local.weight_bytes();
        comet.mirroring = mirroring;
        comet.admitting = snapshot.admit_next;
        comet.disks = self.local.disks();
        match comet.encode_signed(&self.key, self.signer.as_ref()) {
            Ok(bytes) => {
                let (sent, errors) = self.transport.send(&bytes);
                let c = &self.shared.counters;
                c.sent.fetch_add(sent, Ordering::Relaxed);
                c.send_errors.fetch_add(errors, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "own comet cannot be encoded"),
        }
        if let Err(e) = self.table.upsert(comet, now_ms) {
            tracing::error!(error = %e, "own record not written");
        }
        self.shared.mirroring.store(mirroring, Ordering::Relaxed);
        self.shared
            .capacity_bps
            .store(snapshot.capacity_bps, Ordering::Relaxed);
        *self.shared.brpu.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
    }
}
