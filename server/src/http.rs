//! HTTP/1.1 request heads (httparse, bounded), byte ranges, and response heads.
//!
//! Smuggling rules: a request with both Content-Length and Transfer-Encoding, with several
//! differing Content-Lengths, or with a Transfer-Encoding other than a final `chunked` is refused.

use std::fmt::Write as _;

/// A parsed request head. Header names keep their case; lookups are case-insensitive.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head in the read buffer.
    pub head_len: usize,
    pub body: BodyKind,
    pub keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// Why a request head was refused: the status to answer and a reason for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Path and query of the target (absolute-form targets are reduced to origin-form).
    pub fn path_and_query(&self) -> &str {
        if let Some(rest) = self
            .target
            .strip_prefix("http://")
            .or_else(|| self.target.strip_prefix("https://"))
        {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
        &self.target
    }

    /// The Host: the Host header, or the authority of an absolute-form target.
    pub fn host(&self) -> Option<&str> {
        if let Some(rest) = self
            .target
            .strip_prefix("http://")
            .or_else(|| self.target.strip_prefix("https://"))
        {
            return Some(rest.split('/').next().unwrap_or(rest));
        }
        self.header("host")
    }
}

/// The most header fields `limits.headers_count_max` may allow (parsed on the stack).
pub const HEADERS_COUNT_LIMIT: usize = 128;

/// Parse a request head from `buf`. `Ok(None)`: need more bytes (the caller enforces the
/// byte bound: `buf.len() > header_bytes_max` without a complete head is a 431).
pub fn parse_request(buf: &[u8], headers_count_max: usize) -> Result<Option<Request>, Refusal> {
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; HEADERS_COUNT_LIMIT];
    let mut req = httparse::Request::new(&mut []);
    let n = headers_count_max.min(HEADERS_COUNT_LIMIT);
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage[..n]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "too many header fields"));
        }
        Err(e) => return Err(refuse(400, format!("malformed request: {e}"))),
    };
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("").to_string();
    let minor_version = req.version.unwrap_or(1);
    if !(target.starts_with('/') || target.starts_with("http://") || target.starts_with("https://"))
    {
        return Err(refuse(
            400,
            "request target must be origin-form or absolute-form",
        ));
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    let mut hosts = 0;
    let mut connection_close = minor_version == 0;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| refuse(400, format!("header {} is not valid UTF-8", h.name)))?
            .trim()
            .to_string();
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n: u64 = part
                    .trim()
                    .parse()
                    .map_err(|_| refuse(400, "invalid Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(refuse(400, "conflicting Content-Length headers"));
                }
                content_length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(refuse(400, "repeated Transfer-Encoding header"));
            }
            transfer_encoding = Some(value.to_ascii_lowercase());
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                connection_close = true;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                connection_close = false;
            }
        }
        headers.push((h.name.to_string(), value));
    }
    if hosts > 1 {
        return Err(refuse(400, "more than one Host header"));
    }
    if hosts == 0 && minor_version == 1 {
        return Err(refuse(400, "HTTP/1.1 request without Host"));
    }
    let body = match (content_length, transfer_encoding) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                400,
                "both Content-Length and Transfer-Encoding (refused: request smuggling risk)",
            ))
        }
        (None, Some(te)) => {
            if te.trim() != "chunked" {
                return Err(refuse(501, format!("unsupported Transfer-Encoding {te:?}")));
            }
            BodyKind::Chunked
        }
        (Some(0), None) | (None, None) => BodyKind::None,
        (Some(n), None) => BodyKind::Length(n),
    };
    Ok(Some(Request {
        method,
        target,
        minor_version,
        headers,
        head_len,
        body,
        keep_alive: !connection_close,
    }))
}

/// A single byte range resolved against a body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// No Range header, or one we ignore (multiple ranges, other units): send the whole body.
    Whole,
    /// Inclusive first..=last.
    Bytes {
        first: u64,
        last: u64,
    },
    Unsatisfiable,
}

