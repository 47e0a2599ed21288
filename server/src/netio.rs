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
