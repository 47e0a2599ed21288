//! Placement: frozen by a fixture, minimal movement on leave/join, weighted balance, bounded
//! load.

use std::collections::HashMap;

use arrow_cluster::{cluster_key, designated, home, ranked, NodeView, Router};

fn node(name: &str, weight: u64) -> NodeView {
    NodeView::fresh(name, weight, 10_000_000_000)
}

const TIB: u64 = 1 << 40;

/// The fixture's node set: names and weights (bytes of healthy storage).
fn fixture_nodes() -> Vec<NodeView> {
    vec![
        node("n01.lax.hw.bar.net", 4 * TIB),
        node("n02.lax.hw.bar.net", 4 * TIB),
        node("n03.lax.hw.bar.net", 8 * TIB),
        node("n04.lax.hw.bar.net", 2 * TIB),
        node("n05.lax.hw.bar.net", 16 * TIB),
    ]
}

fn keys(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| cluster_key("foo.com", &format!("/assets/title-{i}")))
        .collect()
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/placement.txt");

/// Placement must never change across versions: an upgrade would reshuffle every cache.
/// Regenerate only on purpose: `ARROW_WRITE_PLACEMENT_FIXTURE=1 cargo test -p arrow-cluster`.
#[test]
fn placement_matches_the_committed_fixture() {
    let nodes = fixture_nodes();
    let mut text = String::from(
        "# cluster key -> designated node (weighted rendezvous hashing, all in service, no load\n\
         # bound). Nodes: n01 4 TiB, n02 4 TiB, n03 8 TiB, n04 2 TiB, n05 16 TiB (.lax.hw.bar.net).\n\
         # Keys: cluster_key(\"foo.com\", \"/assets/title-<i>\") for i in 0..1000. Never edit.\n",
    );
    for key in keys(1000) {
        let name = &designated(&nodes, &key, 0).unwrap().name;
        text.push_str(&format!("{key} {name}\n"));
    }
    if std::env::var_os("ARROW_WRITE_PLACEMENT_FIXTURE").is_some() {
        std::fs::write(FIXTURE, &text).unwrap();
    }
    let committed = std::fs::read_to_string(FIXTURE).expect("fixture file");
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let (expected, actual) = (lines(&committed), lines(&text));
    assert_eq!(expected.len(), 1000);
    for (e, a) in expected.iter().zip(&actual) {
        assert_eq!(e, a, "placement changed");
    }
}

fn homes(nodes: &[NodeView], keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| home(nodes, k).unwrap().name.clone())
        .collect()
}

#[test]
fn only_a_departed_nodes_keys_move() {
    let mut nodes: Vec<NodeView> = (0..10)
        .map(|i| node(&format!("n{i:02}.example"), (1 + i % 4) * TIB))
        .collect();
    let keys = keys(10_000);
    let before = homes(&nodes, &keys);
    nodes[3].in_service = false;
    let after = homes(&nodes, &keys);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "n03.example" {
            assert_ne!(a, b);
            moved += 1;
        } else {
            assert_eq!(a, b, "a key of a node still in service moved");
        }
    }
    // n03 has weight 4 of a total 23: p = 17.4 % of keys, within 4 standard deviations.
    let (k, p) = (10_000.0, 4.0 / 23.0);
    let bound = 4.0 * f64::sqrt(k * p * (1.0 - p));
    assert!((moved as f64 - k * p).abs() <= bound, "{moved}");
    // It comes back: exactly the same placement as before.
    nodes[3].in_service = true;
    assert_eq!(homes(&nodes, &keys), before);
}

#[test]
fn a_joining_node_takes_keys_only_for_itself() {
    let mut nodes: Vec<NodeView> = (0..10)
        .map(|i| node(&format!("n{i:02}.example"), TIB))
        .collect();
    let keys = keys(10_000);
    let before = homes(&nodes, &keys);
    nodes.push(node("n10.example", TIB));
    let after = homes(&nodes, &keys);
    let moved = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| {
            if b != a {
                assert_eq!(a.as_str(), "n10.example");
            }
            b != a
        })
        .count();
    // Ideal: 1/11 of the keys, within 4 standard deviations.
    let (k, p) = (10_000.0, 1.0 / 11.0);
    let bound = 4.0 * f64::sqrt(k * p * (1.0 - p));
    assert!((moved as f64 - k * p).abs() <= bound, "{moved}");
}

/// Bound: each node's key count lies within 4·√(K·p·(1−p)) of K·p, p = its weight share.
#[test]
fn weighted_balance_within_bound() {
    let weights = [1u64, 1, 2, 2, 3, 3, 4, 4, 8, 12];
    let nodes: Vec<NodeView> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| node(&format!("n{i:02}.example"), w * TIB))
        .collect();
    let total: u64 = weights.iter().sum();
    let keys = keys(10_000);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for name in homes(&nodes, &keys) {
        *counts.entry(name).or_default() += 1;
    }
    let k = keys.len() as f64;
    for (i, w) in weights.iter().enumerate() {
        let p = *w as f64 / total as f64;
        let count = counts[&format!("n{i:02}.example")] as f64;
        let bound = 4.0 * (k * p * (1.0 - p)).sqrt();
        assert!(
            (count - k * p).abs() <= bound,
            "node {i} weight {w}: {count} keys, expected {:.0} ± {bound:.0}",
            k * p
        );
    }
}

#[test]
fn bounded_load_sheds_new_viewers_of_a_full_node_to_the_next_choice() {
    let mut nodes: Vec<NodeView> = (0..5)
        .map(|i| node(&format!("n{i}.example"), TIB))
        .collect();
    let keys = keys(2_000);
    let guarantee = 8_000_000;
    let before: Vec<String> = keys
        .iter()
        .map(|k| designated(&nodes, k, guarantee).unwrap().name.clone())
        .collect();
    // n2 is full: 10 Gbit/s / (1250 + 1) < 8 Mbit/s.
    nodes[2].users = 1250;
    let router = Router::new(&nodes, guarantee);
    for (key, b) in keys.iter().zip(&before) {
        let now = &router.designated(key).unwrap().name;
        if b == "n2.example" {
            assert_eq!(
                now,
                &ranked(&nodes, key)[1].name,
                "falls to the next choice"
            );
            assert_eq!(router.home(key).unwrap().name, "n2.example");
        } else {
            assert_eq!(now, b);
        }
    }
    // One user fewer: n2 admits again and its keys come back.
    nodes[2].users = 1249;
    for (key, b) in keys.iter().zip(&before) {
        assert_eq!(&designated(&nodes, key, guarantee).unwrap().name, b);
    }
    // Weight zero (no healthy disk): never designated.
    nodes[2].weight = 0;
    assert!(keys
        .iter()
        .all(|k| designated(&nodes, k, 0).unwrap().name != "n2.example"));
}

#[test]
fn node_order_in_the_table_does_not_matter() {
    let nodes = fixture_nodes();
    let mut reversed = nodes.clone();
    reversed.reverse();
    for key in keys(500) {
        assert_eq!(
            designated(&nodes, &key, 0).unwrap().name,
            designated(&reversed, &key, 0).unwrap().name
        );
    }
}
