//! Host rule → cache key, hash input, cluster key (docs/DESIGN.md glossary).
//!
//! `https://c.dx.claw.ac/assets3/matrix/manifest.mpd?a=b&c` with two technical labels and the
//! default hash-input regex gives cache key `claw.ac/assets3/matrix/manifest.mpd`, hash input
//! `/assets3/matrix` and cluster key `claw.ac` + md5 hex of `/assets3/matrix`.

use crate::config::HostRule;

pub use arrow_cluster::keys::{normalize_host, strip_technical_labels, Keys};

/// Derive the keys of a request for `host` (normalized) and `path` (may carry a query).
/// The cluster key (an md5) is computed only when `with_cluster_key` (cluster routing or debug
/// headers need it); otherwise it is empty. The rules live in `arrow_cluster::keys`, shared with
/// the C library (`lib/`), so both derive the same keys.
pub fn derive(rule: &HostRule, host: &str, path_and_query: &str, with_cluster_key: bool) -> Keys {
    rule.key.derive(host, path_and_query, with_cluster_key)
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
