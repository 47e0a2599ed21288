//! The node's one TOML config: a raw serde stage (`RawConfig`, unknown keys rejected) and a
//! validated stage (`Config`) with compiled regexes, resolved origins and checked bounds.
//! Every error names the key and, where the TOML parser knows it, the line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The validated config the node runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeConfig,
    pub limits: Limits,
    pub storage: StorageConfig,
    pub disks: Vec<DiskConfig>,
    pub hosts: Vec<HostRule>,
    pub cluster: Option<arrow_cluster::ClusterConfig>,
    pub dns: Option<arrow_dns::DnsConfig>,
    pub overflow: Option<OverflowConfig>,
    pub tls: Option<TlsConfig>,
    /// The file it was loaded from (what a reload reads again).
    pub path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's canonical name; default: reverse lookup of `cluster.advertise_addr`, or the
    /// host name when there is no cluster section.
    #[serde(default)]
    pub name: Option<String>,
    /// CPU cores to pin one shard each to. Default: `[0]`.
    #[serde(default = "default_cores")]
    pub cores: Vec<usize>,
    /// HTTP listeners; every shard binds each with SO_REUSEPORT.
    pub listen: Vec<SocketAddr>,
    /// Admin listener (metrics, health, purge, disk state); served by shard 0. Default: none.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for purge and disk admin calls. Required when `admin_listen` is set.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Add the debug headers (action, hash input, cluster key, cache key, pull URL). Default false.
    #[serde(default)]
    pub debug_headers: bool,
    /// Access log file; "-" for stdout. Written by its own thread (never blocking a shard),
    /// reopened on SIGUSR1 (rotate by rename, then signal). Default: none.
    #[serde(default)]
    pub access_log: Option<String>,
    /// `"combined"` (the Combined Log Format, then the cache result and the request id) or
    /// `"json"` (one object per line). Default: combined.
    #[serde(default = "default_access_log_format")]
    pub access_log_format: String,
    /// The response field an origin uses to tell this CDN alone how to cache (RFC 9213
    /// targeted field, Cache-Control syntax as a Structured Fields Dictionary). It beats
    /// CDN-Cache-Control, which beats Cache-Control and Expires; it is never sent to viewers.
    /// Default: `Arrow-Cache-Control`.
    #[serde(default = "default_targeted_field")]
    pub targeted_cache_control: String,
}

fn default_access_log_format() -> String {
    "combined".into()
}

fn default_targeted_field() -> String {
    "Arrow-Cache-Control".into()
}

fn default_cores() -> Vec<usize> {
    vec![0]
}

/// HTTPS for viewers (`[tls]`): listeners, the default certificate, suites, session tickets
/// and handshake bounds. Certificates per host rule are `tls_certificate`/`tls_key` in
/// `[[host]]`; SNI picks the first rule whose `hosts` match the name, else this default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// TLS listeners; every shard binds each with SO_REUSEPORT.
    pub listen: Vec<SocketAddr>,
    /// Default certificate chain (PEM, leaf first) for names no host rule's certificate
    /// covers and for clients that send no name. Default: none (such handshakes fail).
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The default certificate's private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Suites allowed, by IANA name (e.g. `["TLS13_AES_128_GCM_SHA256"]`). Default: all that
    /// rustls offers (AEAD suites with forward secrecy only).
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Offer TLS 1.2 besides TLS 1.3. Default true.
    #[serde(default = "yes")]
    pub tls12: bool,
    /// File of at least 32 random bytes from which session-ticket keys are derived (`openssl
    /// rand 80 > file`): nodes and restarts sharing it resume each other's sessions. Default:
    /// a random secret per run (tickets survive neither a restart nor another node).
    #[serde(default)]
    pub ticket_key_file: Option<PathBuf>,
    /// Ticket key rotation period: a ticket opens in its period and the next. Default 21600.
    #[serde(default = "default_ticket_rotation")]
    pub ticket_rotation_s: u64,
    /// TLS 1.2 sessions remembered by id (shared by all shards). Default 16384.
    #[serde(default = "default_session_cache")]
    pub session_cache_entries: usize,
    /// A handshake must complete within this. Default 10000.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
    /// Handshakes in progress per shard; a connection beyond it is closed at once. Default 1024.
    #[serde(default = "default_handshakes_in_flight")]
    pub handshakes_in_flight_max: usize,
    /// `"auto"`: hand each connection's record layer to the kernel (kTLS) after its handshake
    /// when the kernel has the `tls` module (probed at start), else encrypt in user space;
    /// `"off"`: always in user space. Default "auto".
    #[serde(default = "default_ktls")]
    pub ktls: String,
}

