//! Validated zones and the classification of a query name within them.
//!
//! Names inside a zone fall into exactly one class (see [`NameClass`]):
//! - the apex: SOA, NS (with glue in the additional section);
//! - a configured host (glue or node name inside the zone): A/AAAA;
//! - one label below the apex, 32 hex digits: a content-aware CNAME to the designated node;
//! - any other single label below the apex: a CNAME to a node chosen by brpu headroom;
//! - an ancestor of a configured host (empty non-terminal): NODATA;
//! - anything deeper: NXDOMAIN.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record};

use crate::config::ZoneConfig;
use crate::error::DnsError;

/// Length of the md5 hex label of a content-aware name.
pub const CONTENT_LABEL_BYTES: usize = 32;
/// Wire length of a domain name at most (RFC 1035 §2.3.4), root byte included.
const NAME_WIRE_BYTES_MAX: usize = 255;
/// Labels in a domain name at most.
const NAME_LABELS_MAX: usize = 127;

/// A name lowercased into its wire form (length-prefixed labels, no root byte), on the stack:
/// the key zones and hosts are looked up by, with no allocation per query.
pub(crate) struct LowerName {
    bytes: [u8; NAME_WIRE_BYTES_MAX],
    len_bytes: usize,
    /// Offset of each label's length byte in `bytes`.
    starts: [u8; NAME_LABELS_MAX],
    labels: usize,
}

impl LowerName {
    /// `None` for a name longer than the wire format allows (never for a decoded name).
    pub(crate) fn new(name: &Name) -> Option<LowerName> {
        let mut lower = LowerName {
            bytes: [0; NAME_WIRE_BYTES_MAX],
            len_bytes: 0,
            starts: [0; NAME_LABELS_MAX],
            labels: 0,
        };
        for label in name.iter() {
            let end = lower.len_bytes + 1 + label.len();
            if end >= NAME_WIRE_BYTES_MAX || lower.labels >= NAME_LABELS_MAX || label.len() > 63 {
                return None;
            }
            lower.starts[lower.labels] = u8::try_from(lower.len_bytes).ok()?;
            lower.bytes[lower.len_bytes] = label.len() as u8;
            for (dst, src) in lower.bytes[lower.len_bytes + 1..end].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            lower.len_bytes = end;
            lower.labels += 1;
        }
        Some(lower)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len_bytes]
    }

    /// The last `labels` labels, if the name has that many.
    fn suffix(&self, labels: usize) -> Option<&[u8]> {
        let first = self.labels.checked_sub(labels)?;
        if first == self.labels {
            return Some(&[]);
        }
        Some(&self.bytes[usize::from(self.starts[first])..self.len_bytes])
    }

    fn first_label(&self) -> &[u8] {
        if self.labels == 0 {
            return &[];
        }
        &self.bytes[1..1 + usize::from(self.bytes[0])]
    }
}

fn key_of(name: &Name) -> Option<Box<[u8]>> {
    LowerName::new(name).map(|l| l.as_bytes().into())
}

/// All zones the responder is authoritative for, validated and ready to answer.
#[derive(Debug, Clone)]
pub struct Zones {
    /// Most specific (longest apex) first, so a child zone wins over its parent.
    zones: Vec<Zone>,
}

/// Addresses of one name, each with the TTL it is answered with.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostAddrs {
    pub(crate) addrs: Vec<(IpAddr, u32)>,
}

/// A node the directory may return, with its parsed name and configured addresses.
#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    pub(crate) name: Name,
    pub(crate) addrs: Vec<IpAddr>,
}

