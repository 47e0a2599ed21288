//! RFC 9111 shared-cache semantics: is a response storable, how long is it fresh, how old is
//! it now, may it be served stale — and the stored metadata record (`Meta`) that carries what
//! a later hit needs, encoded into the opaque blob the storage engine keeps beside the body.
//!
//! Choices (documented for operators):
//! - Stored: GET responses with status 200, 203, 204, 300, 301, 308, 404, 410 that carry
//!   explicit freshness (s-maxage, max-age, Expires) or match a host rule with a default TTL;
//!   no heuristic freshness otherwise.
//! - Never stored: `no-store`, `private`, any `Vary` (one variant per key is all we keep, so a
//!   varying response is passed through rather than served to the wrong viewer), `Set-Cookie`.
//! - `no-cache` (and `must-revalidate`/`proxy-revalidate` once stale) is stored and revalidated
//!   on every use.
//! - Viewer request Cache-Control is not honoured (a CDN edge protects the origin).

use bytes::{BufMut, Bytes, BytesMut};

/// Parsed Cache-Control of a response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheControl {
    pub max_age_s: Option<u64>,
    pub s_maxage_s: Option<u64>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub must_revalidate: bool,
    pub stale_while_revalidate_s: Option<u64>,
    pub stale_if_error_s: Option<u64>,
}

impl CacheControl {
    /// Parse one or more Cache-Control header values (comma-separated directives).
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in values {
            for directive in value.split(',') {
                let directive = directive.trim();
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                let secs = arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => cc.max_age_s = secs.or(Some(0)),
                    "s-maxage" => cc.s_maxage_s = secs.or(Some(0)),
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "stale-while-revalidate" => cc.stale_while_revalidate_s = secs,
                    "stale-if-error" => cc.stale_if_error_s = secs,
                    _ => {}
                }
            }
        }
        cc
    }
}

/// The name of CDN-Cache-Control (RFC 9213), which every CDN honours.
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// The longest heuristic freshness lifetime (RFC 9111 §4.2.2 suggests bounding it).
pub const HEURISTIC_LIFETIME_MAX_S: u64 = 86_400;

/// How a host rule's responses are judged: its default freshness and the targeted fields.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Freshness given to responses without explicit freshness (None: not stored).
    pub default_ttl_s: Option<u64>,
    /// Heuristic freshness for responses without explicit freshness but with Last-Modified:
    /// this percentage of the time since it, at most a day (None: only `default_ttl_s`).
    pub heuristic_percent: Option<u8>,
    /// Arrow's own targeted field (RFC 9213 §2), lower case, e.g. `arrow-cache-control`:
    /// highest precedence, never sent to viewers.
    pub own_field: &'a str,
    /// Keep CDN-Cache-Control in responses to viewers (a CDN further down honours it).
    pub keep_cdn_cache_control: bool,
}

impl Policy<'_> {
    /// A policy with only a default TTL (Arrow-Cache-Control as the own field).
    pub const fn with_ttl(default_ttl_s: Option<u64>) -> Policy<'static> {
        Policy {
            default_ttl_s,
            heuristic_percent: None,
            own_field: "arrow-cache-control",
            keep_cdn_cache_control: false,
        }
    }

    /// A targeted field this node consumes and does not pass on to viewers.
    pub fn strips(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(self.own_field)
            || (!self.keep_cdn_cache_control && name.eq_ignore_ascii_case(CDN_CACHE_CONTROL))
    }
}

