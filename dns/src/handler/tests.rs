use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::{demo_zone, ZoneConfig};

/// Designated node: first hex digit of the key's md5 part, even → n02, odd → n01.
/// Headroom: alternates n01, n02. Records every cluster key asked for.
struct FakeDirectory {
    keys: Mutex<Vec<String>>,
    turn: AtomicUsize,
    designated: Option<Answer>,
}

impl FakeDirectory {
    fn new() -> FakeDirectory {
        FakeDirectory {
            keys: Mutex::new(Vec::new()),
            turn: AtomicUsize::new(0),
            designated: None,
        }
    }
}

impl Directory for FakeDirectory {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        self.keys.lock().unwrap().push(cluster_key.to_string());
        if let Some(fixed) = &self.designated {
            return Some(fixed.clone());
        }
        Some(Answer::Node("n02.lax.hw.hyvd.net".to_string()))
    }
    fn by_headroom(&self) -> Option<Answer> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(Answer::Node(format!("n0{}.lax.hw.hyvd.net", 1 + turn % 2)))
    }
}

fn claw_zone() -> ZoneConfig {
    let mut cfg = demo_zone();
    cfg.name = "dx.claw.ac".into();
    cfg.domain = "claw.ac".into();
    cfg.ns = vec!["ns1.dx.claw.ac".into(), "cx-glue.claw.ac".into()];
    cfg.glue = BTreeMap::new();
    cfg.glue
        .insert("ns1.dx.claw.ac".into(), vec![IpAddr::from([192, 0, 2, 1])]);
    cfg.glue.insert(
        "cx-glue.claw.ac".into(),
        vec![IpAddr::from([192, 0, 2, 2]), "2001:db8::2".parse().unwrap()],
    );
    cfg.nodes.insert(
        "n01.lax.hw.hyvd.net".into(),
        vec![IpAddr::from([3, 3, 3, 1])],
    );
    cfg.nodes.insert(
        "n02.lax.hw.hyvd.net".into(),
        vec![IpAddr::from([3, 3, 3, 2])],
    );
    cfg.overflow_cname = Some("claw.cdn.example.net".into());
    cfg
}

fn zones() -> Zones {
    Zones::new(&[claw_zone()]).expect("valid zone")
}

fn query(name: &str, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut msg = Message::new();
    msg.set_id(0x1234)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        msg.set_edns(edns);
    }
    msg.to_vec().unwrap()
}

fn ask(zones: &Zones, dir: &FakeDirectory, bytes: &[u8], transport: Transport) -> Message {
    let out = handle(zones, dir, bytes, transport).expect("an answer");
    Message::from_vec(&out).expect("the response parses")
}

fn cname_target(msg: &Message) -> (String, u32) {
    let record = &msg.answers()[0];
    match record.data() {
        Some(RData::CNAME(c)) => (c.0.to_string(), record.ttl()),
        other => panic!("not a CNAME: {other:?}"),
    }
}

#[test]
fn content_name_is_cname_to_designated_node_with_its_address() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let q = query(
        "aa22fad1ed4a441d54fa664f53d5b0ee.dx.claw.ac.",
        RecordType::A,
        None,
    );
    for _ in 0..3 {
        let msg = ask(&zones, &dir, &q, Transport::UDP);
        assert_eq!(msg.response_code(), ResponseCode::NoError);
        assert!(msg.authoritative());
        assert_eq!(msg.id(), 0x1234);
        assert!(msg.recursion_desired());
        assert_eq!(cname_target(&msg), ("n02.lax.hw.hyvd.net.".into(), 300));
        let a = &msg.answers()[1];
        assert_eq!(a.name().to_string(), "n02.lax.hw.hyvd.net.");
        assert_eq!(a.ttl(), 3600);
        assert_eq!(
            a.data(),
            Some(&RData::A(std::net::Ipv4Addr::new(3, 3, 3, 2).into()))
        );
    }
    assert_eq!(
        dir.keys.lock().unwrap().as_slice(),
        ["claw.acaa22fad1ed4a441d54fa664f53d5b0ee"; 3]
    );
}

