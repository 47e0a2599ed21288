//! The systemd side of operating a node: `dist/arrow.service` passes `systemd-analyze verify`,
//! and a node started with `NOTIFY_SOCKET` (as `Type=notify` does) reports READY=1 once it
//! accepts, WATCHDOG=1 within its watchdog interval, and STOPPING=1 when SIGTERM begins the
//! drain — over a real unix datagram socket.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use arrow_tests::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_unit_file_verifies() {
    // systemd-analyze checks the executables exist: point the unit at this build.
    let dir = scratch_dir("unit");
    let unit = std::fs::read_to_string(repo().join("dist/arrow.service"))
        .unwrap()
        .replace("/usr/bin/arrow", arrow_bin().to_str().unwrap());
    let path = dir.path().join("arrow.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is required (Debian package systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this unit count (the host's own units may warn).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("arrow.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
}

#[test]
fn sd_notify_ready_watchdog_and_stopping() {
    let dir = scratch_dir("notify");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cfg = node_config(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        &["http://127.0.0.1:9".into()],
        "",
    );
    let cfg_path = dir.path().join("arrow.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("arrow.log")).unwrap();
    let mut child = Command::new(arrow_bin())
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(log)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    assert_eq!(next(), "WATCHDOG=1", "within half the watchdog interval");
    // SAFETY: signalling the child process this test started, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut seen = Vec::new();
    loop {
        let m = next();
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "unexpected {m}; before: {seen:?}");
        seen.push(m);
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_debian_package_holds_the_binary_unit_config_and_user_setup() {
    let out = scratch_dir("deb");
    let built = Command::new("bash")
        .arg(repo().join("dist/build-deb.sh"))
        .arg(out.path())
        .env("ARROW_BIN", arrow_bin())
        .env("DEB_FAST", "1")
        .output()
        .expect("bash");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim().to_string());
    let info = Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    for needle in ["Package: arrow", "postinst", "prerm", "conffiles"] {
        assert!(info.contains(needle), "{needle}:\n{info}");
    }
    // Unpacked: the binary runs, the shipped config passes check-config, the unit verifies.
    let root = out.path().join("root");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(x.success());
    let bin = root.join("usr/bin/arrow");
    let check = Command::new(&bin)
        .arg("check-config")
        .arg(root.join("etc/arrow/arrow.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for f in [
        "lib/systemd/system/arrow.service",
        "usr/share/arrow/grafana/arrow.json",
        "usr/share/arrow/prometheus/alerts.yml",
        "usr/share/doc/arrow/DESIGN.md",
    ] {
        assert!(root.join(f).is_file(), "{f} missing from the package");
    }
    let postinst = std::fs::read_to_string(repo().join("dist/debian/postinst")).unwrap();
    assert!(
        postinst.contains("useradd --system"),
        "the package makes its user"
    );
}
