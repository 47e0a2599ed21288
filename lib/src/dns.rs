//! PowerDNS's view of the content-aware zone: Arrow's own query handler (`arrow_dns::handle`,
//! the code the node's responder runs) over this library's snapshot of the table, its answer
//! turned into the records a PowerDNS lua2 backend returns.
//!
//! qname, qtype → DNS query bytes → `arrow_dns::handle(zones, directory, …)` → response →
//! records owned by qname of the asked type (for ANY: every RRset of the name, asked type by
//! type: A, AAAA, SOA, NS; a CNAME name ends at its CNAME) → `TYPE\tTTL\tCONTENT\n` lines.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_cluster::NodeView;
use arrow_dns::{Answer, Directory, Transport};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::handle::Handle;
use crate::status::{ARROW_E_ARG, ARROW_E_INTERNAL, ARROW_OK};

/// The directory of one snapshot, as the node's `ClusterDirectory` answers: no node in service
/// (or no usable table) → `None` (overflow CNAME, else SERVFAIL); in service but nobody admits
/// → `Overflow`.
pub(crate) struct SnapDir {
    nodes: Vec<NodeView>,
    usable: bool,
    guarantee_bps: u64,
    seed: AtomicU64,
}

impl Directory for SnapDir {
    fn designated(&self, cluster_key: &str) -> Option<Answer> {
        if !self.usable {
            return None;
        }
        Some(
            match arrow_cluster::designated(&self.nodes, cluster_key, self.guarantee_bps) {
                Some(n) => Answer::Node(n.name.clone()),
                None => Answer::Overflow,
            },
        )
    }

    fn by_headroom(&self) -> Option<Answer> {
        if !self.usable {
            return None;
        }
        let seed = self.seed.fetch_add(1, Ordering::Relaxed);
        Some(
            match arrow_cluster::pick_by_headroom_bounded(&self.nodes, seed, self.guarantee_bps) {
                Some(n) => Answer::Node(n.name.clone()),
                None => Answer::Overflow,
            },
        )
    }
}

/// The handle's directory, rebuilt when the handle's snapshot was refreshed.
fn directory(h: &mut Handle) -> Arc<SnapDir> {
    h.refresh_if_due();
    let state = h.state();
    if let Some((at, dir)) = &h.dns_dir {
        if *at == h.refreshes {
            return Arc::clone(dir);
        }
    }
    let seed = h
        .dns_dir
        .as_ref()
        .map_or(0x5eed, |(_, d)| d.seed.load(Ordering::Relaxed));
    let dir = Arc::new(SnapDir {
        usable: state == ARROW_OK && h.nodes.iter().any(|n| n.in_service),
        nodes: h.nodes.clone(),
        guarantee_bps: h.cfg.guarantee_bps,
        seed: AtomicU64::new(seed),
    });
    h.dns_dir = Some((h.refreshes, Arc::clone(&dir)));
    dir
}

/// Asks Arrow's handler one question.
fn ask(h: &Handle, dir: &SnapDir, name: &Name, rtype: RecordType) -> Option<Message> {
    let mut q = Message::new();
    q.set_id(1)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(name.clone(), rtype));
    let bytes = q.to_vec().ok()?;
    let resp = arrow_dns::handle(&h.cfg.zones, dir, &bytes, Transport::Tcp)?;
    Message::from_vec(&resp).ok()
}

/// The records of `qname` for `qtype` as lines into `out`; returns the RCODE or an error code.
pub fn answer(h: &mut Handle, qname: &str, qtype: u16, out: &mut String) -> i32 {
    let Ok(mut name) = Name::from_utf8(qname) else {
        return ARROW_E_ARG;
    };
    name.set_fqdn(true);
    let dir = directory(h);
    let asked = RecordType::from(qtype);
    let types: &[RecordType] = if asked == RecordType::ANY {
        &[
            RecordType::A,
            RecordType::AAAA,
            RecordType::SOA,
            RecordType::NS,
        ]
    } else {
        std::slice::from_ref(&asked)
    };
    let mut rcode = ResponseCode::NoError;
    for (i, &t) in types.iter().enumerate() {
        let Some(resp) = ask(h, &dir, &name, t) else {
            return ARROW_E_INTERNAL;
        };
        if i == 0 {
            rcode = resp.response_code();
        }
        if resp.response_code() != ResponseCode::NoError {
            break;
        }
        let mut cname = false;
        for r in resp.answers() {
            // Name equality is case-insensitive; records of other owners (the CNAME target's
            // addresses) are PowerDNS's to add.
            if r.name() != &name {
                continue;
            }
            cname |= r.record_type() == RecordType::CNAME;
            let wanted = r.record_type() == t
                || (asked == RecordType::ANY && r.record_type() == RecordType::CNAME);
            if let (true, Some(data)) = (wanted, r.data()) {
                let _ = writeln!(out, "{}\t{}\t{}", r.record_type(), r.ttl(), data);
            }
        }
        if cname {
            break;
        }
    }
    i32::from(u16::from(rcode))
}
