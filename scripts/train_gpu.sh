#!/usr/bin/env bash
# How the image weights were trained: on one GPU, several runs side by side. The shipped classifier
# is then the soup of two of them (texture224 45 epochs + plain224), made on any machine with
#   python -m artlab soup --base RUN_A --with RUN_B --data $DATA --out weights --size 320 --calibration-images 4096
#   DATA=/path/to/shared/data OUTDIR=/path/out bash scripts/train_gpu.sh
# Decodes the data once into $ARTLAB_DATA_CACHE, then trains the classifier variants
# and the autoencoder in parallel (Lite0 is small: one H100 has room for all of them).
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding styles/ and subjects/}
OUTDIR=${OUTDIR:-runs/gpu}
BUDGET=${BUDGET:-360}
EPOCHS=${EPOCHS:-30}
export ARTLAB_DATA_CACHE=${ARTLAB_DATA_CACHE:-/tmp/artlab-cache} PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR"
python3 -c "
from pathlib import Path
from artlab.training.image import load_art_data
for split in ('train', 'val'):
    print(split, len(load_art_data(Path('$DATA'), split)))
"
train() {  # name, extra args...
  local name=$1; shift
  python3 -m artlab train --data "$DATA" --out "$OUTDIR/$name" --time-budget "$BUDGET" "$@" \
    > "$OUTDIR/$name.log" 2>&1 &
}
train texture224 --model classifier --epochs "$EPOCHS" --batch 128 --size 224
train plain224 --model classifier --epochs "$EPOCHS" --batch 128 --size 224 --no-texture
train texture256 --model classifier --epochs "$EPOCHS" --batch 128 --size 256
train autoencoder --model autoencoder --ae-epochs "${AE_EPOCHS:-60}" --ae-width "${AE_WIDTH:-32}"
wait
tail -n 3 "$OUTDIR"/*.log
