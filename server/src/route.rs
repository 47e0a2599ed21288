//! Cluster routing of a request: self-serving, pull from the designated peer, or overflow —
//! and the two relays that do not touch the cache (pass to origin, pull from peer).
//!
//! cluster key → table snapshot (cached ≤ 100 ms per shard) → `placement::designated`
//! (weighted rendezvous over in-service nodes that admit at the guarantee) →
//!   none admits        → overflow (302 to the CDN), or self when no CDN is configured
//!   self / mirroring   → local cache
//!   other              → pull from it, marked with `X-Arrow-Pull` so it is never forwarded again

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use arrow_cluster::NodeView;

use crate::cluster_link::{Route, PULL_HEADER, SNAPSHOT_TTL};
use crate::ctx::ShardCtx;
use crate::http::Request;
use crate::keys::Keys;
use crate::metrics::CacheResult;
use crate::serve::{stream_origin_response, Outcome};
use crate::sink::Sink;

impl ShardCtx {
    fn cluster_nodes(&self) -> Option<Rc<Vec<NodeView>>> {
        let link = self.node.cluster.as_ref()?;
        let mut c = self.route_cache.borrow_mut();
        if c.at.is_none_or(|t| t.elapsed() > SNAPSHOT_TTL) {
            c.nodes = Rc::new(link.handle.table().snapshot());
            c.at = Some(Instant::now());
        }
        Some(c.nodes.clone())
    }

    /// Decide where a request is served.
    pub fn route(
        &self,
        k: &Keys,
        req: &Request,
        cacheable: bool,
        first_on_connection: bool,
    ) -> Route {
        let Some(link) = self.node.cluster.as_ref() else {
            return Route::Local {
                self_serving: true,
                designated: None,
                mirror_from: None,
            };
        };
        let pulled = req.header(PULL_HEADER).is_some();
        let Some(nodes) = self.cluster_nodes() else {
            return Route::Local {
                self_serving: true,
                designated: None,
                mirror_from: None,
            };
        };
        let overflow = |ctx: &ShardCtx| -> Option<Route> {
            let o = link.overflow.as_ref()?;
            ctx.metrics.overflow.inc();
            Some(Route::Overflow {
                location: format!("{}://{}{}", o.scheme, o.cdn_host, req.path_and_query()),
            })
        };
        // Admission of a new viewer on this node (never for intra-cluster pulls).
        if first_on_connection && !pulled && !link.handle.admit(self.node.users().saturating_sub(1))
        {
            if let Some(r) = overflow(self) {
                return r;
            }
        }
        if pulled || !cacheable {
            return Route::Local {
                self_serving: true,
                designated: None,
                mirror_from: None,
            };
        }
        match arrow_cluster::designated(&nodes, &k.cluster_key, link.guarantee_bps) {
            None => overflow(self).unwrap_or(Route::Local {
                self_serving: true,
                designated: None,
                mirror_from: None,
            }),
            Some(n) if n.name == self.node.name => Route::Local {
                self_serving: true,
                designated: Some(n.name.clone()),
                mirror_from: None,
            },
            Some(n) => {
                let peer = n
                    .addr
                    .filter(|_| n.http_port != 0)
                    .map(|ip| SocketAddr::new(ip, n.http_port));
                match peer {
                    // Mirroring: keep a local copy, filled from the designated node.
                    Some(addr) if link.handle.mirroring() => Route::Local {
                        self_serving: false,
                        designated: Some(n.name.clone()),
                        mirror_from: Some(addr),
                    },
                    Some(addr) => Route::Peer {
                        node: n.name.clone(),
                        addr,
                    },
                    None => Route::Local {
                        self_serving: false,
                        designated: Some(n.name.clone()),
                        mirror_from: None,
                    },
                }
            }
        }
    }
}

