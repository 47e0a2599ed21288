//! `arrow-bench cluster-sim`: a discrete simulation of an Arrow cluster's placement, using the
//! library's own hashing (`arrow_cluster::designated`, `home`, `ranked`).
//!
//! 1. Classic CNAME: requests for Zipf-popular titles land on uniformly random nodes; a node
//!    that holds no copy pulls from the designated node (intra-cluster forwarding). For each
//!    mirror count i (every title held by its i highest-ranked nodes) the forwarded bytes and
//!    storage used, beside the seed's brpu(i) ∝ 1/(2 − i/n) and storage(i) ∝ 1 + n − i; then
//!    Arrow's popularity-first mirroring (only the hottest titles on every node).
//! 2. Key movement when a node leaves or joins, against the ideal (its weight share), with
//!    modulo hashing for contrast.
//! 3. Load under content-aware DNS: viewers arrive one by one at their title's designated node;
//!    unbounded (home node only) against bounded by the brpu guarantee.
//! 4. Crashes and restarts: a timeline of requests while nodes die and come back, each node
//!    learning of a death only when the dead node's comets have been missing long enough.
//!    Requests that would have failed (designated node dead, not yet marked out) and misses
//!    fetched from the origin by the wrong node (a restarted node that has not heard the
//!    cluster), without and with Arrow's failover and start-up warm-up.

use std::collections::HashSet;
use std::fmt::Write;

