#!/usr/bin/env bash
# Every CUDA path on one GPU, one after another, in one prepared run:
#   the CUDA tests, the renderer's images/s at 128 px, `xaistudy generate` end to end,
#   training images/s and memory of the GPU configs, every attribution method's time,
#   one DDP step under torchrun with NCCL, the whole demo on CUDA, its bundle's
#   validation and `bench/explain.py` on the demo's model.
#
# Usage, from the repository root (PYTHON: the interpreter with the project's
# dependencies, default python3, e.g. .venv/bin/python):
#     bash bench/cuda.sh OUT_DIR [PYTHON]
# Each step has its own time limit, cut to what is left of CUDA_DEADLINE seconds (default
# 560) for the whole run, and a failing step does not stop the next; the log is
# OUT_DIR/cuda.log, the demo's report, metrics and manifest beside it.
# bench/results/cuda-h200.md holds the figures of a run on an H200.
set -u
DEADLINE=${CUDA_DEADLINE:-560}
OUT=${1:?usage: bash bench/cuda.sh OUT_DIR [PYTHON]}
PY=${2:-python3}
WORK=$(mktemp -d)
LOG="$OUT/cuda.log"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# An installed checkout imports as it is. A bare one (a GPU machine's own image with the
# dependencies on PYTHONPATH) gets the repository on the path and the link an install
# makes from study_server.migrations to migrations/.
if ! "$PY" -c "import xaistudy, study_server.migrations" 2>/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    [ -e study_server/migrations ] || ln -s ../migrations study_server/migrations
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, say how it ended
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    ((limit > DEADLINE - SECONDS)) && limit=$((DEADLINE - SECONDS))
    if ((limit < 5)); then echo "== $name: skipped, no time left" | tee -a "$LOG"; return; fi
    echo "== $name (limit ${limit}s, $(date +%T))" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tr '\r' '\n' | grep -v -E '^\s*$|\|[^|]*\| *[0-9]+/[0-9]+ \[' \
        | tee -a "$LOG" | tail -n 60
    echo "-- $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$LOG"
}

step environment 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv; nproc; \"$PY\" -c 'import sys, torch, torchvision; print(sys.version); \
    print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name(0))'"
step cuda-tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/generator/test_render.py \
    -k "cuda or matches"
step render 60 "$PY" bench/render.py --devices cuda --images 20000 --size 128 \
    --batch-size 256,1024,4096
step generate 90 "$PY" bench/bench_generator.py --device cuda --n-images 20000 --size 128
step train 120 "$PY" bench/train.py --device cuda --steps 20 --config paper \
    --config resnet-gpu --config cpu-small
step attribution 90 "$PY" bench/attribution.py --devices cuda --images 32
# the invertible network's demo: its counterfactuals are the CUDA path to exercise (the
# default demo trains the ResNet); the short run fails validation, hence the override
step demo 400 "$PY" -m xaistudy.cli demo --no-serve --device cuda --out "$WORK/demo" \
    --simulate 40 --conditions baseline,counterfactuals,concepts --allow-invalid
step validate 90 "$PY" -m xaistudy.cli bundle validate "$WORK/demo/bundle" \
    --model "$WORK/demo/run" --data "$WORK/demo/data" --device cuda
step torchrun 90 bash -c "
    set -e
    \"$PY\" -m xaistudy.cli generate --preset iclr2022 --out $WORK/ddp-data --n-train 2048 \
        --n-val 256 --n-test 256 --size 64 --device cuda --seed 3
    \"$PY\" -m torch.distributed.run --standalone --nproc-per-node 1 -m xaistudy.cli train \
        --data $WORK/ddp-data --out $WORK/ddp-run --config cpu-small --epochs 1 --device cuda
    ls $WORK/ddp-run"
step explain 120 "$PY" bench/explain.py --model "$WORK/demo/run" --data "$WORK/demo/data" \
    --device cuda --conditions all
cp "$WORK"/demo/report/*.md "$OUT"/ 2>/dev/null
cp "$WORK"/demo/run/metrics.json "$OUT"/demo-metrics.json 2>/dev/null
cp "$WORK"/demo/bundle/manifest.json "$OUT"/demo-manifest.json 2>/dev/null
echo "== done $(date +%T)" | tee -a "$LOG"
