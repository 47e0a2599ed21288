//! The TLS record layer of an established viewer connection, in user space without allocation:
//! what kTLS does in the kernel, done here when the kernel cannot (rustls's own record layer
//! allocates a buffer per record and copies it out).
//!
//! rustls completes the handshake, then hands over the traffic secrets and sequence numbers
//! (`dangerous_into_kernel_connection`, the API meant for kTLS); its `KernelConnection` stays
//! here to derive the next secrets on a TLS 1.3 key update. Records are sealed in place in the
//! caller's ciphertext buffer and opened in place in the received bytes (ring's AEADs, the same
//! that rustls uses): TLS 1.3 (RFC 8446 §5.2: inner content type, nonce = iv ⊕ sequence, the
//! record header as additional data) and TLS 1.2 AEAD suites (RFC 5288 explicit nonce for
//! AES-GCM, RFC 7905 for ChaCha20-Poly1305; additional data = sequence, type, version, length).
//!
//! Received records other than application data: close_notify ends the stream; a TLS 1.3
//! KeyUpdate re-keys the receive side (and the send side, with a KeyUpdate of ours, when the
//! peer asks); any other alert or handshake message (renegotiation) is an error.

use std::io;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::ConnectionTrafficSecrets;

const HEADER: usize = 5;
const TAG: usize = 16;
/// Plaintext per record (the TLS maximum).
pub const RECORD_PLAIN: usize = 16 * 1024;
/// Ciphertext bytes a record may carry (RFC 8446 §5.2: plaintext + 256).
const RECORD_CIPHER_MAX: usize = RECORD_PLAIN + 256;
/// Records sealed under one AES-GCM key before the connection is closed (RFC 8446 §5.5 bounds
/// AES-GCM at 2^24.5 full records; ChaCha20-Poly1305's limit is beyond any connection).
const AES_GCM_RECORDS_MAX: u64 = 1 << 24;

const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;
const HS_KEY_UPDATE: u8 = 24;
const ALERT_NO_RENEGOTIATION: u8 = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Tls13,
    Tls12,
}

/// One direction's key and sequence number.
struct Dir {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.2 AES-GCM: 8 explicit nonce bytes precede the ciphertext.
    explicit_nonce: bool,
    aes_gcm: bool,
}

impl Dir {
    fn new(version: Version, seq: u64, s: &ConnectionTrafficSecrets) -> io::Result<Dir> {
        let (alg, key, iv, aes) = match s {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&ring::aead::AES_128_GCM, key, iv, true)
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&ring::aead::AES_256_GCM, key, iv, true)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&ring::aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err(unsupported()),
        };
        let key = UnboundKey::new(alg, key.as_ref()).map_err(|_| unsupported())?;
        Ok(Dir {
            key: LessSafeKey::new(key),
            iv: iv.as_ref().try_into().map_err(|_| unsupported())?,
            seq,
            explicit_nonce: version == Version::Tls12 && aes,
            aes_gcm: aes,
        })
    }

    /// The nonce of the current record: iv ⊕ sequence (also TLS 1.2 AES-GCM's salt ‖ explicit
    /// part, whose explicit part is sent).
    fn nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "no user-space record layer for this suite",
    )
}

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// What reading the received bytes gave.
pub struct Opened {
    /// Bytes of the received buffer consumed (whole records).
    pub used: usize,
    /// The peer sent close_notify.
    pub closed: bool,
}

/// An established connection's record layer.
pub struct Records {
    version: Version,
    tx: Dir,
    rx: Dir,
    kernel: KernelConnection<ServerConnectionData>,
    /// A KeyUpdate of ours is owed (the peer asked): sent before the next records.
    key_update_owed: bool,
    /// A warning alert owed to the peer (its description), sent by [`Records::seal_owed`].
    alert_owed: Option<u8>,
}