#[test]
fn other_name_alternates_by_headroom_with_short_ttl() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let q = query("c.dx.claw.ac.", RecordType::A, None);
    let first = cname_target(&ask(&zones, &dir, &q, Transport::UDP));
    let second = cname_target(&ask(&zones, &dir, &q, Transport::UDP));
    assert_eq!(first, ("n01.lax.hw.hyvd.net.".into(), 5));
    assert_eq!(second, ("n02.lax.hw.hyvd.net.".into(), 5));
    assert!(dir.keys.lock().unwrap().is_empty());
}

#[test]
fn overflow_is_cname_to_cdn_and_no_overflow_host_is_servfail() {
    let zones = zones();
    let mut dir = FakeDirectory::new();
    dir.designated = Some(Answer::Overflow);
    let q = query(
        "aa22fad1ed4a441d54fa664f53d5b0ee.dx.claw.ac.",
        RecordType::A,
        None,
    );
    let msg = ask(&zones, &dir, &q, Transport::UDP);
    assert_eq!(cname_target(&msg), ("claw.cdn.example.net.".into(), 5));
    assert_eq!(msg.answers().len(), 1);

    let mut cfg = claw_zone();
    cfg.overflow_cname = None;
    let zones = Zones::new(&[cfg]).unwrap();
    let msg = ask(&zones, &dir, &q, Transport::UDP);
    assert_eq!(msg.response_code(), ResponseCode::ServFail);
}

#[test]
fn apex_soa_and_ns_with_glue() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let msg = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::SOA, None),
        Transport::UDP,
    );
    assert_eq!(msg.answers().len(), 1);
    assert_eq!(msg.answers()[0].record_type(), RecordType::SOA);
    let msg = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, None),
        Transport::UDP,
    );
    assert_eq!(msg.answers().len(), 2);
    let glue: Vec<String> = msg
        .additionals()
        .iter()
        .map(|r| format!("{} {}", r.name(), r.data().unwrap()))
        .collect();
    assert!(
        glue.contains(&"ns1.dx.claw.ac. 192.0.2.1".to_string()),
        "{glue:?}"
    );
    assert!(
        glue.contains(&"cx-glue.claw.ac. 192.0.2.2".to_string()),
        "{glue:?}"
    );
    assert!(
        glue.contains(&"cx-glue.claw.ac. 2001:db8::2".to_string()),
        "{glue:?}"
    );
    // In-zone glue names answer A.
    let msg = ask(
        &zones,
        &dir,
        &query("ns1.dx.claw.ac.", RecordType::A, None),
        Transport::UDP,
    );
    assert_eq!(
        msg.answers()[0].data(),
        Some(&RData::A(std::net::Ipv4Addr::new(192, 0, 2, 1).into()))
    );
}

#[test]
fn nxdomain_and_nodata_carry_soa() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let msg = ask(
        &zones,
        &dir,
        &query("a.b.dx.claw.ac.", RecordType::A, None),
        Transport::UDP,
    );
    assert_eq!(msg.response_code(), ResponseCode::NXDomain);
    assert!(msg.answers().is_empty());
    assert_eq!(msg.name_servers()[0].record_type(), RecordType::SOA);
    assert_eq!(msg.name_servers()[0].ttl(), 60);
    let msg = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::MX, None),
        Transport::UDP,
    );
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(msg.answers().is_empty());
    assert_eq!(msg.name_servers()[0].record_type(), RecordType::SOA);
    let msg = ask(
        &zones,
        &dir,
        &query("ns1.dx.claw.ac.", RecordType::AAAA, None),
        Transport::UDP,
    );
    assert!(msg.answers().is_empty());
    assert_eq!(msg.name_servers()[0].record_type(), RecordType::SOA);
}

#[test]
fn outside_zones_is_refused_and_not_authoritative() {
    let zones = zones();
    let dir = FakeDirectory::new();
    for name in ["claw.ac.", "example.com.", ".", "xdx.claw.ac."] {
        let msg = ask(
            &zones,
            &dir,
            &query(name, RecordType::A, None),
            Transport::UDP,
        );
        assert_eq!(msg.response_code(), ResponseCode::Refused, "{name}");
        assert!(!msg.authoritative());
        assert_eq!(msg.queries().len(), 1);
    }
}

