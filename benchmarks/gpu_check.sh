#!/usr/bin/env bash
# One command for the GPU figures: DALI loader rows swept over threads and hw_decoder_load, ViT-S/16
# training step time and MFU on an in-memory batch and fed by the loader, written with the device,
# driver, versions, command and date to benchmarks/results/gpu-check-<machine>-<date>/.
# Without a GPU the same steps run in CPU mode at toy sizes (under a minute).
#
#   benchmarks/gpu_check.sh [--shards DIR] [--out DIR] [--threads 4,8,16] [--hw-loads 0.65,0.9,1.0] ...
#
# Uses the Python it is given: $PYTHON, else python3 on PATH (activate a venv first, or set
# PYTHONPATH to where the dependencies are); this checkout is put first on PYTHONPATH.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export SIAMMAE_GPU_CHECK_COMMAND="benchmarks/gpu_check.sh${*:+ $*}"
cd "$repo"
exec "${PYTHON:-python3}" -m benchmarks.gpu_check "$@"
