"""Reads a TensorBoard log folder with TensorBoard's own event reader and prints what it found as
one JSON object: {"scalars": {tag: [[step, value], ...]}, "texts": {tag: [text, ...]}}.

  python3 read_tensorboard.py LOGDIR
"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: read_tensorboard.py LOGDIR")
    # Size guidance 0: keep every event, not TensorBoard's sample of each tag.
    acc = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags["scalars"]}
    texts = {}
    for tag in tags["tensors"]:
        texts[tag] = [b"".join(e.tensor_proto.string_val).decode() for e in acc.Tensors(tag)]
    json.dump({"scalars": scalars, "texts": texts}, sys.stdout)


if __name__ == "__main__":
    main()
