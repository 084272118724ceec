#!/usr/bin/env bash
# Trains the built-in demo model afresh (VAE, then UNet and text encoder) on one CUDA GPU for a fixed
# wall time, with the VAE recipe of the shipped model (3000 steps; see assets/demo-model/README.md).
#
#   tools/demo_model/gpu_run.sh OUTDIR SECONDS      (from the repository root)
#
# SECONDS is the whole run: Python start, dataset, training, final save. Writes three files:
#   OUTDIR/demo-model.tar        the diffusers folder demo-model/ (f16 safetensors, as assets/demo-model)
#   OUTDIR/train-gpu.log         everything the run printed
#   OUTDIR/demo-model.train.log  the training log alone
# and ends within SECONDS (train.py stops itself; `timeout` kills it at SECONDS+20 at the latest,
# leaving the tar of its last checkpoint, written once a minute).
# Needs torch with CUDA, transformers and diffusers importable by $PYTHON (default python3).
# For a check on a machine without a GPU:
#   DEVICE=cpu BATCH=32 IMAGES=2000 VAE_STEPS=20 gpu_run.sh /tmp/x 90
set -euo pipefail
out=${1:?usage: gpu_run.sh OUTDIR SECONDS}
secs=${2:?usage: gpu_run.sh OUTDIR SECONDS}
start=$(date +%s)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1
status=0
timeout -k 5 $((secs + 20)) "${PYTHON:-python3}" tools/demo_model/train.py \
    --out "$work/demo-model" --tar "$out/demo-model.tar" --vae-steps "${VAE_STEPS:-3000}" \
    --device "${DEVICE:-cuda}" --deadline $((start + secs - 8)) --max-minutes $((secs / 60 + 1)) \
    --images "${IMAGES:-50000}" --batch "${BATCH:-2048}" --lr 1e-3 --warmup 200 --ema 0.998 \
    --unet-steps 1000000 --save-every 1 --log-every "${LOG_EVERY:-250}" --threads 4 --no-samples \
    2>&1 | tee "$out/train-gpu.log" || status=$?
cp "$work/demo-model.train.log" "$out/" 2>/dev/null || true
echo "gpu_run.sh: exit $status after $(($(date +%s) - start)) s; $(ls "$out" | tr '\n' ' ')"
exit "$status"