/// Longest ticket key period: tickets open for up to two periods, at most 7 days.
const TICKET_ROTATION_MAX_S: u64 = 302_400;

fn default_ktls() -> String {
    "auto".into()
}

fn yes() -> bool {
    true
}
fn default_ticket_rotation() -> u64 {
    21600
}
fn default_session_cache() -> usize {
    16384
}
fn default_handshake_timeout() -> u64 {
    10_000
}
fn default_handshakes_in_flight() -> usize {
    1024
}

/// The limits in force: swapped by a reload (SIGHUP); readers load them where they use them.
pub type LiveLimits = std::sync::Arc<arc_swap::ArcSwap<Limits>>;

/// Bounds on everything a client or origin can make the node hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes of request line + headers before 431. Default 16384.
    pub header_bytes_max: usize,
    /// Headers per request before 431. Default 64.
    pub headers_count_max: usize,
    /// Time to receive a whole request head. Default 10000 ms.
    pub header_timeout_ms: u64,
    /// Idle keep-alive time between requests. Default 30000 ms.
    pub idle_timeout_ms: u64,
    /// Time without progress while reading a request body or writing a response. Default 30000 ms.
    pub body_timeout_ms: u64,
    /// Open client connections per node, whichever shards they land on (admin connections
    /// excluded); beyond it a new connection gets 503. Default 20000.
    pub connections_max: usize,
    /// Request body bytes passed to the origin for uncached methods. Default 8 MiB.
    pub request_body_bytes_max: usize,
    /// Largest object stored; bigger ones are streamed uncached. Default 256 MiB.
    pub object_bytes_max: u64,
    /// Bytes of bodies held in memory by fills in flight per shard, a hard bound: each fill holds
    /// at most `fill_window_bytes`, and a miss whose fill could take the shard past the bound is
    /// streamed to its viewer through a bounded buffer, uncached (arrow_fills_over_memory_total).
    /// Default 512 MiB.
    pub fill_buffer_bytes_max: u64,
    /// Body bytes one fill keeps in memory for its viewers; a viewer further behind reads what
    /// the disk writer has stored. Default 4 MiB.
    pub fill_window_bytes: u64,
    /// A viewer must receive at least this many bytes per second, averaged over each
    /// `send_rate_window_ms`, or its connection is closed (counted as a slow viewer). 0 disables.
    /// Default 1024.
    pub send_rate_min_bytes_per_s: u64,
    /// Bytes the kernel may queue for a viewer beyond those in flight (TCP_NOTSENT_LOWAT): what a
    /// viewer that stops reading holds in kernel memory, instead of a whole autotuned send buffer
    /// (several MiB on loopback). 0 keeps the kernel's default. Default 262144.
    pub send_unsent_bytes_max: u64,
    /// The window of `send_rate_min_bytes_per_s`. Default 30000 ms.
    pub send_rate_window_ms: u64,
    /// How long a body piece read for a viewer is kept in memory while the viewer's socket takes
    /// nothing; after it the piece is dropped and read again (RAM tier or disk) once the socket
    /// has room, so a slow viewer holds no body bytes beyond the kernel's socket buffer.
    /// Default 200 ms.
    pub send_hold_ms: u64,
    /// Concurrent origin fetches per shard. Default 256.
    pub fills_in_flight_max: usize,
    /// Origin connect timeout. Default 2000 ms.
    pub origin_connect_timeout_ms: u64,
    /// Origin time to response head. Default 10000 ms.
    pub origin_response_timeout_ms: u64,
    /// Extra origins tried after the first fails (bounded retries). Default 2.
    pub origin_retries_max: usize,
    /// Idle keep-alive connections kept per origin per shard. Default 32.
    pub origin_idle_connections_max: usize,
    /// Bounded depth of each cross-shard request channel. Default 1024.
    pub cross_shard_queue_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_bytes_max: 16 * 1024,
            headers_count_max: 64,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            body_timeout_ms: 30_000,
            connections_max: 20_000,
            request_body_bytes_max: 8 << 20,
            object_bytes_max: 256 << 20,
            fill_buffer_bytes_max: 512 << 20,
            fill_window_bytes: 4 << 20,
            send_rate_min_bytes_per_s: 1024,
            send_unsent_bytes_max: 256 << 10,
            send_rate_window_ms: 30_000,
            send_hold_ms: 200,
            fills_in_flight_max: 256,
            origin_connect_timeout_ms: 2_000,
            origin_response_timeout_ms: 10_000,
            origin_retries_max: 2,
            origin_idle_connections_max: 32,
            cross_shard_queue_max: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// RAM tier bytes per shard. Default 64 MiB.
    pub ram_tier_bytes: u64,
    /// Chunk size of large objects on disk. Default 1 MiB.
    pub chunk_bytes: u32,
    /// Bytes per shard of replicas: copies of small objects whose disk another shard owns,
    /// made on a cross-shard hit so the next hits of the key need no message to the owner
    /// (see `server/src/cache/replica.rs`). 0 turns replicas off. Default 16 MiB.
    pub replica_bytes_max: u64,
    /// The largest body a replica holds. Default 64 KiB.
    pub replica_object_bytes_max: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            ram_tier_bytes: 64 << 20,
            chunk_bytes: 1 << 20,
            replica_bytes_max: 16 << 20,
            replica_object_bytes_max: 64 << 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Slab file (created at `size_bytes`) or raw block device.
    pub path: PathBuf,
    /// Bytes of the slab; a disk never exceeds it.
    pub size_bytes: u64,
    /// Index of the shard (position in `node.cores`) that owns this disk. Default 0.
    #[serde(default)]
    pub shard: usize,
    /// "lru-sp" (default), "byte-mode" or "byte-freq".
    #[serde(default = "default_policy")]
    pub policy: String,
    /// I/O or checksum errors before the disk is taken offline. Default 16.
    #[serde(default = "default_error_threshold")]
    pub error_threshold: u32,
}