/// One validated zone.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub(crate) apex: Name,
    apex_key: Box<[u8]>,
    apex_labels: usize,
    pub(crate) domain: String,
    pub(crate) soa: Record,
    pub(crate) soa_negative: Record,
    pub(crate) ns: Vec<Record>,
    pub(crate) ns_glue: Vec<Record>,
    /// Keyed by [`LowerName`] bytes.
    hosts: HashMap<Box<[u8]>, HostAddrs>,
    empty_non_terminals: HashSet<Box<[u8]>>,
    /// Keyed by the lowercase node name without trailing dot.
    pub(crate) nodes: HashMap<String, NodeEntry>,
    pub(crate) content_ttl_s: u32,
    pub(crate) headroom_ttl_s: u32,
    pub(crate) overflow: Option<Name>,
    pub(crate) overflow_ttl_s: u32,
    pub(crate) node_ttl_s: u32,
}

/// What a lowercase query name is within a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameClass<'z> {
    Apex,
    Host(&'z HostAddrs),
    /// The lowercase 32-hex label.
    Content(String),
    Headroom,
    EmptyNonTerminal,
    NxDomain,
}

impl std::fmt::Debug for LowerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LowerName({:?})",
            String::from_utf8_lossy(self.as_bytes())
        )
    }
}

impl PartialEq for HostAddrs {
    fn eq(&self, other: &Self) -> bool {
        self.addrs == other.addrs
    }
}
impl Eq for HostAddrs {}