/// The directives of the first targeted field present that parses (RFC 9213 §2.1: the field is
/// a Structured Fields Dictionary; an invalid one is ignored), in precedence order: the node's
/// own field, then CDN-Cache-Control. `None`: no usable targeted field (Cache-Control rules).
fn targeted(head: &OriginHead, policy: &Policy) -> Option<CacheControl> {
    for name in [policy.own_field, CDN_CACHE_CONTROL] {
        let values: Vec<&str> = head.all(name).collect();
        if values.is_empty() {
            continue;
        }
        let joined = values.join(", ");
        let Ok(dict) = sfv::Parser::new(joined.as_bytes()).parse_dictionary::<sfv::Dictionary>()
        else {
            continue;
        };
        let mut cc = CacheControl::default();
        for (key, entry) in &dict {
            let sfv::ListEntry::Item(item) = entry else {
                continue;
            };
            let secs = item
                .bare_item
                .as_integer()
                .and_then(|i| u64::try_from(i64::from(i)).ok());
            let flag = item.bare_item.as_boolean() == Some(true);
            match key.as_str() {
                "max-age" => cc.max_age_s = secs.or(cc.max_age_s),
                "s-maxage" => cc.s_maxage_s = secs.or(cc.s_maxage_s),
                "no-store" => cc.no_store |= flag,
                "no-cache" => cc.no_cache |= flag,
                "private" => cc.private |= flag,
                "must-revalidate" | "proxy-revalidate" => cc.must_revalidate |= flag,
                "stale-while-revalidate" => cc.stale_while_revalidate_s = secs,
                "stale-if-error" => cc.stale_if_error_s = secs,
                _ => {}
            }
        }
        return Some(cc);
    }
    None
}

/// Statuses heuristically cacheable (RFC 9110 §15.1): stored without explicit freshness when
/// the host rule gives a default TTL. Any other final status is stored only when explicitly
/// fresh (max-age, s-maxage, Expires or a targeted field), as RFC 9111 §3 allows.
pub const HEURISTIC_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// What the cache needs from an origin response head to decide and to serve it later.
#[derive(Debug, Clone)]
pub struct OriginHead<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
}

impl OriginHead<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn all<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b str> + 'b {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Headers never replayed from a stored response (hop-by-hop or recomputed per response).
pub fn is_unreplayed_header(name: &str) -> bool {
    if name.len() > 8 && name[..8].eq_ignore_ascii_case("x-arrow-") {
        return true; // another node's debug headers
    }
    // Date is replayed: a hit carries the origin's Date (the time the response was generated)
    // and an Age; a 304 from the origin replaces it.
    const SKIP: [&str; 13] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "age",
        "server",
        "x-cache",
        "proxy-authenticate",
        "set-cookie",
    ];
    SKIP.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// The stored header block updated by a 304 (RFC 9111 §3.2): every field the 304 carries
/// replaces the stored field of that name, except Content-Length and the fields never replayed
/// (hop-by-hop, recomputed per response, named by the 304's Connection).
pub fn updated_block(stored: &Bytes, update: &[(String, String)], policy: &Policy) -> Bytes {
    let named = connection_named(update);
    let replaces = |n: &str| {
        !is_unreplayed_header(n)
            && !policy.strips(n)
            && !n.eq_ignore_ascii_case("content-length")
            && !named.iter().any(|c| n.eq_ignore_ascii_case(c))
    };
    let mut block = BytesMut::with_capacity(stored.len() + 64);
    for line in stored.split_inclusive(|&b| b == b'\n') {
        let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
        let name = std::str::from_utf8(&line[..name_end]).unwrap_or("");
        let replaced = update
            .iter()
            .any(|(n, _)| replaces(n) && n.eq_ignore_ascii_case(name));
        if !replaced {
            block.put_slice(line);
        }
    }
    for (n, v) in update {
        if replaces(n) {
            block.put_slice(n.as_bytes());
            block.put_slice(b": ");
            block.put_slice(v.as_bytes());
            block.put_slice(b"\r\n");
        }
    }
    block.freeze()
}

/// The lines of a header block whose field name passes `keep`.
fn lines_where(block: &[u8], keep: impl Fn(&str) -> bool) -> Bytes {
    let mut out = BytesMut::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
        if keep(std::str::from_utf8(&line[..name_end]).unwrap_or("")) {
            out.put_slice(line);
        }
    }
    out.freeze()
}

/// CORS fields (`Access-Control-*`, `Timing-Allow-Origin`): what a browser needs to read an
/// answer, including an error the node generates itself.
pub fn is_cors_field(name: &str) -> bool {
    (name.len() > 15 && name[..15].eq_ignore_ascii_case("access-control-"))
        || name.eq_ignore_ascii_case("timing-allow-origin")
}

