//! Socket reads shared by the viewer side (`conn.rs`) and the origin client (`origin.rs`).

use std::io;

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

/// Growth step of a read buffer.
pub const READ_BYTES: usize = 16 * 1024;

/// Read more bytes after those already in `buf` (growing it by `READ_BYTES` when nearly full).
pub async fn read_more(stream: &mut TcpStream, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    read_more_by(stream, buf, READ_BYTES).await
}

/// [`read_more`] with the growth step given.
pub async fn read_more_by(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    grow_bytes: usize,
) -> (io::Result<usize>, Vec<u8>) {
    let len = buf.len();
    if buf.capacity() - len < grow_bytes / 16 {
        buf.reserve(grow_bytes);
    }
    let slice = monoio::buf::IoBufMut::slice_mut(buf, len..);
    let (res, slice) = stream.read(slice).await;
    (res, slice.into_inner())
}

/// A connection's byte stream: the socket, and the TLS session over it when there is one.
pub struct Transport {
    pub stream: TcpStream,
    pub tls: Option<Box<crate::tls::Session>>,
    /// Cancels a keep-alive connection's posted read when it parks (made at the first wait,
    /// kept for the connection's life).
    pub idle_canceller: Option<monoio::io::Canceller>,
}

impl Transport {
    pub fn plain(stream: TcpStream) -> Transport {
        Transport {
            stream,
            tls: None,
            idle_canceller: None,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// [`read_more`] of plaintext: through the TLS session when there is one.
    pub async fn read_more(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.read_more_by(buf, READ_BYTES).await
    }

    pub async fn read_more_by(
        &mut self,
        buf: Vec<u8>,
        grow_bytes: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        match self.tls.as_mut() {
            Some(t) => t.read_plain(&mut self.stream, buf).await,
            None => read_more_by(&mut self.stream, buf, grow_bytes).await,
        }
    }

    /// Write all of `data` (encrypted when TLS), at most `timeout` without progress.
    pub async fn write_all(
        &mut self,
        data: Vec<u8>,
        timeout: std::time::Duration,
    ) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(t) => {
                for w in data.chunks(crate::tls::WINDOW_BYTES) {
                    t.encrypt(w)?;
                    t.flush(&mut self.stream, timeout).await?;
                }
                Ok(())
            }
            None => {
                use monoio::io::AsyncWriteRentExt;
                match monoio::time::timeout(timeout, self.stream.write_all(data)).await {
                    Ok((r, _)) => r.map(|_| ()),
                    Err(_) => Err(io::ErrorKind::TimedOut.into()),
                }
            }
        }
    }

    /// Send a TLS close_notify (best effort, bounded by `timeout`); nothing for plain sockets.
    pub async fn close(&mut self, timeout: std::time::Duration) {
        if let Some(t) = self.tls.as_mut() {
            t.close();
            let _ = t.flush(&mut self.stream, timeout).await;
        }
    }
}
