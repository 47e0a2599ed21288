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
use std::time::{Duration, Instant};

use arrow_cluster::NodeView;

use crate::cache::{stream_origin_response, Outcome};
use crate::cluster_link::{Route, PULL_HEADER, SNAPSHOT_TTL};
use crate::ctx::ShardCtx;
use crate::http::Request;
use crate::keys::Keys;
use crate::metrics::CacheResult;
use crate::sink::Sink;

impl ShardCtx {
    fn cluster_nodes(&self) -> Option<Rc<Vec<NodeView>>> {
        let link = self.node.cluster.as_ref()?;
        let mut c = self.route_cache.borrow_mut();
        if c.at.is_none_or(|t| t.elapsed() > SNAPSHOT_TTL) {
            let now = Instant::now();
            c.unreachable.retain(|(_, until)| *until > now);
            let mut nodes = link.handle.table().snapshot();
            // A node that just refused a pull is out for this shard until the table catches up.
            for n in nodes.iter_mut() {
                if c.unreachable.iter().any(|(name, _)| *name == n.name) {
                    n.in_service = false;
                }
            }
            c.nodes = Rc::new(nodes);
            c.at = Some(now);
        }
        Some(c.nodes.clone())
    }

    /// A pull from `node` failed before any response: route around it until the table has had
    /// time to mark it out (or it answers comets again and the entry expires).
    pub fn mark_unreachable(&self, node: &str) {
        let Some(link) = self.node.cluster.as_ref() else {
            return;
        };
        let until = Instant::now() + Duration::from_millis(link.unreachable_ms);
        let mut c = self.route_cache.borrow_mut();
        match c.unreachable.iter_mut().find(|(n, _)| n == node) {
            Some(e) => e.1 = until,
            None => c.unreachable.push((node.to_string(), until)),
        }
        c.at = None;
    }

    /// Is `req` a pull by another node of the cluster? It must carry the pull header naming a
    /// node of the table and come from that node's address: a viewer that sends the header is
    /// still a viewer (admitted, counted and routed as one).
    pub fn is_pull(&self, req: &Request, peer: std::net::IpAddr) -> bool {
        let Some(name) = req.header(PULL_HEADER) else {
            return false;
        };
        let peer = peer.to_canonical();
        self.cluster_nodes().is_some_and(|nodes| {
            nodes.iter().any(|n| {
                n.name.eq_ignore_ascii_case(name) && n.addr.map(|a| a.to_canonical()) == Some(peer)
            })
        })
    }