impl Records {
    pub fn new(
        secrets: rustls::ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> io::Result<Records> {
        let version = match kernel.protocol_version() {
            rustls::ProtocolVersion::TLSv1_3 => Version::Tls13,
            rustls::ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => return Err(unsupported()),
        };
        Ok(Records {
            tx: Dir::new(version, secrets.tx.0, &secrets.tx.1)?,
            rx: Dir::new(version, secrets.rx.0, &secrets.rx.1)?,
            version,
            kernel,
            key_update_owed: false,
            alert_owed: None,
        })
    }

    /// Ciphertext bytes for `plain` bytes of application data (for sizing the buffer).
    pub fn sealed_len(&self, plain: usize) -> usize {
        let records = plain.div_ceil(RECORD_PLAIN).max(1);
        plain + records * self.overhead() + if self.key_update_owed { 64 } else { 0 }
    }

    fn overhead(&self) -> usize {
        HEADER
            + TAG
            + match (self.version, self.tx.explicit_nonce) {
                (Version::Tls13, _) => 1,
                (Version::Tls12, true) => 8,
                (Version::Tls12, false) => 0,
            }
    }

    /// Seal `data` as application-data records into `out[*end..]` (which has
    /// [`Records::sealed_len`] bytes of room).
    pub fn seal(&mut self, data: &[u8], out: &mut [u8], end: &mut usize) -> io::Result<()> {
        if self.key_update_owed {
            self.key_update_owed = false;
            // KeyUpdate(update_not_requested), under the old key, then the new key.
            self.seal_record(CT_HANDSHAKE, &[HS_KEY_UPDATE, 0, 0, 1, 0], out, end)?;
            let (seq, s) = self
                .kernel
                .update_tx_secret()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.tx = Dir::new(self.version, seq, &s)?;
        }
        for chunk in data.chunks(RECORD_PLAIN) {
            self.seal_record(CT_APPDATA, chunk, out, end)?;
        }
        Ok(())
    }

    fn seal_record(
        &mut self,
        ct: u8,
        data: &[u8],
        out: &mut [u8],
        end: &mut usize,
    ) -> io::Result<()> {
        if self.tx.aes_gcm && self.tx.seq >= AES_GCM_RECORDS_MAX {
            return Err(bad("record limit of the key reached"));
        }
        let nonce = self.tx.nonce();
        let start = *end;
        let (outer_ct, prefix, inner_extra) = match self.version {
            Version::Tls13 => (CT_APPDATA, 0, 1),
            Version::Tls12 if self.tx.explicit_nonce => (ct, 8, 0),
            Version::Tls12 => (ct, 0, 0),
        };
        let body_len = prefix + data.len() + inner_extra + TAG;
        let total = HEADER + body_len;
        if out.len() < start + total {
            return Err(bad("ciphertext buffer too small"));
        }
        let rec = &mut out[start..start + total];
        rec[0] = outer_ct;
        rec[1] = 3;
        rec[2] = 3;
        rec[3..5].copy_from_slice(&(body_len as u16).to_be_bytes());
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&rec[..HEADER]);
        if prefix > 0 {
            rec[HEADER..HEADER + 8].copy_from_slice(&nonce[4..]);
        }
        let p0 = HEADER + prefix;
        rec[p0..p0 + data.len()].copy_from_slice(data);
        if inner_extra == 1 {
            rec[p0 + data.len()] = ct;
        }
        let plain_end = p0 + data.len() + inner_extra;
        let tag = match self.version {
            Version::Tls13 => self.tx.key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut rec[p0..plain_end],
            ),
            Version::Tls12 => {
                let aad = tls12_aad(self.tx.seq, ct, data.len());
                self.tx.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut rec[p0..plain_end],
                )
            }
        }
        .map_err(|_| bad("seal failed"))?;
        rec[plain_end..plain_end + TAG].copy_from_slice(tag.as_ref());
        self.tx.seq += 1;
        *end += total;
        Ok(())
    }

    /// Open the whole records at the front of `incoming` in place, appending their application
    /// data to `plain`. Stops at close_notify.
    pub fn open(&mut self, incoming: &mut [u8], plain: &mut Vec<u8>) -> io::Result<Opened> {
        let mut used = 0;
        loop {
            let rest = &mut incoming[used..];
            if rest.len() < HEADER {
                return Ok(Opened {
                    used,
                    closed: false,
                });
            }
            let outer = rest[0];
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            if rest[1] != 3 || len > RECORD_CIPHER_MAX + 8 {
                return Err(bad("malformed TLS record"));
            }
            if rest.len() < HEADER + len {
                return Ok(Opened {
                    used,
                    closed: false,
                });
            }
            let mut header = [0u8; HEADER];
            header.copy_from_slice(&rest[..HEADER]);
            let body = &mut rest[HEADER..HEADER + len];
            let (ct, content) = self.open_record(outer, header, body)?;
            if content.len() > RECORD_PLAIN {
                return Err(bad("TLS record longer than 2^14 bytes"));
            }
            used += HEADER + len;
            match ct {
                CT_APPDATA => plain.extend_from_slice(content),
                CT_ALERT => {
                    // close_notify (level warning or fatal, description 0) ends the stream.
                    if content.len() == 2 && content[1] == 0 {
                        return Ok(Opened { used, closed: true });
                    }
                    return Err(bad("TLS alert from the peer"));
                }
                CT_HANDSHAKE if self.version == Version::Tls12 && content.first() == Some(&1) => {
                    // A ClientHello: renegotiation, which is refused with a no_renegotiation
                    // warning (as rustls does); the connection goes on.
                    self.alert_owed = Some(ALERT_NO_RENEGOTIATION);
                }
                CT_HANDSHAKE if self.version == Version::Tls13 => {
                    let m: &[u8] = content;
                    if m.len() == 5 && m[0] == HS_KEY_UPDATE && m[1..4] == [0, 0, 1] && m[4] <= 1 {
                        let (seq, s) = self
                            .kernel
                            .update_rx_secret()
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        self.rx = Dir::new(self.version, seq, &s)?;
                        if m[4] == 1 {
                            self.key_update_owed = true;
                        }
                    } else {
                        return Err(bad("handshake message after the handshake"));
                    }
                }
                _ => return Err(bad("unexpected TLS record")),
            }
        }
    }

    /// Decrypt one record body in place: (content type, content).
    fn open_record<'a>(
        &mut self,
        outer: u8,
        header: [u8; HEADER],
        body: &'a mut [u8],
    ) -> io::Result<(u8, &'a [u8])> {
        let mut nonce = self.rx.nonce();
        let out = match self.version {
            Version::Tls13 => {
                if outer != CT_APPDATA {
                    return Err(bad("unexpected TLS 1.3 record type"));
                }
                self.rx
                    .key
                    .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(header), body)
                    .map_err(|_| bad("TLS record failed to decrypt"))?
            }
            Version::Tls12 => {
                let body = if self.rx.explicit_nonce {
                    if body.len() < 8 + TAG {
                        return Err(bad("short TLS record"));
                    }
                    nonce[4..].copy_from_slice(&body[..8]);
                    &mut body[8..]
                } else {
                    body
                };
                if body.len() < TAG {
                    return Err(bad("short TLS record"));
                }
                let aad = tls12_aad(self.rx.seq, outer, body.len() - TAG);
                self.rx
                    .key
                    .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
                    .map_err(|_| bad("TLS record failed to decrypt"))?
            }
        };
        self.rx.seq += 1;
        match self.version {
            Version::Tls13 => {
                // Inner plaintext: content, content type, zero padding.
                let real = out
                    .iter()
                    .rposition(|b| *b != 0)
                    .ok_or_else(|| bad("TLS record without a content type"))?;
                let ct = out[real];
                Ok((ct, &out[..real]))
            }
            Version::Tls12 => Ok((outer, out)),
        }
    }

    /// Whether records are owed to the peer now (an alert answering what it sent).
    pub fn owes(&self) -> bool {
        self.alert_owed.is_some()
    }

    /// Seal what is owed to the peer into `out[*end..]` (64 bytes of room).
    pub fn seal_owed(&mut self, out: &mut [u8], end: &mut usize) -> io::Result<()> {
        if let Some(desc) = self.alert_owed.take() {
            self.seal_record(CT_ALERT, &[1, desc], out, end)?;
        }
        Ok(())
    }

    /// A close_notify alert, sealed into `out[*end..]`.
    pub fn seal_close_notify(&mut self, out: &mut [u8], end: &mut usize) -> io::Result<()> {
        self.seal_record(CT_ALERT, &[1, 0], out, end)
    }
}

/// TLS 1.2 additional data: sequence, type, version, plaintext length.
fn tls12_aad(seq: u64, ct: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = ct;
    a[9] = 3;
    a[10] = 3;
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}
