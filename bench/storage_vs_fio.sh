#!/usr/bin/env bash
# Storage engine vs fio on the same slab file, in the same run: rand4k (iodepth 32) and seq1m
# (iodepth 8). ROUNDS rounds per pattern, the engine and fio back to back in each round (order
# alternating), so each
# ratio compares two runs seconds apart on this shared disk; prints every round and the median
# and range of the same-round ratios arrow/fio (goal >= 0.9).
#
#   bench/storage_vs_fio.sh [DIR] [SIZE_BYTES] [SECONDS]
#   (env: ROUNDS=3, PATTERNS="rand4k:32 seq1m:8" — pattern:iodepth pairs)
#   (defaults: /var/tmp/arrow-bench, 1 GiB, 10 s; DIR must accept O_DIRECT, so not tmpfs)
#
# rand4k compares read operations/s (each arrow object is one 4 KiB block: record + 3,900-byte
# body); seq1m compares disk MB/s (each arrow object is 1 MiB + one 4 KiB record block). fio
# reads the same extent of the file as the engine: the part its objects occupy (the engine
# prints its offset and length; a first engine run before round 1 fills the slab if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/tmp/arrow-bench}
SIZE=${2:-1073741824}
SECONDS_RUN=${3:-10}
ROUNDS=${ROUNDS:-3}
mkdir -p "$DIR"
command -v fio >/dev/null || { echo "fio not installed" >&2; exit 1; }
cargo build --release -p arrow-bench >/dev/null 2>&1
BIN=target/release/arrow-bench
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus; file system: $(df -T "$DIR" | awk 'NR==2{print $2}'); $ROUNDS rounds x ${SECONDS_RUN} s"

for spec in ${PATTERNS:-rand4k:32 seq1m:8}; do
  pattern=${spec%%:*}; depth=${spec##*:}
  file="$DIR/$pattern.slab"
  # Write the whole file first: reads of never-written (fallocated) ext4 extents return zeroes
  # without touching the device, which would flatter fio's whole-file random reads.
  [ -f "$file" ] || dd if=/dev/zero of="$file" bs=4M count=$((SIZE / 4194304)) oflag=direct status=none
  ratios=()
  EXTENT=""
  for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds run the engine first, even rounds fio first, so an order effect cancels out.
    run_arrow() { "$BIN" storage-read --file "$file" --size-bytes "$SIZE" --pattern "$pattern" --iodepth "$depth" --seconds "$SECONDS_RUN"; }
    # fio reads the extent the engine's objects occupy (offset and length printed by the
    # engine), so both read the same bytes of the file.
    if [ -z "${EXTENT:-}" ]; then
      first=$(run_arrow)
      EXTENT="$(sed -n 's/.*extent_offset=\([0-9]*\) extent_bytes=\([0-9]*\).*/\1 \2/p' <<<"$first")"
      [ -n "$EXTENT" ] || { echo "storage-read printed no extent: $first" >&2; exit 1; }
    fi
    run_fio() { FILE="$file" OFFSET="${EXTENT% *}" SIZE="${EXTENT#* }" IODEPTH="$depth" RUNTIME="$SECONDS_RUN" fio --output-format=json "bench/fio/$pattern.fio"; }
    if [ $((round % 2)) = 1 ]; then
      out=$(run_arrow); json=$(run_fio)
    else
      json=$(run_fio); out=$(run_arrow)
    fi
    echo "round=$round $out"
    ratio=$(python3 - "$pattern" "$depth" "$round" "$out" "$json" <<'PY'
import json, sys
pattern, depth, rnd, arrow, fio = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
a = dict(kv.split("=", 1) for kv in arrow.split())
r = fio["jobs"][0]["read"]
fio_iops, fio_mbs = r["iops"], r["bw_bytes"] / 1e6
if pattern == "rand4k":
    mine, theirs, unit = float(a["ops_per_s"]), fio_iops, "ops/s"
else:
    mine, theirs, unit = float(a["disk_mb_per_s"]), fio_mbs, "MB/s"
print(f"round={rnd} engine=fio pattern={pattern} iodepth={depth} iops={fio_iops:.0f} mb_per_s={fio_mbs:.1f}", file=sys.stderr)
print(f"round={rnd} pattern={pattern} arrow={mine:.1f} fio={theirs:.1f} {unit} ratio={mine / theirs:.2f}", file=sys.stderr)
print(f"{mine / theirs:.4f}")
PY
)
    ratios+=("$ratio")
  done
  python3 - "$pattern" "$depth" "${ratios[@]}" <<'PY'
import statistics, sys
pattern, depth, ratios = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3:]]
print(f"RATIO pattern={pattern} iodepth={depth} rounds={len(ratios)} median={statistics.median(ratios):.2f} "
      f"min={min(ratios):.2f} max={max(ratios):.2f} all={','.join(f'{r:.2f}' for r in ratios)}")
PY
done 2>&1