/// The CORS lines of a header block.
pub fn cors_fields(block: &[u8]) -> Bytes {
    lines_where(block, is_cors_field)
}

/// The stored fields a 304 answered from the cache carries (RFC 9110 §15.4.5: those a 200
/// would have had among Cache-Control, Content-Location, Expires and Vary), plus the CORS
/// fields a browser needs to read the 304, as header lines.
pub fn not_modified_fields(block: &Bytes) -> Bytes {
    const FIELDS: [&str; 4] = ["cache-control", "content-location", "expires", "vary"];
    lines_where(block, |n| {
        FIELDS.iter().any(|f| n.eq_ignore_ascii_case(f)) || is_cors_field(n)
    })
}

/// Lower-case field names a message's `Connection` header lists: hop-by-hop for that message
/// (RFC 9110 §7.6.1), so never stored, replayed or forwarded.
pub fn connection_named(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The stored metadata of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub status: u16,
    /// Unix seconds when the response was received (response_time of RFC 9111 §4.2.3).
    pub stored_at_s: u64,
    /// corrected_initial_age (seconds) at `stored_at_s`.
    pub initial_age_s: u64,
    /// Freshness lifetime (seconds).
    pub lifetime_s: u64,
    pub stale_while_revalidate_s: u64,
    pub stale_if_error_s: u64,
    /// Revalidate on every use (no-cache).
    pub always_revalidate: bool,
    pub must_revalidate: bool,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Replayed headers, pre-rendered as `Name: value\r\n` lines.
    pub header_block: Bytes,
    /// Set on a Vary stub (an empty object under the cache key, see [`crate::vary`]).
    pub vary: Option<VaryStub>,
}

/// What a Vary stub records: the request fields its responses vary on, and the variants stored
/// (the 16-byte hashes of their keys), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryStub {
    pub fields: Vec<String>,
    pub variants: Vec<[u8; 16]>,
}

const META_VERSION: u8 = 1;

