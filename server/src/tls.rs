//! TLS on the shard's own sockets: rustls's unbuffered state machine, driven by the task that
//! owns the connection over the shard's io_uring (no extra thread, no hop), for viewers
//! (server side) and origins (client side).
//!
//! ```text
//!   socket ─read→ incoming (ciphertext) ─process→ plaintext appended to the request buffer
//!                                       └─handshake records→ out ─send→ socket
//!   response bytes ─encrypt (≤ WINDOW_BYTES at a time)→ out (pooled per shard) ─send→ socket
//! ```
//!
//! Records are encrypted straight into `out`, a buffer taken from a per-shard pool while
//! ciphertext waits to be sent and given back once the socket took it all: no allocation per
//! record, and an idle or stalled connection holds at most one window of ciphertext.
//!
//! Also here: certificates chosen by SNI ([`CertResolver`]: the host rule whose patterns match
//! the name, else the default), session-ticket keys shared by all shards and rotated
//! ([`TicketKeys`]), and the client configuration for `https://` origins.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::{ProducesTickets, ResolvesServerCert, UnbufferedServerConnection};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Plaintext encrypted per step of a large send (four full records).
pub const WINDOW_BYTES: usize = 4 * RECORD_BYTES;
/// Plaintext per record (the TLS maximum).
pub const RECORD_BYTES: usize = 16 * 1024;
/// Ciphertext buffer: a window plus per-record overhead (header, type, tag, TLS 1.2 nonce),
/// plus the few KiB a send may leave waiting before the next window is sealed behind it.
const OUT_BYTES: usize = WINDOW_BYTES + 4 * 64 + 8 * 1024;
/// Ciphertext held before a record completes: one record and a read's worth more.
const INCOMING_MAX: usize = RECORD_BYTES + 2048 + 16 * 1024;
/// Idle ciphertext buffers kept per shard.
const POOL_MAX: usize = 64;

thread_local! {
    static OUT_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Ciphertext buffer bytes held by connections (taken from the pools, not yet given back).
static OUT_HELD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes of ciphertext buffers connections hold now, all shards (`arrow_tls_send_buffer_bytes`):
/// at most about one window per TLS connection with a response in flight.
pub fn send_buffer_bytes() -> u64 {
    OUT_HELD.load(std::sync::atomic::Ordering::Relaxed)
}

fn take_out() -> Vec<u8> {
    let b = OUT_POOL
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; OUT_BYTES]);
    OUT_HELD.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
    b
}

/// Grow a taken buffer to `len` bytes (counted as held).
fn grow(out: &mut Vec<u8>, len: usize) {
    if len > out.len() {
        OUT_HELD.fetch_add(
            (len - out.len()) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        out.resize(len, 0);
    }
}

fn give_out(b: Vec<u8>) {
    OUT_HELD.fetch_sub(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if b.len() != OUT_BYTES {
        return; // grown for an unusual handshake flight: not pooled
    }
    OUT_POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(b);
        }
    });
}

enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
    /// Handed to the kernel ([`Session::into_kernel`]).
    Kernel,
    /// An established server session whose records this crate seals and opens
    /// ([`Session::into_records`]).
    Records(Box<crate::tls_records::Records>),
}

/// Both sides' unbuffered connections, driven by the same code.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// What one pass of the state machine over the received bytes left to do.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// More ciphertext is needed (handshake blocked, or all records read).
    Input,
    /// Both sides closed.
    Closed,
}

/// One TLS connection's state (either side).
pub struct Session {
    side: Side,
    /// Ciphertext received and not yet consumed.
    incoming: Vec<u8>,
    /// Plaintext decrypted while sending (a pipelined request), given out by the next read.
    stash: Vec<u8>,
    /// Ciphertext to send: `out[sent..end]`; the buffer is pooled while empty.
    out: Vec<u8>,
    sent: usize,
    end: usize,
    peer_closed: bool,
    closed: bool,
}

/// Why a handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not within the handshake deadline.
    Timeout,
    /// The peer closed (or reset) before the handshake completed.
    Eof,
    /// A plain HTTP request on a TLS port.
    PlainHttp,
    /// Not TLS, or a TLS error (alert sent or received, bad record, no shared parameters).
    Protocol,
    /// Refused: too many handshakes in flight on this shard.
    Limit,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 5] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Eof,
        HandshakeFailure::PlainHttp,
        HandshakeFailure::Protocol,
        HandshakeFailure::Limit,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Eof => "eof",
            HandshakeFailure::PlainHttp => "plain_http",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Limit => "limit",
        }
    }
}

