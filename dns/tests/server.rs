//! The responder on 127.0.0.1:0, queried by a real client (hickory-proto messages over std
//! sockets) and, where installed, by `dig`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_dns::{
    demo_zone, spawn, Answer, Directory, DnsConfig, DnsCounters, DnsHandle, ZoneConfig,
};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use md5::{Digest, Md5};

const NODES: [&str; 2] = ["n01.lax.hw.hyvd.net", "n02.lax.hw.hyvd.net"];
const CONTENT: &str = "aa22fad1ed4a441d54fa664f53d5b0ee.dx.claw.ac.";
const CLUSTER_KEY: &str = "claw.acaa22fad1ed4a441d54fa664f53d5b0ee";

/// Designated node: md5(cluster key)[0] mod 2. Headroom: n01, n02, n01, …
#[derive(Default)]
struct TestDirectory {
    keys: Mutex<Vec<String>>,
    turn: AtomicUsize,
}

fn designated_for(cluster_key: &str) -> &'static str {
    let digest = Md5::digest(cluster_key.as_bytes());
    NODES[usize::from(digest[0]) % NODES.len()]
}

impl Directory for TestDirectory {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        self.keys.lock().unwrap().push(cluster_key.to_string());
        Some(Answer::Node(designated_for(cluster_key).to_string()))
    }
    fn by_headroom(&self) -> Option<Answer> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(Answer::Node(NODES[turn % NODES.len()].to_string()))
    }
}

fn claw_zone() -> ZoneConfig {
    let mut zone = demo_zone();
    zone.name = "dx.claw.ac".into();
    zone.domain = "claw.ac".into();
    zone.ns = vec!["ns1.dx.claw.ac".into(), "ns2.dx.claw.ac".into()];
    zone.glue = BTreeMap::from([
        (
            "ns1.dx.claw.ac".to_string(),
            vec![IpAddr::from([192, 0, 2, 1])],
        ),
        (
            "ns2.dx.claw.ac".to_string(),
            vec!["2001:db8::2".parse().unwrap()],
        ),
    ]);
    zone.nodes = BTreeMap::from([
        (NODES[0].to_string(), vec![IpAddr::from([3, 3, 3, 1])]),
        (NODES[1].to_string(), vec![IpAddr::from([3, 3, 3, 2])]),
    ]);
    zone
}

/// Addresses of node `many.big.test`: 100 IPv6 addresses, whose AAAA RRset needs more than
/// 1232 bytes.
fn many_v6() -> Vec<IpAddr> {
    (0..100u16)
        .map(|i| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0x100, i]))
        .collect()
}

/// A zone whose NS answer (60 long names) needs more than 1232 bytes, with a node of 100 IPv6
/// addresses and a node with both IPv4 and IPv6 addresses.
fn big_zone() -> ZoneConfig {
    let mut zone = demo_zone();
    zone.name = "big.test".into();
    zone.domain = "big.test".into();
    zone.ns = (0..60)
        .map(|i| format!("name-server-number-{i:02}.provider.example.net"))
        .collect();
    zone.nodes = BTreeMap::from([
        ("many.big.test".to_string(), many_v6()),
        (
            "dual.big.test".to_string(),
            vec![
                IpAddr::from([192, 0, 2, 10]),
                IpAddr::from([192, 0, 2, 11]),
                "2001:db8::10".parse().unwrap(),
            ],
        ),
    ]);
    zone
}

/// A config on 127.0.0.1:0; the per-source limit equals the global one, the message deadline
/// is the default 500 ms.
fn config(tcp_connections_max: usize, tcp_idle_ms: u64) -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones: vec![claw_zone(), big_zone()],
        core: None,
        tcp_connections_max,
        tcp_connections_per_source_max: tcp_connections_max,
        tcp_idle_ms,
        tcp_message_ms: 500,
    }
}

fn start_with(cfg: DnsConfig) -> (DnsHandle, Arc<TestDirectory>) {
    let dir = Arc::new(TestDirectory::default());
    let handle = spawn(cfg, dir.clone()).expect("responder starts");
    (handle, dir)
}

fn start(tcp_connections_max: usize, tcp_idle_ms: u64) -> (DnsHandle, Arc<TestDirectory>) {
    start_with(config(tcp_connections_max, tcp_idle_ms))
}

