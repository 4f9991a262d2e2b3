#!/usr/bin/env bash
# Issue 15, item 2 on a lent GPU: the stronger recipe and Lite2 at 288 px, side by side, in a few calls.
#
#   here:   bash scripts/gpu_train15.sh pack ../shared/data      # -> .carry/gpu15-part1 .. partN (N printed)
#   there, call 1:        bash scripts/gpu_train15.sh smoke      # carry [".carry/gpu15-part1"]
#   there, calls 2..N-1:  bash scripts/gpu_train15.sh stage      # carry [".carry/gpu15-partK"]
#   there, call N:        bash scripts/gpu_train15.sh run        # carry [".carry/gpu15-partN"]
#   dry run on a CPU:     LIMIT=4 PART_MB=17 ... pack, then CARRY=<a folder given one part at a time>
#                         DEVICE=cpu BUDGET=40 EPOCHS=1 SIZE0=48 SIZE2=48 BATCH=16 ... smoke / stage / run
#
# Why several calls: a call carries the checkout (34 MB, mostly weights/) and at most 64 MiB in all,
# and the pack is 110 MB: fit + selection + val (12,025 + 1,307 + 2,250 images as 224-px WebP q75,
# 6.2 KB each: 93.6 MB) and the Lite0 + Lite2 ImageNet weights (fp16, 16.6 MB). The pack step
# measures the checkout and bins 500-image chunks into parts that fit beside it (2025-12: 4 parts of
# 28.6, 30.0, 30.2, 21.5 MB, made in 2 min on 2 cores); each call unpacks
# what it carries into /tmp/gpu15, which stays while the machine is warm (30 s between calls: issue the
# next call at once). `stage` and `run` say which chunks are still missing (exit 3); a cold machine
# means starting over from part 1.
#
# smoke (call 1): unpacks part 1 (the ImageNet weights and the first chunks) and trains each backbone
# for 2 epochs on 512 of its images at the real sizes: the whole path on the GPU, and the seconds per
# epoch, before the long call. run (call N): unpacks the last part, then trains in parallel, each
# stopping at BUDGET seconds (the schedule ends there): lite0s (Lite0 224, strong recipe), lite0p
# (Lite0 224, today's recipe: the control), lite2a and lite2b (Lite2 288, strong recipe, seeds 0/1); then
# the soup of lite2a and lite2b; then `gpu_train15.py pick`: $OUT/figures.json (every run's selection and
# val figures) and the best of each backbone on selection as $OUT/<backbone>-best.safetensors + .json.
set -uo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/gpu15}
CARRY=${CARRY:-.carry}          # where the carried parts are (a dry run may point elsewhere)
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-300}          # seconds of training per run (the runs share the GPU)
EPOCHS=${EPOCHS:-40}
SIZE0=${SIZE0:-224}
SIZE2=${SIZE2:-288}
BATCH=${BATCH:-128}
STRONG=${STRONG:---mixup 0.2 --cutmix 1.0 --mix-prob 0.5 --ema 0.998 --label-smoothing 0.1}
OUT=${OUT:-runs/gpu15}
export PYTHONUNBUFFERED=1

if [[ "${1:-}" == pack ]]; then
  set -e
  data=${2:?usage: gpu_train15.sh pack DATA_DIR}
  # What travels besides the carry: tracked and untracked-not-ignored files (the device tool's rule).
  checkout=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 stat -c %s 2>/dev/null \
              | awk '{s += $1} END {print s}')
  part_mb=${PART_MB:-$(python3 -c "print(round((64 * 2**20 - $checkout) / 1e6 - 2, 1))")}   # 2 MB to spare
  echo "checkout: $((checkout / 1000000)) MB; parts of at most $part_mb MB"
  rm -rf .carry/gpu15-part*
  python3 scripts/gpu_train15.py pack "$data" .carry/gpu15 --part-mb "$part_mb" ${LIMIT:+--limit $LIMIT}
  mkdir -p .carry/gpu15-part1/whl    # not in the device's image: paths.py needs it
  python3 -m pip download -q --no-deps --only-binary=:all: platformdirs -d .carry/gpu15-part1/whl
  du -sh .carry/gpu15-part*
  exit 0
fi

