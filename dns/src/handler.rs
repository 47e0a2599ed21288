//! The pure query handler: bytes in, bytes (or nothing) out. No I/O, no clock, no panics.
//!
//! query bytes → header (drop responses, NOTIMP other opcodes) → question + OPT (FORMERR on any
//! decoding error) → class/type checks → zone lookup (REFUSED outside) → classify the name →
//! records (the [`Directory`] picks CNAME targets) → encode → fit to the transport's size
//! (drop additional, else TC=1 with an empty answer) → response bytes.
//!
//! UDP size: an answer is at most min(the requestor's EDNS payload size, the
//! [`EDNS_ADVERTISED_BYTES`] = 1232 we advertise), and 512 without EDNS; a larger one is
//! truncated (TC=1) so the requestor retries over TCP.
//!
//! Choices where the RFCs leave room:
//! - QTYPE ANY (RFC 8482 §4.2, "a subset of the available RRsets"): one RRset answers — the
//!   CNAME at a CNAME name, the SOA at the apex, the A RRset of a host (its AAAA RRset if it has
//!   no IPv4 address). Never NOTIMP, never the whole node, so ANY cannot amplify.
//! - Malformed EDNS options (an option whose length disagrees with the OPT RDATA, or a payload
//!   too short for its option, e.g. a 2-byte client subnet): FORMERR. They are checked before
//!   hickory decodes the OPT record, which would otherwise drop them with a WARN per packet;
//!   the handler itself never logs malformed input.
//! - QCLASS CH, HS, NONE or ANY: REFUSED (no zone of ours is in those classes); an unassigned
//!   class value: FORMERR.
//! - AXFR/IXFR: REFUSED (no zone transfers). QTYPE OPT, TSIG or other meta types: FORMERR.
//! - QDCOUNT ≠ 1, or answer/authority records in a query: FORMERR.
//! - EDNS version > 0: BADVERS. The DO bit is copied; EDNS options are not echoed.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::zone::{addr_record, node_key, LowerName, NameClass, Zone, Zones};
use crate::{Answer, Directory};

/// Bytes of the fixed DNS header.
pub const HEADER_BYTES: usize = 12;
/// UDP responses are never cut below this size (RFC 1035), with or without EDNS.
pub const UDP_PAYLOAD_MIN_BYTES: u16 = 512;
/// The UDP payload size this responder advertises in its OPT record (DNS flag day 2020).
pub const EDNS_ADVERTISED_BYTES: u16 = 1232;
/// Cap on the UDP response size, whatever a requestor advertises: what we advertise, so an
/// answer is never larger than we said datagrams should be (no IP fragmentation).
pub const UDP_PAYLOAD_CAP_BYTES: u16 = EDNS_ADVERTISED_BYTES;
/// Additional records accepted in a query (OPT, TSIG, …); more is FORMERR before decoding.
pub const QUERY_ADDITIONAL_MAX: u16 = 4;

const OPCODE_BITS: u8 = 0b0111_1000;
const QR_BIT: u8 = 0b1000_0000;
const RD_BIT: u8 = 0b0000_0001;

/// How the response travels, which bounds its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the response fits in the requestor's EDNS payload size (512 without EDNS), clamped
    /// to `[512, payload_max_bytes]`, and `payload_max_bytes` to at most
    /// [`EDNS_ADVERTISED_BYTES`]; larger answers are truncated (TC=1).
    Udp { payload_max_bytes: u16 },
    /// TCP: up to 65535 bytes (the 2-byte length prefix).
    Tcp,
}

impl Transport {
    /// UDP with the default cap, [`UDP_PAYLOAD_CAP_BYTES`].
    pub const UDP: Transport = Transport::Udp {
        payload_max_bytes: UDP_PAYLOAD_CAP_BYTES,
    };

    fn limit_bytes(self, edns: Option<&Edns>) -> usize {
        match self {
            Transport::Udp { payload_max_bytes } => {
                let cap = payload_max_bytes.clamp(UDP_PAYLOAD_MIN_BYTES, UDP_PAYLOAD_CAP_BYTES);
                let asked = edns.map_or(UDP_PAYLOAD_MIN_BYTES, Edns::max_payload);
                usize::from(asked.clamp(UDP_PAYLOAD_MIN_BYTES, cap))
            }
            Transport::Tcp => usize::from(u16::MAX),
        }
    }
}

