//! Comet admission (forged, replayed, truncated, stale dropped and counted) and two live
//! cluster services exchanging comets over unicast on 127.0.0.1.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_cluster::{
    Admission, ClusterConfig, ClusterCounters, Comet, CometKey, Liveness, LocalStats, Receiver,
    Table,
};

const SECRET: &str = "test secret, 16+ bytes long";

fn comet(name: &str, boot_id: u64, sequence: u64, time_ms: u64) -> Comet {
    Comet {
        name: name.into(),
        boot_id,
        sequence,
        time_ms,
        addr: None,
        http_port: 8080,
        brpu_bps: 1,
        capacity_bps: 1,
        weight: 1,
        users: 0,
        mirroring: false,
        admitting: true,
        disks: vec![],
    }
}

#[test]
fn receiver_drops_and_counts_bad_comets() {
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(Table::create_with(&dir.path().join("t"), 8, Liveness::default()).unwrap());
    let counters = Arc::new(ClusterCounters::default());
    let key = CometKey::new(SECRET.as_bytes());
    let rx = Receiver::new(
        vec![key.clone()],
        Arc::clone(&table),
        "self.example".into(),
        1,
        60_000,
        Arc::clone(&counters),
        1000,
        8,
    );
    let wall = 1_700_000_000_000;
    let src: SocketAddr = "10.1.2.3:7777".parse().unwrap();
    let good = comet("peer.example", 5, 1, wall).encode(&key).unwrap();
    assert_eq!(rx.admit(&good, Some(src), 100, wall), Admission::Accepted);
    let peer = table.get_at("peer.example", 100).unwrap();
    assert_eq!(
        peer.addr,
        Some(src.ip()),
        "source address fills a missing one"
    );
    // The same datagram again: replay.
    assert_eq!(rx.admit(&good, Some(src), 110, wall), Admission::Replayed);
    // Wrong secret: forged.
    let forged = comet("peer.example", 5, 2, wall)
        .encode(&CometKey::new(b"some other cluster secret"))
        .unwrap();
    assert_eq!(rx.admit(&forged, Some(src), 120, wall), Admission::Forged);
    // Truncated: malformed.
    let next = comet("peer.example", 5, 2, wall).encode(&key).unwrap();
    assert_eq!(
        rx.admit(&next[..next.len() - 1], Some(src), 130, wall),
        Admission::Malformed
    );
    assert_eq!(
        rx.admit(b"hello", Some(src), 130, wall),
        Admission::Malformed
    );
    // Too old for the clock-skew window: stale.
    let old = comet("peer.example", 5, 3, wall - 120_000)
        .encode(&key)
        .unwrap();
    assert_eq!(rx.admit(&old, Some(src), 140, wall), Admission::Stale);
    // Our own comet (multicast loop): ignored, not an error.
    let own = comet("self.example", 1, 1, wall).encode(&key).unwrap();
    assert_eq!(rx.admit(&own, Some(src), 150, wall), Admission::OwnEcho);
    // The next genuine comet passes, and the sender's restart (larger boot id) too.
    assert_eq!(rx.admit(&next, Some(src), 160, wall), Admission::Accepted);
    let restarted = comet("peer.example", 6, 1, wall).encode(&key).unwrap();
    assert_eq!(
        rx.admit(&restarted, Some(src), 170, wall),
        Admission::Accepted
    );
    assert_eq!(
        rx.admit(&next, Some(src), 180, wall),
        Admission::Replayed,
        "old boot"
    );
    // The sender dies: its earlier boot replayed 2 s later (out of service, comet within the
    // skew) is still refused; only after a silence longer than the skew may an earlier boot id
    // return (a clock stepped back), and by then every capture is stale.
    let much_later = comet("peer.example", 5, 99, wall).encode(&key).unwrap();
    assert_eq!(
        rx.admit(&much_later, Some(src), 2_170, wall + 2_000),
        Admission::Replayed,
        "earlier boot after the sender died"
    );
    let c = counters.snapshot();
    assert_eq!(c.accepted, 3);
    assert_eq!(c.dropped_replayed, 3);
    assert_eq!(c.dropped_forged, 1);
    assert_eq!(c.dropped_malformed, 2);
    assert_eq!(c.dropped_stale, 1);
    assert_eq!(c.own_echo, 1);
    assert_eq!(c.dropped(), 7);
}