fn handed_over() -> io::Error {
    io::Error::other("the TLS session was handed to the kernel")
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Run the state machine over `incoming` until it needs more input: plaintext is appended to
/// `plain`, handshake records to `out[*end..]` (grown if needed).
fn drive<C: Unbuffered>(
    conn: &mut C,
    incoming: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    out: &mut Vec<u8>,
    end: &mut usize,
    peer_closed: &mut bool,
) -> io::Result<Next> {
    loop {
        let status = conn.process(&mut incoming[..]);
        let mut discard = status.discard;
        let state = match status.state {
            Ok(s) => s,
            Err(e) => {
                incoming.drain(..discard.min(incoming.len()));
                return Err(tls_err(e));
            }
        };
        let next = match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec.map_err(tls_err)?;
                    discard += rec.discard;
                    plain.extend_from_slice(rec.payload);
                }
                None
            }
            ConnectionState::EncodeTlsData(mut e) => {
                if out.is_empty() {
                    *out = take_out();
                }
                loop {
                    match e.encode(&mut out[*end..]) {
                        Ok(n) => {
                            *end += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => grow(out, *end + required_size),
                        Err(EncodeError::AlreadyEncoded) => break,
                    }
                }
                None
            }
            // The encoded records go out before the next wait for input (the caller flushes
            // whatever `out` holds), which is what "transmitted" asks.
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                None
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                Some(Next::Input)
            }
            ConnectionState::PeerClosed => {
                *peer_closed = true;
                None
            }
            ConnectionState::Closed => Some(Next::Closed),
            // Early data is never enabled; any other state is unknown to this version.
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS state",
                ))
            }
        };
        incoming.drain(..discard.min(incoming.len()));
        if let Some(n) = next {
            return Ok(n);
        }
    }
}

/// Encrypt `data` into `out[*end..]` as application-data records.
fn seal<C: Unbuffered>(
    conn: &mut C,
    data: &[u8],
    out: &mut Vec<u8>,
    end: &mut usize,
    stash: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        // No received bytes are offered here: records that arrive meanwhile wait for the next
        // read (a key update queued by the peer still comes out as EncodeTlsData).
        let status = conn.process(&mut []);
        let state = status.state.map_err(tls_err)?;
        match state {
            ConnectionState::WriteTraffic(mut w) => loop {
                match w.encrypt(data, &mut out[*end..]) {
                    Ok(n) => {
                        *end += n;
                        return Ok(());
                    }
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => grow(out, *end + required_size),
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            },
            ConnectionState::EncodeTlsData(mut e) => loop {
                match e.encode(&mut out[*end..]) {
                    Ok(n) => {
                        *end += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        grow(out, *end + required_size)
                    }
                    Err(EncodeError::AlreadyEncoded) => break,
                }
            },
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    stash.extend_from_slice(rec.map_err(tls_err)?.payload);
                }
            }
            ConnectionState::PeerClosed => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "TLS connection cannot send",
                ))
            }
        }
    }
}

/// Queue a close_notify alert.
fn close_notify<C: Unbuffered>(conn: &mut C, out: &mut Vec<u8>, end: &mut usize) {
    if let Ok(ConnectionState::WriteTraffic(mut w)) = conn.process(&mut []).state {
        if out.len() < *end + 64 {
            grow(out, *end + 64);
        }
        if let Ok(n) = w.queue_close_notify(&mut out[*end..]) {
            *end += n;
        }
    }
}

impl Session {
    pub fn server(config: Arc<ServerConfig>) -> io::Result<Session> {
        let c = UnbufferedServerConnection::new(config).map_err(tls_err)?;
        Ok(Session::with(Side::Server(c)))
    }

    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<Session> {
        let c = UnbufferedClientConnection::new(config, name).map_err(tls_err)?;
        Ok(Session::with(Side::Client(c)))
    }

    fn with(side: Side) -> Session {
        Session {
            side,
            incoming: Vec::new(),
            stash: Vec::new(),
            out: Vec::new(),
            sent: 0,
            end: 0,
            peer_closed: false,
            closed: false,
        }
    }

    fn common(&self) -> Option<&rustls::CommonState> {
        match &self.side {
            Side::Server(c) => Some(c),
            Side::Client(c) => Some(c),
            Side::Kernel | Side::Records(_) => None,
        }
    }

    /// Records are sealed and opened by [`crate::tls_records`] (the session left rustls's).
    pub fn has_records(&self) -> bool {
        matches!(self.side, Side::Records(_))
    }

    pub fn is_handshaking(&self) -> bool {
        self.common().is_some_and(|c| c.is_handshaking())
    }

    pub fn resumed(&self) -> bool {
        self.common().and_then(|c| c.handshake_kind()) == Some(rustls::HandshakeKind::Resumed)
    }

