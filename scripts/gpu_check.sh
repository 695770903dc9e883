#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, runs every test (cpu and gpu suites), the
# gpu suite under compute-sanitizer memcheck with caching off, and the benchmarks; writes
# full logs to LOG_DIR and prints a short summary table last.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/gpu_check.sh [--build DIR] [--quick] [--steps LIST] [--filter GTEST_FILTER] LOG_DIR

  --build DIR   a build folder made with the `cuda` preset (default: build/gpu, then
                build/cuda; if neither exists, one is configured and built in place)
  --quick       shorter benchmark runs
  --steps LIST  comma-separated subset of: cpu,gpu,memcheck,racecheck,initcheck,synccheck,
                bench,dist,reference (default: all, in that order)
  --filter F    gtest filter for the gpu suite and the sanitizer runs (default: all)
  LOG_DIR       where logs, gtest JSON and benchmark JSON go (created)

Prepare the build on a machine without a GPU with scripts/build_gpu_bundle.sh, carry the
folder along, then run this there. See docs/gpu.md.
USAGE
}

build=""
quick=0
steps="cpu,gpu,memcheck,racecheck,initcheck,synccheck,bench,dist,reference"
filter="*"
logs=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --steps) steps=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_check: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) logs=$1; shift ;;
  esac
done
[[ -n "$logs" ]] || { usage >&2; exit 2; }
for s in ${steps//,/ }; do
  case "$s" in cpu|gpu|memcheck|racecheck|initcheck|synccheck|bench|dist|reference) ;;
    *) echo "gpu_check: unknown step '$s' in --steps" >&2; exit 2 ;; esac
done
want() { [[ ",$steps," == *",$1,"* ]]; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$logs"
logs=$(cd "$logs" && pwd)
start_all=$(date +%s)
summary=()
note() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }

# --- the build -------------------------------------------------------------------------------
if [[ -z "$build" ]]; then
  for b in "$root/build/gpu" "$root/build/cuda"; do [[ -x "$b/tests/gpudl_gpu_tests" ]] && { build=$b; break; }; done
fi
if [[ -z "$build" ]]; then
  echo "gpu_check: no build folder found; building in place with the cuda preset"
  (cd "$root" && cmake --preset cuda >"$logs/configure.log" 2>&1 && cmake --build build/cuda >"$logs/build.log" 2>&1) ||
    { echo "gpu_check: in-place build failed (GoogleTest/Benchmark may be missing here); see $logs/build.log"; exit 1; }
  build="$root/build/cuda"
fi
build=$(cd "$build" && pwd)
echo "gpu_check: build folder $build"

# --- libraries: cuBLAS, cuDNN and NCCL wherever this machine has them --------------------------------
find_lib() {  # name -> directory holding it
  local name=$1 dir
  dir=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')
  [[ -n "$dir" ]] && { dirname "$dir"; return; }
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e "$d/$name" ]] && { echo "$d"; return; }
  done
  local site
  for site in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
    dir=$(find "$site/nvidia" -name "$name" -print -quit 2>/dev/null)
    [[ -n "$dir" ]] && { dirname "$dir"; return; }
  done
  dir=$(find / -xdev -name "$name" -not -path '*/proc/*' -print -quit 2>/dev/null)
  [[ -n "$dir" ]] && dirname "$dir"
}
libpath=""
for lib in libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libnccl.so.2 libopenblas.so.0; do
  dir=$(find_lib "$lib")
  if [[ -n "$dir" ]]; then
    echo "gpu_check: $lib from $dir"
    case ":$libpath:" in *":$dir:"*) ;; *) libpath="$libpath:$dir" ;; esac
    note "library $lib" "$dir"
  else
    echo "gpu_check: $lib NOT FOUND"
    note "library $lib" "NOT FOUND"
  fi
