//! Request → keys: the host rule's part that both the node (`arrow-server`) and the C library
//! (`arrow-lib`, beside nginx) apply, so both derive the same cluster key for a request.
//!
//! `https://c.dx.claw.ac/assets3/matrix/manifest.mpd?a=b&c` with two technical labels and the
//! default hash-input regex: host `c.dx.claw.ac` → domain `claw.ac`; path → hash input
//! `/assets3/matrix`; cluster key `claw.ac` + md5 hex of the hash input; cache key
//! `claw.ac/assets3/matrix/manifest.mpd` (query dropped by default).
//!
//! Each step has an allocation-free form ([`normalize_host_into`], [`KeyRule::hash_input_of`],
//! [`cluster_key_into`]) used by the library's per-request path; [`KeyRule::derive`] composes
//! the same functions into owned [`Keys`] for the node.

use regex::{CaptureLocations, Regex};
use serde::Deserialize;

/// Leading labels dropped from the host to form the domain, by default (`cdn.` of
/// `cdn.foo.com`).
pub const DEFAULT_TECHNICAL_LABELS: usize = 1;
/// The hash-input regex by default: the first two path segments.
pub const DEFAULT_HASH_INPUT: &str = "^/[^/]+/[^/]+";
/// Longest host name (presentation form, no final dot).
pub const HOST_MAX_BYTES: usize = 253;
/// Bytes of the md5 hex that ends a cluster key.
pub const CLUSTER_KEY_HEX_BYTES: usize = 32;

/// serde default of `host.technical_labels`.
pub fn default_technical_labels() -> usize {
    DEFAULT_TECHNICAL_LABELS
}

/// serde default of `host.hash_input`.
pub fn default_hash_input() -> String {
    DEFAULT_HASH_INPUT.into()
}

/// `host.query` as written: a mode or a list of parameter names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawQuery {
    Mode(String),
    Names(Vec<String>),
}

/// Which query parameters enter the cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKey {
    Drop,
    Keep,
    /// These names only (sorted).
    Allow(Vec<String>),
}

impl QueryKey {
    /// Validates `host.query` (`None`: the default, drop).
    pub fn from_raw(raw: Option<RawQuery>) -> Result<QueryKey, String> {
        match raw {
            None => Ok(QueryKey::Drop),
            Some(RawQuery::Mode(m)) if m == "drop" => Ok(QueryKey::Drop),
            Some(RawQuery::Mode(m)) if m == "keep" => Ok(QueryKey::Keep),
            Some(RawQuery::Mode(m)) => Err(format!(
                "{m:?} is not \"drop\", \"keep\" or a list of parameter names"
            )),
            Some(RawQuery::Names(mut names)) => {
                if names
                    .iter()
                    .any(|n| n.is_empty() || n.contains(['&', '=', '?', '#']))
                {
                    return Err("parameter names must be non-empty and free of & = ? #".into());
                }
                names.sort();
                names.dedup();
                Ok(QueryKey::Allow(names))
            }
        }
    }
}

/// The keys of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Domain: the host without its technical labels.
    pub domain: String,
    pub cache_key: String,
    pub hash_input: String,
    pub cluster_key: String,
}

/// Which field of a host rule is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRuleError {
    /// `hosts`, `hash_input` or `query`.
    pub field: &'static str,
    pub message: String,
}

/// The key-deriving part of a `[[host]]` rule: which hosts it serves and how their requests
/// become keys.
#[derive(Debug, Clone)]
pub struct KeyRule {
    /// Lower-case patterns: exact (`cdn.foo.com`), suffix (`*.foo.com`) or `*`.
    pub hosts: Vec<String>,
    pub technical_labels: usize,
    pub hash_input: Regex,
    pub query: QueryKey,
}

impl KeyRule {
    /// Validates the rule's fields as written in the config.
    pub fn new(
        hosts: &[String],
        technical_labels: usize,
        hash_input: &str,
        query: Option<RawQuery>,
    ) -> Result<KeyRule, KeyRuleError> {
        if hosts.is_empty() {
            return Err(KeyRuleError {
                field: "hosts",
                message: "needs at least one pattern".into(),
            });
        }
        for h in hosts {
            let body = h.strip_prefix("*.").unwrap_or(h);
            if body.is_empty() || (body != "*" && body.contains('*')) {
                return Err(KeyRuleError {
                    field: "hosts",
                    message: format!("bad pattern {h:?} (use `name`, `*.suffix` or `*`)"),
                });
            }
        }
        let hash_input = Regex::new(hash_input).map_err(|e| KeyRuleError {
            field: "hash_input",
            message: format!("bad regex: {e}"),
        })?;
        let query = QueryKey::from_raw(query).map_err(|message| KeyRuleError {
            field: "query",
            message,
        })?;
        Ok(KeyRule {
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            technical_labels,
            hash_input,
            query,
        })
    }

