#!/usr/bin/env bash
# Triton as a peer for bench/table13.py and bench/small_models.py: nvidia-pytriton (Triton server
# bundled, manylinux_2_35, ~55 MB), ONNX Runtime and numpy in their own virtualenv,
# .bench-venv/triton (git-ignored), so none of it can change the project's dependencies.
#
#   bench/setup_triton.sh [PYTHON]      # PYTHON: the interpreter to base it on
#
# The default is the system's /usr/bin/python3: pytriton's Python-backend stub links the
# system's libpython3.X.so, and a venv based on another build of the same version (pyenv's
# 3.11.7 over Debian's 3.11.2) mixes two standard libraries; the model then fails to load with
# "'_thread.RLock' object has no attribute '_recursion_count'".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.bench-venv/triton"
default=python3
[ -x /usr/bin/python3 ] && default=/usr/bin/python3
"${1:-$default}" -m venv "$venv"
"$venv/bin/pip" install --quiet nvidia-pytriton onnxruntime numpy
echo "Triton peer ready: $venv/bin/python bench/triton_server.py MODEL_FILE PORT --name NAME"