fn parse_name(zone: &str, field: &'static str, text: &str) -> Result<Name, DnsError> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DnsError::Config {
            zone: zone.to_string(),
            reason: format!("{field}: {text:?} is not a domain name"),
        });
    }
    let mut name = Name::from_ascii(text).map_err(|e| DnsError::Config {
        zone: zone.to_string(),
        reason: format!("{field}: {text:?} is not a domain name: {e}"),
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn secs_i32(zone: &str, field: &'static str, value_s: u32) -> Result<i32, DnsError> {
    i32::try_from(value_s).map_err(|_| DnsError::Config {
        zone: zone.to_string(),
        reason: format!("{field}: {value_s} exceeds 2^31-1"),
    })
}

/// Lowercase node name without the trailing dot: the key the directory's answers are looked up by.
pub(crate) fn node_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zones {
    /// Validates the configured zones: names parse, apexes are unique, every zone has name
    /// servers and a customer domain.
    pub fn new(configs: &[ZoneConfig]) -> Result<Zones, DnsError> {
        let mut zones = Vec::with_capacity(configs.len());
        for cfg in configs {
            let zone = Zone::new(cfg)?;
            if zones.iter().any(|z: &Zone| z.apex == zone.apex) {
                return Err(DnsError::Config {
                    zone: cfg.name.clone(),
                    reason: "zone configured twice".to_string(),
                });
            }
            zones.push(zone);
        }
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex_labels));
        Ok(Zones { zones })
    }

    /// The most specific zone containing `name`, if any.
    pub(crate) fn find(&self, name: &LowerName) -> Option<&Zone> {
        self.zones
            .iter()
            .find(|z| name.suffix(z.apex_labels) == Some(&z.apex_key[..]))
    }

    /// How many zones are configured.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// True when no zone is configured (every query is REFUSED).
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

impl Zone {
    fn new(cfg: &ZoneConfig) -> Result<Zone, DnsError> {
        let zone = cfg.name.as_str();
        let apex = parse_name(zone, "name", &cfg.name)?;
        if apex.is_root() {
            return Err(DnsError::Config {
                zone: zone.to_string(),
                reason: "name: the root zone cannot be served".to_string(),
            });
        }
        let domain = cfg.domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DnsError::Config {
                zone: zone.to_string(),
                reason: format!("domain: {:?} is not a customer domain", cfg.domain),
            });
        }
        if cfg.ns.is_empty() {
            return Err(DnsError::Config {
                zone: zone.to_string(),
                reason: "ns: at least one name server is required".to_string(),
            });
        }
        let ns_names = cfg
            .ns
            .iter()
            .map(|n| parse_name(zone, "ns", n))
            .collect::<Result<Vec<_>, _>>()?;
        let mname = match &cfg.soa_mname {
            Some(m) => parse_name(zone, "soa_mname", m)?,
            None => ns_names[0].clone(),
        };
        let rname = match &cfg.soa_rname {
            Some(r) => parse_name(zone, "soa_rname", r)?,
            None => parse_name(zone, "soa_rname", &format!("hostmaster.{}", apex))?,
        };
        let soa_data = SOA::new(
            mname,
            rname,
            cfg.soa_serial,
            secs_i32(zone, "soa_refresh_s", cfg.soa_refresh_s)?,
            secs_i32(zone, "soa_retry_s", cfg.soa_retry_s)?,
            secs_i32(zone, "soa_expire_s", cfg.soa_expire_s)?,
            cfg.negative_ttl_s,
        );
        let soa = Record::from_rdata(apex.clone(), cfg.apex_ttl_s, RData::SOA(soa_data.clone()));
        // RFC 2308 §5: the SOA of a negative answer carries min(SOA TTL, MINIMUM).
        let soa_negative = Record::from_rdata(
            apex.clone(),
            cfg.apex_ttl_s.min(cfg.negative_ttl_s),
            RData::SOA(soa_data),
        );
        let ns = ns_names
            .iter()
            .map(|n| Record::from_rdata(apex.clone(), cfg.apex_ttl_s, RData::NS(NS(n.clone()))))
            .collect();

        let mut glue = HashMap::new();
        for (host, addrs) in &cfg.glue {
            let name = parse_name(zone, "glue", host)?;
            let entry: &mut HostAddrs = glue.entry(name).or_default();
            entry
                .addrs
                .extend(addrs.iter().map(|a| (*a, cfg.apex_ttl_s)));
        }
        let mut ns_glue = Vec::new();
        for ns_name in &ns_names {
            if let Some(host) = glue.get(ns_name) {
                ns_glue.extend(
                    host.addrs
                        .iter()
                        .map(|(a, ttl)| addr_record(ns_name, *a, *ttl)),
                );
            }
        }

        let mut nodes = HashMap::new();
        let mut hosts: HashMap<Name, HostAddrs> = glue
            .into_iter()
            .filter(|(name, _)| apex.zone_of_case(name) && *name != apex)
            .collect();
        for (node, addrs) in &cfg.nodes {
            let name = parse_name(zone, "nodes", node)?;
            if apex.zone_of_case(&name) && name != apex {
                hosts
                    .entry(name.clone())
                    .or_default()
                    .addrs
                    .extend(addrs.iter().map(|a| (*a, cfg.node_ttl_s)));
            }
            nodes.insert(
                node_key(node),
                NodeEntry {
                    name,
                    addrs: addrs.clone(),
                },
            );
        }
        let apex_labels = apex.iter().count();
        let too_long = |name: &Name| DnsError::Config {
            zone: zone.to_string(),
            reason: format!("{name} is too long"),
        };
        let apex_key = key_of(&apex).ok_or_else(|| too_long(&apex))?;
        let mut empty_non_terminals = HashSet::new();
        for host in hosts.keys() {
            let labels = host.iter().count();
            for keep in (apex_labels + 1)..labels {
                let ancestor = host.trim_to(keep);
                if !hosts.contains_key(&ancestor) {
                    empty_non_terminals.insert(key_of(&ancestor).ok_or_else(|| too_long(host))?);
                }
            }
        }
        let hosts = hosts
            .into_iter()
            .map(|(name, addrs)| Ok((key_of(&name).ok_or_else(|| too_long(&name))?, addrs)))
            .collect::<Result<HashMap<_, _>, DnsError>>()?;
        let overflow = match &cfg.overflow_cname {
            Some(o) => Some(parse_name(zone, "overflow_cname", o)?),
            None => None,
        };
        Ok(Zone {
            apex,
            apex_key,
            apex_labels,
            domain,
            soa,
            soa_negative,
            ns,
            ns_glue,
            hosts,
            empty_non_terminals,
            nodes,
            content_ttl_s: cfg.content_ttl_s,
            headroom_ttl_s: cfg.headroom_ttl_s,
            overflow,
            overflow_ttl_s: cfg.overflow_ttl_s,
            node_ttl_s: cfg.node_ttl_s,
        })
    }

    /// Classifies `name`, a name inside this zone.
    pub(crate) fn classify(&self, name: &LowerName) -> NameClass<'_> {
        debug_assert_eq!(name.suffix(self.apex_labels), Some(&self.apex_key[..]));
        if let Some(host) = self.hosts.get(name.as_bytes()) {
            return NameClass::Host(host);
        }
        if name.labels == self.apex_labels {
            return NameClass::Apex;
        }
        if self.empty_non_terminals.contains(name.as_bytes()) {
            return NameClass::EmptyNonTerminal;
        }
        if name.labels > self.apex_labels + 1 {
            return NameClass::NxDomain;
        }
        let label = name.first_label();
        if label.len() == CONTENT_LABEL_BYTES && label.iter().all(u8::is_ascii_hexdigit) {
            // ASCII hex, already lowercase.
            NameClass::Content(String::from_utf8_lossy(label).into_owned())
        } else {
            NameClass::Headroom
        }
    }
}