#[test]
fn rotated_secret_is_accepted_and_floods_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(Table::create_with(&dir.path().join("t"), 8, Liveness::default()).unwrap());
    let counters = Arc::new(ClusterCounters::default());
    let current = CometKey::new(b"the new cluster secret 2026");
    let previous = CometKey::new(SECRET.as_bytes());
    let rx = Receiver::new(
        vec![current.clone(), previous.clone()],
        Arc::clone(&table),
        "self.example".into(),
        1,
        60_000,
        Arc::clone(&counters),
        10,
        8,
    );
    let wall = 1_700_000_000_000;
    let a: SocketAddr = "10.1.2.3:7777".parse().unwrap();
    let b: SocketAddr = "10.1.2.4:7777".parse().unwrap();
    // A node still on the previous secret and one on the new secret are both heard.
    let old = comet("old.example", 5, 1, wall).encode(&previous).unwrap();
    let new = comet("new.example", 5, 1, wall).encode(&current).unwrap();
    assert_eq!(rx.admit(&old, Some(a), 0, wall), Admission::Accepted);
    assert_eq!(rx.admit(&new, Some(b), 0, wall), Admission::Accepted);
    // A third secret is not.
    let other = comet("x.example", 5, 1, wall)
        .encode(&CometKey::new(b"a secret nobody configured"))
        .unwrap();
    assert_eq!(rx.admit(&other, Some(b), 0, wall), Admission::Forged);
    // 1,000 datagrams from one source within a second: at most 10 per second are read.
    let mut limited = 0;
    for seq in 2..1_002u64 {
        let c = comet("old.example", 5, seq, wall)
            .encode(&previous)
            .unwrap();
        if rx.admit(&c, Some(a), 500, wall) == Admission::RateLimited {
            limited += 1;
        }
    }
    assert!(limited >= 990, "rate limited {limited} of 1000");
    // Another source is not starved by the flood, and the flooder recovers a second later.
    let next = comet("new.example", 5, 2, wall).encode(&current).unwrap();
    assert_eq!(rx.admit(&next, Some(b), 600, wall), Admission::Accepted);
    let later = comet("old.example", 5, 5_000, wall)
        .encode(&previous)
        .unwrap();
    assert_eq!(rx.admit(&later, Some(a), 1_700, wall), Admission::Accepted);
    assert_eq!(counters.snapshot().dropped_rate_limited, limited);
}

/// Two UDP sockets on 127.0.0.1, bound to port 0 and kept (handed to the services).
fn bound_sockets() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    (a, b)
}

fn config(dir: &std::path::Path, listen: SocketAddr, peer: SocketAddr) -> ClusterConfig {
    let mut cfg = ClusterConfig::with_secret(SECRET);
    cfg.table_path = dir.join("table-{node}");
    cfg.listen = Some(listen);
    cfg.peers = vec![peer, listen]; // ourselves too, as a shared peer list would
    cfg.comet_interval_ms = 50;
    cfg.missing_intervals = 3;
    cfg.line_rate_bps = Some(10_000_000_000);
    cfg.brpu_guarantee_bps = 8_000_000;
    cfg
}

