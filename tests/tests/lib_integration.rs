//! The library through real front ends: three `arrow` nodes in network namespaces, and in a
//! fourth namespace a real nginx with the Lua module (lib/lua/nginx.conf, arrow.lua) and a real
//! PowerDNS with the lua2 backend (lib/pdns/arrow-pdns.lua), both reading node 1's config file
//! and its shared-memory cluster table through libarrow_cdn.so ("beside node 1").
//!
//! - For 1,000 titles, nginx routes each request to the node `GET /designate` names (proxy to
//!   it, or to node 1 when node 1 is designated), with the node's debug headers; PowerDNS
//!   answers every `<md5>.dx.example.test` with the CNAME and TTL of Arrow's own responder.
//! - A killed node: nginx and PowerDNS follow the table as the node does.
//! - Node 1 killed (its table goes stale), then its table removed: nginx answers the documented
//!   fallback (302 to the overflow CDN, with X-Arrow-Error), PowerDNS the overflow CNAME; both
//!   keep running.
//!
//! Requires root, iproute2, nginx with libnginx-mod-http-lua, pdns-server with
//! pdns-backend-lua2 (scripts/setup.sh installs them): the test fails, saying why, without them.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use arrow_tests::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const HOST: &str = "cdn.example.test";
const INTERVAL_MS: u64 = 100;
const MISSING: u64 = 3;
const TITLES: usize = 1000;
const NGINX: &str = "10.77.0.4:8080";
const PDNS: &str = "10.77.0.4:53";
const OVERFLOW: &str = "cdn.overflow.test";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// libarrow_cdn.so of this build (built once per test run, as `arrow_bin` builds the node).
fn lib_so() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "arrow-lib"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo build").success(),
            "building arrow-lib failed"
        );
    });
    profile_dir.join("libarrow_cdn.so")
}

