# The demo models' data and DDPM recipe (and wait_trainings), sourced by make-demo-models.sh,
# sampling-table.sh and scarce-data.sh so the three train on the same maps the same way.
# Needs $W (the worker binary) and $WORK (the work directory).

# 200 procedural 128×128 label maps coarsened by `worker cleanup` into $WORK/coarse
# (read at 32×32 by the DDPM: the raw maps are mostly one-pixel detail at that size).
coarse_labels() {
  $W procedural --count 200 --size 128 --seed 3 --out "$WORK/proc128"
  $W cleanup --in "$WORK/proc128/labels" --out "$WORK/coarse/labels" --open-radius-px 1 --min-island-px 48
  rm -f "$WORK/coarse/labels/cleanup.json"
}

# `worker train ddpm` flags of the demo recipe (add --steps, --out and the encoding).
DEMO_DDPM=(--data "$WORK/coarse" --size 32 --batch 16 --lr 0.001 --base-channels 16
  --channel-mult 1,2,2 --attention 8 --ema 0.999 --checkpoint-every 250 --seed 1 --resume)

# Waits for background trainings (PIDs) in the order they end; when one fails, stops the
# others and fails. Under `set -e` a bare `wait A; wait B` would exit at A's failure and
# leave B writing into the checkpoint directory that a rerun resumes from. (bash >= 5.1)
wait_trainings() {
  if (( BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1) )); then
    echo "wait_trainings needs bash 5.1 or later (wait -n -p); this is $BASH_VERSION" >&2
    kill "$@" 2>/dev/null || true
    return 2
  fi
  local left=("$@") ended p rest status
  while [ ${#left[@]} -gt 0 ]; do
    status=0
    wait -n -p ended "${left[@]}" || status=$?
    rest=()
    for p in "${left[@]}"; do [ "$p" = "$ended" ] || rest+=("$p"); done
    left=("${rest[@]}")
    if [ "$status" -ne 0 ]; then
      if [ ${#left[@]} -gt 0 ]; then
        kill "${left[@]}" 2>/dev/null || true
        wait "${left[@]}" 2>/dev/null || true
      fi
      echo "a training failed (exit $status; see its output above); stopped the others" >&2
      return 1
    fi
  done
}
