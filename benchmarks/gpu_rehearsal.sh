#!/usr/bin/env bash
# Rehearse the GPU check on a machine without a GPU: a fresh virtualenv holding only what the GPU
# machine's image has that the project imports, the staged wheels installed the way they are there
# (benchmarks/gpu_stage.sh + benchmarks/gpu_install.sh, pip --target, no dependency resolution), then
# benchmarks/gpu_check.sh in CPU mode under a budget. A missing import shows here, not there.
#
#   benchmarks/gpu_rehearsal.sh [WORK]        # default WORK: /tmp/siammae-gpu-rehearsal (made afresh)
#
# Variables: BUDGET (240 s), TORCH_SPEC ("torch==2.14.1": PyPI's CUDA 13 build, as on the GPU machine; it
# runs on a CPU. A CPU-only torch needs a CPU-only torchvision beside it, which PyPI does not have: timm
# imports torchvision, and PyPI's CUDA torchvision does not load next to a CPU-only torch), PYTHON (the
# Python to build the venv from).
# Prints how long each phase and each step of the check took; the check's archive is in WORK/out/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/siammae-gpu-rehearsal}"
budget="${BUDGET:-240}"
# The GPU machine's image has torch, timm, numpy, click, pillow and, of what this project imports, also
# tqdm, opencv-python-headless, scipy and pytest; it has no DALI, webdataset, PyAV, imageio-ffmpeg, ffmpeg.
packages=("${TORCH_SPEC:-torch==2.14.1}" timm numpy click pillow tqdm opencv-python-headless scipy pytest)

rm -rf "$work"
mkdir -p "$work"
phase() { printf '%-44s %6d s\n' "$1" "$2" | tee -a "$work/phases.txt"; }

t=$SECONDS
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "${packages[@]}"
phase "venv: ${packages[*]:0:5} ..." $((SECONDS - t))
py_version="$("$work/venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

t=$SECONDS
PY_VERSION="$py_version" PYTHON="$work/venv/bin/python" "$repo/benchmarks/gpu_stage.sh" "$work/stage" > "$work/stage.log" 2>&1
tail -1 "$work/stage.log"
phase "stage wheels (Python $py_version)" $((SECONDS - t))

t=$SECONDS
PYTHON="$work/venv/bin/python" "$repo/benchmarks/gpu_install.sh" "$work/stage" "$work/site"
phase "install with pip --target" $((SECONDS - t))

t=$SECONDS
rc=0
PYTHON="$work/venv/bin/python" PYTHONPATH="$work/site" "$repo/benchmarks/gpu_check.sh" --device cpu \
  --budget "$budget" --out "$work/out" > "$work/check.log" 2>&1 || rc=$?
phase "gpu_check.sh --device cpu --budget $budget (exit $rc)" $((SECONDS - t))
echo
sed -n '/^## Steps/,/^## Loader/p' "$work/check.log" | sed '$d'
ls -la "$work/out"
echo "phases: $work/phases.txt; the check's output: $work/check.log"
exit "$rc"
