#!/usr/bin/env bash
# Every GPU figure in one command under a time budget; leaves exactly one archive in OUT, also when a step
# fails, the budget runs out or the check gets SIGTERM (benchmarks/gpu_check.py says what it runs).
#
#   benchmarks/gpu_check.sh --budget 420 --out OUT [--device auto|cuda|cpu] [--shards DIR] [--only a,b] ...
#   benchmarks/gpu_check.sh --help
#
# Uses $PYTHON, else python3 on PATH (with PYTHONPATH pointing at any wheels installed with --target);
# puts this checkout first on PYTHONPATH. Without --out: benchmarks/results/gpu-check-<UTC date-time>/.
# If Python cannot even start the check, this script packs its own log into OUT instead.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export SIAMMAE_GPU_CHECK_START="${SIAMMAE_GPU_CHECK_START:-$(date +%s.%N)}"
export SIAMMAE_GPU_CHECK_COMMAND="benchmarks/gpu_check.sh${*:+ $*}"
py="${PYTHON:-python3}"
cd "$repo" || exit 2

args=("$@")
out=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -h|--help) exec "$py" -m benchmarks.gpu_check --help ;;
    --out) out="${args[i + 1]:-}" ;;
    --out=*) out="${args[i]#--out=}" ;;
  esac
done
if [[ -z "$out" ]]; then
  out="benchmarks/results/gpu-check-$(date -u +%Y%m%d-%H%M%S)"
  args+=(--out "$out")
fi
mkdir -p "$out" || exit 2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

"$py" -m benchmarks.gpu_check "${args[@]}" 2> >(tee -a "$log" >&2) &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
rc=0
wait "$child" || rc=$?
while kill -0 "$child" 2>/dev/null; do      # a trapped signal ends `wait` early: wait for the packing
  wait "$child" || rc=$?
done

shopt -s nullglob
archives=("$out"/*.tar.gz)
if ((${#archives[@]} == 0)); then
  name="gpu-check-failed-$(date -u +%Y%m%d-%H%M%S)"
  tmp="$(mktemp -d)"
  mkdir "$tmp/$name"
  { echo "command: $SIAMMAE_GPU_CHECK_COMMAND"; echo "date: $(date -u -Iseconds)"; echo "python: $py"
    echo "exit: $rc"; echo "the check left no archive; its error output follows"; echo; cat "$log"; } \
    > "$tmp/$name/log.txt"
  tar czf "$out/$name.tar.gz" -C "$tmp" "$name"
  rm -rf "$tmp"
  echo "gpu_check.sh: the check left no archive (exit $rc); packed its log into $out/$name.tar.gz" >&2
  ((rc == 0)) && rc=1
fi
exit "$rc"