fn counters(server: &DnsHandle) -> DnsCounters {
    server.stats().snapshot()
}

/// Polls the responder's counters until `ok` holds or 5 s pass.
fn wait_counters(server: &DnsHandle, ok: impl Fn(&DnsCounters) -> bool) -> DnsCounters {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = counters(server);
        if ok(&c) || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn query(name: &str, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut msg = Message::new();
    msg.set_id(0xbeef)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        msg.set_edns(edns);
    }
    msg.to_vec().unwrap()
}

fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn udp(addr: SocketAddr, bytes: &[u8]) -> Message {
    let out = udp_raw(addr, bytes, Duration::from_secs(3)).expect("a UDP answer");
    Message::from_vec(&out).expect("response parses")
}

fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut out).unwrap();
    out
}

fn tcp(addr: SocketAddr, bytes: &[u8]) -> Message {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    Message::from_vec(&tcp_exchange(&mut stream, bytes)).unwrap()
}

fn cname(msg: &Message) -> (String, u32) {
    match msg
        .answers()
        .first()
        .and_then(|r| r.data().map(|d| (d, r.ttl())))
    {
        Some((RData::CNAME(c), ttl)) => (c.0.to_ascii(), ttl),
        other => panic!("expected a CNAME, got {other:?} in {msg}"),
    }
}

