//! The admin listener (served by shard 0): health, Prometheus metrics, purge, disk state and the
//! cluster table. One request per connection. Changing calls need `Authorization: Bearer <token>`.
//!
//!   GET  /health                 200 "ok", 503 while draining
//!   GET  /metrics                Prometheus text
//!   GET  /status                 the cluster table as a person reads it
//!   GET  /disks                  one line per disk
//!   GET  /designate?key=K | ?prefix=P&n=N   designated node per cluster key, one per line
//!   POST /purge?key=K | ?prefix=P  remove one cache key / every key under a prefix
//!   POST /disks/<uuid>/offline|online

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::ctx::{ShardCtx, ShardMsg, ShardStats};
use crate::http;
use crate::sink::{Sink, SocketSink};

const ADMIN_HEAD_BYTES_MAX: usize = 8192;

pub async fn handle(ctx: Rc<ShardCtx>, mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(ADMIN_HEAD_BYTES_MAX);
    let deadline = Duration::from_secs(5);
    let req = loop {
        if buf.len() >= ADMIN_HEAD_BYTES_MAX {
            return;
        }
        let r = monoio::time::timeout(deadline, stream.read(vec![0u8; 2048])).await;
        match r {
            Ok((Ok(n), b)) if n > 0 => buf.extend_from_slice(&b[..n]),
            _ => return,
        }
        match http::parse_request(&buf, 32) {
            Ok(Some(r)) => break r,
            Ok(None) => continue,
            Err(e) => {
                let resp = http::simple_response(e.status, &ctx.node.name, &e.reason, false);
                send(stream, resp).await;
                return;
            }
        }
    };
    let (status, body, content_type) = answer(&ctx, &req).await;
    let mut h = http::HeadWriter::new(status);
    h.header("Server", &ctx.node.name)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Connection", "close");
    let mut out = h.finish();
    if req.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    send(stream, out).await;
}

async fn send(stream: TcpStream, data: Vec<u8>) {
    let mut io = crate::netio::Transport::plain(stream);
    let mut sink = SocketSink::new(&mut io, Duration::from_secs(5));
    let _ = sink.send(data, Bytes::new()).await;
}

