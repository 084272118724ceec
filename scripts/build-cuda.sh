#!/usr/bin/env bash
# Builds `sumi` for NVIDIA GPUs on a machine that has no GPU, for a machine with the CUDA 13
# libraries (the driver, and PyTorch's `nvidia-*` cu13 wheels or a CUDA 13 toolkit):
#   scripts/build-cuda.sh [flash-attn] [cudnn]
# Writes target-cuda/release/sumi and a copy named after the features (sumi-cuda+flash-attn).
# Needs nvcc (Debian's nvidia-cuda-toolkit 11.8 is enough) and pip. CUDA_COMPUTE_CAP picks the
# GPU generation (default 90, an H100); candle's kernels are PTX that the driver compiles for the
# GPU it finds, FlashAttention's are machine code for that one.
#
# flash-attn adds FlashAttention-2 (candle-flash-attn). Its build wants CUTLASS 3.5.0 from GitHub;
# PyPI's nvidia-cutlass 3.5.0.0 carries the same include/ tree, which is put where the build
# looks for its checkout. Its 53 kernel files take 10-30 CPU minutes each, so by default only the
# three that SD-family models use are built (SUMI_FLASH_KERNELS, below; the rest are stand-ins that
# sumi never calls), and scripts/nvcc-cached keeps every object, so a build cut off part way goes
# on where it stopped.
# cudnn runs convolutions through cuDNN (and links libcudnn, also taken from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

features=cuda
for feature in "$@"; do
    case ${feature#--} in
    flash-attn | cudnn) features=$features,${feature#--} ;;
    *) echo "usage: $0 [flash-attn] [cudnn]" >&2 && exit 2 ;;
    esac
done
build=$PWD/.cuda-build
target=${CARGO_TARGET_DIR:-$PWD/target-cuda}
mkdir -p "$build"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# The CUDA 13 libraries to link against (the GPU machine loads its own copies at run time).
cu13=$build/cu13
if [ ! -e "$cu13/lib/libcublas.so" ]; then
    mkdir -p "$cu13/wheels" "$cu13/lib"
    python3 -m pip download --quiet --no-deps -d "$cu13/wheels" \
        'nvidia-cublas==13.0.*' 'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-nvrtc==13.0.*' \
        'nvidia-curand==10.4.0.*'
    for w in "$cu13"/wheels/*.whl; do
        python3 - "$w" "$cu13/lib" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1:]
for name in zipfile.ZipFile(wheel).namelist():
    base = os.path.basename(name)
    if "/lib/" in name and ".so" in base:
        with zipfile.ZipFile(wheel).open(name) as src, open(os.path.join(dest, base), "wb") as dst:
            dst.write(src.read())
EOF
    done
    for lib in cublas cublasLt cudart nvrtc curand; do
        ln -sfn "$(basename "$(ls "$cu13"/lib/lib$lib.so.* | head -1)")" "$cu13/lib/lib$lib.so"
    done
    rm -rf "$cu13/wheels"
fi
if [[ $features == *cudnn* && ! -e $cu13/lib/libcudnn.so ]]; then
    python3 -m pip download --quiet --no-deps -d "$cu13/wheels" 'nvidia-cudnn-cu13==9.*'
    python3 - "$cu13"/wheels/nvidia_cudnn_cu13-*.whl "$cu13/lib" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1:]
for name in zipfile.ZipFile(wheel).namelist():
    base = os.path.basename(name)
    if "/lib/" in name and base.startswith("libcudnn.so"):
        with zipfile.ZipFile(wheel).open(name) as src, open(os.path.join(dest, base), "wb") as dst:
            dst.write(src.read())
EOF
    ln -sfn libcudnn.so.9 "$cu13/lib/libcudnn.so"
    rm -rf "$cu13/wheels"
fi

# nvcc by way of scripts/nvcc-cached (sm_90a -> sm_90, objects kept in .cuda-build/objects);
# the kernel builds take the CUDA headers from the folder above nvcc's.
mkdir -p "$build/nvcc/bin"
ln -sfn "$PWD/scripts/nvcc-cached" "$build/nvcc/bin/nvcc"
ln -sfn "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include" "$build/nvcc/include"
export SUMI_NVCC_CACHE=$build/objects

if [[ $features == *flash-attn* ]]; then
    # candle-flash-attn 0.11.1 pins CUTLASS commit 7d49e6c7 (v3.5.0) and accepts a cached checkout
    # whose HEAD names that commit.
    export CUDAFORGE_HOME=$build/cudaforge
    cutlass=$CUDAFORGE_HOME/git/checkouts/cutlass-7d49e6c7e2f8896c
    if [ ! -e "$cutlass/include/cute/tensor.hpp" ]; then
        rm -rf "$cutlass" && mkdir -p "$cutlass/tools/util" "$build/wheels"
        python3 -m pip download --quiet --no-deps -d "$build/wheels" nvidia-cutlass==3.5.0.0
        python3 - "$build"/wheels/nvidia_cutlass-3.5.0.0-*.whl "$cutlass" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1:]
z = zipfile.ZipFile(wheel)
for prefix, to in (("cutlass_library/source/include/", "include/"),
                   ("cutlass_library/source/tools/util/include/", "tools/util/include/")):
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            path = os.path.join(dest, to, name[len(prefix):])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with z.open(name) as src, open(path, "wb") as dst:
                dst.write(src.read())
EOF
        git -C "$cutlass" init --quiet
        echo 7d49e6c7e2f8896c47f586706e67e1fb215529dc >"$cutlass/.git/HEAD"
    fi
    # Only the kernels for the head sizes of SD-family models (40, 80 and 160 round up to 64, 96
    # and 160; SD2 and SDXL use 64) in f16 are built; SUMI_FLASH_KERNELS=all builds every one.
    export SUMI_FLASH_KERNELS=${SUMI_FLASH_KERNELS:-hdim64_fp16 hdim96_fp16 hdim160_fp16}
    flash=$build/flash-${SUMI_FLASH_KERNELS// /+}
    mkdir -p "$flash"
    export CANDLE_FLASH_ATTN_BUILD_DIR=$flash CUDAFORGE_THREADS=$(nproc)
fi

# CUDARC_CUDA_VERSION picks cudarc's CUDA 13 bindings; cudarc reads CUDNN_LIB as one more
# library root.
CUDARC_CUDA_VERSION=13000 CUDNN_LIB=$cu13 NVCC=$build/nvcc/bin/nvcc \
    CARGO_TARGET_DIR=$target cargo build --release -p sumi-cli --features "$features" --locked
cp "$target/release/sumi" "$target/release/sumi-${features//,/+}"
echo "built $target/release/sumi-${features//,/+}"