fn default_policy() -> String {
    "lru-sp".into()
}
fn default_error_threshold() -> u32 {
    16
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostRule {
    /// Host patterns: exact (`cdn.foo.com`), suffix (`*.foo.com`) or `*` for any host.
    pub hosts: Vec<String>,
    /// Leading technical labels dropped from the host to form the domain. Default 1.
    #[serde(default = "arrow_cluster::keys::default_technical_labels")]
    pub technical_labels: usize,
    /// Regex over the path selecting the hash input (capture group 1 if present, else the
    /// whole match). Default `^/[^/]+/[^/]+` (the first two path segments).
    #[serde(default = "arrow_cluster::keys::default_hash_input")]
    pub hash_input: String,
    /// Origin base URLs (`http://host:port`), tried in order of measured response time.
    pub origins: Vec<String>,
    /// Host header sent to the origin. Default: the viewer's Host.
    #[serde(default)]
    pub origin_host: Option<String>,
    /// Freshness given to responses that carry no explicit freshness. Default: none (such
    /// responses are not cached).
    #[serde(default)]
    pub default_ttl_s: Option<u64>,
    /// The query string in the cache key: `"drop"` (default: media segments and manifests whose
    /// queries are tokens or cache busters), `"keep"` (every parameter), or a list of the
    /// parameter names that select different content (`["quality", "lang"]`). Kept parameters
    /// are sorted by name in the key, so their order in the URL does not matter.
    #[serde(default)]
    pub query: Option<RawQuery>,
    /// Request headers set on every request to this rule's origins (replacing the viewer's
    /// field of the same name), e.g. `{ "X-Origin-Token" = "s3cr3t" }`. Default: none.
    #[serde(default)]
    pub origin_request_headers: std::collections::BTreeMap<String, String>,
    /// Viewer request headers never sent to this rule's origins, e.g. `["Cookie"]`. Default:
    /// none (every end-to-end header is forwarded).
    #[serde(default)]
    pub origin_request_headers_remove: Vec<String>,
    /// Pass CDN-Cache-Control on to viewers (when another CDN sits below this one). Default:
    /// false (Arrow honours it and removes it).
    #[serde(default)]
    pub keep_cdn_cache_control: bool,
    /// Heuristic freshness (RFC 9111 §4.2.2) for responses without explicit freshness that
    /// carry Last-Modified: this percentage of the time since it (10 is customary), at most a
    /// day. Default: none (only `default_ttl_s` applies).
    #[serde(default)]
    pub heuristic_freshness_percent: Option<u8>,
    /// Certificate chain (PEM) served to viewers asking for one of `hosts` by SNI, on the
    /// `[tls]` listeners. Default: the `[tls]` default certificate.
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// The private key of `tls_certificate`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that `https://` origins of this rule are verified against instead
    /// of the system's roots.
    #[serde(default)]
    pub origin_ca_file: Option<PathBuf>,
}

pub use arrow_cluster::keys::{QueryKey, RawQuery};

/// A validated host rule.
#[derive(Debug, Clone)]
pub struct HostRule {
    /// Hosts served and how their requests become keys (shared with the C library).
    pub key: arrow_cluster::KeyRule,
    pub origins: Vec<Origin>,
    pub origin_host: Option<String>,
    pub default_ttl_s: Option<u64>,
    /// Header lines (`Name: value\r\n`) set on requests to the origins.
    pub origin_headers_set: String,
    /// Lower-case names of viewer headers (and of the set ones) not forwarded as the viewer
    /// sent them.
    pub origin_headers_drop: Vec<String>,
    pub keep_cdn_cache_control: bool,
    pub heuristic_freshness_percent: Option<u8>,
    /// (certificate, key) paths for viewers asking for these hosts over TLS.
    pub tls_certificate: Option<(PathBuf, PathBuf)>,
}

/// One origin: where to connect and how to name it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub url: String,
    pub host_port: String,
    pub addr: SocketAddr,
    /// For `https://` origins: how to verify them and the name to ask for.
    pub tls: Option<OriginTls>,
}

