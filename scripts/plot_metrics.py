"""plot_metrics.py: draws the training curves of libgpudl runs (their --metrics JSON-lines files), or optimizers_demo's CSV, as a PNG."""

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

PROG = "plot_metrics"

DESCRIPTION = """\
Draws the loss and accuracy curves of one or more training runs into one PNG: against the
optimizer step (left) and against seconds of training (right), every run in its own colour,
train as solid lines with dots and test as dashed lines with squares.

Each RUN is a JSON-lines file written by a driver's --metrics FILE (mlp_mnist, lenet_mnist,
cnn_cifar10, char_rnn: the drivers on the Trainer). A run is named by its file's stem
(runs/airbench.jsonl: airbench) or as NAME=FILE. The curves come from the Trainer's epoch
records, one per epoch: train_loss and train_accuracy (means over the epoch), test_loss and
test_accuracy (the test set at the epoch's end), at the epoch's last step; the time axis adds
up the epochs' training seconds (test evaluation and checkpoints not counted). A cnn_cifar10
run's test-time-augmentation accuracy (its "tta" record) is a star after the last epoch.
A file still being written is read as far as it goes.

With --optimizers CSV instead, draws optimizers_demo's comparison (the course's figure):
one line per optimizer of the CSV's value per iteration, log J for its _normalised.csv and
_badly_scaled.csv (--ylabel names another, e.g. f for _saddle.csv). --optimizers may be
repeated: one panel per CSV, side by side.

Exit status: 0 when the PNG is written, 1 when an input cannot be used or the PNG cannot be
written (one line on stderr naming the file and line), 2 for a usage error. The PNG is
written beside --out under a temporary name and renamed, so a failed run leaves no partial
image and an existing one stays as it was."""

EPILOG = """\
examples:
  build/cuda/pyenv/bin/python3 scripts/plot_metrics.py runs/airbench.jsonl --out airbench.png
  build/cuda/pyenv/bin/python3 scripts/plot_metrics.py lr0.1=a.jsonl lr0.5=b.jsonl --out lr.png
  build/cuda/python_free_examples/optimizers_demo --out /tmp/opt
  build/cuda/pyenv/bin/python3 scripts/plot_metrics.py --optimizers /tmp/opt_normalised.csv --out opt.png

Python: the build's virtual environment (scripts/pyenv.sh BUILD makes BUILD/pyenv with matplotlib)."""


class UsageError(Exception):
    """Exit status 2."""


class InputError(Exception):
    """Exit status 1: a file that cannot be read, used or written."""


class Parser(argparse.ArgumentParser):
    # argparse prints the whole usage and exits; the project's tools print one line instead.
    def error(self, message):
        raise UsageError(message + " (see --help)")


def parse_args(argv):
    p = Parser(prog="plot_metrics.py", description=DESCRIPTION, epilog=EPILOG,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="metrics file of a run, FILE or NAME=FILE (one or more, unless --optimizers)")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="the PNG to write (replaced if it exists; its folder must exist)")
    p.add_argument("--optimizers", action="append", metavar="CSV", default=[],
                   help="optimizers_demo CSV (iteration,<optimizer>,...) to draw instead of runs; repeatable")
    p.add_argument("--ylabel", default="log J", metavar="TEXT",
                   help="with --optimizers: what the CSV's values are (default: log J)")
    args = p.parse_args(argv)
    if args.runs and args.optimizers:
        raise UsageError("give metrics files or --optimizers, not both (see --help)")
    if not args.runs and not args.optimizers:
        raise UsageError("no input: give one or more metrics files, or --optimizers CSV (see --help)")
    if not args.out.lower().endswith(".png"):
        raise UsageError(f"--out: expected a .png file name, got '{args.out}'")
    return args


def name_runs(specs):
    """(name, path) for each RUN argument, names unique."""
    runs = []
    for spec in specs:
        # A file whose own name holds '=' is taken as it is.
        if "=" in spec and not os.path.exists(spec):
            name, path = spec.split("=", 1)
            if not name or not path:
                raise UsageError(f"'{spec}': expected FILE or NAME=FILE")
        else:
            name, path = Path(spec).stem, spec
        runs.append((name, path))
    seen = {}
    for name, path in runs:
        if name in seen:
            raise UsageError(f"two runs named '{name}' ({seen[name]} and {path}): name them as NAME=FILE")
        seen[name] = path
    return runs


