#!/usr/bin/env bash
# Where one CUDA training step's GPU time goes: per-kernel times from Nsight Compute over a window
# of a gpudl_bench case's launches, and PyTorch's own profiler over the matching reference model.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/gpu_profile.sh [--build DIR] [--skip N] [--count N] MODEL LOG_DIR

  MODEL       quick or resnet (cnn_cifar10's networks at batch 512)
  --build     build folder with bench/gpudl_bench (default build/gpu, then build/cuda)
  --skip N    kernel launches to let pass before the window (default 3000: past cuDNN's set-up)
  --count N   kernel launches timed (default 600: a few training steps)
  LOG_DIR     where the raw ncu CSV and the summaries go (created)

Needs a GPU, ncu (Nsight Compute) and, for the PyTorch side, python3 with torch.
USAGE
}
build="" skip=3000 count=600 model="" logs=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_profile: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) if [[ -z "$model" ]]; then model=$1; else logs=$1; fi; shift ;;
  esac
done
[[ "$model" == quick || "$model" == resnet ]] || { echo "gpu_profile: MODEL must be quick or resnet, not '$model'" >&2; exit 2; }
[[ -n "$logs" ]] || { usage >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "$build" ]]; then
  for b in "$root/build/gpu" "$root/build/cuda"; do [[ -x "$b/bench/gpudl_bench" ]] && { build=$b; break; }; done
fi
[[ -x "$build/bench/gpudl_bench" ]] || { echo "gpu_profile: no gpudl_bench under '${build:-build/gpu}'" >&2; exit 2; }
mkdir -p "$logs"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
[[ -n "$ncu" ]] || { echo "gpu_profile: ncu not found" >&2; exit 1; }

# --clock-control none: the clocks stay as the benchmarks see them.
"$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --launch-skip "$skip" --launch-count "$count" \
  "$build/bench/gpudl_bench" --benchmark_filter="^cnn_step/cuda/$model/" --benchmark_min_time=0.5 \
  >"$logs/ncu_$model.csv" 2>"$logs/ncu_$model.log"
echo "== gpudl $model: GPU time by kernel over $count launches (ncu) =="
python3 - "$logs/ncu_$model.csv" <<'PY'
import csv, sys, collections
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}
total, calls = collections.Counter(), collections.Counter()
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"].split("(")[0][:70]
    total[name] += float(r["Metric Value"].replace(",", "")) * scale.get(r["Metric Unit"], 1.0)
    calls[name] += 1
all_us = sum(total.values())
print(f"{'kernel':<72} {'launches':>8} {'us':>10} {'share':>6}")
for name, us in total.most_common(25):
    print(f"{name:<72} {calls[name]:>8} {us:>10.1f} {100 * us / all_us:>5.1f}%")
# The fused cross-entropy runs once per training step: it counts the steps in the window.
steps = sum(c for n, c in calls.items() if "cross_entropy" in n)
print(f"{'all':<72} {sum(calls.values()):>8} {all_us:>10.1f}")
if steps:
    print(f"{steps} steps in the window: {all_us / steps:.1f} us of kernels per step")
PY
if python3 -c "import torch" 2>/dev/null; then
  echo "== pytorch $model: CUDA time by kernel (torch.profiler) =="
  python3 "$root/bench/reference/cnn_cifar10.py" --device cuda --model "$model" --batch 512 --min-time 1 --profile 1 \
    2>"$logs/torch_profile_$model.log"
fi