    /// Does this rule serve `host` (lower case, no port)?
    pub fn matches(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| {
            if p == "*" {
                true
            } else if let Some(suffix) = p.strip_prefix("*.") {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            } else {
                p == host
            }
        })
    }

    /// The domain of `host` (normalized): the host without its technical labels.
    pub fn domain_of<'a>(&self, host: &'a str) -> &'a str {
        strip_technical_labels(host, self.technical_labels)
    }

    /// Capture slots for [`Self::hash_input_of`], made once per rule and reused.
    pub fn capture_locations(&self) -> CaptureLocations {
        self.hash_input.capture_locations()
    }

    /// The hash input of `path_and_query`: capture group 1 of the regex over the path (query
    /// excluded) if it has one, else the whole match; the whole path when the regex does not
    /// match. No allocation once `locs` exists.
    pub fn hash_input_of<'a>(
        &self,
        locs: &mut CaptureLocations,
        path_and_query: &'a str,
    ) -> &'a str {
        let path = path_only(path_and_query);
        match self.hash_input.captures_read(locs, path) {
            Some(whole) => match locs.get(1) {
                Some((start, end)) => &path[start..end],
                None => &path[whole.start()..whole.end()],
            },
            None => path,
        }
    }

    /// The keys of a request for `host` (normalized) and `path_and_query`. The cluster key (an
    /// md5) is computed only when `with_cluster_key`; otherwise it is empty.
    pub fn derive(&self, host: &str, path_and_query: &str, with_cluster_key: bool) -> Keys {
        let path = path_only(path_and_query);
        let domain = self.domain_of(host).to_string();
        let mut locs = self.capture_locations();
        let hash_input = self.hash_input_of(&mut locs, path).to_string();
        let cluster_key = if with_cluster_key {
            crate::cluster_key(&domain, &hash_input)
        } else {
            String::new()
        };
        let mut cache_key = format!("{domain}{path}");
        let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        if self.query != QueryKey::Drop && !query.is_empty() {
            // Kept parameters sorted by name (stable: repeated names keep their order).
            let mut kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| match &self.query {
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
}

/// The path of a request target without its query.
fn path_only(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

/// The host without a port, lower-cased; `None` when it is not a plausible host name.
pub fn normalize_host(host: &str) -> Option<String> {
    let mut buf = [0u8; HOST_MAX_BYTES];
    normalize_host_into(host, &mut buf).map(str::to_string)
}

/// [`normalize_host`] into `buf`, without allocating.
pub fn normalize_host_into<'b>(host: &str, buf: &'b mut [u8; HOST_MAX_BYTES]) -> Option<&'b str> {
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
        || no_port.len() > HOST_MAX_BYTES
        || !no_port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':' || b == b'_')
    {
        return None;
    }
    let out = &mut buf[..no_port.len()];
    for (d, s) in out.iter_mut().zip(no_port.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    // ASCII only (checked above).
    std::str::from_utf8(out).ok()
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

/// The cluster key `domain` + md5 hex of `hash_input` written into `buf`, without allocating;
/// `None` when `buf` is shorter than `domain.len() + 32`.
pub fn cluster_key_into<'b>(
    domain: &[u8],
    hash_input: &[u8],
    buf: &'b mut [u8],
) -> Option<&'b [u8]> {
    use md5::{Digest, Md5};
    let len = domain.len() + CLUSTER_KEY_HEX_BYTES;
    if buf.len() < len {
        return None;
    }
    buf[..domain.len()].copy_from_slice(domain);
    let digest = Md5::digest(hash_input);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in digest.iter().enumerate() {
        buf[domain.len() + 2 * i] = HEX[usize::from(b >> 4)];
        buf[domain.len() + 2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    Some(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(labels: usize) -> KeyRule {
        KeyRule::new(&["*".into()], labels, DEFAULT_HASH_INPUT, None).unwrap()
    }

    #[test]
    fn seed_example_keys() {
        let k = rule(2).derive("c.dx.claw.ac", "/assets3/matrix/manifest.mpd?a=b&c", true);
        assert_eq!(k.cache_key, "claw.ac/assets3/matrix/manifest.mpd");
        assert_eq!(k.hash_input, "/assets3/matrix");
        assert_eq!(k.cluster_key, "claw.acaa22fad1ed4a441d54fa664f53d5b0ee");
    }

    #[test]
    fn allocation_free_steps_agree_with_derive() {
        let r = KeyRule::new(&["*.foo.com".into()], 1, "^/v/([^/]+)", None).unwrap();
        let mut locs = r.capture_locations();
        let mut host = [0u8; HOST_MAX_BYTES];
        for (h, p) in [
            ("CDN.Foo.com:8080", "/v/t1/seg.ts?x=1"),
            ("a.b.foo.com.", "/other/path"),
            ("cdn.foo.com", "/v/"),
        ] {
            let host = normalize_host_into(h, &mut host).unwrap();
            let k = r.derive(host, p, true);
            assert_eq!(r.hash_input_of(&mut locs, p), k.hash_input, "{h}{p}");
            let mut key = [0u8; 300];
            let key = cluster_key_into(
                r.domain_of(host).as_bytes(),
                k.hash_input.as_bytes(),
                &mut key,
            )
            .unwrap();
            assert_eq!(key, k.cluster_key.as_bytes());
        }
        assert_eq!(r.hash_input_of(&mut locs, "/v/t1/a"), "t1", "group 1");
        assert!(cluster_key_into(b"foo.com", b"", &mut [0u8; 38]).is_none());
    }

    #[test]
    fn bad_rules_name_their_field() {
        let e = KeyRule::new(&[], 1, DEFAULT_HASH_INPUT, None).unwrap_err();
        assert_eq!(e.field, "hosts");
        let e = KeyRule::new(&["a*b".into()], 1, DEFAULT_HASH_INPUT, None).unwrap_err();
        assert_eq!(e.field, "hosts");
        let e = KeyRule::new(&["*".into()], 1, "(", None).unwrap_err();
        assert_eq!(e.field, "hash_input");
        let e =
            KeyRule::new(&["*".into()], 1, "x", Some(RawQuery::Mode("some".into()))).unwrap_err();
        assert_eq!(e.field, "query");
    }
}
