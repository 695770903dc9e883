#!/usr/bin/env python3
"""PyTorch reference for `cnn_cifar10 --model airbench`: the same network (cnn_cifar10.py's
airbench(): batch norms with momentum 0.4 in PyTorch's convention and eps 1e-12, their scales fixed
at 1; whitening filters from the training patches' covariance, fixed; Dirac-started convolutions)
and the same recipe, trained on the CIFAR-10 binary files with the whole data set resident on the
device:

- batch 1024, each epoch's last partial batch dropped (floor(N / batch) steps an epoch), 12 epochs;
- SGD with Nesterov momentum 0.85, lr 1.5 on the mean loss, PyTorch's coupled weight decay
  0.0153 / 11.5; the batch norms' biases at 64 x the lr and 1/64 of the decay; the whitening
  layer's bias trained for the first 3 epochs only (its lr 0 after);
- the lr piecewise linear per step: 0.2 x peak at step 0, the peak at step int(0.23 T) (at least
  1), 0.07 x peak at step T, the last of T = epochs x steps-per-epoch steps;
- label smoothing 0.2; translations of up to 2 pixels with reflect padding and horizontal flips,
  drawn per image;
- lookahead from epoch 3 (0-based) on: every 5th step, the first time a snapshot of the network's
  floating-point state (parameters and batch-norm running statistics) becomes the average, later
  the average moves towards the network by 1 - 0.95^5 x (step / T)^3 and is copied back into it;
  each epoch ends with the network set to the average once there is one;
- test-time augmentation after training: 6 views (the image and its mirror at 0.25 each, the image
  moved one pixel down-right and one up-left with reflect padding, and their mirrors, at 0.125 each),
  reported with the 2-view (image + mirror) accuracy.

The clock runs around the training steps only, lookahead included (synchronised at each epoch's
end); evaluation is outside it. One JSON object per epoch, with the plain test accuracy and the
2-view flip test-time-augmentation accuracy (test_accuracy_flip_tta, which --target is checked
against), then one with the final 6-view and 2-view accuracies (event "tta"), then a summary with
the training seconds to the first epoch at or above --target.

  python3 bench/reference/cifar10_airbench.py --device cuda --precision bf16
  python3 bench/reference/cifar10_airbench.py --device cpu --epochs 4 --limit 4096   # a smoke run
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
    """Translations of up to 2 pixels each way (reflect-padded) and flips, per image, on x's device."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    dy = torch.randint(0, 5, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 5, (n,), device=x.device, generator=generator)
    rows = (dy.view(n, 1) + torch.arange(32, device=x.device).view(1, 32))  # n, 32
    cols = (dx.view(n, 1) + torch.arange(32, device=x.device).view(1, 32))
    out = padded[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(3, device=x.device).view(1, 3, 1, 1),
                 rows.view(n, 1, 32, 1), cols.view(n, 1, 1, 32)]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


def lr_factor(step, total):
    """The schedule's share of the peak lr for the step after `step` steps: linear from 0.2 at step 0
    to 1 at step int(0.23 * total) (at least 1), then to 0.07 at step `total` (past it, 0.07)."""
    top = max(1, int(0.23 * total))
    end = max(total, top + 1)
    if step <= 0:
        return 0.2
    if step <= top:
        return 0.2 + 0.8 * step / top
    if step <= end:
        return 1.0 + (0.07 - 1.0) * (step - top) / (end - top)
    return 0.07


