#!/usr/bin/env bash
# Build the Debian package of Arrow with dpkg-deb: /usr/bin/arrow (release build), the systemd
# unit, an example config as /etc/arrow/arrow.toml (a conffile: upgrades keep local edits), the
# dashboard, the alert rules and the docs; a system user `arrow` made by postinst.
#   dist/build-deb.sh [OUT_DIR]      (default target/debian; ARROW_BIN overrides the binary,
#                                     DEB_FAST=1 compresses lightly)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/target/debian}
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
ARCH=$(dpkg --print-architecture)
if [[ -z "${ARROW_BIN:-}" ]]; then
  (cd "$REPO" && cargo build --release --bin arrow)
  ARROW_BIN="$REPO/target/release/arrow"
fi
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
install -D -m 0755 "$ARROW_BIN" "$ROOT/usr/bin/arrow"
install -D -m 0644 "$REPO/dist/arrow.service" "$ROOT/lib/systemd/system/arrow.service"
install -D -m 0640 "$REPO/examples/single-node.toml" "$ROOT/etc/arrow/arrow.toml"
install -D -m 0644 "$REPO/dist/grafana/arrow.json" "$ROOT/usr/share/arrow/grafana/arrow.json"
install -D -m 0644 "$REPO/dist/prometheus/alerts.yml" "$ROOT/usr/share/arrow/prometheus/alerts.yml"
for f in README.md ARCHITECTURE.md docs/DESIGN.md examples/cluster-node.toml examples/two-shards.toml; do
  install -D -m 0644 "$REPO/$f" "$ROOT/usr/share/doc/arrow/$(basename "$f")"
done
install -d "$ROOT/DEBIAN"
install -m 0755 "$REPO/dist/debian/postinst" "$REPO/dist/debian/prerm" "$ROOT/DEBIAN/"
echo /etc/arrow/arrow.toml >"$ROOT/DEBIAN/conffiles"
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: arrow
Version: $VERSION
Architecture: $ARCH
Maintainer: Arrow developers <arrow@localhost>
Section: net
Priority: optional
Depends: libc6, adduser | passwd
Installed-Size: $(du -sk "$ROOT" | cut -f1)
Description: storage-centric CDN cache node for media delivery
 Serves video manifests and segments from O_DIRECT SSD slabs with a thread-per-core io_uring
 design, keeps a bitrate-per-user guarantee across a cluster (multicast comets, consistent
 hashing, content-aware DNS) and overflows to a third-party CDN.
CONTROL
mkdir -p "$OUT"
DEB="$OUT/arrow_${VERSION}_${ARCH}.deb"
# DEB_FAST=1: light gzip instead of xz (tests package a large debug binary).
COMPRESS=(-Zxz)
[[ -n "${DEB_FAST:-}" ]] && COMPRESS=(-Zgzip -z1)
fakeroot dpkg-deb "${COMPRESS[@]}" --build --root-owner-group "$ROOT" "$DEB" >/dev/null
echo "$DEB"