    /// "TLSv1.3" / "TLSv1.2".
    pub fn version(&self) -> &'static str {
        match self.common().and_then(|c| c.protocol_version()) {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "other",
        }
    }

    /// The IANA name of the negotiated suite, e.g. "TLS13_AES_128_GCM_SHA256".
    pub fn cipher(&self) -> &'static str {
        self.common()
            .and_then(|c| c.negotiated_cipher_suite())
            .and_then(|s| s.suite().as_str())
            .unwrap_or("other")
    }

    /// Nothing received and not yet given out, nothing to send, the peer still there: the
    /// connection may wait for its next request holding no buffers ([`Session::release_idle`]).
    pub fn quiet(&self) -> bool {
        self.incoming.is_empty()
            && self.stash.is_empty()
            && self.pending().is_empty()
            && !self.peer_closed
    }

    /// Give back the (empty) ciphertext input buffer while the connection is idle; the next
    /// read takes a fresh one.
    pub fn release_idle(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        if self.stash.is_empty() {
            self.stash = Vec::new();
        }
    }

    /// Ciphertext waiting for the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.sent..self.end]
    }

    /// The socket took `n` more bytes of [`Session::pending`].
    pub fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.sent >= self.end {
            self.sent = 0;
            self.end = 0;
            give_out(std::mem::take(&mut self.out));
        }
    }

    /// Process the ciphertext received so far; plaintext goes to `plain`.
    fn process(&mut self, plain: &mut Vec<u8>) -> io::Result<Next> {
        if !self.stash.is_empty() {
            plain.append(&mut self.stash);
        }
        let (inc, out, end, pc) = (
            &mut self.incoming,
            &mut self.out,
            &mut self.end,
            &mut self.peer_closed,
        );
        let r = match &mut self.side {
            Side::Server(c) => drive(c, inc, plain, out, end, pc),
            Side::Client(c) => drive(c, inc, plain, out, end, pc),
            Side::Records(_) if *pc => {
                // Nothing after close_notify counts (RFC 8446 §6.1).
                inc.clear();
                Ok(Next::Input)
            }
            Side::Records(r) => r.open(&mut inc[..], plain).and_then(|o| {
                inc.drain(..o.used);
                if o.closed {
                    *pc = true;
                    inc.clear();
                }
                if r.owes() {
                    // Answered now (the caller flushes before it waits for input).
                    if out.is_empty() {
                        *out = take_out();
                    }
                    grow(out, *end + 64);
                    r.seal_owed(out, end)?;
                }
                Ok(Next::Input)
            }),
            Side::Kernel => Err(handed_over()),
        };
        if r.as_ref().is_ok_and(|n| *n == Next::Closed) {
            self.closed = true;
        }
        r
    }

    /// Encrypt `data` (at most a few records' worth is usual) into the pending ciphertext.
    pub fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        if self.out.is_empty() {
            self.out = take_out();
        } else if self.sent > 0 {
            // What the socket already took makes room at the front: the buffer stays a window.
            self.out.copy_within(self.sent..self.end, 0);
            self.end -= self.sent;
            self.sent = 0;
        }
        let (out, end, stash) = (&mut self.out, &mut self.end, &mut self.stash);
        match &mut self.side {
            Side::Server(c) => seal(c, data, out, end, stash),
            Side::Client(c) => seal(c, data, out, end, stash),
            Side::Records(r) => {
                grow(out, *end + r.sealed_len(data.len()));
                r.seal(data, out, end)
            }
            Side::Kernel => Err(handed_over()),
        }
    }

    /// Queue a close_notify (sent by the next flush).
    pub fn close(&mut self) {
        if self.out.is_empty() {
            self.out = take_out();
        }
        let (out, end) = (&mut self.out, &mut self.end);
        match &mut self.side {
            Side::Server(c) => close_notify(c, out, end),
            Side::Client(c) => close_notify(c, out, end),
            Side::Records(r) => {
                grow(out, *end + 64);
                let _ = r.seal_close_notify(out, end);
            }
            Side::Kernel => {}
        }
        if self.end == 0 {
            self.advance(0);
        }
    }

    /// Read ciphertext from the socket into `incoming` (bounded); Ok(0) at its end.
    async fn read_socket(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.incoming.len() >= INCOMING_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS record larger than allowed",
            ));
        }
        let buf = std::mem::take(&mut self.incoming);
        let len = buf.len();
        let mut buf = buf;
        if buf.capacity() - len < 4096 {
            buf.reserve(RECORD_BYTES + 2048);
        }
        let (res, slice) = stream
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
            .await;
        self.incoming = slice.into_inner();
        res
    }

    /// Send all pending ciphertext, waiting for room at most `timeout` without progress.
    pub async fn flush(&mut self, stream: &mut TcpStream, timeout: Duration) -> io::Result<()> {
        let mut last = Instant::now();
        while !self.pending().is_empty() {
            let n = try_send(stream, self.pending(), false)?;
            if n > 0 {
                self.advance(n);
                last = Instant::now();
                continue;
            }
            let left = (last + timeout).saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, stream.writable(false)).await {
                Ok(r) => r?,
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        Ok(())
    }

    /// Append the next plaintext bytes to `buf` (waiting for the peer as needed); Ok(0) when
    /// the peer has closed. Handshake records (post-handshake tickets, key updates) are sent on
    /// the way.
    pub async fn read_plain(
        &mut self,
        stream: &mut TcpStream,
        mut buf: Vec<u8>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let before = buf.len();
        loop {
            let next = self.process(&mut buf);
            if !self.pending().is_empty() {
                if let Err(e) = self.flush(stream, Duration::from_secs(10)).await {
                    return (Err(e), buf);
                }
            }
            match next {
                Err(e) => return (Err(e), buf),
                Ok(_) if buf.len() > before => return (Ok(buf.len() - before), buf),
                Ok(Next::Closed) => return (Ok(0), buf),
                Ok(Next::Input) if self.peer_closed => return (Ok(0), buf),
                Ok(Next::Input) => {}
            }
            match self.read_socket(stream).await {
                // An origin's stream ends only with close_notify: a bare FIN could cut a
                // close-delimited body short without anyone noticing (truncation).
                Ok(0) if matches!(self.side, Side::Client(_)) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "TLS stream ended without close_notify",
                        )),
                        buf,
                    )
                }
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Complete the handshake by `deadline`. Application data that arrives with the client's
    /// last flight is appended to `plain`. On the server side, a first read that looks like a
    /// plain HTTP request is reported as such (the caller answers 400).
    pub async fn handshake(
        &mut self,
        stream: &mut TcpStream,
        deadline: Instant,
        plain: &mut Vec<u8>,
    ) -> Result<(), HandshakeFailure> {
        let server = matches!(self.side, Side::Server(_));
        let mut first = server;
        loop {
            let next = self.process(plain);
            if !self.pending().is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, self.flush(stream, left)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(HandshakeFailure::Timeout)
                    }
                    Ok(Err(_)) => return Err(HandshakeFailure::Eof),
                    Err(_) => return Err(HandshakeFailure::Timeout),
                }
            }
            match next {
                Err(_) => return Err(HandshakeFailure::Protocol),
                Ok(Next::Closed) => return Err(HandshakeFailure::Eof),
                Ok(Next::Input) if !self.is_handshaking() => return Ok(()),
                Ok(Next::Input) if self.peer_closed => return Err(HandshakeFailure::Eof),
                Ok(Next::Input) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, self.read_socket(stream)).await {
                Err(_) => return Err(HandshakeFailure::Timeout),
                Ok(Ok(0)) => return Err(HandshakeFailure::Eof),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(HandshakeFailure::Protocol)
                }
                Ok(Err(_)) => return Err(HandshakeFailure::Eof),
            }
            if first {
                first = false;
                if self
                    .incoming
                    .first()
                    .is_some_and(|b| b.is_ascii_uppercase())
                {
                    return Err(HandshakeFailure::PlainHttp);
                }
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.out.is_empty() {
            give_out(std::mem::take(&mut self.out));
        }
    }
}

