//! Typed configuration of the responder (serde, unknown keys rejected).
//!
//! `DnsConfig` is the raw stage as read from TOML; [`crate::Zones::new`] is the validated stage
//! that parses every name once and builds the records answered at run time.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use crate::error::DnsError;

/// The responder: where it listens, which zones it is authoritative for, where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to serve on; each one gets a UDP socket and a TCP listener on the same port
    /// (port 0: the kernel picks one for UDP and TCP reuses it). Required, at least one.
    pub listen: Vec<SocketAddr>,
    /// Zones answered authoritatively; every other name is REFUSED. Default: none.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// CPU core the responder's thread is pinned to. Default: not pinned.
    #[serde(default)]
    pub core: Option<usize>,
    /// Open TCP connections at most. When all are open, a new connection evicts the one idle the
    /// longest (waiting for the first byte of its next query); if none is idle, the new one is
    /// accepted and closed at once. Default 256.
    #[serde(default = "default_tcp_connections_max")]
    pub tcp_connections_max: usize,
    /// Open TCP connections from one source address at most (IPv4-mapped IPv6 counts as the
    /// IPv4 address); further ones from that address are accepted and closed at once, so one
    /// client cannot take every slot. Within `1..=tcp_connections_max`. Default 16.
    #[serde(default = "default_tcp_connections_per_source_max")]
    pub tcp_connections_per_source_max: usize,
    /// A TCP connection waiting this long for the first byte of its next query is closed.
    /// Default 10000.
    #[serde(default = "default_tcp_idle_ms")]
    pub tcp_idle_ms: u64,
    /// Once the first byte of a TCP query (its length prefix) has arrived, the whole query must
    /// arrive within this long, and its answer must then be written within this long; else the
    /// connection is closed (a client dribbling bytes cannot hold it). Default 500 (as Knot's
    /// `tcp-io-timeout`).
    #[serde(default = "default_tcp_message_ms")]
    pub tcp_message_ms: u64,
}

impl DnsConfig {
    /// Checks the server-level settings (zones are validated by [`crate::Zones::new`]); the
    /// error names the offending key.
    pub fn validate(&self) -> Result<(), DnsError> {
        let bad = |reason: String| Err(DnsError::Server { reason });
        if self.listen.is_empty() {
            return bad("listen: at least one address is required".to_string());
        }
        if self.tcp_connections_max == 0 {
            return bad("tcp_connections_max: must be at least 1".to_string());
        }
        if self.tcp_connections_per_source_max == 0
            || self.tcp_connections_per_source_max > self.tcp_connections_max
        {
            return bad(format!(
                "tcp_connections_per_source_max: {} is not within 1..=tcp_connections_max ({})",
                self.tcp_connections_per_source_max, self.tcp_connections_max
            ));
        }
        if self.tcp_idle_ms == 0 {
            return bad("tcp_idle_ms: must be at least 1".to_string());
        }
        if self.tcp_message_ms == 0 {
            return bad("tcp_message_ms: must be at least 1".to_string());
        }
        Ok(())
    }
}

/// One zone delegated to the cluster, e.g. `dx.claw.ac` for customer domain `claw.ac`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone apex, e.g. `dx.claw.ac` (trailing dot optional, case-insensitive). Required.
    pub name: String,
    /// The customer domain that prefixes cluster keys: `<32 hex>.dx.claw.ac` asks the directory
    /// for cluster key `claw.ac<32 hex>`. Required.
    pub domain: String,
    /// Name servers of the zone (the apex NS RRset). Required, at least one.
    pub ns: Vec<String>,
    /// Addresses of name servers (or any in-zone host): name → addresses. Answered in the
    /// additional section of NS answers, and as A/AAAA when the name is inside the zone.
    /// Default: none.
    #[serde(default)]
    pub glue: BTreeMap<String, Vec<IpAddr>>,
    /// SOA MNAME (primary server). Default: the first `ns`.
    #[serde(default)]
    pub soa_mname: Option<String>,
    /// SOA RNAME (responsible mailbox, dotted). Default: `hostmaster.<name>`.
    #[serde(default)]
    pub soa_rname: Option<String>,
    /// SOA serial. Default 1.
    #[serde(default = "default_soa_serial")]
    pub soa_serial: u32,
    /// SOA refresh. Default 3600.
    #[serde(default = "default_soa_refresh_s")]
    pub soa_refresh_s: u32,
    /// SOA retry. Default 600.
    #[serde(default = "default_soa_retry_s")]
    pub soa_retry_s: u32,
    /// SOA expire. Default 604800.
    #[serde(default = "default_soa_expire_s")]
    pub soa_expire_s: u32,
    /// TTL of the apex SOA and NS records and of glue. Default 3600.
    #[serde(default = "default_apex_ttl_s")]
    pub apex_ttl_s: u32,
    /// TTL of a content-aware CNAME (`<32 hex>.<zone>` → designated node). Default 300.
    #[serde(default = "default_content_ttl_s")]
    pub content_ttl_s: u32,
    /// TTL of a CNAME to a node chosen by brpu headroom (any other name). Default 5.
    #[serde(default = "default_headroom_ttl_s")]
    pub headroom_ttl_s: u32,
    /// Host of the third-party CDN that takes overflow (`Answer::Overflow`, or no node in
    /// service). Default: none — such queries get SERVFAIL.
    #[serde(default)]
    pub overflow_cname: Option<String>,
    /// TTL of a CNAME to the overflow host. Default 5.
    #[serde(default = "default_overflow_ttl_s")]
    pub overflow_ttl_s: u32,
    /// Node addresses: node name (as the directory returns it) → addresses. A CNAME to a node
    /// listed here carries the node's A/AAAA in the answer, as in the seed's PoC; node names
    /// inside the zone are also answered as A/AAAA. Default: none.
    #[serde(default)]
    pub nodes: BTreeMap<String, Vec<IpAddr>>,
    /// TTL of node A/AAAA records. Default 3600.
    #[serde(default = "default_node_ttl_s")]
    pub node_ttl_s: u32,
    /// Negative caching TTL (RFC 2308): the SOA MINIMUM and the TTL of the SOA sent with
    /// NXDOMAIN and NODATA. Default 60.
    #[serde(default = "default_negative_ttl_s")]
    pub negative_ttl_s: u32,
}

