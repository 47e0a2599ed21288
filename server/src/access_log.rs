//! The access log, off the shards' hot path: a shard formats a line and hands it to a bounded
//! queue ([`ACCESS_LOG_QUEUE_LINES`]) with a non-blocking send; a writer thread appends the lines
//! to the file, so a slow disk never stalls a shard. A full queue drops the line and counts it
//! (`arrow_access_log_dropped_total`). `reopen` (SIGUSR1) makes the writer reopen the path, for
//! rotation by rename.
//!
//! Formats (`node.access_log_format`): `combined` — the Combined Log Format (`%h %l %u %t "%r"
//! %>s %b "%{Referer}i" "%{User-agent}i"`) followed by the cache result and the request id —
//! or `json`, one object per line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

/// Lines held for the writer before new ones are dropped.
pub const ACCESS_LOG_QUEUE_LINES: usize = 65_536;

/// Line format of the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Combined = 0,
    Json = 1,
}

impl LogFormat {
    /// `node.access_log_format`'s value ("json", else combined).
    pub fn of(name: &str) -> LogFormat {
        if name == "json" {
            LogFormat::Json
        } else {
            LogFormat::Combined
        }
    }
}

enum Msg {
    Line(String),
    Reopen,
    /// Reopen at another path (None: standard output): a reload changed `node.access_log`.
    ReopenAt(Option<PathBuf>),
    /// Write everything queued before this, then answer.
    Flush(Sender<()>),
}

/// One request as the log records it.
pub struct Entry<'a> {
    pub peer: std::net::IpAddr,
    pub method: &'a str,
    pub target: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`; "-" for a request that could not be parsed.
    pub protocol: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub cache: &'a str,
    pub request_id: &'a str,
}

/// The node's access log (shared by all shards).
pub struct AccessLog {
    tx: Sender<Msg>,
    /// 0: combined, 1: JSON (a reload may switch it).
    format: std::sync::atomic::AtomicU8,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Open `path` ("-": standard output) and start the writer thread.
    pub fn open(path: &str, format: LogFormat) -> std::io::Result<AccessLog> {
        let target = if path == "-" {
            None
        } else {
            Some(PathBuf::from(path))
        };
        let out = open_target(target.as_ref())?;
        let (tx, rx) = bounded(ACCESS_LOG_QUEUE_LINES);
        std::thread::Builder::new()
            .name("arrow-access-log".into())
            .spawn(move || writer(rx, target, out))?;
        Ok(AccessLog {
            tx,
            format: std::sync::atomic::AtomicU8::new(format as u8),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queue one line; never blocks (a full queue drops it, counted).
    pub fn log(&self, e: &Entry) {
        let line = if self.format.load(Ordering::Relaxed) == LogFormat::Json as u8 {
            json(e)
        } else {
            combined(e)
        };
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reopen the file (after a rotation by rename).
    pub fn reopen(&self) {
        // A reopen must not be lost to a full queue: wait for room (called off the shards).
        let _ = self.tx.send_timeout(Msg::Reopen, Duration::from_secs(1));
    }

    /// Write from now on to `path` ("-": standard output) in `format` (a reload). If the new
    /// path cannot be opened the writer keeps the old one and logs why.
    pub fn reopen_at(&self, path: &str, format: LogFormat) {
        self.format.store(format as u8, Ordering::Relaxed);
        let target = (path != "-").then(|| PathBuf::from(path));
        let _ = self
            .tx
            .send_timeout(Msg::ReopenAt(target), Duration::from_secs(1));
    }

    /// Wait (at most a second) until every line queued so far is written: at shutdown.
    pub fn flush(&self) {
        let (tx, rx) = bounded(1);
        if self
            .tx
            .send_timeout(Msg::Flush(tx), Duration::from_secs(1))
            .is_ok()
        {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn open_target(path: Option<&PathBuf>) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(std::io::stdout()),
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
    })
}

fn writer(rx: Receiver<Msg>, mut path: Option<PathBuf>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Line(l)) => {
                let _ = out.write_all(l.as_bytes());
            }
            Ok(Msg::Reopen) => {
                let _ = out.flush();
                match open_target(path.as_ref()) {
                    Ok(f) => out = std::io::BufWriter::with_capacity(64 * 1024, f),
                    Err(e) => tracing::error!(error = %e, "access log could not be reopened"),
                }
            }
            Ok(Msg::ReopenAt(next)) => {
                let _ = out.flush();
                match open_target(next.as_ref()) {
                    Ok(f) => {
                        out = std::io::BufWriter::with_capacity(64 * 1024, f);
                        path = next;
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        path = ?next,
                        "access log: the reloaded path could not be opened; writing to the old one"
                    ),
                }
            }
            Ok(Msg::Flush(done)) => {
                let _ = out.flush();
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
        if rx.is_empty() {
            let _ = out.flush();
        }
    }
}

/// `[10/Oct/2000:13:55:36 +0000]` (UTC), as Common/Combined Log Format parsers expect.
fn clf_time(now: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(now);
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    t.format(&fmt).unwrap_or_else(|_| "-".into())
}

/// A quoted CLF field: `"` and control bytes escaped as `\xHH`, "-" when absent.
fn quoted(v: Option<&str>) -> String {
    match v {
        None => "\"-\"".into(),
        Some(v) => {
            let mut s = String::with_capacity(v.len() + 2);
            s.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' || c.is_control() {
                    s.push_str(&format!("\\x{:02x}", c as u32 & 0xff));
                } else {
                    s.push(c);
                }
            }
            s.push('"');
            s
        }
    }
}