/// Non-blocking send of as much of `buf` as the socket takes now (Ok(0) when full).
pub fn try_send(stream: &TcpStream, buf: &[u8], more: bool) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    if more {
        flags |= libc::MSG_MORE;
    }
    // SAFETY: a valid socket held open by `stream`, and a live buffer of buf.len() bytes.
    let n = unsafe { libc::send(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// kTLS: the record layer in the kernel

const SOL_TLS: libc::c_int = 282;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
const TCP_ULP: libc::c_int = 31;
const CIPHER_AES_GCM_128: u16 = 51;
const CIPHER_AES_GCM_256: u16 = 52;
const CIPHER_CHACHA20_POLY1305: u16 = 54;

/// Linux's `tls12_crypto_info_aes_gcm_128` (KEY = 16) and `_256` (KEY = 32).
#[repr(C)]
struct CryptoAesGcm<const KEY: usize> {
    version: u16,
    cipher_type: u16,
    iv: [u8; 8],
    key: [u8; KEY],
    salt: [u8; 4],
    rec_seq: [u8; 8],
}

#[repr(C)]
struct CryptoChacha20Poly1305 {
    version: u16,
    cipher_type: u16,
    iv: [u8; 12],
    key: [u8; 32],
    rec_seq: [u8; 8],
}

fn setsockopt_raw(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &[u8],
) -> io::Result<()> {
    // SAFETY: setsockopt on a socket the caller keeps open, with a live buffer of val.len().
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The bytes of a `#[repr(C)]` crypto-info struct.
///
/// # Safety
/// `T` must be plain data without padding (the three crypto-info structs above: two `u16`s then
/// byte arrays, 40, 56 and 56 bytes, as Linux lays them out).
unsafe fn bytes_of<T>(v: &T) -> &[u8] {
    // SAFETY: per the contract, every byte of T is initialised; borrowed for the returned lifetime.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// The explicit-nonce part of a kTLS AES-GCM crypto info. TLS 1.3 (like rustls) forms each
/// record's nonce as iv ⊕ sequence, so the base goes in as it is. For TLS 1.2 the kernel sends
/// this value as the first record's explicit nonce and adds 1 per record, while rustls has used
/// base ⊕ sequence for the records it sealed (the Finished, sequence 0): base + sequence (the
/// next record's sequence) keeps every nonce under the key distinct.
fn gcm_explicit(version: u16, base: &[u8], seq: u64) -> io::Result<[u8; 8]> {
    let base: [u8; 8] = base.try_into().map_err(|_| io::ErrorKind::InvalidInput)?;
    if version == 0x0303 {
        Ok(u64::from_be_bytes(base).wrapping_add(seq).to_be_bytes())
    } else {
        Ok(base)
    }
}

/// Whether this kernel takes the TLS upper-layer protocol: probed on a connected loopback
/// socket. Err says why not (e.g. no `tls` module: ENOENT).
pub fn ktls_probe() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("probe socket: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let c = std::net::TcpStream::connect(addr).map_err(|e| format!("probe connect: {e}"))?;
    let _accepted = l.accept().map_err(|e| format!("probe accept: {e}"))?;
    setsockopt_raw(c.as_raw_fd(), libc::IPPROTO_TCP, TCP_ULP, b"tls")
        .map_err(|e| format!("TCP_ULP \"tls\": {e}"))
}

// The layouts Linux expects (include/uapi/linux/tls.h): no padding, these sizes.
const _: () = assert!(
    std::mem::size_of::<CryptoAesGcm<16>>() == 40
        && std::mem::size_of::<CryptoAesGcm<32>>() == 56
        && std::mem::size_of::<CryptoChacha20Poly1305>() == 56
);

/// An AES-GCM crypto info: the iv's first 4 bytes are the salt, the rest the explicit part.
fn aes_gcm_info<const KEY: usize>(
    version: u16,
    cipher_type: u16,
    key: &[u8],
    iv: &[u8],
    seq: u64,
) -> io::Result<CryptoAesGcm<KEY>> {
    let (salt, explicit) = iv.split_at(4);
    Ok(CryptoAesGcm {
        version,
        cipher_type,
        iv: gcm_explicit(version, explicit, seq)?,
        key: key.try_into().map_err(|_| io::ErrorKind::InvalidInput)?,
        salt: salt.try_into().map_err(|_| io::ErrorKind::InvalidInput)?,
        rec_seq: seq.to_be_bytes(),
    })
}

fn set_crypto(
    fd: std::os::fd::RawFd,
    dir: libc::c_int,
    version: u16,
    seq: u64,
    secrets: &rustls::ConnectionTrafficSecrets,
) -> io::Result<()> {
    use rustls::ConnectionTrafficSecrets as S;
    let rec_seq = seq.to_be_bytes();
    match secrets {
        S::Aes128Gcm { key, iv } => {
            let info: CryptoAesGcm<16> =
                aes_gcm_info(version, CIPHER_AES_GCM_128, key.as_ref(), iv.as_ref(), seq)?;
            // SAFETY: `info` is one of the padding-free crypto-info structs above.
            setsockopt_raw(fd, SOL_TLS, dir, unsafe { bytes_of(&info) })
        }
        S::Aes256Gcm { key, iv } => {
            let info: CryptoAesGcm<32> =
                aes_gcm_info(version, CIPHER_AES_GCM_256, key.as_ref(), iv.as_ref(), seq)?;
            // SAFETY: `info` is one of the padding-free crypto-info structs above.
            setsockopt_raw(fd, SOL_TLS, dir, unsafe { bytes_of(&info) })
        }
        S::Chacha20Poly1305 { key, iv } => {
            let info = CryptoChacha20Poly1305 {
                version,
                cipher_type: CIPHER_CHACHA20_POLY1305,
                iv: iv
                    .as_ref()
                    .try_into()
                    .map_err(|_| io::ErrorKind::InvalidInput)?,
                key: key
                    .as_ref()
                    .try_into()
                    .map_err(|_| io::ErrorKind::InvalidInput)?,
                rec_seq,
            };
            // SAFETY: `info` is one of the padding-free crypto-info structs above.
            setsockopt_raw(fd, SOL_TLS, dir, unsafe { bytes_of(&info) })
        }
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no kTLS cipher for this suite",
        )),
    }
}

/// Why a session stayed in user space, or what went wrong handing it over.
pub enum KernelHandover {
    /// Not handed over (a client session, bytes still buffered): keep it in user space.
    Kept(Box<Session>),
    /// Handed over part way and failed: the connection cannot go on.
    Broken(io::Error),
}

impl Session {
    /// Hand the record layer of a completed server handshake to the kernel (kTLS, TX and RX):
    /// from then on the socket itself encrypts what is written (splice and sendfile included)
    /// and decrypts what is read, and the connection is served like a plain one. Only when
    /// nothing is buffered either way (the tickets went out with the handshake). A record other
    /// than application data arriving later (a key update, close_notify) fails the read, which
    /// closes the connection.
    pub fn into_kernel(self: Box<Self>, stream: &TcpStream) -> Result<(), KernelHandover> {
        use std::os::fd::AsRawFd;
        if !self.incoming.is_empty() {
            return Err(KernelHandover::Kept(self));
        }
        let (secrets, kernel, version, mut rest) = self.extract()?;
        let version: u16 = match version {
            rustls::ProtocolVersion::TLSv1_3 => 0x0304,
            _ => 0x0303,
        };
        let fd = stream.as_raw_fd();
        // A kernel that refuses the ULP or this suite's TX leaves the socket as it was (a ULP
        // without keys passes bytes through): the session goes to the user-space record layer.
        let tx = setsockopt_raw(fd, libc::IPPROTO_TCP, TCP_ULP, b"tls")
            .and_then(|()| set_crypto(fd, TLS_TX, version, secrets.tx.0, &secrets.tx.1));
        if let Err(e) = tx {
            tracing::debug!(error = %e, "kTLS refused this session; user-space records");
            let records = crate::tls_records::Records::new(secrets, kernel)
                .map_err(KernelHandover::Broken)?;
            rest.side = Side::Records(Box::new(records));
            return Err(KernelHandover::Kept(rest));
        }
        // TX is in the kernel now: RX must follow, or the connection cannot go on.
        set_crypto(fd, TLS_RX, version, secrets.rx.0, &secrets.rx.1)
            .map_err(KernelHandover::Broken)?;
        Ok(())
    }

    /// Move a completed server session to this crate's record layer
    /// ([`crate::tls_records`]): records are then sealed straight into the ciphertext buffer and
    /// opened in place, with no allocation per record. The session is kept as it was when its
    /// state does not allow it (a client session, records still buffered).
    pub fn into_records(self: Box<Self>) -> Result<Box<Session>, KernelHandover> {
        let (secrets, kernel, _, mut rest) = self.extract()?;
        let records =
            crate::tls_records::Records::new(secrets, kernel).map_err(KernelHandover::Broken)?;
        rest.side = Side::Records(Box::new(records));
        Ok(rest)
    }

    /// The traffic secrets and the rest of a completed server session (its received bytes).
    #[allow(clippy::type_complexity)]
    fn extract(
        mut self: Box<Self>,
    ) -> Result<
        (
            rustls::ExtractedSecrets,
            rustls::kernel::KernelConnection<rustls::server::ServerConnectionData>,
            rustls::ProtocolVersion,
            Box<Session>,
        ),
        KernelHandover,
    > {
        let version = self.common().and_then(|c| c.protocol_version());
        if !self.pending().is_empty()
            || !self.stash.is_empty()
            || self.is_handshaking()
            || !matches!(self.side, Side::Server(_))
            || !matches!(
                version,
                Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
            )
        {
            return Err(KernelHandover::Kept(self));
        }
        let Side::Server(conn) = std::mem::replace(&mut self.side, Side::Kernel) else {
            unreachable!("checked above");
        };
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(|e| KernelHandover::Broken(tls_err(e)))?;
        Ok((secrets, kernel, version.expect("checked above"), self))
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// Load a PEM certificate chain and its private key (ECDSA, RSA or Ed25519), checking that the
/// key belongs to the first certificate. Errors name the file and the reason.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{}: the key does not belong to the certificate in {}",
            key.display(),
            cert.display()
        ),
        e => format!("{} / {}: {e}", cert.display(), key.display()),
    })?;
    // The leaf must parse as an X.509 end-entity certificate.
    ck.end_entity_cert()
        .map_err(|e| format!("{}: {e}", cert.display()))
        .and_then(|c| {
            webpki_parse(c)
                .map_err(|e| format!("{}: not a usable certificate: {e}", cert.display()))
        })?;
    Ok(Arc::new(ck))
}

