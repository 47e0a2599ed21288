//! Three `arrow` nodes, each in its own network namespace (veth pairs on a bridge, multicast
//! comets, a hosts file per namespace that names the nodes), with a real origin in the hub
//! namespace. Where namespaces cannot be created the tests fail, saying why.

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
    configs: Vec<PathBuf>,
    _origin: Option<OriginHandle>,
    _dir: tempfile::TempDir,
}

/// The origin runs on a thread that entered the hub namespace.
struct OriginHandle {
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>,
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
            tx.send((o.count.clone(), o.seen.clone(), o.addr.port()))
                .unwrap();
            // Keep the origin alive for the test process's lifetime.
            std::thread::sleep(Duration::from_secs(3600));
            drop(o);
        })
    });
    let (count, seen, port) = rx.recv().unwrap();
    OriginHandle { count, seen, port }
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

fn start_cluster(n: usize, extra: &str, tail: &str) -> Cluster {
    start_cluster_each(n, |_| extra.to_string(), tail)
}

/// Like [`start_cluster`], with `[cluster]` lines of each node's own.
fn start_cluster_each(n: usize, extra: impl Fn(usize) -> String, tail: &str) -> Cluster {
    let net = match TestNet::create(n) {
        Ok(net) => net,
        // A requirement, not an option: the cluster tests fail where they cannot run.
        Err(e) => panic!(
            "network namespaces are required (run as root with iproute2; see scripts/setup.sh): {e}"
        ),
    };
    let dir = scratch_dir("cluster");
    let origin = origin_in_hub(&net);
    let mut logs = Vec::new();
    let mut children = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let nd = dir.path().join(format!("n{i}"));
        std::fs::create_dir_all(&nd).unwrap();
        let http: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
        let admin: SocketAddr = format!("10.77.0.{}:9090", i + 1).parse().unwrap();
        let origin_url = format!("http://10.77.0.254:{}", origin.port);
        let cfg = node_config(&nd, http, admin, &[origin_url], "")
            .replace("name = \"n01.test\"\n", "")
            + &cluster_extra(i, &nd, &extra(i))
            + tail;
        let path = nd.join("arrow.toml");
        std::fs::write(&path, cfg).unwrap();
        let log = nd.join("arrow.log");
        children.push(Some(net.spawn_node(i, &path, &log)));
        logs.push(log);
        configs.push(path);
    }
    let c = Cluster {
        net,
        children,
        logs,
        configs,
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
    c
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

    fn try_http_get(&self, i: usize, path: &str) -> std::io::Result<Response> {
        let ns = self.net.hub.clone();
        let addr: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
        let path = path.to_string();
        TestNet::within(&ns, move || get(addr, &path, HOST, &[]))
    }

    fn http_get(&self, i: usize, path: &str) -> Response {
        let ns = self.net.hub.clone();
        let addr: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
        let path = path.to_string();
        TestNet::within(&ns, move || {
            get(addr, &path, HOST, &[]).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
        })
    }

    fn designations(&self, i: usize, n: usize) -> Vec<String> {
        self.admin_get(i, &format!("/designate?prefix=example.test&n={n}"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Start node `i` again with its config; returns once its HTTP port accepts.
    fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} still runs");
        // The dead process's sockets linger until the kernel tears its io_uring down: wait until
        // nothing listens in the namespace, so no probe lands on a dying listener.
        let ns = self.net.nodes[i].clone();
        let quiet = wait_until(Duration::from_secs(10), || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "ss", "-Htln"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii().is_empty())
        });
        assert!(quiet, "node {i}'s listeners outlived it");
        self.children[i] = Some(self.net.spawn_node(i, &self.configs[i], &self.logs[i]));
        let ns = self.net.hub.clone();
        let addr: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
        let up = TestNet::within(&ns, move || {
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            })
        });
        assert!(up, "node {i} did not come back; log:\n{}", self.log(i));
        let exited = self.children[i].as_mut().unwrap().try_wait().unwrap();
        assert!(
            exited.is_none(),
            "node {i} exited: {exited:?}; log:\n{}",
            self.log(i)
        );
    }

    fn metric(&self, i: usize, line_start: &str) -> u64 {
        self.admin_get(i, "/metrics")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Keys `/v/title-{t}` (t < n) with the node designated for each, as node `i` sees it.
    fn titles(&self, i: usize, n: usize) -> Vec<(String, usize)> {
        (0..n)
            .map(|t| {
                let key = arrow_cluster::cluster_key("example.test", &format!("/v/title-{t}"));
                let d = self
                    .admin_get(i, &format!("/designate?key={key}"))
                    .unwrap_or_default();
                let di = self
                    .net
                    .names
                    .iter()
                    .position(|n| *n == d.trim())
                    .unwrap_or_else(|| panic!("no designated node for {key}: {d:?}"));
                (format!("/v/title-{t}/seg-1.ts"), di)
            })
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
    let mut c = start_cluster(3, "", "");
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
    let killed_at_ms = arrow_cluster::monotonic_ms();
    c.kill9(victim);
    // Each survivor applies the rule to the comets it received, so the two may take the victim
    // out up to an interval apart: wait for both before comparing them.
    let gone = wait_until(Duration::from_secs(10), || {
        (0..3)
            .filter(|&i| i != victim)
            .all(|i| !c.designations(i, 200).contains(&victim_name))
    });
    assert!(gone, "killed node never left service");
    // Why it left, from the survivor's own table (no wall-clock bound): no comet of the victim
    // was sent after the kill, and the table's rule takes it out of service exactly N
    // intervals after its last comet arrived — so, with comets every interval, within N+1
    // intervals of the kill.
    let table_path = c.configs[survivor]
        .parent()
        .unwrap()
        .join(format!("table-{survivor}"));
    let table = arrow_cluster::Table::open_readonly(&table_path).unwrap();
    let last = table
        .get_at(&victim_name, arrow_cluster::monotonic_ms())
        .expect("the victim stays on record");
    assert!(!last.in_service, "{last:?}");
    // (one sent just before the kill may still be in flight: at most one interval later)
    assert!(
        last.last_seen_ms <= killed_at_ms + INTERVAL_MS,
        "a comet of the killed node was accepted after the kill: {last:?}"
    );
    let max_age = MISSING * INTERVAL_MS;
    let at = |t: u64| table.get_at(&victim_name, t).unwrap().in_service;
    assert!(
        at(last.last_seen_ms + max_age),
        "in service up to N intervals after its last comet"
    );
    assert!(
        !at(last.last_seen_ms + max_age + 1),
        "out of service past N intervals"
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
    let c = start_cluster(
        1,
        "brpu_guarantee_bps = 40000000\nline_rate_bps = 100000000\n",
        "\n[overflow]\ncdn_host = \"cdn.overflow.test\"\nscheme = \"https\"\n",
    );
    // Wait for the first brpu interval (capacity known).
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    // The start-up disk probe measured the disk before any traffic: C_disk is a figure, not
    // "unmeasured"; and C_cpu, unmeasured under no load, is shown as such (+Inf), not as a
    // figure extrapolated from idle time.
    let probed = wait_until(Duration::from_secs(5), || {
        c.admin_get(0, "/metrics").is_some_and(|m| {
            m.lines().any(|l| {
                l.strip_prefix("arrow_capacity_bps{resource=\"disk\"} ")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|v| v > 0)
            })
        })
    });
    assert!(probed, "no disk probe figure; log:\n{}", c.log(0));
    let m = c.admin_get(0, "/metrics").unwrap();
    assert!(
        m.contains("arrow_capacity_bps{resource=\"cpu\"} +Inf"),
        "{m}"
    );
    let hub = c.net.hub.clone();
    let ok = TestNet::within(&hub, move || {
        use std::io::Write;
        let addr: SocketAddr = "10.77.0.1:8080".parse().unwrap();
        // Idle sockets are not viewers: 50 of them change nothing for the viewers below.
        let idle: Vec<std::net::TcpStream> = (0..50)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
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
        // Claiming to be a pull by a node of the cluster does not get a viewer past admission.
        let r = get(
            addr,
            "/v/t9/seg.ts",
            HOST,
            &[("X-Arrow-Pull", "n01.test.arrow")],
        )
        .unwrap();
        assert_eq!(r.status, 302, "a forged pull header is a viewer");
        // Admitted viewers keep being served on their connections.
        for (v, s) in viewers.iter_mut().enumerate() {
            s.write_all(format!("GET /v/t{v}/seg2.ts HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
                .unwrap();
            let r = read_response(s, false, &mut Vec::new()).unwrap();
            assert_eq!(r.status, 200);
        }
        drop(viewers);
        drop(idle);
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
    let c = start_cluster(
        3,
        "brpu_guarantee_bps = 10000000\nline_rate_bps = 100000000\nmirror_low_watermark = 100.0\nmirror_high_watermark = 200.0\n",
        "",
    );
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
        panic!("dig is required (scripts/setup.sh installs bind9-dnsutils)");
    }
    let dns = "\n[dns]\nlisten = [\"0.0.0.0:5353\"]\n\n[[dns.zones]]\nname = \"dx.example.test\"\ndomain = \"example.test\"\nns = [\"ns1.dx.example.test\"]\nglue = { \"ns1.dx.example.test\" = [\"10.77.0.1\"] }\n";
    let c = start_cluster(3, "", dns);
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

#[test]
fn replayed_comets_from_an_earlier_boot_never_bring_a_dead_node_back() {
    let mut c = start_cluster(3, "", "");
    let victim = 2;
    let name = c.net.names[victim].clone();
    // Capture the victim's comets from the hub (the attacker on the LAN) for a while.
    let hub = c.net.hub.clone();
    let captured: Vec<Vec<u8>> = TestNet::within(&hub, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:17777").unwrap();
        s.join_multicast_v4(
            &"239.255.77.77".parse().unwrap(),
            &"10.77.0.254".parse().unwrap(),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let key = arrow_cluster::CometKey::new(SECRET.as_bytes());
        let mut out = Vec::new();
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_millis(10 * INTERVAL_MS) {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                if arrow_cluster::Comet::decode(&buf[..n], &key).is_ok_and(|m| m.name == name) {
                    out.push(buf[..n].to_vec());
                }
            }
        }
        out
    });
    assert!(captured.len() >= 5, "captured {} comets", captured.len());
    // Restart the victim once (a new boot), let the survivors hear it, then kill it for good.
    c.kill9(victim);
    c.restart(victim);
    std::thread::sleep(Duration::from_millis(5 * INTERVAL_MS));
    assert!(c.designations(0, 300).contains(&c.net.names[victim]));
    c.kill9(victim);
    let gone = wait_until(Duration::from_secs(10), || {
        (0..2).all(|i| !c.designations(i, 300).contains(&c.net.names[victim]))
    });
    assert!(gone, "killed node never left service");
    let replayed_before: Vec<u64> = (0..2)
        .map(|i| c.metric(i, "arrow_comets_dropped_total{reason=\"replayed\""))
        .collect();
    // Replay the capture (well within the clock-skew window) for two seconds while watching.
    let hub = c.net.hub.clone();
    let sent = captured.len();
    let replay = std::thread::spawn(move || {
        TestNet::within(&hub, move || {
            let s = std::net::UdpSocket::bind("10.77.0.254:0").unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                for d in &captured {
                    s.send_to(d, GROUP).unwrap();
                }
                std::thread::sleep(Duration::from_millis(INTERVAL_MS / 2));
            }
        })
    });
    let mut resurrected = 0;
    while !replay.is_finished() {
        for i in 0..2 {
            if c.designations(i, 1_000).contains(&c.net.names[victim]) {
                resurrected += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    replay.join().unwrap();
    assert_eq!(resurrected, 0, "a dead node came back on replayed comets");
    for (i, before) in replayed_before.iter().enumerate() {
        let after = c.metric(i, "arrow_comets_dropped_total{reason=\"replayed\"");
        assert!(
            after >= before + sent as u64,
            "node {i}: replayed counter {before} -> {after}, {sent} comets replayed per round"
        );
    }
    // Every request for the dead node's keys is still served.
    for (path, _) in c.titles(0, 20) {
        let r = c.http_get(0, &path);
        assert_eq!(r.status, 200, "{path}: {:?}", r.headers);
    }
}

#[test]
fn a_dead_designated_node_costs_no_failed_request() {
    let mut c = start_cluster(3, "", "");
    let victim = 1;
    let titles = c.titles(0, 60);
    let theirs: Vec<String> = titles
        .iter()
        .filter(|(_, d)| *d == victim)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(theirs.len() >= 5, "{} keys on the victim", theirs.len());
    c.kill9(victim);
    // At once, before the table can know: every key of the dead node is still served, by
    // node 0 and node 2 alike.
    let mut failed = Vec::new();
    for path in &theirs {
        for i in [0, 2] {
            let r = c.http_get(i, path);
            if r.status != 200 || r.body != body_for(path, 20_000) {
                failed.push((i, path.clone(), r.status));
            }
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
    let failovers =
        c.metric(0, "arrow_peer_failovers_total") + c.metric(2, "arrow_peer_failovers_total");
    assert!(failovers >= 1, "failovers counted: {failovers}");
    // Error bodies never name a node, and the log says which node failed.
    assert!(c.log(0).contains("failing over") || c.log(2).contains("failing over"));
}

#[test]
fn a_restarted_node_hears_the_cluster_before_it_serves_others_keys() {
    // A warm-up of 10 intervals, so the requests below surely arrive during it.
    let mut c = start_cluster(3, "warmup_ms = 1000\n", "");
    let x = 0;
    let others: Vec<(String, usize)> = c
        .titles(1, 60)
        .into_iter()
        .filter(|(_, d)| *d != x)
        .take(20)
        .collect();
    // Fill every key through its designated node: the origin sees each once.
    for (path, d) in &others {
        assert_eq!(c.http_get(*d, path).status, 200);
    }
    let fetched = |c: &Cluster| {
        let seen = c._origin.as_ref().unwrap().seen.lock().unwrap();
        seen.iter()
            .filter(|q| others.iter().any(|(p, _)| *p == q.path))
            .count() as u64
    };
    let filled = fetched(&c);
    assert_eq!(filled, others.len() as u64);
    // Load on the survivors through the crash and the restart: every title, x's included.
    let all: Vec<String> = c.titles(1, 60).into_iter().map(|(p, _)| p).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub = c.net.hub.clone();
    let (stop2, all2) = (stop.clone(), all.clone());
    let load = std::thread::spawn(move || {
        TestNet::within(&hub, move || {
            let mut failed = Vec::new();
            let mut served = 0u64;
            let mut k = 0usize;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let path = &all2[k % all2.len()];
                let node = 1 + k % 2;
                let addr: SocketAddr = format!("10.77.0.{}:8080", node + 1).parse().unwrap();
                match get(addr, path, HOST, &[]) {
                    Ok(r) if r.status == 200 && r.body == body_for(path, 20_000) => served += 1,
                    Ok(r) => failed.push(format!("{path} via node {node}: {}", r.status)),
                    Err(e) => failed.push(format!("{path} via node {node}: {e}")),
                }
                k += 1;
            }
            (served, failed)
        })
    });
    std::thread::sleep(Duration::from_millis(200));
    // Restart x as after a host reboot (its table gone), and ask it for those keys at once.
    c.kill9(x);
    let table = c.configs[x].parent().unwrap().join(format!("table-{x}"));
    let _ = std::fs::remove_file(&table);
    c.restart(x);
    for (path, _) in &others {
        let r = c
            .try_http_get(x, path)
            .unwrap_or_else(|e| panic!("{path}: {e}; log:\n{}", c.log(x)));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, body_for(path, 20_000));
    }
    assert_eq!(
        fetched(&c),
        filled,
        "the restarted node fetched other nodes' keys from the origin; log:\n{}",
        c.log(x)
    );
    assert!(c.metric(x, "arrow_warmup_waits_total") >= 1);
    // Let the cluster see x again under the load, then stop it: nothing failed.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, failed) = load.join().unwrap();
    assert!(served > 50, "only {served} requests served under load");
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        served as usize + failed.len()
    );
}

#[test]
fn per_node_keys_refuse_comets_not_signed_by_their_sender() {
    // Each node's key pair from `arrow keygen`; every node lists every public key.
    let keys = scratch_dir("node-keys");
    let mut public = Vec::new();
    for i in 0..3 {
        let out = std::process::Command::new(arrow_bin())
            .args(["keygen", "--out"])
            .arg(keys.path().join(format!("n{i}.key")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        public.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    // keygen never overwrites a key.
    let again = std::process::Command::new(arrow_bin())
        .args(["keygen", "--out"])
        .arg(keys.path().join("n0.key"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    let table: String = (0..3)
        .map(|i| format!("\"n{:02}.test.arrow\" = \"{}\"\n", i + 1, public[i]))
        .collect();
    let dir = keys.path().to_path_buf();
    let c = start_cluster_each(
        3,
        move |i| {
            format!(
                "signing_key_file = \"{}/n{i}.key\"\n[cluster.node_keys]\n{table}",
                dir.display()
            )
        },
        "",
    );
    // The cluster formed (start_cluster waited for every node to see every other). Someone
    // who knows the cluster secret but no node's key speaks for n02: refused.
    let before = c.designations(0, 10_000);
    let key = arrow_cluster::CometKey::new(SECRET.as_bytes());
    let impostor = arrow_cluster::Comet {
        name: "n02.test.arrow".into(),
        boot_id: u64::MAX / 2,
        sequence: 1,
        time_ms: arrow_cluster::wall_ms(),
        addr: Some(IpAddr::from([10, 77, 0, 99])),
        http_port: 8080,
        brpu_bps: 1,
        capacity_bps: 1,
        weight: u64::MAX / 4,
        users: 0,
        mirroring: false,
        admitting: true,
        disks: vec![],
    };
    let wrong_signer = arrow_cluster::signing_key_from_hex(&"11".repeat(32)).unwrap();
    let unsigned = impostor.encode(&key).unwrap();
    let mut other = impostor.clone();
    other.sequence = 2;
    let badly_signed = other.encode_signed(&key, Some(&wrong_signer)).unwrap();
    let hub = c.net.hub.clone();
    TestNet::within(&hub, move || {
        let s = std::net::UdpSocket::bind("10.77.0.254:0").unwrap();
        for _ in 0..10 {
            s.send_to(&unsigned, GROUP).unwrap();
            s.send_to(&badly_signed, GROUP).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    assert_eq!(c.designations(0, 10_000), before, "the impostor moved keys");
    let status = c.admin_get(0, "/status").unwrap();
    assert!(!status.contains("10.77.0.99"), "{status}");
    let unsigned_n = c.metric(0, "arrow_comets_dropped_total{reason=\"unsigned\"}");
    assert!(unsigned_n >= 20, "unsigned comets counted: {unsigned_n}");
}

/// Prometheus's HTTP API in the hub namespace: the `data.result` of an instant query, or `None`
/// while Prometheus is not ready (503) or not listening yet.
fn prom_try(hub: &str, api: SocketAddr, expr: &str) -> Option<Vec<serde_json::Value>> {
    let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let path = format!("/api/v1/query?query={q}");
    let hub = hub.to_string();
    let r = TestNet::within(&hub, move || get(api, &path, "prometheus", &[])).ok()?;
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("query {expr}: {e}: {}", String::from_utf8_lossy(&r.body)));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    Some(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Like [`prom_try`], once Prometheus is up: a failed query fails the test.
fn prom_query(hub: &str, api: SocketAddr, expr: &str) -> Vec<serde_json::Value> {
    prom_try(hub, api, expr).unwrap_or_else(|| panic!("query {expr}: Prometheus did not answer"))
}

#[test]
fn prometheus_scrapes_a_node_and_every_dashboard_query_and_alert_has_data() {
    // One node with a guarantee (brpu metrics), an access log, and a disk refused at start.
    let c = start_cluster(
        1,
        "brpu_guarantee_bps = 1000000\nline_rate_bps = 1000000000\n",
        "\n[[disk]]\npath = \"/nonexistent-arrow-dir/d1.slab\"\nsize_bytes = 67108864\n",
    );
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let rules = repo.join("dist/prometheus/alerts.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool is required (Debian package prometheus; scripts/setup.sh installs it)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // Prometheus in the hub namespace (a namespace of this test's own: its port is free),
    // scraping the node every second and evaluating the rules.
    let dir = scratch_dir("prometheus");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: arrow\n    static_configs:\n      - targets: ['10.77.0.1:9090']\n",
        rules.display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let api: SocketAddr = "10.77.0.254:9099".parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(
        std::process::Command::new("ip")
            .args(["netns", "exec", &c.net.hub, "prometheus"])
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .stderr(log)
            .spawn()
            .expect("prometheus is required (Debian package prometheus)"),
    );
    // Traffic: misses (origin latency), hits.
    for round in 0..3 {
        for t in 0..10 {
            let r = c.http_get(0, &format!("/v/title-{t}/seg-{round}.ts"));
            assert_eq!(r.status, 200);
        }
    }
    let scraped = wait_until(Duration::from_secs(60), || {
        prom_try(&c.net.hub, api, "count(up == 1)").is_some_and(|r| r.len() == 1)
            && prom_try(
                &c.net.hub,
                api,
                "count_over_time(arrow_requests_total[1m]) > 2",
            )
            .is_some_and(|r| !r.is_empty())
    });
    assert!(
        scraped,
        "no scrapes; prometheus log:\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    // Every dashboard query returns data.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("dist/grafana/arrow.json")).unwrap(),
    )
    .unwrap();
    let mut empty = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            if prom_query(&c.net.hub, api, expr).is_empty() {
                empty.push(format!("{}: {expr}", panel["title"]));
            }
        }
    }
    // Every alert expression is valid and every series it reads exists (a firing alert would
    // need a broken node; the refused disk makes ArrowDiskRefused fire for real).
    let rules_doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&rules).unwrap()).unwrap();
    for rule in rules_doc["groups"][0]["rules"].as_sequence().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        prom_query(&c.net.hub, api, expr);
        for metric in expr
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .filter(|w| w.starts_with("arrow_"))
        {
            if prom_query(&c.net.hub, api, metric).is_empty() {
                empty.push(format!("{}: {metric}", rule["alert"].as_str().unwrap()));
            }
        }
    }
    assert!(empty.is_empty(), "no data for: {empty:#?}");
    let fired = wait_until(Duration::from_secs(30), || {
        !prom_query(
            &c.net.hub,
            api,
            "ALERTS{alertname=\"ArrowDiskRefused\",alertstate=\"firing\"}",
        )
        .is_empty()
    });
    assert!(fired, "ArrowDiskRefused did not fire");
}