fn authorized(ctx: &ShardCtx, req: &http::Request) -> bool {
    let Some(token) = ctx.node.cfg.node.admin_token.as_deref() else {
        return false;
    };
    let Some(given) = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant-time comparison.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn answer(ctx: &Rc<ShardCtx>, req: &http::Request) -> (u16, String, &'static str) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let target = req.path_and_query();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (req.method.as_str(), path) {
        ("GET" | "HEAD", "/health") => {
            if ctx.node.shutting_down() {
                (503, "draining\n".into(), TEXT)
            } else {
                (200, format!("ok {}\n", ctx.node.name), TEXT)
            }
        }
        ("GET" | "HEAD", "/metrics") => {
            let stats = gather(ctx).await;
            let disks: Vec<_> = stats.iter().flat_map(|s| s.disks.iter()).collect();
            let disks: Vec<crate::metrics::DiskLine> = disks
                .into_iter()
                .map(|d| crate::metrics::DiskLine {
                    id: d.id.clone(),
                    path: d.path.clone(),
                    ..*d
                })
                .collect();
            let ram: Vec<_> = stats
                .iter()
                .filter_map(|s| s.ram.as_ref())
                .map(|r| crate::metrics::RamLine { ..*r })
                .collect();
            let mut extra = ctx
                .node
                .cluster
                .as_ref()
                .map(|c| c.metrics_text())
                .unwrap_or_default();
            let refused = ctx.node.refused_disks.get().map_or(&[][..], |v| &v[..]);
            let opened = ctx.node.disks.get().map_or(0, Vec::len);
            extra.push_str(&format!(
                "# HELP arrow_disks_configured Disks in the configuration, opened or not (compare with arrow_disk_online).\n# TYPE arrow_disks_configured gauge\narrow_disks_configured {}\n",
                opened + refused.len()
            ));
            if !refused.is_empty() {
                extra.push_str("# HELP arrow_disk_refused A configured disk refused at start (see /disks for the reason).\n# TYPE arrow_disk_refused gauge\n");
                for r in refused {
                    let l = format!(
                        "disk=\"refused\",path=\"{}\",shard=\"{}\"",
                        r.path.replace('"', "'"),
                        r.shard
                    );
                    extra.push_str(&format!("arrow_disk_refused{{{l}}} 1\n"));
                }
            }
            if let Some(log) = ctx.node.access_log.get() {
                extra.push_str(&format!(
                    "# HELP arrow_access_log_dropped_total Access log lines dropped because the log writer fell behind.\n# TYPE arrow_access_log_dropped_total counter\narrow_access_log_dropped_total {}\n",
                    log.dropped()
                ));
            }
            if let Some(d) = ctx.node.dns_stats.get() {
                crate::dns_link::metrics_text(&d.snapshot(), &mut extra);
            }
            (
                200,
                crate::metrics::render(
                    &ctx.node.metrics,
                    &disks,
                    &ram,
                    &extra,
                    ctx.node.tls.load().as_ref().is_some_and(|t| t.ktls),
                ),
                "text/plain; version=0.0.4",
            )
        }
        ("GET" | "HEAD", "/status") => match &ctx.node.cluster {
            Some(c) => (200, c.status_text(), TEXT),
            None => (
                200,
                format!("{} (no cluster configured)\n", ctx.node.name),
                TEXT,
            ),
        },
        ("GET" | "HEAD", "/designate") => {
            // The designated node of `n` cluster keys `<prefix><i>` (or of `key`), one per line:
            // lets an operator (and the cluster tests) check that every node agrees.
            let Some(c) = &ctx.node.cluster else {
                return (404, "no cluster configured\n".into(), TEXT);
            };
            let nodes = c.handle.table().snapshot();
            let keys: Vec<String> = match (param("key"), param("prefix")) {
                (Some(k), _) => vec![k],
                (None, Some(p)) => {
                    let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(1000);
                    if n > 100_000 {
                        return (400, "n is at most 100000\n".into(), TEXT);
                    }
                    (0..n).map(|i| format!("{p}{i}")).collect()
                }
                _ => {
                    return (
                        400,
                        "designate needs ?key=K or ?prefix=P&n=N\n".into(),
                        TEXT,
                    )
                }
            };
            let mut out = String::with_capacity(keys.len() * 24);
            for k in keys {
                let name = arrow_cluster::designated(&nodes, &k, c.guarantee_bps)
                    .map_or("-", |n| n.name.as_str());
                out.push_str(name);
                out.push('\n');
            }
            (200, out, TEXT)
        }
        ("GET" | "HEAD", "/disks") => {
            let mut out = String::new();
            for r in ctx.node.refused_disks.get().into_iter().flatten() {
                out.push_str(&format!(
                    "- shard={} refused path={} reason={:?}\n",
                    r.shard, r.path, r.reason
                ));
            }
            for s in gather(ctx).await {
                for d in s.disks {
                    out.push_str(&format!(
                        "{} shard={} {} path={} size_bytes={} used_bytes={} objects={} errors={}\n",
                        d.id,
                        d.shard,
                        if d.online { "online" } else { "offline" },
                        d.path,
                        d.size_bytes,
                        d.used_bytes,
                        d.objects,
                        d.errors
                    ));
                }
            }
            (200, out, TEXT)
        }
        ("POST" | "PURGE", _) | ("DELETE", _) if !authorized(ctx, req) => (
            401,
            "missing or wrong admin token (Authorization: Bearer <token>)\n".into(),
            TEXT,
        ),
        ("POST", "/reload") => {
            // The same reload as SIGHUP (run by the main thread): this call waits for its
            // outcome and reports it.
            let before = ctx.node.reloads.lock().unwrap_or_else(|e| e.into_inner()).0;
            // SAFETY: signalling this very process; SIGHUP is blocked in every thread and
            // taken by the main thread's sigwait.
            unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                {
                    let r = ctx.node.reloads.lock().unwrap_or_else(|e| e.into_inner());
                    if r.0 != before {
                        return match &r.1 {
                            Ok(m) => (200, format!("{m}\n"), TEXT),
                            Err(m) => (409, format!("reload refused: {m}\n"), TEXT),
                        };
                    }
                }
                if std::time::Instant::now() > deadline {
                    return (504, "the reload did not report in 30 s\n".into(), TEXT);
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        ("POST" | "PURGE", "/purge") => {
            let key = param("key");
            let prefix = param("prefix");
            if key.is_none() && prefix.is_none() {
                return (
                    400,
                    "purge needs ?key=<cache key> or ?prefix=<prefix>\n".into(),
                    TEXT,
                );
            }
            if prefix.as_deref() == Some("") {
                return (
                    400,
                    "an empty prefix would purge everything; refused\n".into(),
                    TEXT,
                );
            }
            let mut total = 0;
            for tx in &ctx.node.senders {
                let (rtx, rrx) = async_channel::bounded(1);
                if tx
                    .send(ShardMsg::Purge {
                        key: key.clone(),
                        prefix: prefix.clone(),
                        reply: rtx,
                    })
                    .await
                    .is_err()
                {
                    return (503, "a shard is not answering\n".into(), TEXT);
                }
                match rrx.recv().await {
                    Ok(Ok(n)) => total += n,
                    Ok(Err(e)) => return (500, format!("purge failed: {e}\n"), TEXT),
                    Err(_) => return (503, "a shard is not answering\n".into(), TEXT),
                }
            }
            (200, format!("purged {total}\n"), TEXT)
        }
        ("POST", p) if p.starts_with("/disks/") => {
            let rest = &p["/disks/".len()..];
            let Some((id, action)) = rest.split_once('/') else {
                return (
                    404,
                    "use /disks/<uuid>/offline, /disks/<uuid>/online or /disks/<uuid>/replace\n"
                        .into(),
                    TEXT,
                );
            };
            let usage =
                "use /disks/<uuid>/offline, /disks/<uuid>/online or /disks/<uuid>/replace\n";
            if !matches!(action, "online" | "offline" | "replace") {
                return (404, usage.into(), TEXT);
            }
            let Some(entry) = ctx
                .node
                .disks
                .get()
                .and_then(|ds| ds.iter().find(|d| d.id.to_string() == id))
            else {
                return (404, format!("no disk {id}\n"), TEXT);
            };
            let (rtx, rrx) = async_channel::bounded(1);
            let msg = match action {
                "replace" => ShardMsg::ReplaceDisk {
                    disk: entry.id,
                    reply: rtx,
                },
                _ => ShardMsg::SetDisk {
                    disk: entry.id,
                    online: action == "online",
                    reply: rtx,
                },
            };
            let _ = ctx.node.senders[entry.shard].send(msg).await;
            match rrx.recv().await {
                Ok(Ok(())) => (200, format!("disk {id} {action}\n"), TEXT),
                Ok(Err(e)) => (409, format!("{e}\n"), TEXT),
                Err(_) => (503, "shard not answering\n".into(), TEXT),
            }
        }
        _ => (
            404,
            format!("no admin endpoint {} {path}\n", req.method),
            TEXT,
        ),
    }
}

async fn gather(ctx: &ShardCtx) -> Vec<ShardStats> {
    let mut out = Vec::new();
    for tx in &ctx.node.senders {
        let (rtx, rrx) = async_channel::bounded(1);
        if tx.send(ShardMsg::Stats { reply: rtx }).await.is_ok() {
            if let Ok(s) = rrx.recv().await {
                out.push(s);
            }
        }
    }
    out
}
