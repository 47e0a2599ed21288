//! Zero-copy send of RAM-tier bodies: arena pages ─vmsplice→ pipe ─splice→ socket.
//!
//! The socket's buffers reference the RAM tier arena's pages instead of a copy of the body (what
//! sendfile gives nginx from its page cache); the storage side guarantees a held span's pages are
//! never rewritten (see `arrow_storage::ram_tier`). Both steps are plain non-blocking system calls
//! on the shard's thread (io_uring has no vmsplice, and its splice always goes through a kernel
//! worker): vmsplice into an empty pipe never waits, and pipe → socket runs with the socket
//! switched to O_NONBLOCK for the call; when the socket is full the task waits for POLLOUT through
//! the ring (`TcpStream::writable`) and goes on. Pipes come from a small per-thread (per-shard)
//! pool.
//!
//! ```text
//!   RamSpan(bytes) ─ vmsplice(window → pipe, ≤ pipe capacity) ─┐
//!        ▲                                                     │
//!        └── next window ◀── splice(pipe → socket) ◀─ writable() ◀─┘ (EAGAIN)
//! ```

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use arrow_storage::RamSpan;

use crate::pace::Pace;

/// Pipe capacity asked for (F_SETPIPE_SZ); the kernel's default (64 KiB) is kept if refused.
const PIPE_BYTES: usize = 1 << 20;
/// Idle pipes kept per shard; more are created while sends are in flight, and closed after.
const IDLE_PIPES_MAX: usize = 32;

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity_bytes: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptor.
        let set = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as libc::c_int,
            )
        };
        let capacity_bytes = if set > 0 {
            set as usize
        } else {
            // SAFETY: as above.
            let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            if got > 0 {
                got as usize
            } else {
                4096
            }
        };
        Ok(Pipe {
            read,
            write,
            capacity_bytes,
        })
    }
}

thread_local! {
    static IDLE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

fn take_pipe() -> io::Result<Pipe> {
    match IDLE.with(|p| p.borrow_mut().pop()) {
        Some(p) => Ok(p),
        None => Pipe::new(),
    }
}

/// Only empty pipes go back to the pool; one left holding bytes (an aborted send) is closed.
fn return_pipe(pipe: Pipe) {
    IDLE.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < IDLE_PIPES_MAX {
            p.push(pipe);
        }
    });
}

/// Restores the socket's file status flags when the send ends, however it ends.
struct NonBlocking {
    fd: RawFd,
    flags: libc::c_int,
}

impl NonBlocking {
    fn set(fd: RawFd) -> io::Result<NonBlocking> {
        // SAFETY: fcntl on a descriptor the caller's stream keeps open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking { fd, flags })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: restores the flags read in `set` on the same, still open, descriptor.
        unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
    }
}

/// Hand `bytes`' pages to the pipe (referenced, not copied); returns how many bytes it took.
fn vmsplice(pipe: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: one iovec over a live slice; without SPLICE_F_GIFT the kernel only reads the pages.
    let n = unsafe { libc::vmsplice(pipe, &iov, 1, libc::SPLICE_F_NONBLOCK) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn splice_to_socket(pipe: RawFd, sock: RawFd, len: usize, more: bool) -> io::Result<usize> {
    let mut flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    if more {
        flags |= libc::SPLICE_F_MORE;
    }
    // SAFETY: valid descriptors held open by the caller; no offsets (pipe and socket).
    let n = unsafe {
        libc::splice(
            pipe,
            std::ptr::null_mut(),
            sock,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Send `head` then `span` on `stream`, the span without copying it; fails with TimedOut if the
/// socket accepts nothing for `timeout` (the same bound as a copying write). The head goes out
/// with MSG_MORE, so it shares its first segment with the body.
pub async fn send_span(
    stream: &mut monoio::net::TcpStream,
    head: Vec<u8>,
    span: &RamSpan,
    timeout: Duration,
    mut pace: Option<&mut Pace>,
) -> io::Result<()> {
    let sock = stream.as_raw_fd();
    // SAFETY: a valid socket and a live buffer of head.len() bytes.
    let n = unsafe {
        libc::send(
            sock,
            head.as_ptr().cast(),
            head.len(),
            libc::MSG_DONTWAIT | libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    let sent = if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(e);
        }
        0
    } else {
        n as usize
    };
    if sent < head.len() {
        use monoio::io::AsyncWriteRentExt;
        let rest = head[sent..].to_vec();
        match monoio::time::timeout(timeout, stream.write_all(rest)).await {
            Ok((r, _)) => r.map(|_| ())?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    let pipe = take_pipe()?;
    let bytes = span.as_slice();
    let mut done = 0usize;
    let mut in_pipe = 0usize;
    let result: io::Result<()> = async {
        let mut guard = Some(NonBlocking::set(sock)?);
        let mut last_progress = Instant::now();
        while done < bytes.len() || in_pipe > 0 {
            if in_pipe == 0 {
                let want = (bytes.len() - done).min(pipe.capacity_bytes);
                let n = vmsplice(pipe.write.as_raw_fd(), &bytes[done..done + want])?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                done += n;
                in_pipe = n;
            }
            let more = done < bytes.len();
            match splice_to_socket(pipe.read.as_raw_fd(), sock, in_pipe, more) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    in_pipe -= n;
                    last_progress = Instant::now();
                    if let Some(p) = pace.as_deref_mut() {
                        p.sent(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = timeout.saturating_sub(last_progress.elapsed());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    // Wake at the end of the pacing window too, to check the delivery rate.
                    let left = match pace.as_deref() {
                        Some(p) => {
                            left.min(p.window_end().saturating_duration_since(Instant::now()))
                        }
                        None => left,
                    };
                    // Blocking again while the ring polls, so no other op sees O_NONBLOCK.
                    drop(guard.take());
                    let ready = monoio::time::timeout(left, stream.writable(false)).await;
                    if let Some(p) = pace.as_deref_mut() {
                        p.check()?;
                    }
                    if let Ok(r) = ready {
                        r?;
                    }
                    guard = Some(NonBlocking::set(sock)?);
                }
                Err(e) => return Err(e),
            }
        }
        drop(guard);
        Ok(())
    }
    .await;
    if in_pipe == 0 {
        return_pipe(pipe);
    }
    result
}
