#!/usr/bin/env bash
# Regenerates benchmarks/results/cub.{md,json} and the CUB plots from scratch: trains the two base-trained
# bundles on CUB's 100 base classes (training images only), exports them and the plain pretrained bundle,
# then runs every row. About 1.5 hours on 2 CPU cores; steps whose output exists are skipped (delete
# runs/ and bundles/ to start over). Usage: bash scripts/cub_results.sh [CUB_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-${IMPRINT_CUB_ROOT:-../shared/data/CUB_200_2011}}
BIN=${BIN:-.venv/bin}
mkdir -p runs bundles
step() { echo "== $(date +%H:%M:%S) $*"; }
[ -f runs/cub-d1280.pt ] || { step "train: frozen backbone, D = 1280"; $BIN/imprint train --cub "$ROOT" --out runs/cub-d1280.pt --dim 1280; }
[ -f runs/cub-b2.pt ] || { step "train: last 2 blocks"; $BIN/imprint train --cub "$ROOT" --out runs/cub-b2.pt --dim 0 --blocks 2; }
# int8 calibration uses the default sample photos: CUB folders would put test images into the calibration.
[ -f bundles/lite0-imagenet/manifest.json ] || { step "export: plain pretrained"; $BIN/imprint export --out bundles/lite0-imagenet --name lite0-imagenet; }
[ -f bundles/cub-d1280/manifest.json ] || { step "export: cub-d1280"; $BIN/imprint export --checkpoint runs/cub-d1280.pt --out bundles/cub-d1280 --name cub-d1280; }
[ -f bundles/cub-b2/manifest.json ] || { step "export: cub-b2"; $BIN/imprint export --checkpoint runs/cub-b2.pt --out bundles/cub-b2 --name cub-b2 --formats onnx; }
step "benchmark"
$BIN/python benchmarks/cub.py --root "$ROOT" --bundle bundles/cub-d1280 --bundle bundles/lite0-imagenet \
    --bundle bundles/cub-b2 --aug onnx/int8 --threads 2 --finetune runs/cub-d1280.pt \
    --finetune-blocks runs/cub-b2.pt --out benchmarks/results
step "done"
