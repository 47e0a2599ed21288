//! Three `arrow` nodes, each in its own network namespace (veth pairs on a bridge, multicast
//! comets, a hosts file per namespace that names the nodes), with a real origin in the hub
//! namespace. Skipped, with a message, where namespaces cannot be created.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use arrow_tests::*;

const HOST: &str = "cdn.example.test";
const INTERVAL_MS: u64 = 100;
const MISSING: u64 = 3;
const SECRET: &str = "test-cluster-secret-0123456789";
const GROUP: &str = "239.255.77.77:17777";

struct Cluster {
    net: TestNet,
    children: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
    _origin: Option<OriginHandle>,
    _dir: tempfile::TempDir,
}

/// The origin runs on a thread that entered the hub namespace.
struct OriginHandle {
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    port: u16,
}

fn origin_in_hub(net: &TestNet) -> OriginHandle {
    let hub = net.hub.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        TestNet::within(&hub, move || {
            let o = Origin::start_on("10.77.0.254:0".parse().unwrap(), |req| {
                OriginReply::ok(body_for(&req.path, 20_000), "max-age=300")
            });
            tx.send((o.count.clone(), o.addr.port())).unwrap();
            // Keep the origin alive for the test process's lifetime.
            std::thread::sleep(Duration::from_secs(3600));
            drop(o);
        })
    });
    let (count, port) = rx.recv().unwrap();
    OriginHandle { count, port }
}

fn cluster_extra(i: usize, dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[cluster]
advertise_addr = "10.77.0.{n}"
table_path = "{dir}/table-{i}"
group = "{GROUP}"
interface = "10.77.0.{n}"
comet_interval_ms = {INTERVAL_MS}
missing_intervals = {MISSING}
secret = "{SECRET}"
{extra}
"#,
        n = i + 1,
        dir = dir.display()
    )
}

fn start_cluster(n: usize, extra: &str, tail: &str) -> Option<Cluster> {
    let net = match TestNet::create(n) {
        Ok(net) => net,
        Err(e) => {
            eprintln!("SKIPPED: network namespaces cannot be created here: {e}");
            return None;
        }
    };
    let dir = scratch_dir("cluster");
    let origin = origin_in_hub(&net);
    let mut logs = Vec::new();
    let mut children = Vec::new();
    for i in 0..n {
        let nd = dir.path().join(format!("n{i}"));
        std::fs::create_dir_all(&nd).unwrap();
        let http: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
        let admin: SocketAddr = format!("10.77.0.{}:9090", i + 1).parse().unwrap();
        let origin_url = format!("http://10.77.0.254:{}", origin.port);
        let cfg = node_config(&nd, http, admin, &[origin_url], "")
            .replace("name = \"n01.test\"\n", "")
            + &cluster_extra(i, &nd, extra)
            + tail;
        let path = nd.join("arrow.toml");
        std::fs::write(&path, cfg).unwrap();
        let log = nd.join("arrow.log");
        children.push(Some(net.spawn_node(i, &path, &log)));
        logs.push(log);
    }
    let c = Cluster {
        net,
        children,
        logs,
        _origin: Some(origin),
        _dir: dir,
    };
    // Every node up and seeing every other node with its storage weight.
    for i in 0..n {
        let ok = wait_until(Duration::from_secs(30), || {
            let d = c.designations(i, 300);
            c.net.names.iter().all(|name| d.contains(name))
        });
        assert!(ok, "node {i} did not see the cluster; log:\n{}", c.log(i));
    }
    Some(c)
}

impl Cluster {
    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    fn admin_get(&self, i: usize, path: &str) -> Option<String> {
        let ns = self.net.hub.clone();
        let addr: SocketAddr = format!("10.77.0.{}:9090", i + 1).parse().unwrap();
        let path = path.to_string();
        TestNet::within(&ns, move || get(addr, &path, "admin", &[]).ok())
            .filter(|r| r.status == 200)
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
    }

