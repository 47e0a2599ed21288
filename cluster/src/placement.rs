//! Key-to-node placement: weighted rendezvous (highest random weight) hashing of the cluster
//! key over in-service nodes, bounded by brpu headroom. HTTP and DNS both call [`designated`];
//! given the same table they agree.
//!
//! Score of node j for key k: `score = −weight_j / ln(u)`, `u ∈ (0, 1)` uniform from
//! `hrw_hash(k, name_j)`. The node with the highest score is the key's **home**. Properties:
//! - a node's expected share of keys is `weight_j / Σ weight` (the weighted-HRW identity); for K
//!   keys a node's count lies within `4·√(K·p·(1−p))` of `K·p` (checked by tests);
//! - when a node leaves, only its keys move (each to its next-highest score); when one joins,
//!   only keys it now wins move, all to it;
//! - everything is computed with IEEE-754 basic operations only (FNV-1a, a murmur3 finaliser
//!   and an atanh-series logarithm: no libm), so placement is the same on every platform and
//!   version; `tests/fixtures/placement.txt` freezes it.
//!
//! **Bounded load** (the designated node): nodes are taken in score order and the first one
//! that admits a new viewer — `capacity / (users + 1) ≥ guarantee` ([`NodeView::admits`]) — is
//! designated. An overloaded home node thus sheds *new* viewers of its titles to each title's
//! next choice (which pulls and keeps a copy, a natural mirror) until it has headroom again;
//! nothing moves when every node has headroom. When no in-service node admits, there is no
//! designated node: the request overflows to the CDN.

use crate::table::NodeView;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Separates node hashes from key hashes.
const NODE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The murmur3 64-bit finaliser: a bijection with full avalanche.
pub fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The rendezvous hash of a (cluster key, node name) pair.
pub fn hrw_hash(cluster_key: &str, node_name: &str) -> u64 {
    hrw_hash_pre(fnv1a64(cluster_key.as_bytes()), node_name)
}

fn hrw_hash_pre(key_hash: u64, node_name: &str) -> u64 {
    fmix64(key_hash ^ fmix64(fnv1a64(node_name.as_bytes()) ^ NODE_SALT))
}

/// Natural logarithm of `x > 0` with IEEE-754 basic operations only (bit-exact everywhere):
/// `x = m·2^e` with `m ∈ [√½, √2)`, `ln m = 2·atanh((m−1)/(m+1))` summed to 1e-17.
pub fn ln_portable(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    const LN2: f64 = std::f64::consts::LN_2;
    const SQRT2: f64 = std::f64::consts::SQRT_2;
    let bits = x.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // Normal numbers only: u ≥ 2^-54 in our use.
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT2 {
        m /= 2.0;
        exp += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + exp as f64 * LN2
}

/// `u ∈ (0, 1)` from the 53 high bits of a hash.
fn unit_interval(hash: u64) -> f64 {
    ((hash >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// The weighted rendezvous score of a node for a key: `−weight / ln(u)`.
pub fn hrw_score(cluster_key: &str, node_name: &str, weight: u64) -> f64 {
    score_pre(fnv1a64(cluster_key.as_bytes()), node_name, weight)
}

fn score_pre(key_hash: u64, node_name: &str, weight: u64) -> f64 {
    let u = unit_interval(hrw_hash_pre(key_hash, node_name));
    -(weight as f64) / ln_portable(u)
}

/// True when `a` ranks before `b` (higher score; equal scores by name).
fn ranks_before(a: (f64, &NodeView), b: (f64, &NodeView)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1.name < b.1.name)
}

fn best<'a>(
    nodes: &'a [NodeView],
    cluster_key: &str,
    eligible: impl Fn(&NodeView) -> bool,
) -> Option<&'a NodeView> {
    let key_hash = fnv1a64(cluster_key.as_bytes());
    let mut top: Option<(f64, &NodeView)> = None;
    for node in nodes.iter().filter(|n| n.in_service && n.weight > 0) {
        if !eligible(node) {
            continue;
        }
        let candidate = (score_pre(key_hash, &node.name, node.weight), node);
        let better = match top {
            None => true,
            Some(t) => ranks_before(candidate, t),
        };
        if better {
            top = Some(candidate);
        }
    }
    top.map(|(_, n)| n)
}

/// The key's home: the highest-scoring in-service node with storage, ignoring load. Content
/// lives there in steady state.
pub fn home<'a>(nodes: &'a [NodeView], cluster_key: &str) -> Option<&'a NodeView> {
    best(nodes, cluster_key, |_| true)
}

/// The designated node: the highest-scoring in-service node with storage that admits a new
/// viewer at `guarantee_bps` (0: no bound, the home node). `None`: overflow.
pub fn designated<'a>(
    nodes: &'a [NodeView],
    cluster_key: &str,
    guarantee_bps: u64,
) -> Option<&'a NodeView> {
    best(nodes, cluster_key, |n| n.admits(guarantee_bps))
}

/// In-service nodes with storage in score order for the key (home first).
pub fn ranked<'a>(nodes: &'a [NodeView], cluster_key: &str) -> Vec<&'a NodeView> {
    let key_hash = fnv1a64(cluster_key.as_bytes());
    let mut scored: Vec<(f64, &NodeView)> = nodes
        .iter()
        .filter(|n| n.in_service && n.weight > 0)
        .map(|n| (score_pre(key_hash, &n.name, n.weight), n))
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.name.as_str().cmp(b.1.name.as_str()))
    });
    scored.into_iter().map(|(_, n)| n).collect()
}