/// Relay an uncacheable request to the host rule's origins.
#[allow(clippy::too_many_arguments)]
pub async fn pass_to_origin(
    ctx: &Rc<ShardCtx>,
    rule_idx: usize,
    req: &Request,
    host: &str,
    body: Vec<u8>,
    keep_alive: bool,
    extra: &str,
    sink: &mut impl Sink,
) -> Outcome {
    let rule = &ctx.node.cfg.hosts[rule_idx];
    let headers = forwarded_headers(req, None);
    let resp = ctx
        .cache
        .origin
        .fetch(
            rule,
            &crate::origin::OriginRequest {
                method: &req.method,
                path_and_query: req.path_and_query(),
                host: rule.origin_host.as_deref().unwrap_or(host),
                extra_headers: &headers,
                body: &body,
            },
        )
        .await;
    match resp {
        Ok(r) => {
            stream_origin_response(
                r,
                &ctx.node.name,
                keep_alive,
                req.method == "HEAD",
                extra,
                None,
                sink,
            )
            .await
        }
        Err(e) => relay_error(ctx, 502, &e.to_string(), keep_alive, sink).await,
    }
}

/// Pull from the designated peer (marked so the peer never forwards it again).
#[allow(clippy::too_many_arguments)]
pub async fn pull_from_peer(
    ctx: &Rc<ShardCtx>,
    req: &Request,
    host: &str,
    node: &str,
    addr: SocketAddr,
    keep_alive: bool,
    extra: &str,
    sink: &mut impl Sink,
) -> Outcome {
    let headers = forwarded_headers(req, Some(&ctx.node.name));
    let origin = crate::config::Origin {
        url: format!("http://{node}:{}", addr.port()),
        host_port: host.to_string(),
        addr,
    };
    let resp = ctx
        .cache
        .origin
        .fetch_one(
            &origin,
            &crate::origin::OriginRequest {
                method: &req.method,
                path_and_query: req.path_and_query(),
                host,
                extra_headers: &headers,
                body: &[],
            },
        )
        .await;
    match resp {
        Ok(r) => {
            let label = r.header("x-cache").map(|v| format!("PEER-{v}"));
            let mut o = stream_origin_response(
                r,
                &ctx.node.name,
                keep_alive,
                req.method == "HEAD",
                extra,
                label.as_deref(),
                sink,
            )
            .await;
            o.result = CacheResult::Peer;
            o
        }
        Err(e) => {
            relay_error(
                ctx,
                502,
                &format!("designated node {node}: {e}"),
                keep_alive,
                sink,
            )
            .await
        }
    }
}

async fn relay_error(
    ctx: &ShardCtx,
    status: u16,
    reason: &str,
    keep_alive: bool,
    sink: &mut impl Sink,
) -> Outcome {
    // The reason names an origin or a node: logged, never shown to the viewer.
    tracing::warn!(status, reason, "relay answered with an error");
    let r = crate::http::simple_response(
        status,
        &ctx.node.name,
        crate::http::upstream_failure_text(status),
        keep_alive,
    );
    let aborted = sink.send(r, bytes::Bytes::new()).await.is_err();
    Outcome {
        status,
        result: CacheResult::Local,
        body_bytes: 0,
        aborted,
    }
}

/// End-to-end request headers for a relay (hop-by-hop and Host dropped), plus the pull mark.
fn forwarded_headers(req: &Request, pull_by: Option<&str>) -> String {
    const HOP: [&str; 8] = [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "content-length",
    ];
    let mut s = String::new();
    for (n, v) in &req.headers {
        if HOP.iter().any(|h| n.eq_ignore_ascii_case(h)) || n.eq_ignore_ascii_case(PULL_HEADER) {
            continue;
        }
        s.push_str(n);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    if let Some(name) = pull_by {
        s.push_str("X-Arrow-Pull: ");
        s.push_str(name);
        s.push_str("\r\n");
    }
    s.push_str("Via: 1.1 arrow\r\n");
    s
}