    fn http_get(&self, i: usize, path: &str) -> Response {
        let ns = self.net.hub.clone();
        let addr: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
        let path = path.to_string();
        TestNet::within(&ns, move || get(addr, &path, HOST, &[]).unwrap())
    }

    fn designations(&self, i: usize, n: usize) -> Vec<String> {
        self.admin_get(i, &format!("/designate?prefix=example.test&n={n}"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}

#[test]
fn three_nodes_agree_pull_from_designated_and_survive_a_kill() {
    let Some(mut c) = start_cluster(3, "", "") else {
        return;
    };
    // 1. All nodes agree on the designated node for 10,000 keys, and every node gets some.
    let d: Vec<Vec<String>> = (0..3).map(|i| c.designations(i, 10_000)).collect();
    assert_eq!(d[0].len(), 10_000);
    assert_eq!(d[0], d[1]);
    assert_eq!(d[0], d[2]);
    for name in &c.net.names {
        let share = d[0].iter().filter(|x| *x == name).count();
        assert!(
            share > 2_000,
            "{name} designated for {share} of 10000 keys; status:\n{}",
            c.admin_get(0, "/status").unwrap_or_default()
        );
    }

    // 2. A request to a non-designated node is pulled from the designated one; the origin is
    //    fetched once cluster-wide.
    let path = "/v/title-42/seg-1.ts";
    let key = arrow_cluster::cluster_key("example.test", "/v/title-42");
    let designated = c.admin_get(0, &format!("/designate?key={key}")).unwrap();
    let designated = designated.trim().to_string();
    let di = c.net.names.iter().position(|n| *n == designated).unwrap();
    for i in 0..3 {
        let r = c.http_get(i, path);
        assert_eq!(r.status, 200, "node {i}: {:?}", r.headers);
        assert_eq!(r.body, body_for(path, 20_000));
        assert_eq!(r.header("x-arrow-cluster-key"), Some(key.as_str()));
        if i == di {
            assert!(r.header("x-arrow-act").unwrap().contains("self-serving"));
        } else {
            assert!(
                r.header("x-arrow-act").unwrap().contains("pulled"),
                "{:?}",
                r.headers
            );
            assert_eq!(
                r.header("x-arrow-pull-url"),
                Some(format!("http://{designated}{path}").as_str())
            );
        }
    }
    let origin_count = c
        ._origin
        .as_ref()
        .unwrap()
        .count
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(origin_count, 1, "origin fetched once cluster-wide");

    // 3. kill -9 one node: the others mark it out within N+1 intervals and only its keys move.
    let victim = (di + 1) % 3;
    let victim_name = c.net.names[victim].clone();
    let survivor = (victim + 1) % 3;
    let killed_at = Instant::now();
    c.kill9(victim);
    let gone = wait_until(Duration::from_secs(10), || {
        !c.designations(survivor, 200).contains(&victim_name)
    });
    let took = killed_at.elapsed();
    assert!(gone, "killed node never left service");
    let bound = Duration::from_millis((MISSING + 1) * INTERVAL_MS + 400);
    assert!(
        took <= bound,
        "marked out after {took:?}, bound {bound:?} (N+1 intervals + sampling)"
    );
    let after: Vec<Vec<String>> = [survivor, (survivor + 1) % 3]
        .iter()
        .filter(|&&i| i != victim)
        .map(|&i| c.designations(i, 10_000))
        .collect();
    assert_eq!(after[0], after[1], "survivors agree");
    for (k, (before, now)) in d[0].iter().zip(&after[0]).enumerate() {
        if *before == victim_name {
            assert_ne!(*now, victim_name, "key {k} still on the dead node");
        } else {
            assert_eq!(before, now, "key {k} moved although its node is alive");
        }
    }

    // 4. A comet signed with the wrong secret changes nothing.
    let forged = arrow_cluster::Comet {
        name: "evil.test.arrow".into(),
        boot_id: 1,
        sequence: 1,
        time_ms: arrow_cluster::wall_ms(),
        addr: Some(IpAddr::from([10, 77, 0, 99])),
        http_port: 8080,
        brpu_bps: u64::MAX / 2,
        capacity_bps: u64::MAX / 2,
        weight: u64::MAX / 2,
        users: 0,
        mirroring: false,
        admitting: true,
        disks: vec![],
    };
    let wrong = arrow_cluster::CometKey::new(b"the-wrong-secret-0123456789");
    let bytes = forged.encode(&wrong).unwrap();
    let hub = c.net.hub.clone();
    TestNet::within(&hub, move || {
        let s = std::net::UdpSocket::bind("10.77.0.254:0").unwrap();
        for _ in 0..20 {
            s.send_to(&bytes, GROUP).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    let status = c.admin_get(survivor, "/status").unwrap();
    assert!(!status.contains("evil"), "{status}");
    assert_eq!(c.designations(survivor, 10_000), after[0]);
    let metrics = c.admin_get(survivor, "/metrics").unwrap();
    let forged_line = metrics
        .lines()
        .find(|l| l.starts_with("arrow_comets_dropped_total{reason=\"forged\"}"))
        .unwrap_or("");
    let forged_n: u64 = forged_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(forged_n >= 20, "forged comets counted: {forged_line}");
}

#[test]
fn overflow_when_the_line_rate_cannot_keep_the_guarantee() {
    // C_net = 100 Mbit/s x 0.9 = 90 Mbit/s; guarantee 40 Mbit/s: two viewers fit, a third does not.
    let Some(c) = start_cluster(
        1,
        "brpu_guarantee_bps = 40000000\nline_rate_bps = 100000000\n",
        "\n[overflow]\ncdn_host = \"cdn.overflow.test\"\nscheme = \"https\"\n",
    ) else {
        return;
    };
    // Wait for the first brpu interval (capacity known).
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    let hub = c.net.hub.clone();
    let ok = TestNet::within(&hub, move || {
        use std::io::Write;
        let addr: SocketAddr = "10.77.0.1:8080".parse().unwrap();
        let mut viewers = Vec::new();
        for v in 0..2 {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(format!("GET /v/t{v}/seg.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
                .unwrap();
            let r = read_response(&mut s, false, &mut Vec::new()).unwrap();
            assert_eq!(r.status, 200, "viewer {v} admitted");
            viewers.push(s);
        }
        // A third viewer overflows to the CDN, same path and query.
        let r = get(addr, "/v/t9/seg.ts?a=b", HOST, &[]).unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(
            r.header("location"),
            Some("https://cdn.overflow.test/v/t9/seg.ts?a=b")
        );
        // Admitted viewers keep being served on their connections.
        for (v, s) in viewers.iter_mut().enumerate() {
            s.write_all(format!("GET /v/t{v}/seg2.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
                .unwrap();
            let r = read_response(s, false, &mut Vec::new()).unwrap();
            assert_eq!(r.status, 200);
        }
        drop(viewers);
        // Once they leave, new viewers are admitted again.
        wait_until(Duration::from_secs(5), || {
            get(addr, "/v/t1/seg.ts", HOST, &[])
                .map(|r| r.status == 200)
                .unwrap_or(false)
        })
    });
    assert!(
        ok,
        "admission returns after viewers leave; log:\n{}",
        c.log(0)
    );
}

#[test]
fn mirroring_keeps_pulled_copies_when_headroom_is_low() {
    // Headroom = 3 x 90 Mbit/s / 10 Mbit/s = 27, below the low watermark of 100: mirroring on.
    let Some(c) = start_cluster(
        3,
        "brpu_guarantee_bps = 10000000\nline_rate_bps = 100000000\nmirror_low_watermark = 100.0\nmirror_high_watermark = 200.0\n",
        "",
    ) else {
        return;
    };
    let ok = wait_until(Duration::from_secs(10), || {
        (0..3).all(|i| {
            c.admin_get(i, "/metrics")
                .is_some_and(|m| m.contains("arrow_mirroring 1"))
        })
    });
    assert!(ok, "mirroring switched on; log:\n{}", c.log(0));
    let path = "/v/title-7/seg-3.ts";
    let key = arrow_cluster::cluster_key("example.test", "/v/title-7");
    let designated = c.admin_get(0, &format!("/designate?key={key}")).unwrap();
    let di = c
        .net
        .names
        .iter()
        .position(|n| *n == designated.trim())
        .unwrap();
    let other = (di + 1) % 3;
    let a = c.http_get(other, path);
    assert_eq!(a.status, 200);
    assert!(
        a.header("x-arrow-act").unwrap().contains("mirror"),
        "{:?}",
        a.headers
    );
    assert_eq!(a.body, body_for(path, 20_000));
    let hit = wait_until(Duration::from_secs(5), || {
        c.http_get(other, path).x_cache() == "HIT"
    });
    assert!(hit, "the mirror keeps its copy");
    let b = c.http_get(di, path);
    assert_eq!(
        b.x_cache(),
        "HIT",
        "the designated node filled once, for the mirror"
    );
    let origin_count = c
        ._origin
        .as_ref()
        .unwrap()
        .count
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        origin_count, 1,
        "the mirror pulled from the designated node, not the origin"
    );
}

fn dig(ns: &str, server: &str, name: &str) -> String {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "dig", "+tries=1", "+time=2", "-p", "5353",
        ])
        .arg(format!("@{server}"))
        .arg(name)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CNAME target and TTL in dig's answer section.
fn cname(answer: &str) -> Option<(String, u32)> {
    answer.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 5 && f[3] == "CNAME").then(|| {
            (
                f[4].trim_end_matches('.').to_string(),
                f[1].parse().unwrap_or(0),
            )
        })
    })
}

#[test]
fn content_aware_dns_agrees_with_http_designation() {
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: dig is not installed (scripts/setup.sh installs bind9-dnsutils)");
        return;
    }
    let dns = "\n[dns]\nlisten = [\"0.0.0.0:5353\"]\n\n[[dns.zones]]\nname = \"dx.example.test\"\ndomain = \"example.test\"\nns = [\"ns1.dx.example.test\"]\nglue = { \"ns1.dx.example.test\" = [\"10.77.0.1\"] }\n";
    let Some(c) = start_cluster(3, "", dns) else {
        return;
    };
    let hub = c.net.hub.clone();
    for t in 0..20 {
        let hash_input = format!("/v/title-{t}");
        let key = arrow_cluster::cluster_key("example.test", &hash_input);
        let md5 = &key["example.test".len()..];
        let http_side = c.admin_get(1, &format!("/designate?key={key}")).unwrap();
        for server in ["10.77.0.1", "10.77.0.3"] {
            let a = dig(&hub, server, &format!("{md5}.dx.example.test"));
            let (target, ttl) = cname(&a).unwrap_or_else(|| panic!("no CNAME from {server}:\n{a}"));
            assert_eq!(target, http_side.trim(), "DNS and HTTP agree for {key}");
            assert_eq!(ttl, 300);
        }
    }
    // Names that are not content-aware get a short-TTL CNAME to a node in service.
    let a = dig(&hub, "10.77.0.2", "C.DX.example.test");
    let (target, ttl) = cname(&a).unwrap_or_else(|| panic!("no CNAME:\n{a}"));
    assert!(c.net.names.contains(&target), "{target}");
    assert_eq!(ttl, 5);
    // Outside the zone: REFUSED.
    let r = dig(&hub, "10.77.0.2", "www.example.org");
    assert!(r.contains("status: REFUSED"), "{r}");
}
