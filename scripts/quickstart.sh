#!/usr/bin/env bash
# Sets up, builds and runs libgpudl on a fresh Debian machine: `train` runs the main example
# (on the GPU when there is one), `test` runs the whole test suite.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/quickstart.sh train|test [extra arguments for the example]

  train   install what is missing, configure, build, and train the main example (cnn_cifar10)
  test    install what is missing, configure, build, and run every test (ctest)

The `cuda` preset is used where nvcc is found (every .cu file is compiled; GPU tests skip
without a GPU), else the `cpu` preset; set GPUDL_PRESET to choose. Build: build/<preset>.
USAGE
}

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
mode=$1
shift
case "$mode" in
  train|test) ;;
  -h|--help) usage; exit 0 ;;
  *) echo "quickstart: unknown mode '$mode'" >&2; usage >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# --- dependencies ----------------------------------------------------------------------------
# Debian packages the build needs (libpng and libjpeg-turbo for image folders; OpenMPI for jobs
# of several processes; PyTorch and venv for the interop tests; ONNX and protobuf for ONNX
# export); the CUDA toolkit, cuDNN and NCCL are expected under /usr/local/cuda.
packages=(cmake ninja-build g++ libopenblas-dev libgtest-dev libbenchmark-dev libcli11-dev zlib1g-dev
          libpng-dev libjpeg62-turbo-dev openmpi-bin libopenmpi-dev python3-torch python3-venv libonnx-dev
          libprotobuf-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    sudo_cmd=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo)
  else
    echo "quickstart: missing Debian packages: ${missing[*]}" >&2
    echo "quickstart: install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "quickstart: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- configure and build ---------------------------------------------------------------------
if [[ -z "${GPUDL_PRESET:-}" ]]; then
  if command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then
    GPUDL_PRESET=cuda
  else
    GPUDL_PRESET=cpu
  fi
fi
build="build/$GPUDL_PRESET"
echo "quickstart: preset $GPUDL_PRESET, build folder $build"
cmake --preset "$GPUDL_PRESET" >/dev/null
cmake --build "$build" -j "$(nproc)"

# --- run -------------------------------------------------------------------------------------
if [[ "$mode" == train ]]; then
  # The main job: a CNN on CIFAR-10 (quick on a CPU, resnet on a GPU). Data: GPUDL_DATA_DIR,
  # else the shared data folder beside the checkout, else the built-in synthetic set.
  if [[ -z "${GPUDL_DATA_DIR:-}" && -d ../shared/data ]]; then export GPUDL_DATA_DIR="$(cd ../shared/data && pwd)"; fi
  exec "$build/python_free_examples/cnn_cifar10" --device auto --metrics "$build/cnn_cifar10.jsonl" "$@"
else
  # The Python packages the interop tests need, in a virtual environment of the build's own.
  bash scripts/pyenv.sh "$build"
  exec ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
fi