class Lookahead:
    """A slow average of the network's floating-point state (parameters and batch-norm running
    statistics), pulled towards the network every 5th step from epoch 3 on and copied back into it."""

    def __init__(self, net, steps_per_epoch, total):
        self.net, self.per_epoch, self.total = net, steps_per_epoch, total
        self.average = None

    def live(self):
        return [t for t in self.net.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def after(self, step):
        """Called with the number of steps done, after each step."""
        if (step - 1) // self.per_epoch >= 3 and step % 5 == 0:
            if self.average is None:
                self.average = [t.detach().clone() for t in self.live()]
            else:
                decay = 0.95 ** 5 * (step / self.total) ** 3
                for avg, t in zip(self.average, self.live()):
                    avg.lerp_(t, 1.0 - decay)
                    t.copy_(avg)
        if self.average is not None and step % self.per_epoch == 0:
            for avg, t in zip(self.average, self.live()):
                t.copy_(avg)


def evaluate(net, x, y, precision, device, shifted=False):
    """Test accuracies in eval mode: (plain, 2-view flip TTA) or, with `shifted`, (plain, 2-view, 6-view),
    the 6 views weighted as airbench does: the image and its mirror 0.25 each; the image moved one pixel
    down-right and one up-left (reflect padding) and their mirrors 0.125 each."""
    net.eval()
    plain = flip = six = 0
    with torch.no_grad(), autocast(device, precision):
        for i in range(0, x.shape[0], 1000):
            xb, yb = normalise(x[i:i + 1000]), y[i:i + 1000]
            if precision == "bf16":
                xb = xb.contiguous(memory_format=torch.channels_last)
            image, mirror = net(xb).float(), net(xb.flip(3)).float()
            plain += (image.argmax(1) == yb).sum().item()
            flip += ((image + mirror).argmax(1) == yb).sum().item()
            if shifted:
                padded = nn.functional.pad(xb, (1, 1, 1, 1), mode="reflect")
                logits = 0.25 * (image + mirror)
                for view in (padded[:, :, 0:32, 0:32], padded[:, :, 2:34, 2:34]):  # moved down-right, up-left
                    logits = logits + 0.125 * (net(view).float() + net(view.flip(3)).float())
                six += (logits.argmax(1) == yb).sum().item()
    net.train()
    n = x.shape[0]
    return (plain / n, flip / n, six / n) if shifted else (plain / n, flip / n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=os.path.join(os.environ.get("GPUDL_DATA_DIR", "../shared/data"),
                                                  "cifar-10-batches-bin"))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1.5, help="peak learning rate of the mean loss")
    p.add_argument("--limit", type=int, default=0, help="the first N training images only (0: all)")
    p.add_argument("--target", type=float, default=0.94,
                   help="test accuracy (2-view flip TTA, per epoch) whose training time is reported")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random images instead of the files")
    p.add_argument("--report-first", type=int, default=0, metavar="N",
                   help="also report the final accuracies on the first N test images and on the rest (in "
                        "../shared/data's copy the first 1000 have the official, exact pixels and the rest are "
                        "JPEG-decoded)")
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
    steps_per_epoch = xtr.shape[0] // args.batch  # the last partial batch is dropped
    if args.epochs < 1 or steps_per_epoch < 1:
        raise SystemExit(f"cifar10_airbench.py: need --epochs >= 1 and at least one full batch of {args.batch} "
                         f"images, got --epochs {args.epochs} and {xtr.shape[0]} images")
    total = args.epochs * steps_per_epoch
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)

    net = airbench()
    dirac(net)
    init_whitening(net[0], normalise(xtr[:5000]).cpu())
    net = net.to(device)
    if args.precision == "bf16":
        net = net.to(memory_format=torch.channels_last)
    # Three groups, each with its own factor of the scheduled lr ("scale"): the batch norms' biases
    # (64 x the lr, 1/64 of the decay: the same decay per step), the whitening bias (1 for the first
    # 3 epochs, then 0) and the rest. The whitening filters and batch-norm scales are not trained.
    norm_biases = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    whiten_bias = net[0].bias
    special = {id(q) for q in norm_biases} | {id(whiten_bias)}
    rest = [q for q in net.parameters() if q.requires_grad and id(q) not in special]
    decay = 0.0153 / 11.5
    opt = torch.optim.SGD([{"params": norm_biases, "scale": 64.0, "weight_decay": decay / 64},
                           {"params": [whiten_bias], "scale": 1.0, "weight_decay": decay},
                           {"params": rest, "scale": 1.0, "weight_decay": decay}],
                          lr=args.lr, momentum=0.85, nesterov=True, weight_decay=decay)
    whiten_group = opt.param_groups[1]
    lookahead = Lookahead(net, steps_per_epoch, total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)
    generator = torch.Generator(device=device)
    generator.manual_seed(args.seed)
    seconds, reached, step = 0.0, None, 0
    for epoch in range(1, args.epochs + 1):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(xtr.shape[0], device=device, generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            xb = normalise(augment(xtr[idx], generator))
            if args.precision == "bf16":
                xb = xb.contiguous(memory_format=torch.channels_last)
            whiten_group["scale"] = 1.0 if step < 3 * steps_per_epoch else 0.0
            for group in opt.param_groups:
                group["lr"] = args.lr * group["scale"] * lr_factor(step, total)
            with autocast(device, args.precision):
                loss = loss_fn(net(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            lookahead.after(step)
        sync(device)
        seconds += time.perf_counter() - start
        plain, flip = evaluate(net, xte, yte, args.precision, device)
        if reached is None and flip >= args.target:
            reached = seconds
        print(json.dumps({"epoch": epoch, "train_seconds": seconds, "test_accuracy": plain,
                          "test_accuracy_flip_tta": flip, "framework": "pytorch " + torch.__version__,
                          "device": str(device), "precision": args.precision, "synthetic": args.synthetic > 0}),
              flush=True)
    plain, flip, six = evaluate(net, xte, yte, args.precision, device, shifted=True)
    print(json.dumps({"event": "tta", "test_accuracy": six, "views": 6, "flip_test_accuracy": flip,
                      "plain_test_accuracy": plain}), flush=True)
    n = min(args.report_first, xte.shape[0])
    if n > 0:
        for name, part in (("first", slice(0, n)), ("rest", slice(n, None))):
            if xte[part].shape[0] == 0:
                continue
            p_plain, p_flip, p_six = evaluate(net, xte[part], yte[part], args.precision, device, shifted=True)
            print(json.dumps({"event": "tta_" + name, "images": xte[part].shape[0], "test_accuracy": p_six,
                              "flip_test_accuracy": p_flip, "plain_test_accuracy": p_plain}), flush=True)
    print(json.dumps({"event": "final", "epochs": args.epochs, "steps": total, "train_seconds": seconds,
                      "target": args.target, "seconds_to_target": reached, "test_accuracy_tta6": six,
                      "test_accuracy_flip_tta": flip, "device": str(device), "precision": args.precision}),
          flush=True)


if __name__ == "__main__":
    main()
