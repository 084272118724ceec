#!/usr/bin/env bash
# GPU check for a CUDA build of Sumi, run on an NVIDIA machine from the repository root:
#   bench/gpu_check.sh SUMI_BINARY OUTDIR
# 1. parity: the same generations on the CPU (f32) and the GPU (f16 and f32), compared pixel by
#    pixel, for the demo model and the tiny SD1.5/SDXL fixtures;
# 2. `sumi bench` against diffusers fp16 on the same GPU (bench/compare_diffusers.py): SD1.5 at
#    512x512 (every component and a 20-step Euler run) and SDXL at 1024x1024 (load, UNet, VAE),
#    with GPU memory sampled by nvidia-smi throughout;
# 3. a per-kernel profile of one SD1.5 UNet step (bench/gpu_profile.sh), last because it is the
#    stage to lose if time runs out.
# Needs python3 with torch and diffusers. Writes logs and JSON into OUTDIR.
set -uo pipefail
sumi=$(realpath "$1")
out=$(realpath "$2")
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0 SUMI_HOME=$(mktemp -d)
stamp() { echo "== $(date +%s.%N | cut -c1-14) $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 100 \
    >"$out/gpu_mem.csv" &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT

stamp parity
prompt="a red circle on a blue background"
parity() { # name model sampler
    local name=$1 model=$2 sampler=$3
    for run in "cpu f32" "cuda f16" "cuda f32"; do
        set -- $run
        "$sumi" generate --model "$model" --prompt "$prompt" --seed 7 --steps 12 \
            --sampler "$sampler" --device "$1" --dtype "$2" --no-save \
            -o "/tmp/parity-$name-$1-$2.png" 2>&1 | grep -E 'error|Error|done in' | sed "s/^/$name $1 $2: /"
    done
    python3 - "$name" <<'EOF'
import sys
import numpy as np
from PIL import Image
name = sys.argv[1]
load = lambda d, t: np.asarray(Image.open(f"/tmp/parity-{name}-{d}-{t}.png"), dtype=np.float64)
try:
    ref = load("cpu", "f32")
    for t in ("f16", "f32"):
        d = np.abs(load("cuda", t) - ref)
        print(f"parity {name}: cuda {t} vs cpu f32: mean |diff| {d.mean():.3f}/255, max {d.max():.0f}/255,"
              f" pixels off by >8: {100 * (d.max(axis=-1) > 8).mean():.2f}%")
except Exception as e:
    print(f"parity {name}: FAILED ({e})")
EOF
}
parity demo assets/demo-model "Euler a"
parity demo-dpm assets/demo-model "DPM++ 2M"
parity sd15 tests/fixtures/sd15 "Euler"
parity sdxl tests/fixtures/sdxl "Euler"

stamp bench sd15
python3 bench/compare_diffusers.py --sumi "$sumi" --device cuda --dtype f16 --model sd15 \
    --rounds 1 --repeats 3 --components load,text,unet,vae,preview,generate \
    --json "$out/bench_sd15.json" 2>&1
stamp bench sdxl
python3 bench/compare_diffusers.py --sumi "$sumi" --device cuda --dtype f16 --model sdxl \
    --rounds 1 --repeats 3 --components load,unet,vae \
    --json "$out/bench_sdxl.json" 2>&1
stamp profile
bench/gpu_profile.sh "$sumi" "$out" sd15 2>&1
stamp done
