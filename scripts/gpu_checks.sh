#!/usr/bin/env bash
# The GPU checks of issue 13 in one short call on a lent GPU machine (torch, torchvision and pytest
# there, no gradio: only the tests and benchmarks that need no UI run).
#
#   here:   bash scripts/gpu_checks.sh pack ../shared/data    # -> .carry/ (the data, ~25 MB, and the anchor)
#   there:  bash scripts/gpu_checks.sh run                    # with .carry in the call's carry list
#   dry run on a CPU:  DEVICE=cpu COPIES=1 LIMIT=200 bash scripts/gpu_checks.sh run
#
# `run` unpacks the data to /tmp and goes on past any failing step: the GPU tests (GPU vs CPU
# agreement on the val set, the bulk indexer on the GPU, fine-tuning), the fine-tune benchmark
# (target <= 10 s), the bulk index benchmark on val re-encoded COPIES times (target >= 5,000
# images/s, model-only ceiling beside it) and, on the same files, the anchor (../shared/bench/
# gpu_anchor.py: a plain ResNet-50 DataLoader script, nvJPEG decoding alone; target: ArtLab >= 2x the
# script). Logs go to $OUT; the figures to one JSON, benchmarks/results/gpu-<device>-<date>.json
# (benchmarks/gpu_summary.py), which is committed: it is how the figures travel.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == pack ]]; then
  set -e
  data=${2:?usage: gpu_checks.sh pack DATA_DIR}
  mkdir -p .carry
  list=$(mktemp)
  (cd "$data" && find styles/val -type f -name '*.jpg' && \
     for c in baroque impressionism expressionism; do find "styles/train/$c" -name '*.jpg' | sort | sed -n 1,30p; done) > "$list"
  tar -cf .carry/gpu-data.tar -C "$data" -T "$list"
  rm -f "$list"
  cp "$(dirname "$data")/bench/gpu_anchor.py" .carry/gpu_anchor.py
  ls -lh .carry/
  exit 0
fi

[[ "${1:-}" == run ]] || { echo "usage: gpu_checks.sh pack DATA_DIR | run" >&2; exit 2; }
OUT=${OUT:-runs/gpu-checks}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu COPIES=1 LIMIT=200: a dry run of this script on a CPU
COPIES=${COPIES:-6}
LIMIT=${LIMIT:-0}
ANCHOR=${ANCHOR:-../shared/bench/gpu_anchor.py}
[[ -f "$ANCHOR" ]] || ANCHOR=.carry/gpu_anchor.py
DATA=/tmp/gpu-data
STARTED=$(date +%s)
mkdir -p "$OUT" "$DATA"
rm -f "$OUT"/*.json
tar -xf .carry/gpu-data.tar -C "$DATA" || { echo "no .carry/gpu-data.tar: run the pack step first" >&2; exit 2; }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ARTLAB_DEVICE=$DEVICE
step() { echo "== $1 ($(( $(date +%s) - STARTED )) s in)"; }
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
  | tee -a "$OUT/gpu.txt"

step "GPU tests (GPU vs CPU agreement on styles/val, bulk index, fine-tuning)"
ARTLAB_AGREEMENT_DATA=$DATA/styles/val python3 -m pytest -q -p no:cacheprovider -o junit_logging=system-out \
  --junitxml="$OUT/tests.xml" tests/test_gpu_agreement.py tests/test_fast_paths.py tests/test_bulk.py \
  tests/test_finetune.py tests/test_models.py > "$OUT/tests.log" 2>&1
tail -n 3 "$OUT/tests.log"

step "fine-tune, 3 classes x 30 images"
python3 benchmarks/finetune.py --data "$DATA" --device "$DEVICE" --json "$OUT/finetune.json" \
  > "$OUT/finetune.log" 2>&1 || tail -n 5 "$OUT/finetune.log"
head -n 1 "$OUT/finetune.log"

step "bulk index: val re-encoded $COPIES times"
rm -rf /tmp/bulk-jpegs
COPIES=$COPIES LIMIT=$LIMIT python3 - <<'PY'
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from PIL import Image
src = sorted(Path("/tmp/gpu-data/styles/val").rglob("*.jpg"))
limit = int(os.environ["LIMIT"])
src = src[:limit] if limit else src
out = Path("/tmp/bulk-jpegs"); out.mkdir(exist_ok=True)
def copies(i_path):
    i, path = i_path
    im = Image.open(path).convert("RGB")
    for q in range(int(os.environ["COPIES"])):   # other qualities: other files of each painting
        im.save(out / f"{i:05d}_{q}.jpg", quality=85 + 2 * q)
with ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(copies, enumerate(src)))
print(len(list(out.glob("*.jpg"))), "files")
PY
python3 benchmarks/index.py /tmp/bulk-jpegs --limit 0 --bulk --device "$DEVICE" --json "$OUT/index_bulk.json" \
  > "$OUT/index_bulk.log" 2>&1
tail -n 2 "$OUT/index_bulk.log"

step "anchor on the same files: plain ResNet-50 DataLoader script, nvJPEG decoding alone"
if [[ "$DEVICE" == cuda* ]]; then
  python3 "$ANCHOR" /tmp/bulk-jpegs "$OUT/anchor.json" > "$OUT/anchor.log" 2>&1
  tail -n 3 "$OUT/anchor.log"
else
  echo "skipped: the anchor needs CUDA (DEVICE=$DEVICE)"
fi

step "summary"
results=benchmarks/results
[[ "$DEVICE" == cuda* ]] || results=$OUT     # a dry run's figures are not GPU figures: not committed
python3 benchmarks/gpu_summary.py "$OUT" --device "$DEVICE" --results "$results" --seconds $(( $(date +%s) - STARTED ))
