#!/usr/bin/env bash
# Triton as a peer for bench/small_models.py --table: nvidia-pytriton (Triton server bundled,
# manylinux_2_35, ~55 MB), ONNX Runtime and numpy in their own virtualenv, so none of it can
# change the project's dependencies. Idempotent.
#
#   bench/setup_triton.sh [PYTHON]      # PYTHON: the interpreter to base it on (default python3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.bench-venv/triton"
"${1:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet nvidia-pytriton onnxruntime numpy
echo "Triton peer ready: $venv/bin/python bench/triton_server.py MODEL_FILE PORT --name NAME"
