//! The placement agrees with `placement_vectors.json`, which `placement_reference.py` (an
//! independent implementation written from `PLACEMENT.md`) generates; and the committed JSON is
//! exactly what that script writes.

use std::path::Path;
use std::process::Command;

use arrow_cluster::{
    cluster_key, designated, fmix64, fnv1a64, home, hrw_hash, hrw_score, ln_portable,
    pick_by_headroom, pick_by_headroom_bounded, ranked, unit_interval, NodeView, Router,
};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");

fn vectors() -> Value {
    let path = Path::new(DIR).join("placement_vectors.json");
    let text = std::fs::read_to_string(&path).expect("placement_vectors.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(s(v), 16).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn f64_of(v: &Value) -> f64 {
    f64::from_bits(hex(v))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

fn node_of(v: &Value) -> NodeView {
    let mut n = NodeView::fresh(s(&v["name"]), u(&v["weight"]), u(&v["capacity_bps"]));
    n.users = u32::try_from(u(&v["users"])).expect("users fits u32");
    n.in_service = v["in_service"].as_bool().expect("in_service");
    n
}

/// A node index of the set (`null`: none).
fn index(v: &Value) -> Option<usize> {
    v.as_u64().map(|i| i as usize)
}

fn position(nodes: &[NodeView], n: Option<&NodeView>) -> Option<usize> {
    n.map(|n| {
        nodes
            .iter()
            .position(|m| std::ptr::eq(m, n))
            .expect("a node of the set")
    })
}

#[test]
fn cluster_keys_match() {
    let doc = vectors();
    let cases = arr(&doc["key_derivations"]);
    assert!(!cases.is_empty());
    for c in cases {
        assert_eq!(
            cluster_key(s(&c["domain"]), s(&c["hash_input"])),
            s(&c["cluster_key"]),
            "{c}"
        );
    }
}

#[test]
fn hash_primitives_match() {
    let doc = vectors();
    for c in arr(&doc["fmix_vectors"]) {
        if let Some(x) = c.get("fmix64_in") {
            assert_eq!(fmix64(hex(x)), hex(&c["fmix64_out"]), "{c}");
        } else {
            // PLACEMENT.md §6: splitmix64(seed) = fmix64(seed + 0x9e3779b97f4a7c15 mod 2^64).
            let x = hex(&c["splitmix64_in"]);
            assert_eq!(
                fmix64(x.wrapping_add(0x9e37_79b9_7f4a_7c15)),
                hex(&c["splitmix64_out"]),
                "{c}"
            );
        }
    }
    for c in arr(&doc["ln_vectors"]) {
        let x = f64_of(&c["x_bits"]);
        assert_eq!(ln_portable(x).to_bits(), hex(&c["ln_bits"]), "{c}");
    }
    for c in arr(&doc["unit_vectors"]) {
        let u = unit_interval(hex(&c["hash"]));
        assert_eq!(u.to_bits(), hex(&c["u_bits"]), "{c}");
        assert_eq!(ln_portable(u).to_bits(), hex(&c["ln_u_bits"]), "{c}");
    }
    let cases = arr(&doc["hash_vectors"]);
    assert!(!cases.is_empty());
    for c in cases {
        let (key, name, weight) = (s(&c["key"]), s(&c["name"]), u(&c["weight"]));
        assert_eq!(fnv1a64(key.as_bytes()), hex(&c["fnv1a64_key"]), "{c}");
        let node_hash = fmix64(fnv1a64(name.as_bytes()) ^ 0x9e37_79b9_7f4a_7c15);
        assert_eq!(node_hash, hex(&c["node_hash"]), "{c}");
        let h = hrw_hash(key, name);
        assert_eq!(h, hex(&c["hrw_hash"]), "{c}");
        let unit = unit_interval(h);
        assert_eq!(unit.to_bits(), hex(&c["u_bits"]), "{c}");
        assert_eq!(ln_portable(unit).to_bits(), hex(&c["ln_u_bits"]), "{c}");
        assert_eq!(
            hrw_score(key, name, weight).to_bits(),
            hex(&c["score_bits"]),
            "{c}"
        );
    }
}

#[test]
fn equal_scores_rank_by_name() {
    let doc = vectors();
    let cases = arr(&doc["tie_cases"]);
    assert!(cases.len() >= 6);
    for c in cases {
        let key = s(&c["key"]);
        let mut nodes: Vec<NodeView> = arr(&c["nodes"]).iter().map(node_of).collect();
        for n in &nodes {
            assert_eq!(
                hrw_score(key, &n.name, n.weight).to_bits(),
                hex(&c["score_bits"]),
                "{c}"
            );
        }
        let expected: Vec<&str> = arr(&c["order"]).iter().map(s).collect();
        // Whatever the table order.
        for _ in 0..2 {
            let order: Vec<&str> = ranked(&nodes, key)
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            assert_eq!(order, expected, "{c}");
            assert_eq!(home(&nodes, key).unwrap().name, expected[0], "{c}");
            assert_eq!(designated(&nodes, key, 0).unwrap().name, expected[0]);
            nodes.reverse();
        }
    }
}

#[test]
fn placement_and_headroom_picks_match() {
    let doc = vectors();
    let sets = arr(&doc["sets"]);
    assert!(sets.len() >= 6);
    let mut checked = 0;
    for set in sets {
        let label = s(&set["name"]);
        let nodes: Vec<NodeView> = arr(&set["nodes"]).iter().map(node_of).collect();
        let guarantees: Vec<u64> = arr(&set["guarantees_bps"]).iter().map(u).collect();
        let vectors = arr(&set["vectors"]);
        assert!(vectors.len() >= 200, "{label}");
        for v in vectors {
            let key = s(&v["key"]);
            let expected: Vec<usize> = arr(&v["order"]).iter().map(|i| u(i) as usize).collect();
            let order: Vec<usize> = ranked(&nodes, key)
                .into_iter()
                .map(|n| position(&nodes, Some(n)).unwrap())
                .collect();
            assert_eq!(order, expected, "{label}: order of {key:?}");
            assert_eq!(
                position(&nodes, home(&nodes, key)),
                expected.first().copied(),
                "{label}: home of {key:?}"
            );
            for (g, want) in guarantees.iter().zip(arr(&v["designated"])) {
                let got = position(&nodes, designated(&nodes, key, *g));
                assert_eq!(got, index(want), "{label}: designated {key:?} at {g}");
                let router = Router::new(&nodes, *g);
                assert_eq!(position(&nodes, router.designated(key)), got);
            }
            checked += 1;
        }
        let seeds: Vec<u64> = arr(&set["headroom_seeds"]).iter().map(u).collect();
        for h in arr(&set["headroom"]) {
            let g = u(&h["guarantee_bps"]);
            let picks = arr(&h["picks"]);
            assert_eq!(picks.len(), seeds.len());
            for (seed, want) in seeds.iter().zip(picks) {
                let got = position(&nodes, pick_by_headroom_bounded(&nodes, *seed, g));
                assert_eq!(
                    got,
                    index(want),
                    "{label}: headroom pick seed {seed} at {g}"
                );
                assert_eq!(
                    position(&nodes, Router::new(&nodes, g).pick_by_headroom(*seed)),
                    got
                );
                if g == 0 {
                    assert_eq!(position(&nodes, pick_by_headroom(&nodes, *seed)), got);
                }
            }
        }
    }
    assert!(checked >= 1600, "{checked}");
}

/// The committed vectors are exactly what the reference implementation writes. Needs `python3`
/// on PATH (Debian and CI have it); fails rather than skips without it.
#[test]
fn reference_script_reproduces_the_committed_vectors() {
    let script = Path::new(DIR).join("placement_reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--stdout")
        .output()
        .unwrap_or_else(|e| panic!("running python3 {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(Path::new(DIR).join("placement_vectors.json")).unwrap();
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        committed == generated,
        "placement_vectors.json differs from the output of placement_reference.py; \
         regenerate it with `python3 cluster/tests/placement_reference.py` (only if the \
         placement change is intended: it reshuffles every cache)"
    );
}