verb=${1:-}
[[ "$verb" =~ ^(smoke|stage|run)$ ]] || { echo "usage: gpu_train15.sh pack DATA_DIR | smoke | stage | run" >&2; exit 2; }
STARTED=$(date +%s)
step() { echo "== $1 ($(( $(date +%s) - STARTED )) s in)"; }
mkdir -p "$OUT" "$WORK"
python3 -c "import platformdirs" 2>/dev/null || python3 -m pip install -q --no-index --no-deps \
  --target "$WORK/site" "$CARRY"/gpu15-part1/whl/*.whl
export PYTHONPATH=$PWD:$WORK/site
export ARTLAB_LITE0_WEIGHTS=$WORK/lite0.safetensors ARTLAB_LITE2_WEIGHTS=$WORK/lite2.safetensors

step "unpack what this call carries"
python3 scripts/gpu_train15.py unpack "$CARRY" "$WORK"
unpacked=$?
[[ $unpacked == 0 || $unpacked == 3 ]] || { echo "unpack failed (exit $unpacked)" >&2; exit $unpacked; }
[[ "$verb" == stage ]] && exit $unpacked

train() {  # name, cache, budget, extra args...: one classifier run in the background, its log in $WORK
  local name=$1 cache=$2 budget=$3; shift 3
  ARTLAB_DATA_CACHE=$cache python3 -m artlab train --data "$WORK/none" --out "$WORK/runs/$name" --model classifier \
    --device "$DEVICE" --batch "$BATCH" --time-budget "$budget" "$@" > "$WORK/$name.log" 2>&1 &
}

if [[ "$verb" == smoke ]]; then
  python3 - "$WORK" <<'PY'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
work = Path(sys.argv[1]); first = sorted((work / "decoded").glob("fit-*.st"))[0]
t = load_file(str(first)); (work / "smoke").mkdir(exist_ok=True)
n = min(768, len(t["images"]))  # 512 / 128 / 128 of a full chunk; a dry run's chunk is smaller
for split, rows in (("fit", slice(0, n * 4 // 6)), ("selection", slice(n * 4 // 6, n * 5 // 6)), ("val", slice(n * 5 // 6, n))):
    save_file({k: v[rows].contiguous() for k, v in t.items()}, str(work / "smoke" / f"{split}-None.safetensors"))
PY
  (nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true) | tee "$OUT/gpu.txt"
  step "smoke: 2 epochs on 512 images, each backbone at its size, strong recipe"
  train smoke0 "$WORK/smoke" 120 --backbone lite0 --size "$SIZE0" --epochs 2 $STRONG
  train smoke2 "$WORK/smoke" 120 --backbone lite2 --size "$SIZE2" --epochs 2 $STRONG
  wait
  for log in "$WORK"/smoke*.log; do echo "-- $log"; grep -E "epoch [0-9]+:|Error|error" "$log" | tail -n 4; done
  cp "$WORK"/smoke*.log "$OUT"/ 2>/dev/null
  step "smoke done (exit $unpacked from unpack: 3 = more parts to come)"
  exit 0
fi

[[ $unpacked == 0 ]] || { echo "not every chunk is here yet: carry the missing parts first" >&2; exit 3; }
step "train: lite0s, lite0p, lite2a, lite2b in parallel, $BUDGET s each"
train lite0s "$WORK/cache" "$BUDGET" --backbone lite0 --size "$SIZE0" --epochs "$EPOCHS" $STRONG --seed 0
train lite0p "$WORK/cache" "$BUDGET" --backbone lite0 --size "$SIZE0" --epochs "$EPOCHS" --seed 0
train lite2a "$WORK/cache" "$BUDGET" --backbone lite2 --size "$SIZE2" --epochs "$EPOCHS" $STRONG --seed 0
train lite2b "$WORK/cache" "$BUDGET" --backbone lite2 --size "$SIZE2" --epochs "$EPOCHS" $STRONG --seed 1
wait
for log in "$WORK"/lite*.log; do echo "-- $log"; grep -E "epoch [0-9]+:" "$log" | tail -n 2; tail -n 1 "$log"; done

step "soup: lite2a's backbone averaged with lite2b's"
ARTLAB_DATA_CACHE=$WORK/cache python3 -m artlab soup --base "$WORK/runs/lite2a" --with "$WORK/runs/lite2b" \
  --data "$WORK/none" --out "$WORK/runs/lite2soup" --calibration-images 4096 --device "$DEVICE" \
  > "$WORK/soup.log" 2>&1 || tail -n 5 "$WORK/soup.log"

step "pick on selection; figures and the best of each backbone to $OUT"
python3 scripts/gpu_train15.py pick "$WORK/runs" "$OUT"
tail -c 200000 "$WORK/lite2a.log" > "$OUT/lite2a.log"
step "done"
