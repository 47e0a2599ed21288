//! Integration test harness: real `arrow` processes on loopback, a real origin over TCP, and a
//! small blocking HTTP client. Every process a test starts is stopped by its PID when the
//! handle drops.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The `arrow` binary: `$ARROW_BIN` (set by scripts/test.sh after building it), else built
/// once per test run in the tests' profile.
pub fn arrow_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ARROW_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> → target/<profile>/arrow
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "arrow-server", "--bin", "arrow"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build arrow");
        assert!(st.success(), "building the arrow binary failed");
    });
    profile_dir.join("arrow")
}

/// A directory for slab files: O_DIRECT needs a real file system (not tmpfs).
pub fn scratch_dir(tag: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch");
    std::fs::create_dir_all(&base).expect("scratch base");
    tempfile::Builder::new()
        .prefix(&format!("{tag}-"))
        .tempdir_in(base)
        .expect("scratch dir")
}

/// A loopback address nothing accepts on: a socket bound there (never listening) is kept for
/// as long as the returned guard lives, so connections to it are refused (a dead origin).
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).expect("bind");
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// `line` without ANSI colour sequences (ESC [ ... m).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The addresses a node reports in its "arrow node accepting" log line (HTTP, admin), read from
/// `log` after byte `from`.
fn accepting_addrs(log: &str, from: usize) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let tail = log.get(from..)?;
    let line = tail.lines().find(|l| l.contains("arrow node accepting"))?;
    let plain = strip_ansi(line);
    let listen = plain.split("listen=[").nth(1)?.split([']', ',']).next()?;
    let admin = plain
        .split("admin=Some(")
        .nth(1)
        .and_then(|a| a.split(')').next())
        .and_then(|a| a.parse().ok());
    Some((listen.trim().parse().ok()?, admin))
}

// ---------------------------------------------------------------------------------------------
// Origin

/// What the test origin answers.
#[derive(Clone, Debug)]
pub struct OriginReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Delay before the head, and between body pieces (to observe read-while-write).
    pub delay: Duration,
    pub piece_delay: Duration,
    /// Interim heads sent before the final one, as raw text (e.g. a `103 Early Hints`).
    pub interim: Vec<String>,
}

impl OriginReply {
    pub fn ok(body: Vec<u8>, cache_control: &str) -> OriginReply {
        OriginReply {
            status: 200,
            headers: vec![("Cache-Control".into(), cache_control.into())],
            body,
            delay: Duration::ZERO,
            piece_delay: Duration::ZERO,
            interim: Vec::new(),
        }
    }
    pub fn header(mut self, n: &str, v: &str) -> OriginReply {
        self.headers.push((n.into(), v.into()));
        self
    }
}

/// A request as the origin saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The request body (Content-Length framed, as Arrow sends it).
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&SeenRequest) -> OriginReply + Send + Sync;

/// A real HTTP/1.1 origin on loopback: thread per connection, keep-alive, counts requests.
pub struct Origin {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    pub count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Origin {
    pub fn start(handler: impl Fn(&SeenRequest) -> OriginReply + Send + Sync + 'static) -> Origin {
        Origin::start_on("127.0.0.1:0".parse().unwrap(), handler)
    }