#[derive(Debug, Clone)]
pub struct OriginTls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub name: rustls_pki_types::ServerName<'static>,
}

pub use arrow_cluster::OverflowConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: NodeConfig,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default, rename = "disk")]
    disks: Vec<DiskConfig>,
    #[serde(rename = "host")]
    hosts: Vec<RawHostRule>,
    #[serde(default)]
    cluster: Option<arrow_cluster::ClusterConfig>,
    #[serde(default)]
    dns: Option<arrow_dns::DnsConfig>,
    #[serde(default)]
    overflow: Option<OverflowConfig>,
    #[serde(default)]
    tls: Option<TlsConfig>,
}

/// A config error that names the key, and the line where the parser knows it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        let mut cfg = Config::parse_in(&text, &path.display().to_string(), base)?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Why `next` cannot replace this config without a restart: the first setting that differs
    /// among those a running node cannot change. A reload applies the `[[host]]` rules, the
    /// `[limits]` (all but `cross_shard_queue_max`, a channel's capacity) and the access log's
    /// path and format; the rest needs a restart.
    pub fn reload_refusal(&self, next: &Config) -> Option<String> {
        let same =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
        let (a, b) = (&self.node, &next.node);
        let fixed: [(&str, bool); 14] = [
            ("node.name", same(&a.name, &b.name)),
            ("node.cores", same(&a.cores, &b.cores)),
            ("node.listen", same(&a.listen, &b.listen)),
            ("node.admin_listen", same(&a.admin_listen, &b.admin_listen)),
            ("node.admin_token", same(&a.admin_token, &b.admin_token)),
            ("node.debug_headers", a.debug_headers == b.debug_headers),
            (
                "node.targeted_cache_control",
                a.targeted_cache_control == b.targeted_cache_control,
            ),
            (
                "limits.cross_shard_queue_max",
                self.limits.cross_shard_queue_max == next.limits.cross_shard_queue_max,
            ),
            ("[storage]", same(&self.storage, &next.storage)),
            ("[[disk]]", same(&self.disks, &next.disks)),
            ("[cluster]", same(&self.cluster, &next.cluster)),
            ("[dns]", same(&self.dns, &next.dns)),
            ("[overflow]", same(&self.overflow, &next.overflow)),
            (
                "tls.listen",
                self.tls.as_ref().map(|t| &t.listen) == next.tls.as_ref().map(|t| &t.listen),
            ),
        ];
        if let Some((what, _)) = fixed.iter().find(|(_, same)| !same) {
            return Some(format!(
                "{what} changed: it cannot change without a restart (a reload applies [[host]] rules, [limits], the access log and [tls] but its listeners)"
            ));
        }
        if a.access_log.is_some() && b.access_log.is_none() {
            return Some(
                "node.access_log removed: turning the access log off needs a restart".into(),
            );
        }
        None
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, None)
    }

    /// [`Config::parse`], with relative TLS file paths (certificates, keys, CA files, the ticket
    /// key file) taken from `base` (the config file's directory).
    pub fn parse_in(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            message: describe_toml_error(text, &e),
        })?;
        if let Some(base) = base {
            raw.resolve_tls_paths(base);
        }
        raw.validate().map_err(|(key, message)| ConfigError {
            file: file.to_string(),
            message: match find_key_line(text, &key) {
                Some(line) => format!("line {line}: key `{key}`: {message}"),
                None => format!("key `{key}`: {message}"),
            },
        })
    }
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// The first line whose key is the last dotted part of `key` (good enough to point a person at
/// the right place; the message names the full key anyway).
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let leaf = key.rsplit('.').next()?;
    let leaf = leaf.split('[').next()?;
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(leaf) && l[leaf.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
}

type KeyError = (String, String);

