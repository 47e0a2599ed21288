//! `arrow demo`: a single node on a temporary slab file and, unless `--origin` is given, a small
//! built-in media origin, so that `curl` shows a MISS and then a HIT on a fresh machine.
//!
//! The demo origin (plain threads, bounded connections) answers any Host:
//!   `*.m3u8` / `*.mpd` → a small manifest, `max-age=2`
//!   anything else      → deterministic bytes, `?size=N` bytes (default 64 KiB, at most 64 MiB),
//!                        `max-age=300`, an ETag, Last-Modified; honours If-None-Match (304).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DEMO_CONNECTIONS_MAX: usize = 256;
const DEMO_BODY_BYTES_MAX: u64 = 64 << 20;

/// Start the demo origin on `addr`; returns the bound address.
pub fn start_origin(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if open.load(Ordering::Relaxed) >= DEMO_CONNECTIONS_MAX {
                    continue; // dropped: closes the connection
                }
                open.fetch_add(1, Ordering::Relaxed);
                let open = open.clone();
                let _ = std::thread::Builder::new()
                    .name("demo-origin-conn".into())
                    .spawn(move || {
                        let _ = serve_conn(stream);
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
            }
        })?;
    Ok(local)
}

/// The demo body of `path` at offset `i`: a byte that depends on both, so any mix-up shows.
pub fn demo_byte(path: &str, i: u64) -> u8 {
    let seed = path.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let x = (seed ^ i.wrapping_mul(0x9e3779b97f4a7c15)).wrapping_mul(0xff51afd7ed558ccd);
    b'a' + ((x >> 59) as u8 % 26)
}

fn serve_conn(mut s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::with_capacity(8192);
    loop {
        let head_len = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => break n,
                Ok(httparse::Status::Partial) if buf.len() < 65536 => {
                    let mut chunk = [0u8; 8192];
                    let n = s.read(&mut chunk)?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                _ => {
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                    return Ok(());
                }
            }
        };
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hs);
        let _ = req.parse(&buf);
        let method = req.method.unwrap_or("GET").to_string();
        let target = req.path.unwrap_or("/").to_string();
        let inm = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("if-none-match"))
            .map(|h| String::from_utf8_lossy(h.value).to_string());
        buf.drain(..head_len);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let size: u64 = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "size")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(64 * 1024)
            .min(DEMO_BODY_BYTES_MAX);
        let manifest = path.ends_with(".m3u8") || path.ends_with(".mpd");
        let body: Vec<u8> = if manifest {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n");
            for i in 0..5 {
                m.push_str(&format!("#EXTINF:4.0,\n{dir}/seg-{i}.ts?size=262144\n"));
            }
            m.into_bytes()
        } else {
            (0..size).map(|i| demo_byte(path, i)).collect()
        };
        let etag = format!(
            "\"{:016x}-{size}\"",
            body.len() as u64 ^ demo_byte(path, 7) as u64
        );
        let cc = if manifest { "max-age=2" } else { "max-age=300" };
        let ctype = if manifest {
            "application/vnd.apple.mpegurl"
        } else {
            "application/octet-stream"
        };
        if inm.as_deref() == Some(etag.as_str()) {
            write!(
                s,
                "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nCache-Control: {cc}\r\nServer: arrow-demo-origin\r\n\r\n"
            )?;
            continue;
        }
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: {cc}\r\nETag: {etag}\r\nLast-Modified: Sun, 01 Nov 2026 00:00:00 GMT\r\nAccess-Control-Allow-Origin: *\r\nServer: arrow-demo-origin\r\n\r\n",
            body.len()
        )?;
        if method != "HEAD" {
            s.write_all(&body)?;
        }
    }
}