#[test]
fn mixed_case_is_matched_and_echoed() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let name = "AA22FAD1ed4a441d54fa664f53d5b0ee.Dx.ClAw.AC.";
    let out = handle(
        &zones,
        &dir,
        &query(name, RecordType::A, None),
        Transport::UDP,
    )
    .unwrap();
    let msg = Message::from_vec(&out).unwrap();
    assert_eq!(msg.queries()[0].name().to_ascii(), name);
    assert_eq!(msg.answers()[0].name().to_ascii(), name);
    assert_eq!(
        dir.keys.lock().unwrap().as_slice(),
        ["claw.acaa22fad1ed4a441d54fa664f53d5b0ee"]
    );
    // The raw bytes carry the question's case (hickory compares names case-insensitively).
    assert!(out.windows(2).any(|w| w == b"Dx"));
}

#[test]
fn any_answers_one_rrset() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let msg = ask(
        &zones,
        &dir,
        &query("c.dx.claw.ac.", RecordType::ANY, None),
        Transport::UDP,
    );
    assert_eq!(msg.answers().len(), 1);
    assert_eq!(msg.answers()[0].record_type(), RecordType::CNAME);
    let msg = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::ANY, None),
        Transport::UDP,
    );
    assert_eq!(msg.answers().len(), 1);
    assert_eq!(msg.answers()[0].record_type(), RecordType::SOA);
}

#[test]
fn any_at_a_host_answers_one_address_rrset() {
    let mut cfg = claw_zone();
    cfg.glue.insert(
        "dual.dx.claw.ac".into(),
        vec![
            IpAddr::from([192, 0, 2, 10]),
            "2001:db8::10".parse().unwrap(),
            IpAddr::from([192, 0, 2, 11]),
        ],
    );
    cfg.glue.insert(
        "six.dx.claw.ac".into(),
        vec![
            "2001:db8::6".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ],
    );
    let zones = Zones::new(&[cfg]).unwrap();
    let dir = FakeDirectory::new();
    let types = |msg: &Message| -> Vec<RecordType> {
        msg.answers().iter().map(|r| r.record_type()).collect()
    };
    let dual = ask(
        &zones,
        &dir,
        &query("dual.dx.claw.ac.", RecordType::ANY, None),
        Transport::UDP,
    );
    assert_eq!(types(&dual), [RecordType::A, RecordType::A]);
    let six = ask(
        &zones,
        &dir,
        &query("six.dx.claw.ac.", RecordType::ANY, None),
        Transport::UDP,
    );
    assert_eq!(types(&six), [RecordType::AAAA, RecordType::AAAA]);
    // A and AAAA are still answered in full.
    let aaaa = ask(
        &zones,
        &dir,
        &query("dual.dx.claw.ac.", RecordType::AAAA, None),
        Transport::UDP,
    );
    assert_eq!(types(&aaaa), [RecordType::AAAA]);
}

/// Counts tracing events at DEBUG or more severe emitted on this thread (hickory traces every
/// record it decodes).
struct CountEvents(std::sync::Arc<AtomicUsize>);