/// An A or AAAA record for `name`.
pub(crate) fn addr_record(name: &Name, addr: IpAddr, ttl_s: u32) -> Record {
    let rdata = match addr {
        IpAddr::V4(v4) => RData::A(v4.into()),
        IpAddr::V6(v6) => RData::AAAA(v6.into()),
    };
    Record::from_rdata(name.clone(), ttl_s, rdata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::demo_zone;
    use std::str::FromStr;

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_str(s).expect("name")).expect("fits")
    }

    #[test]
    fn names_are_classified() {
        let mut cfg = demo_zone();
        cfg.nodes.insert(
            "n1.pop.dx.demo.test".into(),
            vec!["192.0.2.9".parse().unwrap()],
        );
        let zones = Zones::new(&[cfg]).expect("valid");
        let zone = zones.find(&lower("dx.demo.test.")).expect("zone");
        assert_eq!(zone.classify(&lower("dx.demo.test.")), NameClass::Apex);
        assert!(matches!(
            zone.classify(&lower("ns1.dx.demo.test.")),
            NameClass::Host(_)
        ));
        assert!(matches!(
            zone.classify(&lower("n1.pop.dx.demo.test.")),
            NameClass::Host(_)
        ));
        assert_eq!(
            zone.classify(&lower("pop.dx.demo.test.")),
            NameClass::EmptyNonTerminal
        );
        assert_eq!(
            zone.classify(&lower("aa22fad1ed4a441d54fa664f53d5b0ee.dx.demo.test.")),
            NameClass::Content("aa22fad1ed4a441d54fa664f53d5b0ee".into())
        );
        assert_eq!(
            zone.classify(&lower("c.dx.demo.test.")),
            NameClass::Headroom
        );
        assert_eq!(
            zone.classify(&lower("a.b.dx.demo.test.")),
            NameClass::NxDomain
        );
        assert!(zones.find(&lower("demo.test.")).is_none());
    }

    #[test]
    fn child_zone_wins_over_parent() {
        let mut parent = demo_zone();
        parent.name = "demo.test".into();
        let zones = Zones::new(&[parent, demo_zone()]).expect("valid");
        let zone = zones.find(&lower("x.dx.demo.test.")).expect("zone");
        assert_eq!(zone.apex, Name::from_str("dx.demo.test.").unwrap());
    }

    #[test]
    fn bad_config_is_an_error() {
        let mut cfg = demo_zone();
        cfg.ns.clear();
        assert!(Zones::new(&[cfg]).is_err());
        let mut cfg = demo_zone();
        cfg.name = "bad name.test".into();
        assert!(Zones::new(&[cfg]).is_err());
        assert!(Zones::new(&[demo_zone(), demo_zone()]).is_err());
        let mut cfg = demo_zone();
        cfg.soa_expire_s = u32::MAX;
        assert!(Zones::new(&[cfg]).is_err());
    }
}