fn webpki_parse(c: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    rustls::server::ParsedCertificate::try_from(c).map(|_| ())
}

/// Certificates by SNI: the first host rule whose patterns match the requested name and that
/// has a certificate, else the default certificate (also for clients that send no name).
#[derive(Debug)]
pub struct CertResolver {
    pub by_rule: Vec<(arrow_cluster::KeyRule, Arc<CertifiedKey>)>,
    pub default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            let name = name.trim_end_matches('.');
            if let Some((_, ck)) = self.by_rule.iter().find(|(r, _)| r.matches(name)) {
                return Some(ck.clone());
            }
        }
        self.default.clone()
    }
}

/// The viewer-side TLS in force (swapped whole by a reload).
pub struct TlsServer {
    pub config: Arc<ServerConfig>,
    /// Hand sessions to the kernel after their handshake.
    pub ktls: bool,
    pub handshake_timeout: Duration,
    pub handshakes_in_flight_max: usize,
}

/// What the viewer-side TLS configuration is made of.
pub struct ServerSettings {
    pub resolver: CertResolver,
    /// IANA suite names to allow (empty: rustls's defaults, all AEAD with forward secrecy).
    pub cipher_suites: Vec<String>,
    pub tls12: bool,
    pub tickets: Arc<TicketKeys>,
    pub sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

/// The suite names rustls knows (those `tls.cipher_suites` may list).
pub fn known_suites() -> Vec<&'static str> {
    rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect()
}