impl RawConfig {
    fn resolve_tls_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p.as_mut().filter(|x| x.is_relative()) {
                *x = base.join(&*x);
            }
        };
        if let Some(t) = self.tls.as_mut() {
            fix(&mut t.certificate);
            fix(&mut t.key);
            fix(&mut t.ticket_key_file);
        }
        for h in &mut self.hosts {
            fix(&mut h.tls_certificate);
            fix(&mut h.tls_key);
            fix(&mut h.origin_ca_file);
        }
    }

    fn validate(self) -> Result<Config, KeyError> {
        let node = self.node;
        if node.cores.is_empty() {
            return Err(("node.cores".into(), "needs at least one core".into()));
        }
        let available = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        for &c in &node.cores {
            if c >= available.max(1024) {
                return Err(("node.cores".into(), format!("core {c} does not exist")));
            }
        }
        if node.listen.is_empty() {
            return Err(("node.listen".into(), "needs at least one address".into()));
        }
        if !matches!(node.access_log_format.as_str(), "combined" | "json") {
            return Err((
                "node.access_log_format".into(),
                format!(
                    "{:?} is not \"combined\" or \"json\"",
                    node.access_log_format
                ),
            ));
        }
        if !crate::forward::is_token(&node.targeted_cache_control)
            || node
                .targeted_cache_control
                .eq_ignore_ascii_case("cache-control")
        {
            return Err((
                "node.targeted_cache_control".into(),
                format!(
                    "{:?} is not a field name of its own (e.g. \"Arrow-Cache-Control\")",
                    node.targeted_cache_control
                ),
            ));
        }
        if node.admin_listen.is_some() && node.admin_token.as_deref().unwrap_or("").len() < 8 {
            return Err((
                "node.admin_token".into(),
                "required (at least 8 characters) when admin_listen is set".into(),
            ));
        }
        let l = &self.limits;
        if l.headers_count_max > crate::http::HEADERS_COUNT_LIMIT {
            return Err((
                "limits.headers_count_max".into(),
                format!("must be at most {}", crate::http::HEADERS_COUNT_LIMIT),
            ));
        }
        if l.header_bytes_max < 256 || l.header_bytes_max > 1 << 20 {
            return Err((
                "limits.header_bytes_max".into(),
                "must be within 256..=1048576".into(),
            ));
        }
        for (key, v) in [
            ("limits.headers_count_max", l.headers_count_max as u64),
            ("limits.header_timeout_ms", l.header_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.body_timeout_ms", l.body_timeout_ms),
            ("limits.connections_max", l.connections_max as u64),
            ("limits.fills_in_flight_max", l.fills_in_flight_max as u64),
            (
                "limits.origin_connect_timeout_ms",
                l.origin_connect_timeout_ms,
            ),
            (
                "limits.origin_response_timeout_ms",
                l.origin_response_timeout_ms,
            ),
            (
                "limits.cross_shard_queue_max",
                l.cross_shard_queue_max as u64,
            ),
            ("limits.send_rate_window_ms", l.send_rate_window_ms),
        ] {
            if v == 0 {
                return Err((key.into(), "must be greater than 0".into()));
            }
        }
        if l.fill_window_bytes < 64 * 1024 || l.fill_window_bytes > l.fill_buffer_bytes_max {
            return Err((
                "limits.fill_window_bytes".into(),
                "must be at least 65536 and at most limits.fill_buffer_bytes_max".into(),
            ));
        }
        if self.storage.chunk_bytes < 4096 || !self.storage.chunk_bytes.is_multiple_of(4096) {
            return Err((
                "storage.chunk_bytes".into(),
                "must be a multiple of 4096".into(),
            ));
        }
        let mut seen_paths = std::collections::HashSet::new();
        let mut seen_identities: Vec<Option<(u64, u64)>> = Vec::new();
        for (i, d) in self.disks.iter().enumerate() {
            if d.shard >= node.cores.len() {
                return Err((
                    format!("disk[{i}].shard"),
                    format!(
                        "shard {} does not exist (node.cores has {} entries)",
                        d.shard,
                        node.cores.len()
                    ),
                ));
            }
            if d.size_bytes < 16 << 20 {
                return Err((
                    format!("disk[{i}].size_bytes"),
                    "must be at least 16 MiB".into(),
                ));
            }
            if d.policy
                .parse::<arrow_storage::policy::PolicyKind>()
                .is_err()
            {
                return Err((
                    format!("disk[{i}].policy"),
                    format!(
                        "unknown policy {:?} (lru-sp, byte-mode or byte-freq)",
                        d.policy
                    ),
                ));
            }
            if !seen_paths.insert(d.path.clone()) {
                return Err((
                    format!("disk[{i}].path"),
                    format!("{} is configured twice", d.path.display()),
                ));
            }
            // One file or device reached by two paths (a symlink, /dev/disk/by-id and /dev/sdX):
            // both entries would write the same slab.
            if let Ok(meta) = std::fs::metadata(&d.path) {
                use std::os::unix::fs::MetadataExt;
                let identity = if std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type())
                {
                    (0, meta.rdev())
                } else {
                    (meta.dev(), meta.ino())
                };
                if let Some(j) = seen_identities.iter().position(|x| *x == Some(identity)) {
                    return Err((
                        format!("disk[{i}].path"),
                        format!(
                            "{} is the same file or device as disk[{j}].path {}",
                            d.path.display(),
                            self.disks[j].path.display()
                        ),
                    ));
                }
                seen_identities.push(Some(identity));
            } else {
                seen_identities.push(None);
            }
        }
        if self.hosts.is_empty() {
            return Err(("host".into(), "at least one [[host]] rule is needed".into()));
        }
        let mut hosts = Vec::new();
        for (i, h) in self.hosts.into_iter().enumerate() {
            hosts.push(h.validate(i)?);
        }
        if let Some(t) = &self.tls {
            t.validate(&hosts)?;
        } else if let Some(i) = hosts.iter().position(|h| h.tls_certificate.is_some()) {
            return Err((
                format!("host[{i}].tls_certificate"),
                "needs a [tls] section with its listeners".into(),
            ));
        }
        if let Some(c) = &self.cluster {
            c.validate().map_err(|m| ("cluster".to_string(), m))?;
        }
        // The responder's own checks, so `check-config` refuses what `arrow run` would.
        if let Some(d) = &self.dns {
            d.validate()
                .map_err(|e| ("dns".to_string(), e.to_string()))?;
            arrow_dns::Zones::new(&d.zones)
                .map_err(|e| ("dns.zones".to_string(), e.to_string()))?;
        }
        if let Some(o) = &self.overflow {
            o.validate()
                .map_err(|(key, message)| (format!("overflow.{key}"), message))?;
        }
        Ok(Config {
            node,
            limits: self.limits,
            storage: self.storage,
            disks: self.disks,
            hosts,
            cluster: self.cluster,
            dns: self.dns,
            overflow: self.overflow,
            tls: self.tls,
            path: None,
        })
    }
}