fn wait_for(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

#[test]
fn two_services_see_each_other_and_expire_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let (sock_a, sock_b) = bound_sockets();
    let (addr_a, addr_b) = (sock_a.local_addr().unwrap(), sock_b.local_addr().unwrap());
    let stats_a = Arc::new(LocalStats::new(2));
    stats_a.set_weight_bytes(4 << 40);
    stats_a.shard(1).set_users(7);
    let stats_b = Arc::new(LocalStats::new(1));
    stats_b.set_weight_bytes(2 << 40);
    let a = arrow_cluster::start_on(
        config(dir.path(), addr_a, addr_b),
        Some(sock_a),
        "a.test.example".into(),
        8081,
        stats_a,
    )
    .unwrap();
    let b = arrow_cluster::start_on(
        config(dir.path(), addr_b, addr_a),
        Some(sock_b),
        "b.test.example".into(),
        8082,
        stats_b,
    )
    .unwrap();
    let sees = |h: &arrow_cluster::ClusterHandle, name: &str| {
        h.table()
            .snapshot()
            .iter()
            .any(|n| n.name == name && n.in_service)
    };
    assert!(wait_for(Duration::from_secs(5), || sees(
        &a,
        "b.test.example"
    ) && sees(
        &b,
        "b.test.example"
    ) && sees(
        &b,
        "a.test.example"
    ) && sees(
        &a,
        "a.test.example"
    )));
    let view = b
        .table()
        .snapshot()
        .into_iter()
        .find(|n| n.name == "a.test.example")
        .unwrap();
    assert_eq!(view.http_port, 8081);
    assert_eq!(view.addr, Some(addr_a.ip()));
    assert_eq!(view.users, 7);
    assert_eq!(view.weight, 4 << 40);
    assert_eq!(
        view.capacity_bps, 9_000_000_000,
        "10 Gbit/s line rate × 0.9"
    );
    assert!(view.admitting);
    // `arrow status` from another mapping of b's table.
    let reader = Table::open_readonly(&dir.path().join("table-b.test.example")).unwrap();
    let text = arrow_cluster::format_status(&reader.snapshot(), arrow_cluster::monotonic_ms());
    assert!(
        text.contains("a.test.example") && text.contains("2 of 2 nodes"),
        "{text}"
    );
    assert!(
        a.counters().own_echo > 0,
        "own comets via the peer list are recognised"
    );
    assert!(b.admit(0));
    assert_eq!(b.brpu().capacity_bps, 9_000_000_000);

    // Stop a: b puts it out of service by the table's rule (N intervals after a's last comet
    // arrived), checked on b's table rather than against the wall clock.
    let stopped_ms = arrow_cluster::monotonic_ms();
    a.shutdown();
    assert!(wait_for(Duration::from_secs(5), || !sees(
        &b,
        "a.test.example"
    )));
    let last = b
        .table()
        .get_at("a.test.example", arrow_cluster::monotonic_ms())
        .unwrap();
    assert!(last.last_seen_ms <= stopped_ms + 50, "{last:?}");
    let max_age = 3 * 50;
    let at = |t: u64| b.table().get_at("a.test.example", t).unwrap().in_service;
    assert!(at(last.last_seen_ms + max_age));
    assert!(!at(last.last_seen_ms + max_age + 1));
    let c = b.counters();
    assert!(c.accepted > 0);
    assert_eq!(c.dropped(), 0, "{c:?}");
    b.shutdown();
}

/// Two services over real multicast. By default the test runs in a network namespace of its
/// own (the test thread unshares one: root is needed, and without it the test fails saying
/// so), with `lo` made multicast-capable and a route for 224.0.0.0/4 on it; the services'
/// threads inherit the namespace. `ARROW_TEST_MULTICAST=group:port
/// [ARROW_TEST_MULTICAST_IFACE=eth0]` runs it in the current namespace on that group instead
/// (e.g. `[ff15::77]:7777` with an interface name).
#[test]
fn two_services_over_multicast() {
    let (group, iface) = match std::env::var("ARROW_TEST_MULTICAST") {
        Ok(g) => (g, std::env::var("ARROW_TEST_MULTICAST_IFACE").ok()),
        Err(_) => {
            return std::thread::spawn(|| {
                private_multicast_namespace();
                multicast_pair("239.255.77.77:7777".into(), Some("lo".into()));
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    };
    multicast_pair(group, iface);
}

/// Move this thread into a new network namespace whose `lo` carries multicast.
fn private_multicast_namespace() {
    // SAFETY: unshare(2) with CLONE_NEWNET changes only this thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!(
            "a private network namespace is needed for the multicast test (root): {}",
            std::io::Error::last_os_error()
        );
    }
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "set", "lo", "multicast", "on"],
        &["route", "add", "224.0.0.0/4", "dev", "lo"],
    ] {
        // A child forked from this thread runs in its namespace.
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip {args:?}: {e} (iproute2 is needed)"));
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn multicast_pair(group: String, iface: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let mut cfg = ClusterConfig::with_secret(SECRET);
        cfg.table_path = dir.path().join("table-{node}");
        cfg.group = Some(group.parse().expect("ARROW_TEST_MULTICAST is group:port"));
        cfg.interface = iface.clone();
        cfg.comet_interval_ms = 50;
        let stats = Arc::new(LocalStats::new(1));
        stats.set_weight_bytes(1 << 40);
        arrow_cluster::start(cfg, name.into(), 80, stats).unwrap()
    };
    let a = start("a.mcast.example");
    let b = start("b.mcast.example");
    let sees = |h: &arrow_cluster::ClusterHandle, name: &str| {
        h.table()
            .snapshot()
            .iter()
            .any(|n| n.name == name && n.in_service)
    };
    assert!(
        wait_for(Duration::from_secs(5), || sees(&a, "b.mcast.example")
            && sees(&b, "a.mcast.example")),
        "a: {:?}\nb: {:?}",
        a.counters(),
        b.counters()
    );
    assert!(a.counters().own_echo > 0, "multicast loop is on");
    a.shutdown();
    b.shutdown();
}
