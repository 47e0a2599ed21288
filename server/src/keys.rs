//! Host rule → cache key, hash input, cluster key (docs/DESIGN.md glossary).
//!
//! `https://c.dx.claw.ac/assets3/matrix/manifest.mpd?a=b&c` with two technical labels and the
//! default hash-input regex gives cache key `claw.ac/assets3/matrix/manifest.mpd`, hash input
//! `/assets3/matrix` and cluster key `claw.ac` + md5 hex of `/assets3/matrix`.

use crate::config::{HostRule, QueryKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Domain: the host without its technical labels.
    pub domain: String,
    pub cache_key: String,
    pub hash_input: String,
    pub cluster_key: String,
}

/// The host without a port, lower-cased; `None` when it is not a plausible host name.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim();
    let no_port = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        &rest[..end]
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let no_port = no_port.trim_end_matches('.');
    if no_port.is_empty()
        || no_port.len() > 253
        || !no_port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':' || b == b'_')
    {
        return None;
    }
    Some(no_port.to_ascii_lowercase())
}

/// Drop `labels` leading labels, never leaving fewer than two (a bare TLD is not a domain).
pub fn strip_technical_labels(host: &str, labels: usize) -> &str {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host; // an address has no technical labels
    }
    let mut rest = host;
    for _ in 0..labels {
        match rest.split_once('.') {
            Some((_, tail)) if tail.contains('.') => rest = tail,
            _ => break,
        }
    }
    rest
}

/// Derive the keys of a request for `host` (normalized) and `path` (may carry a query).
/// The cluster key (an md5) is computed only when `with_cluster_key` (cluster routing or debug
/// headers need it); otherwise it is empty.
pub fn derive(rule: &HostRule, host: &str, path_and_query: &str, with_cluster_key: bool) -> Keys {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let domain = strip_technical_labels(host, rule.technical_labels).to_string();
    let hash_input = match rule.hash_input.captures(path) {
        Some(c) => c.get(1).or_else(|| c.get(0)).map_or("", |m| m.as_str()),
        None => path,
    }
    .to_string();
    let cluster_key = if with_cluster_key {
        arrow_cluster::cluster_key(&domain, &hash_input)
    } else {
        String::new()
    };
    let mut cache_key = format!("{domain}{path}");
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    if rule.query != QueryKey::Drop && !query.is_empty() {
        // Kept parameters sorted by name (stable: repeated names keep their order).
        let mut kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| match &rule.query {
                QueryKey::Allow(names) => {
                    let name = p.split_once('=').map_or(*p, |(n, _)| n);
                    names.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
                }
                _ => true,
            })
            .collect();
        kept.sort_by_key(|p| p.split_once('=').map_or(*p, |(n, _)| n));
        if !kept.is_empty() {
            cache_key.push('?');
            cache_key.push_str(&kept.join("&"));
        }
    }
    Keys {
        domain,
        cache_key,
        hash_input,
        cluster_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn rule(labels: usize) -> HostRule {
        let text = format!(
            "[node]\nlisten=[\"127.0.0.1:1\"]\n[[host]]\nhosts=[\"*\"]\ntechnical_labels={labels}\norigins=[\"http://127.0.0.1:9\"]\n"
        );
        Config::parse(&text, "t").unwrap().hosts.remove(0)
    }

    #[test]
    fn seed_example_keys() {
        let r = rule(2);
        let host = normalize_host("c.dx.claw.ac").unwrap();
        let k = derive(&r, &host, "/assets3/matrix/manifest.mpd?a=b&c", true);
        assert_eq!(k.cache_key, "claw.ac/assets3/matrix/manifest.mpd");
        assert_eq!(k.hash_input, "/assets3/matrix");
        assert_eq!(k.cluster_key, "claw.acaa22fad1ed4a441d54fa664f53d5b0ee");
    }

    #[test]
    fn design_example_with_one_label() {
        let r = rule(1);
        let k = derive(&r, "cdn.foo.com", "/assets/matrix/manifest.mpd?a=b&c", true);
        assert_eq!(k.cache_key, "foo.com/assets/matrix/manifest.mpd");
        assert_eq!(k.hash_input, "/assets/matrix");
        assert!(k.cluster_key.starts_with("foo.com"));
        assert_eq!(k.cluster_key.len(), "foo.com".len() + 32);
    }

    fn rule_with_query(query: &str) -> HostRule {
        let text = format!(
            "[node]\nlisten=[\"127.0.0.1:1\"]\n[[host]]\nhosts=[\"*\"]\norigins=[\"http://127.0.0.1:9\"]\nquery = {query}\n"
        );
        Config::parse(&text, "t").unwrap().hosts.remove(0)
    }

    #[test]
    fn query_in_the_cache_key_per_rule() {
        let key = |r: &HostRule, pq: &str| derive(r, "cdn.foo.com", pq, false).cache_key;
        let keep = rule_with_query("\"keep\"");
        assert_eq!(key(&keep, "/v/a.ts?b=2&a=1"), "foo.com/v/a.ts?a=1&b=2");
        assert_eq!(key(&keep, "/v/a.ts?a=1&b=2"), "foo.com/v/a.ts?a=1&b=2");
        assert_eq!(key(&keep, "/v/a.ts?"), "foo.com/v/a.ts");
        assert_eq!(key(&keep, "/v/a.ts"), "foo.com/v/a.ts");
        let allow = rule_with_query("[\"q\", \"lang\"]");
        assert_eq!(
            key(&allow, "/v/a.ts?token=x&q=hd&lang=en"),
            "foo.com/v/a.ts?lang=en&q=hd"
        );
        assert_eq!(key(&allow, "/v/a.ts?token=y"), "foo.com/v/a.ts");
        assert_eq!(
            key(&allow, "/v/a.ts?quality=hd"),
            "foo.com/v/a.ts",
            "prefix of a name"
        );
        let drop = rule_with_query("\"drop\"");
        assert_eq!(key(&drop, "/v/a.ts?a=1"), "foo.com/v/a.ts");
        let bad = "[node]\nlisten=[\"127.0.0.1:1\"]\n[[host]]\nhosts=[\"*\"]\norigins=[\"http://127.0.0.1:9\"]\nquery = \"some\"\n";
        let e = Config::parse(bad, "t").unwrap_err().to_string();
        assert!(e.contains("host[0].query"), "{e}");
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("CDN.Foo.com:8080").unwrap(), "cdn.foo.com");
        assert_eq!(normalize_host("[::1]:80").unwrap(), "::1");
        assert!(normalize_host("bad host").is_none());
        assert!(normalize_host("").is_none());
        assert_eq!(strip_technical_labels("foo.com", 3), "foo.com");
        assert_eq!(strip_technical_labels("a.b.foo.com", 1), "b.foo.com");
        assert_eq!(strip_technical_labels("127.0.0.1", 1), "127.0.0.1");
    }
}
