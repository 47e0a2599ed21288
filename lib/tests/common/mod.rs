//! Test support: a real cluster table (a file under /dev/shm, written through
//! `arrow_cluster::Table` as the node writes it) and a node config naming it.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use arrow_cluster::{Comet, Liveness, Table};

/// A node as a comet announces it.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub weight: u64,
    pub capacity_bps: u64,
    pub users: u32,
    pub in_service: bool,
    pub mirroring: bool,
    pub admitting: bool,
    pub addr: Option<IpAddr>,
    pub port: u16,
}

impl Spec {
    pub fn new(name: &str, weight: u64) -> Spec {
        Spec {
            name: name.into(),
            weight,
            capacity_bps: 10_000_000_000,
            users: 0,
            in_service: true,
            mirroring: false,
            admitting: true,
            addr: Some("10.9.0.1".parse().unwrap()),
            port: 8080,
        }
    }
}

/// A table file under /dev/shm, removed on drop. Liveness: 1 s × 3 intervals.
pub struct ShmTable {
    pub path: PathBuf,
    pub table: Table,
    seq: u64,
}

pub const LIVENESS: Liveness = Liveness {
    comet_interval_ms: 1000,
    missing_intervals: 3,
};

impl ShmTable {
    pub fn create(tag: &str) -> ShmTable {
        let path = PathBuf::from(format!(
            "/dev/shm/arrow-lib-test-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let table = Table::create_with(&path, 64, LIVENESS).expect("create table");
        ShmTable {
            path,
            table,
            seq: 0,
        }
    }

    /// Writes a comet of `s` (an out-of-service node: last seen long ago).
    pub fn put(&mut self, s: &Spec) {
        self.put_at(s, if s.in_service { 0 } else { 60_000 });
    }

    /// Writes a comet of `s` as received `ago_ms` ago.
    pub fn put_at(&mut self, s: &Spec, ago_ms: u64) {
        self.seq += 1;
        let comet = Comet {
            name: s.name.clone(),
            boot_id: 1,
            sequence: self.seq,
            time_ms: self.seq,
            addr: s.addr,
            http_port: s.port,
            brpu_bps: s.capacity_bps / (u64::from(s.users) + 1),
            capacity_bps: s.capacity_bps,
            weight: s.weight,
            users: s.users,
            mirroring: s.mirroring,
            admitting: s.admitting,
            disks: Vec::new(),
        };
        let now = arrow_cluster::monotonic_ms().saturating_sub(ago_ms);
        self.table.upsert(&comet, now).expect("upsert");
    }
}

impl Drop for ShmTable {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A node config (the sections the library reads, plus a few it ignores) in `dir`.
pub fn write_config(
    dir: &Path,
    table: &Path,
    self_name: &str,
    guarantee_bps: u64,
    overflow: bool,
    extra: &str,
) -> PathBuf {
    let overflow = if overflow {
        "\n[overflow]\ncdn_host = \"cdn.overflow.test\"\n"
    } else {
        ""
    };
    let text = format!(
        r#"[node]
name = "{self_name}"
listen = ["127.0.0.1:8080"]
debug_headers = true

[[disk]]
path = "/nonexistent/d0.slab"
size_bytes = 67108864

[[host]]
hosts = ["*.example.test", "example.test"]
technical_labels = 1
origins = ["http://127.0.0.1:9"]

[[host]]
hosts = ["*.claw.ac"]
technical_labels = 2
origins = ["http://127.0.0.1:9"]

[[host]]
hosts = ["*"]
origins = ["http://127.0.0.1:9"]

[cluster]
table_path = "{table}"
group = "239.255.77.77:17777"
secret = "0123456789abcdef0123"
brpu_guarantee_bps = {guarantee_bps}
{overflow}
{extra}
"#,
        table = table.display()
    );
    let path = dir.join(format!("arrow-{guarantee_bps}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A handle over `config` (panics on a bad config).
pub fn open(config: &Path) -> arrow_cdn::Handle {
    arrow_cdn::Handle::new(arrow_cdn::LibConfig::load(config).expect("config"))
}
