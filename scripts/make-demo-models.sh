#!/usr/bin/env bash
# Reproduces the demo models in models/demo/ (the ones configs/local.toml uses):
#
# - SPADE (ngf 16, 64×64 images, the noise input: noise → linear layer): 200 procedural
#   64×64 (image, label) pairs, 7200 steps of batch 4 (about 80 minutes alone on 2 cores).
#   The 7200 steps are what the contact sheet sees: roads drawn along the label's roads,
#   tree and field texture, where the 1200-step model (the demo until 2026-12-06) painted
#   whitish blobs; the utility segmenter's consistency and KID stay within their seed
#   spread (README, "Demo models and benchmarks"). NVlabs' label input (the default of
#   `train spade`) trained for 2400 steps painted images further from the real ones (KID
#   × 1000 in the utility segmenter's features 100 ± 31 against 47 ± 22 for the noise
#   input at 1200 steps, 63 images on the same label maps, 3 seeds; consistency 15.3
#   against 15.8 mIoU), so the demo keeps the noise input.
# - DDPM (282k-parameter UNet, 32×32 one-hot label maps, x0 objective, cosine schedule):
#   200 procedural 128×128 label maps coarsened by `worker cleanup` (opening radius 1,
#   islands under 48 pixels merged) and read at 32×32, 1000 steps of batch 16 (about 10
#   minutes alone). At 32×32 the raw procedural
#   maps are mostly one-pixel detail (a 512×512 layout squeezed 16×); the coarsened maps
#   keep the layout (roads, blocks, fields, forest) a 32×32 model can learn.
#
# Both trainings hold out the same 21 of the 200 stems (the default --test-fraction 0.1
# splits by a hash of the stem) and write them to test_stems.txt, so `labelgen-eval utility
# --real WORK_DIR/data` measures a demo run on tiles neither model saw.
#
#   bash scripts/make-demo-models.sh [WORK_DIR]
#
# About an hour and a half on 2 CPU cores (both trainings run at once; SPADE takes longer).
# WORK_DIR (default target/demo-models) keeps the data, checkpoints and preview grids; the artifacts
# (model.json + weights), the held-out stems and the last preview grid are copied into
# models/demo/. Same seeds, same data; the weights depend on float summation order, so a
# rebuild gives a model of the same quality, not the same bytes (and a new digest).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/demo-models}
DDPM_STEPS=${DDPM_STEPS:-1000}
SPADE_STEPS=${SPADE_STEPS:-7200}
mkdir -p "$WORK"
cargo build --release -p worker
W=target/release/worker
source scripts/demo-recipe.sh

$W procedural --count 200 --size 64 --seed 3 --out "$WORK/data"
coarse_labels

$W train ddpm "${DEMO_DDPM[@]}" --out "$WORK/ddpm" --steps "$DDPM_STEPS" --objective x0 --schedule cosine &
DDPM=$!
$W train spade --data "$WORK/data" --out "$WORK/spade" --size 64 --ngf 16 --batch 4 --input noise \
  --steps "$SPADE_STEPS" --checkpoint-every 200 --seed 1 --resume &
SPADE=$!
wait_trainings "$DDPM" "$SPADE"

for m in ddpm spade; do
  mkdir -p "models/demo/$m"
  find "$WORK/$m" -maxdepth 1 -type f \( -name '*.mpk' -o -name model.json -o -name test_stems.txt \) \
    -exec cp {} "models/demo/$m/" \;
  last=$(ls "$WORK/$m/previews/"*.png 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$last" ] && cp "$last" "models/demo/$m/preview.png"
done
du -sh models/demo/*
