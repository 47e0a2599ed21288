#!/usr/bin/env bash
# Where the random 4 KiB reads' distance to fio comes from. Each round runs, back to back on the
# same slab file: fio (bench/fio/rand4k.fio), the disk ring alone (`storage-read --engine ring`:
# random 4 KiB reads, no engine work), the ring with WORK_NS of CPU spent after every read, and
# the storage engine (`storage-read`). Prints every round and the median of each same-round
# ratio to fio.
#
#   bench/storage_ring_split.sh [DIR] [SIZE_BYTES] [SECONDS]   (env: ROUNDS=6, WORK_NS=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/tmp/arrow-bench}
SIZE=${2:-1073741824}
SECS=${3:-3}
ROUNDS=${ROUNDS:-6}
WORK_NS=${WORK_NS:-2000}
command -v fio >/dev/null || { echo "fio not installed" >&2; exit 1; }
mkdir -p "$DIR"
file="$DIR/rand4k.slab"
[ -f "$file" ] || dd if=/dev/zero of="$file" bs=4M count=$((SIZE / 4194304)) oflag=direct status=none
cargo build --release -p arrow-bench >/dev/null 2>&1
BIN=target/release/arrow-bench
ops() { sed -n 's/.*ops_per_s=\([0-9]*\).*/\1/p'; }
echo "# $(date -u +%FT%TZ) $(uname -r); $ROUNDS rounds x $SECS s; WORK_NS=$WORK_NS"
rows=()
for round in $(seq 1 "$ROUNDS"); do
  f=$(FILE="$file" SIZE="$SIZE" IODEPTH=32 RUNTIME="$SECS" fio --output-format=terse bench/fio/rand4k.fio | awk -F';' '{print int($8)}')
  r0=$("$BIN" storage-read --engine ring --file "$file" --size-bytes "$SIZE" --pattern rand4k --iodepth 32 --seconds "$SECS" | ops)
  rw=$("$BIN" storage-read --engine ring --work-ns "$WORK_NS" --file "$file" --size-bytes "$SIZE" --pattern rand4k --iodepth 32 --seconds "$SECS" | ops)
  a=$("$BIN" storage-read --file "$file" --size-bytes "$SIZE" --pattern rand4k --iodepth 32 --seconds "$SECS" | ops)
  echo "round=$round fio=$f ring=$r0 ring_work=$rw engine=$a"
  rows+=("$f $r0 $rw $a")
done
python3 - "$WORK_NS" "${rows[@]}" <<'PY'
import statistics, sys
work, rows = sys.argv[1], [list(map(float, r.split())) for r in sys.argv[2:]]
med = lambda i: statistics.median(r[i] / r[0] for r in rows)
print(f"MEDIAN ÷ fio: ring {med(1):.2f}, ring + {work} ns/read {med(2):.2f}, engine {med(3):.2f}")
PY
