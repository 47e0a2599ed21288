//! Per-shard counters (each written by its own shard only, read by the admin endpoint) and the
//! Prometheus text rendering of the whole node.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Fetching,
    Stale,
    /// A stored copy the origin confirmed just now (conditional request answered 304).
    Revalidated,
    /// Not cacheable: passed to the origin.
    Pass,
    /// Pulled from the designated peer.
    Peer,
    /// Answered by the node itself (errors, redirects, admin).
    Local,
}

impl CacheResult {
    pub const ALL: [CacheResult; 8] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Fetching,
        CacheResult::Stale,
        CacheResult::Revalidated,
        CacheResult::Pass,
        CacheResult::Peer,
        CacheResult::Local,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Fetching => "FETCHING",
            CacheResult::Stale => "STALE",
            CacheResult::Revalidated => "REVALIDATED",
            CacheResult::Pass => "PASS",
            CacheResult::Peer => "PEER",
            CacheResult::Local => "LOCAL",
        }
    }
}

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    /// For gauges owned by one shard.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

/// Origin latency buckets (seconds), Prometheus histogram style.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS_S.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

/// Status classes counted: 2xx..5xx.
const STATUS_CLASSES: usize = 4;

#[derive(Default)]
pub struct ShardMetrics {
    requests: [[Counter; CacheResult::ALL.len()]; STATUS_CLASSES],
    pub body_bytes: Counter,
    pub connections_open: Counter,
    /// Viewers (gauge): connections answered now or that delivered body bytes recently.
    pub viewers_active: Counter,
    /// Keep-alive connections waiting for a request without a read buffer (gauge).
    pub connections_parked: Counter,
    /// Requests whose designated node could not be reached, served by the next node in
    /// placement order or from the origin.
    pub peer_failovers: Counter,
    /// Requests that waited for the start-up warm-up before being routed.
    pub warmup_waits: Counter,
    /// Cache keys invalidated by a non-error answer to an unsafe method.
    pub invalidations: Counter,
    /// Stored variants removed to keep a key within its variant bound.
    pub vary_variants_evicted: Counter,
    pub connections_total: Counter,
    /// Connections accepted here and handed to a shard with fewer open connections.
    pub connections_handed_off: Counter,
    /// Connections handed over by another shard and served here.
    pub connections_adopted: Counter,
    pub connections_refused: Counter,
    pub bad_requests: Counter,
    pub fills_started: Counter,
    /// Gauges: fills still fetching, and body bytes held by fills.
    pub fills_fetching: Counter,
    pub fill_buffer_bytes: Counter,
    /// Gauge: the highest `fill_buffer_bytes` since start.
    pub fill_buffer_bytes_peak: Counter,
    /// Gauge: the bound of `fill_buffer_bytes` (limits.fill_buffer_bytes_max).
    pub fill_buffer_bytes_max: Counter,
    /// Misses streamed uncached because fill memory was at its bound.
    pub fills_over_memory: Counter,
    /// Fill pieces read back from the disk writer by viewers behind the window.
    pub fill_disk_reads: Counter,
    /// Viewers cut off because they fell behind a fill's window with no disk copy to read.
    pub fill_viewers_cut: Counter,
    pub origin_errors: Counter,
    pub origin_bytes: Counter,
    pub origin_latency: Histogram,
    pub storage_read_errors: Counter,
    /// Connections closed below the minimum delivery rate.
    pub slow_viewers_closed: Counter,
    /// Body pieces dropped while a viewer's socket was full (read again later).
    pub send_pieces_dropped: Counter,
    /// Gauge: RAM-tier bytes held by sends in progress (spans pinned by sockets).
    pub ram_span_send_bytes: Counter,
    pub cross_shard: Counter,
    /// Hits served from this shard's replica of another shard's object.
    pub replica_hits: Counter,
    /// Replicas received from owning shards.
    pub replicas_made: Counter,
    /// Gauge: bytes held by replicas.
    pub replica_bytes: Counter,
    /// Freed aligned read buffers the shard keeps for reuse.
    pub read_buffers_pooled_bytes: Counter,
    pub overflow: Counter,
    pub peer_pulls: Counter,
    pub tls: TlsCounters,
}

/// Cipher suites counted by name (the rest count as "other").
pub const TLS_SUITES: [&str; 9] = [
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];
const TLS_VERSIONS: [&str; 2] = ["TLSv1.3", "TLSv1.2"];