impl RawHostRule {
    fn validate(self, i: usize) -> Result<HostRule, KeyError> {
        let key = arrow_cluster::KeyRule::new(
            &self.hosts,
            self.technical_labels,
            &self.hash_input,
            self.query,
        )
        .map_err(|e| (format!("host[{i}].{}", e.field), e.message))?;
        if self.origins.is_empty() {
            return Err((
                format!("host[{i}].origins"),
                "needs at least one origin".into(),
            ));
        }
        let mut origins = Vec::new();
        let mut origin_tls = None;
        for o in &self.origins {
            if o.starts_with("https://") && origin_tls.is_none() {
                origin_tls = Some(
                    crate::tls::client_config(self.origin_ca_file.as_deref())
                        .map_err(|m| (format!("host[{i}].origin_ca_file"), m))?,
                );
            }
            origins.push(
                parse_origin_with(o, origin_tls.clone())
                    .map_err(|m| (format!("host[{i}].origins"), m))?,
            );
        }
        let tls_certificate = match (self.tls_certificate, self.tls_key) {
            (Some(c), Some(k)) => {
                crate::tls::load_certified_key(&c, &k)
                    .map_err(|m| (format!("host[{i}].tls_certificate"), m))?;
                Some((c, k))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err((
                    format!("host[{i}].tls_key"),
                    "needed with tls_certificate".into(),
                ))
            }
            (None, Some(_)) => {
                return Err((
                    format!("host[{i}].tls_certificate"),
                    "needed with tls_key".into(),
                ))
            }
        };
        let mut origin_headers_set = String::new();
        let mut origin_headers_drop = Vec::new();
        for (name, value) in &self.origin_request_headers {
            let key = format!("host[{i}].origin_request_headers");
            if !crate::forward::is_token(name) {
                return Err((key, format!("{name:?} is not a header field name")));
            }
            if crate::forward::is_managed(name) {
                return Err((
                    key,
                    format!("{name} is managed by the cache and cannot be set"),
                ));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err((key, format!("the value of {name} holds control characters")));
            }
            origin_headers_set.push_str(&format!("{name}: {value}\r\n"));
            origin_headers_drop.push(name.to_ascii_lowercase());
        }
        for name in &self.origin_request_headers_remove {
            if !crate::forward::is_token(name) {
                return Err((
                    format!("host[{i}].origin_request_headers_remove"),
                    format!("{name:?} is not a header field name"),
                ));
            }
            origin_headers_drop.push(name.to_ascii_lowercase());
        }
        Ok(HostRule {
            key,
            origin_headers_set,
            origin_headers_drop,
            keep_cdn_cache_control: self.keep_cdn_cache_control,
            heuristic_freshness_percent: match self.heuristic_freshness_percent {
                Some(p) if !(1..=100).contains(&p) => {
                    return Err((
                        format!("host[{i}].heuristic_freshness_percent"),
                        format!("{p} is not within 1..=100"),
                    ))
                }
                p => p,
            },
            origins,
            origin_host: self.origin_host,
            default_ttl_s: self.default_ttl_s,
            tls_certificate,
        })
    }
}

