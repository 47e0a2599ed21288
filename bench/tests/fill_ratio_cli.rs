//! `arrow-bench fill-ratio` end to end on a small slab: one row per body size, each with a
//! stored fraction of the slab in (0, 1] and a commit rate.

use std::process::Command;

#[test]
fn fill_ratio_reports_each_body_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_arrow-bench"))
        .args(["fill-ratio", "--file"])
        .arg(dir.path().join("fill.slab"))
        .args([
            "--size-bytes",
            "8388608",
            "--bodies",
            "4096,65536",
            "--concurrency",
            "8",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(" B |"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (row, body) in rows.iter().zip(["4096 B", "65536 B"]) {
        assert_eq!(row[1], body, "{text}");
        let objects: u64 = row[2].parse().unwrap();
        let ratio: f64 = row[3].parse().unwrap();
        let rate: f64 = row[4].parse().unwrap();
        assert!(
            objects > 0 && ratio > 0.0 && ratio <= 1.0 && rate > 0.0,
            "{text}"
        );
    }
    // Large bodies fill most of the slab (small ones are what the format wastes).
    let large: f64 = rows[1][3].parse().unwrap();
    assert!(large > 0.5, "{text}");
    assert!(
        !dir.path().join("fill.slab").exists(),
        "the slab is removed"
    );
}
