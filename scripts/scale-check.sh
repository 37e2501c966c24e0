#!/usr/bin/env bash
# A million samples on one machine, measured: procedural samples at a small image size in
# WebDataset format, through a real redis-server and several `worker` processes, then
# finalize and a check of the result. Not part of the test run (it takes a while).
#
#   scripts/scale-check.sh [SAMPLES] [WORKERS]     # defaults: 1000000 samples, 2 workers
#
# Environment: SIZE (image side, default 32), SHARD_SIZE (default 256), OUTPUT_URL (where
# the run goes, default a directory under WORK; s3://bucket/prefix with the usual AWS_*
# variables for an S3 server), WORK (scratch directory, default /tmp/labelgen-scale),
# LABELGEN_BIN (directory with release `worker` and `coordinator`; default: built here),
# BASELINE (samples of each baseline, default 100000; 0 skips them).
#
# Prints one table: submit time and peak RSS, Redis memory before/after submit and after
# finalize (the server's used_memory, and the run's own keys by MEMORY USAGE), claims/s,
# samples/s of the run against two baselines on the same cores, BASELINE samples each: a
# plain `worker procedural` loop at the same size (it writes a PNG pair and a preview per
# tile as separate files) and the same spec run embedded (`worker run --workers WORKERS`:
# one process, in-memory queue), which isolates what Redis and separate processes cost;
# finalize time and peak RSS, watch's peak RSS. Then checks the result with `coordinator
# verify` (exactly SAMPLES samples, indices each once and in order, every published tar
# present with its sha256, every member and side-table row as its manifest line says), on
# local or S3 output.
set -euo pipefail

SAMPLES="${1:-1000000}"
WORKERS="${2:-2}"
SIZE="${SIZE:-32}"
SHARD_SIZE="${SHARD_SIZE:-256}"
WORK="${WORK:-/tmp/labelgen-scale}"
BASELINE="${BASELINE:-100000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if [ -z "${LABELGEN_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p worker -p coordinator)
  LABELGEN_BIN="$ROOT/target/release"
fi
W="$LABELGEN_BIN/worker"
C="$LABELGEN_BIN/coordinator"
command -v redis-server >/dev/null || { echo "scale-check: redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "scale-check: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"
OUTPUT_URL="${OUTPUT_URL:-$WORK/out}"
# A fresh run id each time: a rerun against the same s3:// prefix would find the last
# run's commit records (and measure nothing) or refuse a different sample count.
RUN_ID="scale-$(date +%s)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --dir "$WORK" --logfile redis.log --daemonize yes --pidfile "$WORK/redis.pid"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
}
trap cleanup EXIT
export REDIS_URL="redis://127.0.0.1:$PORT/0" RUST_LOG="${RUST_LOG:-warn}"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
mem() { redis-cli -p "$PORT" info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }
# MEMORY USAGE summed over the run's keys.
keys_mem() {
  local total=0 k
  for k in $(redis-cli -p "$PORT" --scan --pattern "labelgen:{$RUN_ID}:*"); do
    total=$((total + $(redis-cli -p "$PORT" memory usage "$k")))
  done
  echo "$total"
}
# Peak RSS (KiB) and wall seconds of a command from GNU time's output file.
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
wall() { python3 -c 'import sys; h=sys.argv[1].split(":"); print(sum(float(x)*60**i for i,x in enumerate(reversed(h))))' "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1")"; }

spec() {
  cat <<EOF
[run]
count = $1
shard_size = $SHARD_SIZE
seed = 7
lease_seconds = 60

[output]
url = "$2"
format = "webdataset"

[pipeline]
kind = "procedural"
image_size = $SIZE
batch_size = 64
EOF
}
spec "$SAMPLES" "$OUTPUT_URL" > "$WORK/scale.toml"

# The baselines, on the same cores.
base_rate="skipped"; emb_rate="skipped"
if [ "$BASELINE" -gt 0 ]; then
  /usr/bin/time -v -o "$WORK/time.baseline" "$W" procedural --count "$BASELINE" --size "$SIZE" --out "$WORK/baseline" --threads "$(nproc)" >/dev/null 2>&1
  base_rate="$(python3 -c "print(f'{$BASELINE / $(wall "$WORK/time.baseline"):.0f}')")"
  spec "$BASELINE" "$WORK/embedded" > "$WORK/embedded.toml"
  /usr/bin/time -v -o "$WORK/time.embedded" "$W" run "$WORK/embedded.toml" --workers "$WORKERS" >/dev/null 2>&1
  emb_rate="$(python3 -c "print(f'{$BASELINE / $(wall "$WORK/time.embedded"):.0f}')")"
  rm -rf "$WORK/baseline" "$WORK/embedded"
fi