done
# OpenBLAS may be missing on the GPU machine: the build folder may carry a copy in lib/.
[[ -d "$build/lib" ]] && libpath="$libpath:$build/lib"
export LD_LIBRARY_PATH="${libpath#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$build/tests/gpudl_gpu_tests" | grep -q "not found"; then
  echo "gpu_check: unresolved libraries:"; ldd "$build/tests/gpudl_gpu_tests" | grep "not found"
fi

# --- the GPU ---------------------------------------------------------------------------------
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "gpu_check: GPU: ${gpu:-none found by nvidia-smi}"
note "GPU" "${gpu:-none}"
nvidia-smi >"$logs/nvidia-smi.txt" 2>&1

# --- tests -----------------------------------------------------------------------------------
gtest_result() {  # json -> "N passed, N failed, N skipped"
  python3 - "$1" <<'PY' 2>/dev/null || echo "no result (crashed?)"
import json, sys
d = json.load(open(sys.argv[1]))
tests = [t for s in d["testsuites"] for t in s["testsuite"]]
failed = sum(1 for t in tests if t.get("failures"))
skipped = sum(1 for t in tests if t.get("result") == "SKIPPED")
print(f"{len(tests) - failed - skipped} passed, {failed} failed, {skipped} skipped")
PY
}
run_suite() {  # label binary [extra args]
  local label=$1 bin=$2; shift 2
  local t0=$(date +%s)
  "$bin" --gtest_output="json:$logs/$label.json" "$@" >"$logs/$label.log" 2>&1
  local rc=$?
  note "$label" "$(gtest_result "$logs/$label.json") (exit $rc, $(( $(date +%s) - t0 )) s)"
}
want cpu && run_suite cpu_tests "$build/tests/gpudl_tests"
want gpu && run_suite gpu_tests "$build/tests/gpudl_gpu_tests" --gtest_filter="$filter"

# --- compute-sanitizer -----------------------------------------------------------------------
# Caching off so the tools see every allocation's true bounds and first use; the out-of-memory
# test is left out because its deliberate cudaMalloc failure is reported as an API error, and
# the 1M-element table cases because the tools slow them down far more than they add.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
run_tool() {  # tool seconds [tool options]
  local tool=$1 limit=$2; shift 2
  want "$tool" || return 0
  if [[ -z "$sanitizer" ]]; then note "$tool" "compute-sanitizer not found"; return; fi
  local t0=$(date +%s) f="$filter"
  # racecheck instruments every shared-memory access of cuBLAS and cuDNN too and did not get
  # through the whole suite in 90 s on an H200; by default it covers our own kernels' suites.
  [[ $tool == racecheck && "$f" == "*" ]] && f='Foundation/*:Layers/*:Pool/*:Rnn/*:Optim/*:Cases/OpTableGpu.*/LayerNorm*'
  [[ "$f" == *-* ]] && f="$f:*OutOfMemory*:*1048579*" || f="$f-*OutOfMemory*:*1048579*"
  # initcheck with heuristic convolution algorithms: cudnnFind runs candidates on buffers cuDNN
  # allocates uninitialised, which initcheck flags inside cuDNN (seen on an H200, 2026-11-27).
  local algo=find
  [[ $tool == initcheck ]] && algo=heuristic
  GPUDL_CONV_ALGO=$algo GPUDL_NO_CACHING=1 timeout "$limit" "$sanitizer" --tool "$tool" "$@" --error-exitcode 3 \
    "$build/tests/gpudl_gpu_tests" --gtest_filter="$f" --gtest_output="json:$logs/$tool.json" \
    >"$logs/$tool.log" 2>&1
  local rc=$?
  local errors=$(grep -Eo "(ERROR|RACECHECK) SUMMARY: [0-9]+ (error|hazard)[a-z]*" "$logs/$tool.log" | tail -1)
  [[ $rc -eq 124 ]] && errors="stopped at ${limit} s; ${errors:-no summary}"
  note "$tool gpu_tests (no caching)" "$(gtest_result "$logs/$tool.json"); ${errors:-no summary} (exit $rc, $(( $(date +%s) - t0 )) s)"
}
run_tool memcheck 120 --leak-check full
run_tool racecheck 90
run_tool initcheck 60
run_tool synccheck 60

