//! The caching HTTP node through real processes: an `arrow run` per test, a real origin.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_tests::*;

const HOST: &str = "cdn.example.test";

struct Setup {
    origin: Origin,
    node: Node,
    _dir: tempfile::TempDir,
}

/// Port 0 for HTTP and admin: the node binds them and reports what it got
/// ([`Node::start`] reads it back into `node.http` / `node.admin`).
fn addrs() -> (SocketAddr, SocketAddr) {
    (
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
}

/// A node in front of an origin that serves `body_for(path)` with max-age=300 (overridable).
fn setup(
    tag: &str,
    extra: &str,
    handler: impl Fn(&SeenRequest) -> OriginReply + Send + Sync + 'static,
) -> Setup {
    let dir = scratch_dir(tag);
    let origin = Origin::start(handler);
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], extra);
    let node = Node::start(dir.path(), &cfg, http, admin);
    Setup {
        origin,
        node,
        _dir: dir,
    }
}

fn media(req: &SeenRequest) -> OriginReply {
    let len = if req.path.contains("huge") {
        12 << 20
    } else if req.path.contains("big") {
        3 << 20
    } else {
        10_000
    };
    OriginReply::ok(body_for(&req.path, len), "max-age=300")
        .header("ETag", &format!("\"{}\"", req.path.len()))
        .header("Content-Type", "video/mp2t")
}

#[test]
fn miss_then_hit() {
    let s = setup("miss-hit", "", media);
    let a = get(s.node.http, "/v/t1/seg-1.ts?x=1", HOST, &[]).unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.x_cache(), "MISS");
    assert_eq!(a.body, body_for("/v/t1/seg-1.ts?x=1", 10_000));
    assert_eq!(a.header("server"), Some("n01.test"));
    assert_eq!(
        a.header("x-arrow-cache-key"),
        Some("example.test/v/t1/seg-1.ts")
    );
    let b = get(s.node.http, "/v/t1/seg-1.ts?x=2", HOST, &[]).unwrap();
    assert_eq!(b.status, 200);
    assert_eq!(b.x_cache(), "HIT");
    assert_eq!(b.body, a.body);
    assert!(b.header("age").is_some());
    assert_eq!(s.origin.requests(), 1);
    // HEAD is served from cache too, without a body.
    let h = request(s.node.http, "HEAD", "/v/t1/seg-1.ts", HOST, &[]).unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("10000"));
    assert_eq!(s.origin.requests(), 1);
}

#[test]
fn large_object_streams_and_hits() {
    let s = setup("large", "", media);
    let a = get(s.node.http, "/v/t1/big.mp4", HOST, &[]).unwrap();
    assert_eq!(a.body, body_for("/v/t1/big.mp4", 3 << 20));
    assert!(wait_until(Duration::from_secs(5), || {
        get(s.node.http, "/v/t1/big.mp4", HOST, &[])
            .unwrap()
            .x_cache()
            == "HIT"
    }));
    let b = get(s.node.http, "/v/t1/big.mp4", HOST, &[]).unwrap();
    assert_eq!(b.body, a.body);
    assert_eq!(s.origin.requests(), 1);
    // The RAM tier (8 MiB here) keeps bodies by chunk (1 MiB units, within its per-object
    // bound of 1 MiB): the first hit read the three chunks from the disk, and the disk's read
    // counters (the brpu's observed disk bandwidth) show them once the shard's periodic stats
    // snapshot has run; later hits take the chunks from the tier.
    let total = |m: &str, name: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut m = String::new();
    // (A request that arrives while the fill still commits is served from the fill's memory, so
    // keep asking until the stored copy has been read.)
    let seen = wait_until(Duration::from_secs(10), || {
        let again = get(s.node.http, "/v/t1/big.mp4", HOST, &[]).unwrap();
        assert_eq!(again.body, a.body);
        m = String::from_utf8(get(s.node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        total(&m, "arrow_disk_reads_total{") >= 2.0
            && total(&m, "arrow_ram_tier_hits_total{") >= 3.0
    });
    assert!(seen, "{m}");
    assert!(
        total(&m, "arrow_disk_read_bytes_total{") >= (3 << 20) as f64,
        "{m}"
    );
    assert!(
        total(&m, "arrow_disk_read_busy_seconds_total{") > 0.0,
        "{m}"
    );
}

/// Bodies of 64 KiB and more are sent from the RAM tier's memfd by splice. The tier (8 MiB per
/// shard here) holds ~13 of these 600 kB bodies and 30 are requested, so regions are freed and
/// reused all the time — while a slow reader still has one body in its socket buffer, and while
/// others read whole bodies and ranges. Every byte must be the object's own.
#[test]
fn spliced_ram_tier_hits_stay_intact_while_the_tier_churns() {
    const LEN: usize = 600_000;
    const KEYS: usize = 30;
    let s = setup("splice", "", |req| {
        OriginReply::ok(body_for(&req.path, LEN), "max-age=300")
    });
    let http = s.node.http;
    let path = |i: usize| format!("/v/s{i}/seg.ts");
    for i in 0..KEYS {
        assert_eq!(get(http, &path(i), HOST, &[]).unwrap().body.len(), LEN);
    }
    assert!(wait_until(Duration::from_secs(10), || {
        (0..KEYS).all(|i| get(http, &path(i), HOST, &[]).unwrap().x_cache() == "HIT")
    }));
    // The slow reader: asks for key 0, then reads 8 KiB every 2 ms while the tier churns.
    let slow = std::thread::spawn(move || {
        let mut c = TcpStream::connect(http).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            c,
            "GET /v/s0/seg.ts HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = c.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&chunk[..n]);
            std::thread::sleep(Duration::from_millis(2));
        }
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&all[..head_end]).to_string();
        (head, all[head_end..].to_vec())
    });
    let churners: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..25 {
                    let i = (t * 7 + round * 11) % KEYS;
                    let full = body_for(&path(i), LEN);
                    if round % 3 == 0 {
                        let r =
                            get(http, &path(i), HOST, &[("Range", "bytes=70000-199999")]).unwrap();
                        assert_eq!(r.status, 206);
                        assert!(r.body == full[70_000..200_000], "range of key {i} differs");
                    } else {
                        let r = get(http, &path(i), HOST, &[]).unwrap();
                        assert_eq!(r.status, 200);
                        assert!(r.body == full, "body of key {i} differs");
                    }
                }
            })
        })
        .collect();
    for t in churners {
        t.join().unwrap();
    }
    let (head, body) = slow.join().unwrap();
    assert!(head.contains("X-Cache: HIT"), "{head}");
    assert!(
        body == body_for("/v/s0/seg.ts", LEN),
        "slow reader's body differs"
    );
    assert_eq!(s.origin.requests(), KEYS as u64);
}

#[test]
fn hundred_concurrent_cold_requests_reach_origin_once() {
    let s = setup("coalesce", "", |req| {
        let mut r = OriginReply::ok(body_for(&req.path, 200_000), "max-age=300");
        r.delay = Duration::from_millis(300);
        r.piece_delay = Duration::from_millis(50);
        r
    });
    let http = s.node.http;
    let threads: Vec<_> = (0..100)
        .map(|_| std::thread::spawn(move || get(http, "/v/cold/seg.ts", HOST, &[]).unwrap()))
        .collect();
    let mut results = std::collections::HashMap::new();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body_for("/v/cold/seg.ts", 200_000));
        *results.entry(r.x_cache().to_string()).or_insert(0) += 1;
    }
    assert_eq!(s.origin.requests_for("/v/cold/seg.ts"), 1, "{results:?}");
    assert_eq!(results.get("MISS"), Some(&1), "{results:?}");
}

#[test]
fn ranges_on_miss_and_hit() {
    let s = setup("range", "", |req| {
        let mut r = OriginReply::ok(body_for(&req.path, 100_000), "max-age=300");
        r.piece_delay = Duration::from_millis(30);
        r
    });
    let full = body_for("/v/r/seg.ts", 100_000);
    // On a miss: served as soon as the bytes are there.
    let a = get(
        s.node.http,
        "/v/r/seg.ts",
        HOST,
        &[("Range", "bytes=10-19")],
    )
    .unwrap();
    assert_eq!(a.status, 206);
    assert_eq!(a.header("content-range"), Some("bytes 10-19/100000"));
    assert_eq!(a.body, &full[10..20]);
    assert!(wait_until(Duration::from_secs(5), || {
        get(s.node.http, "/v/r/seg.ts", HOST, &[])
            .unwrap()
            .x_cache()
            == "HIT"
    }));
    // On a hit: suffix range, open range, unsatisfiable.
    let b = get(s.node.http, "/v/r/seg.ts", HOST, &[("Range", "bytes=-5")]).unwrap();
    assert_eq!(b.status, 206);
    assert_eq!(b.x_cache(), "HIT");
    assert_eq!(b.body, &full[99_995..]);
    let c = get(
        s.node.http,
        "/v/r/seg.ts",
        HOST,
        &[("Range", "bytes=99990-")],
    )
    .unwrap();
    assert_eq!(c.body, &full[99_990..]);
    let d = get(
        s.node.http,
        "/v/r/seg.ts",
        HOST,
        &[("Range", "bytes=100000-")],
    )
    .unwrap();
    assert_eq!(d.status, 416);
    assert_eq!(d.header("content-range"), Some("bytes */100000"));
    // Unsatisfiable on a miss, too.
    let e = get(
        s.node.http,
        "/v/r/other.ts",
        HOST,
        &[("Range", "bytes=200000-")],
    )
    .unwrap();
    assert_eq!(e.status, 416);
    assert_eq!(s.origin.requests(), 2);
}