mem0="$(mem)"
/usr/bin/time -v -o "$WORK/time.submit" "$C" submit "$WORK/scale.toml" --run-id "$RUN_ID" >/dev/null 2>"$WORK/submit.log"
mem1="$(mem)"
keys1="$(keys_mem)"

t0="$(date +%s.%N)"
for i in $(seq "$WORKERS"); do
  "$W" --concurrency 1 --exit-when-idle --metrics-addr 127.0.0.1:0 >"$WORK/worker-$i.log" 2>&1 &
  pids+=("$!")
done
/usr/bin/time -v -o "$WORK/time.watch" "$C" watch "$RUN_ID" --no-finalize --interval 0.5 2>"$WORK/watch.log"
t1="$(date +%s.%N)"
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

keys_done="$(keys_mem)"
/usr/bin/time -v -o "$WORK/time.finalize" "$C" finalize "$RUN_ID" --json >"$WORK/finalize.json"
mem2="$(mem)"
keys2="$(keys_mem)"
shards="$(( (SAMPLES + SHARD_SIZE - 1) / SHARD_SIZE ))"
gen_s="$(python3 -c "print($t1 - $t0)")"

python3 - "$SAMPLES" "$shards" "$gen_s" "$base_rate" "$emb_rate" "$mem0" "$mem1" "$mem2" "$keys1" "$keys_done" "$keys2" "$WORKERS" "$SIZE" \
  "$(wall "$WORK/time.submit")" "$(rss "$WORK/time.submit")" "$(rss "$WORK/time.watch")" \
  "$(wall "$WORK/time.finalize")" "$(rss "$WORK/time.finalize")" <<'PY'
import sys
(samples, shards, gen_s, base, emb, m0, m1, m2, k1, kdone, k2, workers, size, sub_s, sub_rss, watch_rss, fin_s, fin_rss) = sys.argv[1:]
samples, shards, gen_s = int(samples), int(shards), float(gen_s)
m0, m1, m2 = int(m0), int(m1), int(m2)
rate = samples / gen_s
rows = [
    ("samples / shards", f"{samples:,} / {shards:,} ({size}×{size}, {workers} workers)"),
    ("submit", f"{float(sub_s):.2f} s, peak RSS {int(sub_rss)/1024:.1f} MiB"),
    ("Redis used_memory (server)", f"{m0:,} B before submit, {m1:,} after (+{m1-m0:,}: the first client and its scripts), {m2:,} after finalize"),
    ("the run's keys (MEMORY USAGE)", f"{int(k1):,} B after submit, {int(kdone):,} B when all committed, {int(k2):,} B after finalize"),
    ("generate (workers, until watch saw all committed)", f"{gen_s:.1f} s: {shards/gen_s:.1f} claims/s, {rate:,.0f} samples/s"),
    ("plain `worker procedural` loop, same cores", "skipped" if base == "skipped" else f"{int(base):,} samples/s (run: {(rate / int(base) - 1) * 100:+.1f} %)"),
    ("embedded `worker run` (no Redis, one process)", "skipped" if emb == "skipped" else f"{int(emb):,} samples/s"),
]
if emb != "skipped":
    rows.append(("orchestration overhead (Redis + processes vs embedded)", f"{(1 - rate / int(emb)) * 100:+.1f} % (target < 5 %)"))
rows += [
    ("watch", f"peak RSS {int(watch_rss)/1024:.1f} MiB"),
    ("finalize", f"{float(fin_s):.1f} s, peak RSS {int(fin_rss)/1024:.1f} MiB"),
]
w = max(len(k) for k, _ in rows)
print("\n| measure | value |\n| --- | --- |")
for k, v in rows:
    print(f"| {k} | {v} |")
PY

# The check: `coordinator verify` streams manifest.jsonl (indices 0..SAMPLES-1 each once,
# in order) and dataset/shards.jsonl, and hashes every published tar against its sha256,
# on a disk or on S3 alike.
/usr/bin/time -v -o "$WORK/time.verify" "$C" verify "$OUTPUT_URL/$RUN_ID" --json >"$WORK/verify.json" || true
python3 - "$SAMPLES" "$WORK/verify.json" "$(wall "$WORK/time.verify")" "$(rss "$WORK/time.verify")" <<'PY'
import json, sys
n, path, secs, rss = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))
assert r["problem_count"] == 0, f"verify found {r['problem_count']} problems: {r['problems']}"
assert r["samples"] == n, f"verify: {r['samples']} samples, expected {n}"
print(f"check (`coordinator verify`, {secs:.1f} s, peak RSS {rss/1024:.1f} MiB): {n:,} samples, indices 0..{n - 1:,} each once and in order, "
      f"{r['tars']:,} tars ({r['bytes']:,} bytes) match their sha256")
PY