/// Viewer TLS handshakes on one shard.
#[derive(Default)]
pub struct TlsCounters {
    /// Connections whose record layer went to the kernel (kTLS) after the handshake.
    pub ktls: Counter,
    /// kTLS hand-overs that failed part way (the connection was closed).
    pub ktls_failed: Counter,
    full: Counter,
    resumed: Counter,
    failed: [Counter; crate::tls::HandshakeFailure::ALL.len()],
    versions: [Counter; TLS_VERSIONS.len() + 1],
    suites: [Counter; TLS_SUITES.len() + 1],
}

impl TlsCounters {
    pub fn completed(&self, resumed: bool, version: &str, suite: &str) {
        if resumed {
            self.resumed.inc();
        } else {
            self.full.inc();
        }
        let v = TLS_VERSIONS.iter().position(|v| *v == version);
        self.versions[v.unwrap_or(TLS_VERSIONS.len())].inc();
        let c = TLS_SUITES.iter().position(|c| *c == suite);
        self.suites[c.unwrap_or(TLS_SUITES.len())].inc();
    }

    pub fn failed(&self, why: crate::tls::HandshakeFailure) {
        let i = crate::tls::HandshakeFailure::ALL
            .iter()
            .position(|f| *f == why)
            .unwrap_or(0);
        self.failed[i].inc();
    }
}

fn render_tls(o: &mut String, shards: &[std::sync::Arc<ShardMetrics>], ktls_available: bool) {
    let _ = writeln!(
        o,
        "# HELP arrow_tls_ktls_enabled Whether TLS connections are handed to the kernel (kTLS) after their handshake: tls.ktls = \"auto\" and the kernel has the tls module.\n# TYPE arrow_tls_ktls_enabled gauge\narrow_tls_ktls_enabled {}",
        u8::from(ktls_available)
    );
    let _ = writeln!(
        o,
        "# HELP arrow_tls_ktls_connections_total TLS connections whose record layer went to the kernel (kTLS).\n# TYPE arrow_tls_ktls_connections_total counter\narrow_tls_ktls_connections_total {}",
        shards.iter().map(|s| s.tls.ktls.get()).sum::<u64>()
    );
    let _ = writeln!(
        o,
        "# HELP arrow_tls_ktls_failures_total kTLS hand-overs that failed part way (the connection was closed).\n# TYPE arrow_tls_ktls_failures_total counter\narrow_tls_ktls_failures_total {}",
        shards.iter().map(|s| s.tls.ktls_failed.get()).sum::<u64>()
    );
    let _ = writeln!(
        o,
        "# HELP arrow_tls_send_buffer_bytes Ciphertext buffer bytes TLS connections hold now (at most about one 64 KiB window per connection with a response in flight).\n# TYPE arrow_tls_send_buffer_bytes gauge\narrow_tls_send_buffer_bytes {}",
        crate::tls::send_buffer_bytes()
    );
    let sum = |f: &dyn Fn(&TlsCounters) -> u64| shards.iter().map(|s| f(&s.tls)).sum::<u64>();
    o.push_str("# HELP arrow_tls_handshakes_total Viewer TLS handshakes completed, full or resumed (ticket or session id).\n# TYPE arrow_tls_handshakes_total counter\n");
    let _ = writeln!(
        o,
        "arrow_tls_handshakes_total{{kind=\"full\"}} {}",
        sum(&|t| t.full.get())
    );
    let _ = writeln!(
        o,
        "arrow_tls_handshakes_total{{kind=\"resumed\"}} {}",
        sum(&|t| t.resumed.get())
    );
    o.push_str("# HELP arrow_tls_handshake_failures_total Viewer TLS handshakes that failed, by reason (timeout, eof: closed before completion, plain_http: a plain request on a TLS port, protocol: not TLS or a TLS error, limit: over tls.handshakes_in_flight_max).\n# TYPE arrow_tls_handshake_failures_total counter\n");
    for (i, f) in crate::tls::HandshakeFailure::ALL.iter().enumerate() {
        let _ = writeln!(
            o,
            "arrow_tls_handshake_failures_total{{reason=\"{}\"}} {}",
            f.as_str(),
            sum(&|t| t.failed[i].get())
        );
    }
    o.push_str("# HELP arrow_tls_versions_total Viewer TLS handshakes completed by protocol version.\n# TYPE arrow_tls_versions_total counter\n");
    for (i, v) in TLS_VERSIONS.iter().chain(["other"].iter()).enumerate() {
        let _ = writeln!(
            o,
            "arrow_tls_versions_total{{version=\"{v}\"}} {}",
            sum(&|t| t.versions[i].get())
        );
    }
    o.push_str("# HELP arrow_tls_ciphers_total Viewer TLS handshakes completed by cipher suite.\n# TYPE arrow_tls_ciphers_total counter\n");
    for (i, c) in TLS_SUITES.iter().chain(["other"].iter()).enumerate() {
        let _ = writeln!(
            o,
            "arrow_tls_ciphers_total{{suite=\"{c}\"}} {}",
            sum(&|t| t.suites[i].get())
        );
    }
}

