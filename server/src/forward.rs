//! Which of a viewer's request headers go upstream (RFC 9110 §7.6): every end-to-end field the
//! viewer sent, minus the hop-by-hop fields and those the viewer's `Connection` names, minus what
//! the origin client writes itself (Host, Content-Length) and, on a cache fill, minus Range and
//! the conditionals (the cache asks for the whole body and revalidates with its own
//! validators). `Via` and `X-Forwarded-For` are appended to, and a host rule may set or remove
//! fields (`origin_request_headers`, `origin_request_headers_remove`). On a fill,
//! Accept-Encoding is normalised to one coding (`br`, `gzip`, or none), the one the stored
//! variant stands for.

use std::net::IpAddr;

use crate::http::Request;

/// Hop-by-hop fields (RFC 9110 §7.6.1), plus the ones the origin client writes itself and the
/// intra-cluster pull mark (added back by the pull path only).
const NEVER_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "x-arrow-pull",
];

/// Fields the cache manages on a fill: it fetches whole bodies and revalidates with the stored
/// validators, whatever one viewer asked.
const CACHE_MANAGED: &[&str] = &[
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// What the upstream request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A cache fill shared by every viewer that joins it: Range and conditionals are the
    /// cache's own.
    Fill,
    /// A relay for this viewer alone (pass-through, pull from a peer): the viewer's Range and
    /// conditionals go along.
    Relay,
}

/// A field name is a token (RFC 9110 §5.6.2).
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Fields no host rule may set: the connection's own and the cache's own.
pub fn is_managed(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    NEVER_FORWARDED.contains(&n.as_str())
        || CACHE_MANAGED.contains(&n.as_str())
        || n == "via"
        || n == "x-forwarded-for"
}

/// The header lines (`Name: value\r\n`) for the upstream request on behalf of `req`, which came
/// from `peer`. `set`: the host rule's lines (already formatted); `drop`: lower-case names not
/// forwarded as the viewer sent them.
pub fn upstream_headers(
    req: &Request,
    peer: IpAddr,
    purpose: Purpose,
    set: &str,
    drop: &[String],
) -> String {
    // Fields the viewer's Connection header names are hop-by-hop too.
    let named: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = String::with_capacity(256);
    let mut via = String::new();
    let mut xff = String::new();
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "via" => {
                via.push_str(value);
                via.push_str(", ");
                continue;
            }
            "x-forwarded-for" => {
                xff.push_str(value);
                xff.push_str(", ");
                continue;
            }
            _ => {}
        }
        if purpose == Purpose::Fill && lower == "accept-encoding" {
            // A fill asks for the one coding its variant stands for (crate::vary), so every
            // viewer that normalises to it can share the stored answer.
            if !drop.contains(&lower) {
                let coding = crate::vary::normalised_encoding(value);
                if !coding.is_empty() {
                    out.push_str(name);
                    out.push_str(": ");
                    out.push_str(coding);
                    out.push_str("\r\n");
                }
            }
            continue;
        }
        if NEVER_FORWARDED.contains(&lower.as_str())
            || (purpose == Purpose::Fill && CACHE_MANAGED.contains(&lower.as_str()))
            || named.contains(&lower)
            || drop.contains(&lower)
        {
            continue;
        }
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str(set);
    let peer = peer.to_canonical();
    out.push_str(&format!(
        "Via: {via}1.{} arrow\r\nX-Forwarded-For: {xff}{peer}\r\n",
        req.minor_version.min(1)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            target: "/v/a.ts".into(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            head_len: 0,
            body: crate::http::BodyKind::None,
            keep_alive: true,
        }
    }

    #[test]
    fn end_to_end_fields_go_hop_by_hop_and_managed_ones_do_not() {
        let r = req(&[
            ("Host", "cdn.example"),
            ("User-Agent", "hls.js"),
            ("Accept-Encoding", "gzip"),
            ("X-Request-Id", "abc"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Range", "bytes=0-99"),
            ("If-None-Match", "\"v1\""),
            ("Via", "1.1 edge"),
            ("X-Forwarded-For", "192.0.2.7"),
            ("Cookie", "a=b"),
            ("X-Arrow-Pull", "n01"),
        ]);
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let set = "X-Origin-Token: t0k\r\n";
        let drop = vec!["cookie".to_string(), "x-origin-token".to_string()];
        let fill = upstream_headers(&r, peer, Purpose::Fill, set, &drop);
        assert_eq!(
            fill,
            "User-Agent: hls.js\r\nAccept-Encoding: gzip\r\nX-Request-Id: abc\r\n\
             X-Origin-Token: t0k\r\nVia: 1.1 edge, 1.1 arrow\r\n\
             X-Forwarded-For: 192.0.2.7, 10.0.0.9\r\n"
        );
        let relay = upstream_headers(&r, peer, Purpose::Relay, "", &[]);
        assert!(relay.contains("Range: bytes=0-99\r\n"), "{relay}");
        assert!(relay.contains("If-None-Match: \"v1\"\r\n"), "{relay}");
        assert!(relay.contains("Cookie: a=b\r\n"), "{relay}");
        assert!(!relay.contains("X-Secret-Hop"), "{relay}");
        assert!(!relay.contains("X-Arrow-Pull"), "{relay}");
        let bare = upstream_headers(
            &req(&[]),
            "::ffff:10.0.0.1".parse().unwrap(),
            Purpose::Fill,
            "",
            &[],
        );
        assert_eq!(bare, "Via: 1.1 arrow\r\nX-Forwarded-For: 10.0.0.1\r\n");
    }

    #[test]
    fn names() {
        assert!(is_token("X-Origin-Token"));
        assert!(!is_token("X Token"));
        assert!(!is_token(""));
        assert!(is_managed("Range") && is_managed("HOST") && is_managed("via"));
        assert!(!is_managed("Authorization"));
    }
}
