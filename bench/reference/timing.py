"""The timing protocol the bench/reference scripts share with gpudl_bench: a warm-up block,
then timed blocks of steps, one synchronisation per block, for at least min_time seconds and
3 blocks; the median block counts."""
import time

import torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_block(device, block, min_time):
    """Returns (median seconds of one block, number of blocks timed)."""
    block()  # warm-up: allocations, library initialisation
    sync(device)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 3:
        t0 = time.perf_counter()
        block()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], len(times)


def setup(device_name, threads):
    """The torch.device for "auto", "cpu" or "cuda", with PyTorch at its best and in FP32:
    `threads` CPU threads when > 0, cudnn.benchmark on, TF32 off (as gpudl's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch.device(device_name)
