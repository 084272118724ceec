#!/usr/bin/env bash
# GPU check for CUDA builds of Sumi, run on an NVIDIA machine from the repository root:
#   bench/gpu_check.sh SUMI_BINARY OUTDIR [OTHER_BINARY...]
# 1. parity: the same generations on the CPU (f32) and the GPU (f16 and f32), compared pixel by
#    pixel, for the demo model and the tiny SD1.5/SDXL fixtures (each other binary in f16 too);
# 2. `sumi bench` against diffusers fp16 on the same GPU (bench/compare_diffusers.py): SD1.5 at
#    512x512 (every component and a 20-step Euler run) and SDXL at 1024x1024 (load, UNet, VAE),
#    with GPU memory sampled by nvidia-smi throughout;
# 3. A/B on one random SD1.5 model: the UNet and VAE with the default kernels, without
#    FlashAttention, without cuDNN, with SUMI_KERNELS=candle (candle's attention in slices and its unfolding convolution instead of
#    FlashAttention and cuDNN, where built in), and with each other binary;
#    then the time per kind of operation (SUMI_PROFILE=1: convolution, attention, linear, ...);
# 4. a per-kernel profile of one SD1.5 UNet step (bench/gpu_profile.sh), last because it is the
#    stage to lose if time runs out.
# Needs python3 with torch and diffusers. Writes logs and JSON into OUTDIR.
# The first binary that makes an image on the GPU is the one benchmarked (a build that cannot start
# there, e.g. one missing a library, gives way to the next); the rest are compared with it.
set -uo pipefail
out=$(realpath "$2")
binaries=("$1" "${@:3}")
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0 SUMI_HOME=$(mktemp -d)
stamp() { echo "== $(date +%s.%N | cut -c1-14) $*"; }

sumi='' others=()
for bin in "${binaries[@]}"; do
    bin=$(realpath "$bin")
    if [ -z "$sumi" ]; then
        if "$bin" generate --model assets/demo-model --prompt smoke --steps 2 --device cuda \
            --no-save -o /tmp/gpu-smoke.png >"$out/smoke-$(basename "$bin").log" 2>&1; then
            sumi=$bin
        else
            echo "gpu_check: $(basename "$bin") does not run on this GPU:" && tail -5 "$out/smoke-$(basename "$bin").log"
        fi
    else
        others+=("$bin")
    fi
done
[ -n "$sumi" ] || { echo "gpu_check: no binary runs on this GPU" && exit 1; }
echo "gpu_check: benchmarking $(basename "$sumi"); comparing ${others[*]##*/}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 100 \
    >"$out/gpu_mem.csv" &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT

stamp parity
prompt="a red circle on a blue background"
parity() { # name model sampler
    local name=$1 model=$2 sampler=$3
    local runs=("$sumi cpu f32 ref" "$sumi cuda f16 f16" "$sumi cuda f32 f32") i=0
    for other in "${others[@]}"; do runs+=("$other cuda f16 other$((i++))"); done
    for run in "${runs[@]}"; do
        set -- $run
        "$1" generate --model "$model" --prompt "$prompt" --seed 7 --steps 12 \
            --sampler "$sampler" --device "$2" --dtype "$3" --no-save \
            -o "/tmp/parity-$name-$4.png" 2>&1 | grep -E 'error|Error|WARN|done in' | sed "s/^/$name $4 ($(basename "$1") $2 $3): /"
    done
    python3 - "$name" "${#others[@]}" <<'EOF'
import sys
import numpy as np
from PIL import Image
name = sys.argv[1]
load = lambda run: np.asarray(Image.open(f"/tmp/parity-{name}-{run}.png"), dtype=np.float64)
runs = ["f16", "f32"] + [f"other{i}" for i in range(int(sys.argv[2]))]
for run in runs:
    try:
        d = np.abs(load(run) - load("ref"))
        print(f"parity {name}: cuda {run} vs cpu f32: mean |diff| {d.mean():.3f}/255, max {d.max():.0f}/255,"
              f" pixels off by >8: {100 * (d.max(axis=-1) > 8).mean():.2f}%")
    except Exception as e:
        print(f"parity {name}: cuda {run}: FAILED ({e})")
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
stamp a/b
# One random SD1.5 model: the default kernels (FlashAttention and cuDNN where built in), candle's
# ops in bounded slices (SUMI_KERNELS=candle), and the other binaries.
ab() { # label binary [env...]
    local label=$1 bin=$2
    shift 2
    env "$@" "$bin" bench --model sd15 --device cuda --dtype f16 --repeats 3 \
        --components unet,vae --keep-dir /tmp/sumi-ab-sd15 2>&1 | sed "s/^/$label: /"
}
ab default "$sumi"
ab no-flash "$sumi" SUMI_KERNELS=no-flash
ab no-cudnn "$sumi" SUMI_KERNELS=no-cudnn
ab kernels=candle "$sumi" SUMI_KERNELS=candle
for other in "${others[@]}"; do ab "$(basename "$other")" "$other"; done
stamp profile by operation
ab profiled "$sumi" SUMI_PROFILE=1
stamp bench sdxl
python3 bench/compare_diffusers.py --sumi "$sumi" --device cuda --dtype f16 --model sdxl \
    --rounds 1 --repeats 3 --components load,unet,vae \
    --json "$out/bench_sdxl.json" 2>&1
stamp profile
bench/gpu_profile.sh "$sumi" "$out" sd15 2>&1
stamp done
