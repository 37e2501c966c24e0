#!/usr/bin/env bash
# Offline checks of the deployment files: renders every kustomization under k8s/,
# validates each object against the Kubernetes 1.29 schemas (the minimum version) (kubernetes-validate; KEDA's
# CRDs against minimal schemas in ci/k8s_check.py), cross-checks shard counts
# and run-spec copies, then runs checkov on k8s/ (raw and rendered) and docker/.
# Fails on any error or failed check (skips are annotated in the files, with reasons).
# Tools are pip-installed, pinned, into a cache venv on first use (~1 min); afterwards
# the check takes ~30 s. Needs python3 >= 3.11; kubectl (for `kubectl kustomize`) is
# optional: without it the built-in renderer is used alone.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.2.500
KUBERNETES_VALIDATE_VERSION=1.31.0
VENV="${LABELGEN_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/labelgen-k8s-check/venv}"
PY="$VENV/bin/python"

if ! "$PY" -c "import checkov, kubernetes_validate, sys
from importlib.metadata import version
sys.exit(version('checkov') != '$CHECKOV_VERSION' or version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
  echo "== installing checkov $CHECKOV_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

RENDERED="$(mktemp -d)"
trap 'rm -rf "$RENDERED"' EXIT

"$PY" ci/k8s_check.py "$RENDERED"

# --skip-download: no network (no Prisma Cloud guideline lookups); --quiet: failures only.
CHECKOV=("$VENV/bin/checkov" --skip-download --quiet --compact)
echo "== checkov: k8s/ as written"
"${CHECKOV[@]}" -d k8s/ --framework kubernetes
echo "== checkov: k8s/ as rendered (overlay patches applied)"
"${CHECKOV[@]}" -d "$RENDERED" --framework kubernetes
echo "== checkov: docker/"
"${CHECKOV[@]}" -d docker/ --framework dockerfile
echo "k8s-check: all checks passed"
