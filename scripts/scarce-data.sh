#!/usr/bin/env bash
# The scarce-data benchmark (issue 17 item 12): does generated data help a segmentation
# model when labeled tiles are few? Reruns on a 2-core machine in about an hour.
#
# 1. A real set with few labeled tiles: 200 procedural 64×64 tiles (seed 3, as the demo),
#    of which --test-fraction 0.6 (split by a hash of the stem) is held out: 92 tiles to
#    train on, 108 to test on (the hash's split of these stems).
# 2. Both generators trained on the training split only, with the demo's recipe
#    (scripts/make-demo-models.sh) except SPADE's input: the DDPM on the coarsened 128×128
#    maps read at 32×32, SPADE on the 64×64 pairs with the label input (`train spade`'s
#    default). Both write the same test_stems.txt.
# 3. One ddpm-spade run of 3× the training count with those models.
# 4. `labelgen-eval utility` on the held-out tiles: real only against real + synthetic
#    added (not replaced) at 1× and 3× the real count, 5 paired seeds each, the baseline
#    trained for the same optimizer steps (--budget steps, the default); its report also
#    scores image–label consistency and the feature KID, which say which stage limits.
#
#   bash scripts/scarce-data.sh [WORK_DIR]
#
# WORK_DIR (default target/scarce) keeps everything; the two utility reports are
# WORK_DIR/utility-add1/report.md and WORK_DIR/utility-add3/report.md. --resume makes a
# rerun skip finished training.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/scarce}
FRACTION=${FRACTION:-0.6}
DDPM_STEPS=${DDPM_STEPS:-1000}
SPADE_STEPS=${SPADE_STEPS:-1200}
SEEDS=${SEEDS:-5}
mkdir -p "$WORK"
cargo build --release -p worker -p eval
W=target/release/worker
source scripts/demo-recipe.sh
E=target/release/labelgen-eval

$W procedural --count 200 --size 64 --seed 3 --out "$WORK/data"
coarse_labels

$W train ddpm "${DEMO_DDPM[@]}" --test-fraction "$FRACTION" --out "$WORK/ddpm" --steps "$DDPM_STEPS" \
  --objective x0 --schedule cosine &
DDPM=$!
$W train spade --data "$WORK/data" --test-fraction "$FRACTION" --out "$WORK/spade" --size 64 \
  --ngf 16 --batch 4 --steps "$SPADE_STEPS" --checkpoint-every 200 --seed 1 --resume &
SPADE=$!
wait_trainings "$DDPM" "$SPADE"
cmp "$WORK/ddpm/test_stems.txt" "$WORK/spade/test_stems.txt"

TRAIN=$(( 200 - $(wc -l < "$WORK/spade/test_stems.txt") ))
COUNT=$(( 3 * TRAIN ))
echo "training split: $TRAIN tiles; generating $COUNT samples"
# configs/local.toml, pointed at these models and this many samples.
sed -e "s|^count = .*|count = $COUNT|" -e "s|^url = .*|url = \"$WORK/runs\"|" \
  -e "s|^model = \"models/demo/ddpm\"|model = \"$WORK/ddpm\"|" \
  -e "s|^model = \"models/demo/spade\"|model = \"$WORK/spade\"|" configs/local.toml > "$WORK/run.toml"
rm -rf "$WORK/runs"
$W run "$WORK/run.toml"
RUN=$(ls -d "$WORK"/runs/run-* | tail -n1)

for ADD in 1 3; do
  $E utility --real "$WORK/data" --test-stems "$WORK/spade/test_stems.txt" --synthetic "$RUN" \
    --add "$ADD" --seeds "$SEEDS" --epochs 10 --size 64 --width 8 --out "$WORK/utility-add$ADD"
done
