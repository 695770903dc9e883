#!/usr/bin/env python3
"""PyTorch reference for `cnn_cifar10 --model airbench`: the same network (cnn_cifar10.py's
airbench(), whitening filters from the training patches' covariance, Dirac-started convolutions),
the same recipe (SGD with Nesterov momentum 0.9, weight decay 5e-4, one-cycle cosine schedule
with a 20% rise, label smoothing 0.2, 2-pixel zero-padded crops and flips, batch 512, the
whitening filters and batch-norm scales fixed) and flip test-time augmentation, trained on the
CIFAR-10 binary files with the whole data set resident on the device. The clock runs around the
training steps only (synchronised at each epoch's end); evaluation is outside it. One JSON object
per epoch, then a summary with the training seconds to the first epoch at or above --target.

  python3 bench/reference/cifar10_airbench.py --device cuda --precision bf16
  python3 bench/reference/cifar10_airbench.py --device cpu --epochs 1 --limit 2048   # a smoke run
  python3 bench/reference/cifar10_airbench.py --device cuda --synthetic 50000 --epochs 1   # epoch time only

--synthetic N trains on N random images (and tests on N/5) where the data set cannot be had, for
the epoch time alone: its accuracies mean nothing.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn

from cnn_cifar10 import airbench
from timing import add_precision_arg, autocast, setup, sync

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def load(folder, names):
    raw = b"".join(open(os.path.join(folder, n), "rb").read() for n in names)
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    return images, labels


def normalise(x):
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def init_whitening(conv, images, eps=5e-4):
    """conv (24 <- 3, 2x2): eigenvectors of the 2x2 patches' covariance over sqrt(eigenvalue + eps),
    and their negations; the bias centres the patches."""
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # N, C, 31, 31, 2, 2
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    mean = patches.mean(0)
    cov = torch.cov(patches.T)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)
    values, vectors = values[order], vectors[:, order]
    filters = (vectors / torch.sqrt(values.clamp(min=0) + eps)).T  # 12 x 12
    weight = torch.cat([filters, -filters]).view(24, 3, 2, 2)
    bias = -(weight.view(24, 12) @ mean)
    with torch.no_grad():
        conv.weight.copy_(weight.float())
        conv.bias.copy_(bias.float())


def dirac(net):
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            n = min(m.in_channels, m.out_channels)
            with torch.no_grad():
                m.weight[:n].zero_()
                for i in range(n):
                    m.weight[i, i, 1, 1] = 1.0


def augment(x, generator):
    """Zero-padded crops of up to 2 pixels each way and flips, per image, on x's device."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    dy = torch.randint(0, 5, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 5, (n,), device=x.device, generator=generator)
    rows = (dy.view(n, 1) + torch.arange(32, device=x.device).view(1, 32))  # n, 32
    cols = (dx.view(n, 1) + torch.arange(32, device=x.device).view(1, 32))
    out = padded[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(3, device=x.device).view(1, 3, 1, 1),
                 rows.view(n, 1, 32, 1), cols.view(n, 1, 1, 32)]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


def evaluate(net, x, y, precision, device):
    net.eval()
    correct = 0
    with torch.no_grad(), autocast(device, precision):
        for i in range(0, x.shape[0], 1000):
            xb = normalise(x[i:i + 1000])
            logits = net(xb).float() + net(xb.flip(3)).float()
            correct += (logits.argmax(1) == y[i:i + 1000]).sum().item()
    net.train()
    return correct / x.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=os.path.join(os.environ.get("GPUDL_DATA_DIR", "../shared/data"),
                                                  "cifar-10-batches-bin"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--limit", type=int, default=0, help="the first N training images only (0: all)")
    p.add_argument("--target", type=float, default=0.94, help="test accuracy whose training time is reported")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random images instead of the files")
    add_precision_arg(p)
    args = p.parse_args()
    device = setup(args.device, args.threads)
    torch.manual_seed(args.seed)
    if args.synthetic > 0:
        xtr, ytr = torch.rand(args.synthetic, 3, 32, 32), torch.randint(0, 10, (args.synthetic,))
        xte, yte = torch.rand(max(args.synthetic // 5, 1), 3, 32, 32), torch.randint(0, 10, (max(args.synthetic // 5, 1),))
    else:
        xtr, ytr = load(args.data, [f"data_batch_{i}.bin" for i in range(1, 6)])
        xte, yte = load(args.data, ["test_batch.bin"])
    if args.limit > 0:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)

    net = airbench()
    dirac(net)
    init_whitening(net[0], normalise(xtr[:5000]).cpu())
    net = net.to(device)
    if args.precision == "bf16":
        net = net.to(memory_format=torch.channels_last)
    trained = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.SGD(trained, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = (xtr.shape[0] + args.batch - 1) // args.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                   pct_start=0.2, anneal_strategy="cos", cycle_momentum=False)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)
    generator = torch.Generator(device=device)
    generator.manual_seed(args.seed)
    seconds, reached = 0.0, None
    for epoch in range(1, args.epochs + 1):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(xtr.shape[0], device=device, generator=generator)
        for i in range(0, xtr.shape[0], args.batch):
            idx = order[i:i + args.batch]
            xb = normalise(augment(xtr[idx], generator))
            if args.precision == "bf16":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, args.precision):
                loss = loss_fn(net(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        sync(device)
        seconds += time.perf_counter() - start
        accuracy = evaluate(net, xte, yte, args.precision, device)
        if reached is None and accuracy >= args.target:
            reached = seconds
        print(json.dumps({"epoch": epoch, "train_seconds": seconds, "test_accuracy_flip_tta": accuracy,
                          "framework": "pytorch " + torch.__version__, "device": str(device),
                          "precision": args.precision, "synthetic": args.synthetic > 0}), flush=True)
    print(json.dumps({"event": "final", "epochs": args.epochs, "train_seconds": seconds, "target": args.target,
                      "seconds_to_target": reached, "device": str(device), "precision": args.precision}), flush=True)


if __name__ == "__main__":
    main()