#[derive(Debug, PartialEq, Eq)]
pub enum Storable {
    Yes(Meta),
    No(&'static str),
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decide whether `head` (the answer to a GET sent at `request_time_s`) is storable, and if so
/// build its metadata. `default_ttl_s` is the host rule's default.
/// A targeted field (Arrow's own, then CDN-Cache-Control) replaces Cache-Control and Expires
/// for Arrow's caching when present and valid (RFC 9213 §2.2).
pub fn evaluate(
    head: &OriginHead,
    request_time_s: u64,
    response_time_s: u64,
    policy: &Policy,
) -> Storable {
    // 206 and 304 update or complete a stored response; they are never stored as such.
    if head.status < 200 || head.status == 206 || head.status == 304 || head.status > 599 {
        return Storable::No("status not cacheable");
    }
    let default_ttl_s = policy.default_ttl_s;
    let targeted = targeted(head, policy);
    let by_target = targeted.is_some();
    let cc = targeted.unwrap_or_else(|| CacheControl::parse(head.all("cache-control")));
    if cc.no_store {
        return Storable::No("no-store");
    }
    if cc.private {
        return Storable::No("private");
    }
    // Vary: stored as a variant (crate::vary), except `Vary: *`.
    if crate::vary::fields(head.all("vary")).is_err() {
        return Storable::No("vary: *");
    }
    if head.header("set-cookie").is_some() {
        return Storable::No("set-cookie");
    }
    let date_s = head
        .header("date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let expires_lifetime = head.header("expires").filter(|_| !by_target).map(|e| {
        match httpdate::parse_http_date(e)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        {
            Some(exp) => exp
                .as_secs()
                .saturating_sub(date_s.unwrap_or(response_time_s)),
            None => 0, // an invalid Expires means already expired (RFC 9111 §5.3)
        }
    });
    let heuristic = HEURISTIC_STATUSES.contains(&head.status);
    let lifetime_s = match cc.s_maxage_s.or(cc.max_age_s).or(expires_lifetime) {
        Some(l) => l,
        None if !heuristic => return Storable::No("status stored only when explicitly fresh"),
        None if cc.no_cache => 0,
        None => {
            // Heuristic freshness (RFC 9111 §4.2.2), where the host rule allows it: a share of
            // the time since Last-Modified, at most a day; else the rule's default TTL.
            let last_modified_age = head
                .header("last-modified")
                .and_then(|d| httpdate::parse_http_date(d).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|lm| {
                    date_s
                        .unwrap_or(response_time_s)
                        .saturating_sub(lm.as_secs())
                });
            match (policy.heuristic_percent, last_modified_age, default_ttl_s) {
                (Some(p), Some(age), _) if age > 0 => {
                    (age * u64::from(p) / 100).min(HEURISTIC_LIFETIME_MAX_S)
                }
                (_, _, Some(t)) => t,
                _ => return Storable::No("no explicit freshness and no default TTL"),
            }
        }
    };
    // RFC 9111 §4.2.3
    let age_value = head
        .header("age")
        // A list (two Age fields, or `7200, 0`): the first member counts (RFC 9111 §5.1).
        .and_then(|a| a.split(',').next().unwrap_or("").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let apparent_age = date_s.map_or(0, |d| response_time_s.saturating_sub(d));
    let response_delay = response_time_s.saturating_sub(request_time_s);
    let corrected_age_value = age_value + response_delay;
    let initial_age_s = apparent_age.max(corrected_age_value);

    let mut block = BytesMut::with_capacity(256);
    let named = connection_named(head.headers);
    for (n, v) in head.headers {
        if is_unreplayed_header(n)
            || named.iter().any(|c| n.eq_ignore_ascii_case(c))
            || policy.strips(n)
        {
            continue;
        }
        block.put_slice(n.as_bytes());
        block.put_slice(b": ");
        block.put_slice(v.as_bytes());
        block.put_slice(b"\r\n");
    }
    Storable::Yes(Meta {
        status: head.status,
        stored_at_s: response_time_s,
        initial_age_s,
        lifetime_s,
        stale_while_revalidate_s: cc.stale_while_revalidate_s.unwrap_or(0),
        stale_if_error_s: cc.stale_if_error_s.unwrap_or(0),
        always_revalidate: cc.no_cache,
        must_revalidate: cc.must_revalidate,
        etag: head.header("etag").map(str::to_string),
        last_modified: head.header("last-modified").map(str::to_string),
        header_block: block.freeze(),
        vary: None,
    })
}

/// How a stored response may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    Fresh,
    /// Stale but within stale-while-revalidate: serve and revalidate in the background.
    StaleWhileRevalidate,
    /// Must be revalidated before use (stale-if-error may still allow it on origin failure).
    MustRevalidate,
}

impl Meta {
    pub fn current_age_s(&self, now_s: u64) -> u64 {
        self.initial_age_s + now_s.saturating_sub(self.stored_at_s)
    }

    pub fn usability(&self, now_s: u64) -> Usability {
        let age = self.current_age_s(now_s);
        if self.always_revalidate {
            return Usability::MustRevalidate;
        }
        if age < self.lifetime_s {
            return Usability::Fresh;
        }
        if !self.must_revalidate && age < self.lifetime_s + self.stale_while_revalidate_s {
            return Usability::StaleWhileRevalidate;
        }
        Usability::MustRevalidate
    }

    /// May this response be served stale because the origin failed?
    pub fn stale_if_error_ok(&self, now_s: u64) -> bool {
        !self.must_revalidate && self.current_age_s(now_s) < self.lifetime_s + self.stale_if_error_s
    }