pub fn server_config(s: ServerSettings) -> Result<Arc<ServerConfig>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        provider.cipher_suites.retain(|c| {
            c.suite()
                .as_str()
                .is_some_and(|n| s.cipher_suites.iter().any(|w| w == n))
        });
        if provider.cipher_suites.is_empty() {
            return Err(format!(
                "none of {:?} is a known suite ({})",
                s.cipher_suites,
                known_suites().join(", ")
            ));
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(s.resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ticketer = s.tickets;
    cfg.session_storage = s.sessions;
    cfg.max_early_data_size = 0;
    cfg.ignore_client_order = false;
    // Established sessions leave rustls's record layer: to the kernel (kTLS) or to
    // `tls_records`, which need the traffic secrets.
    cfg.enable_secret_extraction = true;
    Ok(Arc::new(cfg))
}

/// Session-ticket keys: AES-256-GCM, one per rotation period (`ticket_rotation_s`); a ticket
/// names its period and opens in that period and the next, then never again. Shared by every
/// shard (one object in the server config), so a session resumes wherever its connection lands.
///
/// - From a key file (`tls.ticket_key_file`): each period's key is derived by HKDF-SHA256 from
///   the file and the period number, so nodes and restarts that share the file derive the same
///   keys with no state. The file is a long-term secret: whoever reads it can open every
///   ticket made under it. Rotate it (replace the file, then reload) as one rotates nginx's
///   ssl_session_ticket_key; a reload that finds new contents starts new keys.
/// - Without a file: each period's key is random, made when the period starts and forgotten two
///   periods later (forward secrecy for tickets), known to this process only.
pub struct TicketKeys {
    /// The key file's bytes; `None`: random keys per period.
    secret: Option<Vec<u8>>,
    rotation_s: u64,
    /// (period, key) of the two most recent periods.
    cache: RwLock<Vec<(u64, Arc<ring::aead::LessSafeKey>)>>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("rotation_s", &self.rotation_s)
            .field("from_file", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

const TICKET_NONCE: usize = 12;

impl TicketKeys {
    /// Keys derived from `secret` (a key file's bytes).
    pub fn new(secret: Vec<u8>, rotation_s: u64) -> TicketKeys {
        TicketKeys::with(Some(secret), rotation_s)
    }

    /// Random keys per period (tickets survive neither a restart nor another node).
    pub fn random(rotation_s: u64) -> TicketKeys {
        TicketKeys::with(None, rotation_s)
    }

    fn with(secret: Option<Vec<u8>>, rotation_s: u64) -> TicketKeys {
        TicketKeys {
            secret,
            rotation_s: rotation_s.max(1),
            cache: RwLock::new(Vec::new()),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// Keys from a file of at least 32 random bytes (`openssl rand 80 > file`, as for nginx's
    /// ssl_session_ticket_key).
    pub fn from_file(path: &Path, rotation_s: u64) -> Result<TicketKeys, String> {
        let s = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if s.len() < 32 {
            return Err(format!(
                "{}: needs at least 32 random bytes, has {}",
                path.display(),
                s.len()
            ));
        }
        Ok(TicketKeys::new(s, rotation_s))
    }

    /// Whether these keys come from exactly `secret` (a reload keeps them then) and rotate
    /// every `rotation_s`.
    pub fn same_source(&self, secret: Option<&[u8]>, rotation_s: u64) -> bool {
        self.secret.as_deref() == secret && self.rotation_s == rotation_s.max(1)
    }

    /// Whether `other` would make the same keys as these.
    pub fn same_source_as(&self, other: &TicketKeys) -> bool {
        other.same_source(self.secret.as_deref(), self.rotation_s)
    }

    fn period_now(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        now / self.rotation_s
    }

    /// The key of `period`: derived (key file) or, without a file, made when a period newer
    /// than every kept one starts; `None` for a period whose random key is gone.
    fn key(&self, period: u64) -> Option<Arc<ring::aead::LessSafeKey>> {
        if let Some((_, k)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(p, _)| *p == period)
        {
            return Some(k.clone());
        }
        let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k)) = c.iter().find(|(p, _)| *p == period) {
            return Some(k.clone());
        }
        let mut bytes = [0u8; 32];
        match &self.secret {
            Some(secret) => {
                let salt =
                    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"arrow session tickets v1");
                let info = period.to_be_bytes();
                let info = [&info[..]];
                salt.extract(secret)
                    .expand(&info, ring::hkdf::HKDF_SHA256)
                    .ok()?
                    .fill(&mut bytes)
                    .ok()?;
            }
            None => {
                if c.iter().any(|(p, _)| *p >= period) {
                    return None; // an older period's random key, gone for good
                }
                ring::rand::SecureRandom::fill(&self.rng, &mut bytes).ok()?;
            }
        }
        let key = Arc::new(ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &bytes).ok()?,
        ));
        bytes.fill(0);
        // Keep this period and the one before; older keys are dropped.
        c.retain(|(p, _)| p.saturating_add(1) >= period);
        c.push((period, key.clone()));
        Some(key)
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.rotation_s.min(u32::MAX as u64) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let period = self.period_now();
        let key = self.key(period)?;
        let mut nonce = [0u8; TICKET_NONCE];
        ring::rand::SecureRandom::fill(&self.rng, &mut nonce).ok()?;
        let mut out = Vec::with_capacity(8 + TICKET_NONCE + plain.len() + 16);
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        let aad = ring::aead::Aad::from(period.to_be_bytes());
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            aad,
            &mut body,
        )
        .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < 8 + TICKET_NONCE + 16 {
            return None;
        }
        let period = u64::from_be_bytes(cipher[..8].try_into().ok()?);
        let now = self.period_now();
        if period != now && period.checked_add(1) != Some(now) {
            return None;
        }
        let nonce: [u8; TICKET_NONCE] = cipher[8..8 + TICKET_NONCE].try_into().ok()?;
        let key = self.key(period)?;
        let mut body = cipher[8 + TICKET_NONCE..].to_vec();
        let aad = ring::aead::Aad::from(period.to_be_bytes());
        let plain = key
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                aad,
                &mut body,
            )
            .ok()?
            .len();
        body.truncate(plain);
        Some(body)
    }
}