/// The zone `arrow demo --dns-listen` serves: `dx.demo.test` for domain `demo.test`, one name
/// server `ns1.dx.demo.test` at 127.0.0.1, no overflow host and no node addresses.
pub fn demo_zone() -> ZoneConfig {
    let mut glue = BTreeMap::new();
    glue.insert(
        "ns1.dx.demo.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    );
    ZoneConfig {
        name: "dx.demo.test".to_string(),
        domain: "demo.test".to_string(),
        ns: vec!["ns1.dx.demo.test".to_string()],
        glue,
        soa_mname: None,
        soa_rname: None,
        soa_serial: default_soa_serial(),
        soa_refresh_s: default_soa_refresh_s(),
        soa_retry_s: default_soa_retry_s(),
        soa_expire_s: default_soa_expire_s(),
        apex_ttl_s: default_apex_ttl_s(),
        content_ttl_s: default_content_ttl_s(),
        headroom_ttl_s: default_headroom_ttl_s(),
        overflow_cname: None,
        overflow_ttl_s: default_overflow_ttl_s(),
        nodes: BTreeMap::new(),
        node_ttl_s: default_node_ttl_s(),
        negative_ttl_s: default_negative_ttl_s(),
    }
}

fn default_tcp_connections_max() -> usize {
    256
}
fn default_tcp_connections_per_source_max() -> usize {
    16
}
fn default_tcp_idle_ms() -> u64 {
    10_000
}
fn default_tcp_message_ms() -> u64 {
    500
}
fn default_soa_serial() -> u32 {
    1
}
fn default_soa_refresh_s() -> u32 {
    3600
}
fn default_soa_retry_s() -> u32 {
    600
}
fn default_soa_expire_s() -> u32 {
    604_800
}
fn default_apex_ttl_s() -> u32 {
    3600
}
fn default_content_ttl_s() -> u32 {
    300
}
fn default_headroom_ttl_s() -> u32 {
    5
}
fn default_overflow_ttl_s() -> u32 {
    5
}
fn default_node_ttl_s() -> u32 {
    3600
}
fn default_negative_ttl_s() -> u32 {
    60
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults_parses() {
        let text = r#"
            listen = ["127.0.0.1:5353"]
            [[zones]]
            name = "dx.claw.ac"
            domain = "claw.ac"
            ns = ["ns1.dx.claw.ac"]
            overflow_cname = "claw.cdn.example.net"
            [zones.glue]
            "ns1.dx.claw.ac" = ["192.0.2.1", "2001:db8::1"]
            [zones.nodes]
            "n01.lax.hw.hyvd.net" = ["3.3.3.1"]
        "#;
        let cfg: DnsConfig = toml::from_str(text).expect("parses");
        assert_eq!(cfg.tcp_connections_max, 256);
        assert_eq!(cfg.tcp_connections_per_source_max, 16);
        assert_eq!(cfg.tcp_idle_ms, 10_000);
        assert_eq!(cfg.tcp_message_ms, 500);
        assert_eq!(cfg.core, None);
        cfg.validate().expect("defaults are valid");
        let zone = &cfg.zones[0];
        assert_eq!(zone.content_ttl_s, 300);
        assert_eq!(zone.headroom_ttl_s, 5);
        assert_eq!(zone.node_ttl_s, 3600);
        assert_eq!(zone.glue["ns1.dx.claw.ac"].len(), 2);
        crate::Zones::new(&cfg.zones).expect("validates");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = r#"
            listen = ["127.0.0.1:5353"]
            tcp_idle = 5
        "#;
        assert!(toml::from_str::<DnsConfig>(text).is_err());
    }

    #[test]
    fn invalid_tcp_limits_name_their_key() {
        let base: DnsConfig = toml::from_str(r#"listen = ["127.0.0.1:5353"]"#).unwrap();
        type Change = fn(&mut DnsConfig);
        let cases: [(&str, Change); 6] = [
            ("tcp_connections_max", |c| c.tcp_connections_max = 0),
            ("tcp_connections_per_source_max", |c| {
                c.tcp_connections_per_source_max = 0
            }),
            ("tcp_connections_per_source_max", |c| {
                c.tcp_connections_per_source_max = c.tcp_connections_max + 1
            }),
            ("tcp_idle_ms", |c| c.tcp_idle_ms = 0),
            ("tcp_message_ms", |c| c.tcp_message_ms = 0),
            ("listen", |c| c.listen.clear()),
        ];
        for (key, change) in cases {
            let mut cfg = base.clone();
            change(&mut cfg);
            let err = cfg.validate().expect_err(key).to_string();
            assert!(err.contains(&format!("{key}:")), "{key}: {err}");
        }
        let cfg: DnsConfig = toml::from_str(
            r#"
            listen = ["127.0.0.1:5353"]
            tcp_connections_max = 8
            tcp_connections_per_source_max = 8
            tcp_message_ms = 250
        "#,
        )
        .unwrap();
        cfg.validate().expect("valid");
        assert_eq!(cfg.tcp_message_ms, 250);
    }

    #[test]
    fn demo_zone_validates() {
        crate::Zones::new(&[demo_zone()]).expect("demo zone is valid");
    }
}
