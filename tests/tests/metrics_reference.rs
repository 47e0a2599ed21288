//! `docs/METRICS.md` against what a node exposes: one node with every part that adds metric
//! families (two disks, one of them refused at start, an access log, a cluster section, a DNS
//! responder) is scraped, and the families' names, types and help texts must be exactly the
//! reference's rows. After changing a metric, regenerate the reference with
//! `ARROW_WRITE_METRICS_DOC=1 cargo test -p arrow-tests --test metrics_reference` and commit it.

use std::collections::BTreeMap;

use arrow_tests::*;

const HOST: &str = "cdn.example.test";

fn reference_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/METRICS.md")
}

/// name → (type, help) of every family in a Prometheus text.
fn families(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().1 = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().0 = kind.to_string();
        }
    }
    out
}

fn render(f: &BTreeMap<String, (String, String)>) -> String {
    let mut s = String::from(
        "# Metrics\n\n\
         Every metric family a node exposes on `GET /metrics` (admin listener), with its type and\n\
         help text. Generated from a running node by `tests/tests/metrics_reference.rs`, which\n\
         also fails when this file and the node disagree; regenerate with\n\
         `ARROW_WRITE_METRICS_DOC=1 cargo test -p arrow-tests --test metrics_reference`.\n\
         Families of the cluster (`arrow_brpu_*`, `arrow_comets_*`, …) appear only with a\n\
         `[cluster]` section, `arrow_dns_*` only with `[dns]`, `arrow_disk_refused` only when a\n\
         disk was refused at start, `arrow_access_log_dropped_total` only with an access log.\n\
         Per-shard families carry a `shard` label, per-disk ones `disk` (and `path`).\n\n\
         | metric | type | meaning |\n|---|---|---|\n",
    );
    for (name, (kind, help)) in f {
        s.push_str(&format!(
            "| `{name}` | {kind} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    s
}

fn documented(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (name, rest) = l.split_once("` | ")?;
            let (kind, help) = rest.split_once(" | ")?;
            let help = help.strip_suffix(" |")?.replace("\\|", "|");
            Some((name.to_string(), (kind.to_string(), help)))
        })
        .collect()
}

#[test]
fn every_metric_family_is_documented_as_the_node_exposes_it() {
    let dir = scratch_dir("metrics-ref");
    let origin = Origin::start(|req: &SeenRequest| {
        OriginReply::ok(body_for(&req.path, 5_000), "max-age=60")
    });
    let (http, admin): (std::net::SocketAddr, std::net::SocketAddr) = (
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let extra = format!(
        r#"
[cluster]
listen = "127.0.0.1:0"
advertise_addr = "127.0.0.1"
# a unicast peer list is required without a group: the discard port (nothing listens)
peers = ["127.0.0.1:9"]
table_path = "{dir}/table-{{node}}"
comet_interval_ms = 100
secret = "metrics-reference-secret-0123"

[dns]
listen = ["127.0.0.1:0"]

[[dns.zones]]
name = "dx.example.test"
domain = "example.test"
ns = ["ns1.dx.example.test"]
"#,
        dir = dir.path().display()
    );
    let cfg = node_config(dir.path(), http, admin, &[origin.url()], "")
        .replace(
            "[[host]]",
            &format!(
                // a directory where a slab should be: refused at start, listed anyway
                "[[disk]]\npath = \"{}\"\nsize_bytes = 67108864\n\n[[host]]",
                dir.path().display()
            ),
        )
        .replace("\n[[host]]", &format!("{extra}\n[[host]]"));
    let node = Node::start(dir.path(), &cfg, http, admin);
    // Traffic so that labelled families have samples.
    for i in 0..3 {
        let _ = get(node.http, &format!("/v/m{i}/a.ts"), HOST, &[]);
    }
    let m = String::from_utf8(get(node.admin, "/metrics", "admin", &[]).unwrap().body).unwrap();
    let exposed = families(&m);
    for must in [
        "arrow_requests_total",
        "arrow_disk_refused",
        "arrow_brpu_bps",
        "arrow_dns_tcp_refused_total",
        "arrow_access_log_dropped_total",
    ] {
        assert!(exposed.contains_key(must), "{must} not exposed:\n{m}");
    }
    for (name, (kind, help)) in &exposed {
        assert!(
            !kind.is_empty() && !help.is_empty(),
            "{name}: TYPE and HELP needed"
        );
    }
    let path = reference_path();
    if std::env::var_os("ARROW_WRITE_METRICS_DOC").is_some() {
        std::fs::write(&path, render(&exposed)).unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate it: see this test's doc)", path.display()));
    let doc = documented(&text);
    let mut problems = Vec::new();
    for (name, want) in &exposed {
        match doc.get(name) {
            None => problems.push(format!("{name}: exposed, not in docs/METRICS.md")),
            Some(got) if got != want => {
                problems.push(format!("{name}: docs say {got:?}, the node {want:?}"))
            }
            Some(_) => {}
        }
    }
    for name in doc.keys().filter(|n| !exposed.contains_key(*n)) {
        problems.push(format!("{name}: in docs/METRICS.md, not exposed"));
    }
    assert!(
        problems.is_empty(),
        "{}\nregenerate: ARROW_WRITE_METRICS_DOC=1 cargo test -p arrow-tests --test metrics_reference",
        problems.join("\n")
    );
}