/// A self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses), as PEM
/// (certificate, private key): what `arrow demo --tls` serves.
pub fn self_signed(names: &[&str]) -> Result<(String, String), String> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

// ---------------------------------------------------------------------------------------------
// Origins

/// The client configuration for `https://` origins: verified against the system's roots, or
/// against the CA certificates in `ca_file` only. ALPN http/1.1; sessions resumed.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", p.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate in the file", p.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err("no system root certificates found (set origin_ca_file)".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ticket_keys_are_per_period_and_forgotten() {
        let k = TicketKeys::random(3600);
        let t = k.encrypt(b"state").unwrap();
        assert_eq!(k.decrypt(&t).unwrap(), b"state");
        // Another process's random keys open nothing of these.
        assert!(TicketKeys::random(3600).decrypt(&t).is_none());
        // A ticket naming the last period there is does not overflow.
        let mut last = t.clone();
        last[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(k.decrypt(&last).is_none());
        let now = k.period_now();
        let a = k.key(now).unwrap();
        assert!(Arc::ptr_eq(&a, &k.key(now).unwrap()), "one key per period");
        let b = k.key(now + 1).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        let _c = k.key(now + 2).unwrap();
        // Two periods on, the first period's key is gone and is not made again.
        assert!(k.key(now).is_none());
    }

    #[test]
    fn ktls_tls12_gcm_nonces_start_after_the_records_rustls_sealed() {
        let base = [0xff, 0, 0, 0, 0, 0, 0, 0xfe];
        // TLS 1.2: the kernel counts up from this; rustls used base ⊕ 0 for sequence 0.
        let n = gcm_explicit(0x0303, &base, 1).unwrap();
        assert_eq!(u64::from_be_bytes(n), u64::from_be_bytes(base) + 1);
        assert_ne!(n, base);
        // TLS 1.3: the kernel XORs the sequence itself, as rustls does.
        assert_eq!(gcm_explicit(0x0304, &base, 1).unwrap(), base);
    }

    #[test]
    fn tickets_open_in_their_period_and_the_next_only() {
        let k = TicketKeys::new(vec![7u8; 32], 3600);
        let t = k.encrypt(b"session state").unwrap();
        assert_eq!(k.decrypt(&t).unwrap(), b"session state");
        // Another holder of the same secret (another shard, node or run) opens it.
        let k2 = TicketKeys::new(vec![7u8; 32], 3600);
        assert_eq!(k2.decrypt(&t).unwrap(), b"session state");
        // A different secret does not; nor a tampered ticket.
        assert!(TicketKeys::new(vec![8u8; 32], 3600).decrypt(&t).is_none());
        let mut bad = t.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.decrypt(&bad).is_none());
        // A ticket two periods old is refused.
        let mut old = t.clone();
        let p = u64::from_be_bytes(old[..8].try_into().unwrap()) - 2;
        old[..8].copy_from_slice(&p.to_be_bytes());
        assert!(k.decrypt(&old).is_none());
        assert!(k.decrypt(&t[..10]).is_none());
    }
}
