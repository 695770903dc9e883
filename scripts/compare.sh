#!/usr/bin/env bash
# compare.sh: libgpudl against PyTorch on this machine, model by model, interleaved A/B.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/compare.sh [--device cpu|cuda] [--precision fp32|bf16|both] [--out FILE] [--quick]
                         [--repeats N] [--build DIR]

Times each model-level training step of gpudl_bench and the same model in PyTorch
(bench/reference/*.py) on this machine, alternating the two over several repeats, and prints
a table last: model, batch, precision, ours and PyTorch's items/s (medians), their ratio and
spread; on a GPU whose PyTorch has torch.compile (2.0 and later), the CNN rows also time
PyTorch's compiled model (default mode, warmed up first) and give the ratio to it.

  --device     cpu (default) or cuda
  --precision  fp32, bf16 or both (default fp32 on cpu, both on cuda): bf16 rows time our
               bf16 steps (FP32 master weights) against PyTorch's under bf16 autocast
               (channels-last for the CNNs); the LSTM has no bf16 row
  --out        also write one JSON object per row (model, batch, precision, device,
               ours_per_s, pytorch_per_s, ratio, spreads, PyTorch's threads) to FILE
  --quick      one repeat and shorter timings (a smoke run, not a measurement)
  --repeats    A/B rounds (default 5: the median then drops two outlying rounds of each side)
  --build      build folder with bench/gpudl_bench (default build/cuda where nvcc is, else
               build/cpu; configured and built when missing)

Models (identical on both sides): mlp_mnist's MLP at batch 128 and 1024, LeNet-5 at 128,
cnn_cifar10's quick network at 128, char_rnn's LSTM (1x256, 32 streams of 128 steps); on a
GPU also the airbench network at 1024, the resnet network at 512 and a 2x512 LSTM at 64 streams;
in bf16 all but the LSTMs.
PyTorch runs at its best:
each model is first timed with 1 thread and with one per core and the faster count is used
(the table says which); on the CPU it is Debian's python3-torch over OpenBLAS, installed when
missing; on a GPU cudnn.benchmark is on and TF32 off on both sides.
USAGE
}

device=cpu precision="" out="" quick=0 repeats=5 build=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device=${2:?--device needs a value}; shift 2 ;;
    --precision) precision=${2:?--precision needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --quick) quick=1; repeats=1; shift ;;
    --repeats) repeats=${2:?--repeats needs a number}; shift 2 ;;
    --build) build=${2:?--build needs a folder}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $device == cpu || $device == cuda ]] || { echo "compare: --device must be cpu or cuda, not '$device'" >&2; exit 2; }
if [[ -z $precision ]]; then
  # bf16 rows would lengthen today's CPU run, so there they run only when asked for.
  if [[ $device == cuda ]]; then precision=both; else precision=fp32; fi
fi
[[ $precision == fp32 || $precision == bf16 || $precision == both ]] ||
  { echo "compare: --precision must be fp32, bf16 or both, not '$precision'" >&2; exit 2; }
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "compare: --repeats must be a positive integer, not '$repeats'" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# --- PyTorch ------------------------------------------------------------------------------------
# The python3 on PATH when it has torch (a GPU machine's venv), else Debian's /usr/bin/python3,
# where python3-torch lives (a pyenv or venv python3 may lack it).
python=python3
if ! python3 -c "import torch" 2>/dev/null && [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
if ! "$python" -c "import torch" 2>/dev/null; then
  if [[ $device == cuda ]]; then
    echo "compare: $python has no torch; install a CUDA build of PyTorch first" >&2
    exit 1
  fi
  # OpenBLAS under it: without libopenblas0 Debian's torch falls back to the reference BLAS.
  pkgs=(python3-torch libopenblas0-pthread)
  if [[ $(id -u) -eq 0 ]]; then
    sudo_cmd=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo)
  else
    echo "compare: PyTorch is missing; install it as root: apt-get install -y ${pkgs[*]}" >&2
    exit 1
  fi
  echo "compare: installing ${pkgs[*]}"
  "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${pkgs[@]}" >/dev/null
  "$python" -c "import torch" || { echo "compare: torch still does not import" >&2; exit 1; }
fi
torch_version=$("$python" -c "import torch; print(torch.__version__)")
# torch.compile's column: on a GPU, where the installed PyTorch has it.
compile=0
if [[ $device == cuda ]] && "$python" -c "import torch, sys; sys.exit(0 if hasattr(torch, 'compile') else 1)"; then
  compile=1
fi

# --- gpudl_bench ----------------------------------------------------------------------------------
if [[ -z $build ]]; then
  if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then build=build/cuda; else build=build/cpu; fi
fi
bench="$build/bench/gpudl_bench"
if [[ ! -x $bench ]]; then
  preset=$(basename "$build")
  echo "compare: building gpudl_bench in $build (preset $preset)"
  cmake --preset "$preset" >/dev/null && cmake --build "$build" --target gpudl_bench >/dev/null ||
    { echo "compare: could not build $bench" >&2; exit 1; }
fi

cores=$(nproc)
min_time=2
[[ $quick -eq 1 ]] && min_time=0.5
ref=bench/reference

# name|batch|precision|gpudl_bench filter|reference command (threads appended)
cases=()
if [[ $precision != bf16 ]]; then
  cases+=(
    "mlp|128|fp32|^train_step/$device/128/|$ref/mlp_mnist.py --device $device --batch 128"
    "mlp|1024|fp32|^train_step/$device/1024/|$ref/mlp_mnist.py --device $device --batch 1024"
    "lenet|128|fp32|^cnn_step/$device/lenet/128/|$ref/cnn_cifar10.py --device $device --model lenet --batch 128"
    "quick|128|fp32|^cnn_step/$device/quick/128/|$ref/cnn_cifar10.py --device $device --model quick --batch 128"
    "lstm 1x256|32|fp32|^char_rnn_step/$device/32/256/1/|$ref/char_rnn.py --device $device --step 32x256x1"
  )
  if [[ $device == cuda ]]; then
    cases+=("airbench|1024|fp32|^cnn_step/cuda/airbench/1024/|$ref/cnn_cifar10.py --device cuda --model airbench --batch 1024"
            "resnet|512|fp32|^cnn_step/cuda/resnet/512/|$ref/cnn_cifar10.py --device cuda --model resnet --batch 512"
            "lstm 2x512|64|fp32|^char_rnn_step/cuda/64/512/2/|$ref/char_rnn.py --device cuda --step 64x512x2")
  fi
fi
if [[ $precision != fp32 ]]; then
  bf16="--device $device --precision bf16"
  cases+=(
    "mlp|128|bf16|^train_step/$device/bf16/128/|$ref/mlp_mnist.py $bf16 --batch 128"
    "mlp|1024|bf16|^train_step/$device/bf16/1024/|$ref/mlp_mnist.py $bf16 --batch 1024"
    "lenet|128|bf16|^cnn_step/$device/lenet/bf16/128/|$ref/cnn_cifar10.py $bf16 --model lenet --batch 128"
    "quick|128|bf16|^cnn_step/$device/quick/bf16/128/|$ref/cnn_cifar10.py $bf16 --model quick --batch 128"
  )
  if [[ $device == cuda ]]; then
    cases+=("airbench|1024|bf16|^cnn_step/cuda/airbench/bf16/1024/|$ref/cnn_cifar10.py $bf16 --model airbench --batch 1024"
            "resnet|512|bf16|^cnn_step/cuda/resnet/bf16/512/|$ref/cnn_cifar10.py $bf16 --model resnet --batch 512")
  fi
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT

# The items/s of one gpudl_bench case: its *_per_second counter.
ours() {
  "$bench" --benchmark_filter="$1" --benchmark_min_time="$min_time" --benchmark_format=json 2>/dev/null |
    "$python" -c '
import json, sys
runs = [b for b in json.load(sys.stdin)["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
print(next(v for k, v in runs[0].items() if k.endswith("_per_second")))'
}

# The items/s of one reference run with $2 threads.
theirs() {
  # shellcheck disable=SC2086
  "$python" $1 --min-time "$min_time" --threads "$2" 2>/dev/null | tail -1 |
    "$python" -c 'import json, sys; r = json.loads(sys.stdin.read()); print(next(v for k, v in r.items() if k.endswith("_per_second")))'
}

# PyTorch's thread count per model and precision: the faster of 1 and one per core.
declare -A threads
for c in "${cases[@]}"; do
  IFS='|' read -r name batch prec filter cmd <<<"$c"
  best=1
  if [[ $cores -gt 1 && $device == cpu ]]; then
    one=$(theirs "$cmd" 1) all=$(theirs "$cmd" "$cores")
    if [[ -z $one || -z $all ]]; then echo "compare: PyTorch failed on $name $prec (run: $python $cmd)" >&2; exit 1; fi
    best=$("$python" -c "print($cores if $all > $one else 1)")
    echo "compare: $name b$batch $prec: PyTorch $(printf %.0f "$one")/s with 1 thread, $(printf %.0f "$all")/s with $cores; using $best"
  fi
  threads["$name|$batch|$prec"]=$best
done

start=$(date +%s)
for ((r = 1; r <= repeats; r++)); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name batch prec filter cmd <<<"$c"
    t=${threads["$name|$batch|$prec"]}
    # Alternate which side goes first, so neither always meets a warm or a throttled machine.
    if (( r % 2 )); then
      a=$(ours "$filter"); b=$(theirs "$cmd" "$t")
    else
      b=$(theirs "$cmd" "$t"); a=$(ours "$filter")
    fi
    if [[ -z $a || -z $b ]]; then echo "compare: a run of $name b$batch $prec failed (filter $filter, command $cmd)" >&2; exit 1; fi
    compiled=""
    if [[ $compile -eq 1 && $cmd == *cnn_cifar10.py* && $name != lenet ]]; then
      compiled=$(theirs "$cmd --compile" "$t")
      [[ -n $compiled ]] || { echo "compare: PyTorch's compiled $name b$batch $prec failed (run: $python $cmd --compile)" >&2; exit 1; }
    fi
    echo "$name|$batch|$prec|$a|$b|$t|$compiled" >>"$results"
    echo "compare: round $r/$repeats $name b$batch $prec: gpudl $(printf %.0f "$a")/s, PyTorch $(printf %.0f "$b")/s${compiled:+, compiled $(printf %.0f "$compiled")/s}"
  done
done

"$python" - "$results" "$device" "$torch_version" "$out" "$(git rev-parse --short HEAD 2>/dev/null)" \
  "$(( $(date +%s) - start ))" <<'PY'
import json, statistics, sys
path, device, version, out, commit, seconds = sys.argv[1:7]
rows = {}
for line in open(path):
    name, batch, precision, a, b, t, c = line.rstrip("\n").split("|")
    row = rows.setdefault((name, int(batch), precision), {"ours": [], "theirs": [], "compiled": [], "threads": int(t)})
    row["ours"].append(float(a))
    row["theirs"].append(float(b))
    if c:
        row["compiled"].append(float(c))
def spread(v):
    m = statistics.median(v)
    return (max(v) - min(v)) / m if m else 0.0
print(f"\nlibgpudl (commit {commit}) vs PyTorch {version} on {device}, medians of {len(next(iter(rows.values()))['ours'])} "
      f"interleaved rounds ({seconds} s)")
print(f"{'model':<12} {'batch':>5} {'precision':>9} {'gpudl /s':>12} {'PyTorch /s':>12} {'ratio':>7} {'spread':>15} {'threads':>8}"
      f" {'compiled /s':>12} {'ratio':>7}")
records = []
for (name, batch, precision), r in rows.items():
    ours, theirs = statistics.median(r["ours"]), statistics.median(r["theirs"])
    ratio = ours / theirs
    compiled = statistics.median(r["compiled"]) if r["compiled"] else None
    tail = f" {compiled:>12.0f} {ours / compiled:>6.2f}x" if compiled else f" {'-':>12} {'-':>7}"
    print(f"{name:<12} {batch:>5} {precision:>9} {ours:>12.0f} {theirs:>12.0f} {ratio:>6.2f}x {spread(r['ours']):>6.1%} /{spread(r['theirs']):>6.1%} "
          f"{r['threads']:>8}{tail}")
    record = {"model": name, "batch": batch, "precision": precision, "device": device, "ours_per_s": ours,
              "pytorch_per_s": theirs, "ratio": ratio, "ours_spread": spread(r["ours"]), "pytorch_spread": spread(r["theirs"]),
              "pytorch_threads": r["threads"], "pytorch": version, "commit": commit}
    if compiled:
        record.update({"pytorch_compiled_per_s": compiled, "ratio_compiled": ours / compiled})
    records.append(record)
print("spread: (max - min) / median over the rounds, gpudl / PyTorch")
if out:
    with open(out, "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
PY
