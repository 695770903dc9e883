"""The timing protocol the bench/reference scripts share with gpudl_bench: a warm-up block,
then timed blocks of steps, one synchronisation per block, for at least min_time seconds and
3 blocks; the median block counts. Also the precision the timed steps run in."""
import contextlib
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


PRECISIONS = ("fp32", "bf16")


def add_precision_arg(parser):
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default), or bf16: forward and loss under torch.autocast to bfloat16, "
                             "as gpudl's bf16 steps keep FP32 master weights")


def autocast(device, precision):
    """The context for forward and loss; backward and the optimizer step stay outside it (the usual
    autocast recipe). FP32 gets a no-op, so it runs as it did before --precision existed."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
