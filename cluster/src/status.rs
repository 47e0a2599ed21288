//! `arrow status`: the cluster table as a person reads it.

use std::fmt::Write;

use crate::table::NodeView;

/// Bits/s in the largest unit that keeps the number ≥ 1 ("unmeasured" for u64::MAX).
pub fn human_bps(bps: u64) -> String {
    if bps == u64::MAX {
        return "unmeasured".into();
    }
    let units = [
        (1_000_000_000_000, "Tbit/s"),
        (1_000_000_000, "Gbit/s"),
        (1_000_000, "Mbit/s"),
        (1_000, "kbit/s"),
    ];
    for (scale, unit) in units {
        if bps >= scale {
            return format!("{:.1} {unit}", bps as f64 / scale as f64);
        }
    }
    format!("{bps} bit/s")
}

/// Bytes in binary units.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn human_age(age_ms: u64) -> String {
    if age_ms < 10_000 {
        format!("{:.1}s", age_ms as f64 / 1000.0)
    } else if age_ms < 3_600_000 {
        format!("{}m{:02}s", age_ms / 60_000, age_ms / 1000 % 60)
    } else {
        format!("{}h{:02}m", age_ms / 3_600_000, age_ms / 60_000 % 60)
    }
}

/// One line per node (sorted by name) under a header, then a summary line. `in_service` and
/// `age_ms` are recomputed from `last_seen_ms` at `now_ms` when the caller's clock is later
/// than the snapshot's.
pub fn format_status(nodes: &[NodeView], now_ms: u64) -> String {
    let mut sorted: Vec<&NodeView> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let name_width = sorted
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:<39}  {:>7}  {:<11}  {:>13}  {:>13}  {:>10}  {:>7}  {:>5}  MIRROR",
        "NODE", "ADDRESS", "AGE", "STATE", "BRPU", "CAPACITY", "WEIGHT", "USERS", "DISKS"
    );
    let (mut in_service, mut users, mut weight) = (0usize, 0u64, 0u64);
    for node in sorted {
        let age_ms = now_ms.saturating_sub(node.last_seen_ms).max(node.age_ms);
        let state = if !node.in_service {
            "OUT"
        } else if !node.admitting {
            "FULL"
        } else {
            "in-service"
        };
        if node.in_service {
            in_service += 1;
            users += u64::from(node.users);
            weight = weight.saturating_add(node.weight);
        }
        let addr = match node.addr {
            Some(ip) => std::net::SocketAddr::new(ip, node.http_port).to_string(),
            None => format!("-:{}", node.http_port),
        };
        let disks = format!("{}/{}", node.disks_online, node.disks_total);
        let _ = writeln!(
            out,
            "{:<name_width$}  {:<39}  {:>7}  {:<11}  {:>13}  {:>13}  {:>10}  {:>7}  {:>5}  {}",
            node.name,
            addr,
            human_age(age_ms),
            state,
            human_bps(node.brpu_bps),
            human_bps(node.capacity_bps),
            human_bytes(node.weight),
            node.users,
            disks,
            if node.mirroring { "on" } else { "off" },
        );
    }
    let _ = writeln!(
        out,
        "{in_service} of {} nodes in service, {users} users, {} of storage",
        nodes.len(),
        human_bytes(weight)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::node;

    #[test]
    fn status_lists_nodes_with_units() {
        let mut a = node("n01.lax.hw.bar.net", 8 << 40);
        a.users = 120;
        a.brpu_bps = 12_500_000;
        a.last_seen_ms = 1_000;
        let mut b = node("n02.lax.hw.bar.net", 4 << 40);
        b.in_service = false;
        b.last_seen_ms = 0;
        b.addr = Some("178.62.11.18".parse().unwrap());
        let text = format_status(&[b, a], 95_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NODE"));
        assert!(lines[1].starts_with("n01"), "sorted by name:\n{text}");
        assert!(
            lines[1].contains("12.5 Mbit/s") && lines[1].contains("8.0 TiB"),
            "{text}"
        );
        assert!(
            lines[1].contains("in-service") && lines[1].contains("1m34s"),
            "{text}"
        );
        assert!(
            lines[2].contains("OUT") && lines[2].contains("178.62.11.18:80"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("1 of 2 nodes in service, 120 users"),
            "{text}"
        );
        assert_eq!(human_bps(u64::MAX), "unmeasured");
        assert_eq!(human_bytes(512), "512 B");
    }
}
