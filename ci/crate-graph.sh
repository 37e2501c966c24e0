#!/usr/bin/env bash
# Checks the crate graph the architecture promises (docs/architecture.md):
#   shared <- coordinator            (the coordinator clusters deploy: no Burn)
#   shared <- worker <- eval          (models in worker; evaluation beside it)
# and that shared itself carries no Burn.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
# Each crate's normal dependencies, read once: a failing `cargo tree` (offline, a stale
# lockfile) fails the check instead of leaving every list empty.
declare -A TREE
for crate in coordinator shared worker eval; do
  if ! TREE[$crate]=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' 2>&1); then
    echo "FAIL: cargo tree -p $crate failed:"; printf '%s\n' "${TREE[$crate]}" | tail -20
    exit 1
  fi
done
deps() { printf '%s\n' "${TREE[$1]}" | awk '{print $1}' | sort -u; }

for crate in coordinator shared; do
  if deps "$crate" | grep -qE '^burn'; then
    echo "FAIL: $crate depends on Burn:"; cargo tree -p "$crate" -e normal -i burn-core 2>/dev/null | head -20 || true
    fail=1
  fi
done
if deps coordinator | grep -qxE 'worker|eval'; then
  echo "FAIL: coordinator depends on worker or eval"; fail=1
fi
if deps worker | grep -qxE 'coordinator|eval'; then
  echo "FAIL: worker depends on coordinator or eval"; fail=1
fi
if deps eval | grep -qx 'coordinator'; then
  echo "FAIL: eval depends on coordinator"; fail=1
fi
[ "$fail" = 0 ] && echo "crate graph ok: coordinator -> shared (no burn); eval -> worker -> shared"
exit "$fail"
