//! Where a response goes: the [`Sink`] trait, and [`SocketSink`], the viewer's socket.
//!
//! `SocketSink` writes with non-blocking `send` calls and waits for room through the ring
//! (`TcpStream::writable`), so it always knows exactly how many bytes the socket took. That lets
//! it give a body piece back to the caller when the viewer stops reading ([`Sink::send_part`]):
//! a slow viewer then costs no user-space memory while it drains, and a viewer below the
//! minimum delivery rate is closed ([`crate::pace`]).
//!
//! Over TLS the same sink encrypts a window at a time ([`crate::tls::WINDOW_BYTES`]) into the
//! session's pooled ciphertext buffer and sends that; a window once encrypted is committed (it
//! goes out before anything else), so a piece is given back only at a window boundary.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use arrow_storage::{BodyPart, RamSpan};
use bytes::Bytes;

use crate::pace::Pace;

/// Bodies at most this big are sent in the same write as their head.
const COALESCE_BODY_BYTES: usize = 16 * 1024;

/// Where a response goes: the viewer's socket, or a channel back to the viewer's shard.
/// Used only on one shard's thread, so its futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Send `head` (may be empty) then `body` (may be empty), all of it.
    async fn send(&mut self, head: Vec<u8>, body: Bytes) -> io::Result<()>;

    /// True if [`Sink::send_span`] hands spans to a socket without copying them.
    fn can_splice(&self) -> bool {
        false
    }

    /// Send `head` then a RAM-tier span. Sinks that cannot splice copy the span out.
    async fn send_span(&mut self, head: Vec<u8>, span: RamSpan) -> io::Result<()> {
        self.send(head, span.to_bytes()).await
    }

    /// Send `head` then a stored body piece; returns how many body bytes were taken. Fewer than
    /// `part.len()` means the viewer's socket stayed full for the hold time: the caller drops
    /// the piece, waits with [`Sink::writable`] and reads the rest again.
    async fn send_part(&mut self, head: Vec<u8>, part: BodyPart) -> io::Result<u64> {
        let n = part.len();
        match part {
            BodyPart::Span(s) => self.send_span(head, s).await?,
            BodyPart::Bytes(b) => self.send(head, b).await?,
        }
        Ok(n)
    }

    /// Wait until the sink can take more (a socket with room).
    async fn writable(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The local sink: the viewer's socket; small bodies go in the same write as the head.
pub struct SocketSink<'a> {
    pub io: &'a mut crate::netio::Transport,
    /// Longest time without progress.
    pub timeout: Duration,
    /// Delivery rate and hold bounds (viewer responses; None for the node's own short answers).
    pub pace: Option<Pace>,
}