fn require(what: &str, ok: bool) {
    assert!(ok, "{what} is required (scripts/setup.sh installs it)");
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers (after a SIGKILL of the master
        // they went on running, orphaned, after the test). SIGKILL if it is still there in 5 s.
        // SAFETY: kill(2) on the pid of a child this handle has not reaped yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    net: TestNet,
    nodes: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
    configs: Vec<PathBuf>,
    nginx: Option<Daemon>,
    pdns: Option<Daemon>,
    dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.nginx = None;
        self.pdns = None;
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node_toml(i: usize, dir: &Path, origin_port: u16) -> String {
    let http: SocketAddr = format!("10.77.0.{}:8080", i + 1).parse().unwrap();
    let admin: SocketAddr = format!("10.77.0.{}:9090", i + 1).parse().unwrap();
    let origin = format!("http://10.77.0.254:{origin_port}");
    node_config(dir, http, admin, &[origin], "").replace("name = \"n01.test\"\n", "")
        + &format!(
            r#"
[cluster]
advertise_addr = "10.77.0.{n}"
table_path = "{dir}/table"
group = "239.255.77.78:17778"
interface = "10.77.0.{n}"
comet_interval_ms = {INTERVAL_MS}
missing_intervals = {MISSING}
secret = "lib-test-cluster-secret-0123456789"

[overflow]
cdn_host = "{OVERFLOW}"

[dns]
listen = ["10.77.0.{n}:5353"]

[[dns.zones]]
name = "dx.example.test"
domain = "example.test"
ns = ["ns1.dx.example.test"]
glue = {{ "ns1.dx.example.test" = ["10.77.0.4"] }}
overflow_cname = "{OVERFLOW}"
"#,
            n = i + 1,
            dir = dir.display()
        )
}

impl World {
    fn start() -> World {
        require("root", unsafe { libc::geteuid() } == 0);
        require("nginx", Path::new("/usr/sbin/nginx").exists());
        require(
            "libnginx-mod-http-lua",
            Path::new("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists(),
        );
        require("pdns-server", Path::new("/usr/sbin/pdns_server").exists());
        let lua2 = Command::new("sh")
            .args(["-c", "ls /usr/lib/*/pdns/liblua2backend.so"])
            .output()
            .is_ok_and(|o| o.status.success());
        require("pdns-backend-lua2", lua2);
        let so = lib_so();
        let net = TestNet::create(4).unwrap_or_else(|e| {
            panic!("network namespaces are required (root, iproute2; scripts/setup.sh): {e}")
        });
        let dir = scratch_dir("lib");
        let origin_port = origin_in(&net.hub);
        let mut w = World {
            net,
            nodes: Vec::new(),
            logs: Vec::new(),
            configs: Vec::new(),
            nginx: None,
            pdns: None,
            dir,
        };
        for i in 0..3 {
            let nd = w.dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&nd).unwrap();
            let path = nd.join("arrow.toml");
            std::fs::write(&path, node_toml(i, &nd, origin_port)).unwrap();
            let log = nd.join("arrow.log");
            w.nodes.push(Some(w.net.spawn_node(i, &path, &log)));
            w.logs.push(log);
            w.configs.push(path);
        }
        for i in 0..3 {
            let ok = wait_until(Duration::from_secs(30), || {
                let names = w.designate_many(i, 300);
                w.net.names[..3].iter().all(|n| names.contains(n))
            });
            assert!(ok, "node {i} did not see the cluster:\n{}", w.log(i));
        }
        w.nginx = Some(w.start_nginx(&so));
        w.pdns = Some(w.start_pdns(&so));
        w
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    fn admin(&self, i: usize, path: &str) -> Option<String> {
        let addr: SocketAddr = format!("10.77.0.{}:9090", i + 1).parse().unwrap();
        let path = path.to_string();
        TestNet::within(&self.net.hub, move || get(addr, &path, "admin", &[]).ok())
            .filter(|r| r.status == 200)
            .map(|r| String::from_utf8_lossy(&r.body).trim().to_string())
    }

    fn designate_many(&self, i: usize, n: usize) -> Vec<String> {
        self.admin(i, &format!("/designate?prefix=example.test&n={n}"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `/designate?key=K` on node `i` for each title's cluster key.
    fn designations(&self, i: usize, titles: &[usize]) -> Vec<String> {
        let addr: SocketAddr = format!("10.77.0.{}:9090", i + 1).parse().unwrap();
        let keys: Vec<String> = titles.iter().map(|&t| key(t)).collect();
        TestNet::within(&self.net.hub, move || {
            keys.iter()
                .map(|k| {
                    let r = get(addr, &format!("/designate?key={k}"), "admin", &[])
                        .unwrap_or_else(|e| panic!("designate {k}: {e}"));
                    String::from_utf8_lossy(&r.body).trim().to_string()
                })
                .collect()
        })
    }

    fn start_nginx(&self, so: &Path) -> Daemon {
        let nd = self.dir.path().join("nginx");
        std::fs::create_dir_all(nd.join("logs")).unwrap();
        let example = std::fs::read_to_string(repo().join("lib/lua/nginx.conf")).unwrap();
        let conf = example
            .replace("ARROW_CONFIG", self.configs[0].to_str().unwrap())
            .replace("LUA_DIR", repo().join("lib/lua").to_str().unwrap())
            .replace("LOCAL_NODE", "10.77.0.1:8080")
            .replace(
                "listen 8080 reuseport;",
                &format!("listen {NGINX} reuseport;"),
            )
            .replace("worker_processes auto;", "worker_processes 2;");
        let path = nd.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(nd.join("stderr.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.nodes[3], "/usr/sbin/nginx", "-p"])
            .arg(&nd)
            .arg("-c")
            .arg(&path)
            .arg("-g")
            .arg(format!(
                "daemon off; user root; pid {0}/nginx.pid; error_log {0}/error.log info;",
                nd.display()
            ))
            .env("ARROW_LIB", so)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        let d = Daemon(child);
        let addr: SocketAddr = NGINX.parse().unwrap();
        let up = TestNet::within(&self.net.hub, move || {
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            })
        });
        assert!(up, "nginx did not start: {}", self.nginx_log());
        d
    }

    fn nginx_log(&self) -> String {
        let nd = self.dir.path().join("nginx");
        std::fs::read_to_string(nd.join("error.log")).unwrap_or_default()
            + &std::fs::read_to_string(nd.join("stderr.log")).unwrap_or_default()
    }

    fn start_pdns(&self, so: &Path) -> Daemon {
        let pd = self.dir.path().join("pdns");
        std::fs::create_dir_all(&pd).unwrap();
        let example = std::fs::read_to_string(repo().join("lib/pdns/pdns.conf")).unwrap();
        let script = repo().join("lib/pdns/arrow-pdns.lua");
        let conf = example.replace(
            "/usr/share/arrow/pdns/arrow-pdns.lua",
            script.to_str().unwrap(),
        ) + &format!(
            "local-address=10.77.0.4\nlocal-port=53\nsocket-dir={}\nguardian=no\ndaemon=no\n\
             disable-syslog=yes\nwebserver=no\nloglevel=4\nreceiver-threads=1\n\
             distributor-threads=2\n",
            pd.display()
        );
        std::fs::write(pd.join("pdns.conf"), conf).unwrap();
        let log = std::fs::File::create(pd.join("pdns.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.nodes[3], "/usr/sbin/pdns_server"])
            .arg(format!("--config-dir={}", pd.display()))
            .env("ARROW_LIB", so)
            .env("ARROW_CONFIG", &self.configs[0])
            .env("ARROW_LUA_DIR", repo().join("lib/lua"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pdns_server");
        let d = Daemon(child);
        let probe = format!("{}.dx.example.test", &key(0)["example.test".len()..]);
        let up = wait_until(Duration::from_secs(20), || {
            self.dns(PDNS, &probe).is_some_and(|(_, a)| a.is_some())
        });
        assert!(up, "PowerDNS did not answer: {}", self.pdns_log());
        d
    }

    fn pdns_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pdns/pdns.log")).unwrap_or_default()
    }

    /// One A query over UDP from the hub: (rcode, first CNAME target and TTL).
    fn dns(&self, server: &str, name: &str) -> Option<(u16, Option<(String, u32)>)> {
        let server: SocketAddr = server.parse().unwrap();
        let name = name.to_string();
        TestNet::within(&self.net.hub, move || dns_query(server, &name))
    }

    fn nginx_get(&self, paths: Vec<String>) -> Vec<Response> {
        let addr: SocketAddr = NGINX.parse().unwrap();
        TestNet::within(&self.net.hub, move || {
            paths
                .iter()
                .map(|p| get(addr, p, HOST, &[]).unwrap_or_else(|e| panic!("GET {p}: {e}")))
                .collect()
        })
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn alive(&mut self) -> bool {
        let nginx = self.nginx.as_mut().unwrap().0.try_wait().unwrap().is_none();
        let pdns = self.pdns.as_mut().unwrap().0.try_wait().unwrap().is_none();
        nginx && pdns
    }
}

fn dns_query(server: SocketAddr, name: &str) -> Option<(u16, Option<(String, u32)>)> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .ok()?;
    let mut q = Message::new();
    q.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    sock.send_to(&q.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).ok()?;
    let cname = m.answers().iter().find_map(|r| match r.data() {
        Some(RData::CNAME(c)) => Some((c.0.to_ascii().trim_end_matches('.').to_string(), r.ttl())),
        _ => None,
    });
    Some((u16::from(m.response_code()), cname))
}

fn key(t: usize) -> String {
    arrow_cluster::cluster_key("example.test", &format!("/v/title-{t}"))
}

fn content_name(t: usize) -> String {
    format!("{}.dx.example.test", &key(t)["example.test".len()..])
}

/// An origin on a thread in the hub namespace; returns its port.
fn origin_in(hub: &str) -> u16 {
    let hub = hub.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        TestNet::within(&hub, move || {
            let o = Origin::start_on("10.77.0.254:0".parse().unwrap(), |req| {
                OriginReply::ok(body_for(&req.path, 2_000), "max-age=300")
            });
            tx.send(o.addr.port()).unwrap();
            std::thread::sleep(Duration::from_secs(3600));
            drop(o);
        })
    });
    rx.recv().unwrap()
}

/// nginx's route for each title against the designated node; the debug headers as the node's.
fn check_nginx(w: &World, titles: &[usize], designated: &[String]) {
    let paths: Vec<String> = titles
        .iter()
        .map(|t| format!("/v/title-{t}/seg-1.ts?tok=1"))
        .collect();
    let responses = w.nginx_get(paths);
    for ((t, want), r) in titles.iter().zip(designated).zip(&responses) {
        assert_eq!(r.status, 200, "title {t}: {r:?}\nnginx: {}", w.nginx_log());
        assert_eq!(
            r.header("server"),
            Some(want.as_str()),
            "title {t} served by the designated node"
        );
        let act = if want == &w.net.names[0] {
            "1 (self-serving)"
        } else {
            "0 (pulled from peer)"
        };
        assert_eq!(r.header("x-arrow-act"), Some(act), "title {t}");
        assert_eq!(r.header("x-arrow-cluster-key"), Some(key(*t).as_str()));
        assert_eq!(
            r.header("x-arrow-hash-input"),
            Some(format!("/v/title-{t}").as_str())
        );
        assert_eq!(
            r.header("x-arrow-cache-key"),
            Some(format!("example.test/v/title-{t}/seg-1.ts").as_str())
        );
        assert_eq!(
            r.header("x-arrow-pull-url"),
            Some(format!("http://{want}/v/title-{t}/seg-1.ts?tok=1").as_str())
        );
    }
}

/// PowerDNS's answers against Arrow's own responder on node 2 (and the designated node).
fn check_pdns(w: &World, titles: &[usize], designated: &[String]) {
    let names: Vec<String> = titles.iter().map(|&t| content_name(t)).collect();
    let hub = w.net.hub.clone();
    let answers = TestNet::within(&hub, move || {
        names
            .iter()
            .map(|n| {
                (
                    dns_query(PDNS.parse().unwrap(), n),
                    dns_query("10.77.0.2:5353".parse().unwrap(), n),
                )
            })
            .collect::<Vec<_>>()
    });
    for ((t, want), (pdns, arrow)) in titles.iter().zip(designated).zip(answers) {
        let arrow = arrow.unwrap_or_else(|| panic!("Arrow's DNS did not answer title {t}"));
        let pdns =
            pdns.unwrap_or_else(|| panic!("PowerDNS did not answer title {t}\n{}", w.pdns_log()));
        assert_eq!(arrow.1, Some((want.clone(), 300)), "Arrow's DNS, title {t}");
        assert_eq!(pdns, arrow, "PowerDNS as Arrow's DNS, title {t}");
    }
}

#[test]
fn nginx_and_powerdns_route_as_the_node_through_the_library() {
    let mut w = World::start();
    let titles: Vec<usize> = (0..TITLES).collect();
    let designated = w.designations(1, &titles);
    for n in &w.net.names[..3] {
        assert!(designated.contains(n), "every node holds titles: {n}");
    }
    check_nginx(&w, &titles, &designated);
    check_pdns(&w, &titles, &designated);

    // Names that are not content-aware: TTL 5 to a node in service; the apex: SOA.
    let (rc, c) = w.dns(PDNS, "c.dx.example.test").unwrap();
    assert_eq!(rc, 0);
    let (target, ttl) = c.unwrap();
    assert!(w.net.names[..3].contains(&target), "{target}");
    assert_eq!(ttl, 5);
    let (rc, _) = w.dns(PDNS, "a.b.dx.example.test").unwrap();
    assert_eq!(
        rc, 3,
        "deeper names are NXDOMAIN, as Arrow's responder says"
    );

    // Kill node 3: its titles move, and nginx and PowerDNS follow the table as node 1 does.
    let victim = 2;
    let moved: Vec<usize> = titles
        .iter()
        .copied()
        .filter(|&t| designated[t] == w.net.names[victim])
        .take(60)
        .collect();
    assert!(!moved.is_empty());
    w.kill(victim);
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(10), || {
        !w.designate_many(0, 300).contains(&w.net.names[victim])
    });
    assert!(gone, "node 1 still designates the killed node");
    let node_ms = killed.elapsed().as_millis();
    let after = w.designations(0, &moved);
    assert!(after.iter().all(|d| *d != w.net.names[victim]));
    check_nginx(&w, &moved, &after);
    check_pdns(&w, &moved, &after);
    eprintln!(
        "killed node out of node 1's table after {node_ms} ms; nginx and PowerDNS agreed at {} ms",
        killed.elapsed().as_millis()
    );

    // Node 1 killed: its table goes stale. The fallback: 302 to the overflow CDN (nginx), the
    // overflow CNAME (PowerDNS), as the node answers when no node is in service.
    w.kill(0);
    let max_age = Duration::from_millis(INTERVAL_MS * MISSING);
    std::thread::sleep(max_age + Duration::from_millis(2 * INTERVAL_MS));
    for (what, expected_error) in [("stale", "stale"), ("missing", "missing")] {
        if what == "missing" {
            std::fs::remove_file(w.dir.path().join("n0/table")).expect("remove the table");
            std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
        }
        let r = w
            .nginx_get(vec!["/v/title-7/seg-1.ts?x=y".into()])
            .remove(0);
        assert_eq!(r.status, 302, "{what}: {r:?}");
        assert_eq!(
            r.header("location"),
            Some(format!("https://{OVERFLOW}/v/title-7/seg-1.ts?x=y").as_str()),
            "{what}"
        );
        assert_eq!(r.header("x-arrow-act"), Some("2 (overflow)"), "{what}");
        let err = r.header("x-arrow-error").unwrap_or("");
        assert!(
            err.contains(expected_error),
            "{what}: X-Arrow-Error {err:?}"
        );
        let (rc, c) = w.dns(PDNS, &content_name(7)).expect("PowerDNS answers");
        assert_eq!((rc, c), (0, Some((OVERFLOW.to_string(), 5))), "{what}");
        assert!(w.alive(), "{what}: nginx and PowerDNS keep running");
    }
    assert!(!w.nginx_log().contains("[alert]"), "{}", w.nginx_log());
}