/// Answers one DNS message. `None` means drop it: shorter than a header, or a response (QR=1;
/// responses are never answered, so two responders cannot loop).
pub fn handle(
    zones: &Zones,
    dir: &dyn Directory,
    query_bytes: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    handle_cacheable(zones, dir, query_bytes, transport).map(|(r, _)| r)
}

/// [`handle`], also telling whether the same query bytes (ID aside) get the same answer while
/// the directory does not change: false for names answered by headroom, which vary per query.
pub fn handle_cacheable(
    zones: &Zones,
    dir: &dyn Directory,
    query_bytes: &[u8],
    transport: Transport,
) -> Option<(Vec<u8>, bool)> {
    let mut varies = false;
    let r = handle_inner(zones, dir, query_bytes, transport, &mut varies)?;
    Some((r, !varies))
}

fn handle_inner(
    zones: &Zones,
    dir: &dyn Directory,
    query_bytes: &[u8],
    transport: Transport,
    varies: &mut bool,
) -> Option<Vec<u8>> {
    if query_bytes.len() < HEADER_BYTES {
        return None;
    }
    let mut decoder = BinDecoder::new(query_bytes);
    let header = match Header::read(&mut decoder) {
        Ok(header) => header,
        // With 12 bytes present, the only decoding failure is an opcode hickory does not know.
        Err(_) => return unknown_opcode(query_bytes),
    };
    if header.message_type() == MessageType::Response {
        return None;
    }
    if header.op_code() != OpCode::Query {
        return Some(header_only(&header, ResponseCode::NotImp));
    }
    if header.query_count() != 1
        || header.answer_count() != 0
        || header.name_server_count() != 0
        || header.additional_count() > QUERY_ADDITIONAL_MAX
    {
        return Some(header_only(&header, ResponseCode::FormErr));
    }
    let Ok(query) = Query::read(&mut decoder) else {
        return Some(header_only(&header, ResponseCode::FormErr));
    };
    let Some(edns) = read_edns(&mut decoder, header.additional_count()) else {
        return Some(header_only(&header, ResponseCode::FormErr));
    };

    let mut response = Message::new();
    response
        .set_id(header.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(header.recursion_desired())
        .set_checking_disabled(header.checking_disabled())
        .add_query(query.clone());
    if let Some(asked) = &edns {
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_ADVERTISED_BYTES)
            .set_version(0)
            .set_dnssec_ok(asked.dnssec_ok());
        response.set_edns(ours);
        if asked.version() > 0 {
            response.set_response_code(ResponseCode::BADVERS);
            return encode(response, transport.limit_bytes(edns.as_ref()));
        }
    }

    let rcode = answer(zones, dir, &query, &mut response, varies);
    response.set_response_code(rcode);
    encode(response, transport.limit_bytes(edns.as_ref()))
}

/// Reads the additional section of a query: at most one OPT (owner root), other records
/// (TSIG, SIG(0)) are skipped. `None` is a format error.
fn read_edns(decoder: &mut BinDecoder<'_>, count: u16) -> Option<Option<Edns>> {
    let mut edns = None;
    for _ in 0..count {
        if !opt_options_well_formed(decoder) {
            return None;
        }
        let record = Record::read(decoder).ok()?;
        if record.record_type() != RecordType::OPT {
            continue;
        }
        let well_formed = matches!(
            record.data(),
            None | Some(RData::OPT(_)) | Some(RData::NULL(_))
        );
        if edns.is_some() || !record.name().is_root() || !well_formed {
            return None;
        }
        edns = Some(Edns::from(&record));
    }
    Some(edns)
}