# --- benchmarks ------------------------------------------------------------------------------
min_time=0.2
[[ $quick -eq 1 ]] && min_time=0.05
t0=$(date +%s)
if want bench; then
  timeout 200 "$build/bench/gpudl_bench" --benchmark_filter='cuda|copy' --benchmark_min_time=$min_time \
    --benchmark_out="$logs/bench.json" --benchmark_out_format=json >"$logs/bench.log" 2>&1
  note "gpudl_bench" "exit $? ($(( $(date +%s) - t0 )) s), results in bench.json"
fi
# --- data parallelism at world size 1: NCCL's collectives and the data-parallel step -----------
t0=$(date +%s)
if want dist; then
  # With mpirun and several GPUs this would be `mpirun -np N`; the lent machine has one GPU.
  timeout 120 "$build/bench/gpudl_dist_bench" --benchmark_filter='cuda' \
    --benchmark_out="$logs/dist_bench.json" --benchmark_out_format=json >"$logs/dist_bench.log" 2>&1
  note "gpudl_dist_bench (1 rank, nccl)" "exit $? ($(( $(date +%s) - t0 )) s), results in dist_bench.json"
fi
# --- PyTorch side by side ----------------------------------------------------------------------
t0=$(date +%s)
ref_time=2
[[ $quick -eq 1 ]] && ref_time=1
if ! want reference; then
  :
elif python3 -c "import torch" 2>/dev/null; then
  timeout 60 python3 "$root/bench/reference/mlp_mnist.py" --device cuda --min-time $ref_time >"$logs/reference_mlp.jsonl" 2>"$logs/reference_mlp.log"
  note "pytorch reference (mlp_mnist)" "exit $? ($(( $(date +%s) - t0 )) s), results in reference_mlp.jsonl"
  t0=$(date +%s)
  timeout 90 python3 "$root/bench/reference/cnn_cifar10.py" --device cuda --model resnet quick --batch 512 --min-time $ref_time \
    >"$logs/reference_cnn.jsonl" 2>"$logs/reference_cnn.log"
  note "pytorch reference (cnn_cifar10)" "exit $? ($(( $(date +%s) - t0 )) s), results in reference_cnn.jsonl"
  # bf16: autocast with channels-last and cudnn.benchmark, against our bf16 steps.
  t0=$(date +%s)
  { timeout 60 python3 "$root/bench/reference/mlp_mnist.py" --device cuda --precision bf16 --min-time $ref_time
    timeout 90 python3 "$root/bench/reference/cnn_cifar10.py" --device cuda --precision bf16 --model resnet quick \
      --batch 512 --min-time $ref_time
  } >"$logs/reference_bf16.jsonl" 2>"$logs/reference_bf16.log"
  note "pytorch reference (bf16 autocast)" "exit $? ($(( $(date +%s) - t0 )) s), results in reference_bf16.jsonl"
  t0=$(date +%s)
  { timeout 90 python3 "$root/bench/reference/char_rnn.py" --device cuda --min-time $ref_time
    timeout 60 python3 "$root/bench/reference/char_rnn.py" --device cuda --min-time $ref_time --step 64x512x2
  } >"$logs/reference_rnn.jsonl" 2>"$logs/reference_rnn.log"
  note "pytorch reference (char_rnn)" "exit $? ($(( $(date +%s) - t0 )) s), results in reference_rnn.jsonl"
  # The airbench network: its step at batch 1024 (eager and, with PyTorch 2, torch.compile), and
  # one epoch of each side's recipe on 50,000 synthetic images in bf16 (the data set does not
  # travel to this machine), for time to 94% = epochs needed (from a full run) x epoch time.
  t0=$(date +%s)
  { timeout 120 python3 "$root/bench/reference/cnn_cifar10.py" --device cuda --precision bf16 --model airbench \
      --batch 1024 --min-time $ref_time
    if python3 -c "import torch, sys; sys.exit(0 if hasattr(torch, 'compile') else 1)"; then
      timeout 180 python3 "$root/bench/reference/cnn_cifar10.py" --device cuda --precision bf16 --model airbench \
        --batch 1024 --min-time $ref_time --compile
    fi
    timeout 120 python3 "$root/bench/reference/cifar10_airbench.py" --device cuda --precision bf16 --synthetic 50000 \
      --epochs 2
  } >"$logs/reference_airbench.jsonl" 2>"$logs/reference_airbench.log"
  note "pytorch reference (airbench)" "exit $? ($(( $(date +%s) - t0 )) s), results in reference_airbench.jsonl"
  t0=$(date +%s)
  timeout 120 "$build/python_free_examples/cnn_cifar10" --device cuda --precision bf16 --model airbench \
    --data synthetic --synthetic-size 50000 --epochs 2 --metrics "$logs/airbench_epochs.jsonl" \
    >"$logs/airbench_epochs.log" 2>&1
  note "cnn_cifar10 airbench (2 epochs)" "exit $? ($(( $(date +%s) - t0 )) s), epoch times in airbench_epochs.jsonl"