impl ShardMetrics {
    pub fn request(&self, status: u16, result: CacheResult, body_bytes: u64) {
        let class = (status / 100).clamp(2, 5) as usize - 2;
        let r = CacheResult::ALL
            .iter()
            .position(|c| *c == result)
            .unwrap_or(0);
        self.requests[class][r].inc();
        self.body_bytes.add(body_bytes);
    }
}

/// Per-disk figures as the admin endpoint renders them.
pub struct DiskLine {
    pub id: String,
    pub path: String,
    pub shard: usize,
    pub online: bool,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub objects: u64,
    pub evictions: u64,
    pub errors: u64,
    pub index_bytes_per_object: f64,
    pub read_bytes: u64,
    pub read_ops: u64,
    pub read_busy_ns: u64,
    /// Body bytes of the objects stored.
    pub object_bytes: u64,
    /// Blocks held back after aborted writes, in bytes (freed at restart).
    pub quarantined_bytes: u64,
    /// Packs of small objects.
    pub packs: u64,
    /// Objects stored in packs.
    pub packed_objects: u64,
}

pub struct RamLine {
    pub shard: usize,
    pub bytes: u64,
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
    /// Units read from the disk that the full tier did not take (their first recent read).
    pub declined: u64,
}

pub fn render(
    shards: &[std::sync::Arc<ShardMetrics>],
    disks: &[DiskLine],
    ram: &[RamLine],
    extra: &str,
    ktls_enabled: bool,
) -> String {
    let mut o = String::with_capacity(8192);
    o.push_str("# HELP arrow_requests_total Requests by status class and cache result.\n# TYPE arrow_requests_total counter\n");
    for (ci, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        for (ri, r) in CacheResult::ALL.iter().enumerate() {
            let v: u64 = shards.iter().map(|s| s.requests[ci][ri].get()).sum();
            let _ = writeln!(
                o,
                "arrow_requests_total{{status=\"{class}\",cache=\"{}\"}} {v}",
                r.as_str()
            );
        }
    }
    let sum = |f: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    let counters: [(&str, &str, u64); 32] = [
        (
            "arrow_fill_buffer_bytes_max",
            "Bound of arrow_fill_buffer_bytes (per shard, summed).",
            sum(&|s| s.fill_buffer_bytes_max.get()),
        ),
        (
            "arrow_fills_over_memory_total",
            "Misses streamed uncached because fill memory was at its bound.",
            sum(&|s| s.fills_over_memory.get()),
        ),
        (
            "arrow_fill_disk_reads_total",
            "Fill pieces read back from the disk by viewers behind the fill window.",
            sum(&|s| s.fill_disk_reads.get()),
        ),
        (
            "arrow_fill_viewers_cut_total",
            "Viewers cut off behind a fill window with no disk copy to read.",
            sum(&|s| s.fill_viewers_cut.get()),
        ),
        (
            "arrow_slow_viewers_closed_total",
            "Connections closed below send_rate_min_bytes_per_s.",
            sum(&|s| s.slow_viewers_closed.get()),
        ),
        (
            "arrow_send_pieces_dropped_total",
            "Body pieces dropped while a viewer's socket was full (read again later).",
            sum(&|s| s.send_pieces_dropped.get()),
        ),
        (
            "arrow_ram_span_send_bytes",
            "RAM-tier bytes held by sends in progress.",
            sum(&|s| s.ram_span_send_bytes.get()),
        ),
        (
            "arrow_fills_fetching",
            "Fills still receiving from upstream.",
            sum(&|s| s.fills_fetching.get()),
        ),
        (
            "arrow_fill_buffer_bytes",
            "Body bytes held in memory by fills.",
            sum(&|s| s.fill_buffer_bytes.get()),
        ),
        (
            "arrow_fill_buffer_bytes_peak",
            "The most body bytes fills held at once on one shard since start (bound: arrow_fill_buffer_bytes_max per shard).",
            shards
                .iter()
                .map(|s| s.fill_buffer_bytes_peak.get())
                .max()
                .unwrap_or(0),
        ),
        (
            "arrow_body_bytes_total",
            "Body bytes sent to viewers.",
            sum(&|s| s.body_bytes.get()),
        ),
        (
            "arrow_connections_total",
            "Client connections accepted.",
            sum(&|s| s.connections_total.get()),
        ),
        (
            "arrow_connections_refused_total",
            "Connections refused at the connection bound.",
            sum(&|s| s.connections_refused.get()),
        ),
        (
            "arrow_bad_requests_total",
            "Requests refused as malformed or too large.",
            sum(&|s| s.bad_requests.get()),
        ),
        (
            "arrow_fills_total",
            "Origin fetches started for cacheable keys.",
            sum(&|s| s.fills_started.get()),
        ),
        (
            "arrow_origin_errors_total",
            "Origin fetches that failed.",
            sum(&|s| s.origin_errors.get()),
        ),
        (
            "arrow_origin_bytes_total",
            "Body bytes received from origins.",
            sum(&|s| s.origin_bytes.get()),
        ),
        (
            "arrow_storage_read_errors_total",
            "Stored objects that could not be read.",
            sum(&|s| s.storage_read_errors.get()),
        ),
        (
            "arrow_cross_shard_requests_total",
            "Requests served by another shard.",
            sum(&|s| s.cross_shard.get()),
        ),
        (
            "arrow_replica_hits_total",
            "Hits served from a shard's replica of a small object another shard owns.",
            sum(&|s| s.replica_hits.get()),
        ),
        (
            "arrow_replicas_made_total",
            "Replicas of small objects received from their owning shards.",
            sum(&|s| s.replicas_made.get()),
        ),
        (
            "arrow_replica_bytes",
            "Bytes held by replicas on all shards (bound: storage.replica_bytes_max per shard).",
            sum(&|s| s.replica_bytes.get()),
        ),
        (
            "arrow_read_buffers_pooled_bytes",
            "Freed disk read buffers kept for reuse, all shards (at most 64 MiB per shard).",
            sum(&|s| s.read_buffers_pooled_bytes.get()),
        ),
        (
            "arrow_overflow_total",
            "Viewers sent to the overflow CDN.",
            sum(&|s| s.overflow.get()),
        ),
        (
            "arrow_peer_pulls_total",
            "Requests pulled from the designated peer.",
            sum(&|s| s.peer_pulls.get()),
        ),
        (
            "arrow_connections_open",
            "Open client connections.",
            sum(&|s| s.connections_open.get()),
        ),
        (
            "arrow_connections_parked",
            "Keep-alive connections idle past 200 ms, waiting for their next request without a read buffer.",
            sum(&|s| s.connections_parked.get()),
        ),
        (
            "arrow_viewers_active",
            "Viewers: connections answered now or that delivered body bytes within the viewer window (idle sockets and pulls by other nodes excluded).",
            sum(&|s| s.viewers_active.get()),
        ),
        (
            "arrow_peer_failovers_total",
            "Requests whose designated node could not be reached, served by the next node in placement order or from the origin.",
            sum(&|s| s.peer_failovers.get()),
        ),
        (
            "arrow_vary_variants_evicted_total",
            "Stored variants removed to keep a cache key within its bound of variants.",
            sum(&|s| s.vary_variants_evicted.get()),
        ),
        (
            "arrow_invalidations_total",
            "Cache keys invalidated by a non-error answer to an unsafe method (RFC 9111 4.4).",
            sum(&|s| s.invalidations.get()),
        ),
        (
            "arrow_warmup_waits_total",
            "Requests that waited for the start-up warm-up (hearing the cluster) before being routed.",
            sum(&|s| s.warmup_waits.get()),
        ),
    ];
    for (name, help, v) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    type PerShard = fn(&ShardMetrics) -> u64;
    let per_shard: [(&str, &str, &str, PerShard); 7] = [
        (
            "arrow_shard_tls_full_handshakes_total",
            "counter",
            "Full viewer TLS handshakes per shard.",
            |s| s.tls.full.get(),
        ),
        (
            "arrow_shard_tls_resumed_handshakes_total",
            "counter",
            "Resumed viewer TLS handshakes per shard (tickets and session ids are shared by all shards).",
            |s| s.tls.resumed.get(),
        ),
        (
            "arrow_shard_connections_total",
            "counter",
            "Client connections accepted per shard (how the kernel's steering spreads them).",
            |s| s.connections_total.get(),
        ),
        (
            "arrow_shard_cross_shard_requests_total",
            "counter",
            "Requests served by another shard (the key's disk is there).",
            |s| s.cross_shard.get(),
        ),
        (
            "arrow_shard_connections_handed_off_total",
            "counter",
            "Connections accepted by this shard and handed to a shard with fewer open connections.",
            |s| s.connections_handed_off.get(),
        ),
        (
            "arrow_shard_connections_adopted_total",
            "counter",
            "Connections handed over by another shard and served by this one.",
            |s| s.connections_adopted.get(),
        ),
        (
            "arrow_shard_connections_open",
            "gauge",
            "Open connections per shard (after hand-over).",
            |s| s.connections_open.get(),
        ),
    ];
    for (name, kind, help, get) in per_shard {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, s) in shards.iter().enumerate() {
            let _ = writeln!(o, "{name}{{shard=\"{i}\"}} {}", get(s));
        }
    }
    o.push_str("# HELP arrow_origin_latency_seconds Time to origin response head.\n# TYPE arrow_origin_latency_seconds histogram\n");
    for (i, b) in LATENCY_BUCKETS_S.iter().enumerate() {
        let v: u64 = shards
            .iter()
            .map(|s| s.origin_latency.buckets[i].load(Relaxed))
            .sum();
        let _ = writeln!(o, "arrow_origin_latency_seconds_bucket{{le=\"{b}\"}} {v}");
    }
    let count: u64 = shards
        .iter()
        .map(|s| s.origin_latency.count.load(Relaxed))
        .sum();
    let sum_us: u64 = shards
        .iter()
        .map(|s| s.origin_latency.sum_us.load(Relaxed))
        .sum();
    let _ = writeln!(
        o,
        "arrow_origin_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        o,
        "arrow_origin_latency_seconds_sum {}",
        sum_us as f64 / 1e6
    );
    let _ = writeln!(o, "arrow_origin_latency_seconds_count {count}");
    o.push_str("# HELP arrow_disk_online Disk state (1 online, 0 offline).\n# TYPE arrow_disk_online gauge\n");
    for d in disks {
        let l = format!(
            "disk=\"{}\",path=\"{}\",shard=\"{}\"",
            d.id,
            d.path.replace('"', "'"),
            d.shard
        );
        let _ = writeln!(o, "arrow_disk_online{{{l}}} {}", d.online as u8);
        let _ = writeln!(o, "arrow_disk_size_bytes{{{l}}} {}", d.size_bytes);
        let _ = writeln!(o, "arrow_disk_used_bytes{{{l}}} {}", d.used_bytes);
        let _ = writeln!(o, "arrow_disk_objects{{{l}}} {}", d.objects);
        let _ = writeln!(o, "arrow_disk_object_bytes{{{l}}} {}", d.object_bytes);
        let _ = writeln!(
            o,
            "arrow_disk_quarantined_bytes{{{l}}} {}",
            d.quarantined_bytes
        );
        let _ = writeln!(o, "arrow_disk_packs{{{l}}} {}", d.packs);
        let _ = writeln!(o, "arrow_disk_packed_objects{{{l}}} {}", d.packed_objects);
        let _ = writeln!(o, "arrow_disk_evictions_total{{{l}}} {}", d.evictions);
        let _ = writeln!(o, "arrow_disk_errors_total{{{l}}} {}", d.errors);
        let _ = writeln!(o, "arrow_disk_read_bytes_total{{{l}}} {}", d.read_bytes);
        let _ = writeln!(o, "arrow_disk_reads_total{{{l}}} {}", d.read_ops);
        let _ = writeln!(
            o,
            "arrow_disk_read_busy_seconds_total{{{l}}} {:.6}",
            d.read_busy_ns as f64 / 1e9
        );
        let _ = writeln!(
            o,
            "arrow_disk_index_bytes_per_object{{{l}}} {:.1}",
            d.index_bytes_per_object
        );
    }
    o.push_str("# HELP arrow_ram_tier_bytes RAM tier bytes held per shard.\n# TYPE arrow_ram_tier_bytes gauge\n");
    for r in ram {
        let _ = writeln!(
            o,
            "arrow_ram_tier_bytes{{shard=\"{}\"}} {}",
            r.shard, r.bytes
        );
        let _ = writeln!(
            o,
            "arrow_ram_tier_capacity_bytes{{shard=\"{}\"}} {}",
            r.shard, r.capacity
        );
        let _ = writeln!(
            o,
            "arrow_ram_tier_hits_total{{shard=\"{}\"}} {}",
            r.shard, r.hits
        );
        let _ = writeln!(
            o,
            "arrow_ram_tier_misses_total{{shard=\"{}\"}} {}",
            r.shard, r.misses
        );
        let _ = writeln!(
            o,
            "arrow_ram_tier_declined_total{{shard=\"{}\"}} {}",
            r.shard, r.declined
        );
    }
    render_tls(&mut o, shards, ktls_enabled);
    o.push_str(extra);
    o
}