/// Whether the record at the decoder's position, if it is an OPT record, carries well-formed
/// options: they tile its RDATA exactly (code, length, that many bytes) and each decodes as its
/// option (a client subnet needs at least 4 bytes and exactly the address bytes its prefix
/// implies). hickory 0.24 would accept an OPT whose last option is cut short, dropping its
/// options with a WARN per packet; this is checked first, with hickory's decoder, so such a
/// query is FORMERR without a log line. Records that are not OPT, or that hickory cannot frame,
/// pass here and are judged by `Record::read`.
fn opt_options_well_formed(decoder: &BinDecoder<'_>) -> bool {
    let Ok(at) = u16::try_from(decoder.index()) else {
        return true;
    };
    let mut record = decoder.clone(at);
    if Name::read(&mut record).is_err() {
        return true;
    }
    match RecordType::read(&mut record) {
        Ok(RecordType::OPT) => {}
        _ => return true,
    }
    // CLASS (the payload size) and TTL (extended RCODE, version, flags), then RDLENGTH.
    if record.read_slice(6).is_err() {
        return true;
    }
    let Ok(rdata_len) = record.read_u16().map(|l| l.unverified()) else {
        return true;
    };
    let Ok(rdata) = record
        .read_slice(usize::from(rdata_len))
        .map(|r| r.unverified())
    else {
        return true;
    };
    let mut options = BinDecoder::new(rdata);
    while !options.is_empty() {
        let Ok(code) = options.read_u16().map(|c| c.unverified()) else {
            return false;
        };
        let Ok(len) = options.read_u16().map(|l| l.unverified()) else {
            return false;
        };
        let Ok(value) = options.read_slice(usize::from(len)).map(|v| v.unverified()) else {
            return false;
        };
        let Ok(option) = EdnsOption::try_from((EdnsCode::from(code), value)) else {
            return false;
        };
        // Re-encoding gives back the same bytes unless the payload had bytes the option does
        // not use (RFC 7871 §7.1.2: a client subnet with extra address bytes is FORMERR).
        if Vec::<u8>::try_from(&option).map_or(true, |v| v.len() != value.len()) {
            return false;
        }
    }
    true
}

/// Fills `response` for a well-formed query and returns its RCODE.
fn answer(
    zones: &Zones,
    dir: &dyn Directory,
    query: &Query,
    response: &mut Message,
    varies: &mut bool,
) -> ResponseCode {
    match query.query_class() {
        DNSClass::IN => {}
        DNSClass::CH | DNSClass::HS | DNSClass::NONE | DNSClass::ANY => {
            return ResponseCode::Refused
        }
        DNSClass::OPT(_) | DNSClass::Unknown(_) => return ResponseCode::FormErr,
    }
    let qtype = query.query_type();
    match qtype {
        RecordType::OPT | RecordType::TSIG | RecordType::SIG | RecordType::NULL => {
            return ResponseCode::FormErr
        }
        RecordType::Unknown(code) if (128..=250).contains(&code) => return ResponseCode::FormErr,
        _ => {}
    }
    let Some(lower) = LowerName::new(query.name()) else {
        return ResponseCode::FormErr;
    };
    let Some(zone) = zones.find(&lower) else {
        return ResponseCode::Refused;
    };
    response.set_authoritative(true);
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        response.set_authoritative(false);
        return ResponseCode::Refused;
    }
    let qname = query.name();
    match zone.classify(&lower) {
        NameClass::Apex => match qtype {
            RecordType::SOA | RecordType::ANY => {
                response.add_answer(at(&zone.soa, qname));
                ResponseCode::NoError
            }
            RecordType::NS => {
                response.add_answers(zone.ns.iter().map(|r| at(r, qname)));
                response.add_additionals(zone.ns_glue.iter().cloned());
                ResponseCode::NoError
            }
            _ => no_data(zone, response),
        },
        NameClass::Host(host) => {
            // ANY answers one RRset (RFC 8482): the A RRset, or the AAAA RRset of a host with
            // no IPv4 address.
            let qtype = match qtype {
                RecordType::ANY if host.addrs.iter().any(|(addr, _)| addr.is_ipv4()) => {
                    RecordType::A
                }
                RecordType::ANY => RecordType::AAAA,
                other => other,
            };
            let records: Vec<Record> = host
                .addrs
                .iter()
                .filter(|(addr, _)| addr_matches(qtype, addr))
                .map(|(addr, ttl_s)| addr_record(qname, *addr, *ttl_s))
                .collect();
            if records.is_empty() {
                return no_data(zone, response);
            }
            response.add_answers(records);
            ResponseCode::NoError
        }
        NameClass::EmptyNonTerminal => no_data(zone, response),
        NameClass::NxDomain => {
            response.add_name_server(zone.soa_negative.clone());
            ResponseCode::NXDomain
        }
        NameClass::Content(hex) => {
            let cluster_key = format!("{}{}", zone.domain, hex);
            let target = dir.designated(&cluster_key);
            cname(zone, qname, qtype, target, zone.content_ttl_s, response)
        }
        NameClass::Headroom => {
            *varies = true;
            let target = dir.by_headroom();
            cname(zone, qname, qtype, target, zone.headroom_ttl_s, response)
        }
    }
}

fn addr_matches(qtype: RecordType, addr: &std::net::IpAddr) -> bool {
    match qtype {
        RecordType::A => addr.is_ipv4(),
        RecordType::AAAA => addr.is_ipv6(),
        _ => false,
    }
}

