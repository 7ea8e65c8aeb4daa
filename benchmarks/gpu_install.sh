#!/usr/bin/env bash
# On the GPU machine: check the parts benchmarks/gpu_stage.sh made (copied into STAGE), join them and
# install the wheels into SITE with pip --target, no registry, no dependency resolution. Afterwards
# every command there runs with PYTHONPATH=SITE.
#
#   benchmarks/gpu_install.sh STAGE SITE          # e.g. /root/stage /root/site
#
# Uses $PYTHON, else python3 (the Python that holds torch).
set -euo pipefail
stage="${1:?usage: gpu_install.sh STAGE SITE}"
site="${2:?usage: gpu_install.sh STAGE SITE}"
py="${PYTHON:-python3}"
start=$SECONDS
if [[ -f "$stage/SHA256SUMS" ]]; then
  (cd "$stage" && sha256sum -c --quiet SHA256SUMS) || { echo "gpu_install.sh: a part is damaged or missing" >&2; exit 2; }
else
  echo "gpu_install.sh: no SHA256SUMS in $stage: parts not checked" >&2
fi
rm -rf "$stage/wheels"
mkdir -p "$stage/wheels" "$site"
cat "$stage"/part-* | tar xf - -C "$stage/wheels"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$stage"/wheels/*.whl
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$py" -c \
  "import nvidia.dali as d, webdataset; print('DALI', d.__version__, 'and webdataset', webdataset.__version__, 'in $site')"
echo "checked, joined and installed in $((SECONDS - start)) s"