impl tracing::Subscriber for CountEvents {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::DEBUG
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if self.enabled(event.metadata()) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A query with EDNS whose OPT RDATA is `rdata` (the OPT record is the message's last record,
/// ending in its RDLENGTH when empty).
fn query_with_opt_rdata(rdata: &[u8]) -> Vec<u8> {
    let mut q = query("c.dx.claw.ac.", RecordType::A, Some(1232));
    let at = q.len() - 2;
    assert_eq!(&q[at..], &[0, 0], "empty OPT RDATA at the end");
    q.truncate(at);
    q.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
    q.extend_from_slice(rdata);
    q
}

#[test]
fn malformed_edns_options_are_formerr_without_a_log_line() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let malformed: [&[u8]; 5] = [
        // An option code with no length (2-byte RDATA).
        &[0, 10],
        // A cookie announcing 8 bytes with 2 present: the length disagrees with the payload.
        &[0, 10, 0, 8, 1, 2],
        // A client subnet (code 8) with a 2-byte payload: it needs at least 4.
        &[0, 8, 0, 2, 0, 1],
        // A client subnet /24 with 4 address bytes (RFC 7871: exactly 3).
        &[0, 8, 0, 8, 0, 1, 24, 0, 192, 0, 2, 1],
        // A good cookie then a cut option.
        &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0],
    ];
    let events = std::sync::Arc::new(AtomicUsize::new(0));
    let subscriber = CountEvents(events.clone());
    tracing::subscriber::with_default(subscriber, || {
        for rdata in malformed {
            for _ in 0..50 {
                let out = handle(&zones, &dir, &query_with_opt_rdata(rdata), Transport::UDP)
                    .expect("an answer");
                assert_eq!(rcode_of(&out), 1, "FORMERR for {rdata:?}");
                assert_eq!(&out[..2], &[0x12, 0x34]);
            }
        }
        // Well-formed options are accepted (and not echoed).
        let good: [&[u8]; 3] = [
            &[],
            &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2, 0, 10, 0, 0],
        ];
        for rdata in good {
            let msg = ask(&zones, &dir, &query_with_opt_rdata(rdata), Transport::UDP);
            assert_eq!(msg.response_code(), ResponseCode::NoError, "{rdata:?}");
        }
    });
    assert_eq!(events.load(Ordering::Relaxed), 0, "the handler logged");
}

fn big_zone() -> Zones {
    let mut cfg = claw_zone();
    cfg.ns = (0..40)
        .map(|i| format!("name-server-number-{i:02}.provider.example.net"))
        .collect();
    Zones::new(&[cfg]).unwrap()
}

#[test]
fn udp_size_is_512_without_edns_and_requested_with_edns() {
    let zones = big_zone();
    let dir = FakeDirectory::new();
    let plain = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, None),
        Transport::UDP,
    );
    assert!(plain.truncated());
    assert!(plain.answers().is_empty());
    let small = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, Some(1232)),
        Transport::UDP,
    );
    assert!(small.truncated());
    assert_eq!(
        small.extensions().as_ref().map(|e| e.max_payload()),
        Some(EDNS_ADVERTISED_BYTES)
    );
    // Asking for 4096 gets at most the 1232 we advertise: this answer does not fit, so TC.
    for transport in [
        Transport::UDP,
        Transport::Udp {
            payload_max_bytes: 4096,
        },
    ] {
        let out = handle(
            &zones,
            &dir,
            &query("dx.claw.ac.", RecordType::NS, Some(4096)),
            transport,
        )
        .unwrap();
        assert!(out.len() <= 1232, "{}", out.len());
        let cut = Message::from_vec(&out).unwrap();
        assert!(cut.truncated());
        assert!(cut.answers().is_empty());
        assert!(cut.extensions().as_ref().is_some());
    }
    // An answer between 512 and 1232 bytes fits with EDNS 4096 (and 1232), not without EDNS.
    let mut cfg = claw_zone();
    cfg.ns = (0..20)
        .map(|i| format!("name-server-number-{i:02}.provider.example.net"))
        .collect();
    let medium = Zones::new(&[cfg]).unwrap();
    let out = handle(
        &medium,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, Some(4096)),
        Transport::UDP,
    )
    .unwrap();
    assert!(out.len() > 512 && out.len() <= 1232, "{}", out.len());
    let full = Message::from_vec(&out).unwrap();
    assert!(!full.truncated());
    assert_eq!(full.answers().len(), 20);
    assert!(ask(
        &medium,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, None),
        Transport::UDP
    )
    .truncated());
    // A requestor asking for less than 512 still gets 512; TCP gets everything.
    let tiny = handle(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, Some(100)),
        Transport::UDP,
    )
    .unwrap();
    assert!(tiny.len() <= 512);
    let tcp = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, None),
        Transport::Tcp,
    );
    assert_eq!(tcp.answers().len(), 40);
    assert!(!tcp.truncated());
}

