//! Comet codec: the versioned, authenticated datagram each node sends every interval.
//!
//! Wire format, version 1 (all integers big-endian, every byte accounted for; a decoder rejects
//! anything else, so a valid datagram has exactly one encoding):
//!
//! | offset | bytes | field                                                        |
//! |-------:|------:|--------------------------------------------------------------|
//! | 0      | 4     | magic `ACMT`                                                 |
//! | 4      | 1     | version = 1                                                  |
//! | 5      | 1     | flags: bit 0 mirroring, bit 1 admitting, bit 2 signed; others 0 |
//! | 6      | 1     | address family: 0 none, 4 IPv4, 6 IPv6                       |
//! | 7      | 1     | disk count d (≤ [`MAX_DISKS`])                               |
//! | 8      | 16    | address (IPv4 in the first 4 bytes, the rest zero)           |
//! | 24     | 8     | boot id (sender's start time, unix ns: its epoch)            |
//! | 32     | 8     | sequence (per boot, from 1, +1 per comet)                    |
//! | 40     | 8     | send time, unix ms                                           |
//! | 48     | 8     | brpu, bits/s                                                 |
//! | 56     | 8     | capacity (min over C_cpu, C_net, C_disk), bits/s             |
//! | 64     | 8     | weight: bytes of healthy storage                             |
//! | 72     | 4     | users                                                        |
//! | 76     | 2     | HTTP port                                                    |
//! | 78     | 1     | name length n (1..=253)                                      |
//! | 79     | 1     | reserved, zero                                               |
//! | 80     | n     | node name (ASCII DNS name)                                   |
//! | 80+n   | 17·d  | disks: UUID (16) + state (1: 0 online, 1 degraded, 2 offline)|
//! | …      | 64    | only with flag bit 2: Ed25519 signature of every byte before |
//! |        |       | it, by the sender's own key (per-node keys, optional)        |
//! | end−32 | 32    | HMAC-SHA256 over every byte before it, keyed by the secret   |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// First bytes of every comet.
pub const COMET_MAGIC: [u8; 4] = *b"ACMT";
/// The wire version this build writes and reads.
pub const COMET_VERSION: u8 = 1;
/// Most disks a comet describes.
pub const MAX_DISKS: usize = 48;
/// Bytes of the fixed header before the name.
pub const COMET_HEADER_BYTES: usize = 80;
/// Bytes of one disk entry.
pub const DISK_ENTRY_BYTES: usize = 17;
/// Bytes of the HMAC-SHA256 tag.
pub const TAG_BYTES: usize = 32;
/// Longest node name in a comet.
pub const NAME_MAX_BYTES: usize = crate::identity::NODE_NAME_MAX_BYTES;
/// Bytes of an Ed25519 signature (per-node keys).
pub const SIGNATURE_BYTES: usize = 64;
/// Longest comet: one datagram on a 1280-byte IPv6 minimum MTU path. An unsigned comet always
/// fits; a signed one fits unless its name and disk list are both near their limits (then it
/// cannot be encoded, and says so).
pub const COMET_MAX_BYTES: usize = 1280 - 48;
/// Shortest comet: a one-byte name and no disks.
pub const COMET_MIN_BYTES: usize = COMET_HEADER_BYTES + 1 + TAG_BYTES;
const _: () = assert!(
    COMET_HEADER_BYTES + NAME_MAX_BYTES + MAX_DISKS * DISK_ENTRY_BYTES + TAG_BYTES
        <= COMET_MAX_BYTES
);

const FLAG_MIRRORING: u8 = 1;
const FLAG_ADMITTING: u8 = 2;
const FLAG_SIGNED: u8 = 4;

/// Health of one disk as its node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    Online = 0,
    Degraded = 1,
    Offline = 2,
}

impl DiskState {
    /// The wire byte's meaning, `None` for an unknown value.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(DiskState::Online),
            1 => Some(DiskState::Degraded),
            2 => Some(DiskState::Offline),
            _ => None,
        }
    }
}

