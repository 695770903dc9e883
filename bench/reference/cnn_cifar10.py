#!/usr/bin/env python3
"""PyTorch reference for libgpudl's CNNs: the `quick`, `resnet` and `airbench` networks of cnn_cifar10
and the LeNet-5 of lenet_mnist, built from the same layers (3x3 convolutions without bias before
batch norm, max/global-average pooling, 1x1 projection shortcuts), PyTorch's default
initialisation (which libgpudl's defaults follow), SGD with Nesterov momentum (Adam for LeNet),
FP32 (TF32 off) or, with --precision bf16, bf16 autocast on channels-last tensors. Timed as
gpudl_bench's train_step cases: blocks of 20 steps on a fixed batch already on the device, one
synchronisation per block, the median block. One JSON object per line.

  python3 bench/reference/cnn_cifar10.py --device cpu --model quick lenet --batch 128
  python3 bench/reference/cnn_cifar10.py --device cuda --model resnet --batch 512
  python3 bench/reference/cnn_cifar10.py --device cuda --model resnet --batch 512 --precision bf16
  python3 bench/reference/cnn_cifar10.py --device cuda --model airbench --batch 1024 --precision bf16 --compile

--compile runs the model through torch.compile (default mode) where the installed PyTorch has it
(2.0 and later), warmed up before timing; elsewhere it says so and exits.
"""
import argparse
import json

import torch
from torch import nn

from timing import add_precision_arg, autocast, median_block, setup

STEPS_PER_BLOCK = 20


def conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Residual(nn.Module):
    def __init__(self, main, shortcut=None):
        super().__init__()
        self.main, self.shortcut = main, shortcut

    def forward(self, x):
        return self.main(x) + (self.shortcut(x) if self.shortcut is not None else x)


def basic_block(cin, cout, stride):
    main = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(Residual(main, shortcut), nn.ReLU())


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def airbench_group(cin, cout):
    # models::airbench's batch norms: running = 0.6 * running + 0.4 * batch (PyTorch's momentum 0.4), eps 1e-12.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                         nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4), nn.GELU())


def airbench():
    """models::airbench(): its whitening filters and batch-norm scales (left at 1) are not trained; the
    whitening bias is (cifar10_airbench.py freezes it after 3 epochs through its learning rate)."""
    net = nn.Sequential(nn.Conv2d(3, 24, 2), nn.GELU(), airbench_group(24, 64), airbench_group(64, 256),
                        airbench_group(256, 256), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False),
                        Scale(1 / 9))
    net[0].weight.requires_grad_(False)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(False)
    return net


def make(name):
    if name == "quick":
        return nn.Sequential(*conv_bn_relu(3, 32), nn.MaxPool2d(2), *conv_bn_relu(32, 64), nn.MaxPool2d(2),
                             *conv_bn_relu(64, 128), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2048, 10)), (3, 32, 32)
    if name == "resnet":
        return nn.Sequential(*conv_bn_relu(3, 64), basic_block(64, 64, 1), basic_block(64, 128, 2),
                             basic_block(128, 256, 2), basic_block(256, 512, 2), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(512, 10)), (3, 32, 32)
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)), (1, 28, 28)
    if name == "airbench":
        return airbench(), (3, 32, 32)
    raise SystemExit(f"cnn_cifar10.py: unknown model {name!r}: expected quick, resnet, airbench or lenet")


def print_profile(block, steps):
    """CUDA time per kernel over `steps` blocks of training steps, to stdout as a table."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            block()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0)) > 0]
    cuda_us = lambda e: getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0))
    # Top-level operator events also carry their kernels' time; keep the kernels alone.
    kernels = [e for e in events if not e.key.startswith("aten::") and not e.key.startswith("cuda")]
    total = sum(cuda_us(e) for e in kernels)
    print(f"{'kernel':<72} {'launches':>8} {'us':>10} {'share':>6}")
    for e in sorted(kernels, key=cuda_us, reverse=True)[:25]:
        print(f"{e.key.split('(')[0][:72]:<72} {e.count:>8} {cuda_us(e):>10.1f} {100 * cuda_us(e) / total:>5.1f}%")
    print(f"{'all (' + str(steps * STEPS_PER_BLOCK) + ' steps)':<72} {sum(e.count for e in kernels):>8} {total:>10.1f}")


def throughput(name, device, batch, min_time, precision, profile_steps=0, compiled=False):
    torch.manual_seed(1)
    net, shape = make(name)
    net = net.to(device)
    trained = [p for p in net.parameters() if p.requires_grad]
    if name == "lenet":
        opt = torch.optim.Adam(trained, lr=2e-3)
    else:
        opt = torch.optim.SGD(trained, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, *shape, device=device)
    y = torch.arange(batch, device=device) % 10
    if precision == "bf16":
        # PyTorch's fast path for reduced-precision convolutions (NHWC tensor-core kernels); Module.to
        # converts in place, so the optimizer keeps the same parameters.
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model = torch.compile(net) if compiled else net

    def block():
        for _ in range(STEPS_PER_BLOCK):
            opt.zero_grad(set_to_none=False)
            with autocast(device, precision):
                loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

    median, blocks = median_block(device, block, min_time)
    if profile_steps > 0:
        print_profile(block, profile_steps)
    return {"benchmark": "train_step", "model": name, "framework": "pytorch " + torch.__version__,
            "device": str(device), "precision": precision, "compiled": compiled, "batch": batch,
            "threads": torch.get_num_threads(),
            "blocks": blocks, "images_per_second": batch * STEPS_PER_BLOCK / median}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", nargs="+", default=["quick"], help="quick, resnet, airbench and/or lenet")
    p.add_argument("--compile", action="store_true", help="through torch.compile (default mode), PyTorch 2.0 and later")
    p.add_argument("--batch", type=int, nargs="+", default=[128])
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    p.add_argument("--profile", type=int, default=0, metavar="BLOCKS",
                   help="after timing, print CUDA time per kernel over this many blocks of steps (GPU only)")
    add_precision_arg(p)
    args = p.parse_args()
    if args.compile and not hasattr(torch, "compile"):
        raise SystemExit(f"cnn_cifar10.py: --compile needs PyTorch 2.0 or later, this is {torch.__version__}")
    device = setup(args.device, args.threads)
    for name in args.model:
        for b in args.batch:
            print(json.dumps(throughput(name, device, b, args.min_time, args.precision, args.profile, args.compile)),
                  flush=True)


if __name__ == "__main__":
    main()