    /// Refresh after a 304 (RFC 9111 §4.3.4): new freshness from the 304's headers, new
    /// validators if given, the stored header block otherwise kept.
    pub fn refreshed(
        &self,
        head: &OriginHead,
        request_time_s: u64,
        response_time_s: u64,
        policy: &Policy,
    ) -> Meta {
        let probe = OriginHead {
            status: self.status,
            headers: head.headers,
        };
        let mut m = self.clone();
        m.header_block = updated_block(&self.header_block, head.headers, policy);
        if let Storable::Yes(fresh) = evaluate(&probe, request_time_s, response_time_s, policy) {
            m.stored_at_s = fresh.stored_at_s;
            m.initial_age_s = fresh.initial_age_s;
            m.lifetime_s = fresh.lifetime_s;
            m.stale_while_revalidate_s = fresh.stale_while_revalidate_s;
            m.stale_if_error_s = fresh.stale_if_error_s;
            m.always_revalidate = fresh.always_revalidate;
            m.must_revalidate = fresh.must_revalidate;
            if fresh.etag.is_some() {
                m.etag = fresh.etag;
            }
            if fresh.last_modified.is_some() {
                m.last_modified = fresh.last_modified;
            }
        } else {
            // The 304 carried nothing that makes it storable: keep the old lifetime from now.
            m.stored_at_s = response_time_s;
            m.initial_age_s = 0;
        }
        m
    }

    /// The blob to store, at most `max_bytes`: when all replayed headers do not fit, only the
    /// ones a player needs are kept; `None` when even those do not fit (not stored).
    pub fn encode_bounded(&self, max_bytes: usize) -> Option<Bytes> {
        let full = self.encode();
        if full.len() <= max_bytes {
            return Some(full);
        }
        const ESSENTIAL: [&str; 8] = [
            "content-type",
            "content-encoding",
            "cache-control",
            "etag",
            "last-modified",
            "expires",
            "access-control-allow-origin",
            "content-disposition",
        ];
        let mut block = BytesMut::new();
        for line in self.header_block.split(|&b| b == b'\n') {
            let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
            let name = std::str::from_utf8(&line[..name_end]).unwrap_or("");
            if ESSENTIAL.iter().any(|e| name.eq_ignore_ascii_case(e)) {
                block.put_slice(line);
                block.put_u8(b'\n');
            }
        }
        let trimmed = Meta {
            header_block: block.freeze(),
            ..self.clone()
        };
        let blob = trimmed.encode();
        (blob.len() <= max_bytes).then_some(blob)
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64 + self.header_block.len());
        b.put_u8(META_VERSION);
        b.put_u16(self.status);
        b.put_u64(self.stored_at_s);
        b.put_u64(self.initial_age_s);
        b.put_u64(self.lifetime_s);
        b.put_u64(self.stale_while_revalidate_s);
        b.put_u64(self.stale_if_error_s);
        b.put_u8(self.always_revalidate as u8 | (self.must_revalidate as u8) << 1);
        for s in [&self.etag, &self.last_modified] {
            match s {
                Some(s) => {
                    b.put_u16(s.len() as u16 + 1);
                    b.put_slice(s.as_bytes());
                }
                None => b.put_u16(0),
            }
        }
        b.put_u32(self.header_block.len() as u32);
        b.put_slice(&self.header_block);
        // An optional trailing section (readers of the first layout ignore trailing bytes).
        if let Some(v) = &self.vary {
            b.put_u8(1);
            b.put_u8(v.fields.len().min(255) as u8);
            for f in v.fields.iter().take(255) {
                b.put_u8(f.len().min(255) as u8);
                b.put_slice(&f.as_bytes()[..f.len().min(255)]);
            }
            b.put_u8(v.variants.len().min(255) as u8);
            for h in v.variants.iter().take(255) {
                b.put_slice(h);
            }
        }
        b.freeze()
    }

