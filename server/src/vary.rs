//! Stored variants (RFC 9111 §4.1). A response with `Vary` is stored under a *variant key*: the
//! cache key, `#vary:`, and a hash of the request's values for the fields `Vary` names
//! (normalised). Under the cache key itself goes a *stub*: an empty object whose metadata names
//! those fields and the variants stored so far (at most [`VARIANTS_MAX`]; a new one evicts the
//! oldest), so a lookup finds the stub, computes the request's variant key and looks that up.
//! `Vary: *` is never stored. Accept-Encoding is normalised to the coding the cache will ask
//! the origin for (`br`, `gzip` or none), so players that list codings differently share one
//! variant.

use md5::{Digest, Md5};

/// Variants kept per cache key.
pub const VARIANTS_MAX: usize = 16;

/// Separator between a cache key and a variant's hash ('#' never occurs in a request target).
pub const VARIANT_MARK: &str = "#vary:";

/// The cache key a (variant) key belongs to.
pub fn primary_of(key: &str) -> &str {
    key.split_once(VARIANT_MARK).map_or(key, |(p, _)| p)
}

/// `Vary: *`: the response varies on more than the request; it is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaryStar;

/// The field names of `Vary` values (lower case, sorted, deduplicated); `Err` for `*`.
pub fn fields<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<String>, VaryStar> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for f in v.split(',') {
            let f = f.trim().to_ascii_lowercase();
            if f == "*" {
                return Err(VaryStar);
            }
            if !f.is_empty() {
                out.push(f);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The request's headers as the variant computation reads them: `name:value\n` lines, names in
/// lower case (built once per request in `conn.rs`).
pub fn source_of<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::with_capacity(256);
    for (n, v) in headers {
        for b in n.bytes() {
            s.push(b.to_ascii_lowercase() as char);
        }
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s
}

/// The request's value for `field` in a variant: every line of that name joined by ", ", each
/// trimmed, runs of white space collapsed; Accept-Encoding as the coding asked upstream.
fn value(source: &str, field: &str) -> String {
    let mut joined = String::new();
    for line in source.lines() {
        if let Some((n, v)) = line.split_once(':') {
            if n == field {
                if !joined.is_empty() {
                    joined.push_str(", ");
                }
                joined.push_str(v.trim());
            }
        }
    }
    if field == "accept-encoding" {
        return normalised_encoding(&joined).to_string();
    }
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The one coding the cache asks the origin for on behalf of this Accept-Encoding: `br` when
/// acceptable, else `gzip`, else none (identity).
pub fn normalised_encoding(accept_encoding: &str) -> &'static str {
    let mut gzip = false;
    let mut br = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        match coding.as_str() {
            "br" => br = true,
            "gzip" | "x-gzip" | "*" => gzip = true,
            _ => {}
        }
    }
    if br {
        "br"
    } else if gzip {
        "gzip"
    } else {
        ""
    }
}

/// The 16-byte hash a variant key ends with (what a stub lists).
pub fn variant_hash(key: &str) -> Option<[u8; 16]> {
    let (_, hex) = key.split_once(VARIANT_MARK)?;
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The variant key of `primary` whose hash is `hash`.
pub fn key_of(primary: &str, hash: &[u8; 16]) -> String {
    let mut key = String::with_capacity(primary.len() + VARIANT_MARK.len() + 32);
    key.push_str(primary);
    key.push_str(VARIANT_MARK);
    for b in hash {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// The variant key of a request (`source`) for a response that varies on `fields`.
pub fn variant_key(primary: &str, fields: &[String], source: &str) -> String {
    let mut h = Md5::new();
    for f in fields {
        h.update(f.as_bytes());
        h.update(b"\0");
        h.update(value(source, f).as_bytes());
        h.update(b"\0");
    }
    key_of(primary, &h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(h: &[(&str, &str)]) -> String {
        source_of(h.iter().copied())
    }

    #[test]
    fn variants_differ_by_the_named_fields_only() {
        let f = fields(["Accept-Encoding, Origin", "origin"].into_iter()).unwrap();
        assert_eq!(f, ["accept-encoding", "origin"]);
        assert!(fields(["Origin, *"].into_iter()).is_err());
        let a = src(&[
            ("Origin", "https://a.example"),
            ("Accept-Encoding", "gzip, deflate"),
        ]);
        let a2 = src(&[
            ("ORIGIN", "https://a.example"),
            ("Accept-Encoding", "deflate,gzip;q=0.8"),
            ("User-Agent", "other"),
        ]);
        let b = src(&[("Origin", "https://b.example"), ("Accept-Encoding", "gzip")]);
        let k = |s: &str| variant_key("foo.com/v/a.m3u8", &f, s);
        assert_eq!(k(&a), k(&a2), "same origin, same normalised coding");
        assert_ne!(k(&a), k(&b));
        assert_eq!(primary_of(&k(&a)), "foo.com/v/a.m3u8");
        let h = variant_hash(&k(&a)).unwrap();
        assert_eq!(key_of("foo.com/v/a.m3u8", &h), k(&a));
        assert_eq!(variant_hash("foo.com/v/a.m3u8"), None);
        assert_eq!(primary_of("foo.com/x"), "foo.com/x");
        // Absent and empty are one variant; two lines join like one line with a comma.
        let f2 = fields(["Foo"].into_iter()).unwrap();
        let k2 = |s: &str| variant_key("k", &f2, s);
        assert_eq!(k2(&src(&[])), k2(&src(&[("Foo", "")])));
        assert_eq!(
            k2(&src(&[("Foo", "a"), ("Foo", "b")])),
            k2(&src(&[("Foo", "a, b")]))
        );
    }

    #[test]
    fn accept_encoding_normalisation() {
        assert_eq!(normalised_encoding("gzip, deflate, br"), "br");
        assert_eq!(normalised_encoding("br;q=0, gzip"), "gzip");
        assert_eq!(normalised_encoding("identity"), "");
        assert_eq!(normalised_encoding(""), "");
        assert_eq!(normalised_encoding("*"), "gzip");
        assert_eq!(normalised_encoding("gzip;q=0"), "");
    }
}