/// Parse a Range header value against `len` (RFC 9110 §14.1.2). Multi-range requests are
/// answered with the whole body, as the RFC allows.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeSpec {
    let Some(v) = value else {
        return RangeSpec::Whole;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeSpec::Whole;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // suffix range
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Whole;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Bytes {
            first: len.saturating_sub(n),
            last: len - 1,
        };
    }
    let Ok(first) = a.parse::<u64>() else {
        return RangeSpec::Whole;
    };
    let last = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(l) if l >= first => l,
            _ => return RangeSpec::Whole,
        }
    };
    if first >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Bytes {
        first,
        last: last.min(len - 1),
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        // The reason phrase is optional (RFC 9112 §4): none rather than a made-up one.
        _ => "",
    }
}

/// Builder of a response head into one buffer. Every head gets one `Date` (RFC 9110 §6.6.1): one
/// a block written into it carries (the origin's, stored with the response), else the node's
/// clock at `finish`.
pub struct HeadWriter {
    pub buf: Vec<u8>,
    has_date: bool,
}

/// True if a block of header lines holds a `Date` field.
fn block_has_date(block: &[u8]) -> bool {
    block
        .split(|&b| b == b'\n')
        .any(|line| line.len() > 5 && line[..5].eq_ignore_ascii_case(b"date:"))
}

thread_local! {
    /// (unix second, its IMF-fixdate): formatted once per second per thread.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Append the current time as an HTTP date (formatted once per second, no allocation after).
fn push_http_date_now(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(d.1.as_bytes());
    })
}

impl HeadWriter {
    pub fn new(status: u16) -> HeadWriter {
        let mut buf = Vec::with_capacity(512);
        let _ = write!(
            Wrap(&mut buf),
            "HTTP/1.1 {} {}\r\n",
            status,
            reason_phrase(status)
        );
        HeadWriter {
            buf,
            has_date: false,
        }
    }
    pub fn header(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        self.has_date |= name.eq_ignore_ascii_case("date");
        let _ = write!(Wrap(&mut self.buf), "{name}: {value}\r\n");
        self
    }
    pub fn raw(&mut self, block: &[u8]) -> &mut Self {
        self.has_date = self.has_date || block_has_date(block);
        self.buf.extend_from_slice(block);
        self
    }
    /// `block` (header lines ending in CRLF) minus the lines whose field name is in `names`
    /// (ASCII case-insensitive): fields the cache writes itself.
    pub fn raw_without(&mut self, block: &[u8], names: &[&str]) -> &mut Self {
        for line in block.split_inclusive(|&b| b == b'\n') {
            let name = line.split(|&b| b == b':').next().unwrap_or(&[]);
            if !names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            {
                self.has_date = self.has_date || name.eq_ignore_ascii_case(b"date");
                self.buf.extend_from_slice(line);
            }
        }
        self
    }
    pub fn finish(mut self) -> Vec<u8> {
        if !self.has_date {
            self.buf.extend_from_slice(b"Date: ");
            push_http_date_now(&mut self.buf);
            self.buf.extend_from_slice(b"\r\n");
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }
}

struct Wrap<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Wrap<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The Connection header value for a response.
pub fn connection_value(keep_alive: bool) -> &'static str {
    if keep_alive {
        "keep-alive"
    } else {
        "close"
    }
}

/// A complete small response (errors, admin answers) with a text body.
/// What a viewer is told about an upstream failure: a short generic text. The detail (which
/// origin or node, which error) goes to the node's log only, never to the viewer.
pub fn upstream_failure_text(status: u16) -> &'static str {
    match status {
        502 => "bad gateway: the upstream could not be reached or failed",
        503 => "service unavailable, try again",
        504 => "gateway timeout",
        _ => "upstream error",
    }
}

/// An error the node answers itself: a short text, `X-Cache: ERROR`, the request's id (also in
/// the access log) and `extra` header lines (the host's CORS fields, so a browser can read it).
pub fn error_response(
    status: u16,
    server: &str,
    body: &str,
    keep_alive: bool,
    request_id: &str,
    extra: &[u8],
) -> Vec<u8> {
    let mut lines = Vec::with_capacity(extra.len() + 64);
    lines.extend_from_slice(extra);
    lines.extend_from_slice(b"X-Cache: ERROR\r\nX-Request-Id: ");
    lines.extend_from_slice(request_id.as_bytes());
    lines.extend_from_slice(b"\r\n");
    text_response(status, server, body, keep_alive, &lines)
}