use arrow_cluster::{cluster_key, designated, home, ranked, NodeView};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Arguments of `arrow-bench cluster-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterSimArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Titles (cluster keys) in the catalogue.
    #[arg(long, default_value_t = 20_000)]
    pub titles: usize,
    /// Requests of the classic-CNAME part.
    #[arg(long, default_value_t = 200_000)]
    pub requests: usize,
    /// Zipf exponent of title popularity.
    #[arg(long, default_value_t = 0.9)]
    pub zipf_s: f64,
    /// Node egress capacity, bits/s (part 3).
    #[arg(long, default_value_t = 10_000_000_000)]
    pub capacity_bps: u64,
    /// brpu guarantee, bits/s (part 3).
    #[arg(long, default_value_t = 8_000_000)]
    pub guarantee_bps: u64,
    /// Random seed (the run is deterministic for a seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Default for ClusterSimArgs {
    fn default() -> Self {
        ClusterSimArgs {
            nodes: 100,
            titles: 20_000,
            requests: 200_000,
            zipf_s: 0.9,
            capacity_bps: 10_000_000_000,
            guarantee_bps: 8_000_000,
            seed: 1,
        }
    }
}

const TIB: u64 = 1 << 40;

fn node(name: String, weight: u64, capacity_bps: u64) -> NodeView {
    NodeView::fresh(name, weight, capacity_bps)
}

/// Zipf sampler over ranks 0..n by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        100.0 * part / whole
    }
}

/// Runs the three parts and returns the report.
pub fn report(args: &ClusterSimArgs) -> Result<String, String> {
    if args.nodes < 2 || args.titles < 1 || args.requests < 1 {
        return Err("cluster-sim needs --nodes ≥ 2, --titles ≥ 1, --requests ≥ 1".into());
    }
    if args.guarantee_bps == 0 || args.capacity_bps < args.guarantee_bps {
        return Err("cluster-sim needs 0 < --guarantee-bps ≤ --capacity-bps".into());
    }
    let n = args.nodes;
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Storage of 1, 2, 3 or 4 TiB per node (the hashing weight).
    let nodes: Vec<NodeView> = (0..n)
        .map(|j| {
            let weight = rng.gen_range(1..=4) * TIB;
            node(format!("n{j:03}.sim.arrow"), weight, args.capacity_bps)
        })
        .collect();
    let keys: Vec<String> = (0..args.titles)
        .map(|t| cluster_key("foo.com", &format!("/assets/title-{t}")))
        .collect();
    let zipf = Zipf::new(args.titles, args.zipf_s);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster-sim: {n} nodes (1-4 TiB each), {} titles, Zipf s = {}, seed {}",
        args.titles, args.zipf_s, args.seed
    );
    classic_cname(args, &nodes, &keys, &zipf, &mut rng, &mut out);
    key_movement(&nodes, &keys, &mut out);
    bounded_load(args, &nodes, &keys, &zipf, &mut rng, &mut out);
    churn(args, &nodes, &keys, &zipf, &mut rng, &mut out);
    Ok(out)
}

/// Node indices of each title in rank order (home first).
fn rankings(nodes: &[NodeView], keys: &[String]) -> Vec<Vec<u16>> {
    keys.iter()
        .map(|k| {
            ranked(nodes, k)
                .iter()
                .map(|v| index_of(nodes, &v.name) as u16)
                .collect()
        })
        .collect()
}

fn index_of(nodes: &[NodeView], name: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.name == name)
        .expect("a ranked node is in the list")
}

fn classic_cname(
    args: &ClusterSimArgs,
    nodes: &[NodeView],
    keys: &[String],
    zipf: &Zipf,
    rng: &mut StdRng,
    out: &mut String,
) {
    let n = nodes.len();
    let ranks = rankings(nodes, keys);
    // One request = one chunk of 2 MB; every title is 1 GB of storage.
    let chunk_bytes = 2_000_000.0;
    let title_bytes = 1e9;
    let requests: Vec<(usize, usize)> = (0..args.requests)
        .map(|_| (zipf.sample(rng), rng.gen_range(0..n)))
        .collect();
    let _ = writeln!(
        out,
        "\n1. Classic CNAME: {} requests landing on random nodes; every title on its i top-ranked nodes",
        args.requests
    );
    let _ = writeln!(
        out,
        "{:>4} | {:>12} {:>9} | {:>10} {:>14} | {:>11} {:>8} | {:>13}",
        "i",
        "fwd GB",
        "fwd/egr",
        "brpu meas",
        "seed 1/(2-i/n)",
        "storage TB",
        "× i=1",
        "seed (1+n-i)/n"
    );
    let mut mirror_counts: Vec<usize> = [1, 2, 5, 10, 25, 50, 75, 100]
        .into_iter()
        .filter(|&i| i < n)
        .collect();
    mirror_counts.push(n);
    for i in mirror_counts {
        let forwarded = requests
            .iter()
            .filter(|&&(t, landing)| !ranks[t][..i].contains(&(landing as u16)))
            .count() as f64;
        let egress = args.requests as f64;
        let share = forwarded / egress;
        // Delivered per unit of cluster bandwidth, normalised to i = n (no forwarding).
        let brpu_measured = 1.0 / (1.0 + share);
        let brpu_seed = 1.0 / (2.0 - i as f64 / n as f64);
        let storage_bytes = i as f64 * keys.len() as f64 * title_bytes;
        let _ = writeln!(
            out,
            "{:>4} | {:>12.1} {:>8.1}% | {:>10.3} {:>14.3} | {:>11.1} {:>8.1} | {:>13.3}",
            i,
            forwarded * chunk_bytes / 1e9,
            100.0 * share,
            brpu_measured,
            brpu_seed,
            storage_bytes / 1e12,
            i as f64,
            (1 + n - i) as f64 / n as f64,
        );
    }
    let _ = writeln!(
        out,
        "brpu meas = delivered / (delivered + forwarded) bytes; seed storage is the distinct \
         capacity when i nodes mirror one content set,\nmeasured storage is the bytes all copies \
         take (i × catalogue)."
    );
    let _ = writeln!(
        out,
        "\n1b. Popularity-first mirroring (Arrow): the hottest p % of titles on every node, the rest once"
    );
    let _ = writeln!(
        out,
        "{:>6} | {:>9} {:>10} | {:>11} {:>12}",
        "p", "fwd/egr", "brpu meas", "storage TB", "× no mirror"
    );
    for p in [0.0, 0.1, 1.0, 5.0, 10.0, 25.0, 100.0] {
        let hot = ((p / 100.0) * keys.len() as f64).round() as usize;
        let forwarded = requests
            .iter()
            .filter(|&&(t, landing)| t >= hot && ranks[t][0] as usize != landing)
            .count() as f64;
        let share = forwarded / args.requests as f64;
        let copies = hot * n + (keys.len() - hot);
        let _ = writeln!(
            out,
            "{:>5.1}% | {:>8.1}% {:>10.3} | {:>11.1} {:>12.2}",
            p,
            100.0 * share,
            1.0 / (1.0 + share),
            copies as f64 * title_bytes / 1e12,
            copies as f64 / keys.len() as f64,
        );
    }
}

fn homes(nodes: &[NodeView], keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| home(nodes, k).map_or_else(String::new, |n| n.name.clone()))
        .collect()
}

fn key_movement(nodes: &[NodeView], keys: &[String], out: &mut String) {
    let total_weight: u64 = nodes.iter().map(|n| n.weight).sum();
    let before = homes(nodes, keys);
    let k = keys.len() as f64;
    let _ = writeln!(out, "\n2. Key movement ({} keys)", keys.len());
    let _ = writeln!(
        out,
        "{:<36} | {:>8} {:>8} | {:>14}",
        "event", "moved", "ideal", "moved wrongly"
    );
    // Loss of the largest and of the smallest node.
    let largest = (0..nodes.len())
        .max_by_key(|&j| nodes[j].weight)
        .unwrap_or(0);
    let smallest = (0..nodes.len())
        .min_by_key(|&j| nodes[j].weight)
        .unwrap_or(0);
    for lost in [largest, smallest] {
        let mut after_nodes = nodes.to_vec();
        after_nodes[lost].in_service = false;
        let after = homes(&after_nodes, keys);
        let lost_name = &nodes[lost].name;
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let wrong = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && *b != lost_name)
            .count();
        let _ = writeln!(
            out,
            "{:<36} | {:>7.2}% {:>7.2}% | {:>14}",
            format!("lose {} ({} TiB)", lost_name, nodes[lost].weight / TIB),
            pct(moved as f64, k),
            pct(nodes[lost].weight as f64, total_weight as f64),
            wrong
        );
    }
    for weight_tib in [1, 4] {
        let mut after_nodes = nodes.to_vec();
        let name = format!("n{:03}.sim.arrow", nodes.len());
        after_nodes.push(node(name.clone(), weight_tib * TIB, nodes[0].capacity_bps));
        let after = homes(&after_nodes, keys);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let wrong = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && **a != name)
            .count();
        let _ = writeln!(
            out,
            "{:<36} | {:>7.2}% {:>7.2}% | {:>14}",
            format!("join {name} ({weight_tib} TiB)"),
            pct(moved as f64, k),
            pct(
                (weight_tib * TIB) as f64,
                (total_weight + weight_tib * TIB) as f64
            ),
            wrong
        );
    }
    // Contrast: modulo hashing over n then n − 1 nodes.
    let n = nodes.len() as u64;
    let moved_mod = keys
        .iter()
        .filter(|key| {
            let h = arrow_cluster::hrw_hash(key, "");
            h % n != h % (n - 1)
        })
        .count();
    let _ = writeln!(
        out,
        "{:<36} | {:>7.2}% {:>7.2}% | {:>14}",
        "modulo hashing, lose one (contrast)",
        pct(moved_mod as f64, k),
        100.0 / n as f64,
        "-"
    );
    let _ = writeln!(
        out,
        "moved wrongly = keys that moved although their node stayed (loss), or went elsewhere than \
         the new node (join)."
    );
}

fn bounded_load(
    args: &ClusterSimArgs,
    nodes: &[NodeView],
    keys: &[String],
    zipf: &Zipf,
    rng: &mut StdRng,
    out: &mut String,
) {
    let n = nodes.len();
    let per_node_max = args.capacity_bps / args.guarantee_bps;
    let _ = writeln!(
        out,
        "\n3. Content-aware DNS under load: viewers arrive at their title's node; capacity {} \
         Gbit/s, guarantee {} Mbit/s = {} viewers/node",
        args.capacity_bps / 1_000_000_000,
        args.guarantee_bps / 1_000_000,
        per_node_max
    );
    let _ = writeln!(
        out,
        "{:>5} {:<9} | {:>8} {:>8} {:>8} | {:>9} {:>9} | {:>10} {:>9}",
        "load",
        "placement",
        "max/mean",
        "p90/mean",
        "nodes>G",
        "over G %",
        "overflow",
        "fallthru %",
        "titles>1"
    );
    let home_of: Vec<usize> = keys
        .iter()
        .map(|k| home(nodes, k).map_or(0, |v| index_of(nodes, &v.name)))
        .collect();
    for load in [0.5, 0.8, 0.95, 1.1] {
        let viewers = (load * (n as u64 * per_node_max) as f64) as usize;
        let titles: Vec<usize> = (0..viewers).map(|_| zipf.sample(rng)).collect();
        for bounded in [false, true] {
            let mut live = nodes.to_vec();
            let (mut overflow, mut fallthrough) = (0usize, 0usize);
            let mut serving: Vec<HashSet<usize>> = vec![HashSet::new(); keys.len()];
            for &t in &titles {
                let chosen = if bounded {
                    designated(&live, &keys[t], args.guarantee_bps)
                        .map(|v| index_of(&live, &v.name))
                } else {
                    Some(home_of[t])
                };
                match chosen {
                    Some(j) => {
                        live[j].users += 1;
                        if j != home_of[t] {
                            fallthrough += 1;
                        }
                        serving[t].insert(j);
                    }
                    None => overflow += 1,
                }
            }
            let mut users: Vec<u64> = live.iter().map(|v| u64::from(v.users)).collect();
            users.sort_unstable();
            let mean = users.iter().sum::<u64>() as f64 / n as f64;
            let p90 = users[(n * 90 / 100).min(n - 1)] as f64;
            let max = *users.last().unwrap_or(&0) as f64;
            let over_nodes = users.iter().filter(|&&u| u > per_node_max).count();
            let over_viewers: u64 = users.iter().map(|&u| u.saturating_sub(per_node_max)).sum();
            let multi = serving.iter().filter(|s| s.len() > 1).count();
            let _ = writeln!(
                out,
                "{:>4.0}% {:<9} | {:>8.2} {:>8.2} {:>8} | {:>8.1}% {:>9} | {:>9.1}% {:>9}",
                load * 100.0,
                if bounded { "bounded" } else { "home" },
                max / mean.max(1e-9),
                p90 / mean.max(1e-9),
                over_nodes,
                pct(over_viewers as f64, viewers as f64),
                overflow,
                pct(fallthrough as f64, viewers as f64),
                multi
            );
        }
    }
    let _ = writeln!(
        out,
        "over G % = viewers above their node's capacity at the guarantee (they would not get it); \
         overflow = sent to the CDN;\nfallthru = viewers placed on a title's next choice; \
         titles>1 = titles served by more than one node (natural mirrors)."
    );
}

/// Comet interval and missing intervals of the churn timeline (the shipped defaults).
const CHURN_INTERVAL_MS: u64 = 500;
const CHURN_MISSING: u64 = 3;
/// Timeline length and request rate of part 4.
const CHURN_SECONDS: u64 = 120;
const CHURN_REQUESTS_PER_S: u64 = 2_000;

/// Part 4: crashes and restarts. Every 10 s one random node crashes and comes back 5 s later
/// with an empty table (a host reboot). A node marks a dead node out once its comets have been
/// missing for `CHURN_MISSING` intervals plus the phase of its last comet; a restarted node hears
/// every live node within one interval. Counted per policy:
/// - failed: a request routed to a dead designated node with no failover (a 502 before);
/// - extra connects: attempts on a dead node before the next node in placement order serves;
/// - wrong fills: requests a restarted node served as designated node for a key that belongs to
///   another live node (an origin fetch the cluster pays twice) — without warm-up.
fn churn(
    args: &ClusterSimArgs,
    nodes: &[NodeView],
    keys: &[String],
    zipf: &Zipf,
    rng: &mut StdRng,
    out: &mut String,
) {
    let n = nodes.len();
    let ranks = rankings(nodes, keys);
    // Events: (crash time, node, back time).
    let mut outages: Vec<(u64, usize, u64)> = Vec::new();
    let mut t = 5_000;
    while t + 5_000 < CHURN_SECONDS * 1000 {
        outages.push((t, rng.gen_range(0..n), t + 5_000));
        t += 10_000;
    }
    let detect_ms = CHURN_MISSING * CHURN_INTERVAL_MS;
    let dead_at = |node: usize, now: u64| {
        outages
            .iter()
            .any(|&(c, v, b)| v == node && (c..b).contains(&now))
    };
    // Known dead by the viewing node: crashed at least detect + phase ago.
    let known_dead = |node: usize, now: u64, phase: u64| {
        outages
            .iter()
            .any(|&(c, v, b)| v == node && now >= c + detect_ms + phase && now < b)
    };
    let restarted_recently = |node: usize, now: u64| {
        outages
            .iter()
            .any(|&(_, v, b)| v == node && now >= b && now < b + CHURN_INTERVAL_MS)
    };
    let total = CHURN_SECONDS * CHURN_REQUESTS_PER_S;
    let (mut failed, mut extra_connects, mut wrong_fills, mut unserved, mut to_dead) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for r in 0..total {
        let now = r * 1000 / CHURN_REQUESTS_PER_S;
        let via = rng.gen_range(0..n);
        if dead_at(via, now) {
            continue; // the viewer's connection fails before any request: DNS/LB concern
        }
        let title = zipf.sample(rng);
        let phase = rng.gen_range(0..CHURN_INTERVAL_MS);
        let order = &ranks[title];
        if restarted_recently(via, now) {
            // Empty table: the node sees only itself and would fill the key from the origin.
            if order
                .first()
                .is_some_and(|&h| h as usize != via && !dead_at(h as usize, now))
            {
                wrong_fills += 1;
            }
            continue;
        }
        // The viewing node's designated node: the first it does not know to be dead.
        let Some(pos) = order
            .iter()
            .position(|&c| c as usize == via || !known_dead(c as usize, now, phase))
        else {
            unserved += 1;
            continue;
        };
        let d = order[pos] as usize;
        if d == via || !dead_at(d, now) {
            continue;
        }
        to_dead += 1;
        failed += 1;
        // Failover: walk on in placement order past dead nodes.
        for &c in &order[pos + 1..] {
            extra_connects += 1;
            if c as usize == via || !dead_at(c as usize, now) {
                break;
            }
        }
    }
    let _ = writeln!(
        out,
        "\n4. Crashes and restarts: {} s at {} req/s, {} crashes (each back after 5 s with an empty table), interval {} ms x {} missing",
        CHURN_SECONDS,
        CHURN_REQUESTS_PER_S,
        outages.len(),
        CHURN_INTERVAL_MS,
        CHURN_MISSING
    );
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>12} {:>12}",
        "policy", "failed", "extra conn.", "wrong fills"
    );
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>12} {:>12}",
        "no failover, no warm-up (before)", failed, 0, wrong_fills
    );
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>12} {:>12}",
        "failover + warm-up (Arrow)", 0, extra_connects, 0
    );
    let _ = writeln!(
        out,
        "requests routed to a dead designated node: {to_dead} of {total}; with every node dead: {unserved}; guarantee {} Mbit/s",
        args.guarantee_bps / 1_000_000
    );
}

/// `arrow-bench cluster-sim`.
pub fn run(args: &ClusterSimArgs) -> Result<(), String> {
    print!("{}", report(args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_simulation_runs_and_only_departed_keys_move() {
        let args = ClusterSimArgs {
            nodes: 8,
            titles: 300,
            requests: 2_000,
            ..ClusterSimArgs::default()
        };
        let text = report(&args).unwrap();
        assert!(text.contains("1. Classic CNAME"), "{text}");
        // "moved wrongly" is 0 on every HRW row.
        for line in text
            .lines()
            .filter(|l| l.starts_with("lose ") || l.starts_with("join "))
        {
            assert!(line.trim_end().ends_with(" 0"), "{line}");
        }
        // Churn: requests routed to dead nodes exist, and Arrow's row fails none.
        let arrow_row = text
            .lines()
            .find(|l| l.starts_with("failover + warm-up"))
            .expect("churn part");
        assert_eq!(
            arrow_row.split_whitespace().rev().nth(2),
            Some("0"),
            "{arrow_row}"
        );
        let before = text.lines().find(|l| l.starts_with("no failover")).unwrap();
        let failed: u64 = before
            .split_whitespace()
            .rev()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert!(failed > 0, "{before}");
        // Bounded placement never exceeds the guarantee.
        for line in text.lines().filter(|l| l.contains("bounded")) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols[5], "0", "no node over G: {line}");
        }
    }
}
