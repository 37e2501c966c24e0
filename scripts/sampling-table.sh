#!/usr/bin/env bash
# The paper's label setting beside ours, and label quality against DDIM steps (issue 17
# item 11): the README table "The paper's setting beside ours".
#
# Two DDPMs trained on the same data with the same recipe as the demo model
# (scripts/make-demo-models.sh: 200 procedural 128×128 maps coarsened and read at 32×32,
# 1000 steps of batch 16, base 16, ×1,2,2, attention at 8, lr 1e-3, EMA 0.999, seed 1):
#   ours  — onehot encoding, x0 objective, cosine schedule (the default; the demo model)
#   paper — gray encoding, ε objective, linear schedule (Ho et al.; the paper's setting)
# then `labelgen-eval sampling` samples 128 maps from each at DDIM 10, 20 and 50 steps and
# (for ours) DDPM over all 1000, through the pipeline's label stage (64×64, nearest upscale,
# cleanup radius 1 and islands under 16 px, ramp-strip removal for the gray model), and
# measures them against the training maps. (The README's 2000-step rows: the paper model
# trained on with --steps 2000 --resume from its step-1000 checkpoint.) About 35 minutes on 2 CPU cores (the trainings run at once).
#
#   bash scripts/sampling-table.sh [WORK_DIR]     # default target/sweep
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/sweep}
STEPS=${STEPS:-1000}
mkdir -p "$WORK"
cargo build --release -p worker -p eval
W=target/release/worker
source scripts/demo-recipe.sh
E=target/release/labelgen-eval

coarse_labels

$W train ddpm "${DEMO_DDPM[@]}" --steps "$STEPS" --out "$WORK/ours" --encoding onehot --objective x0 --schedule cosine &
OURS=$!
$W train ddpm "${DEMO_DDPM[@]}" --steps "$STEPS" --out "$WORK/paper" --encoding gray --objective eps --schedule linear &
PAPER=$!
wait_trainings "$OURS" "$PAPER"

# Nearest upscale (gray models have no class probabilities to upscale smoothly) and the
# demo's cleanup radius before it moved to the smooth upscale.
$E sampling --real "$WORK/coarse" --spec configs/local.toml --upscale nearest --open-radius-px 1 \
  --model ours="$WORK/ours" --model paper="$WORK/paper" --samplers ddim-10,ddim-20,ddim-50,ddpm --count 128 \
  --out "$WORK/table"
