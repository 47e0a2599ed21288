//! A differential test of Arrow's freshness and storability decisions (`freshness::evaluate`)
//! against an independent implementation of RFC 9111, the `http-cache-semantics` crate (a port
//! of the npm library most JavaScript caches use), as a shared cache, over a generated corpus of
//! response header sets. Every disagreement about how long a response may be served without
//! revalidation must fall in a class listed here with the RFC section that justifies Arrow's
//! answer; any other disagreement fails the test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_server::freshness::{evaluate, OriginHead, Policy, Storable};
use http_cache_semantics::{CacheOptions, CachePolicy};
use rand::{Rng, SeedableRng};

/// Why Arrow may answer differently, with the section that allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Justified {
    /// No explicit freshness: heuristic freshness is optional (RFC 9111 §4.2.2); Arrow applies
    /// a host rule's `default_ttl_s` instead of guessing from Last-Modified.
    Heuristic,
    /// `proxy-revalidate` obliges a shared cache to revalidate once the response is stale
    /// (RFC 9111 §5.2.2.8), not before: Arrow serves it while fresh.
    ProxyRevalidate,
    /// Any final status may be stored when explicitly fresh (RFC 9111 §3); the crate only
    /// stores the statuses it knows.
    StatusStoredWhenExplicitlyFresh,
    /// A cache may always refuse to store (RFC 9111 §3): Arrow never shares a response that
    /// sets a cookie, `public` or not.
    SetCookieNeverShared,
    /// The response's age counts the time since its `Date` (apparent_age, RFC 9111 §4.2.3:
    /// corrected_initial_age = max(apparent_age, corrected_age_value)); the reference counts
    /// only the `Age` field, so it serves an old response for longer.
    ApparentAge,
}

#[derive(Debug, Clone)]
struct Case {
    status: u16,
    headers: Vec<(String, String)>,
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn corpus(n: usize, now: SystemTime) -> Vec<Case> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9111);
    let statuses = [
        200, 200, 200, 203, 204, 301, 302, 307, 308, 404, 410, 500, 501,
    ];
    let ccs = [
        "",
        "max-age=N",
        "s-maxage=N",
        "max-age=N, s-maxage=M",
        "public, max-age=N",
        "private, max-age=N",
        "no-store",
        "no-cache",
        "no-cache, max-age=N",
        "must-revalidate, max-age=N",
        "proxy-revalidate, max-age=N",
        "max-age=0",
        "public",
        "max-age=N, stale-while-revalidate=30",
    ];
    (0..n)
        .map(|_| {
            let mut h: Vec<(String, String)> = Vec::new();
            let mut push = |n: &str, v: String| h.push((n.to_string(), v));
            let cc = ccs[rng.gen_range(0..ccs.len())]
                .replace('N', &rng.gen_range(0..100_000u32).to_string())
                .replace('M', &rng.gen_range(0..100_000u32).to_string());
            if !cc.is_empty() {
                push("Cache-Control", cc);
            }
            let date_back = rng.gen_range(0..3_600u64);
            if rng.gen_bool(0.8) {
                push("Date", http_date(now - Duration::from_secs(date_back)));
            }
            match rng.gen_range(0..5) {
                0 => push(
                    "Expires",
                    http_date(now + Duration::from_secs(rng.gen_range(0..100_000))),
                ),
                1 => push(
                    "Expires",
                    http_date(now - Duration::from_secs(rng.gen_range(1..100_000))),
                ),
                2 => push("Expires", "0".into()),
                _ => {}
            }
            if rng.gen_bool(0.3) {
                push("Age", rng.gen_range(0..200_000u32).to_string());
            }
            if rng.gen_bool(0.5) {
                push(
                    "Last-Modified",
                    http_date(now - Duration::from_secs(rng.gen_range(0..10_000_000))),
                );
            }
            match rng.gen_range(0..10) {
                0 => push("Vary", "Accept-Encoding".into()),
                1 => push("Vary", "*".into()),
                _ => {}
            }
            if rng.gen_bool(0.1) {
                push("Set-Cookie", "a=b".into());
            }
            Case {
                status: statuses[rng.gen_range(0..statuses.len())],
                headers: h,
            }
        })
        .collect()
}

