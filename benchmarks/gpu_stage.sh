#!/usr/bin/env bash
# Stage the Python wheels a GPU machine without a package registry lacks (NVIDIA DALI for CUDA 13 and
# what it needs, webdataset) as parts small enough to travel one per call to that machine, plus
# SHA256SUMS so the install there can tell a broken transfer. benchmarks/gpu_install.sh installs them.
#
#   benchmarks/gpu_stage.sh [DIR]          # default DIR: .devwheels in this checkout (ignored by git)
#
# Variables: PY_VERSION (3.12: the GPU machine's Python; the Python of a rehearsal elsewhere),
# PART_MB (55: a part plus this checkout must fit what one call carries), EXTRA_WHEELS (more
# requirement specifiers), PYTHON (the Python whose pip downloads; python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/.devwheels}"
part_mb="${PART_MB:-55}"
py="${PYTHON:-python3}"

# DALI's CUDA 13 build pinned to the version the project is tested with; the nvImageCodec, nvCOMP,
# nvJPEG(2000) and nvTIFF libraries it loads; its pure-Python needs (numpy and packaging are on the
# machine already); webdataset and braceexpand for the fallback loader.
wheels=(nvidia-dali-cuda130==2.4.0 'nvidia-nvimgcodec-cu13>=0.9,<0.10' nvidia-libnvcomp-cu13==5.3.0.16
        nvidia-nvjpeg nvidia-nvjpeg2k-cu13 nvidia-nvtiff-cu13 makefun optree 'libcst~=1.8' nvtx astunparse
        gast six webdataset braceexpand)
# shellcheck disable=SC2206  # EXTRA_WHEELS is a space-separated list on purpose
wheels+=(${EXTRA_WHEELS:-})

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$tmp" "${wheels[@]}"
rm -rf "$out"
mkdir -p "$out"
tar cf - -C "$tmp" . | split -b "${part_mb}m" - "$out/part-"
(cd "$out" && sha256sum part-* > SHA256SUMS)
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1 && [[ "$(cd "$out" && pwd)" == "$repo"/* ]] \
    && ! git -C "$repo" check-ignore -q "$out"; then
  echo "warning: $out is inside the checkout and not ignored by git: do not commit it" >&2
fi
ls -la "$out"
echo "staged $(du -sh "$tmp" | cut -f1) of wheels for Python ${PY_VERSION:-3.12} as $(ls "$out"/part-* | wc -l)" \
     "parts of <= ${part_mb} MiB in $out in $(( $(date +%s) - start )) s; carry one part per call, then run" \
     "benchmarks/gpu_install.sh (docs/gpu-check.md)"