#[test]
fn conditional_requests_and_revalidation() {
    let version = Arc::new(AtomicU64::new(1));
    let v = version.clone();
    let s = setup("revalidate", "", move |req| {
        let etag = format!("\"v{}\"", v.load(Ordering::SeqCst));
        if req.header("if-none-match") == Some(etag.as_str()) {
            return OriginReply {
                status: 304,
                headers: vec![
                    ("ETag".into(), etag),
                    ("Cache-Control".into(), "max-age=1, public".into()),
                    ("X-Policy".into(), "updated".into()),
                    ("Content-Length".into(), "1".into()),
                ],
                body: vec![],
                delay: Duration::ZERO,
                piece_delay: Duration::ZERO,
                interim: Vec::new(),
            };
        }
        OriginReply::ok(body_for(&etag, 5000), "max-age=1")
            .header("ETag", &etag)
            .header("X-Policy", "original")
    });
    let a = get(s.node.http, "/m/t/manifest.m3u8", HOST, &[]).unwrap();
    assert_eq!(a.status, 200);
    // A conditional viewer gets 304 from cache.
    let b = get(
        s.node.http,
        "/m/t/manifest.m3u8",
        HOST,
        &[("If-None-Match", "\"v1\"")],
    )
    .unwrap();
    assert_eq!(b.status, 304);
    assert_eq!(b.header("etag"), Some("\"v1\""));
    // A 304 carries what the 200 would have among Cache-Control, Expires, Vary (RFC 9110
    // §15.4.5), and a Date.
    assert_eq!(b.header("cache-control"), Some("max-age=1"));
    assert!(b.header("date").is_some());
    assert_eq!(s.origin.requests(), 1);
    // After expiry: a conditional request upstream; the origin's 304 refreshes the copy.
    std::thread::sleep(Duration::from_millis(2100));
    let c = get(s.node.http, "/m/t/manifest.m3u8", HOST, &[]).unwrap();
    assert_eq!(c.status, 200);
    assert_eq!(c.body, a.body);
    assert_eq!(c.x_cache(), "REVALIDATED");
    // The 304's fields replace the stored ones (RFC 9111 §3.2), except Content-Length.
    assert_eq!(c.header("x-policy"), Some("updated"), "{:?}", c.headers);
    assert_eq!(c.header("cache-control"), Some("max-age=1, public"));
    assert_eq!(c.header("content-length"), Some("5000"));
    // ... and are stored: the next hit replays them.
    let c2 = get(s.node.http, "/m/t/manifest.m3u8", HOST, &[]).unwrap();
    assert_eq!(c2.x_cache(), "HIT");
    assert_eq!(c2.header("x-policy"), Some("updated"));
    assert_eq!(s.origin.requests(), 2);
    let seen = s.origin.seen.lock().unwrap().clone();
    assert_eq!(seen[1].header("if-none-match"), Some("\"v1\""));
    // A new version after expiry replaces it.
    version.store(2, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2100));
    let d = get(s.node.http, "/m/t/manifest.m3u8", HOST, &[]).unwrap();
    assert_eq!(d.body, body_for("\"v2\"", 5000));
}

#[test]
fn stale_if_error_with_origin_down() {
    let mut s = setup("stale", "", |req| {
        OriginReply::ok(body_for(&req.path, 3000), "max-age=1, stale-if-error=600")
    });
    let a = get(s.node.http, "/v/s/seg.ts", HOST, &[]).unwrap();
    assert_eq!(a.status, 200);
    s.origin.stop();
    std::thread::sleep(Duration::from_millis(2100));
    let b = get(s.node.http, "/v/s/seg.ts", HOST, &[]).unwrap();
    assert_eq!(b.status, 200);
    assert_eq!(b.x_cache(), "STALE");
    assert_eq!(b.body, a.body);
    // Without a stored copy, a down origin is a 502 that names no origin address.
    let c = get(s.node.http, "/v/s/missing.ts", HOST, &[]).unwrap();
    assert_eq!(c.status, 502);
    assert_eq!(c.x_cache(), "ERROR");
    let text = String::from_utf8_lossy(&c.body).to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("http://"),
        "the error body reveals the origin: {text}"
    );
}

#[test]
fn origin_failover() {
    let dir = scratch_dir("failover");
    // The first origin refuses connections (bound then dropped); the second answers.
    let (_refusing, dead) = refusing_addr();
    let dead = format!("http://{dead}");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[dead, origin.url()], "");
    let node = Node::start(dir.path(), &cfg, http, admin);
    for i in 0..5 {
        let r = get(node.http, &format!("/v/f/seg-{i}.ts"), HOST, &[]).unwrap();
        assert_eq!(r.status, 200, "{}", node.log());
    }
    assert_eq!(origin.requests(), 5);
}

/// Keep-alive connections idle past the linger (200 ms) wait for their next request without a
/// read buffer (`arrow_connections_parked` counts them), and each one parked is served as
/// usual when its next request comes, including a request split over two writes.
#[test]
fn idle_keep_alive_connections_hold_no_read_buffer_and_still_serve() {
    const CONNS: usize = 64;
    let s = setup("parked", "", media);
    let http = s.node.http;
    let parked = || -> u64 {
        let m =
            String::from_utf8(get(s.node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("arrow_connections_parked "))
            .expect("arrow_connections_parked in /metrics")
            .trim()
            .parse()
            .unwrap()
    };
    let ask = |c: &mut (std::net::TcpStream, Vec<u8>), path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        c.0.write_all(raw.as_bytes()).unwrap();
        read_response(&mut c.0, false, &mut c.1).unwrap()
    };
    let mut conns: Vec<(std::net::TcpStream, Vec<u8>)> = (0..CONNS)
        .map(|_| {
            let c = std::net::TcpStream::connect(http).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (c, Vec::new())
        })
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let r = ask(c, &format!("/v/park/{}.ts", i % 4));
        assert_eq!(r.status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(5), || parked() == CONNS as u64),
        "{} of {CONNS} idle connections parked",
        parked()
    );
    // Parked connections serve their next request; half of them send it in two pieces.
    for (i, c) in conns.iter_mut().enumerate() {
        let path = format!("/v/park/{}.ts", i % 4);
        if i % 2 == 0 {
            let r = ask(c, &path);
            assert_eq!(r.status, 200, "connection {i}");
            assert!(r.body == body_for(&path, 10_000), "connection {i}");
        } else {
            c.0.write_all(format!("GET {path} HTTP/1.1\r\n").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
            c.0.write_all(format!("Host: {HOST}\r\n\r\n").as_bytes())
                .unwrap();
            let r = read_response(&mut c.0, false, &mut c.1).unwrap();
            assert_eq!(r.status, 200, "connection {i}");
        }
    }
    assert!(
        wait_until(Duration::from_secs(5), || parked() == CONNS as u64),
        "parked again after the second request"
    );
    drop(conns);
    assert!(
        wait_until(Duration::from_secs(5), || parked() == 0),
        "closed connections leave the count"
    );
}

/// A purge that arrives while the key's fill is still running: the fill's viewer gets its whole
/// body, but what the fill commits afterwards is removed again, and the next viewer fetches anew
/// (neither a HIT from the finished fill's memory nor from its late commit).
#[test]
fn a_purge_during_a_fill_keeps_nothing_of_it() {
    let s = setup("purge-fill", "", |req: &SeenRequest| {
        let mut r = OriginReply::ok(body_for(&req.path, 200_000), "max-age=300");
        r.piece_delay = Duration::from_millis(250);
        r
    });
    let http = s.node.http;
    let first = std::thread::spawn(move || get(http, "/v/pf/seg.ts", HOST, &[]).unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || s
            .origin
            .requests_for("/v/pf/seg.ts")
            == 1),
        "the fill reached the origin"
    );
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let ok = request(
        s.node.admin,
        "POST",
        "/purge?key=example.test/v/pf/seg.ts",
        "admin",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let a = first.join().unwrap();
    assert_eq!(a.x_cache(), "MISS");
    assert!(a.body == body_for("/v/pf/seg.ts", 200_000));
    let b = get(http, "/v/pf/seg.ts", HOST, &[]).unwrap();
    assert_eq!(b.x_cache(), "MISS", "the purged fill was served");
    assert_eq!(s.origin.requests_for("/v/pf/seg.ts"), 2);
    // The fetch after the purge is cached as usual.
    assert!(wait_until(Duration::from_secs(10), || get(
        http,
        "/v/pf/seg.ts",
        HOST,
        &[]
    )
    .unwrap()
    .x_cache()
        == "HIT"));
}