/// One disk of a node: its superblock UUID and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskHealth {
    pub uuid: [u8; 16],
    pub state: DiskState,
}

/// One node's state as carried by a comet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comet {
    pub name: String,
    /// The sender's epoch: its start time in unix ns. A restart gives a larger boot id, which
    /// resets the sequence.
    pub boot_id: u64,
    pub sequence: u64,
    /// Send time, unix ms (sender's wall clock).
    pub time_ms: u64,
    /// Where the node serves HTTP; `None` lets receivers take the datagram's source address.
    pub addr: Option<IpAddr>,
    pub http_port: u16,
    pub brpu_bps: u64,
    pub capacity_bps: u64,
    /// Bytes of healthy storage: the node's hashing weight.
    pub weight: u64,
    pub users: u32,
    pub mirroring: bool,
    /// The sender admits a new viewer now (capacity / (users + 1) ≥ its guarantee).
    pub admitting: bool,
    pub disks: Vec<DiskHealth>,
}

/// Why a datagram is not a comet of this cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CometError {
    #[error("comet of {len_bytes} bytes is outside {COMET_MIN_BYTES}..={COMET_MAX_BYTES}")]
    BadLength { len_bytes: usize },
    #[error("not a comet (bad magic)")]
    BadMagic,
    #[error("comet version {0} is not supported (this build reads {COMET_VERSION})")]
    UnsupportedVersion(u8),
    #[error("comet authentication failed (wrong secret or altered datagram)")]
    Forged,
    #[error("malformed comet: {0}")]
    Malformed(&'static str),
}

impl CometError {
    /// Forged comets are counted apart from malformed ones.
    pub fn is_forged(&self) -> bool {
        matches!(self, CometError::Forged)
    }
}

/// The cluster secret, ready to sign and verify comets.
#[derive(Clone)]
pub struct CometKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CometKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CometKey(..)")
    }
}

