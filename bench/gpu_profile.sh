#!/usr/bin/env bash
# Where a CUDA build's UNet step spends its GPU time, per kernel, with Nsight Compute:
#   bench/gpu_profile.sh SUMI_BINARY OUTDIR [sd15|sdxl]
# Runs `sumi bench --components unet --repeats 1` under `ncu` (kernel durations only, clocks left
# alone) and prints the kernels that take the most time, summed by name, with their share of the
# total. Writes the raw CSV into OUTDIR. Needs ncu on the PATH or in /opt/nvidia.
set -uo pipefail
sumi=$(realpath "$1")
out=$(realpath "$2")
model=${3:-sd15}
mkdir -p "$out"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -z "$ncu" ]; then
    echo "gpu_profile: ncu not found" >&2
    exit 1
fi
export SUMI_HOME=$(mktemp -d)
"$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$out/ncu_$model.csv" \
    "$sumi" bench --model "$model" --device cuda --dtype f16 --components unet --repeats 1 --json \
    >"$out/ncu_${model}_bench.json" || echo "gpu_profile: ncu exited with $?" >&2
python3 - "$out/ncu_$model.csv" <<'EOF'
import collections, csv, sys

scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3, "ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
by_name = collections.defaultdict(lambda: [0.0, 0])
with open(sys.argv[1], newline="") as f:
    rows = [line for line in f if line.startswith('"')]
for row in csv.DictReader(rows):
    if row.get("Metric Name") != "gpu__time_duration.sum":
        continue
    ms = float(row["Metric Value"].replace(",", "")) * scale.get(row["Metric Unit"], float("nan"))
    name = row["Kernel Name"].split("(")[0][:90]
    by_name[name][0] += ms
    by_name[name][1] += 1
total = sum(v[0] for v in by_name.values())
print(f"{sum(v[1] for v in by_name.values())} kernels, {total:.1f} ms of GPU time (load, text, warm-up and one step)")
for name, (ms, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:30]:
    print(f"{ms:9.2f} ms {100 * ms / total:5.1f}% {n:6d}x  {name}")
EOF