#[test]
fn purge_needs_the_token() {
    let s = setup("purge", "", media);
    get(s.node.http, "/v/p/a.ts", HOST, &[]).unwrap();
    get(s.node.http, "/v/p/b.ts", HOST, &[]).unwrap();
    get(s.node.http, "/v/q/c.ts", HOST, &[]).unwrap();
    let key = "example.test/v/p/a.ts";
    let no = request(
        s.node.admin,
        "POST",
        &format!("/purge?key={key}"),
        "admin",
        &[],
    )
    .unwrap();
    assert_eq!(no.status, 401);
    let bad = request(
        s.node.admin,
        "POST",
        &format!("/purge?key={key}"),
        "admin",
        &[("Authorization", "Bearer nope")],
    )
    .unwrap();
    assert_eq!(bad.status, 401);
    assert_eq!(
        get(s.node.http, "/v/p/a.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let ok = request(
        s.node.admin,
        "POST",
        &format!("/purge?key={key}"),
        "admin",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(
        get(s.node.http, "/v/p/a.ts", HOST, &[]).unwrap().x_cache(),
        "MISS"
    );
    let pre = request(
        s.node.admin,
        "POST",
        "/purge?prefix=example.test/v/p/",
        "admin",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(pre.status, 200);
    assert_eq!(
        get(s.node.http, "/v/p/b.ts", HOST, &[]).unwrap().x_cache(),
        "MISS"
    );
    assert_eq!(
        get(s.node.http, "/v/q/c.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    let m = get(s.node.admin, "/metrics", "admin", &[]).unwrap();
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("arrow_requests_total{status=\"2xx\",cache=\"HIT\"}"),
        "{text}"
    );
    assert!(text.contains("arrow_disk_online{"), "{text}");
}

#[test]
fn malformed_input_gets_4xx_and_node_keeps_serving() {
    let s = setup("malformed", "", media);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(), 400),
        (format!("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000)).into_bytes(), 431),
        (b"GET /x HTTP/1.1\r\nHost: unknown.invalid\r\n\r\n".to_vec(), 404),
    ];
    for (raw, want) in cases {
        let r = exchange(s.node.http, &raw, false).unwrap();
        assert_eq!(
            r.status,
            want,
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
        assert!(!r.body.is_empty(), "a reason is given");
    }
    assert_eq!(
        get(s.node.http, "/v/ok/seg.ts", HOST, &[]).unwrap().status,
        200
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = setup("pipeline", "", media);
    let mut c = TcpStream::connect(s.node.http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let raw = format!(
        "GET /v/p/1.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /v/p/2.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /v/p/1.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    c.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let a = read_response(&mut c, false, &mut buf).unwrap();
    let b = read_response(&mut c, false, &mut buf).unwrap();
    let d = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(a.body, body_for("/v/p/1.ts", 10_000));
    assert_eq!(b.body, body_for("/v/p/2.ts", 10_000));
    assert_eq!(d.body, a.body);
}

#[test]
fn slowloris_does_not_block_others() {
    let s = setup("slowloris", "", media);
    // Ten clients that send a partial head and stall.
    let mut slow: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut c = TcpStream::connect(s.node.http).unwrap();
            c.write_all(b"GET /v/x/seg.ts HTTP/1.1\r\nHost: cdn.exam")
                .unwrap();
            c
        })
        .collect();
    let r = get(s.node.http, "/v/fast/seg.ts", HOST, &[]).unwrap();
    assert_eq!(r.status, 200);
    // Served while the slow clients still stall: none of them has been answered (their 408
    // comes only at the header timeout).
    for c in &slow {
        c.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let pending = matches!(
            (&*c).read(&mut byte),
            Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        assert!(
            pending,
            "a slow client was answered before the fast one was served"
        );
        c.set_nonblocking(false).unwrap();
    }
    // The header timeout (2 s in the test config) answers 408 and closes them.
    let mut c = slow.pop().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn restart_keeps_the_cache_and_kill9_restarts_clean() {
    let mut s = setup("restart", "", media);
    for i in 0..20 {
        assert_eq!(
            get(s.node.http, &format!("/v/k/{i}.ts"), HOST, &[])
                .unwrap()
                .status,
            200
        );
    }
    let st = s.node.stop().unwrap();
    assert!(st.success(), "graceful exit: {st}; log:\n{}", s.node.log());
    s.node.spawn();
    for i in 0..20 {
        let r = get(s.node.http, &format!("/v/k/{i}.ts"), HOST, &[]).unwrap();
        assert_eq!(r.x_cache(), "HIT", "object {i} after restart");
        assert_eq!(r.body, body_for(&format!("/v/k/{i}.ts"), 10_000));
    }
    assert_eq!(s.origin.requests(), 20);
    // kill -9 while requests run, then restart: every stored object is intact.
    let http = s.node.http;
    let load = std::thread::spawn(move || {
        for i in 20..200 {
            let _ = get(http, &format!("/v/k/{i}.ts"), HOST, &[]);
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    s.node.kill9();
    let _ = load.join();
    s.node.spawn();
    for i in 0..200 {
        let r = get(s.node.http, &format!("/v/k/{i}.ts"), HOST, &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            body_for(&format!("/v/k/{i}.ts"), 10_000),
            "object {i}"
        );
    }
    for i in 0..20 {
        assert_eq!(
            get(s.node.http, &format!("/v/k/{i}.ts"), HOST, &[])
                .unwrap()
                .x_cache(),
            "HIT"
        );
    }
}

/// Small objects share packs: a 64 MiB slab has 1,024 directory entries, and 3,000 small
/// responses are all stored, survive a restart and are served from the disk after it.
#[test]
fn more_small_objects_than_directory_entries_are_stored_and_survive_a_restart() {
    let mut s = setup("packs", "", |req| {
        OriginReply::ok(body_for(&req.path, 3_000), "max-age=300")
    });
    const N: usize = 3_000;
    for i in 0..N {
        let r = get(s.node.http, &format!("/v/sub/{i}.vtt"), HOST, &[]).unwrap();
        assert_eq!(r.status, 200);
    }
    let gauge = |m: &str, name: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut m = String::new();
    let stored = wait_until(Duration::from_secs(10), || {
        m = String::from_utf8(get(s.node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        gauge(&m, "arrow_disk_objects{") >= N as f64
    });
    assert!(stored, "{m}");
    assert_eq!(gauge(&m, "arrow_disk_objects{"), N as f64, "{m}");
    assert_eq!(gauge(&m, "arrow_disk_packed_objects{"), N as f64, "{m}");
    assert_eq!(gauge(&m, "arrow_disk_evictions_total{"), 0.0, "{m}");
    assert!(gauge(&m, "arrow_disk_packs{") >= 1.0, "{m}");
    let st = s.node.stop().unwrap();
    assert!(st.success(), "graceful exit: {st}; log:\n{}", s.node.log());
    s.node.spawn();
    for i in 0..N {
        let path = format!("/v/sub/{i}.vtt");
        let r = get(s.node.http, &path, HOST, &[]).unwrap();
        assert_eq!(r.x_cache(), "HIT", "object {i} after restart");
        assert_eq!(r.body, body_for(&path, 3_000), "object {i}");
    }
    assert_eq!(s.origin.requests(), N as u64);
}

#[test]
fn uncacheable_responses_pass_through() {
    let s = setup("pass", "", |req| {
        if req.path.contains("private") {
            OriginReply::ok(b"secret".to_vec(), "private, max-age=60")
        } else {
            OriginReply::ok(
                format!("{} {}", req.method, req.path).into_bytes(),
                "max-age=60",
            )
        }
    });
    for _ in 0..2 {
        let r = get(s.node.http, "/v/private/x", HOST, &[]).unwrap();
        assert_eq!(r.body, b"secret");
    }
    assert_eq!(s.origin.requests_for("/v/private/x"), 2);
    let mut c = TcpStream::connect(s.node.http).unwrap();
    c.write_all(format!("POST /api/x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").as_bytes()).unwrap();
    let r = read_response(&mut c, false, &mut Vec::new()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"POST /api/x");
}

/// `node_config` with two shards on cores 0 and 1, each owning one disk.
fn two_shard_config(
    dir: &std::path::Path,
    http: SocketAddr,
    admin: SocketAddr,
    origin: &str,
) -> String {
    node_config(dir, http, admin, &[origin.to_string()], "")
        .replace("cores = [0]", "cores = [0, 1]")
        .replace(
            "[[host]]",
            &format!(
                "[[disk]]\npath = \"{}/d1.slab\"\nsize_bytes = 67108864\nshard = 1\n\n[[host]]",
                dir.display()
            ),
        )
}

#[test]
fn two_shards_serve_keys_of_each_others_disks() {
    let dir = scratch_dir("shards");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = two_shard_config(dir.path(), http, admin, &origin.url());
    let node = Node::start(dir.path(), &cfg, http, admin);
    for round in 0..2 {
        for i in 0..40 {
            let path = format!("/v/s{i}/seg.ts");
            let r = get(node.http, &path, HOST, &[]).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, body_for(&path, 10_000));
            if round == 1 {
                assert_eq!(r.x_cache(), "HIT", "{path}");
            }
        }
    }
    assert_eq!(origin.requests(), 40);
    let m = String::from_utf8(get(node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
    let cross: u64 = m
        .lines()
        .find(|l| l.starts_with("arrow_cross_shard_requests_total "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let objects: Vec<u64> = m
        .lines()
        .filter(|l| l.starts_with("arrow_disk_objects{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(objects.len(), 2, "{m}");
    assert!(
        objects.iter().all(|&n| n > 5),
        "keys spread over both disks: {objects:?}"
    );
    assert!(cross > 0, "some requests crossed shards");
}

/// Connections that one core receives (a client on core 0 over loopback: the kernel's CPU
/// steering gives them all to shard 0) are spread over both shards by the hand-over at accept,
/// and every request on a handed-over connection — pipelined ones too — is answered in order.
#[test]
fn connections_received_by_one_core_spread_over_both_shards() {
    let dir = scratch_dir("balance");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = two_shard_config(dir.path(), http, admin, &origin.url());
    let node = Node::start(dir.path(), &cfg, http, admin);
    let http = node.http;
    // Every connection from a thread pinned to core 0, so its SYNs are processed there.
    let conns = std::thread::spawn(move || {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; pid 0 = this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
        (0..24)
            .map(|_| {
                let s = std::net::TcpStream::connect(http).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let metric = |m: &str, name: &str, shard: usize| -> u64 {
        m.lines()
            .find(|l| l.starts_with(&format!("{name}{{shard=\"{shard}\"}} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} shard {shard} missing:\n{m}"))
    };
    let mut m = String::new();
    let spread = wait_until(Duration::from_secs(5), || {
        m = String::from_utf8(get(node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        // the admin connection itself counts on the shard that took it: allow one
        (0..2).all(|i| metric(&m, "arrow_shard_connections_open", i) >= 11)
    });
    assert!(spread, "24 connections not spread over the shards:\n{m}");
    // Two pipelined requests per connection, all answered, in order.
    for (i, mut s) in conns.into_iter().enumerate() {
        let (a, b) = (format!("/v/b{i}/a.ts"), format!("/v/b{i}/b.ts"));
        let raw = format!(
            "GET {a} HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET {b} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        std::io::Write::write_all(&mut s, raw.as_bytes()).unwrap();
        let mut buf = Vec::new();
        for path in [&a, &b] {
            let r = read_response(&mut s, false, &mut buf).unwrap();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.body, body_for(path, 10_000), "{path}");
        }
    }
    let handed: u64 = (0..2)
        .map(|i| metric(&m, "arrow_shard_connections_handed_off_total", i))
        .sum();
    let adopted: u64 = (0..2)
        .map(|i| metric(&m, "arrow_shard_connections_adopted_total", i))
        .sum();
    assert_eq!(handed, adopted, "{m}");
}

/// A small object whose disk the other shard owns is copied to the shard that took the
/// connection by its first cross-shard hit; later hits there are served from the copy (byte
/// for byte the same, still HIT), and a purge — which reaches every shard — removes the copies
/// with the objects.
#[test]
fn small_objects_of_the_other_shard_are_served_from_replicas_until_purged() {
    let dir = scratch_dir("replicas");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = two_shard_config(dir.path(), http, admin, &origin.url());
    let node = Node::start(dir.path(), &cfg, http, admin);
    let metric = |name: &str| -> u64 {
        let m = String::from_utf8(get(node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        m.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    // Each request on its own connection: the hand-over spreads connections over both shards,
    // so every key is asked for on both.
    for round in 0..6 {
        for i in 0..20 {
            let path = format!("/v/r/s{i}.ts");
            let r = get(node.http, &path, HOST, &[]).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, body_for(&path, 10_000), "{path} round {round}");
            if round > 0 {
                assert_eq!(r.x_cache(), "HIT", "{path} round {round}");
            }
        }
    }
    assert_eq!(origin.requests(), 20);
    let made = metric("arrow_replicas_made_total");
    let hits = metric("arrow_replica_hits_total");
    assert!(made > 0 && hits > 0, "replicas made {made}, hits {hits}");
    // (a gauge: published by the shards' housekeeping every 100 ms)
    assert!(wait_until(Duration::from_secs(5), || metric(
        "arrow_replica_bytes"
    ) > 0));
    // Ranges and conditionals are answered from a replica as from the store.
    let path = "/v/r/s3.ts";
    let full = body_for(path, 10_000);
    for _ in 0..4 {
        let r = get(node.http, path, HOST, &[("Range", "bytes=100-199")]).unwrap();
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &full[100..200]);
    }
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let pre = request(
        node.admin,
        "POST",
        "/purge?prefix=example.test/v/r/",
        "admin",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(pre.status, 200, "{}", String::from_utf8_lossy(&pre.body));
    assert!(
        wait_until(Duration::from_secs(5), || metric("arrow_replica_bytes")
            == 0),
        "purge drops the replicas"
    );
    let hits_before = metric("arrow_replica_hits_total");
    for i in 0..20 {
        let path = format!("/v/r/s{i}.ts");
        let r = get(node.http, &path, HOST, &[]).unwrap();
        assert_eq!(r.x_cache(), "MISS", "{path} after the purge");
    }
    assert_eq!(metric("arrow_replica_hits_total"), hits_before);
    assert_eq!(origin.requests(), 40);
}

#[test]
fn admin_takes_a_disk_offline_and_only_its_keys_move() {
    let dir = scratch_dir("disk-admin");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "").replace(
        "[[host]]",
        &format!(
            "[[disk]]\npath = \"{}/d1.slab\"\nsize_bytes = 67108864\n\n[[host]]",
            dir.path().display()
        ),
    );
    let node = Node::start(dir.path(), &cfg, http, admin);
    let paths: Vec<String> = (0..40).map(|i| format!("/v/d{i}/seg.ts")).collect();
    for p in &paths {
        assert_eq!(get(node.http, p, HOST, &[]).unwrap().status, 200);
    }
    let disks = String::from_utf8(get(node.admin, "/disks", "admin", &[]).unwrap().body).unwrap();
    let first: String = disks.split_whitespace().next().unwrap().to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let no = request(
        node.admin,
        "POST",
        &format!("/disks/{first}/offline"),
        "admin",
        &[],
    )
    .unwrap();
    assert_eq!(no.status, 401);
    let r = request(
        node.admin,
        "POST",
        &format!("/disks/{first}/offline"),
        "admin",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let before = origin.requests();
    let mut moved = 0;
    for p in &paths {
        let r = get(node.http, p, HOST, &[]).unwrap();
        assert_eq!(r.body, body_for(p, 10_000));
        if r.x_cache() != "HIT" {
            moved += 1;
        }
    }
    assert_eq!(
        origin.requests() - before,
        moved as u64,
        "only the offline disk's keys missed"
    );
    assert!(
        moved > 5 && moved < 35,
        "about half the keys were on the offline disk: {moved}"
    );
    // The moved keys are now stored on the healthy disk.
    assert!(wait_until(Duration::from_secs(5), || paths.iter().all(
        |p| get(node.http, p, HOST, &[]).unwrap().x_cache() == "HIT"
    )));
    let disks = String::from_utf8(get(node.admin, "/disks", "admin", &[]).unwrap().body).unwrap();
    assert!(
        disks.contains(&format!("{first} shard=0 offline")),
        "{disks}"
    );
    let r = request(
        node.admin,
        "POST",
        &format!("/disks/{first}/online"),
        "admin",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let disks = String::from_utf8(get(node.admin, "/disks", "admin", &[]).unwrap().body).unwrap();
    assert!(
        disks.contains(&format!("{first} shard=0 online")),
        "{disks}"
    );
}

/// Swapping a failed disk without a restart: its slab is gone (a new, blank device in its
/// place), `POST /disks/<uuid>/replace` opens the path again under the same identity, the disk
/// comes back online and empty, only its keys miss once, and every other object stays. A path
/// holding another Arrow disk is refused (409, saying how to reuse it).
#[test]
fn a_disk_swapped_without_a_restart_comes_back_empty_and_loses_nothing_else() {
    let dir = scratch_dir("disk-swap");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "").replace(
        "[[host]]",
        &format!(
            "[[disk]]\npath = \"{}/d1.slab\"\nsize_bytes = 67108864\n\n[[host]]",
            dir.path().display()
        ),
    );
    let node = Node::start(dir.path(), &cfg, http, admin);
    let paths: Vec<String> = (0..40).map(|i| format!("/v/w{i}/seg.ts")).collect();
    for p in &paths {
        assert_eq!(get(node.http, p, HOST, &[]).unwrap().status, 200);
    }
    let disks = String::from_utf8(get(node.admin, "/disks", "admin", &[]).unwrap().body).unwrap();
    let line = disks.lines().next().unwrap().to_string();
    let uuid = line.split_whitespace().next().unwrap().to_string();
    let slab = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("path="))
        .unwrap()
        .to_string();
    let other_slab = disks
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("path=")))
        .unwrap()
        .to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let replace = || {
        request(
            node.admin,
            "POST",
            &format!("/disks/{uuid}/replace"),
            "admin",
            &[("Authorization", &auth)],
        )
        .unwrap()
    };
    // Another Arrow disk where the slab was: refused, saying how to reuse it.
    std::fs::remove_file(&slab).unwrap();
    std::fs::copy(&other_slab, &slab).unwrap();
    let r = replace();
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("holds Arrow disk"));
    // A blank slab (the new device): replaced, online, empty.
    std::fs::remove_file(&slab).unwrap();
    let r = replace();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let disks = String::from_utf8(get(node.admin, "/disks", "admin", &[]).unwrap().body).unwrap();
    assert!(
        disks.contains(&format!("{uuid} shard=0 online")) && disks.contains("objects=0"),
        "{disks}"
    );
    let before = origin.requests();
    let mut missed = 0;
    for p in &paths {
        let r = get(node.http, p, HOST, &[]).unwrap();
        assert_eq!(r.body, body_for(p, 10_000));
        if r.x_cache() != "HIT" {
            missed += 1;
        }
    }
    assert_eq!(origin.requests() - before, missed as u64);
    assert!(
        missed > 5 && missed < 35,
        "only the swapped disk's keys (about half) missed: {missed}"
    );
    // Stored again on the replacement (same placement): all hits.
    assert!(wait_until(Duration::from_secs(5), || paths.iter().all(
        |p| get(node.http, p, HOST, &[]).unwrap().x_cache() == "HIT"
    )));
    assert_eq!(origin.requests() - before, missed as u64);
}

/// Sum of every sample of `name` (a metric name, labels or not) in a /metrics text.
fn metric_sum(m: &str, name: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn slow_viewers_hold_no_body_and_are_closed_below_the_minimum_rate() {
    let dir = scratch_dir("slow-viewers");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    // A RAM tier too small for any chunk: every piece is a disk read (bytes, not spans).
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "")
        .replace(
            "[limits]\n",
            "[limits]\nsend_rate_min_bytes_per_s = 262144\nsend_rate_window_ms = 1500\nsend_hold_ms = 100\n",
        )
        .replace("ram_tier_bytes = 8388608", "ram_tier_bytes = 65536");
    let node = Node::start(dir.path(), &cfg, http, admin);
    // 12 MiB: more than the kernel's socket buffers of a viewer that never reads.
    let path = "/v/t9/huge.mp4";
    let full = body_for(path, 12 << 20);
    assert_eq!(get(node.http, path, HOST, &[]).unwrap().body, full);
    assert!(wait_until(Duration::from_secs(5), || {
        get(node.http, path, HOST, &[]).unwrap().x_cache() == "HIT"
    }));
    // Twenty viewers ask for the object and never read.
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(node.http).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
            c
        })
        .collect();
    // A viewer that reads is served in full meanwhile.
    let r = get(node.http, path, HOST, &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    // The stalled pieces are given back (nothing held while the sockets are full), and after
    // one rate window below 256 KiB/s every slow viewer is closed and counted.
    let mut m = String::new();
    let closed = wait_until(Duration::from_secs(15), || {
        m = String::from_utf8(get(node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        metric_sum(&m, "arrow_slow_viewers_closed_total") >= 20.0
    });
    assert!(closed, "{m}");
    assert!(
        metric_sum(&m, "arrow_send_pieces_dropped_total") >= 20.0,
        "{m}"
    );
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(
            got.len() < full.len(),
            "a slow viewer got the whole body before it was closed"
        );
    }
    // The node goes on serving.
    assert_eq!(get(node.http, path, HOST, &[]).unwrap().body, full);
    assert_eq!(origin.requests(), 1);
}

#[test]
fn a_fill_holds_one_window_and_a_viewer_behind_it_reads_from_the_disk() {
    let dir = scratch_dir("fill-window");
    let origin = Origin::start(|req: &SeenRequest| {
        let mut r = media(req);
        r.piece_delay = Duration::from_millis(400);
        r
    });
    let (http, admin) = addrs();
    // The shard's fill-memory bound is one window: while the big fill holds any piece (it
    // always keeps its newest), a new fill would pass the bound.
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "").replace(
        "[limits]\n",
        "[limits]\nfill_window_bytes = 262144\nfill_buffer_bytes_max = 262144\n",
    );
    let _node = Node::start(dir.path(), &cfg, http, admin);
    let (http, admin) = (_node.http, _node.admin);
    let path = "/v/t5/huge.mp4";
    let full = body_for(path, 12 << 20);
    let fast = std::thread::spawn(move || get(http, path, HOST, &[]).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    // A viewer that joins the fill and reads nothing for a while: by then the window has moved
    // on, so it reads the start of the body back from the disk writer.
    let mut lagging = TcpStream::connect(http).unwrap();
    write!(
        lagging,
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Fill memory while the body arrives: one window (plus the piece just received), never the
    // 12 MiB body (the peak gauge, so no sample can miss it); meanwhile a miss that arrives while
    // the shard is at its fill-memory bound streams through uncached (misses of fresh keys are
    // sent while the gauge shows fill memory in use, until one is answered).
    let mut passed = None;
    let t = Instant::now();
    let mut n = 0;
    while passed.is_none() && t.elapsed() < Duration::from_secs(10) {
        let m = String::from_utf8(get(admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        if metric_sum(&m, "arrow_fill_buffer_bytes") > 0.0 {
            n += 1;
            let r = get(http, &format!("/v/t5/other-{n}.ts"), HOST, &[]).unwrap();
            if r.x_cache() == "PASS" {
                passed = Some(r);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = fast.join().unwrap();
    assert_eq!(a.x_cache(), "MISS");
    assert_eq!(a.body, full);
    lagging
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let b = read_response(&mut lagging, false, &mut Vec::new()).unwrap();
    assert_eq!(b.x_cache(), "FETCHING");
    assert_eq!(b.body.len(), full.len());
    assert!(b.body == full, "the lagging viewer's body differs");
    // (gauges are published every 100 ms)
    std::thread::sleep(Duration::from_millis(250));
    let m = String::from_utf8(get(admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
    let peak = metric_sum(&m, "arrow_fill_buffer_bytes_peak");
    assert!(peak > 0.0, "fill memory never observed");
    assert!(
        peak <= (2 << 20) as f64,
        "fill memory peaked at {peak} bytes"
    );
    assert!(metric_sum(&m, "arrow_fill_disk_reads_total") >= 1.0, "{m}");
    assert_eq!(metric_sum(&m, "arrow_fill_viewers_cut_total"), 0.0, "{m}");
    let passed = passed.expect("no second miss during the fill");
    assert_eq!(passed.status, 200);
    assert_eq!(passed.x_cache(), "PASS");
    assert!(
        metric_sum(&m, "arrow_fills_over_memory_total") >= 1.0,
        "{m}"
    );
    // The object was stored: the next request is a hit, read from the disk.
    assert!(wait_until(Duration::from_secs(5), || {
        get(http, path, HOST, &[]).unwrap().x_cache() == "HIT"
    }));
    assert_eq!(origin.requests_for(path), 1);
}

#[test]
fn a_committed_fill_gives_its_window_back_while_a_slow_viewer_still_reads_it() {
    let dir = scratch_dir("fill-release");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "")
        .replace("[limits]\n", "[limits]\nfill_window_bytes = 1048576\n");
    let node = Node::start(dir.path(), &cfg, http, admin);
    let path = "/v/t5/huge-release.mp4";
    let full = body_for(path, 12 << 20);
    // A viewer that starts the fill and then reads nothing: 12 MiB is more than its socket
    // buffers take, so it is still streaming the fill long after the body has arrived.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&node.http.into()).unwrap();
    let mut slow: TcpStream = sock.into();
    write!(
        slow,
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Once the object is committed (another viewer gets a hit), the fill's window is given
    // back although the slow viewer still holds the fill.
    assert!(wait_until(Duration::from_secs(10), || {
        get(node.http, path, HOST, &[]).unwrap().x_cache() == "HIT"
    }));
    let mut m = String::new();
    let released = wait_until(Duration::from_secs(3), || {
        m = String::from_utf8(get(node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        metric_sum(&m, "arrow_fill_buffer_bytes") == 0.0
    });
    assert!(
        metric_sum(&m, "arrow_fill_buffer_bytes_peak") > 0.0,
        "the fill never held a window: {m}"
    );
    assert!(released, "a committed fill still holds its window: {m}");
    // The slow viewer reads the rest (from the store now) and gets the whole body.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let r = read_response(&mut slow, false, &mut Vec::new()).unwrap();
    assert_eq!(r.x_cache(), "MISS");
    assert!(r.body == full, "the slow viewer's body differs");
    assert_eq!(origin.requests_for(path), 1);
}

/// Raw response head lines (status line excluded) of one GET on a fresh connection.
fn raw_head_lines(addr: SocketAddr, path: &str, extra: &str) -> Vec<String> {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    head.lines().skip(1).map(str::to_string).collect()
}

fn count_field(lines: &[String], name: &str) -> usize {
    lines
        .iter()
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .count()
}

#[test]
fn cached_answers_carry_one_accept_ranges_and_one_content_range() {
    let s = setup("one-range", "", |req| {
        OriginReply::ok(body_for(&req.path, 5000), "max-age=300").header("Accept-Ranges", "bytes")
    });
    assert_eq!(
        get(s.node.http, "/v/r/a.ts", HOST, &[]).unwrap().status,
        200
    );
    let whole = raw_head_lines(s.node.http, "/v/r/a.ts", "");
    assert_eq!(count_field(&whole, "accept-ranges"), 1, "{whole:?}");
    let ranged = raw_head_lines(s.node.http, "/v/r/a.ts", "Range: bytes=10-19\r\n");
    assert_eq!(count_field(&ranged, "accept-ranges"), 1, "{ranged:?}");
    assert_eq!(count_field(&ranged, "content-range"), 1, "{ranged:?}");
    assert!(
        ranged
            .iter()
            .any(|l| l == "Content-Range: bytes 10-19/5000"),
        "{ranged:?}"
    );
}

#[test]
fn an_interim_1xx_in_the_same_read_as_the_final_head_does_not_stall_the_fill() {
    // An origin that answers every request with 103 Early Hints and the final 200 in one write.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let body = b"hello after early hints";
                    let reply = format!(
                        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                         HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut out = reply.into_bytes();
                    out.extend_from_slice(body);
                    if c.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = scratch_dir("early-hints");
    let (http, admin) = addrs();
    let cfg = node_config(
        dir.path(),
        http,
        admin,
        &[format!("http://{origin_addr}")],
        "",
    );
    let node = Node::start(dir.path(), &cfg, http, admin);
    // The viewer gets the Early Hints, then the final answer.
    let mut c = TcpStream::connect(node.http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET /v/e/page.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let hints = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(hints.status, 103, "{}", node.log());
    let r = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(r.status, 200, "{}", node.log());
    assert_eq!(r.body, b"hello after early hints");
    assert_eq!(r.x_cache(), "MISS");
    let again = get(node.http, "/v/e/page.ts", HOST, &[]).unwrap();
    assert_eq!(again.x_cache(), "HIT");
}

#[test]
fn an_uncacheable_body_larger_than_the_window_streams_at_the_viewers_pace() {
    let dir = scratch_dir("private-window");
    let origin = Origin::start(|req: &SeenRequest| {
        OriginReply::ok(body_for(&req.path, 12 << 20), "private, max-age=60")
    });
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "")
        .replace("[limits]\n", "[limits]\nfill_window_bytes = 262144\n");
    let node = Node::start(dir.path(), &cfg, http, admin);
    let (http, admin) = (node.http, node.admin);
    let path = "/v/p/private.bin";
    // A viewer that starts reading late: the fill waits for it, a window ahead, then streams.
    let mut c = TcpStream::connect(http).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = read_response(&mut c, false, &mut Vec::new()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.x_cache(), "MISS");
    assert!(r.body == body_for(path, 12 << 20), "the body differs");
    // The fill's memory is released once the viewer is done (the gauge follows within 100 ms).
    let mut m = String::new();
    let released = wait_until(Duration::from_secs(5), || {
        m = String::from_utf8(get(admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
        metric_sum(&m, "arrow_fill_buffer_bytes") == 0.0
    });
    assert!(released, "{m}");
    // HEAD of the same: answered from the head; the body nobody reads is not fetched to the end.
    let h = request(http, "HEAD", path, HOST, &[]).unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("12582912"));
    assert_eq!(get(http, "/v/p/other.ts", HOST, &[]).unwrap().status, 200);
    assert_eq!(node.log().matches("panicked").count(), 0, "{}", node.log());
}

#[test]
fn a_miss_reports_the_age_the_origin_gave() {
    let s = setup("age", "", |req| {
        OriginReply::ok(body_for(&req.path, 2000), "max-age=86400").header("Age", "7200")
    });
    let a = get(s.node.http, "/v/a/seg.ts", HOST, &[]).unwrap();
    assert_eq!(a.x_cache(), "MISS");
    let age: u64 = a.header("age").unwrap().parse().unwrap();
    assert!((7200..7260).contains(&age), "MISS Age {age}");
    let b = get(s.node.http, "/v/a/seg.ts", HOST, &[]).unwrap();
    let age: u64 = b.header("age").unwrap().parse().unwrap();
    assert!((7200..7260).contains(&age), "{} Age {age}", b.x_cache());
}

#[test]
fn a_host_rule_puts_the_query_in_the_cache_key() {
    let s = setup("query-keep", "query = [\"v\"]", media);
    let a1 = get(s.node.http, "/v/q/seg.ts?v=1&token=a", HOST, &[]).unwrap();
    assert_eq!(a1.x_cache(), "MISS");
    assert_eq!(a1.body, body_for("/v/q/seg.ts?v=1&token=a", 10_000));
    // Another token, same v: the same object.
    let a2 = get(s.node.http, "/v/q/seg.ts?token=b&v=1", HOST, &[]).unwrap();
    assert_eq!(a2.x_cache(), "HIT");
    assert_eq!(a2.body, a1.body);
    assert_eq!(
        a2.header("x-arrow-cache-key"),
        Some("example.test/v/q/seg.ts?v=1")
    );
    // Another v: another object, fetched with its own query.
    let b = get(s.node.http, "/v/q/seg.ts?v=2", HOST, &[]).unwrap();
    assert_eq!(b.x_cache(), "MISS");
    assert_eq!(b.body, body_for("/v/q/seg.ts?v=2", 10_000));
    assert_eq!(s.origin.requests(), 2);
}

#[test]
fn every_answer_carries_one_date() {
    let s = setup("date", "", media);
    let lines = raw_head_lines(s.node.http, "/v/d/seg.ts", "");
    assert_eq!(count_field(&lines, "date"), 1, "MISS: {lines:?}");
    let lines = raw_head_lines(s.node.http, "/v/d/seg.ts", "");
    assert_eq!(count_field(&lines, "date"), 1, "HIT: {lines:?}");
    let lines = raw_head_lines(s.node.http, "/v/d/seg.ts", "If-None-Match: \"11\"\r\n");
    assert_eq!(count_field(&lines, "date"), 1, "304: {lines:?}");
    let lines = raw_head_lines(s.node.http, "/v/d/seg.ts", "Range: bytes=999999-\r\n");
    assert_eq!(count_field(&lines, "date"), 1, "416: {lines:?}");
    let date = lines
        .iter()
        .find(|l| l.to_ascii_lowercase().starts_with("date:"))
        .unwrap();
    assert!(date.ends_with(" GMT"), "{date}");
}

#[test]
fn viewer_request_headers_reach_the_origin_on_fills_and_passes() {
    let s = setup(
        "fwd-headers",
        "origin_request_headers = { \"X-Origin-Token\" = \"t0k\", \"User-Agent\" = \"arrow-fill\" }\norigin_request_headers_remove = [\"Cookie\"]\n",
        |req: &SeenRequest| {
            // The origin answers with a hop-by-hop field named by its Connection header.
            media(req)
                .header("Connection", "X-Hop-Only")
                .header("X-Hop-Only", "secret")
        },
    );
    let http = s.node.http;
    let viewer = [
        ("Accept-Encoding", "gzip"),
        ("X-Request-Id", "req-42"),
        ("Cookie", "session=abc"),
        ("Connection", "keep-alive, X-Private-Hop"),
        ("X-Private-Hop", "1"),
        ("Via", "1.1 player-proxy"),
        ("X-Forwarded-For", "192.0.2.7"),
        ("Range", "bytes=0-99"),
        ("If-None-Match", "\"nope\""),
        ("User-Agent", "hls.js"),
    ];
    let r = get(http, "/v/fwd/seg-1.ts", HOST, &viewer).unwrap();
    assert_eq!(r.status, 206, "{:?}", r.headers);
    assert_eq!(
        r.header("x-hop-only"),
        None,
        "a field named by the origin's Connection header reached the viewer"
    );
    // The hit is replayed from the stored head: the hop-by-hop field was not stored either.
    let hit = get(http, "/v/fwd/seg-1.ts", HOST, &[]).unwrap();
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-hop-only"), None, "{:?}", hit.headers);
    // A pass (POST) relays the viewer's own Range and conditionals.
    let p = request(
        http,
        "POST",
        "/v/fwd/api",
        HOST,
        &[("X-Request-Id", "req-43"), ("Range", "bytes=5-9")],
    )
    .unwrap();
    assert_eq!(p.status, 200);
    let seen = s.origin.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let fill = &seen[0];
    assert_eq!(fill.header("accept-encoding"), Some("gzip"));
    assert_eq!(fill.header("x-request-id"), Some("req-42"));
    assert_eq!(
        fill.header("x-origin-token"),
        Some("t0k"),
        "set by the host rule"
    );
    assert_eq!(
        fill.header("user-agent"),
        Some("arrow-fill"),
        "overridden by the host rule"
    );
    assert_eq!(fill.header("cookie"), None, "removed by the host rule");
    assert_eq!(
        fill.header("x-private-hop"),
        None,
        "named by the viewer's Connection"
    );
    assert_eq!(fill.header("range"), None, "a fill asks for the whole body");
    assert_eq!(
        fill.header("if-none-match"),
        None,
        "a fill uses the cache's validators"
    );
    assert_eq!(fill.header("via"), Some("1.1 player-proxy, 1.1 arrow"));
    assert_eq!(fill.header("x-forwarded-for"), Some("192.0.2.7, 127.0.0.1"));
    let pass = &seen[1];
    assert_eq!(pass.method, "POST");
    assert_eq!(pass.header("x-request-id"), Some("req-43"));
    assert_eq!(pass.header("range"), Some("bytes=5-9"));
    assert_eq!(pass.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn origin_request_header_rules_are_checked() {
    let dir = scratch_dir("fwd-bad");
    let (http, admin) = addrs();
    for (extra, needle) in [
        (
            "origin_request_headers = { \"Range\" = \"bytes=0-1\" }\n",
            "managed by the cache",
        ),
        (
            "origin_request_headers = { \"Bad Name\" = \"x\" }\n",
            "not a header field name",
        ),
        (
            "origin_request_headers_remove = [\"a:b\"]\n",
            "not a header field name",
        ),
    ] {
        let cfg = node_config(
            dir.path(),
            http,
            admin,
            &["http://127.0.0.1:9".into()],
            extra,
        );
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(arrow_bin())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}: accepted");
        assert!(
            err.contains("host[0].origin_request_headers") && err.contains(needle),
            "{extra}: {err}"
        );
    }
}

#[test]
fn responses_stale_on_arrival_are_never_hits() {
    let s = setup("stale-on-arrival", "", |req: &SeenRequest| {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let body = body_for(&req.path, 200_000);
        let r = OriginReply {
            headers: Vec::new(),
            ..OriginReply::ok(body.clone(), "")
        };
        match req.path.as_str() {
            // Age beyond max-age.
            "/v/a/old.ts" => OriginReply::ok(body, "max-age=60").header("Age", "7200"),
            // Expires equal to Date.
            "/v/a/expires.ts" => r.header("Date", &date).header("Expires", &date),
            // An invalid Expires means already expired (RFC 9111 §5.3).
            _ => r.header("Date", &date).header("Expires", "0"),
        }
    });
    for path in ["/v/a/old.ts", "/v/a/expires.ts", "/v/a/invalid.ts"] {
        // Two requests right after each other on one keep-alive connection.
        let mut c = TcpStream::connect(s.node.http).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        for i in 0..2 {
            write!(c, "GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
            let r = read_response(&mut c, false, &mut buf).unwrap();
            assert_eq!(r.status, 200);
            assert_ne!(r.x_cache(), "HIT", "{path} request {i}: {:?}", r.headers);
        }
        assert_eq!(
            s.origin.requests_for(path),
            2,
            "{path}: fetched for each request"
        );
    }
}

#[test]
fn cdn_cache_control_and_arrows_own_field_rule_arrows_caching() {
    let s = setup("targeted-cc", "", |req: &SeenRequest| {
        match req.path.as_str() {
            // Browsers must not store it; CDNs may for 5 minutes.
            "/v/t/cdn.ts" => OriginReply::ok(body_for(&req.path, 5000), "no-store")
                .header("CDN-Cache-Control", "max-age=300"),
            // Everyone may store it for 5 minutes, but not Arrow.
            "/v/t/not-arrow.ts" => OriginReply::ok(body_for(&req.path, 5000), "max-age=300")
                .header("CDN-Cache-Control", "max-age=300")
                .header("Arrow-Cache-Control", "no-store"),
            _ => OriginReply::ok(body_for(&req.path, 5000), "max-age=300"),
        }
    });
    let http = s.node.http;
    let a = get(http, "/v/t/cdn.ts", HOST, &[]).unwrap();
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("cdn-cache-control"), None, "consumed by Arrow");
    let hit = wait_until(Duration::from_secs(5), || {
        get(http, "/v/t/cdn.ts", HOST, &[]).unwrap().x_cache() == "HIT"
    });
    assert!(
        hit,
        "CDN-Cache-Control: max-age=300 beats Cache-Control: no-store"
    );
    let b = get(http, "/v/t/cdn.ts", HOST, &[]).unwrap();
    assert_eq!(
        b.header("cache-control"),
        Some("no-store"),
        "viewers still told no-store"
    );
    assert_eq!(b.header("cdn-cache-control"), None);
    for _ in 0..3 {
        let c = get(http, "/v/t/not-arrow.ts", HOST, &[]).unwrap();
        assert_ne!(c.x_cache(), "HIT");
        assert_eq!(c.header("arrow-cache-control"), None);
    }
    assert_eq!(s.origin.requests_for("/v/t/not-arrow.ts"), 3);
    assert_eq!(s.origin.requests_for("/v/t/cdn.ts"), 1);
}

#[test]
fn unsafe_methods_invalidate_the_target_and_same_host_locations() {
    let s = setup("invalidate", "", |req: &SeenRequest| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", _) => media(req),
            ("POST", "/v/inv/fail.ts") => OriginReply {
                status: 500,
                ..OriginReply::ok(Vec::new(), "no-store")
            },
            ("POST", _) => OriginReply::ok(b"ok".to_vec(), "no-store")
                .header("Location", "/v/inv/b.ts")
                .header("Content-Location", "http://elsewhere.test/v/inv/c.ts"),
            _ => OriginReply::ok(b"ok".to_vec(), "no-store"),
        }
    });
    let http = s.node.http;
    let hit = |path: &str| {
        wait_until(Duration::from_secs(5), || {
            get(http, path, HOST, &[]).unwrap().x_cache() == "HIT"
        })
    };
    for p in [
        "/v/inv/a.ts",
        "/v/inv/b.ts",
        "/v/inv/c.ts",
        "/v/inv/fail.ts",
    ] {
        get(http, p, HOST, &[]).unwrap();
        assert!(hit(p), "{p} cached");
    }
    // A 2xx to POST invalidates the target and the same-host Location, not another host's.
    let r = request(http, "POST", "/v/inv/a.ts", HOST, &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_ne!(
        get(http, "/v/inv/a.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    assert_ne!(
        get(http, "/v/inv/b.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    assert_eq!(
        get(http, "/v/inv/c.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    // An error answer invalidates nothing.
    let r = request(http, "POST", "/v/inv/fail.ts", HOST, &[]).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(
        get(http, "/v/inv/fail.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    // DELETE too.
    assert_eq!(
        request(http, "DELETE", "/v/inv/c.ts", HOST, &[])
            .unwrap()
            .status,
        200
    );
    assert_ne!(
        get(http, "/v/inv/c.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
}

#[test]
fn errors_the_node_generates_carry_cors_an_x_cache_and_a_request_id_from_the_access_log() {
    let mut s = setup("error-cors", "", |req: &SeenRequest| {
        media(req)
            .header("Access-Control-Allow-Origin", "*")
            .header("Access-Control-Expose-Headers", "Content-Range")
    });
    let http = s.node.http;
    let a = get(http, "/v/c/seg.ts", HOST, &[]).unwrap();
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    assert!(wait_until(Duration::from_secs(5), || {
        get(http, "/v/c/seg.ts", HOST, &[]).unwrap().x_cache() == "HIT"
    }));
    // A range past the end: 416, readable by a browser.
    let r = get(http, "/v/c/seg.ts", HOST, &[("Range", "bytes=99999999-")]).unwrap();
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "{:?}",
        r.headers
    );
    // The origin goes away: a miss is a 502 with the host's CORS fields, X-Cache and an id.
    s.origin.stop();
    // Its pooled connections close within their 200 ms read timeout.
    std::thread::sleep(Duration::from_millis(500));
    let e = get(http, "/v/c/other.ts", HOST, &[]).unwrap();
    assert_eq!(e.status, 502);
    assert_eq!(e.x_cache(), "ERROR");
    assert_eq!(
        e.header("access-control-allow-origin"),
        Some("*"),
        "{:?}",
        e.headers
    );
    let id = e.header("x-request-id").expect("a request id").to_string();
    let body = String::from_utf8_lossy(&e.body);
    assert!(
        !body.contains("127.0.0.1"),
        "the origin's address leaked: {body}"
    );
    // A refused request too.
    let bad = get(http, "/v/c/x.ts", "no-rule.invalid", &[]).unwrap();
    assert_eq!(bad.status, 404);
    assert_eq!(bad.x_cache(), "ERROR");
    assert!(bad.header("x-request-id").is_some());
    // The id finds the request in the access log.
    let log = s.node.dir.join("access.log");
    let found = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.lines()
                .any(|line| line.contains("/v/c/other.ts") && line.ends_with(&id))
        })
    });
    assert!(
        found,
        "{id} not in the access log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn chunked_uploads_are_reframed_to_the_origin_within_the_body_bound() {
    let dir = scratch_dir("chunked-upload");
    let origin = Origin::start(|req: &SeenRequest| OriginReply::ok(req.body.clone(), "no-store"));
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "")
        .replace("[limits]\n", "[limits]\nrequest_body_bytes_max = 65536\n");
    let _node = Node::start(dir.path(), &cfg, http, admin);
    let http = _node.http;
    let s = (origin,);
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A chunked POST (with a chunk extension and a trailer), pipelined with a GET.
    write!(
        c,
        "POST /v/up/api HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n\
         GET /v/up/after.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.body, b"hello world");
    let g = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(g.status, 200);
    let seen = s.0.seen.lock().unwrap().clone();
    let post = seen.iter().find(|q| q.method == "POST").unwrap();
    assert_eq!(post.header("content-length"), Some("11"), "re-framed");
    assert_eq!(post.header("transfer-encoding"), None);
    // Over the bound: 413, the connection closes, nothing reaches the origin.
    let big = "a".repeat(40_000);
    let raw = format!(
        "POST /v/up/big HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{big}\r\n{len:x}\r\n{big}\r\n0\r\n\r\n",
        len = big.len()
    );
    let r = exchange(http, raw.as_bytes(), false).unwrap();
    assert_eq!(r.status, 413);
    // Not chunked coding: 400.
    let raw = format!(
        "POST /v/up/bad HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    );
    let r = exchange(http, raw.as_bytes(), false).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(s.0.requests_for("/v/up/big"), 0);
    assert_eq!(s.0.requests_for("/v/up/bad"), 0);
}

#[test]
fn vary_stores_variants_bounded_per_key() {
    let s = setup("vary", "", |req: &SeenRequest| {
        let origin = req.header("origin").unwrap_or("-").to_string();
        let coding = req
            .header("accept-encoding")
            .unwrap_or("identity")
            .to_string();
        let body = format!("{} for {origin} in {coding}", req.path).into_bytes();
        let vary = if req.path.contains("star") {
            "*"
        } else {
            "Origin, Accept-Encoding"
        };
        OriginReply::ok(body, "max-age=300")
            .header("Vary", vary)
            .header("Access-Control-Allow-Origin", &origin)
    });
    let http = s.node.http;
    let fetch = |path: &str, origin: &str, ae: &str| {
        get(
            http,
            path,
            HOST,
            &[("Origin", origin), ("Accept-Encoding", ae)],
        )
        .unwrap()
    };
    let p = "/v/vary/master.m3u8";
    let a = fetch(p, "https://a.example", "gzip, deflate");
    assert_eq!(a.x_cache(), "MISS");
    assert_eq!(
        a.body,
        format!("{p} for https://a.example in gzip").into_bytes()
    );
    assert_eq!(a.header("vary"), Some("Origin, Accept-Encoding"));
    let hit_for = |origin: &str, ae: &str| {
        wait_until(Duration::from_secs(5), || {
            fetch(p, origin, ae).x_cache() == "HIT"
        })
    };
    // The same variant, with its coding listed differently: a hit with A's body.
    assert!(hit_for("https://a.example", "deflate;q=0.5, gzip"));
    assert_eq!(
        fetch(p, "https://a.example", "gzip").body,
        a.body,
        "variant A's body"
    );
    // Another origin is another variant, never A's body.
    let b = fetch(p, "https://b.example", "gzip");
    assert_ne!(b.x_cache(), "HIT");
    assert_eq!(
        b.body,
        format!("{p} for https://b.example in gzip").into_bytes()
    );
    assert_eq!(
        b.header("access-control-allow-origin"),
        Some("https://b.example")
    );
    assert!(hit_for("https://b.example", "gzip"));
    assert!(hit_for("https://a.example", "gzip"), "both variants stay");
    let before = s.origin.requests_for(p);
    // Vary: * is never stored.
    for _ in 0..3 {
        assert_ne!(
            fetch("/v/vary/star.ts", "https://a.example", "").x_cache(),
            "HIT"
        );
    }
    // A bound of 16 variants per key: 20 more origins evict the oldest.
    for i in 0..20 {
        let o = format!("https://o{i}.example");
        fetch(p, &o, "gzip");
        assert!(hit_for(&o, "gzip"), "{o}");
    }
    let m = String::from_utf8(get(s.node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
    assert!(
        metric_sum(&m, "arrow_vary_variants_evicted_total") >= 4.0,
        "{m}"
    );
    assert_ne!(
        fetch(p, "https://a.example", "gzip").x_cache(),
        "HIT",
        "the oldest variant was evicted"
    );
    assert!(s.origin.requests_for(p) > before);
}

#[test]
fn early_hints_reach_the_viewer_that_asked_and_expect_continue_is_answered() {
    let s = setup("interim", "", |req: &SeenRequest| {
        let mut r = media(req);
        r.interim =
            vec!["HTTP/1.1 103 Early Hints\r\nLink: </v/i/seg-2.ts>; rel=preload\r\n\r\n".into()];
        r
    });
    let http = s.node.http;
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET /v/i/seg-1.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let first = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(first.status, 103, "the origin's Early Hints are relayed");
    assert_eq!(first.header("link"), Some("</v/i/seg-2.ts>; rel=preload"));
    let fin = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(fin.status, 200);
    assert_eq!(fin.body, body_for("/v/i/seg-1.ts", 10_000));
    // A hit never replays an interim response.
    assert!(wait_until(Duration::from_secs(5), || {
        let mut c = TcpStream::connect(http).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET /v/i/seg-1.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
        let r = read_response(&mut c, false, &mut Vec::new()).unwrap();
        assert_ne!(r.status, 103, "a stored interim response");
        r.x_cache() == "HIT"
    }));
    // Expect: 100-continue with the body held back: told to go on, then answered.
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /v/i/upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let cont = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(cont.status, 100);
    c.write_all(b"hello").unwrap();
    // The pass relays the origin's Early Hints too, then the final answer.
    let hints = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(hints.status, 103);
    let done = read_response(&mut c, false, &mut buf).unwrap();
    assert_eq!(done.status, 200);
    // Another expectation: 417.
    let r = request(
        http,
        "POST",
        "/v/i/upload",
        HOST,
        &[("Expect", "teapot"), ("Content-Length", "0")],
    )
    .unwrap();
    assert_eq!(r.status, 417);
}

/// SIGINT, SIGQUIT and the signals whose default action would end the process drain like
/// SIGTERM: the node logs the drain and exits 0, instead of dying on the signal.
#[test]
fn every_terminating_signal_drains_like_sigterm() {
    for sig in [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGXCPU,
    ] {
        let mut s = setup("signals", "", media);
        assert_eq!(
            get(s.node.http, "/v/s/a.ts", HOST, &[]).unwrap().status,
            200
        );
        let st = s.node.stop_with(sig).unwrap();
        assert!(st.success(), "signal {sig}: {st:?}\n{}", s.node.log());
        assert!(
            s.node.log().contains("shutting down"),
            "signal {sig}: {}",
            s.node.log()
        );
    }
}

#[test]
fn sighup_does_not_kill_and_health_says_draining_until_the_drain_ends() {
    let mut s = setup("drain-health", "", |req: &SeenRequest| {
        let mut r = media(req);
        r.piece_delay = Duration::from_millis(300);
        r
    });
    let (http, admin) = (s.node.http, s.node.admin);
    let pid = s.node.child.as_ref().unwrap().id() as i32;
    // SIGHUP: logged, the node keeps serving.
    // SAFETY: signalling the child process this test started, by its PID.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(http, "/v/d/a.ts", HOST, &[]).unwrap().status, 200);
    assert!(s.node.log().contains("SIGHUP"), "{}", s.node.log());
    // A slow download in flight, then SIGTERM: /health answers 503 while it drains.
    let slow = std::thread::spawn(move || get(http, "/v/d/big.ts", HOST, &[]).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let draining = wait_until(Duration::from_secs(5), || {
        get(admin, "/health", "admin", &[]).is_ok_and(|r| r.status == 503)
    });
    assert!(
        draining,
        "/health never said draining; log:\n{}",
        s.node.log()
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 3 << 20, "the in-flight download completed");
    let st = s.node.stop().expect("exit status");
    assert!(st.success(), "{st}");
}

#[test]
fn one_owner_per_slab_and_refused_disks_stay_visible() {
    let dir = scratch_dir("slab-owner");
    let origin = Origin::start(media);
    // Two entries reaching one slab through a symlink: refused by check-config, naming both.
    let slab = dir.path().join("d0.slab");
    std::fs::File::create(&slab)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let link = dir.path().join("link.slab");
    std::os::unix::fs::symlink(&slab, &link).unwrap();
    let (http, admin) = addrs();
    let base = node_config(dir.path(), http, admin, &[origin.url()], "");
    let twice = format!(
        "{base}\n[[disk]]\npath = \"{}\"\nsize_bytes = 67108864\n",
        link.display()
    );
    std::fs::write(dir.path().join("twice.toml"), &twice).unwrap();
    let out = std::process::Command::new(arrow_bin())
        .arg("check-config")
        .arg(dir.path().join("twice.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("disk[1].path") && err.contains("disk[0].path"),
        "{err}"
    );
    // A first node owns the slab and caches an object.
    let first = Node::start(dir.path(), &base, http, admin);
    get(first.http, "/v/o/seg.ts", HOST, &[]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        get(first.http, "/v/o/seg.ts", HOST, &[]).unwrap().x_cache() == "HIT"
    }));
    // A second process on the same slab (other ports), plus a disk path that is a directory:
    // both disks are refused, and shown as such.
    let second_dir = scratch_dir("slab-owner-2");
    let not_a_disk = second_dir.path().join("a-directory");
    std::fs::create_dir(&not_a_disk).unwrap();
    let second_cfg = node_config(second_dir.path(), http, admin, &[origin.url()], "").replace(
        &format!("path = \"{}/d0.slab\"", second_dir.path().display()),
        &format!("path = \"{}\"", slab.display()),
    ) + &format!(
        "\n[[disk]]\npath = \"{}\"\nsize_bytes = 67108864\n",
        not_a_disk.display()
    );
    let second = Node::start(second_dir.path(), &second_cfg, http, admin);
    let disks = String::from_utf8(get(second.admin, "/disks", "admin", &[]).unwrap().body).unwrap();
    assert!(
        disks.contains("refused") && disks.contains("in use") && disks.contains("a-directory"),
        "{disks}"
    );
    let m = String::from_utf8(get(second.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
    assert_eq!(metric_sum(&m, "arrow_disks_configured"), 2.0, "{m}");
    assert_eq!(metric_sum(&m, "arrow_disk_refused"), 2.0, "{m}");
    // The first node's object is intact.
    assert_eq!(
        get(first.http, "/v/o/seg.ts", HOST, &[]).unwrap().x_cache(),
        "HIT"
    );
    assert_eq!(
        get(first.http, "/v/o/seg.ts", HOST, &[]).unwrap().body,
        body_for("/v/o/seg.ts", 10_000)
    );
}

#[test]
fn the_connection_limit_is_node_wide_whatever_shard_connections_land_on() {
    let dir = scratch_dir("conn-limit");
    let origin = Origin::start(media);
    let (http, admin) = addrs();
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "")
        .replace("cores = [0]", "cores = [0, 1]")
        .replace("[limits]\n", "[limits]\nconnections_max = 10\n");
    let node = Node::start(dir.path(), &cfg, http, admin);
    // Ten connections from one client (the kernel steers them by CPU, often to one shard):
    // all served.
    let mut held = Vec::new();
    for i in 0..10 {
        let mut c = TcpStream::connect(node.http).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET /v/c/{i}.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
        let r = read_response(&mut c, false, &mut Vec::new()).unwrap();
        assert_eq!(r.status, 200, "connection {i}");
        held.push(c);
    }
    // The eleventh is refused with a 503, and the admin listener still answers.
    let r = get(node.http, "/v/c/x.ts", HOST, &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(
        get(node.admin, "/health", "admin", &[]).unwrap().status,
        200
    );
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || {
        get(node.http, "/v/c/x.ts", HOST, &[]).is_ok_and(|r| r.status == 200)
    }));
}

#[test]
fn access_log_is_combined_log_format_and_reopens_on_sigusr1() {
    let s = setup("access-log", "", media);
    let http = s.node.http;
    let log = s.node.dir.join("access.log");
    get(
        http,
        "/v/l/a.ts",
        HOST,
        &[
            ("Referer", "https://player.example/"),
            ("User-Agent", "hls.js/1.5"),
        ],
    )
    .unwrap();
    let line_for = |path: &std::path::Path, needle: &str| {
        let mut found = None;
        wait_until(Duration::from_secs(5), || {
            found = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.lines().find(|l| l.contains(needle)).map(str::to_string));
            found.is_some()
        });
        found
    };
    let l = line_for(&log, "/v/l/a.ts").expect("logged");
    assert!(
        l.contains(
            "\"GET /v/l/a.ts HTTP/1.1\" 200 10000 \"https://player.example/\" \"hls.js/1.5\" MISS "
        ),
        "{l}"
    );
    // [03/Dec/2026:11:50:00 +0000]
    let t = l.split('[').nth(1).unwrap().split(']').next().unwrap();
    assert_eq!(t.len(), 26, "{t}");
    assert!(
        t.ends_with(" +0000") && &t[2..3] == "/" && &t[6..7] == "/",
        "{t}"
    );
    // Rotation: rename, SIGUSR1, the next line goes to a new file.
    let rotated = s.node.dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = s.node.child.as_ref().unwrap().id() as i32;
    // SAFETY: signalling the child process this test started, by its PID.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert!(wait_until(Duration::from_secs(5), || {
        s.node.log().contains("access log reopened")
    }));
    get(http, "/v/l/b.ts", HOST, &[]).unwrap();
    assert!(
        line_for(&log, "/v/l/b.ts").is_some(),
        "not in the reopened file"
    );
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("/v/l/b.ts"));
}

#[test]
fn sighup_reloads_rules_limits_and_the_access_log_and_refuses_what_needs_a_restart() {
    let mut s = setup("reload", "", media);
    let other = Origin::start(|req: &SeenRequest| {
        OriginReply::ok(b"from the new origin".to_vec(), "max-age=60").header("X-Req", &req.path)
    });
    let http = s.node.http;
    let pid = s.node.child.as_ref().unwrap().id() as i32;
    let hup = || {
        // SAFETY: signalling the child process this test started, by its PID.
        unsafe { libc::kill(pid, libc::SIGHUP) };
    };
    assert_eq!(
        get(http, "/v/r/a.ts", HOST, &[]).unwrap().body,
        body_for("/v/r/a.ts", 10_000)
    );
    // A new origin for the host rule: applied without a restart, the cache kept.
    let cfg = std::fs::read_to_string(&s.node.config_path).unwrap();
    let moved = cfg.replace(&s.origin.url(), &other.url());
    assert_ne!(cfg, moved);
    std::fs::write(&s.node.config_path, &moved).unwrap();
    hup();
    assert!(
        wait_until(Duration::from_secs(5), || {
            s.node
                .log()
                .contains("host rules, limits and access log reloaded")
        }),
        "{}",
        s.node.log()
    );
    let b = get(http, "/v/r/b.ts", HOST, &[]).unwrap();
    assert_eq!(b.body, b"from the new origin");
    assert_eq!(other.requests_for("/v/r/b.ts"), 1);
    assert_eq!(
        get(http, "/v/r/a.ts", HOST, &[]).unwrap().x_cache(),
        "HIT",
        "cache kept"
    );
    // Limits and the access log's path and format: applied by a reload too.
    let long = "x".repeat(1500);
    assert_eq!(
        get(http, "/v/r/a.ts", HOST, &[("X-Long", &long)])
            .unwrap()
            .status,
        200
    );
    let new_log = s.node.config_path.with_file_name("reloaded-access.log");
    let limited = moved
        .replace("header_bytes_max = 8192", "header_bytes_max = 1024")
        .replace(
            "access_log = ",
            &format!(
                "access_log_format = \"json\"\naccess_log = \"{}\"\n# was: ",
                new_log.display()
            ),
        );
    std::fs::write(&s.node.config_path, &limited).unwrap();
    hup();
    assert!(
        wait_until(Duration::from_secs(5), || {
            s.node
                .log()
                .matches("host rules, limits and access log reloaded")
                .count()
                >= 2
        }),
        "{}",
        s.node.log()
    );
    assert_eq!(
        get(http, "/v/r/a.ts", HOST, &[("X-Long", &long)])
            .unwrap()
            .status,
        431,
        "the reloaded header_bytes_max"
    );
    assert_eq!(get(http, "/v/r/a.ts", HOST, &[]).unwrap().x_cache(), "HIT");
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&new_log).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with('{') && l.contains("/v/r/a.ts"))
            })
        }),
        "the access log moved to the reloaded path, in JSON"
    );
    // A change that needs a restart, then a broken file: refused, the running config stays.
    std::fs::write(
        &s.node.config_path,
        limited.replace("cores = [0]", "cores = [0, 1]"),
    )
    .unwrap();
    hup();
    assert!(
        wait_until(Duration::from_secs(5), || {
            s.node.log().contains("node.cores changed")
        }),
        "{}",
        s.node.log()
    );
    std::fs::write(&s.node.config_path, "this is not toml [").unwrap();
    hup();
    assert!(
        wait_until(Duration::from_secs(5), || {
            s.node.log().matches("reload refused").count() >= 2
        }),
        "{}",
        s.node.log()
    );
    let c = get(http, "/v/r/c.ts", HOST, &[]).unwrap();
    assert_eq!(
        c.body, b"from the new origin",
        "still on the reloaded rules"
    );
    std::fs::write(&s.node.config_path, &limited).unwrap();
    assert!(s.node.stop().unwrap().success());
}

#[test]
fn check_config_says_a_node_without_disks_caches_nothing() {
    let dir = scratch_dir("no-disk");
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[node]\nlisten = [\"127.0.0.1:0\"]\n[[host]]\nhosts = [\"*\"]\norigins = [\"http://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(arrow_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("0 disk(s) — nothing is cached: every request goes to the origin"),
        "{text}"
    );
}