impl TlsConfig {
    fn validate(&self, hosts: &[HostRule]) -> Result<(), KeyError> {
        if self.listen.is_empty() {
            return Err(("tls.listen".into(), "needs at least one address".into()));
        }
        match (&self.certificate, &self.key) {
            (Some(c), Some(k)) => {
                crate::tls::load_certified_key(c, k).map_err(|m| ("tls.certificate".into(), m))?;
            }
            (None, None) => {
                if hosts.iter().all(|h| h.tls_certificate.is_none()) {
                    return Err((
                        "tls.certificate".into(),
                        "needed: no [[host]] rule has a tls_certificate either".into(),
                    ));
                }
            }
            (Some(_), None) => return Err(("tls.key".into(), "needed with certificate".into())),
            (None, Some(_)) => return Err(("tls.certificate".into(), "needed with key".into())),
        }
        if !matches!(self.ktls.as_str(), "auto" | "off") {
            return Err((
                "tls.ktls".into(),
                format!("{:?} is not \"auto\" or \"off\"", self.ktls),
            ));
        }
        let known = crate::tls::known_suites();
        if let Some(bad) = self
            .cipher_suites
            .iter()
            .find(|c| !known.contains(&c.as_str()))
        {
            return Err((
                "tls.cipher_suites".into(),
                format!("{bad:?} is not one of {}", known.join(", ")),
            ));
        }
        if let Some(f) = &self.ticket_key_file {
            crate::tls::TicketKeys::from_file(f, self.ticket_rotation_s)
                .map_err(|m| ("tls.ticket_key_file".into(), m))?;
        }
        if self.ticket_rotation_s > TICKET_ROTATION_MAX_S {
            return Err((
                "tls.ticket_rotation_s".into(),
                format!(
                    "must be at most {TICKET_ROTATION_MAX_S} (a ticket lives up to two periods; RFC 8446 caps ticket lifetimes at 7 days)"
                ),
            ));
        }
        for (key, v) in [
            ("tls.ticket_rotation_s", self.ticket_rotation_s),
            ("tls.handshake_timeout_ms", self.handshake_timeout_ms),
            (
                "tls.handshakes_in_flight_max",
                self.handshakes_in_flight_max as u64,
            ),
        ] {
            if v == 0 {
                return Err((key.into(), "must be above 0".into()));
            }
        }
        Ok(())
    }
}

/// Parse and resolve a plain origin base URL (`http://host:port`).
pub fn parse_origin(s: &str) -> Result<Origin, String> {
    parse_origin_with(s, None)
}

/// Parse and resolve an origin base URL: `http://host:port`, or `https://host:port` verified
/// with `tls` (a client configuration; required for https).
pub fn parse_origin_with(
    s: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Origin, String> {
    let url = url::Url::parse(s).map_err(|e| format!("bad origin URL {s:?}: {e}"))?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "origin {s:?}: scheme {other:?} is not http:// or https://"
            ))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("origin {s:?} has no host"))?;
    let tls = match (https, tls) {
        (false, _) => None,
        (true, None) => return Err(format!("origin {s:?}: no TLS configuration")),
        (true, Some(config)) => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(bare.to_string())
                .map_err(|e| format!("origin {s:?}: {host} is not a TLS server name: {e}"))?;
            Some(OriginTls { config, name })
        }
    };
    let default_port = if https { 443 } else { 80 };
    let port = url.port_or_known_default().unwrap_or(default_port);
    let host_port = if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    use std::net::ToSocketAddrs;
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("origin {s:?}: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("origin {s:?}: {host} has no address"))?;
    Ok(Origin {
        url: s.trim_end_matches('/').to_string(),
        host_port,
        addr,
        tls,
    })
}