else
  note "pytorch reference" "python3 has no torch"
fi

bench_summary=$(python3 - "$logs/bench.json" "$logs/reference_mlp.jsonl" "$logs/reference_cnn.jsonl" \
  "$logs/reference_rnn.jsonl" "$logs/reference_bf16.jsonl" <<'PY' 2>/dev/null
import json, sys
b = {x["name"]: x for x in json.load(open(sys.argv[1]))["benchmarks"]}
def t(name): return b[name]["real_time"] if name in b else None
out = []
p, u = t("pool_alloc_free/cuda/1048576"), t("upstream_alloc_free/cuda/1048576")
if p and u: out.append(f"pool vs cudaMalloc+cudaFree @1MiB      {u / p:.0f}x faster ({p:.0f} vs {u:.0f} ns)")
for name, x in b.items():
    if name.startswith("gemm/cuda/gpudl/"):
        shape = name.split("/")[3]
        d = b.get(f"gemm/cuda/direct/{shape}/manual_time")
        if d:
            ours, theirs = x.get("GFLOPs", 0), d.get("GFLOPs", 0)  # rate counters: already per second
            out.append(f"gemm {shape:<16} gpudl {ours:8.0f} GFLOP/s, cuBLAS {theirs:8.0f} ({100 * ours / theirs:.1f}%)")
for name, x in b.items():
    if name.startswith("copy/"):
        out.append(f"{name.split('/manual')[0]:<22} {x.get('GB', 0):.1f} GB/s")
ref = {}
try:
    for line in open(sys.argv[2]):
        r = json.loads(line)
        ref[r["batch"]] = r["samples_per_second"]
except Exception:
    pass
for batch in (128, 1024):
    ours = next((x for n, x in b.items() if n.startswith(f"train_step/cuda/{batch}/")), None)
    if ours:
        line = f"mlp_mnist train step b{batch:<5} gpudl {ours['samples_per_second']:10.0f} samples/s"
        if batch in ref:
            line += f", pytorch {ref[batch]:10.0f} ({100 * ours['samples_per_second'] / ref[batch]:.0f}%)"
        out.append(line)
cnn_ref = {}
try:
    for line in open(sys.argv[3]):
        r = json.loads(line)
        cnn_ref[r["model"]] = r["images_per_second"]
except Exception:
    pass
for model in ("resnet", "quick"):
    ours = next((x for n, x in b.items() if n.startswith(f"cnn_step/cuda/{model}/512/")), None)
    if ours:
        line = f"cnn_cifar10 {model:<6} step b512  gpudl {ours['images_per_second']:10.0f} images/s"
        if model in cnn_ref:
            line += f", pytorch {cnn_ref[model]:10.0f} ({100 * ours['images_per_second'] / cnn_ref[model]:.0f}%)"
        out.append(line)
rnn_ref = {}
try:
    for line in open(sys.argv[4]):
        r = json.loads(line)
        key = ("lstm", r["hidden"]) if r["benchmark"] == "lstm_fwd_bwd" else ("step", r["batch"], r["hidden"], r["layers"])
        rnn_ref[key] = r["tokens_per_second"]
except Exception:
    pass
for name, x in b.items():
    parts = name.split("/")
    if name.startswith("lstm/cuda/fwd_bwd/"):
        key = ("lstm", int(parts[3]))
    elif name.startswith("char_rnn_step/cuda/"):
        key = ("step", int(parts[2]), int(parts[3]), int(parts[4]))
    else:
        continue
    line = f"{name.split('/manual')[0]:<28} gpudl {x.get('tokens_per_second', 0):10.0f} tokens/s"
    if key in rnn_ref:
        line += f", pytorch {rnn_ref[key]:10.0f} ({100 * x.get('tokens_per_second', 0) / rnn_ref[key]:.0f}%)"
    out.append(line)
# bf16 against PyTorch autocast bf16, against our own FP32, and the peak pool bytes of each.
bf16_ref = {}
try:
    for line in open(sys.argv[5]):
        r = json.loads(line)
        bf16_ref[r.get("model", "mlp"), r["batch"]] = r.get("samples_per_second", r.get("images_per_second"))
except Exception:
    pass
def pick(prefix):
    return next((x for n, x in b.items() if n.startswith(prefix)), None)
for model, batch, fp32, bf16, counter in (
        ("mlp", 1024, "train_step/cuda/1024/", "train_step/cuda/bf16/1024/", "samples_per_second"),
        ("resnet", 512, "cnn_step/cuda/resnet/512/", "cnn_step/cuda/resnet/bf16/512/", "images_per_second"),
        ("quick", 512, "cnn_step/cuda/quick/512/", "cnn_step/cuda/quick/bf16/512/", "images_per_second")):
    a, f = pick(bf16), pick(fp32)
    if not a:
        continue
    line = f"{model} b{batch} bf16 gpudl {a[counter]:10.0f}/s"
    if f:
        line += f", {a[counter] / f[counter]:.2f}x our fp32"
        if f.get("peak_pool_bytes"):
            line += f", peak pool {a.get('peak_pool_bytes', 0) / f['peak_pool_bytes']:.2f}x fp32's"
    if (model, batch) in bf16_ref:
        line += f", pytorch bf16 {bf16_ref[model, batch]:10.0f} ({a[counter] / bf16_ref[model, batch]:.2f}x)"
    out.append(line)
for name, x in b.items():
    if name.startswith("conv/cuda/fwd_bwd/"):
        out.append(f"{name.split('/manual')[0]:<40} {x.get('TFLOPs', 0):.1f} TFLOP/s")
print("\n".join(out))
PY
)

# --- summary ---------------------------------------------------------------------------------
echo
echo "==== gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), $(( $(date +%s) - start_all )) s) ===="
printf '%s\n' "${summary[@]}"
[[ -n "$bench_summary" ]] && echo "$bench_summary"
[[ -f "$logs/dist_bench.json" ]] && python3 - "$logs/dist_bench.json" <<'PY' 2>/dev/null
import json, sys
for x in json.load(open(sys.argv[1]))["benchmarks"]:
    name = x["name"].split("/iterations")[0]
    if name.startswith("all_reduce"):
        print(f"{name:<40} {x['real_time']:9.1f} us  algbw {x.get('algbw_GBps', 0):7.2f} GB/s  busbw {x.get('busbw_GBps', 0):7.2f} GB/s")
    elif name.startswith("dp_step"):
        print(f"{name:<40} step {x.get('step_ms_overlapped', 0):.3f} ms overlapped, {x.get('step_ms_after_backward', 0):.3f} after "
              f"backward, {x.get('step_ms_no_communication', 0):.3f} without; hidden share {x.get('hidden_share', 0):.2f}")
PY
echo "full logs: $logs"