/// `record` with its owner replaced by the question's name (echoing the question's case).
fn at(record: &Record, qname: &Name) -> Record {
    let mut record = record.clone();
    record.set_name(qname.clone());
    record
}

fn no_data(zone: &Zone, response: &mut Message) -> ResponseCode {
    response.add_name_server(zone.soa_negative.clone());
    ResponseCode::NoError
}

/// A CNAME at `qname` to the directory's choice; with the node's configured addresses of the
/// asked type after it (as the seed's PoC answers). No node and no overflow host: SERVFAIL.
fn cname(
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    target: Option<Answer>,
    ttl_s: u32,
    response: &mut Message,
) -> ResponseCode {
    let node = match target {
        Some(Answer::Node(node)) => node,
        Some(Answer::Overflow) | None => {
            let Some(overflow) = &zone.overflow else {
                response.set_authoritative(false);
                return ResponseCode::ServFail;
            };
            response.add_answer(Record::from_rdata(
                qname.clone(),
                zone.overflow_ttl_s,
                RData::CNAME(CNAME(overflow.clone())),
            ));
            return ResponseCode::NoError;
        }
    };
    let entry = zone.nodes.get(&node_key(&node));
    let node_name = match entry {
        Some(entry) => entry.name.clone(),
        None => match Name::from_ascii(node.trim()) {
            Ok(mut name) if !name.is_root() && !node.trim().is_empty() => {
                name.set_fqdn(true);
                name
            }
            _ => {
                tracing::debug!(node = %node, "directory answered an invalid node name");
                response.set_authoritative(false);
                return ResponseCode::ServFail;
            }
        },
    };
    response.add_answer(Record::from_rdata(
        qname.clone(),
        ttl_s,
        RData::CNAME(CNAME(node_name.clone())),
    ));
    if let Some(entry) = entry {
        if matches!(qtype, RecordType::A | RecordType::AAAA) {
            response.add_answers(
                entry
                    .addrs
                    .iter()
                    .filter(|addr| addr_matches(qtype, addr))
                    .map(|addr| addr_record(&node_name, *addr, zone.node_ttl_s)),
            );
        }
    }
    ResponseCode::NoError
}

/// Encodes `response` within `limit_bytes`: first without the additional section (no TC, RFC
/// 2181 §9), else with TC=1 and only the question and OPT.
fn encode(mut response: Message, limit_bytes: usize) -> Option<Vec<u8>> {
    let Ok(bytes) = response.to_vec() else {
        return Some(header_only(response.header(), ResponseCode::ServFail));
    };
    if bytes.len() <= limit_bytes {
        return Some(bytes);
    }
    response.take_additionals();
    if let Ok(bytes) = response.to_vec() {
        if bytes.len() <= limit_bytes {
            return Some(bytes);
        }
    }
    response.take_answers();
    response.take_name_servers();
    response.set_truncated(true);
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit_bytes => Some(bytes),
        _ => Some(header_only(response.header(), ResponseCode::ServFail)),
    }
}

/// A response with only a header: the query's ID, opcode and RD, and `rcode`.
fn header_only(query: &Header, rcode: ResponseCode) -> Vec<u8> {
    let mut header = Header::response_from_request(query);
    header.set_response_code(rcode);
    header.set_authoritative(false);
    header.set_truncated(false);
    header.set_checking_disabled(false);
    header.set_authentic_data(false);
    header.set_query_count(0);
    header.set_answer_count(0);
    header.set_name_server_count(0);
    header.set_additional_count(0);
    let mut response = Message::new();
    response.set_header(header);
    // A header-only message always encodes (12 bytes, no names).
    response.to_vec().unwrap_or_default()
}

/// NOTIMP for an opcode hickory cannot represent (IQUERY, DSO, unassigned): encoded as QUERY,
/// then the request's opcode bits are copied back so the response echoes them.
fn unknown_opcode(query_bytes: &[u8]) -> Option<Vec<u8>> {
    let flags = query_bytes[2];
    if flags & QR_BIT != 0 {
        return None;
    }
    let mut header = Header::new();
    header
        .set_id(u16::from_be_bytes([query_bytes[0], query_bytes[1]]))
        .set_message_type(MessageType::Query)
        .set_recursion_desired(flags & RD_BIT != 0);
    let mut bytes = header_only(&header, ResponseCode::NotImp);
    if bytes.len() == HEADER_BYTES {
        bytes[2] = (bytes[2] & !OPCODE_BITS) | (flags & OPCODE_BITS);
    }
    Some(bytes)
}

#[cfg(test)]
mod tests;