impl HostRule {
    /// Does this rule serve `host` (lower case, no port)?
    pub fn matches(&self, host: &str) -> bool {
        self.key.matches(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[node]
listen = ["127.0.0.1:8080"]

[[host]]
hosts = ["*.claw.ac"]
technical_labels = 2
origins = ["http://127.0.0.1:9000"]
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(c.node.cores, vec![0]);
        assert_eq!(c.limits.header_bytes_max, 16384);
        assert!(c.hosts[0].matches("c.dx.claw.ac"));
        assert!(!c.hosts[0].matches("claw.ac"));
        assert!(!c.hosts[0].matches("xclaw.ac"));
    }

    #[test]
    fn dns_settings_are_checked_by_check_config() {
        let bad_zone = format!(
            "{MINIMAL}\n[dns]\nlisten = [\"127.0.0.1:0\"]\n[[dns.zones]]\nname = \"dx..bad\"\ndomain = \"claw.ac\"\nns = [\"ns1.dx.claw.ac\"]\n"
        );
        let e = Config::parse(&bad_zone, "t.toml").unwrap_err().to_string();
        assert!(e.contains("dns.zones") && e.contains("dx..bad"), "{e}");
        let no_listener = format!("{MINIMAL}\n[dns]\nlisten = []\n");
        let e = Config::parse(&no_listener, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `dns`"), "{e}");
    }

    #[test]
    fn unknown_key_is_rejected_with_line() {
        let text = MINIMAL.replace("technical_labels = 2", "technical_labels = 2\nttl = 5");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("unknown field `ttl`"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn bad_regex_names_key_and_line() {
        let text = MINIMAL.replace("technical_labels = 2", "hash_input = \"(\"");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("host[0].hash_input"), "{e}");
        assert!(e.contains("line 7"), "{e}");
    }

    #[test]
    fn a_fill_window_outside_its_bounds_is_rejected() {
        for window in ["1024", "1073741824"] {
            let text = format!("{MINIMAL}\n[limits]\nfill_window_bytes = {window}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(e.contains("limits.fill_window_bytes"), "{e}");
        }
        let text = format!("{MINIMAL}\n[limits]\nfill_window_bytes = 1048576\n");
        assert_eq!(
            Config::parse(&text, "t.toml")
                .unwrap()
                .limits
                .fill_window_bytes,
            1 << 20
        );
        let text = format!("{MINIMAL}\n[limits]\nsend_rate_window_ms = 0\n");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("limits.send_rate_window_ms"), "{e}");
    }

    #[test]
    fn disk_on_missing_shard_is_rejected() {
        let text = format!(
            "{MINIMAL}\n[[disk]]\npath = \"/tmp/x.slab\"\nsize_bytes = 67108864\nshard = 3\n"
        );
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("disk[0].shard"), "{e}");
    }

    #[test]
    fn every_policy_name_is_accepted_and_others_are_not() {
        for name in ["lru-sp", "byte-mode", "byte-freq"] {
            let text = format!(
                "{MINIMAL}\n[[disk]]\npath = \"/tmp/x.slab\"\nsize_bytes = 67108864\npolicy = \"{name}\"\n"
            );
            let c = Config::parse(&text, "t.toml").unwrap();
            assert_eq!(c.disks[0].policy, name);
        }
        let text = format!(
            "{MINIMAL}\n[[disk]]\npath = \"/tmp/x.slab\"\nsize_bytes = 67108864\npolicy = \"lfu\"\n"
        );
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("disk[0].policy") && e.contains("byte-freq"),
            "{e}"
        );
    }

    #[test]
    fn origins_are_http_or_https_and_a_bad_ca_file_is_named() {
        let text = MINIMAL.replace("http://127.0.0.1:9000", "ftp://127.0.0.1:9000");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("host[0].origins") && e.contains("\"ftp\""),
            "{e}"
        );
        let text = MINIMAL.replace(
            "origins = [\"http://127.0.0.1:9000\"]",
            "origins = [\"https://127.0.0.1:9443\"]\norigin_ca_file = \"/nonexistent/ca.pem\"",
        );
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("host[0].origin_ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn tls_needs_listeners_and_certificates_that_load() {
        let e = Config::parse(
            &format!("{MINIMAL}\n[tls]\nlisten = [\"127.0.0.1:0\"]\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tls.certificate") && e.contains("needed"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let text = format!(
            "{MINIMAL}\n[tls]\nlisten = [\"127.0.0.1:0\"]\ncertificate = \"{c}\"\nkey = \"{c}\"\n",
            c = cert.display()
        );
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("key `tls.certificate`") && e.contains("c.pem"),
            "{e}"
        );
    }
}