impl CometKey {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length; new_from_slice cannot fail for it.
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
        CometKey { mac }
    }

    /// HMAC-SHA256 of `body`.
    pub fn tag(&self, body: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, body: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

impl Comet {
    /// The signed datagram. Fails (without panicking) on a name or disk list the format cannot
    /// carry.
    pub fn encode(&self, key: &CometKey) -> Result<Vec<u8>, CometError> {
        self.encode_signed(key, None)
    }

    /// The datagram, also signed with the sender's own Ed25519 key when `signer` is given.
    pub fn encode_signed(
        &self,
        key: &CometKey,
        signer: Option<&ed25519_dalek::SigningKey>,
    ) -> Result<Vec<u8>, CometError> {
        if !is_wire_name(&self.name) {
            return Err(CometError::Malformed("name is not a canonical DNS name"));
        }
        let name = self.name.as_bytes();
        if self.disks.len() > MAX_DISKS {
            return Err(CometError::Malformed("more than 48 disks"));
        }
        let len = COMET_HEADER_BYTES
            + name.len()
            + self.disks.len() * DISK_ENTRY_BYTES
            + if signer.is_some() { SIGNATURE_BYTES } else { 0 }
            + TAG_BYTES;
        if len > COMET_MAX_BYTES {
            return Err(CometError::Malformed(
                "a signed comet with this name and disk list exceeds one datagram",
            ));
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&COMET_MAGIC);
        out.push(COMET_VERSION);
        let mut flags = 0;
        if self.mirroring {
            flags |= FLAG_MIRRORING;
        }
        if self.admitting {
            flags |= FLAG_ADMITTING;
        }
        if signer.is_some() {
            flags |= FLAG_SIGNED;
        }
        out.push(flags);
        let mut addr = [0u8; 16];
        let family = match self.addr {
            None => 0,
            Some(IpAddr::V4(v4)) => {
                addr[..4].copy_from_slice(&v4.octets());
                4
            }
            Some(IpAddr::V6(v6)) => {
                addr = v6.octets();
                6
            }
        };
        out.push(family);
        out.push(self.disks.len() as u8);
        out.extend_from_slice(&addr);
        for word in [
            self.boot_id,
            self.sequence,
            self.time_ms,
            self.brpu_bps,
            self.capacity_bps,
            self.weight,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&self.users.to_be_bytes());
        out.extend_from_slice(&self.http_port.to_be_bytes());
        out.push(name.len() as u8);
        out.push(0);
        debug_assert_eq!(out.len(), COMET_HEADER_BYTES);
        out.extend_from_slice(name);
        for disk in &self.disks {
            out.extend_from_slice(&disk.uuid);
            out.push(disk.state as u8);
        }
        if let Some(signer) = signer {
            use ed25519_dalek::Signer;
            let signature = signer.sign(&out);
            out.extend_from_slice(&signature.to_bytes());
        }
        let tag = key.tag(&out);
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }

    /// Parses and authenticates a datagram. The tag is checked before any field is trusted.
    pub fn decode(bytes: &[u8], key: &CometKey) -> Result<Comet, CometError> {
        Self::decode_signed(bytes, key).map(|(comet, _)| comet)
    }

    /// Like [`Comet::decode`], also returning the sender's Ed25519 signature and the bytes it
    /// covers, when the comet carries one (checked by the receiver against the sender's key).
    pub fn decode_signed<'a>(
        bytes: &'a [u8],
        key: &CometKey,
    ) -> Result<(Comet, Option<SenderSignature<'a>>), CometError> {
        let len_bytes = bytes.len();
        if !(COMET_MIN_BYTES..=COMET_MAX_BYTES).contains(&len_bytes) {
            return Err(CometError::BadLength { len_bytes });
        }
        if bytes[..4] != COMET_MAGIC {
            return Err(CometError::BadMagic);
        }
        if bytes[4] != COMET_VERSION {
            return Err(CometError::UnsupportedVersion(bytes[4]));
        }
        // Structure before authentication, so a truncated or padded datagram counts as
        // malformed rather than forged (no field is trusted yet: this only compares lengths).
        let signed = bytes[5] & FLAG_SIGNED != 0;
        let body_len =
            COMET_HEADER_BYTES + bytes[78] as usize + bytes[7] as usize * DISK_ENTRY_BYTES;
        let expected = body_len + if signed { SIGNATURE_BYTES } else { 0 } + TAG_BYTES;
        if len_bytes != expected {
            return Err(CometError::Malformed(
                "length disagrees with name and disk counts",
            ));
        }
        let (authenticated, tag) = bytes.split_at(len_bytes - TAG_BYTES);
        if !key.verify(authenticated, tag) {
            return Err(CometError::Forged);
        }
        let body = &authenticated[..body_len];
        let comet = parse_body(body)?;
        let signature = signed.then(|| {
            let mut sig = [0u8; SIGNATURE_BYTES];
            sig.copy_from_slice(&authenticated[body_len..]);
            (sig, body)
        });
        Ok((comet, signature))
    }
}

/// A comet's Ed25519 signature and the bytes it signs.
pub type SenderSignature<'a> = ([u8; SIGNATURE_BYTES], &'a [u8]);

/// An Ed25519 public key written as 64 hex digits.
pub fn verifying_key_from_hex(text: &str) -> Option<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
}

/// An Ed25519 secret key written as 64 hex digits (the file `arrow keygen` writes).
pub fn signing_key_from_hex(text: &str) -> Option<ed25519_dalek::SigningKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&bytes))
}

