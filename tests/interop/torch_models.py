"""PyTorch twins of libgpudl models, for tests/interop_test.cpp: writes their trained weights and
outputs for libgpudl to load (make DIR), and loads weights libgpudl exported and checks its outputs
(check DIR). Needs PyTorch and the safetensors package (scripts/pyenv.sh BUILD_DIR sets them up).

Every module name matches libgpudl's state names (Sequential indices, the LSTM's weight_ih_l0,
batch norm's running_mean, running_var and num_batches_tracked), so the state dicts load strictly
in both directions.
"""

import sys

import torch
from torch import nn
from safetensors.torch import load_file, save_file

TOLERANCE = 1e-5

# The character LSTM's sizes and its input: ids of shape (steps, batch), time-major as
# libgpudl's recurrent layers take them.
VOCAB, EMBED, HIDDEN, STEPS, BATCH = 20, 8, 16, 5, 3


class CharLSTM(nn.Module):
    """Embedding, LSTM, Linear as libgpudl's Sequential holds them: children "0", "1", "2"
    (nn.Sequential cannot hold the LSTM, which returns a tuple)."""

    def __init__(self):
        super().__init__()
        self.add_module("0", nn.Embedding(VOCAB, EMBED))
        self.add_module("1", nn.LSTM(EMBED, HIDDEN, num_layers=1))
        self.add_module("2", nn.Linear(HIDDEN, VOCAB))

    def forward(self, ids):
        x = getattr(self, "0")(ids)
        x, _ = getattr(self, "1")(x)
        return getattr(self, "2")(x)


def mlp():
    # python_free_examples/mlp_mnist.cpp with hidden 32 and dropout 0.1.
    h, p = 32, 0.1
    return nn.Sequential(nn.Flatten(), nn.Linear(784, h), nn.ReLU(), nn.Dropout(p), nn.Linear(h, h), nn.ReLU(),
                         nn.Dropout(p), nn.Linear(h, 10))


def lenet():
    # python_free_examples/lenet_mnist.cpp.
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def bn_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def image_batch(shape, classes):
    return lambda n: (torch.randn(n, *shape), torch.randint(0, classes, (n,)))


def id_batch(n):
    return torch.randint(0, VOCAB, (STEPS, n)), torch.randint(0, VOCAB, (STEPS, n))


# name: (constructor, batch maker (inputs, class targets), number of classes). The names are
# those of the files and of the C++ test's models.
MODELS = {
    "mlp": (mlp, image_batch((1, 28, 28), 10), 10),
    "lenet": (lenet, image_batch((1, 28, 28), 10), 10),
    "char_lstm": (CharLSTM, id_batch, VOCAB),
    "bn_cnn": (bn_cnn, image_batch((3, 6, 6), 5), 5),
}


def relative_error(a, b):
    denominator = b.abs().max().item()
    difference = (a.double() - b.double()).abs().max().item()
    return difference / denominator if denominator > 0 else difference


def make(directory):
    for index, (name, (build, batch, classes)) in enumerate(MODELS.items()):
        torch.manual_seed(1000 + index)
        model = build()
        # A few train-mode steps, so the weights are not those of any initialisation and batch
        # norm's running statistics and count move away from their starting values.
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            x, y = batch(4)
            loss = nn.functional.cross_entropy(model(x).reshape(-1, classes), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        x, _ = batch(3)
        with torch.no_grad():
            out = model(x)
        save_file(model.state_dict(), f"{directory}/{name}.torch.safetensors")
        # Ids stay int64, PyTorch's type for them; everything else is float32.
        save_file({"input": x.contiguous(), "output": out.contiguous()}, f"{directory}/{name}.io.safetensors")
        print(f"{name}: wrote {len(model.state_dict())} tensors, output {tuple(out.shape)}")


def check(directory):
    worst = 0.0
    for name, (build, _, _) in MODELS.items():
        model = build()
        model.load_state_dict(load_file(f"{directory}/{name}.gpudl.safetensors"), strict=True)
        model.eval()
        io = load_file(f"{directory}/{name}.gpudl_io.safetensors")
        x = io["input"]
        if name == "char_lstm":
            x = x.long()  # libgpudl's Embedding takes i32 ids
        with torch.no_grad():
            out = model(x)
        if out.shape != io["output"].shape:
            print(f"{name}: output shape {tuple(out.shape)}, libgpudl's {tuple(io['output'].shape)}")
            worst = float("inf")
            continue
        error = relative_error(out, io["output"])
        print(f"{name}: relative error {error:.3g}")
        worst = max(worst, error)
    return 0 if worst <= TOLERANCE else 1


def main(argv):
    if len(argv) != 3 or argv[1] not in ("make", "check"):
        print(f"usage: {argv[0]} make|check DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    if argv[1] == "make":
        make(argv[2])
        return 0
    return check(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
