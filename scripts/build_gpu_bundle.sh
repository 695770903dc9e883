#!/usr/bin/env bash
# Builds the `cuda` preset for sm_90 only, stripped, into build/gpu: the folder to carry to a
# GPU machine for scripts/gpu_check.sh (it must stay small: the transfer limit is 64 MiB).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cmake --preset cuda -B build/gpu -DGPUDL_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build/gpu -j "$(nproc)"
# The GPU machine may lack OpenBLAS (and the Fortran runtime it needs); carry them.
mkdir -p build/gpu/lib
openblas=$(ldd build/gpu/libgpudl.so | awk '$1 == "libopenblas.so.0" {print $3}')
cp -L "$openblas" build/gpu/lib/
ldd "$openblas" | awk '$3 ~ /^\// && $1 !~ /^(libc|libm|libpthread|libdl|librt|ld-linux|libgcc_s|libstdc)/ {print $3}' |
  xargs -r -I{} cp -L {} build/gpu/lib/
for f in build/gpu/libgpudl.so.* build/gpu/tests/gpudl_tests build/gpu/tests/gpudl_gpu_tests build/gpu/bench/gpudl_bench \
         build/gpu/python_free_examples/*; do
  [[ -f "$f" && ! -L "$f" && -x "$f" || "$f" == *.so.* ]] && strip --strip-unneeded "$f" 2>/dev/null || true
done
# Only what the check needs travels: drop object files.
find build/gpu -name '*.o' -delete
du -sh build/gpu