/// A canonical node name: a valid DNS name, lowercase, no final dot, 1..=253 bytes.
fn is_wire_name(name: &str) -> bool {
    !name.ends_with('.')
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && crate::identity::check_node_name(name).is_ok()
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Fields of an authenticated body (magic, version and length already checked).
fn parse_body(body: &[u8]) -> Result<Comet, CometError> {
    let flags = body[5];
    if flags & !(FLAG_MIRRORING | FLAG_ADMITTING | FLAG_SIGNED) != 0 {
        return Err(CometError::Malformed("unknown flag bits"));
    }
    let disk_count = body[7] as usize;
    if disk_count > MAX_DISKS {
        return Err(CometError::Malformed("more than 48 disks"));
    }
    let raw_addr = &body[8..24];
    let addr = match body[6] {
        0 if raw_addr.iter().all(|&b| b == 0) => None,
        4 if raw_addr[4..].iter().all(|&b| b == 0) => Some(IpAddr::V4(Ipv4Addr::new(
            raw_addr[0],
            raw_addr[1],
            raw_addr[2],
            raw_addr[3],
        ))),
        6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(raw_addr);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        0 | 4 => return Err(CometError::Malformed("address padding is not zero")),
        _ => return Err(CometError::Malformed("unknown address family")),
    };
    let name_len = body[78] as usize;
    if body[79] != 0 {
        return Err(CometError::Malformed("reserved byte is not zero"));
    }
    if name_len == 0 || name_len > NAME_MAX_BYTES {
        return Err(CometError::Malformed("name length outside 1..=253"));
    }
    if body.len() != COMET_HEADER_BYTES + name_len + disk_count * DISK_ENTRY_BYTES {
        return Err(CometError::Malformed(
            "length disagrees with name and disk counts",
        ));
    }
    let name_bytes = &body[COMET_HEADER_BYTES..COMET_HEADER_BYTES + name_len];
    let name = std::str::from_utf8(name_bytes)
        .ok()
        .filter(|n| is_wire_name(n))
        .ok_or(CometError::Malformed("name is not a canonical DNS name"))?;
    let mut disks = Vec::with_capacity(disk_count);
    for entry in body[COMET_HEADER_BYTES + name_len..].chunks_exact(DISK_ENTRY_BYTES) {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&entry[..16]);
        let state = DiskState::from_u8(entry[16]).ok_or(CometError::Malformed("disk state"))?;
        disks.push(DiskHealth { uuid, state });
    }
    Ok(Comet {
        name: name.to_owned(),
        boot_id: be_u64(body, 24),
        sequence: be_u64(body, 32),
        time_ms: be_u64(body, 40),
        brpu_bps: be_u64(body, 48),
        capacity_bps: be_u64(body, 56),
        weight: be_u64(body, 64),
        users: u32::from_be_bytes([body[72], body[73], body[74], body[75]]),
        http_port: u16::from_be_bytes([body[76], body[77]]),
        mirroring: flags & FLAG_MIRRORING != 0,
        admitting: flags & FLAG_ADMITTING != 0,
        addr,
        disks,
    })
}

/// What the receiver does with an authenticated comet, given what it last accepted from the
/// same sender (`(boot_id, sequence)` stored in the sender's table record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Newer than anything seen from this sender: accept.
    Fresh,
    /// Not newer than the last accepted comet of the sender: drop, count as replayed.
    Replayed,
    /// Send time too far from the receiver's clock: drop, count as stale.
    Stale,
}

