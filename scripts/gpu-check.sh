#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU: builds the worker with `--features cuda`,
# runs the demo models on CUDA and on the CPU for the same seeds and compares the outputs,
# then times the ddpm-spade pipeline — the demo models, and randomly initialised
# full-size models (35.7M UNet on 64×64 labels, 94.6M SPADE with the label input at 512×512) at several batch
# sizes — and prints Markdown tables (images/s, per-stage ms per image, peak GPU memory).
#
#   bash scripts/gpu-check.sh            # about 5–10 minutes on one H100 after the build
#   BATCHES="1 8 16" SAMPLERS=ddim-50 bash scripts/gpu-check.sh
#
# Everything it prints is also written under $OUT (default target/gpu-check/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/gpu-check}
BATCHES=${BATCHES:-"1 4 8 16"}
SAMPLERS=${SAMPLERS:-ddim-50}
DEVICE=${DEVICE:-cuda:0}
mkdir -p "$OUT"

if [ ! -e /proc/driver/nvidia/version ]; then
  echo "gpu-check: no NVIDIA driver on this machine (/proc/driver/nvidia/version is missing)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.csv"

cargo build --release -p worker --features cuda
W=target/release/worker

# Runs "$@" while sampling the GPU's used memory; prints the peak in MiB to $OUT/peak.
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
echo "## CUDA versus CPU, demo models (configs/local.toml), same seeds"
$W bench compare configs/local.toml --count 8 --device "$DEVICE" | tee "$OUT/compare.md"

echo
echo "## Demo models (64×64 images from 32×32 labels), $DEVICE"
with_memory $W bench pipeline configs/local.toml --device "$DEVICE" --batch-sizes 1,8,32 --samplers ddim-50,ddpm --batches 2 | tee "$OUT/demo.md"
echo "peak GPU memory: $(cat "$OUT/peak") MiB"

echo
echo "## Demo models on the CPU (same machine, for comparison)"
$W bench pipeline configs/local.toml --device cpu --batch-sizes 8 --samplers ddim-50 --batches 1 | tee "$OUT/demo-cpu.md"

echo
echo "## Full-size random models at 512×512, $DEVICE"
{
  echo "| batch | sampler | images/s | sample ms/img | cleanup ms/img | synthesize ms/img | encode ms/img | upload ms/img | peak GPU MiB |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} > "$OUT/full.md"
for b in $BATCHES; do
  for s in $SAMPLERS; do
    if with_memory $W bench pipeline --random-full-size 512 --device "$DEVICE" --batch-sizes "$b" --samplers "$s" --batches 2 > "$OUT/full-$b-$s.md"; then
      row=$(tail -n1 "$OUT/full-$b-$s.md" | awk -F'|' -v b="$b" -v s="$s" -v p="$(cat "$OUT/peak")" '{printf "| %s | %s |%s|%s|%s|%s|%s|%s| %s |", b, s, $4, $5, $6, $7, $8, $9, p}')
    else
      row="| $b | $s | failed (out of memory?) see $OUT/full-$b-$s.md | | | | | | $(cat "$OUT/peak") |"
    fi
    echo "$row" >> "$OUT/full.md"
  done
done
cat "$OUT/full.md"
