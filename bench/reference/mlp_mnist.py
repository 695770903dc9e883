#!/usr/bin/env python3
"""PyTorch reference for libgpudl's mlp_mnist: the same 784-512-512-10 network (ReLU, dropout
0.2, Adam, cross-entropy), timed the way gpudl_bench's train_step cases are (blocks of 20
steps on a fixed batch already on the device, one synchronisation per block), and optionally
trained on the real MNIST files for accuracy and wall time, in FP32 or under bf16 autocast
(--precision, for the steps timed and trained alike). Prints one JSON object per result.

  python3 bench/reference/mlp_mnist.py --device cpu            # throughput, batch 128 and 1024
  python3 bench/reference/mlp_mnist.py --device cuda
  python3 bench/reference/mlp_mnist.py --device cuda --precision bf16
  python3 bench/reference/mlp_mnist.py --train --data ../shared/data/mnist --epochs 8
"""
import argparse
import gzip
import json
import os
import sys
import time

import torch
from torch import nn

from timing import add_precision_arg, autocast, median_block, setup

STEPS_PER_BLOCK = 20


def make_net():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))


def throughput(device, batch, min_time, precision):
    torch.manual_seed(1)
    net = make_net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = (torch.arange(batch, device=device) % 10)

    def block():
        for _ in range(STEPS_PER_BLOCK):
            opt.zero_grad(set_to_none=False)
            with autocast(device, precision):
                loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()

    median, blocks = median_block(device, block, min_time)
    return {"benchmark": "train_step", "framework": "pytorch " + torch.__version__, "device": str(device),
            "precision": precision, "batch": batch, "threads": torch.get_num_threads(), "blocks": blocks,
            "samples_per_second": batch * STEPS_PER_BLOCK / median}


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xff)]
    offset = 4 + 4 * len(dims)
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(dims)


def load(data_dir, prefix):
    def find(name):
        for candidate in (name, name + ".gz"):
            if os.path.exists(os.path.join(data_dir, candidate)):
                return os.path.join(data_dir, candidate)
        sys.exit(f"mlp_mnist.py: {os.path.join(data_dir, name)}: not found (with or without .gz)")
    images = read_idx(find(f"{prefix}-images-idx3-ubyte")).float().div(255.0)
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte")).long()
    return (images.unsqueeze(1) - 0.1307) / 0.3081, labels


def train(device, data_dir, epochs, batch, lr, precision):
    torch.manual_seed(1)
    xtr, ytr = load(data_dir, "train")
    xte, yte = load(data_dir, "t10k")
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)
    net = make_net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(ytr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    reached = None
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(ytr), device=device)
        for i in range(0, len(ytr), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            with autocast(device, precision):
                loss = loss_fn(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad(), autocast(device, precision):
            logits = torch.cat([net(xte[i:i + 1000]) for i in range(0, len(yte), 1000)]).float()
            acc = (logits.argmax(1) == yte).float().mean().item()
            test_loss = loss_fn(logits, yte).item()
        elapsed = time.perf_counter() - start
        if reached is None and acc >= 0.98:
            reached = {"epoch": epoch, "seconds": elapsed}
        print(json.dumps({"event": "epoch", "precision": precision, "epoch": epoch, "test_accuracy": acc,
                          "test_loss": test_loss, "seconds": elapsed}), flush=True)
    print(json.dumps({"event": "final", "framework": "pytorch " + torch.__version__, "device": str(device),
                      "precision": precision, "test_accuracy": acc, "test_loss": test_loss,
                      "seconds": time.perf_counter() - start, "reached_98": reached,
                      "threads": torch.get_num_threads()}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch", type=int, nargs="+", default=[128, 1024], help="batch sizes to time")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed blocks per batch size")
    p.add_argument("--train", action="store_true", help="train on MNIST instead of timing steps")
    p.add_argument("--data", default=os.path.join(os.environ.get("GPUDL_DATA_DIR", "../shared/data"), "mnist"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    add_precision_arg(p)
    args = p.parse_args()
    device = setup(args.device, args.threads)
    if args.train:
        train(device, args.data, args.epochs, args.batch[0], args.lr, args.precision)
    else:
        for b in args.batch:
            print(json.dumps(throughput(device, b, args.min_time, args.precision)), flush=True)


if __name__ == "__main__":
    main()
