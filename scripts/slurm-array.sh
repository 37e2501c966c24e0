#!/usr/bin/env bash
# Static sharding on Slurm: one array of at most MAX_TASKS tasks covers any run (task K
# runs shards K, K+TASKS, K+2·TASKS, …), then a finalize job.
#
#   scripts/slurm-array.sh CONFIG [RUN_ID]             # login node: submits both jobs
#   TASKS=N scripts/slurm-array.sh resubmit CONFIG RUN_ID K…   # reruns tasks K…
#
# The launcher asks `coordinator plan CONFIG --shell` for the shard count and the array
# size (no TOML parsing here), submits `sbatch --array=0-(TASKS-1)%MAX_PARALLEL` of this
# script in `task` mode (each task runs `worker run-shard CONFIG --tasks TASKS`; the worker
# takes K from SLURM_ARRAY_TASK_ID), then this script in `finalize` mode with
# --dependency=afterok on the array (`coordinator finalize RUN_ID --config CONFIG`).
# A committed shard is never redone, so rerunning a failed task is safe and quick:
#   TASKS=N scripts/slurm-array.sh resubmit CONFIG RUN_ID 17 42
# with N the first submission's task count (the launcher prints this line; without
# TASKS it is worked out from MAX_TASKS again, so a different MAX_TASKS would rerun other
# shards), then `coordinator finalize RUN_ID --config CONFIG`. The first finalize job is
# cancelled by Slurm once a task fails (--kill-on-invalid-dep). Every job gets the binaries' directory as an argument: inside a
# job $0 is Slurm's spooled copy of this script, so nothing is found relative to it.
#
# Environment: S3 settings as usual (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), exported into the jobs (sbatch --export=ALL).
# LABELGEN_BIN: directory holding `worker` and `coordinator` (default: target/release
# beside this script). MAX_TASKS: most tasks in the array (default 1000; Slurm's default
# MaxArraySize is 1001). MAX_PARALLEL: tasks running at once (default 16). SBATCH: the
# sbatch to call (default sbatch). SBATCH_PARTITION etc. as usual.
#SBATCH --job-name=labelgen
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=02:00:00
#SBATCH --output=labelgen-%A_%a.out
set -euo pipefail

SBATCH="${SBATCH:-sbatch}"

case "${1:-}" in
  task)
    # Inside an array task: SLURM_ARRAY_TASK_ID is K.
    bin="$2"; config="$3"; run_id="$4"; tasks="$5"
    exec "$bin/worker" run-shard "$config" --run-id "$run_id" --tasks "$tasks"
    ;;
  finalize)
    bin="$2"; config="$3"; run_id="$4"
    "$bin/coordinator" finalize "$run_id" --config "$config"
    exec "$bin/coordinator" status "$run_id" --config "$config"
    ;;
  -h|--help)
    sed -n '2,/^#SBATCH/{/^#SBATCH/d;s/^# \{0,1\}//;p}' "$0"; exit 0
    ;;
  "")
    sed -n '2,/^#SBATCH/{/^#SBATCH/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2
    ;;
esac

# Login node: $0 is this file.
BIN="$(realpath "${LABELGEN_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}")"

if [ "$1" = resubmit ]; then
  [ $# -ge 4 ] || { echo "usage: $0 resubmit CONFIG RUN_ID TASK..." >&2; exit 2; }
  config="$(realpath "$2")"; run_id="$3"; shift 3
  eval "$("$BIN/coordinator" plan "$config" --shell --max-tasks "${MAX_TASKS:-1000}")"
  if [ -n "${TASKS:-}" ]; then
    [ "$TASKS" -ge 1 ] 2>/dev/null || { echo "TASKS=$TASKS: expected the first submission's task count" >&2; exit 2; }
    tasks="$TASKS"
  else
    echo "TASKS not set: assuming the first submission had $tasks tasks (MAX_TASKS=${MAX_TASKS:-1000})" >&2
  fi
  list="$(IFS=,; echo "$*")"
  array_id="$("$SBATCH" --parsable --export=ALL --array="$list" "$0" task "$BIN" "$config" "$run_id" "$tasks")"
  echo "run $run_id: tasks $list of $tasks resubmitted as array job $array_id"
  echo "then: $BIN/coordinator finalize $run_id --config $config"
  exit 0
fi

config="$(realpath "$1")"
eval "$("$BIN/coordinator" plan "$config" --shell --max-tasks "${MAX_TASKS:-1000}")"
# One explicit run id for the array tasks and the finalize job (default: config name and
# submission time; without --run-id the worker would use static-<spec digest>).
run_id="${2:-static-$(basename "$config" .toml)-$(date +%Y%m%d-%H%M%S)}"
array_id="$("$SBATCH" --parsable --export=ALL --array="0-$((tasks - 1))%${MAX_PARALLEL:-16}" \
  "$0" task "$BIN" "$config" "$run_id" "$tasks")"
final_id="$("$SBATCH" --parsable --export=ALL --dependency="afterok:${array_id%%;*}" --kill-on-invalid-dep=yes \
  --gres=none --cpus-per-task=1 --mem=2G --time=00:30:00 --job-name=labelgen-finalize \
  "$0" finalize "$BIN" "$config" "$run_id")"
echo "run $run_id: $shards shards in $tasks tasks (up to $shards_per_task each), array job $array_id, finalize job $final_id"
echo "progress: $BIN/coordinator status $run_id --config $config"
echo "failed tasks: TASKS=$tasks $0 resubmit $config $run_id K..."