    /// Decode a stored blob; `None` when it is not ours (the object is then treated as a miss).
    pub fn decode(blob: &Bytes) -> Option<Meta> {
        let mut r = Reader { b: blob, at: 0 };
        if r.u8()? != META_VERSION {
            return None;
        }
        let status = r.u16()?;
        let stored_at_s = r.u64()?;
        let initial_age_s = r.u64()?;
        let lifetime_s = r.u64()?;
        let stale_while_revalidate_s = r.u64()?;
        let stale_if_error_s = r.u64()?;
        let flags = r.u8()?;
        let etag = r.opt_str()?;
        let last_modified = r.opt_str()?;
        let n = r.u32()? as usize;
        let header_block = r.slice(n)?;
        let vary = match r.u8() {
            Some(1) => {
                let nf = r.u8()? as usize;
                let mut fields = Vec::with_capacity(nf);
                for _ in 0..nf {
                    let len = r.u8()? as usize;
                    fields.push(std::str::from_utf8(r.take(len)?).ok()?.to_string());
                }
                let nv = r.u8()? as usize;
                let mut variants = Vec::with_capacity(nv);
                for _ in 0..nv {
                    variants.push(r.take(16)?.try_into().ok()?);
                }
                Some(VaryStub { fields, variants })
            }
            _ => None,
        };
        Some(Meta {
            vary,
            status,
            stored_at_s,
            initial_age_s,
            lifetime_s,
            stale_while_revalidate_s,
            stale_if_error_s,
            always_revalidate: flags & 1 != 0,
            must_revalidate: flags & 2 != 0,
            etag,
            last_modified,
            header_block,
        })
    }
}

struct Reader<'a> {
    b: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        let n = self.u16()? as usize;
        if n == 0 {
            return Some(None);
        }
        let s = self.take(n - 1)?;
        Some(Some(String::from_utf8(s.to_vec()).ok()?))
    }
    fn slice(&mut self, n: usize) -> Option<Bytes> {
        let start = self.at;
        self.take(n)?;
        Some(self.b.slice(start..start + n))
    }
}

