#!/usr/bin/env bash
# One prepared run for the GPU machine (no registry access there): versions, the GPU-marked tests
# and the quick kernel benchmark (fdiv bench --quick --suite kernels), under 6 minutes in all:
# each step has its own timeout. Under $OUT (a temp dir when unset): the results JSON
# (<date>-<machine>.json, the format of benchmarks/results/), REPORT.md and its plot, and logs.
# Copy the JSON into benchmarks/results/ and run `fdiv bench --report-only` to add it to the
# record. Without CUDA it says so and exits 0.
# Usage (from the source tree): bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
OUT="${OUT:-$(mktemp -d -t fdiv-gpu-check.XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
status=0

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "torch is not importable with $PY: nothing to check here (set PYTHON=...)"
    exit 0
fi

echo "== versions"
"$PY" - <<'PYEOF'
import platform
import torch
print("python", platform.python_version(), "| torch", torch.__version__)
try:
    import triton
    print("triton", triton.__version__)
except ImportError as err:
    print("triton: not importable:", err)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0), "| cuda", torch.version.cuda)
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device here: nothing to check on a GPU (the CPU suite is: pytest tests)"
    exit 0
fi

# tests outside tests/kernels may need packages the GPU machine lacks (hypothesis, matplotlib):
# their collection errors must not stop the GPU-marked tests
echo "== pytest -m gpu tests (timeout 120 s)"
timeout 120 "$PY" -m pytest -m gpu tests -q -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log" || status=1

# timeout signals the whole process group: the pytest that fdiv bench starts stops with it
echo "== quick kernel benchmark (timeout 200 s)"
timeout 200 "$PY" -m fdiv.cli bench --quick --suite kernels --out "$OUT" 2>&1 \
    | tee "$OUT/bench_kernels.log" || status=1

echo "== results in $OUT"
ls -l "$OUT"
exit "$status"
