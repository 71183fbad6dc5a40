#!/usr/bin/env bash
# One prepared GPU session: the demo's GPU plan (Swin-B, 512 px crops at pixel scale 1) and the
# real-field workflow's GPU preset, each under its own time limit; tables and JSON land in
# bench/results/ (and in $OUT when that is set, as on a lent device machine).
#
#   bench/gpu_session.sh                 # on a machine with one CUDA GPU
#   bench/gpu_session.sh --quick         # the same commands in quick mode on the CPU (a smoke test)
#
# Real fields: DATA (default ../shared/data/qa-skmcs-train) must hold *_myosin.png and
# *_myotube_mask.png; copy those two kinds of files next to the checkout when the data folder is
# not reachable from the GPU machine (about 48 MB for the 80 fields).
# Limits: DEMO_LIMIT and REAL_LIMIT seconds (defaults 300 and 240): a run that outgrows them is
# stopped and the script goes on, so the whole session stays inside about 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
# The project's environment when there is one (make install), else the python on PATH.
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
DATA=${DATA:-../shared/data/qa-skmcs-train}
RESULTS=bench/results
WORK=${WORK:-/tmp/myotube_gpu_session}
mode=()
suffix=gpu
if [ "${1:-}" = "--quick" ]; then
    mode=(--quick)
    suffix=gpu_quick
    DEMO_LIMIT=${DEMO_LIMIT:-900}
    REAL_LIMIT=${REAL_LIMIT:-900}
fi
DEMO_LIMIT=${DEMO_LIMIT:-300}
REAL_LIMIT=${REAL_LIMIT:-240}
mkdir -p "$WORK" "$RESULTS"
export PYTHONUNBUFFERED=1
status=0

echo "== demo, GPU plan ($(date +%T), limit ${DEMO_LIMIT}s)"
if [ ${#mode[@]} -eq 0 ]; then
    timeout "$DEMO_LIMIT" "$PY" -m mask2former.demo --plan gpu --output "$WORK/demo" --workers 8 || status=1
else
    # Quick mode on the CPU: the Swin-B architecture for a few iterations, no ceiling model.
    timeout "$DEMO_LIMIT" "$PY" -m mask2former.demo --plan gpu --quick --output "$WORK/demo" --workers 1 \
        --set ceiling=false stage1_iters=2 stage2_iters=1 || status=1
fi
if [ -f "$WORK/demo/demo_results.json" ]; then
    cp "$WORK/demo/demo_results.json" "$RESULTS/demo_$suffix.json"
fi

echo "== real fields, GPU preset ($(date +%T), limit ${REAL_LIMIT}s)"
real=(--preset gpu)
if [ ${#mode[@]} -ne 0 ]; then
    # The GPU preset's architecture and crops, on the quick plan's field count and iterations.
    real=(--preset gpu --set device=cpu pool_fields=1 heldout_fields=1 manual_fields=1 stage1_iters=2 stage2_iters=1 tile=128 pixel_scale=0.25 batch=1 queries=8)
fi
timeout "$REAL_LIMIT" "$PY" -m bench.real_two_stage "${real[@]}" --data "$DATA" --work "$WORK/real" \
    --out "$RESULTS/real_two_stage_$suffix.json" || status=1

if [ -n "${OUT:-}" ]; then
    cp "$RESULTS"/*_"$suffix".json "$OUT"/ 2>/dev/null || true
fi
echo "== done ($(date +%T)), status $status"
exit $status