/// Does a viewer's conditional request match the stored validators (RFC 9110 §13.1)?
/// `If-None-Match` wins over `If-Modified-Since`.
pub fn not_modified(
    meta: &Meta,
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
) -> bool {
    if let Some(inm) = if_none_match {
        let Some(etag) = meta.etag.as_deref() else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag));
    }
    if let (Some(ims), Some(lm)) = (if_modified_since, meta.last_modified.as_deref()) {
        if let (Ok(ims), Ok(lm)) = (
            httpdate::parse_http_date(ims),
            httpdate::parse_http_date(lm),
        ) {
            return lm <= ims;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// `evaluate` of a 200 response with headers `h`.
    fn evaluate_200(
        h: &[(String, String)],
        request_time_s: u64,
        response_time_s: u64,
        default_ttl_s: Option<u64>,
    ) -> Storable {
        evaluate(
            &OriginHead {
                status: 200,
                headers: h,
            },
            request_time_s,
            response_time_s,
            &Policy::with_ttl(default_ttl_s),
        )
    }

    #[test]
    fn targeted_fields_take_precedence_in_order() {
        let lifetime = |h: &[(&str, &str)]| match evaluate_200(&head(h), 100, 100, None) {
            Storable::Yes(m) => Some(m.lifetime_s),
            Storable::No(_) => None,
        };
        // CDN-Cache-Control beats Cache-Control and Expires.
        assert_eq!(
            lifetime(&[
                ("Cache-Control", "no-store"),
                ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
                ("CDN-Cache-Control", "max-age=600"),
            ]),
            Some(600)
        );
        // Arrow's own field beats CDN-Cache-Control.
        assert_eq!(
            lifetime(&[
                ("Cache-Control", "max-age=5"),
                ("CDN-Cache-Control", "max-age=600"),
                ("Arrow-Cache-Control", "max-age=86400, stale-if-error=60"),
            ]),
            Some(86_400)
        );
        assert_eq!(
            lifetime(&[
                ("Cache-Control", "max-age=600"),
                ("CDN-Cache-Control", "no-store"),
            ]),
            None
        );
        // An invalid targeted field (not a Structured Fields Dictionary) is ignored.
        assert_eq!(
            lifetime(&[
                ("Cache-Control", "max-age=7"),
                ("CDN-Cache-Control", "max-age=\"600"),
            ]),
            Some(7)
        );
        // Targeted fields are consumed: not stored for viewers (CDN-Cache-Control unless kept).
        let h = head(&[
            ("Cache-Control", "max-age=7"),
            ("CDN-Cache-Control", "max-age=60"),
            ("Arrow-Cache-Control", "max-age=60"),
        ]);
        let Storable::Yes(m) = evaluate_200(&h, 100, 100, None) else {
            panic!()
        };
        let block = String::from_utf8_lossy(&m.header_block).to_ascii_lowercase();
        assert!(!block.contains("cdn-cache-control") && !block.contains("arrow-cache-control"));
        let keep = Policy {
            keep_cdn_cache_control: true,
            ..Policy::with_ttl(None)
        };
        let o = OriginHead {
            status: 200,
            headers: &h,
        };
        let Storable::Yes(m) = evaluate(&o, 100, 100, &keep) else {
            panic!()
        };
        let block = String::from_utf8_lossy(&m.header_block).to_ascii_lowercase();
        assert!(block.contains("cdn-cache-control") && !block.contains("arrow-cache-control"));
    }

    #[test]
    fn s_maxage_beats_max_age_and_expires() {
        let h = head(&[
            ("Cache-Control", "max-age=10, s-maxage=60"),
            ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ]);
        let Storable::Yes(m) = evaluate_200(&h, 100, 100, None) else {
            panic!()
        };
        assert_eq!(m.lifetime_s, 60);
        assert_eq!(m.usability(159), Usability::Fresh);
        assert_eq!(m.usability(160), Usability::MustRevalidate);
    }

    #[test]
    fn private_no_store_vary_star_are_not_stored() {
        for cc in [
            ("Cache-Control", "private, max-age=5"),
            ("Cache-Control", "no-store"),
            ("Vary", "Accept, *"),
        ] {
            let h = head(&[cc, ("Cache-Control", "max-age=5")]);
            assert!(matches!(evaluate_200(&h, 0, 0, None), Storable::No(_)));
        }
        // Any other Vary is stored (as a variant).
        let h = head(&[("Vary", "Accept"), ("Cache-Control", "max-age=5")]);
        assert!(matches!(evaluate_200(&h, 0, 0, None), Storable::Yes(_)));
    }

    #[test]
    fn vary_stub_round_trips_in_the_blob() {
        let h = head(&[("Cache-Control", "max-age=5")]);
        let Storable::Yes(mut m) = evaluate_200(&h, 0, 0, None) else {
            panic!()
        };
        m.vary = Some(VaryStub {
            fields: vec!["accept-encoding".into(), "origin".into()],
            variants: vec![[1; 16], [2; 16]],
        });
        assert_eq!(Meta::decode(&m.encode()), Some(m.clone()));
        m.vary = None;
        assert_eq!(Meta::decode(&m.encode()), Some(m));
    }

    #[test]
    fn heuristic_freshness_where_the_rule_allows_it() {
        let date = 1_000_000;
        let h = head(&[
            (
                "Date",
                &httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(date),
                ),
            ),
            (
                "Last-Modified",
                &httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(date - 50_000),
                ),
            ),
        ]);
        let o = OriginHead {
            status: 200,
            headers: &h,
        };
        let p = Policy {
            heuristic_percent: Some(10),
            ..Policy::with_ttl(None)
        };
        let Storable::Yes(m) = evaluate(&o, date, date, &p) else {
            panic!()
        };
        assert_eq!(m.lifetime_s, 5_000, "10 % of the time since Last-Modified");
        // Not for a status that is not heuristically cacheable, and never beyond a day.
        let o302 = OriginHead {
            status: 302,
            headers: &h,
        };
        assert!(matches!(evaluate(&o302, date, date, &p), Storable::No(_)));
        let p = Policy {
            heuristic_percent: Some(100),
            ..Policy::with_ttl(None)
        };
        let Storable::Yes(m) = evaluate(&o, date, date, &p) else {
            panic!()
        };
        assert_eq!(m.lifetime_s, 50_000);
        let old = head(&[("Last-Modified", "Thu, 01 Jan 1970 00:00:01 GMT")]);
        let o = OriginHead {
            status: 200,
            headers: &old,
        };
        let Storable::Yes(m) = evaluate(&o, date, date, &p) else {
            panic!()
        };
        assert_eq!(m.lifetime_s, HEURISTIC_LIFETIME_MAX_S);
        // Without the rule's permission: the default TTL, or not stored.
        assert!(matches!(
            evaluate(&o, date, date, &Policy::with_ttl(None)),
            Storable::No(_)
        ));
    }

    #[test]
    fn default_ttl_only_where_configured() {
        let h = head(&[]);
        assert!(matches!(evaluate_200(&h, 0, 0, None), Storable::No(_)));
        let Storable::Yes(m) = evaluate_200(&h, 0, 0, Some(30)) else {
            panic!()
        };
        assert_eq!(m.lifetime_s, 30);
    }

    #[test]
    fn age_counts_upstream_age_and_residence() {
        let h = head(&[("Cache-Control", "max-age=100"), ("Age", "40")]);
        let Storable::Yes(m) = evaluate_200(&h, 1000, 1001, None) else {
            panic!()
        };
        assert_eq!(m.current_age_s(1001), 41);
        assert_eq!(m.current_age_s(1011), 51);
        assert_eq!(m.usability(1060), Usability::MustRevalidate);
    }

    #[test]
    fn stale_windows() {
        let h = head(&[(
            "Cache-Control",
            "max-age=10, stale-while-revalidate=20, stale-if-error=100",
        )]);
        let Storable::Yes(m) = evaluate_200(&h, 0, 0, None) else {
            panic!()
        };
        assert_eq!(m.usability(15), Usability::StaleWhileRevalidate);
        assert_eq!(m.usability(31), Usability::MustRevalidate);
        assert!(m.stale_if_error_ok(100));
        assert!(!m.stale_if_error_ok(111));
    }

    #[test]
    fn meta_round_trip_and_garbage() {
        let h = head(&[
            ("Cache-Control", "no-cache"),
            ("ETag", "\"v1\""),
            ("Content-Type", "video/mp4"),
            ("Connection", "close"),
        ]);
        let Storable::Yes(m) = evaluate_200(&h, 0, 0, None) else {
            panic!()
        };
        assert!(m.always_revalidate);
        assert_eq!(
            &m.header_block[..],
            b"Cache-Control: no-cache\r\nETag: \"v1\"\r\nContent-Type: video/mp4\r\n"
        );
        let blob = m.encode();
        assert_eq!(Meta::decode(&blob).unwrap(), m);
        for cut in 0..blob.len() {
            assert!(Meta::decode(&blob.slice(..cut)).is_none());
        }
    }

    #[test]
    fn oversized_headers_are_trimmed_to_the_essential() {
        let big = "x".repeat(600);
        let h = head(&[
            ("Cache-Control", "max-age=60"),
            ("X-Debug", &big),
            ("Content-Type", "video/mp4"),
        ]);
        let Storable::Yes(m) = evaluate_200(&h, 0, 0, None) else {
            panic!()
        };
        let blob = m.encode_bounded(464).unwrap();
        assert!(blob.len() <= 464);
        let back = Meta::decode(&blob).unwrap();
        assert_eq!(
            &back.header_block[..],
            b"Cache-Control: max-age=60\r\nContent-Type: video/mp4\r\n"
        );
        let huge = "y".repeat(600);
        let h = head(&[("Cache-Control", "max-age=60"), ("Content-Type", &huge)]);
        let Storable::Yes(m) = evaluate_200(&h, 0, 0, None) else {
            panic!()
        };
        assert!(m.encode_bounded(464).is_none());
    }

    #[test]
    fn conditional_matching() {
        let h = head(&[
            ("ETag", "W/\"abc\""),
            ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("Cache-Control", "max-age=1"),
        ]);
        let Storable::Yes(m) = evaluate_200(&h, 0, 0, None) else {
            panic!()
        };
        assert!(not_modified(&m, Some("\"abc\""), None));
        assert!(!not_modified(
            &m,
            Some("\"x\""),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        ));
        assert!(not_modified(
            &m,
            None,
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        ));
        assert!(!not_modified(
            &m,
            None,
            Some("Sat, 05 Nov 1994 08:49:37 GMT")
        ));
    }
}
