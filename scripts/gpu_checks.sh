#!/usr/bin/env bash
# The GPU checks of issues 5 and 6, prepared to run in one short call on a lent GPU machine
# (torch and torchvision there, no gradio: only tests and benchmarks that need no UI run).
#
#   here:   bash scripts/gpu_checks.sh pack ../shared/data    # -> .carry/gpu-data.tar (~25 MB)
#   there:  bash scripts/gpu_checks.sh run                    # with .carry in the call's carry list
#
# `run` unpacks the data to /tmp, runs the GPU tests (GPU vs CPU parity, the bulk indexer on the
# GPU, fine-tuning), the fine-tune benchmark on the GPU (target <= 10 s), and the bulk index
# benchmark on 12,600 JPEGs (val re-encoded six times, so every file is new to the gallery;
# target >= 5,000 images/s, with the model-only ceiling beside it). Logs and JSON go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == pack ]]; then
  data=${2:?usage: gpu_checks.sh pack DATA_DIR}
  mkdir -p .carry
  list=$(mktemp)
  (cd "$data" && find styles/val -type f -name '*.jpg' && \
     for c in baroque impressionism expressionism; do find "styles/train/$c" -name '*.jpg' | sort | sed -n 1,30p; done) > "$list"
  tar -cf .carry/gpu-data.tar -C "$data" -T "$list"
  rm -f "$list"
  ls -lh .carry/gpu-data.tar
  exit 0
fi

[[ "${1:-}" == run ]] || { echo "usage: gpu_checks.sh pack DATA_DIR | run" >&2; exit 2; }
OUT=${OUT:-runs/gpu-checks}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu COPIES=1 LIMIT=200: a dry run of this script on a CPU
COPIES=${COPIES:-6}
LIMIT=${LIMIT:-0}
mkdir -p "$OUT" /tmp/gpu-data
tar -xf .carry/gpu-data.tar -C /tmp/gpu-data
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
  | tee -a "$OUT/gpu.txt"

echo "== GPU tests"
python3 -m pytest -q tests/test_fast_paths.py tests/test_bulk.py tests/test_finetune.py tests/test_models.py \
  2>&1 | tee "$OUT/tests.log" | tail -n 5

echo "== fine-tune, 3 classes x 30 images, on the GPU"
python3 benchmarks/finetune.py --data /tmp/gpu-data --device "$DEVICE" --json "$OUT/finetune.json" \
  > "$OUT/finetune.log" 2>&1 || true
head -n 1 "$OUT/finetune.log"

echo "== bulk index: val re-encoded $COPIES times"
COPIES=$COPIES python3 - <<'EOF'
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from PIL import Image
src = sorted(Path("/tmp/gpu-data/styles/val").rglob("*.jpg"))
out = Path("/tmp/bulk-jpegs"); out.mkdir(exist_ok=True)
def copies(i_path):
    i, path = i_path
    im = Image.open(path).convert("RGB")
    for q in range(int(os.environ["COPIES"])):   # other qualities: other files of each painting
        im.save(out / f"{i:05d}_{q}.jpg", quality=85 + 2 * q)
with ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(copies, enumerate(src)))
print(len(list(out.glob("*.jpg"))), "files")
EOF
python3 benchmarks/index.py /tmp/bulk-jpegs --limit "$LIMIT" --bulk --device "$DEVICE" --json "$OUT/index_bulk.json" \
  2>&1 | tee "$OUT/index_bulk.log" | tail -n 2
python3 benchmarks/index.py /tmp/gpu-data/styles/val --limit "$LIMIT" --device "$DEVICE" --json "$OUT/index_ordinary.json" \
  2>&1 | tee "$OUT/index_ordinary.log" | tail -n 2
