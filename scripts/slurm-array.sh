#!/usr/bin/env bash
# Static sharding on Slurm: one array task per shard, then a finalize job.
#
#   scripts/slurm-array.sh CONFIG [RUN_ID]      # on a login node: submits both jobs
#
# Submits `sbatch --array=0-(N-1)%MAX_PARALLEL` of this script in `shard` mode (each task
# runs `worker run-shard CONFIG`; the worker takes the shard from SLURM_ARRAY_TASK_ID),
# then this script in `finalize` mode with --dependency=afterok on the whole array
# (`coordinator finalize RUN_ID --config CONFIG`). N = ceil(run.count / run.shard_size).
# A committed shard is never redone, so resubmitting failed tasks is safe:
#   sbatch --array=17,42 scripts/slurm-array.sh shard CONFIG RUN_ID
# and then `coordinator finalize RUN_ID --config CONFIG` by hand (afterok never fires
# for an array with a failed task).
#
# Environment: S3 settings as usual (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), exported into the jobs (sbatch --export=ALL).
# LABELGEN_BIN: directory holding `worker` and `coordinator` (default: target/release).
# MAX_PARALLEL: array tasks running at once (default 16). SBATCH_PARTITION etc. as usual.
#SBATCH --job-name=labelgen
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=02:00:00
#SBATCH --output=labelgen-%A_%a.out
set -euo pipefail

# Inside a job $0 is Slurm's spooled copy of this script: the launcher exports the
# absolute LABELGEN_BIN to the jobs (--export=ALL) so they find the binaries.
BIN="${LABELGEN_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"

case "${1:-}" in
  shard)
    # Inside an array task: SLURM_ARRAY_TASK_ID picks the shard.
    config="$2"; run_id="$3"
    exec "$BIN/worker" run-shard "$config" --run-id "$run_id"
    ;;
  finalize)
    config="$2"; run_id="$3"
    "$BIN/coordinator" finalize "$run_id" --config "$config"
    exec "$BIN/coordinator" status "$run_id" --config "$config"
    ;;
  ""|-h|--help)
    sed -n '2,20p' "$0"; exit 2
    ;;
esac

# Launcher (login node).
config="$(realpath "$1")"
shards="$(python3 -c 'import math, sys, tomllib
run = tomllib.load(open(sys.argv[1], "rb"))["run"]
print(math.ceil(run["count"] / run["shard_size"]))' "$config")"
export LABELGEN_BIN="$(realpath "$BIN")"
# One explicit run id for the array tasks and the finalize job (default: config name and
# submission time; without --run-id the worker would use static-<spec digest>).
run_id="${2:-static-$(basename "$config" .toml)-$(date +%Y%m%d-%H%M%S)}"
array_id="$(sbatch --parsable --export=ALL --array="0-$((shards - 1))%${MAX_PARALLEL:-16}" \
  "$0" shard "$config" "$run_id")"
final_id="$(sbatch --parsable --export=ALL --dependency="afterok:${array_id%%;*}" \
  --gres=none --cpus-per-task=1 --mem=2G --time=00:30:00 --job-name=labelgen-finalize \
  "$0" finalize "$config" "$run_id")"
echo "run $run_id: $shards shards in array job $array_id, finalize job $final_id"
echo "progress: $BIN/coordinator status $run_id --config $config"