/// Replay rule. A comet is fresh when `(boot_id, sequence)` is larger (lexicographically) than
/// the last accepted pair of its sender: a restarted sender has a larger boot id (its start
/// time, kept above its previous boot id by the sender), so its sequence may start again from 1,
/// and nothing captured from an earlier boot is ever accepted while the receiver remembers a
/// later one. Two guards cover clocks:
/// - the send time must be within `max_clock_skew_ms` of the receiver's wall clock (0 disables),
///   which bounds how old a captured comet can be when replayed;
/// - a sender silent for longer than `max_clock_skew_ms` whose boot id is *smaller* (its clock
///   stepped back across a restart and its own table was lost) is accepted as a restart: every
///   comet it sent before falling silent is older than the skew by then, so no capture can pass
///   the first guard.
pub fn freshness(
    comet: &Comet,
    last: Option<(u64, u64)>,
    silent_ms: u64,
    wall_now_ms: u64,
    max_clock_skew_ms: u64,
) -> Freshness {
    if max_clock_skew_ms != 0 && comet.time_ms.abs_diff(wall_now_ms) > max_clock_skew_ms {
        return Freshness::Stale;
    }
    match last {
        None => Freshness::Fresh,
        Some(last) if (comet.boot_id, comet.sequence) > last => Freshness::Fresh,
        Some((last_boot, _))
            if max_clock_skew_ms != 0
                && comet.boot_id != last_boot
                && silent_ms > max_clock_skew_ms =>
        {
            Freshness::Fresh
        }
        Some(_) => Freshness::Replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    pub(crate) fn sample() -> Comet {
        Comet {
            name: "n01.lax.hw.bar.net".into(),
            boot_id: 1_700_000_000_000_000_000,
            sequence: 42,
            time_ms: 1_700_000_000_123,
            addr: Some("178.62.11.17".parse().unwrap()),
            http_port: 8080,
            brpu_bps: 12_000_000,
            capacity_bps: 9_000_000_000,
            weight: 8 << 40,
            users: 750,
            mirroring: true,
            admitting: true,
            disks: vec![
                DiskHealth {
                    uuid: [7; 16],
                    state: DiskState::Online,
                },
                DiskHealth {
                    uuid: [9; 16],
                    state: DiskState::Offline,
                },
            ],
        }
    }

    fn key() -> CometKey {
        CometKey::new(b"cluster secret for tests")
    }

    #[test]
    fn round_trip() {
        let mut comet = sample();
        let bytes = comet.encode(&key()).unwrap();
        assert_eq!(Comet::decode(&bytes, &key()).unwrap(), comet);
        comet.addr = Some("2a03:e0c0:d0::14:f001".parse().unwrap());
        comet.disks.clear();
        comet.mirroring = false;
        let bytes = comet.encode(&key()).unwrap();
        assert_eq!(Comet::decode(&bytes, &key()).unwrap(), comet);
        comet.addr = None;
        comet.disks = vec![
            DiskHealth {
                uuid: [1; 16],
                state: DiskState::Degraded
            };
            MAX_DISKS
        ];
        comet.name = "a".repeat(63) + "." + &"b".repeat(63) + "." + &"c".repeat(63);
        let bytes = comet.encode(&key()).unwrap();
        assert_eq!(Comet::decode(&bytes, &key()).unwrap(), comet);
    }

    #[test]
    fn wrong_secret_is_forged() {
        let bytes = sample().encode(&key()).unwrap();
        let other = CometKey::new(b"another cluster's secret");
        assert_eq!(Comet::decode(&bytes, &other), Err(CometError::Forged));
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let bytes = sample().encode(&key()).unwrap();
        for at in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x10;
            assert!(Comet::decode(&altered, &key()).is_err(), "byte {at}");
        }
    }

    #[test]
    fn truncated_is_rejected() {
        let bytes = sample().encode(&key()).unwrap();
        for len in 0..bytes.len() {
            assert!(Comet::decode(&bytes[..len], &key()).is_err(), "len {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Comet::decode(&longer, &key()).is_err());
    }

    #[test]
    fn unencodable_comets_are_errors() {
        let mut comet = sample();
        comet.name = "x".repeat(254);
        assert!(comet.encode(&key()).is_err());
        comet.name.clear();
        assert!(comet.encode(&key()).is_err());
        let mut comet = sample();
        comet.disks = vec![comet.disks[0]; MAX_DISKS + 1];
        assert!(comet.encode(&key()).is_err());
    }

    #[test]
    fn signed_garbage_is_malformed_not_panicking() {
        // Valid tags over random bodies reach the field parser.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let good = sample().encode(&key()).unwrap();
        for _ in 0..20_000 {
            let mut body = good[..good.len() - TAG_BYTES].to_vec();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(5..body.len());
                body[at] = rng.gen();
            }
            let tag = key().tag(&body);
            body.extend_from_slice(&tag);
            if let Ok(comet) = Comet::decode(&body, &key()) {
                assert_eq!(comet.encode(&key()).unwrap(), body, "encoding is canonical");
            }
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let count: usize = std::env::var("ARROW_COMET_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let good = sample().encode(&key()).unwrap();
        let mut accepted = 0;
        for round in 0..count {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.gen_range(0..COMET_MAX_BYTES + 64);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                let mut bytes = good.clone();
                match rng.gen_range(0..3) {
                    0 => bytes.truncate(rng.gen_range(0..good.len())),
                    1 => {
                        let at = rng.gen_range(0..bytes.len());
                        bytes[at] = rng.gen();
                    }
                    _ => bytes.extend((0..rng.gen_range(1..40)).map(|_| rng.gen::<u8>())),
                }
                bytes
            };
            if let Ok(comet) = Comet::decode(&bytes, &key()) {
                accepted += 1;
                let again = comet.encode(&key()).unwrap();
                assert_eq!(Comet::decode(&again, &key()).unwrap(), comet);
            }
        }
        // A mutation may leave bytes unchanged (same random byte); nothing else may pass.
        assert!(accepted < count / 100, "accepted {accepted}");
    }

    #[test]
    fn signed_comets_carry_the_senders_signature() {
        use ed25519_dalek::Verifier;
        let signer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let comet = sample();
        let bytes = comet.encode_signed(&key(), Some(&signer)).unwrap();
        assert_eq!(
            bytes.len(),
            comet.encode(&key()).unwrap().len() + SIGNATURE_BYTES
        );
        let (back, sig) = Comet::decode_signed(&bytes, &key()).unwrap();
        assert_eq!(back, comet);
        let (sig, body) = sig.expect("signed");
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        assert!(signer.verifying_key().verify(body, &sig).is_ok());
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(other.verifying_key().verify(body, &sig).is_err());
        // Unsigned comets decode without one.
        let plain = comet.encode(&key()).unwrap();
        let (_, none) = Comet::decode_signed(&plain, &key()).unwrap();
        assert!(none.is_none());
        // A name and disk list at their limits cannot be signed within one datagram.
        let mut big = sample();
        big.name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        big.disks = vec![big.disks[0]; MAX_DISKS];
        assert!(big.encode(&key()).is_ok());
        assert!(big.encode_signed(&key(), Some(&signer)).is_err());
    }

    #[test]
    fn replay_rule() {
        let mut comet = sample();
        let now = comet.time_ms;
        let last = Some((comet.boot_id, comet.sequence));
        assert_eq!(freshness(&comet, None, 0, now, 60_000), Freshness::Fresh);
        assert_eq!(freshness(&comet, last, 0, now, 60_000), Freshness::Replayed);
        comet.sequence += 1;
        assert_eq!(freshness(&comet, last, 0, now, 60_000), Freshness::Fresh);
        // Restart: larger boot id, sequence from 1.
        comet.boot_id += 1;
        comet.sequence = 1;
        assert_eq!(freshness(&comet, last, 0, now, 60_000), Freshness::Fresh);
        // An earlier boot replayed: refused whether the sender is up or was just marked out.
        comet.boot_id -= 2;
        comet.sequence = 1_000_000;
        for silent_ms in [0, 1_500, 59_999, 60_000] {
            assert_eq!(
                freshness(&comet, last, silent_ms, now, 60_000),
                Freshness::Replayed,
                "silent {silent_ms} ms"
            );
        }
        // Clock stepped back across a restart: accepted once the sender has been silent longer
        // than the skew (every capture is stale by then).
        assert_eq!(
            freshness(&comet, last, 60_001, now, 60_000),
            Freshness::Fresh
        );
        // A captured comet replayed much later fails the skew check.
        assert_eq!(
            freshness(&comet, last, 120_000, now + 120_000, 60_000),
            Freshness::Stale
        );
        assert_eq!(
            freshness(&comet, last, 120_000, now + 120_000, 0),
            Freshness::Replayed
        );
    }
}