#[test]
fn additional_section_is_dropped_before_truncating() {
    let mut cfg = claw_zone();
    cfg.ns = (0..8).map(|i| format!("ns{i}.dx.claw.ac")).collect();
    for i in 0..8 {
        cfg.glue.insert(
            format!("ns{i}.dx.claw.ac"),
            (0..4)
                .map(|j| IpAddr::from([192, 0, 2, 8 * i + j]))
                .collect(),
        );
    }
    let zones = Zones::new(&[cfg]).unwrap();
    let dir = FakeDirectory::new();
    let msg = ask(
        &zones,
        &dir,
        &query("dx.claw.ac.", RecordType::NS, None),
        Transport::UDP,
    );
    assert!(!msg.truncated());
    assert_eq!(msg.answers().len(), 8);
    assert!(msg.additionals().len() < 32);
}

#[test]
fn edns_version_1_is_badvers() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let mut msg = Message::from_vec(&query("c.dx.claw.ac.", RecordType::A, Some(1232))).unwrap();
    msg.extensions_mut()
        .get_or_insert_with(Edns::new)
        .set_version(1);
    let out = handle(&zones, &dir, &msg.to_vec().unwrap(), Transport::UDP).unwrap();
    let resp = Message::from_vec(&out).unwrap();
    // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
    assert_eq!(
        u16::from(resp.response_code()),
        u16::from(ResponseCode::BADVERS)
    );
    assert_eq!(resp.extensions().as_ref().map(|e| e.version()), Some(0));
}

#[test]
fn responses_and_short_packets_are_dropped() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let mut q = query("c.dx.claw.ac.", RecordType::A, None);
    assert!(handle(&zones, &dir, &q[..11], Transport::UDP).is_none());
    assert!(handle(&zones, &dir, &[], Transport::UDP).is_none());
    q[2] |= QR_BIT;
    assert!(handle(&zones, &dir, &q, Transport::UDP).is_none());
    // A response with an unknown opcode is dropped too.
    q[2] = QR_BIT | (1 << 3);
    assert!(handle(&zones, &dir, &q, Transport::UDP).is_none());
}

#[test]
fn other_opcodes_are_notimp_with_opcode_echoed() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let mut q = query("c.dx.claw.ac.", RecordType::A, None);
    q[2] = (q[2] & !OPCODE_BITS) | (4 << 3); // NOTIFY
    let resp = Message::from_vec(&handle(&zones, &dir, &q, Transport::UDP).unwrap()).unwrap();
    assert_eq!(resp.response_code(), ResponseCode::NotImp);
    assert_eq!(resp.op_code(), OpCode::Notify);
    assert_eq!(resp.message_type(), MessageType::Response);
    q[2] = (q[2] & !OPCODE_BITS) | (1 << 3); // IQUERY, unknown to hickory
    let out = handle(&zones, &dir, &q, Transport::UDP).unwrap();
    assert_eq!(out.len(), HEADER_BYTES);
    assert_eq!(&out[..2], &[0x12, 0x34]);
    assert_eq!(out[2] & OPCODE_BITS, 1 << 3);
    assert_eq!(out[2] & QR_BIT, QR_BIT);
    assert_eq!(out[3] & 0x0f, 4); // NOTIMP
}

fn rcode_of(out: &[u8]) -> u8 {
    out[3] & 0x0f
}