    /// Decide where a request is served. `admit`: a viewer's first request on its connection
    /// (checked against the brpu guarantee); `pulled`: a verified pull by another node.
    pub fn route(
        &self,
        k: &Keys,
        req: &Request,
        cacheable: bool,
        admit: bool,
        pulled: bool,
    ) -> Route {
        let Some(link) = self.node.cluster.as_ref() else {
            return Route::Local {
                self_serving: true,
                designated: None,
                mirror_from: None,
            };
        };
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
        if admit && !pulled && !link.handle.admit(self.node.users().saturating_sub(1)) {
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
    rule: &crate::config::HostRule,
    rule_idx: usize,
    req: &Request,
    rid: &str,
    host: &str,
    headers: &str,
    body: Vec<u8>,
    keep_alive: bool,
    extra: &str,
    sink: &mut impl Sink,
) -> Outcome {
    let resp = ctx
        .cache
        .origin
        .fetch(
            rule,
            &crate::origin::OriginRequest {
                method: &req.method,
                path_and_query: req.path_and_query(),
                host: rule.origin_host.as_deref().unwrap_or(host),
                extra_headers: headers,
                body: &body,
            },
        )
        .await;
    match resp {
        Ok(r) => {
            ctx.cache.learn_cors(rule_idx, &r.headers);
            let safe = matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE");
            if !safe && (200..400).contains(&r.status) {
                let targets = [
                    Some(req.path_and_query()),
                    r.header("location"),
                    r.header("content-location"),
                ];
                invalidate(ctx, rule, host, targets.into_iter().flatten()).await;
            }
            stream_origin_response(
                r,
                &ctx.node.name,
                keep_alive,
                req.method == "HEAD",
                extra,
                None,
                Some(&crate::freshness::Policy {
                    default_ttl_s: rule.default_ttl_s,
                    heuristic_percent: rule.heuristic_freshness_percent,
                    own_field: &ctx.node.cfg.node.targeted_cache_control,
                    keep_cdn_cache_control: rule.keep_cdn_cache_control,
                }),
                sink,
            )
            .await
        }
        Err(e) => relay_error(ctx, rule_idx, rid, 502, &e.to_string(), keep_alive, sink).await,
    }
}

/// Pull from the designated peer (marked so the peer never forwards it again). `None`: the peer
/// could not be reached or gave no response (connect refused, timeout, reset); nothing was sent
/// to the viewer.
#[allow(clippy::too_many_arguments)]
pub async fn pull_from_peer(
    ctx: &Rc<ShardCtx>,
    req: &Request,
    host: &str,
    node: &str,
    addr: SocketAddr,
    headers: &str,
    keep_alive: bool,
    extra: &str,
    sink: &mut impl Sink,
) -> Option<Outcome> {
    let headers = format!("{headers}{PULL_HEADER}: {}\r\n", ctx.node.name);
    let origin = crate::config::Origin {
        url: format!("http://{node}:{}", addr.port()),
        host_port: host.to_string(),
        addr,
        tls: None,
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
                None,
                sink,
            )
            .await;
            o.result = CacheResult::Peer;
            Some(o)
        }
        Err(e) => {
            // Nothing was sent to the viewer: the caller routes around the node.
            tracing::warn!(node, error = %e, "designated node unreachable; failing over");
            None
        }
    }
}

/// RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the stored responses for
/// the target URI and for the same-host URIs in Location and Content-Location (on this node;
/// the copies on other nodes of the cluster expire by their freshness).
async fn invalidate<'a>(
    ctx: &ShardCtx,
    rule: &crate::config::HostRule,
    host: &str,
    targets: impl Iterator<Item = &'a str>,
) {
    let mut keys = Vec::new();
    for t in targets {
        let Some(path) = same_host_path(t, host) else {
            continue;
        };
        let key = crate::keys::derive(rule, host, path, false).cache_key;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for key in keys {
        let mut removed = 0;
        for tx in &ctx.node.senders {
            let (rtx, rrx) = async_channel::bounded(1);
            let msg = crate::ctx::ShardMsg::Purge {
                key: Some(key.clone()),
                prefix: None,
                reply: rtx,
            };
            if tx.send(msg).await.is_ok() {
                if let Ok(Ok(n)) = rrx.recv().await {
                    removed += n;
                }
            }
        }
        ctx.metrics.invalidations.inc();
        tracing::debug!(key, removed, "invalidated by an unsafe method");
    }
}

/// The path and query of `target` (a path, or an absolute http(s) URL) when it names `host`.
fn same_host_path<'a>(target: &'a str, host: &str) -> Option<&'a str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let name = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (name.eq_ignore_ascii_case(host) && path.starts_with('/')).then_some(path)
}

#[allow(clippy::too_many_arguments)]
async fn relay_error(
    ctx: &ShardCtx,
    rule_idx: usize,
    rid: &str,
    status: u16,
    reason: &str,
    keep_alive: bool,
    sink: &mut impl Sink,
) -> Outcome {
    // The reason names an origin or a node: logged, never shown to the viewer.
    tracing::warn!(
        status,
        reason,
        request_id = rid,
        "relay answered with an error"
    );
    let r = crate::http::error_response(
        status,
        &ctx.node.name,
        crate::http::upstream_failure_text(status),
        keep_alive,
        rid,
        &ctx.cache.cors_of(rule_idx),
    );
    let aborted = sink.send(r, bytes::Bytes::new()).await.is_err();
    Outcome {
        status,
        result: CacheResult::Local,
        body_bytes: 0,
        aborted,
    }
}