/// Seconds Arrow serves the response without revalidation (0 when not stored).
fn arrow_fresh_s(c: &Case, now_s: u64) -> u64 {
    let head = OriginHead {
        status: c.status,
        headers: &c.headers,
    };
    match evaluate(&head, now_s, now_s, &Policy::with_ttl(None)) {
        Storable::Yes(m) if !m.always_revalidate => {
            m.lifetime_s.saturating_sub(m.current_age_s(now_s))
        }
        _ => 0,
    }
}

/// Seconds the reference serves it without revalidation (0 when not storable).
fn reference_fresh_s(c: &Case, now: SystemTime) -> u64 {
    let req = http::Request::get("https://cdn.example/v/a.ts")
        .body(())
        .unwrap();
    let mut res = http::Response::builder().status(c.status);
    for (n, v) in &c.headers {
        res = res.header(n.as_str(), v.as_str());
    }
    let res = res.body(()).unwrap();
    let policy = CachePolicy::new_options(
        &req.into_parts().0,
        &res.into_parts().0,
        now,
        CacheOptions {
            shared: true,
            ..CacheOptions::default()
        },
    );
    if !policy.is_storable() {
        return 0;
    }
    policy.time_to_live(now).as_secs()
}

fn has(c: &Case, name: &str) -> Option<String> {
    c.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_ascii_lowercase())
}

fn classify(c: &Case, arrow: u64, reference: u64, now_s: u64) -> Option<Justified> {
    let cc = has(c, "cache-control").unwrap_or_default();
    let explicit = cc.contains("max-age") || cc.contains("s-maxage") || has(c, "expires").is_some();
    if has(c, "set-cookie").is_some() && arrow == 0 {
        return Some(Justified::SetCookieNeverShared);
    }
    if !explicit && arrow == 0 && reference > 0 {
        return Some(Justified::Heuristic);
    }
    if cc.contains("proxy-revalidate") && reference == 0 && arrow > 0 {
        return Some(Justified::ProxyRevalidate);
    }
    // The reference's TTL less what the Date says beyond the Age field.
    let apparent = c
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("date"))
        .and_then(|(_, d)| httpdate::parse_http_date(d).ok())
        .and_then(|d| d.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| now_s.saturating_sub(d.as_secs()));
    let age_field = has(c, "age")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    if apparent > age_field
        && reference
            .saturating_sub(apparent - age_field)
            .abs_diff(arrow)
            <= 1
    {
        return Some(Justified::ApparentAge);
    }
    let known = [
        200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
    ];
    if !known.contains(&c.status) && explicit && reference == 0 {
        return Some(Justified::StatusStoredWhenExplicitlyFresh);
    }
    None
}

#[test]
fn freshness_agrees_with_an_independent_implementation_or_says_why_not() {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(now_s);
    let cases = corpus(20_000, now);
    let mut agreed = 0;
    let mut justified = std::collections::BTreeMap::<Justified, usize>::new();
    let mut unexplained = Vec::new();
    for c in &cases {
        let (a, r) = (arrow_fresh_s(c, now_s), reference_fresh_s(c, now));
        if a.abs_diff(r) <= 1 {
            agreed += 1;
            continue;
        }
        match classify(c, a, r, now_s) {
            Some(j) => *justified.entry(j).or_default() += 1,
            None => unexplained.push((c.clone(), a, r)),
        }
    }
    eprintln!(
        "agreed {agreed} of {}; justified: {justified:?}",
        cases.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} unexplained disagreements (arrow s, reference s), first ones: {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(8)]
    );
    // The corpus exercises both sides: most cases agree, and each class occurs.
    assert!(agreed > cases.len() / 2, "agreed on only {agreed}");
    assert!(justified.len() >= 3, "{justified:?}");
}
