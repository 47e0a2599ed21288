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
    apex_labels: usize,
    pub(crate) domain: String,
    pub(crate) soa: Record,
    pub(crate) soa_negative: Record,
    pub(crate) ns: Vec<Record>,
    pub(crate) ns_glue: Vec<Record>,
    hosts: HashMap<Name, HostAddrs>,
    empty_non_terminals: HashSet<Name>,
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
        zones.sort_by(|a, b| b.apex_labels.cmp(&a.apex_labels));
        Ok(Zones { zones })
    }

    /// The most specific zone containing `lower` (a lowercase name), if any.
    pub(crate) fn find(&self, lower: &Name) -> Option<&Zone> {
        self.zones.iter().find(|z| z.apex.zone_of_case(lower))
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
                ns_glue.extend(host.addrs.iter().map(|(a, ttl)| addr_record(ns_name, *a, *ttl)));
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
        let mut empty_non_terminals = HashSet::new();
        for host in hosts.keys() {
            let labels = host.iter().count();
            for keep in (apex_labels + 1)..labels {
                let ancestor = host.trim_to(keep);
                if !hosts.contains_key(&ancestor) {
                    empty_non_terminals.insert(ancestor);
                }
            }
        }
        let overflow = match &cfg.overflow_cname {
            Some(o) => Some(parse_name(zone, "overflow_cname", o)?),
            None => None,
        };
        Ok(Zone {
            apex,
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

    /// Classifies `lower`, a lowercase name inside this zone.
    pub(crate) fn classify(&self, lower: &Name) -> NameClass<'_> {
        debug_assert!(self.apex.zone_of_case(lower));
        if let Some(host) = self.hosts.get(lower) {
            return NameClass::Host(host);
        }
        let labels = lower.iter().count();
        if labels == self.apex_labels {
            return NameClass::Apex;
        }
        if self.empty_non_terminals.contains(lower) {
            return NameClass::EmptyNonTerminal;
        }
        if labels > self.apex_labels + 1 {
            return NameClass::NxDomain;
        }
        match lower.iter().next() {
            Some(label)
                if label.len() == CONTENT_LABEL_BYTES
                    && label.iter().all(|b| b.is_ascii_hexdigit()) =>
            {
                // The label is ASCII hex, hence valid UTF-8; `lower` is already lowercase.
                NameClass::Content(String::from_utf8_lossy(label).into_owned())
            }
            _ => NameClass::Headroom,
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

    fn lower(s: &str) -> Name {
        Name::from_str(s).expect("name").to_lowercase()
    }

    #[test]
    fn names_are_classified() {
        let mut cfg = demo_zone();
        cfg.nodes
            .insert("n1.pop.dx.demo.test".into(), vec!["192.0.2.9".parse().unwrap()]);
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
        assert_eq!(zone.apex, lower("dx.demo.test."));
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
