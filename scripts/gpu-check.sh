#!/usr/bin/env bash
# GPU check: one call of at most 10 minutes on a machine with one NVIDIA GPU. Prints
# Markdown tables (format in docs/performance.md, "The GPU check") and writes them under
# $OUT (default target/gpu-check/):
#
#   1. compare.md — the demo models on CUDA in f32, bf16 and f16 against the CPU in f32,
#      same seeds: label pixel agreement and image mean absolute difference. Fails the
#      script (exit 1, after the rest has run) below MIN_AGREEMENT or above MAX_MAE.
#   2. demo.md — the demo models' pipeline at batch 8 and 32, f32 and bf16.
#   3. full.md — randomly initialised full-size models (35.7M UNet on 64×64 labels, SPADE
#      with the label input at 512×512), DDIM-20, for every label batch × image batch,
#      f32 and bf16: images/s, per-stage ms, the share of wall time in the models,
#      achieved GFLOP/s and peak GPU memory; then the FLOP-based estimate for a million
#      pairs.
#   4. overlap.md — one full-size setting (bf16, labels 32, images 16) with the DDPM a
#      batch ahead of SPADE (pipeline.overlap) and without, side by side.
#
#   WORKER_BIN=target/gpu-worker bash scripts/gpu-check.sh   # a binary built ahead
#   bash scripts/gpu-check.sh                                 # builds first (slow)
#   LABEL_BATCHES="8 32" IMAGE_BATCHES="8 16" bash scripts/gpu-check.sh
#   BUDGET_S=300 bash scripts/gpu-check.sh    # skip full-size settings after 300 s (default 480)
#
# Build ahead on a machine without a GPU (burn-cuda needs no CUDA toolkit to build):
#   cargo build --release -p worker --features cuda && strip -o target/gpu-worker target/release/worker
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/gpu-check}
DEVICE=${DEVICE:-cuda:0}
LABEL_BATCHES=${LABEL_BATCHES:-"8 32 128"}
IMAGE_BATCHES=${IMAGE_BATCHES:-"8 16 32"}
MIN_AGREEMENT=${MIN_AGREEMENT:-0.995}
MAX_MAE=${MAX_MAE:-2}
# Seconds after the build past which the full-size settings left (and section 4) are
# skipped, each skipped row saying so: about two minutes are left for the setting in hand,
# so the script ends inside one 10-minute call unless one setting runs long.
BUDGET_S=${BUDGET_S:-480}
mkdir -p "$OUT"
FAILED=0
over_budget() { [ $((SECONDS - START)) -gt "$BUDGET_S" ]; }

if [ ! -e /proc/driver/nvidia/version ]; then
  echo "gpu-check: no NVIDIA driver on this machine (/proc/driver/nvidia/version is missing)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.csv"

W=${WORKER_BIN:-}
if [ -z "$W" ]; then
  cargo build --release -p worker --features cuda || exit 2
  W=target/release/worker
fi
[ -x "$W" ] || { echo "gpu-check: WORKER_BIN=$W is not an executable" >&2; exit 2; }
START=$SECONDS

# Runs "$@" while sampling the GPU's used memory; the peak in MiB goes to $OUT/peak.
with_memory() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/mem.log" 2>/dev/null &
  local smi=$!
  local rc=0
  "$@" || rc=$?
  kill "$smi" 2>/dev/null || true
  wait "$smi" 2>/dev/null || true
  sort -n "$OUT/mem.log" | tail -n1 > "$OUT/peak"
  return $rc
}

echo
echo "## 1. CUDA ($DEVICE) per precision against the CPU in f32, demo models, same seeds"
if ! $W bench compare configs/local.toml --count 8 --device "$DEVICE" --precisions f32,bf16,f16 \
    --min-agreement "$MIN_AGREEMENT" --max-mae "$MAX_MAE" | tee "$OUT/compare.md"; then
  echo "gpu-check: a precision is outside the bounds (agreement ≥ $MIN_AGREEMENT, MAE ≤ $MAX_MAE)" >&2
  FAILED=1
fi

echo
echo "## 2. Demo models (64×64 images from 32×32 labels), $DEVICE"
with_memory $W bench pipeline configs/local.toml --device "$DEVICE" --batch-sizes 8,32 --precisions f32,bf16 --batches 2 | tee "$OUT/demo.md"
echo "peak GPU memory: $(cat "$OUT/peak") MiB"

echo
echo "## 3. Full-size random models at 512×512, DDIM-20, $DEVICE"
{
  echo "| labels batch | images batch | precision | images/s | sample ms/img | synthesize ms/img | models busy % | both busy % | sample GFLOP/s | synthesize GFLOP/s | peak GPU MiB |"
  echo "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} > "$OUT/full.md"
for lb in $LABEL_BATCHES; do
  for ib in $IMAGE_BATCHES; do
    n=$(( lb > ib ? lb : ib ))
    f="$OUT/full-$lb-$ib.md"
    if over_budget; then
      echo "| $lb | $ib | skipped: past BUDGET_S=$BUDGET_S s | | | | | | | | |" >> "$OUT/full.md"
      continue
    fi
    if with_memory $W bench pipeline --random-full-size 512 --device "$DEVICE" --batch-sizes "$n" \
        --label-batch "$lb" --image-batch "$ib" --precisions f32,bf16 --samplers ddim-20 --batches 1 --warmup 1 > "$f"; then
      # Columns of `bench pipeline`'s table (docs/performance.md): 3 precision, 6 images/s,
      # 9 sample ms/img, 11 synthesize ms/img, 14 models busy %, 15 both busy %,
      # 16-17 GFLOP/s.
      grep '^| random' "$f" | awk -F'|' -v lb="$lb" -v ib="$ib" -v p="$(cat "$OUT/peak")" \
        '{printf "| %s | %s |%s|%s|%s|%s|%s|%s|%s|%s| %s |\n", lb, ib, $3, $6, $9, $11, $14, $15, $16, $17, p}' >> "$OUT/full.md"
    else
      echo "| $lb | $ib | failed (out of memory?) see $f | | | | | | | | $(cat "$OUT/peak") |" >> "$OUT/full.md"
    fi
  done
done
cat "$OUT/full.md"
echo "(peak GPU memory is per bench call: f32 and bf16 of one batch pair together)"
grep -h 'GFLOP per pair' "$OUT"/full-*.md | head -n1

echo
echo "## 4. Overlap on and off, full-size random models at 512×512, bf16, labels 32 / images 16, $DEVICE"
if over_budget; then
  echo "skipped: past BUDGET_S=$BUDGET_S s" | tee "$OUT/overlap.md"
else
  with_memory $W bench pipeline --random-full-size 512 --device "$DEVICE" --batch-sizes 32 --label-batch 32 --image-batch 16 \
    --precisions bf16 --samplers ddim-20 --overlap on,off --batches 2 --warmup 1 | tee "$OUT/overlap.md"
  echo "peak GPU memory: $(cat "$OUT/peak") MiB"
fi
exit $FAILED