#[test]
fn seed_example_headroom_flaps_and_content_name_is_stable() {
    let (server, dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let flaps: Vec<(String, u32)> = (0..4)
        .map(|_| cname(&udp(addr, &query("c.dx.claw.ac.", RecordType::A, None))))
        .collect();
    assert_eq!(flaps[0], ("n01.lax.hw.hyvd.net.".to_string(), 5));
    assert_eq!(flaps[1], ("n02.lax.hw.hyvd.net.".to_string(), 5));
    assert_eq!(flaps[2], flaps[0]);
    assert_eq!(flaps[3], flaps[1]);

    let want = format!("{}.", designated_for(CLUSTER_KEY));
    for _ in 0..5 {
        let msg = udp(addr, &query(CONTENT, RecordType::A, None));
        assert_eq!(msg.response_code(), ResponseCode::NoError);
        assert!(msg.authoritative());
        assert_eq!(cname(&msg), (want.clone(), 300));
        // The node's A record follows the CNAME, as in the seed's PoC.
        let a = &msg.answers()[1];
        assert_eq!(a.name().to_ascii(), want);
        assert_eq!(a.ttl(), 3600);
        assert!(matches!(a.data(), Some(RData::A(_))));
    }
    let keys = dir.keys.lock().unwrap().clone();
    // Answers are cached for a few tens of milliseconds, so the directory sees the key at
    // least once and nothing else.
    assert!(!keys.is_empty() && keys.len() <= 5, "{keys:?}");
    assert!(keys.iter().all(|k| k == CLUSTER_KEY), "{keys:?}");
    server.shutdown();
}

#[test]
fn apex_soa_ns_glue_negative_answers_and_refused() {
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let soa = udp(addr, &query("dx.claw.ac.", RecordType::SOA, None));
    assert_eq!(soa.answers()[0].record_type(), RecordType::SOA);
    assert!(soa.authoritative());
    let ns = udp(addr, &query("dx.claw.ac.", RecordType::NS, None));
    assert_eq!(ns.answers().len(), 2);
    let glue: Vec<RecordType> = ns.additionals().iter().map(|r| r.record_type()).collect();
    assert!(
        glue.contains(&RecordType::A) && glue.contains(&RecordType::AAAA),
        "{glue:?}"
    );

    let nx = udp(addr, &query("x.y.dx.claw.ac.", RecordType::A, None));
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert_eq!(nx.name_servers()[0].record_type(), RecordType::SOA);
    assert_eq!(nx.name_servers()[0].ttl(), 60);
    let nodata = udp(addr, &query("dx.claw.ac.", RecordType::TXT, None));
    assert_eq!(nodata.response_code(), ResponseCode::NoError);
    assert!(nodata.answers().is_empty());
    assert_eq!(nodata.name_servers()[0].record_type(), RecordType::SOA);

    let refused = udp(addr, &query("www.example.com.", RecordType::A, None));
    assert_eq!(refused.response_code(), ResponseCode::Refused);
    assert!(!refused.authoritative());
    server.shutdown();
}

#[test]
fn edns_size_truncation_and_tcp_fallback() {
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let plain = udp(addr, &query("big.test.", RecordType::NS, None));
    assert!(plain.truncated());
    assert!(plain.answers().is_empty());
    let small = udp(addr, &query("big.test.", RecordType::NS, Some(1232)));
    assert!(small.truncated());
    assert!(small.extensions().is_some(), "OPT in the response");
    let large_bytes = udp_raw(
        addr,
        &query("big.test.", RecordType::NS, Some(4096)),
        Duration::from_secs(3),
    )
    .unwrap();
    // Asking for 4096 gets at most the 1232 bytes we advertise: truncated.
    assert!(large_bytes.len() <= 1232, "{}", large_bytes.len());
    let large = Message::from_vec(&large_bytes).unwrap();
    assert!(large.truncated());
    assert!(large.answers().is_empty());
    let over_tcp = tcp(addr, &query("big.test.", RecordType::NS, None));
    assert!(!over_tcp.truncated());
    assert_eq!(over_tcp.answers().len(), 60);
    server.shutdown();
}

#[test]
fn mixed_case_question_is_echoed() {
    let (server, dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let name = "AA22FAD1ED4A441D54FA664F53D5B0EE.dX.cLaW.Ac.";
    let msg = udp(addr, &query(name, RecordType::A, None));
    assert_eq!(msg.queries()[0].name().to_ascii(), name);
    assert_eq!(msg.answers()[0].name().to_ascii(), name);
    assert_eq!(dir.keys.lock().unwrap().as_slice(), [CLUSTER_KEY]);
    server.shutdown();
}

#[test]
fn malformed_packets_get_formerr_or_nothing_and_service_continues() {
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let good = query("c.dx.claw.ac.", RecordType::A, None);
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut response = good.clone();
    response[2] |= 0x80;
    let mut huge_counts = good.clone();
    huge_counts[4..12].copy_from_slice(&[0xff; 8]);
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        good[..11].to_vec(),
        good[..good.len() - 3].to_vec(),
        looped,
        response,
        huge_counts,
        vec![0xff; 600],
    ];
    for packet in &bad {
        if let Some(out) = udp_raw(addr, packet, Duration::from_millis(300)) {
            assert_eq!(out[3] & 0x0f, 1, "FORMERR for {packet:?}");
            assert_eq!(&out[..2], &packet[..2]);
        }
    }
    // Over TCP too, on one connection, then a good query on the same connection.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for packet in &bad[3..5] {
        let out = tcp_exchange(&mut stream, packet);
        assert_eq!(out[3] & 0x0f, 1);
    }
    let msg = Message::from_vec(&tcp_exchange(&mut stream, &good)).unwrap();
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    let msg = udp(addr, &good);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    server.shutdown();
}

fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn tcp_connections_are_bounded_and_idle_ones_closed() {
    let (server, _dir) = start(2, 400);
    let addr = server.local_addrs()[0];
    let mut first = TcpStream::connect(addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut second = TcpStream::connect(addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // Both are served (and therefore counted) before the third arrives; the third is closed at
    // once as both are busy reading a query.
    let good = query("c.dx.claw.ac.", RecordType::A, None);
    tcp_exchange(&mut first, &good);
    tcp_exchange(&mut second, &good);
    first.write_all(&[0]).unwrap();
    second.write_all(&[0]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut third = connect_from([127, 0, 0, 2], addr);
    assert!(
        closed_within(&mut third, Duration::from_secs(2)),
        "over the limit"
    );
    assert_eq!(counters(&server).tcp_refused_full, 1);
    // The message deadline (500 ms) closes both; then idle connections time out.
    assert!(closed_within(&mut first, Duration::from_secs(3)));
    assert!(closed_within(&mut second, Duration::from_secs(3)));
    let mut first = TcpStream::connect(addr).unwrap();
    tcp_exchange(&mut first, &good);
    let started = Instant::now();
    let mut byte = [0u8; 1];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        first.read(&mut byte).unwrap_or(0),
        0,
        "idle connection closed"
    );
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(200) && idle < Duration::from_secs(4),
        "{idle:?}"
    );
    // With the idle ones gone, new connections are served again.
    let msg = tcp(addr, &good);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    server.shutdown();
}

/// A TCP connection from `source` (a loopback address other than 127.0.0.1 is another client).
fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback source");
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream
}

