#!/usr/bin/env python3
"""PyTorch reference for libgpudl's LSTM cases and char_rnn: nn.LSTM forward + backward at
hidden 256/512/1024 (sequence 128, batch 64), and char_rnn's model (embedding 64, one LSTM
layer of 256, linear read-out; Adam 2e-3, gradient clipping at 5, chunks of 128 characters in
32 streams with the state carried between chunks), timed as gpudl_bench's lstm and
char_rnn_step cases (blocks of 5 steps, one synchronisation per block, the median block).
With --train it trains char_rnn's model on a text file with the same data split (last 10%
held out), schedule (cosine over --epochs) and time limit as the C++ example. FP32 (TF32 off).
One JSON object per line.

  python3 bench/reference/char_rnn.py --device cpu
  python3 bench/reference/char_rnn.py --device cuda --hidden 256 512 1024
  python3 bench/reference/char_rnn.py --train --minutes 15
"""
import argparse
import json
import math
import os
import time

import torch
from torch import nn

from timing import median_block, setup

STEPS_PER_BLOCK = 5


class CharModel(nn.Module):
    def __init__(self, vocab, embed=64, hidden=256, layers=1):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids, state):
        y, state = self.lstm(self.embed(ids), state)
        return self.out(y), state


def lstm_throughput(device, hidden, min_time):
    torch.manual_seed(1)
    lstm = nn.LSTM(hidden, hidden).to(device)
    x = torch.rand(128, 64, hidden, device=device) * 2 - 1
    x.requires_grad_(True)
    dy = torch.rand(128, 64, hidden, device=device) * 2 - 1

    def block():
        for _ in range(STEPS_PER_BLOCK):
            y, _ = lstm(x)
            y.backward(dy)

    median, blocks = median_block(device, block, min_time)
    return {"benchmark": "lstm_fwd_bwd", "framework": "pytorch " + torch.__version__, "device": str(device),
            "hidden": hidden, "threads": torch.get_num_threads(), "blocks": blocks,
            "tokens_per_second": 128 * 64 * STEPS_PER_BLOCK / median}


def step_throughput(device, min_time, batch=32, hidden=256, layers=1, steps=128, vocab=65):
    torch.manual_seed(1)
    model = CharModel(vocab, hidden=hidden, layers=layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    i = torch.arange(steps * batch, device=device)
    x = ((i * 31 + i // 7) % vocab).reshape(steps, batch)
    y = ((i * 17 + 3) % vocab).reshape(steps, batch)
    state = [None]

    def block():
        for _ in range(STEPS_PER_BLOCK):
            opt.zero_grad(set_to_none=False)
            logits, st = model(x, state[0])
            loss_fn(logits.reshape(-1, vocab), y.reshape(-1)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            state[0] = tuple(s.detach() for s in st)

    median, blocks = median_block(device, block, min_time)
    return {"benchmark": "char_rnn_step", "framework": "pytorch " + torch.__version__, "device": str(device),
            "batch": batch, "hidden": hidden, "layers": layers, "threads": torch.get_num_threads(),
            "blocks": blocks, "tokens_per_second": steps * batch * STEPS_PER_BLOCK / median}


def streams(ids, batch, steps):
    """The C++ StreamBatches: `batch` contiguous streams, chunks of `steps` with next-char targets."""
    length = len(ids) // batch
    chunks = (length - 1) // steps
    data = ids[:batch * length].reshape(batch, length).t()  # (length, batch)
    for k in range(chunks):
        yield data[k * steps:(k + 1) * steps], data[k * steps + 1:(k + 1) * steps + 1]


def evaluate(model, ids, batch, steps, vocab, device):
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in streams(ids, batch, steps):
            logits, state = model(x.to(device), state)
            total += nn.functional.cross_entropy(logits.reshape(-1, vocab), y.to(device).reshape(-1)).item()
            count += 1
    model.train()
    return total / count


def train(device, path, epochs, minutes, batch=32, steps=128, lr=2e-3):
    torch.manual_seed(1)
    text = open(path, "rb").read()
    vocab_bytes = sorted(set(text))
    lookup = {b: i for i, b in enumerate(vocab_bytes)}
    ids = torch.tensor([lookup[b] for b in text], dtype=torch.long)
    split = int(len(ids) * 0.9)
    train_ids, held = ids[:split], ids[split:]
    vocab = len(vocab_bytes)
    eval_batch = max(1, min(batch, len(held) // (4 * steps)))
    model = CharModel(vocab).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    chunks = (len(train_ids) // batch - 1) // steps
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * chunks)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    held_loss = float("nan")
    stop = False
    for epoch in range(1, epochs + 1):
        state = None
        for x, y in streams(train_ids, batch, steps):
            opt.zero_grad()
            logits, state = model(x.to(device), state)
            loss_fn(logits.reshape(-1, vocab), y.to(device).reshape(-1)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            state = tuple(s.detach() for s in state)
            if minutes > 0 and time.perf_counter() - start >= minutes * 60:
                stop = True
                break
        held_loss = evaluate(model, held, eval_batch, steps, vocab, device)
        print(json.dumps({"event": "epoch", "epoch": epoch, "held_out_nats_per_char": held_loss,
                          "seconds": time.perf_counter() - start}), flush=True)
        if stop:
            break
    print(json.dumps({"event": "final", "framework": "pytorch " + torch.__version__, "device": str(device),
                      "held_out_nats_per_char": held_loss, "bits_per_char": held_loss / math.log(2),
                      "seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="LSTM sizes to time (default: 256 512 1024)")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timed blocks per case")
    p.add_argument("--step", default=None,
                   help="time only char_rnn's step for STREAMSxUNITSxLAYERS (e.g. 32x256x1); no LSTM cases")
    p.add_argument("--train", action="store_true", help="train char_rnn's model instead of timing steps")
    p.add_argument("--data", default=os.path.join(os.environ.get("GPUDL_DATA_DIR", "../shared/data"), "text",
                                                  "tinyshakespeare.txt"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--minutes", type=float, default=15.0, help="training time limit (0: none)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    args = p.parse_args()
    device = setup(args.device, args.threads)
    if args.train:
        train(device, args.data, args.epochs, args.minutes)
        return
    if args.step:
        batch, hidden, layers = (int(v) for v in args.step.split("x"))
        print(json.dumps(step_throughput(device, args.min_time, batch, hidden, layers)), flush=True)
        return
    for h in args.hidden or [256, 512, 1024]:
        print(json.dumps(lstm_throughput(device, h, args.min_time)), flush=True)
    print(json.dumps(step_throughput(device, args.min_time)), flush=True)


if __name__ == "__main__":
    main()