/// SplitMix64 step: turns a caller's seed (a counter, a query id) into a uniform word.
fn splitmix64(seed: u64) -> u64 {
    fmix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// For names that are not content-aware: a random in-service node, chosen with probability
/// proportional to the brpu a new viewer would get there, `capacity / (users + 1)`.
pub fn pick_by_headroom(nodes: &[NodeView], seed: u64) -> Option<&NodeView> {
    pick_by_headroom_bounded(nodes, seed, 0)
}

/// Like [`pick_by_headroom`] among nodes that admit at `guarantee_bps`, weighted by headroom
/// above it: `capacity / (users + 1) − guarantee + 1`. `None` when no node admits (overflow).
pub fn pick_by_headroom_bounded(
    nodes: &[NodeView],
    seed: u64,
    guarantee_bps: u64,
) -> Option<&NodeView> {
    let headroom = |n: &NodeView| -> u128 {
        let per_user = n.capacity_bps / (u64::from(n.users) + 1);
        u128::from(per_user.saturating_sub(guarantee_bps)) + 1
    };
    let eligible = || {
        nodes
            .iter()
            .filter(move |n| n.in_service && n.admits(guarantee_bps))
    };
    let total: u128 = eligible().map(headroom).sum();
    if total == 0 {
        return None;
    }
    // point = ⌊seed · total / 2^64⌋ < total, computed without overflow: total exceeds 2^64 when
    // nodes report capacities near u64::MAX (unmeasured), and `seed * total` would wrap.
    let s = u128::from(splitmix64(seed));
    let mut point = s * (total >> 64) + ((s * (total & u128::from(u64::MAX))) >> 64);
    for node in eligible() {
        let h = headroom(node);
        if point < h {
            return Some(node);
        }
        point -= h;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::table::NodeView;

    /// An in-service node with 10 Gbit/s capacity and no users.
    pub(crate) fn node(name: &str, weight: u64) -> NodeView {
        NodeView::fresh(name, weight, 10_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::node;
    use super::*;

    #[test]
    fn ln_portable_matches_libm() {
        let mut x = 1e-16;
        while x < 1.0 {
            let (ours, libm) = (ln_portable(x), x.ln());
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs().max(1.0),
                "{x}"
            );
            x *= 1.37;
        }
        assert_eq!(ln_portable(1.0), 0.0);
    }

    #[test]
    fn hash_values_are_frozen() {
        assert_eq!(fnv1a64(b""), FNV_OFFSET);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Any change here reshuffles placement; tests/placement.rs checks the full fixture.
        let h = hrw_hash(
            "claw.acaa22fad1ed4a441d54fa664f53d5b0ee",
            "n01.lax.hw.hyvd.net",
        );
        assert_eq!(
            h,
            hrw_hash(
                "claw.acaa22fad1ed4a441d54fa664f53d5b0ee",
                "n01.lax.hw.hyvd.net"
            )
        );
        assert_ne!(
            h,
            hrw_hash(
                "claw.acaa22fad1ed4a441d54fa664f53d5b0ee",
                "n02.lax.hw.hyvd.net"
            )
        );
    }

    #[test]
    fn designated_skips_out_of_service_and_full_nodes() {
        let mut nodes = vec![node("a", 1), node("b", 1), node("c", 1)];
        let key = "foo.com0123";
        let order: Vec<String> = ranked(&nodes, key).iter().map(|n| n.name.clone()).collect();
        assert_eq!(designated(&nodes, key, 0).unwrap().name, order[0]);
        let first = nodes.iter().position(|n| n.name == order[0]).unwrap();
        nodes[first].in_service = false;
        assert_eq!(designated(&nodes, key, 0).unwrap().name, order[1]);
        nodes[first].in_service = true;
        // Home node full at the guarantee: falls through to the next choice.
        nodes[first].users = 999;
        assert_eq!(designated(&nodes, key, 10_000_001).unwrap().name, order[1]);
        assert_eq!(home(&nodes, key).unwrap().name, order[0]);
        for n in &mut nodes {
            n.users = 10_000;
        }
        assert!(designated(&nodes, key, 10_000_000).is_none(), "overflow");
        for n in &mut nodes {
            n.in_service = false;
        }
        assert!(designated(&nodes, key, 0).is_none());
        assert!(pick_by_headroom(&nodes, 1).is_none());
    }

    #[test]
    fn pick_by_headroom_follows_headroom() {
        let mut nodes = vec![node("a", 1), node("b", 1), node("c", 1)];
        nodes[0].capacity_bps = 30_000_000_000;
        nodes[2].users = 1_000_000; // ~10 kbit/s each: nearly no headroom
        let mut counts = [0u32; 3];
        for seed in 0..40_000 {
            let pick = pick_by_headroom(&nodes, seed).unwrap();
            counts[nodes.iter().position(|n| n.name == pick.name).unwrap()] += 1;
        }
        // Expected 3:1:~0.
        assert!((29_000..31_000).contains(&counts[0]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[1]), "{counts:?}");
        assert!(counts[2] < 50, "{counts:?}");
        // Bounded: the full node is never picked.
        for seed in 0..1000 {
            let pick = pick_by_headroom_bounded(&nodes, seed, 5_000_000).unwrap();
            assert_ne!(pick.name, "c");
        }
    }

    #[test]
    fn pick_by_headroom_spreads_over_nodes_of_huge_capacity() {
        // Capacities near u64::MAX (a node that has measured nothing yet) made the sum of
        // headrooms exceed 2^64, and the pick wrapped onto the first node every time.
        let nodes = vec![node("a", 1), node("b", 1), node("c", 1)]
            .into_iter()
            .map(|mut n| {
                n.capacity_bps = u64::MAX;
                n
            })
            .collect::<Vec<_>>();
        let mut counts = [0u32; 3];
        for seed in 0..30_000 {
            let pick = pick_by_headroom(&nodes, seed).unwrap();
            counts[nodes.iter().position(|n| n.name == pick.name).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