impl<'a> SocketSink<'a> {
    /// A sink with only the no-progress timeout.
    pub fn new(io: &'a mut crate::netio::Transport, timeout: Duration) -> SocketSink<'a> {
        SocketSink {
            io,
            timeout,
            pace: None,
        }
    }

    /// Non-blocking send of `buf[..]` as far as the socket takes it now: Ok(0) when full.
    fn try_send(&mut self, buf: &[u8], more: bool) -> io::Result<usize> {
        let mut flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        if more {
            flags |= libc::MSG_MORE;
        }
        // SAFETY: a valid socket held open by `stream`, and a live buffer of buf.len() bytes.
        let n = unsafe {
            libc::send(
                self.io.stream.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        if n >= 0 {
            if let Some(p) = self.pace.as_mut() {
                p.sent(n as usize);
            }
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        }
    }

    /// Wait for room until `until` (Ok(false) if it passed first), within the no-progress
    /// timeout since `last_progress` and the pacing window.
    async fn wait_room(
        &mut self,
        last_progress: Instant,
        until: Option<Instant>,
    ) -> io::Result<bool> {
        loop {
            let stall_end = last_progress + self.timeout;
            let mut wake = stall_end;
            if let Some(p) = &self.pace {
                wake = wake.min(p.window_end().max(Instant::now()));
            }
            if let Some(u) = until {
                wake = wake.min(u);
            }
            let left = wake.saturating_duration_since(Instant::now());
            let ready = monoio::time::timeout(left, self.io.stream.writable(false)).await;
            if let Some(p) = self.pace.as_mut() {
                p.check()?;
            }
            match ready {
                Ok(r) => {
                    r?;
                    return Ok(true);
                }
                Err(_) => {
                    if Instant::now() >= stall_end {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Send all of `bufs` in order; with `give_up_after`, stop (returning the bytes sent) when
    /// the socket has taken nothing for that long.
    /// `more_last`: more follows the last buffer (MSG_MORE, so a head shares a segment with it).
    async fn send_bufs(
        &mut self,
        bufs: &[&[u8]],
        more_last: bool,
        give_up_after: Option<Duration>,
    ) -> io::Result<u64> {
        let mut sent = 0u64;
        for (i, buf) in bufs.iter().enumerate() {
            let more = i + 1 < bufs.len() || more_last;
            let mut off = 0usize;
            let mut last_progress = Instant::now();
            while off < buf.len() {
                let n = self.try_send(&buf[off..], more)?;
                if n > 0 {
                    off += n;
                    sent += n as u64;
                    last_progress = Instant::now();
                    continue;
                }
                let until = give_up_after.map(|g| last_progress + g);
                if !self.wait_room(last_progress, until).await? {
                    return Ok(sent);
                }
            }
        }
        Ok(sent)
    }

    /// Send the TLS session's pending ciphertext; with `give_up_after`, Ok(false) when the
    /// socket took nothing for that long.
    async fn flush_tls(&mut self, give_up_after: Option<Duration>) -> io::Result<bool> {
        let mut last_progress = Instant::now();
        loop {
            let Some(tls) = self.io.tls.as_mut() else {
                return Ok(true);
            };
            let pending = tls.pending();
            if pending.is_empty() {
                return Ok(true);
            }
            let n = crate::tls::try_send(&self.io.stream, pending, false)?;
            if n > 0 {
                tls.advance(n);
                if let Some(p) = self.pace.as_mut() {
                    p.sent(n);
                }
                last_progress = Instant::now();
                continue;
            }
            let until = give_up_after.map(|g| last_progress + g);
            if !self.wait_room(last_progress, until).await? {
                return Ok(false);
            }
        }
    }

    /// Encrypt and send `head` (always all of it) then `body`, a window at a time; returns the
    /// body bytes taken: all, unless `give_up_after` passed with the socket full (then up to a
    /// window boundary). Encrypted bytes are committed: what the socket has not taken yet goes
    /// out before anything else (the next send, the next read, or the close).
    async fn send_tls(
        &mut self,
        mut head: Vec<u8>,
        body: &[u8],
        give_up_after: Option<Duration>,
    ) -> io::Result<u64> {
        // At most one window waits in user space; a small one (a head) shares the next send.
        const SHARE_BYTES: usize = 4096;
        let waiting = |s: &Self| s.io.tls.as_ref().map_or(0, |t| t.pending().len());
        let mut body = body;
        let mut taken = 0u64;
        if !head.is_empty() {
            // The head's record is filled up with the body's first bytes: a small response is
            // one record, a large one starts with a full record.
            let share = body
                .len()
                .min(crate::tls::RECORD_BYTES.saturating_sub(head.len()));
            head.extend_from_slice(&body[..share]);
            body = &body[share..];
            taken += share as u64;
            if waiting(self) > SHARE_BYTES {
                self.flush_tls(None).await?;
            }
            if let Some(t) = self.io.tls.as_mut() {
                t.encrypt(&head)?;
            }
        }
        for w in body.chunks(crate::tls::WINDOW_BYTES) {
            if waiting(self) > SHARE_BYTES && !self.flush_tls(give_up_after).await? {
                return Ok(taken);
            }
            if let Some(t) = self.io.tls.as_mut() {
                t.encrypt(w)?;
            }
            taken += w.len() as u64;
        }
        self.flush_tls(give_up_after).await?;
        Ok(taken)
    }
}

impl Sink for SocketSink<'_> {
    fn can_splice(&self) -> bool {
        true
    }

    async fn send_span(&mut self, head: Vec<u8>, span: RamSpan) -> io::Result<()> {
        // The span pins its RAM-tier region until the socket has taken it: counted while held.
        let held = span.len();
        if let Some(m) = self.pace.as_ref().and_then(|p| p.metrics()) {
            m.ram_span_send_bytes.add(held);
        }
        let r = if self.io.is_tls() {
            self.send_tls(head, span.as_slice(), None).await.map(|_| ())
        } else {
            crate::splice::send_span(
                &mut self.io.stream,
                head,
                &span,
                self.timeout,
                self.pace.as_mut(),
            )
            .await
        };
        if let Some(m) = self.pace.as_ref().and_then(|p| p.metrics()) {
            m.ram_span_send_bytes.sub(held);
        }
        r
    }

    async fn send(&mut self, mut head: Vec<u8>, body: Bytes) -> io::Result<()> {
        if !head.is_empty() && body.len() <= COALESCE_BODY_BYTES {
            head.extend_from_slice(&body);
            if self.io.is_tls() {
                self.send_tls(head, &[], None).await?;
            } else {
                self.send_bufs(&[&head], false, None).await?;
            }
            return Ok(());
        }
        if self.io.is_tls() {
            self.send_tls(head, &body, None).await?;
            return Ok(());
        }
        self.send_bufs(&[&head, &body], false, None).await?;
        Ok(())
    }

    async fn send_part(&mut self, head: Vec<u8>, part: BodyPart) -> io::Result<u64> {
        match part {
            BodyPart::Span(s) => {
                let n = s.len();
                self.send_span(head, s).await?;
                Ok(n)
            }
            BodyPart::Bytes(b) => {
                // The head always goes whole; the piece only while the viewer keeps reading.
                let hold = self.pace.as_ref().map(|p| p.hold);
                if self.io.is_tls() {
                    return self.send_tls(head, &b, hold).await;
                }
                if !head.is_empty() {
                    self.send_bufs(&[&head], true, None).await?;
                }
                self.send_bufs(&[&b], false, hold).await
            }
        }
    }

    async fn writable(&mut self) -> io::Result<()> {
        let since = Instant::now();
        self.wait_room(since, None).await.map(|_| ())
    }
}
