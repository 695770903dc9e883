#!/usr/bin/env bash
# Builds the `cuda` preset for sm_90 only and copies what scripts/gpu_check.sh needs, stripped,
# into build/gpu: the folder to carry to a GPU machine (the transfer limit is 64 MiB).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
src=${1:-build/cuda}
# The build itself stays in $src so that later bundles rebuild only what changed.
cmake --preset cuda -B "$src" -DGPUDL_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$src" -j "$(nproc)"
rm -rf build/gpu
mkdir -p build/gpu/lib build/gpu/tests build/gpu/bench build/gpu/python_free_examples
cp -a "$src"/libgpudl.so* build/gpu/
cp "$src"/tests/gpudl_tests "$src"/tests/gpudl_gpu_tests build/gpu/tests/
cp "$src"/bench/gpudl_bench "$src"/bench/gpudl_dist_bench build/gpu/bench/
# Google Benchmark may be a shared library found through $ORIGIN.
find "$src/bench" -maxdepth 2 -name 'libbenchmark*.so*' -exec cp -a {} build/gpu/bench/ \; 2>/dev/null || true
for f in "$src"/python_free_examples/*; do [[ -f "$f" && -x "$f" ]] && cp "$f" build/gpu/python_free_examples/; done
# The GPU machine may lack OpenBLAS (and the Fortran runtime it needs); carry them.
openblas=$(ldd build/gpu/libgpudl.so | awk '$1 == "libopenblas.so.0" {print $3}')
cp -L "$openblas" build/gpu/lib/
ldd "$openblas" | awk '$3 ~ /^\// && $1 !~ /^(libc|libm|libpthread|libdl|librt|ld-linux|libgcc_s|libstdc)/ {print $3}' |
  xargs -r -I{} cp -L {} build/gpu/lib/
# Likewise OpenMPI's libraries, which libgpudl loads even when a run has one process (the GPU
# machine has no mpirun, so it runs world size 1 only).
mpi=$(ldd build/gpu/libgpudl.so | awk '$1 == "libmpi.so.40" {print $3}')
if [[ -n "$mpi" ]]; then
  cp -L "$mpi" build/gpu/lib/
  ldd "$mpi" | awk '$3 ~ /^\// && $1 !~ /^(libc|libm|libpthread|libdl|librt|ld-linux|libgcc_s|libstdc|libz)\./ {print $3}' |
    xargs -r -I{} cp -L {} build/gpu/lib/
fi
find build/gpu -type f \( -name '*.so*' -o -perm -u+x \) -exec strip --strip-unneeded {} \; 2>/dev/null || true
du -sh build/gpu
