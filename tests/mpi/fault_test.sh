#!/usr/bin/env bash
# A rank of a 2-process training job killed (SIGKILL) or frozen (SIGSTOP) mid-run: the job must
# end non-zero within 60 s naming the rank, and its last checkpoint must resume under 2 ranks.
# usage: fault_test.sh MPIEXEC CNN_CIFAR10_BINARY WORK_DIR
set -uo pipefail
mpiexec=$1
driver=$2
work=$3
rm -rf "$work" && mkdir -p "$work"

fail() { echo "FAIL: $*" >&2; echo "--- job output:" >&2; cat "$work/out.txt" >&2 2>/dev/null; exit 1; }

# A job long enough to be caught in the middle: 40 epochs of 1,200 synthetic images.
run_job() {
  "$mpiexec" -np 2 "$driver" --data synthetic --synthetic-size 1200 --model quick --batch 16 --epochs "$1" \
    --device cpu --checkpoint "$work/ck.safetensors" "${@:2}"
}

# The PID of the process that is rank $1 of the job (its launcher says so in its environment).
rank_pid() {
  for pid in $(pgrep -f "$driver"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$pid"
      return
    fi
  done
}

# $1: signal; $2: what the output must say about it.
fault() {
  local signal=$1 pattern=$2
  rm -f "$work/ck.safetensors"
  run_job 40 > "$work/out.txt" 2>&1 &
  local job=$!
  # Wait for a checkpoint: the fault then comes after at least one epoch's work was saved.
  for _ in $(seq 1 600); do
    [[ -s "$work/ck.safetensors" ]] && break
    sleep 0.1
  done
  [[ -s "$work/ck.safetensors" ]] || { kill "$job"; fail "no checkpoint within 60 s"; }
  local victim
  victim=$(rank_pid 1)
  [[ -n "$victim" ]] || { kill "$job"; fail "rank 1 not found"; }
  local start=$SECONDS
  kill "-$signal" "$victim"
  # Bounded wait: a job that outlives 60 s fails the test (and is ended here).
  local status=
  for _ in $(seq 1 600); do
    if ! kill -0 "$job" 2>/dev/null; then
      wait "$job"
      status=$?
      break
    fi
    sleep 0.1
  done
  if [[ -z "$status" ]]; then
    kill -9 "$victim" 2>/dev/null
    kill "$job"
    fail "SIG$signal on rank 1: the job still ran 60 s later"
  fi
  local took=$((SECONDS - start))
  [[ $status -ne 0 ]] || fail "SIG$signal on rank 1: the job exited 0"
  grep -Eq "$pattern" "$work/out.txt" || fail "SIG$signal on rank 1: the output does not match '$pattern'"
  echo "SIG$signal on rank 1: job ended with status $status after $took s"
  # The checkpoint left behind is whole: a 2-rank job resumes from it and trains one epoch more.
  local epoch
  # The header's metadata says which epoch it ended ("epoch":"N").
  epoch=$(head -c 65536 "$work/ck.safetensors" | grep -ao '"epoch":"[0-9]*"' | grep -o '[0-9]\+')
  [[ -n "$epoch" ]] || fail "the checkpoint's metadata names no epoch"
  run_job $((epoch + 1)) --resume "$work/ck.safetensors" > "$work/resume.txt" 2>&1 ||
    { cat "$work/resume.txt" >&2; fail "resuming from the checkpoint failed"; }
  grep -q "resumed from" "$work/resume.txt" || fail "the resumed job did not say where it continued"
  echo "the checkpoint of epoch $epoch resumed under 2 ranks"
}

# OpenMPI's launcher names the rank that died.
fault KILL "rank 1 .*(signal 9|Killed)"
# A frozen rank is noticed by the other's collective timeout, which names itself and the operation.
GPUDL_DIST_TIMEOUT=5 fault STOP "rank 0: .*timed out after 5 s waiting for rank 1"
echo "PASS"
