//! The node's config file as the library reads it: the sections that decide routing, parsed
//! with the node's own types and defaults (`arrow_cluster::{ClusterConfig, OverflowConfig,
//! KeyRule}`, `arrow_dns::DnsConfig`). Keys of other sections are left to the node, which
//! validates the whole file (`arrow check-config`); unknown keys inside the sections read here
//! are rejected as the node rejects them.

use std::path::{Path, PathBuf};

use arrow_cluster::keys::{default_hash_input, default_technical_labels, RawQuery};
use arrow_cluster::{ClusterConfig, KeyRule, OverflowConfig};
use arrow_dns::{DnsConfig, Zones};
use serde::Deserialize;

/// `[node]`: only the keys the library uses (the node checks the others).
#[derive(Debug, Deserialize)]
struct NodeView {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    debug_headers: bool,
}

/// `[[host]]`: the key-deriving fields, with the node's defaults.
#[derive(Debug, Deserialize)]
struct HostView {
    hosts: Vec<String>,
    #[serde(default = "default_technical_labels")]
    technical_labels: usize,
    #[serde(default = "default_hash_input")]
    hash_input: String,
    #[serde(default)]
    query: Option<RawQuery>,
}

#[derive(Debug, Deserialize)]
struct FileView {
    node: NodeView,
    #[serde(default, rename = "host")]
    hosts: Vec<HostView>,
    #[serde(default)]
    cluster: Option<ClusterConfig>,
    #[serde(default)]
    dns: Option<DnsConfig>,
    #[serde(default)]
    overflow: Option<OverflowConfig>,
}

/// What the library routes by.
pub struct LibConfig {
    /// The node this library runs beside ("self").
    pub self_name: String,
    pub table_path: PathBuf,
    pub guarantee_bps: u64,
    /// `https://cdn.example.net` (no path), when an overflow CDN is configured.
    pub overflow_base: Option<String>,
    pub rules: Vec<KeyRule>,
    pub zones: Zones,
    pub debug_headers: bool,
}

impl LibConfig {
    /// Reads and validates the node's config file at `path`.
    pub fn load(path: &Path) -> Result<LibConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<LibConfig, String> {
        let file: FileView = toml::from_str(text).map_err(|e| e.message().trim().to_string())?;
        let cluster = file
            .cluster
            .ok_or("no [cluster] section: the library reads the cluster table it names")?;
        cluster.validate()?;
        let self_name = arrow_cluster::node_name(file.node.name.as_deref(), Some(&cluster))?;
        let mut rules = Vec::with_capacity(file.hosts.len());
        for (i, h) in file.hosts.into_iter().enumerate() {
            let rule = KeyRule::new(&h.hosts, h.technical_labels, &h.hash_input, h.query)
                .map_err(|e| format!("host[{i}].{}: {}", e.field, e.message))?;
            rules.push(rule);
        }
        let overflow_base = match file.overflow {
            Some(o) => {
                o.validate()
                    .map_err(|(key, m)| format!("overflow.{key}: {m}"))?;
                Some(format!("{}://{}", o.scheme, o.cdn_host))
            }
            None => None,
        };
        let zones = match &file.dns {
            Some(d) => Zones::new(&d.zones).map_err(|e| format!("dns: {e}"))?,
            None => Zones::new(&[]).map_err(|e| format!("dns: {e}"))?,
        };
        Ok(LibConfig {
            table_path: cluster.table_path_for(&self_name),
            guarantee_bps: cluster.brpu_guarantee_bps,
            self_name,
            overflow_base,
            rules,
            zones,
            debug_headers: file.node.debug_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[node]
name = "n01.test.arrow"
listen = ["127.0.0.1:8080"]
debug_headers = true

[limits]
header_bytes_max = 8192

[[host]]
hosts = ["*.claw.ac"]
technical_labels = 2
origins = ["http://127.0.0.1:9000"]

[[host]]
hosts = ["*"]
hash_input = "^/v/([^/]+)"
origins = ["http://127.0.0.1:9000"]

[cluster]
table_path = "/dev/shm/arrow-{node}"
group = "239.255.77.77:17777"
secret = "0123456789abcdef0123"
brpu_guarantee_bps = 8000000

[overflow]
cdn_host = "cdn.example.net"

[dns]
listen = ["127.0.0.1:5353"]
[[dns.zones]]
name = "dx.claw.ac"
domain = "claw.ac"
ns = ["ns1.dx.claw.ac"]
"#;

    #[test]
    fn the_node_config_gives_routing() {
        let c = LibConfig::parse(TEXT).unwrap();
        assert_eq!(c.self_name, "n01.test.arrow");
        assert_eq!(c.table_path, PathBuf::from("/dev/shm/arrow-n01.test.arrow"));
        assert_eq!(c.guarantee_bps, 8_000_000);
        assert_eq!(c.overflow_base.as_deref(), Some("https://cdn.example.net"));
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].technical_labels, 2);
        assert_eq!(c.rules[1].technical_labels, 1, "the node's default");
        assert_eq!(c.zones.len(), 1);
        assert!(c.debug_headers);
    }

    #[test]
    fn errors_name_the_key() {
        let e =
            LibConfig::parse(&TEXT.replace("hash_input = \"^/v/([^/]+)\"", "hash_input = \"(\""))
                .err()
                .unwrap();
        assert!(e.contains("host[1].hash_input"), "{e}");
        let e =
            LibConfig::parse(&TEXT.replace("cdn_host = \"cdn.example.net\"", "cdn_host = \"a/b\""))
                .err()
                .unwrap();
        assert!(e.contains("overflow.cdn_host"), "{e}");
        let no_cluster = TEXT.replace("[cluster]", "[cluster_x]");
        assert!(LibConfig::parse(&no_cluster).is_err());
        let unknown = TEXT.replace("brpu_guarantee_bps", "brpu_guarantee");
        assert!(
            LibConfig::parse(&unknown).is_err(),
            "unknown keys in [cluster]"
        );
        assert!(LibConfig::parse("not toml [").is_err());
    }
}