#[test]
fn one_source_cannot_take_every_tcp_connection() {
    let mut cfg = config(100, 10_000);
    cfg.tcp_connections_per_source_max = 10;
    let (server, _dir) = start_with(cfg);
    let addr = server.local_addrs()[0];
    // 10x the per-source limit, idle, from 127.0.0.1: as many as the global limit.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let c = wait_counters(&server, |c| c.tcp_refused_per_source >= 90);
    assert_eq!(c.tcp_refused_per_source, 90, "{c:?}");
    // The 90 over the limit are closed; 10 stay open.
    let mut closed = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(200)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 90);
    // Another client is served without evicting anyone.
    let good = query("c.dx.claw.ac.", RecordType::A, None);
    let mut other = connect_from([127, 0, 0, 2], addr);
    let msg = Message::from_vec(&tcp_exchange(&mut other, &good)).unwrap();
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert_eq!(msg.id(), 0xbeef);
    assert_eq!(counters(&server).tcp_idle_evicted, 0);
    // One more from the same source is closed at accept.
    let mut more = TcpStream::connect(addr).unwrap();
    assert!(closed_within(&mut more, Duration::from_secs(2)));
    assert_eq!(counters(&server).tcp_refused_per_source, 91);
    server.shutdown();
}

#[test]
fn full_table_evicts_the_connection_idle_the_longest() {
    let mut cfg = config(4, 10_000);
    cfg.tcp_message_ms = 3000;
    let (server, _dir) = start_with(cfg);
    let addr = server.local_addrs()[0];
    let good = query("c.dx.claw.ac.", RecordType::A, None);
    // Four idle connections; the first answered first is idle the longest.
    let mut open: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            tcp_exchange(&mut s, &good);
            s
        })
        .collect();
    // A new client is served; the oldest idle connection is closed for it.
    let mut newcomer = connect_from([127, 0, 0, 3], addr);
    let msg = Message::from_vec(&tcp_exchange(&mut newcomer, &good)).unwrap();
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(closed_within(&mut open[0], Duration::from_secs(2)));
    assert_eq!(counters(&server).tcp_idle_evicted, 1);
    for s in &mut open[1..] {
        let msg = Message::from_vec(&tcp_exchange(s, &good)).unwrap();
        assert_eq!(msg.response_code(), ResponseCode::NoError);
    }
    // A connection in the middle of a query is never evicted: with every one busy, a new
    // client is closed instead.
    for s in open[1..].iter_mut().chain([&mut newcomer]) {
        s.write_all(&[0]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut refused = connect_from([127, 0, 0, 4], addr);
    assert!(closed_within(&mut refused, Duration::from_secs(2)));
    let c = counters(&server);
    assert_eq!((c.tcp_idle_evicted, c.tcp_refused_full), (1, 1), "{c:?}");
    // The busy ones finish their queries.
    for s in open[1..].iter_mut().chain([&mut newcomer]) {
        let mut framed = good.clone();
        framed.insert(0, good.len() as u8);
        s.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut out).unwrap();
        assert_eq!(Message::from_vec(&out).unwrap().id(), 0xbeef);
    }
    server.shutdown();
}