#[test]
fn malformed_queries_are_formerr() {
    let zones = zones();
    let dir = FakeDirectory::new();
    let good = query("c.dx.claw.ac.", RecordType::A, None);
    let formerr = 1;
    // Question cut short.
    let out = handle(&zones, &dir, &good[..good.len() - 2], Transport::UDP).unwrap();
    assert_eq!(rcode_of(&out), formerr);
    assert_eq!(&out[..2], &good[..2]);
    // Two questions announced.
    let mut two = good.clone();
    two[5] = 2;
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &two, Transport::UDP).unwrap()),
        formerr
    );
    // Huge counts.
    let mut huge = good.clone();
    huge[6..12].copy_from_slice(&[0xff; 6]);
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &huge, Transport::UDP).unwrap()),
        formerr
    );
    // No question.
    let mut none = good.clone();
    none[5] = 0;
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &none, Transport::UDP).unwrap()),
        formerr
    );
    // A compression pointer to itself.
    let mut looped = good[..HEADER_BYTES].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &looped, Transport::UDP).unwrap()),
        formerr
    );
    // A label longer than the packet.
    let mut bad_label = good[..HEADER_BYTES].to_vec();
    bad_label.extend_from_slice(&[60, b'a', b'b', 0, 0, 1, 0, 1]);
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &bad_label, Transport::UDP).unwrap()),
        formerr
    );
    // Unassigned class; CH is refused.
    let mut msg = Message::from_vec(&good).unwrap();
    msg.queries_mut()[0].set_query_class(DNSClass::Unknown(0x4242));
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &msg.to_vec().unwrap(), Transport::UDP).unwrap()),
        formerr
    );
    msg.queries_mut()[0].set_query_class(DNSClass::CH);
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &msg.to_vec().unwrap(), Transport::UDP).unwrap()),
        5
    );
    // QTYPE OPT.
    let opt = query("c.dx.claw.ac.", RecordType::OPT, None);
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &opt, Transport::UDP).unwrap()),
        formerr
    );
    // AXFR is refused.
    let axfr = query("dx.claw.ac.", RecordType::AXFR, None);
    assert_eq!(
        rcode_of(&handle(&zones, &dir, &axfr, Transport::Tcp).unwrap()),
        5
    );
}

/// Valid queries of every shape, for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let names = [
        "aa22fad1ed4a441d54fa664f53d5b0ee.dx.claw.ac.",
        "c.dx.claw.ac.",
        "dx.claw.ac.",
        "ns1.dx.claw.ac.",
        "a.b.dx.claw.ac.",
        "example.com.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::NS,
        RecordType::SOA,
        RecordType::ANY,
    ];
    let mut out = Vec::new();
    for name in names {
        for qtype in types {
            out.push(query(name, qtype, None));
            out.push(query(name, qtype, Some(1232)));
        }
    }
    out
}

fn throw_packets(count: usize, seed: u64) {
    let zones = zones();
    let mut dir = FakeDirectory::new();
    dir.keys = Mutex::new(Vec::with_capacity(16));
    let seeds = seeds();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut answered = 0usize;
    for i in 0..count {
        let packet: Vec<u8> = if i % 4 == 0 {
            let len = rng.gen_range(0..600);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut p = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..8) {
                match rng.gen_range(0..5) {
                    0 if !p.is_empty() => {
                        let at = rng.gen_range(0..p.len());
                        p[at] = rng.gen();
                    }
                    1 if !p.is_empty() => {
                        let at = rng.gen_range(0..p.len());
                        p[at] ^= 1 << rng.gen_range(0..8);
                    }
                    2 => {
                        let at = rng.gen_range(0..=p.len());
                        p.truncate(at);
                    }
                    3 => {
                        let at = rng.gen_range(0..=p.len());
                        p.insert(at, [0xc0, 0x0c, 0x00, 63, rng.gen()][rng.gen_range(0..5)]);
                    }
                    _ => p.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>())),
                }
            }
            p
        };
        let transport = if i % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::UDP
        };
        if let Some(out) = handle(&zones, &dir, &packet, transport) {
            answered += 1;
            assert!(out.len() >= HEADER_BYTES);
            assert_eq!(&out[..2], &packet[..2], "the ID is echoed");
            assert_eq!(out[2] & QR_BIT, QR_BIT, "answers are responses");
            if transport != Transport::Tcp {
                assert!(out.len() <= usize::from(UDP_PAYLOAD_CAP_BYTES));
            }
        }
        dir.keys.lock().unwrap().clear();
    }
    assert!(answered > count / 4, "answered {answered} of {count}");
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let count = std::env::var("ARROW_DNS_FUZZ_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    throw_packets(count, 0x5eed_d115);
}