fn combined(e: &Entry) -> String {
    let request = format!("{} {} {}", e.method, e.target, e.protocol);
    format!(
        "{} - - [{}] {} {} {} {} {} {} {}\n",
        e.peer,
        clf_time(std::time::SystemTime::now()),
        quoted(Some(&request)),
        e.status,
        e.bytes,
        quoted(e.referer),
        quoted(e.user_agent),
        e.cache,
        e.request_id
    )
}

fn json(e: &Entry) -> String {
    let now = time::OffsetDateTime::from(std::time::SystemTime::now());
    let v = serde_json::json!({
        "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "client": e.peer.to_string(),
        "method": e.method,
        "target": e.target,
        "protocol": e.protocol,
        "status": e.status,
        "bytes": e.bytes,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "cache": e.cache,
        "request_id": e.request_id,
    });
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(ua: Option<&'a str>) -> Entry<'a> {
        Entry {
            peer: "192.0.2.7".parse().unwrap(),
            method: "GET",
            target: "/v/a.ts?x=\"1\"",
            protocol: "HTTP/1.0",
            status: 200,
            bytes: 1234,
            referer: Some("https://player.example/"),
            user_agent: ua,
            cache: "HIT",
            request_id: "abc-0-1",
        }
    }

    #[test]
    fn combined_log_format_fields() {
        let l = combined(&entry(Some("hls.js \"1.5\"")));
        assert!(l.starts_with("192.0.2.7 - - ["), "{l}");
        assert!(
            l.contains(" +0000] \"GET /v/a.ts?x=\\x221\\x22 HTTP/1.0\" 200 1234 "),
            "{l}"
        );
        assert!(
            l.contains("\"https://player.example/\" \"hls.js \\x221.5\\x22\" HIT abc-0-1\n"),
            "{l}"
        );
        let t = clf_time(std::time::UNIX_EPOCH + Duration::from_secs(971_186_136));
        assert_eq!(t, "10/Oct/2000:13:55:36 +0000");
        assert!(combined(&entry(None)).contains("\"-\" HIT"));
    }

    #[test]
    fn json_lines() {
        let l = json(&entry(None));
        let v: serde_json::Value = serde_json::from_str(l.trim()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["user_agent"], serde_json::Value::Null);
        assert_eq!(v["request_id"], "abc-0-1");
    }
}