#[test]
fn dribbling_tcp_client_is_closed_after_the_message_deadline() {
    // Idle 10 s, message deadline 500 ms (the default).
    let (server, _dir) = start(16, 10_000);
    let addr = server.local_addrs()[0];
    // One byte of the length prefix, then nothing.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.write_all(&[0]).unwrap();
    // The prefix, then one byte of the query every 200 ms.
    let mut dribbler = TcpStream::connect(addr).unwrap();
    dribbler.write_all(&[0, 200]).unwrap();
    let mut writer = dribbler.try_clone().unwrap();
    let dribbling = std::thread::spawn(move || {
        for _ in 0..30 {
            if writer.write_all(&[0x42]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(3)), "silent");
    let silent_after = started.elapsed();
    assert!(
        closed_within(&mut dribbler, Duration::from_secs(3)),
        "dribbler"
    );
    let dribbler_after = started.elapsed();
    assert!(
        silent_after >= Duration::from_millis(400) && silent_after < Duration::from_secs(2),
        "{silent_after:?}"
    );
    assert!(
        dribbler_after < Duration::from_secs(2),
        "{dribbler_after:?}"
    );
    dribbling.join().unwrap();
    let c = wait_counters(&server, |c| c.tcp_message_timeouts >= 2);
    assert_eq!(c.tcp_message_timeouts, 2, "{c:?}");
    // A whole query in one go is answered.
    let msg = tcp(addr, &query("c.dx.claw.ac.", RecordType::A, None));
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    server.shutdown();
}

#[test]
fn udp_answer_never_exceeds_the_advertised_1232_bytes() {
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    // The whole AAAA RRset of many.big.test (100 addresses) needs about 2.9 kB.
    let full = tcp(addr, &query("many.big.test.", RecordType::AAAA, None));
    assert_eq!(full.answers().len(), 100);
    assert!(full.to_vec().unwrap().len() > 1232);
    for payload in [4096, 1232, 65535] {
        let out = udp_raw(
            addr,
            &query("many.big.test.", RecordType::AAAA, Some(payload)),
            Duration::from_secs(3),
        )
        .expect("a UDP answer");
        assert!(out.len() <= 1232, "EDNS {payload}: {} bytes", out.len());
        let msg = Message::from_vec(&out).unwrap();
        assert!(msg.truncated(), "TC for EDNS {payload}");
        assert_eq!(
            msg.extensions().as_ref().map(|e| e.max_payload()),
            Some(1232)
        );
    }
    let out = udp_raw(
        addr,
        &query("many.big.test.", RecordType::AAAA, None),
        Duration::from_secs(3),
    )
    .unwrap();
    assert!(out.len() <= 512);
    assert!(Message::from_vec(&out).unwrap().truncated());
    // What fits is not truncated.
    let small = udp(addr, &query("dual.big.test.", RecordType::AAAA, Some(4096)));
    assert!(!small.truncated());
    assert_eq!(small.answers().len(), 1);
    assert!(counters(&server).udp_truncated >= 4);
    server.shutdown();
}

/// The answer's RRsets as (owner, type).
fn rrsets(msg: &Message) -> Vec<(String, RecordType)> {
    let mut sets: Vec<(String, RecordType)> = msg
        .answers()
        .iter()
        .map(|r| (r.name().to_ascii().to_ascii_lowercase(), r.record_type()))
        .collect();
    sets.dedup();
    sets
}

#[test]
fn any_answers_carry_one_rrset() {
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let dual = udp(addr, &query("dual.big.test.", RecordType::ANY, Some(1232)));
    assert_eq!(dual.response_code(), ResponseCode::NoError);
    assert_eq!(
        rrsets(&dual),
        [("dual.big.test.".to_string(), RecordType::A)]
    );
    assert_eq!(dual.answers().len(), 2);
    let many = tcp(addr, &query("many.big.test.", RecordType::ANY, None));
    assert_eq!(
        rrsets(&many),
        [("many.big.test.".to_string(), RecordType::AAAA)]
    );
    assert_eq!(many.answers().len(), 100);
    let apex = udp(addr, &query("dx.claw.ac.", RecordType::ANY, None));
    assert_eq!(
        rrsets(&apex),
        [("dx.claw.ac.".to_string(), RecordType::SOA)]
    );
    let content = udp(addr, &query(CONTENT, RecordType::ANY, None));
    assert_eq!(rrsets(&content), [(CONTENT.to_string(), RecordType::CNAME)]);
    server.shutdown();
}

/// A query whose OPT record's RDATA is `rdata` (the OPT record ends the message).
fn query_with_opt_rdata(rdata: &[u8]) -> Vec<u8> {
    let mut q = query("c.dx.claw.ac.", RecordType::A, Some(1232));
    let at = q.len() - 2;
    assert_eq!(&q[at..], &[0, 0], "empty OPT RDATA at the end");
    q.truncate(at);
    q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    q.extend_from_slice(rdata);
    q
}

#[test]
fn malformed_edns_option_gets_formerr() {
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let malformed: [&[u8]; 3] = [
        // A 2-byte option (a code and no length).
        &[0, 10],
        // A client subnet with a 2-byte payload (it needs at least 4).
        &[0, 8, 0, 2, 0, 1],
        // A client subnet /24 with 4 address bytes instead of 3.
        &[0, 8, 0, 8, 0, 1, 24, 0, 192, 0, 2, 1],
    ];
    for rdata in malformed {
        let q = query_with_opt_rdata(rdata);
        let out = udp_raw(addr, &q, Duration::from_secs(3)).expect("a UDP answer");
        assert_eq!(out[3] & 0x0f, 1, "FORMERR over UDP for {rdata:?}");
        assert_eq!(&out[..2], &q[..2]);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let out = tcp_exchange(&mut stream, &q);
        assert_eq!(out[3] & 0x0f, 1, "FORMERR over TCP for {rdata:?}");
    }
    assert_eq!(counters(&server).formerr, 6);
    // A well-formed option is fine.
    let cookie = query_with_opt_rdata(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(udp(addr, &cookie).response_code(), ResponseCode::NoError);
    server.shutdown();
}

#[test]
fn bind_errors_are_returned_by_spawn() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = DnsConfig {
        listen: vec![taken.local_addr().unwrap()],
        ..config(4, 1000)
    };
    let err = spawn(cfg, Arc::new(TestDirectory::default()));
    assert!(matches!(err, Err(arrow_dns::DnsError::Bind { .. })));
    let cfg = DnsConfig {
        core: Some(usize::MAX),
        ..config(4, 1000)
    };
    let err = spawn(cfg, Arc::new(TestDirectory::default()));
    assert!(matches!(err, Err(arrow_dns::DnsError::Affinity { .. })));
    // A per-source limit above the global one is a config error naming the key.
    let cfg = DnsConfig {
        tcp_connections_per_source_max: 5,
        ..config(4, 1000)
    };
    match spawn(cfg, Arc::new(TestDirectory::default())) {
        Err(e @ arrow_dns::DnsError::Server { .. }) => {
            assert!(
                e.to_string().contains("tcp_connections_per_source_max"),
                "{e}"
            )
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a per-source limit above tcp_connections_max was accepted"),
    }
}

fn dig(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn dig_sees_the_seed_example() {
    assert!(
        Command::new("dig").arg("-v").output().is_ok(),
        "dig is required (scripts/setup.sh installs bind9-dnsutils)"
    );
    let (server, _dir) = start(16, 2000);
    let addr = server.local_addrs()[0];
    let want = designated_for(CLUSTER_KEY);
    for _ in 0..3 {
        let out = dig(addr, &["+norec", CONTENT, "A"]).unwrap();
        let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("status: NOERROR"), "{out}");
        assert!(words.contains("flags: qr aa;"), "authoritative: {out}");
        assert!(
            words.contains(&format!("{CONTENT} 300 IN CNAME {want}.")),
            "{out}"
        );
    }
    let first = dig(addr, &["+short", "c.dx.claw.ac"]).unwrap();
    let second = dig(addr, &["+short", "c.dx.claw.ac"]).unwrap();
    assert_ne!(
        first.lines().next(),
        second.lines().next(),
        "{first} / {second}"
    );
    let nx = dig(addr, &["a.b.dx.claw.ac"]).unwrap();
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("SOA"),
        "{nx}"
    );
    let refused = dig(addr, &["example.com"]).unwrap();
    assert!(refused.contains("status: REFUSED"), "{refused}");
    // dig falls back to TCP on TC=1 and shows the whole NS RRset.
    let big = dig(addr, &["+bufsize=512", "big.test", "NS"]).unwrap();
    assert!(big.contains("ANSWER: 60"), "{big}");
    let big_tcp = dig(addr, &["+tcp", "big.test", "NS"]).unwrap();
    assert!(big_tcp.contains("ANSWER: 60"), "{big_tcp}");
    server.shutdown();
}
