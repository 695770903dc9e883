#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan) and runs each for a
# given time from a seed corpus of small valid files; fails if any target finds a crash.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/fuzz.sh [SECONDS | --runs N] [TARGET...]

  SECONDS  how long each target runs (default 60)
  --runs N run each target for N inputs instead (the long runs in docs/reliability.md: 10000000)
  TARGET   fuzz_idx, fuzz_cifar, fuzz_text, fuzz_safetensors, fuzz_image (default: all five)

Each input must load into consistent tensors or be refused with the library's error (a
gpudl::Error with a message); a crash, any other exception, a hang over 10 s, a single
allocation over 512 MiB or 2 GiB of memory in use fails the run. The corpus grows in
build/fuzz/corpus/<target>; a failing input is saved in build/fuzz/artifacts/<target>/.
Installs clang when it is missing (as root or with sudo).
USAGE
}

seconds=60
runs_wanted=""
targets=()
while [[ $# -gt 0 ]]; do
  a=$1; shift
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --runs) runs_wanted=${1:-}; shift
            [[ $runs_wanted =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: --runs needs a positive count" >&2; exit 2; } ;;
    fuzz_idx|fuzz_cifar|fuzz_text|fuzz_safetensors|fuzz_image) targets+=("$a") ;;
    *) if [[ $a =~ ^[1-9][0-9]*$ ]]; then seconds=$a; else echo "fuzz: unknown argument '$a'" >&2; usage >&2; exit 2; fi ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_idx fuzz_cifar fuzz_text fuzz_safetensors fuzz_image)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! command -v clang++ >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then sudo_cmd=(); elif sudo -n true 2>/dev/null; then sudo_cmd=(sudo); else
    echo "fuzz: clang is missing; install it as root: apt-get install -y clang" >&2; exit 1
  fi
  echo "fuzz: installing clang"
  "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq clang >/dev/null
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cmake --preset fuzz >/dev/null || { echo "fuzz: configure failed" >&2; exit 1; }
cmake --build build/fuzz -j "$(nproc)" --target "${targets[@]}" >build/fuzz/build.log 2>&1 ||
  { tail -20 build/fuzz/build.log; echo "fuzz: build failed (build/fuzz/build.log)" >&2; exit 1; }

# LeakSanitizer stays on: a leak per input would be found as a crash.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
failed=0
summary=()
for t in "${targets[@]}"; do
  corpus=build/fuzz/corpus/$t seeds=build/fuzz/seeds/$t artifacts=build/fuzz/artifacts/$t
  mkdir -p "$corpus" "$seeds" "$artifacts"
  GPUDL_FUZZ_SEEDS=$seeds "build/fuzz/tests/fuzz/$t" -runs=0 "$seeds" >/dev/null 2>&1
  log=build/fuzz/$t.log
  if [[ -n $runs_wanted ]]; then limit=(-runs="$runs_wanted"); else limit=(-max_total_time="$seconds"); fi
  t0=$(date +%s)
  "build/fuzz/tests/fuzz/$t" "${limit[@]}" -timeout=10 -malloc_limit_mb=512 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  runs=$(grep -Eo 'stat::number_of_executed_units:[[:space:]]+[0-9]+' "$log" | grep -Eo '[0-9]+$')
  rate=$(grep -Eo 'stat::average_exec_per_sec:[[:space:]]+[0-9]+' "$log" | grep -Eo '[0-9]+$')
  if [[ $rc -eq 0 ]]; then
    result="ok"
  else
    result="FAILED (exit $rc): $(grep -m1 -E 'ERROR|deadly|out-of-memory|timeout|inconsistent' "$log" | cut -c1-120); see $log"
    failed=1
  fi
  summary+=("$(printf '%-18s %10s runs in %5s s %7s/s  corpus %5s files  %s' "$t" "${runs:-?}" "$(( $(date +%s) - t0 ))" "${rate:-?}" \
    "$(find "$corpus" -type f | wc -l)" "$result")")
done
if [[ -n $runs_wanted ]]; then budget="$runs_wanted inputs"; else budget="$seconds s"; fi
echo "==== fuzz: $budget per target ($(date -u +%Y-%m-%dT%H:%MZ), built at commit $commit) ===="
printf '%s\n' "${summary[@]}"
exit $failed
