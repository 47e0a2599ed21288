//! Cluster table: seqlock consistency under concurrent readers, liveness from age with an
//! injected clock, record reuse, single writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_cluster::{Comet, DiskHealth, DiskState, Liveness, Table};

fn comet(name: &str, n: u64) -> Comet {
    Comet {
        name: name.into(),
        boot_id: 7,
        sequence: n,
        time_ms: n,
        addr: Some("10.0.0.1".parse().unwrap()),
        http_port: (n % 60_000) as u16,
        brpu_bps: n,
        capacity_bps: n,
        weight: n,
        users: n as u32,
        mirroring: n % 2 == 1,
        admitting: n & 1 == 0,
        disks: vec![
            DiskHealth {
                uuid: [1; 16],
                state: DiskState::Online,
            };
            (n % 5) as usize
        ],
    }
}

const LIVENESS: Liveness = Liveness {
    comet_interval_ms: 100,
    missing_intervals: 3,
};

#[test]
fn concurrent_readers_never_see_a_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table");
    let table = Arc::new(Table::create_with(&path, 8, LIVENESS).unwrap());
    // A second, read-only mapping of the same file: another process's view.
    let other = Arc::new(Table::open_readonly(&path).unwrap());
    let names = ["a.example", "b.example", "c.example"];
    for name in names {
        table.upsert(&comet(name, 0), 0).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let view = if i == 0 {
                Arc::clone(&table)
            } else {
                Arc::clone(&other)
            };
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for node in view.snapshot_at(0) {
                        let n = node.sequence;
                        // Every field was written from the same n: any mix is a torn read.
                        assert_eq!(node.brpu_bps, n);
                        assert_eq!(node.capacity_bps, n);
                        assert_eq!(node.weight, n);
                        assert_eq!(node.users, n as u32);
                        assert_eq!(node.sent_time_ms, n);
                        assert_eq!(node.http_port, (n % 60_000) as u16);
                        assert_eq!(node.mirroring, n % 2 == 1);
                        assert_eq!(node.disks_total, (n % 5) as u16);
                        assert!(names.contains(&node.name.as_str()));
                        checked += 1;
                    }
                }
                checked
            })
        })
        .collect();
    let writes: u64 = std::env::var("ARROW_TABLE_TORN_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    for n in 1..=writes {
        table.upsert(&comet(names[(n % 3) as usize], n), 0).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}

#[test]
fn missing_node_goes_out_of_service_after_n_intervals_and_keeps_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::create_with(&dir.path().join("t"), 4, LIVENESS).unwrap();
    let slot = table.upsert(&comet("a.example", 1), 1_000).unwrap();
    table.upsert(&comet("b.example", 1), 1_000).unwrap();
    let state = |now| {
        table
            .snapshot_at(now)
            .into_iter()
            .map(|n| (n.name, n.in_service))
            .collect::<Vec<_>>()
    };
    // N = 3 intervals of 100 ms: in service up to an age of 300 ms, out after.
    assert!(state(1_300).iter().all(|(_, up)| *up));
    table.upsert(&comet("b.example", 2), 1_250).unwrap();
    assert_eq!(
        state(1_301),
        vec![("a.example".into(), false), ("b.example".into(), true)]
    );
    // a returns: same record, in service again.
    assert_eq!(table.upsert(&comet("a.example", 9), 2_000).unwrap(), slot);
    let a = table.get_at("a.example", 2_000).unwrap();
    assert!(a.in_service);
    assert_eq!(a.comets, 2);
    assert_eq!(table.snapshot_at(2_000).len(), 2);
}

#[test]
fn readers_see_the_writers_liveness_and_reopen_keeps_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    {
        let table = Table::create_with(&path, 4, LIVENESS).unwrap();
        table.upsert(&comet("a.example", 5), 10).unwrap();
        let reader = Table::open_readonly(&path).unwrap();
        assert_eq!(reader.liveness(), LIVENESS);
        assert_eq!(reader.max_nodes(), 4);
        assert!(
            reader.upsert(&comet("b.example", 1), 10).is_err(),
            "read-only"
        );
        // A second writer is refused while the first lives.
        let err = Table::create_with(&path, 4, LIVENESS).err().unwrap();
        assert!(err.to_string().contains("already written"), "{err}");
    }
    // A restarted writer finds the records (and the replay state) again.
    let table = Table::create_with(&path, 4, LIVENESS).unwrap();
    let a = table.get_at("a.example", 10).unwrap();
    assert_eq!((a.boot_id, a.sequence), (7, 5));
    let (pair, silent_ms) = table.last_accepted("a.example", 10).unwrap();
    assert_eq!(pair, (7, 5));
    assert!(silent_ms <= 10, "{silent_ms}");
    drop(table);
    // A different layout replaces the file.
    let table = Table::create_with(&path, 16, LIVENESS).unwrap();
    assert!(table.snapshot_at(10).is_empty());
    assert_eq!(Table::open_readonly(&path).unwrap().max_nodes(), 16);
}

#[test]
fn full_table_reuses_the_longest_departed_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::create_with(&dir.path().join("t"), 2, LIVENESS).unwrap();
    table.upsert(&comet("a.example", 1), 0).unwrap();
    let b_slot = table.upsert(&comet("b.example", 1), 100).unwrap();
    assert!(
        table.upsert(&comet("c.example", 1), 200).is_err(),
        "both in service"
    );
    // At 350 a is out of service (age 350 > 300), b is not (age 250).
    let slot = table.upsert(&comet("c.example", 1), 350).unwrap();
    assert_ne!(slot, b_slot);
    let names: Vec<String> = table.snapshot_at(350).into_iter().map(|n| n.name).collect();
    assert_eq!(names.len(), 2);
    assert!(!names.contains(&"a.example".to_string()));
}

#[test]
fn garbage_file_is_not_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk");
    std::fs::write(&path, vec![0xa5u8; 4096]).unwrap();
    assert!(Table::open_readonly(&path).is_err());
    std::fs::write(&path, b"").unwrap();
    assert!(Table::open_readonly(&path).is_err());
    assert!(Table::open_readonly(&dir.path().join("missing")).is_err());
}

#[test]
fn snapshot_cache_rereads_on_new_generation_or_age() {
    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(Table::create_with(&dir.path().join("t"), 4, LIVENESS).unwrap());
    let g0 = table.generation();
    table.upsert(&comet("a.example", 1), 1_000).unwrap();
    assert_eq!(table.generation(), g0 + 1);
    let mut cache = arrow_cluster::SnapshotCache::new(Arc::clone(&table), 25);
    assert_eq!(cache.nodes_at(1_000).len(), 1);
    table.upsert(&comet("b.example", 1), 1_010).unwrap();
    assert_eq!(cache.nodes_at(1_010).len(), 2, "new generation: re-read");
    // No comet, but time passes: a's liveness is recomputed within refresh_ms.
    assert!(cache.nodes_at(1_300)[0].in_service);
    assert!(cache
        .nodes_at(1_310)
        .iter()
        .any(|n| n.name == "b.example" && n.in_service));
    let a_up = |c: &mut arrow_cluster::SnapshotCache, now| {
        c.nodes_at(now)
            .iter()
            .any(|n| n.name == "a.example" && n.in_service)
    };
    assert!(
        a_up(&mut cache, 1_320),
        "within refresh_ms of the last read: cached"
    );
    assert!(
        !a_up(&mut cache, 1_335),
        "a is out of service at age 335 > 300"
    );
}