    pub fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&SeenRequest) -> OriginReply + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind(addr).expect("origin bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s2, seen2, count2) = (stop.clone(), seen.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        // Head and body go out in separate writes: without this, Nagle holds
                        // the body until the node's delayed ACK (~40 ms per response).
                        let _ = c.set_nodelay(true);
                        let (h, seen, count, stop) =
                            (handler.clone(), seen2.clone(), count2.clone(), s2.clone());
                        std::thread::spawn(move || {
                            let _ = origin_conn(c, &*h, &seen, &count, &stop);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Origin {
            addr,
            stop,
            seen,
            count,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn requests_for(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Stop accepting and close the listener: connects are refused from now on.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn origin_conn(
    mut c: TcpStream,
    h: &Handler,
    seen: &Mutex<Vec<SeenRequest>>,
    count: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = Vec::new();
    loop {
        let (req, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&buf) {
                let req = SeenRequest {
                    method: r.method.unwrap().to_string(),
                    path: r.path.unwrap().to_string(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
                        .collect(),
                    body: Vec::new(),
                };
                break (req, n);
            }
            let mut chunk = [0u8; 4096];
            match c.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        };
        buf.drain(..head_len);
        let cl: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < cl {
            let mut chunk = [0u8; 4096];
            let n = c.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let mut req = req;
        req.body = buf.drain(..cl).collect();
        count.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(req.clone());
        let reply = h(&req);
        std::thread::sleep(reply.delay);
        for i in &reply.interim {
            c.write_all(i.as_bytes())?;
        }
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (n, v) in &reply.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let no_body = req.method == "HEAD" || reply.status == 304 || reply.status == 204;
        if reply.status != 304 && reply.status != 204 {
            head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        }
        head.push_str("\r\n");
        c.write_all(head.as_bytes())?;
        if !no_body {
            if reply.piece_delay.is_zero() {
                c.write_all(&reply.body)?;
            } else {
                for piece in reply.body.chunks(reply.body.len().div_ceil(4).max(1)) {
                    c.write_all(piece)?;
                    c.flush()?;
                    std::thread::sleep(reply.piece_delay);
                }
            }
        }
    }
}

/// A deterministic body for a key.
pub fn body_for(key: &str, len: usize) -> Vec<u8> {
    let mut x = key.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Node

/// A running `arrow run` process with its config and slab files.
pub struct Node {
    pub child: Option<Child>,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub dir: PathBuf,
    pub log_path: PathBuf,
}

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Config text for a one-shard test node with one 64 MiB disk in `dir`.
pub fn node_config(
    dir: &Path,
    http: SocketAddr,
    admin: SocketAddr,
    origins: &[String],
    extra: &str,
) -> String {
    let origins: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        r#"[node]
name = "n01.test"
cores = [0]
listen = ["{http}"]
admin_listen = "{admin}"
admin_token = "{ADMIN_TOKEN}"
debug_headers = true
access_log = "{dir}/access.log"

[limits]
header_bytes_max = 8192
header_timeout_ms = 2000
idle_timeout_ms = 5000
origin_connect_timeout_ms = 500
origin_response_timeout_ms = 3000

[storage]
ram_tier_bytes = 8388608

[[disk]]
path = "{dir}/d0.slab"
size_bytes = 67108864

[[host]]
hosts = ["*.example.test", "example.test"]
technical_labels = 1
origins = [{origins}]
{extra}
"#,
        dir = dir.display(),
        origins = origins.join(", ")
    )
}

impl Node {
    /// Start `arrow run` on `config` (text) in `dir`, and wait until it answers /health.
    pub fn start(dir: &Path, config: &str, http: SocketAddr, admin: SocketAddr) -> Node {
        let config_path = dir.join("arrow.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut n = Node {
            child: None,
            http,
            admin,
            config_path,
            dir: dir.to_path_buf(),
            log_path: dir.join("arrow.log"),
        };
        n.spawn();
        n
    }

    /// Start the process and wait until it answers /health. A node configured with port 0
    /// reports the ports it got in its log; they are read back, and the config is rewritten with
    /// them so a restart keeps its addresses (as an operator's node would).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let log_from = std::fs::metadata(&self.log_path).map_or(0, |m| m.len() as usize);
        let child = Command::new(arrow_bin())
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("ARROW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn arrow");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut bound = false;
        loop {
            if !bound {
                if let Some((http, admin)) = accepting_addrs(&self.log(), log_from) {
                    let admin = admin.unwrap_or(self.admin);
                    if (http, admin) != (self.http, self.admin) {
                        let cfg = std::fs::read_to_string(&self.config_path).unwrap();
                        // The first `listen` is the node's ([node] comes first); a [tls]
                        // listener spelled the same stays as it is.
                        let cfg = cfg
                            .replacen(
                                &format!("listen = [\"{}\"]", self.http),
                                &format!("listen = [\"{http}\"]"),
                                1,
                            )
                            .replace(
                                &format!("admin_listen = \"{}\"", self.admin),
                                &format!("admin_listen = \"{admin}\""),
                            );
                        std::fs::write(&self.config_path, cfg).unwrap();
                        self.http = http;
                        self.admin = admin;
                    }
                    bound = true;
                }
            }
            if bound {
                if let Ok(r) = get(self.admin, "/health", "admin", &[]) {
                    if r.status == 200 {
                        return;
                    }
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("arrow exited during start-up ({st}); log:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "arrow did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The first TLS listener of the latest start, as its "arrow node accepting" line says.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        let log = self.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("arrow node accepting"))?;
        let plain: String = strip_ansi(line);
        let l = plain
            .split("tls_listen=[")
            .nth(1)?
            .split([']', ','])
            .next()?;
        l.trim().parse().ok()
    }

    /// SIGTERM and wait (graceful); returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_with(libc::SIGTERM)
    }

    /// Send `signal` and wait for the node to exit (SIGKILL after 40 s).
    pub fn stop_with(&mut self, signal: libc::c_int) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling a child process this harness started, by its PID.
        unsafe { libc::kill(c.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes and read one response (HEAD-aware when `head` is true).
pub fn exchange(addr: SocketAddr, raw: &[u8], head: bool) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(raw)?;
    read_response(&mut s, head, &mut Vec::new())
}

/// Read one response from `s` (a socket, or a process's output such as `openssl s_client`'s),
/// keeping any bytes after it in `buf`.
pub fn read_response(
    s: &mut impl Read,
    head: bool,
    buf: &mut Vec<u8>,
) -> std::io::Result<Response> {
    let (status, headers, head_len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let headers: HashMap<String, String> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into(),
                    )
                })
                .collect();
            break (r.code.unwrap(), headers, n);
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..head_len);
    let mut body = Vec::new();
    if !head && status != 304 && status != 204 && status >= 200 {
        if let Some(cl) = headers.get("content-length") {
            let cl: usize = cl.parse().unwrap();
            while buf.len() < cl {
                let mut chunk = [0u8; 65536];
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            body = buf.drain(..cl).collect();
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                let (n, size) = loop {
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete(x)) => break x,
                        _ => {
                            let mut chunk = [0u8; 65536];
                            let n = s.read(&mut chunk)?;
                            if n == 0 {
                                return Err(std::io::ErrorKind::UnexpectedEof.into());
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                };
                let need = n + size as usize + 2;
                while buf.len() < need {
                    let mut chunk = [0u8; 65536];
                    let k = s.read(&mut chunk)?;
                    if k == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                body.extend_from_slice(&buf[n..n + size as usize]);
                buf.drain(..need);
                if size == 0 {
                    break;
                }
            }
        } else {
            s.read_to_end(buf)?;
            body = std::mem::take(buf);
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// GET `path` with Host `host` and extra headers.
pub fn get(
    addr: SocketAddr,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<Response> {
    request(addr, "GET", path, host, extra)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in extra {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    exchange(addr, raw.as_bytes(), method == "HEAD")
}

/// Poll `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

// ---------------------------------------------------------------------------------------------
// Network namespaces (cluster tests)

/// A test network: a hub namespace with a bridge (and the origin at .254) plus one namespace
/// per node, joined by veth pairs, multicast enabled, a hosts file per namespace. Removed on
/// drop.
pub struct TestNet {
    pub tag: String,
    pub hub: String,
    pub nodes: Vec<String>,
    pub names: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestNet {
    /// Address of node `i` (0-based).
    pub fn addr(&self, i: usize) -> std::net::IpAddr {
        format!("10.77.0.{}", i + 1).parse().unwrap()
    }

    pub fn hub_addr(&self) -> std::net::IpAddr {
        "10.77.0.254".parse().unwrap()
    }

    /// Create the network, or `Err(reason)` where namespaces cannot be created here.
    pub fn create(n: usize) -> Result<TestNet, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // "a<pid>x<seq>": the separator keeps two test processes apart (pid 12 seq 34 and pid
        // 123 seq 4 would both be a1234); interface names below stay within 15 bytes.
        let tag = format!(
            "a{}x{}",
            std::process::id() % 100000,
            SEQ.fetch_add(1, Ordering::Relaxed) % 100
        );
        let hub = format!("{tag}h");
        let mut net = TestNet {
            tag: tag.clone(),
            hub: hub.clone(),
            nodes: Vec::new(),
            names: (0..n)
                .map(|i| format!("n{:02}.test.arrow", i + 1))
                .collect(),
        };
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &hub, "addr", "add", "10.77.0.254/24", "dev", "br0"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (i, name) in net.names.iter().enumerate() {
            hosts.push_str(&format!("10.77.0.{} {name}\n", i + 1));
        }
        for i in 0..n {
            let ns = format!("{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            net.nodes.push(ns.clone());
            let (inner, outer) = (format!("{tag}i{i}"), format!("{tag}o{i}"));
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "netns", &hub])?;
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &outer, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{}/24", i + 1),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up", "multicast", "on"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &inner])?;
            let etc = PathBuf::from(format!("/etc/netns/{ns}"));
            std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
            std::fs::write(etc.join("hosts"), &hosts).map_err(|e| e.to_string())?;
        }
        ip(&["-n", &hub, "route", "add", "224.0.0.0/4", "dev", "br0"])?;
        std::fs::create_dir_all(format!("/etc/netns/{hub}")).map_err(|e| e.to_string())?;
        std::fs::write(format!("/etc/netns/{hub}/hosts"), &hosts).map_err(|e| e.to_string())?;
        Ok(net)
    }

    /// Run `f` on a thread that has entered namespace `ns`.
    pub fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with a namespace fd that stays open for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            f()
        })
        .join()
        .expect("netns thread")
    }

    /// Start `arrow run` for node `i` inside its namespace.
    pub fn spawn_node(&self, i: usize, config_path: &Path, log_path: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.nodes[i]])
            .arg(arrow_bin())
            .args(["run", "--config"])
            .arg(config_path)
            .env("ARROW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn arrow in netns")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            let _ = ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}