def check_out(out):
    # Found out now rather than after reading and drawing everything.
    folder = os.path.dirname(out) or "."
    if not os.path.exists(folder):
        raise InputError(f"--out: folder '{folder}' of '{out}' does not exist")
    if not os.path.isdir(folder):
        raise InputError(f"--out: '{folder}' of '{out}' is not a folder")
    if os.path.isdir(out):
        raise InputError(f"--out: '{out}' is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out: cannot write in folder '{folder}': permission denied")


def read_lines(path):
    """The file's lines as (number, text); its last line too when it lacks its newline."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text") from None
    return list(enumerate(text.split("\n"), start=1)), text.endswith("\n")


def number(record, key, path, n, kind):
    v = record.get(key)
    # bool is an int to Python, but true is no loss.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        got = "nothing" if v is None else json.dumps(v)
        raise InputError(f"{path}:{n}: {kind} record: \"{key}\" should be a number, got {got}")
    return float(v)


def read_run(name, path):
    lines, complete = read_lines(path)
    epochs = {}
    tta = None
    for n, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            # A run still in progress may be caught halfway through writing its last record.
            if n == len(lines) and not complete and line.lstrip().startswith("{"):
                print(f"{PROG}: note: {path}:{n}: skipped the unfinished last line (is the run still writing?)",
                      file=sys.stderr)
                continue
            raise InputError(f"{path}:{n}: not a JSON record: {e.msg} at column {e.colno}") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{n}: not a JSON object")
        event = record.get("event")
        if not isinstance(event, str):
            raise InputError(f"{path}:{n}: record without an \"event\": not a metrics file")
        if event == "epoch":
            step = number(record, "step", path, n, "epoch")
            e = {"step": step, "seconds": number(record, "seconds", path, n, "epoch"),
                 "train_loss": number(record, "train_loss", path, n, "epoch")}
            for key in ("train_accuracy", "test_loss", "test_accuracy"):
                if key in record:
                    e[key] = number(record, key, path, n, "epoch")
            # A run resumed from an older checkpoint appends the epochs it does again: the
            # later record is the one the model went on from.
            epochs[step] = e
        elif event == "tta" and "test_accuracy" in record:
            tta = number(record, "test_accuracy", path, n, "tta")
    if not epochs:
        raise InputError(f"{path}: no epoch records (the Trainer writes one per epoch; drivers with "
                         f"their own loop write none, and a run stopped in its first epoch has none yet)")
    run = {"name": name, "path": path, "tta": tta}
    ordered = [epochs[s] for s in sorted(epochs)]
    run["step"] = [e["step"] for e in ordered]
    run["time"] = []
    total = 0.0
    for e in ordered:
        total += e["seconds"]
        run["time"].append(total)
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        run[key] = [e.get(key, math.nan) for e in ordered]
    return run


def read_csv(path):
    """(iterations, [(optimizer, values)]) of an optimizers_demo CSV."""
    lines, _ = read_lines(path)
    rows = [(n, line) for n, line in lines if line.strip()]
    if not rows:
        raise InputError(f"{path}: empty file")
    n, header_line = rows[0]
    header = next(csv.reader([header_line]))
    if len(header) < 2 or header[0].strip() != "iteration" or not all(h.strip() for h in header[1:]):
        raise InputError(f"{path}:{n}: expected the header 'iteration,<optimizer>,...', got '{header_line[:60]}'")
    if len(rows) == 1:
        raise InputError(f"{path}: no rows after the header")
    names = [h.strip() for h in header[1:]]
    iterations, columns = [], [[] for _ in names]
    for n, line in rows[1:]:
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise InputError(f"{path}:{n}: {len(fields)} fields where the header has {len(header)}")
        try:
            # The driver writes nan (or -nan) where a method diverged and stopped.
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise InputError(f"{path}:{n}: '{bad}' is not a number") from None
        iterations.append(values[0])
        for column, v in zip(columns, values[1:]):
            column.append(v)
    return iterations, list(zip(names, columns))


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"matplotlib is not installed for {sys.executable}; run scripts/pyenv.sh BUILD "
                         "and use BUILD/pyenv/bin/python3") from None
    # Headless: never look for a display.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def draw_runs(runs):
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    has_accuracy = any(not all(math.isnan(v) for v in r[k]) for r in runs for k in ("train_accuracy", "test_accuracy"))
    quantities = [("loss", 1.0, "loss")] + ([("accuracy", 100.0, "accuracy (%)")] if has_accuracy else [])
    # A loss that falls over decades needs a log axis to keep the late epochs readable; within
    # one decade a linear axis reads more easily.
    losses = [v for r in runs for k in ("train_loss", "test_loss") for v in r[k] if not math.isnan(v)]
    log_loss = min(losses) > 0 and max(losses) >= 10 * min(losses)
    entries = [{} for _ in runs]  # per run: legend label -> line
    fig, axes = plt.subplots(len(quantities), 2, figsize=(12, 4.2 * len(quantities)), squeeze=False,
                             layout="constrained")
    for row, (quantity, scale, ylabel) in enumerate(quantities):
        for col, (x_key, xlabel) in enumerate([("step", "step"),
                                               ("time", "seconds of training (test evaluation not counted)")]):
            ax = axes[row][col]
            for i, run in enumerate(runs):
                colour = f"C{i % 10}"
                for part, style, marker in (("train", "-", "o"), ("test", "--", "s")):
                    ys = [v * scale for v in run[f"{part}_{quantity}"]]
                    if all(math.isnan(v) for v in ys):
                        continue
                    (line,) = ax.plot(run[x_key], ys, linestyle=style, marker=marker, markersize=4, color=colour)
                    entries[i].setdefault(f"{run['name']} {part}", line)
                if quantity == "accuracy" and run["tta"] is not None:
                    (star,) = ax.plot([run[x_key][-1]], [run["tta"] * scale], marker="*", markersize=11,
                                      linestyle="none", color=colour)
                    entries[i].setdefault(f"{run['name']} test, TTA", star)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{quantity} per {'step' if x_key == 'step' else 'second'}")
            ax.grid(True, alpha=0.3)
            ax.set_xlim(left=0)
            if x_key == "step":
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if quantity == "loss" and log_loss:
                ax.set_yscale("log")
    # One legend column per run (train, test, TTA under each other); matplotlib fills the
    # columns first, so runs with fewer entries are padded with blanks.
    rows = max(len(e) for e in entries)
    handles, labels = [], []
    for e in entries:
        for label, handle in list(e.items()) + [("", Line2D([], [], linestyle="none"))] * (rows - len(e)):
            handles.append(handle)
            labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncols=len(runs), frameon=False)
    fig.suptitle("training curves: " + ", ".join(r["name"] for r in runs))
    return fig


def draw_optimizers(tables, ylabel):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tables), figsize=(7 * len(tables), 5), squeeze=False, layout="constrained")
    for ax, (path, (iterations, columns)) in zip(axes[0], tables):
        for i, (name, values) in enumerate(columns):
            ax.plot(iterations, values, color=f"C{i % 10}", linewidth=1.5, label=name)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.set_title(Path(path).stem)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def save(fig, out):
    folder = os.path.dirname(out) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise InputError(f"--out: cannot write in folder '{folder}': {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; the image should get the mode any new file would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except OSError as e:
        raise InputError(f"{out}: cannot write: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv):
    try:
        args = parse_args(argv)
        check_out(args.out)
        if args.optimizers:
            tables = [(path, read_csv(path)) for path in args.optimizers]
            fig = draw_optimizers(tables, args.ylabel)
            what = f"{len(tables)} optimizers_demo table{'s' if len(tables) > 1 else ''}"
        else:
            runs = [read_run(name, path) for name, path in name_runs(args.runs)]
            fig = draw_runs(runs)
            what = f"{len(runs)} run{'s' if len(runs) > 1 else ''}: " + ", ".join(r["name"] for r in runs)
        save(fig, args.out)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(f"{PROG}: wrote {args.out} ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