pub fn simple_response(status: u16, server: &str, body: &str, keep_alive: bool) -> Vec<u8> {
    text_response(status, server, body, keep_alive, b"")
}

/// A short text answer (the body and a newline) with `lines` in its head.
fn text_response(status: u16, server: &str, body: &str, keep_alive: bool, lines: &[u8]) -> Vec<u8> {
    let mut h = HeadWriter::new(status);
    h.raw(lines);
    h.header("Server", server)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Length", body.len() + 1)
        .header("Connection", connection_value(keep_alive));
    let mut out = h.finish();
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Request>, Refusal> {
        parse_request(s.as_bytes(), 64)
    }

    #[test]
    fn every_head_gets_one_date() {
        let out = String::from_utf8(HeadWriter::new(200).finish()).unwrap();
        assert_eq!(out.matches("\r\nDate: ").count(), 1, "{out}");
        let mut h = HeadWriter::new(200);
        h.raw(b"date: Tue, 01 Dec 2026 10:00:00 GMT\r\nETag: \"a\"\r\n");
        let out = String::from_utf8(h.finish()).unwrap();
        assert_eq!(
            out.to_ascii_lowercase().matches("date: ").count(),
            1,
            "{out}"
        );
        assert!(out.contains("Tue, 01 Dec 2026 10:00:00 GMT"), "{out}");
        let mut h = HeadWriter::new(200);
        h.raw_without(
            b"Date: Tue, 01 Dec 2026 10:00:00 GMT\r\n",
            &["accept-ranges"],
        );
        let out = String::from_utf8(h.finish()).unwrap();
        assert_eq!(out.matches("Date: ").count(), 1, "{out}");
        // A field that only ends in "date" is not a Date.
        let mut h = HeadWriter::new(200);
        h.raw(b"X-Update: 1\r\n");
        let out = String::from_utf8(h.finish()).unwrap();
        assert_eq!(out.matches("\r\nDate: ").count(), 1, "{out}");
    }

    #[test]
    fn raw_without_drops_the_named_fields_only() {
        let mut h = HeadWriter::new(200);
        h.raw_without(
            b"Accept-Ranges: bytes\r\nETag: \"x\"\r\ncontent-range: bytes 0-1/2\r\nX-Accept-Ranges-Like: 1\r\n",
            &["accept-ranges", "content-range"],
        );
        let out = String::from_utf8(h.finish()).unwrap();
        assert!(out.contains("ETag: \"x\"\r\n"), "{out}");
        assert!(out.contains("X-Accept-Ranges-Like: 1\r\n"), "{out}");
        assert!(
            !out.to_ascii_lowercase().contains("accept-ranges: bytes"),
            "{out}"
        );
        assert!(!out.to_ascii_lowercase().contains("content-range"), "{out}");
    }

    #[test]
    fn parses_keep_alive_get() {
        let r = p("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path_and_query(), "/a?b");
        assert!(r.keep_alive);
        assert_eq!(r.body, BodyKind::None);
        assert!(p("GET /a HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let both =
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(p(both).unwrap_err().status, 400);
        let two_cl = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(p(two_cl).unwrap_err().status, 400);
        let listed = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n";
        assert_eq!(p(listed).unwrap_err().status, 400);
        let same = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(p(same).unwrap().unwrap().body, BodyKind::Length(3));
        let te = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(p(te).unwrap_err().status, 501);
    }

    #[test]
    fn malformed_is_400_and_missing_host_is_400() {
        assert_eq!(p("GET\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(
            p("GET x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err().status,
            400
        );
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        let r = p(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"));
        assert_eq!(r.unwrap_err().status, 431);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range(Some("bytes=0-9"), 100),
            RangeSpec::Bytes { first: 0, last: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            RangeSpec::Bytes {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            RangeSpec::Bytes {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            parse_range(Some("bytes=50-1000"), 100),
            RangeSpec::Bytes {
                first: 50,
                last: 99
            }
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeSpec::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeSpec::Whole);
        assert_eq!(parse_range(Some("bytes=9-3"), 100), RangeSpec::Whole);
        assert_eq!(parse_range(None, 100), RangeSpec::Whole);
    }
}
