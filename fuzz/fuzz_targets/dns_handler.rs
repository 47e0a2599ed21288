//! Fuzzes `arrow_dns::handle`: any bytes, over UDP and TCP. Properties: never panics; an answer
//! is a response (QR=1) with the query's ID that parses back (round trip), and a UDP answer
//! fits the UDP cap. Run: `cargo +nightly fuzz run dns_handler` in `fuzz/`.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use arrow_dns::{demo_zone, handle, Answer, Directory, Transport, Zones, UDP_PAYLOAD_CAP_BYTES};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

/// Designated node from the key's last byte; headroom alternates; every 7th key overflows.
struct FuzzDirectory {
    turn: AtomicUsize,
}

impl Directory for FuzzDirectory {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        match cluster_key.bytes().last().map_or(0, |b| b % 7) {
            0 => Some(Answer::Overflow),
            1 => None,
            n => Some(Answer::Node(format!("n0{n}.pop.dx.demo.test"))),
        }
    }
    fn by_headroom(&self) -> Option<Answer> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(Answer::Node(format!("n0{}.lax.example.net", turn % 2)))
    }
}

fn zones() -> &'static Zones {
    static ZONES: OnceLock<Zones> = OnceLock::new();
    ZONES.get_or_init(|| {
        let mut zone = demo_zone();
        zone.overflow_cname = Some("demo.cdn.example.net".to_string());
        zone.nodes.insert(
            "n02.pop.dx.demo.test".to_string(),
            vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()],
        );
        Zones::new(&[zone]).expect("fuzz zone is valid")
    })
}

static DIRECTORY: FuzzDirectory = FuzzDirectory {
    turn: AtomicUsize::new(0),
};

fuzz_target!(|data: &[u8]| {
    let (transport, query) = match data.split_first() {
        Some((selector, rest)) if selector & 1 == 1 => (Transport::Tcp, rest),
        Some((_, rest)) => (Transport::UDP, rest),
        None => (Transport::UDP, data),
    };
    let Some(out) = handle(zones(), &DIRECTORY, query, transport) else {
        return;
    };
    assert!(out.len() >= 12);
    assert_eq!(&out[..2], &query[..2], "ID echoed");
    assert_eq!(out[2] & 0x80, 0x80, "QR set");
    if transport != Transport::Tcp {
        assert!(out.len() <= usize::from(UDP_PAYLOAD_CAP_BYTES));
    }
    // Header-only answers to unknown opcodes carry an opcode hickory cannot decode.
    let opcode = (out[2] >> 3) & 0x0f;
    if matches!(opcode, 0 | 2 | 4 | 5) {
        Message::from_vec(&out).expect("our response parses back");
    }
});
