//! The DNS responder through a real `arrow run` process: `[dns]` on 127.0.0.1 port 0, the
//! bound address read back from the node's log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use arrow_tests::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

struct Setup {
    node: Node,
    dns: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A node whose `[dns]` section is `dns` (listening on 127.0.0.1:0), and the DNS address it
/// bound.
fn setup(tag: &str, dns: &str) -> Setup {
    let dir = scratch_dir(tag);
    let http: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let admin: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cfg = node_config(dir.path(), http, admin, &["http://127.0.0.1:9".into()], dns);
    let node = Node::start(dir.path(), &cfg, http, admin);
    let mut bound = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            bound = dns_addr(&node.log());
            bound.is_some()
        }),
        "no `dns responder serving` line; log:\n{}",
        node.log()
    );
    Setup {
        dns: bound.unwrap(),
        node,
        _dir: dir,
    }
}

/// `text` without ANSI colour sequences (ESC [ … m).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first address of the `dns responder serving listen=[…]` log line.
fn dns_addr(log: &str) -> Option<SocketAddr> {
    let log = strip_colours(log);
    let line = log.lines().find(|l| l.contains("dns responder serving"))?;
    let list = line.split("listen=[").nth(1)?;
    list.split([',', ']']).next()?.trim().parse().ok()
}

/// A DNS query (ID 0x4242) for `name` type A, class IN, without EDNS.
fn query_a(name: &str) -> Vec<u8> {
    let mut msg = Message::new();
    msg.set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    msg.to_vec().unwrap()
}

/// One query over `stream`, framed with its 2-byte length; the answer's bytes.
fn tcp_exchange(stream: &mut TcpStream, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut out)?;
    Ok(out)
}

/// A TCP connection from another loopback source address.
fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback source");
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Whether the peer has closed `stream` (EOF or reset), without waiting.
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// The shipped connection limits (256 connections, 16 per source): one client holding 2,560
/// idle TCP connections does not lock other clients out of DNS over TCP. (The idle timeout is
/// raised from its 10 s so that, on a loaded machine where opening 2,560 connections takes
/// that long, no admitted connection times out and lets a later one in: every refusal counts.)
#[test]
fn idle_tcp_flood_from_one_source_does_not_lock_out_others() {
    let s = setup(
        "dns-tcp-flood",
        r#"
[dns]
listen = ["127.0.0.1:0"]
tcp_idle_ms = 600000

[[dns.zones]]
name = "dx.example.test"
domain = "example.test"
ns = ["ns1.dx.example.test"]
glue = { "ns1.dx.example.test" = ["127.0.0.1"] }
"#,
    );
    // 10x the node's connection limit (256), all from one source.
    let mut flood: Vec<TcpStream> = (0..2_560)
        .map(|_| TcpStream::connect(s.dns).expect("connect"))
        .collect();
    // All but 16 are closed by the responder at once.
    let started = Instant::now();
    loop {
        flood.retain_mut(|c| !closed(c));
        if flood.len() <= 16 || started.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(flood.len(), 16, "connections left open from one source");
    // Another client gets its answer over TCP.
    let mut other = connect_from([127, 0, 0, 2], s.dns);
    let answer = tcp_exchange(&mut other, &query_a("ns1.dx.example.test.")).unwrap_or_else(|e| {
        panic!("no TCP answer: {e}; log:\n{}", s.node.log());
    });
    let msg = Message::from_vec(&answer).expect("the answer parses");
    assert_eq!(msg.id(), 0x4242);
    assert_eq!(msg.message_type(), MessageType::Response);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(msg.authoritative());
    assert_eq!(
        msg.answers().iter().map(|r| r.data()).collect::<Vec<_>>(),
        [Some(&RData::A(std::net::Ipv4Addr::LOCALHOST.into()))]
    );
    // The operator sees the refusals on /metrics.
    let m = get(s.node.admin, "/metrics", "admin", &[]).unwrap();
    let m = String::from_utf8_lossy(&m.body);
    let refused: u64 = m
        .lines()
        .find(|l| l.starts_with("arrow_dns_tcp_refused_total{reason=\"per_source\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        refused >= 2_544,
        "per-source refusals on /metrics: {refused}\n{m}"
    );
}
