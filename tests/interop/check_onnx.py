"""Checks ONNX files that libgpudl exported.

check_onnx.py DIR NAME...    (tests/onnx_test.cpp) each NAME.onnx in DIR must pass onnx.checker
    (full check, with shape inference), and onnxruntime's output on the input saved in
    NAME.safetensors must match libgpudl's output saved there (relative error <= 1e-4). Also
    writes NAME.initializers: the file's constant names, one a line, for the test to find the
    weights by.
check_onnx.py --file FILE... (a driver's --export-onnx) each FILE must pass onnx.checker and give
    finite outputs in onnxruntime on a random input of its declared shape (2 where any size goes;
    ids below the embedding's vocabulary).
"""

import sys

import numpy as np
import onnx
import onnxruntime
from safetensors.numpy import load_file

TOLERANCE = 1e-4

NUMPY_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
}


def relative_error(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    denominator = np.abs(b).max()
    difference = np.abs(a - b).max()
    return difference / denominator if denominator > 0 else difference


def check(directory, name):
    path = f"{directory}/{name}.onnx"
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    with open(f"{directory}/{name}.initializers", "w") as out:
        out.write("\n" + "".join(init.name + "\n" for init in model.graph.initializer))
    tensors = load_file(f"{directory}/{name}.safetensors")
    graph_input = model.graph.input[0]
    feed = tensors["input"].astype(NUMPY_TYPES[graph_input.type.tensor_type.elem_type])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {graph_input.name: feed})
    expected = tensors["output"]
    if output.shape != expected.shape:
        print(f"{name}: onnxruntime gives shape {output.shape}, libgpudl {expected.shape}")
        return False
    error = relative_error(output, expected)
    print(f"{name}: opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
          f"relative error {error:.2e}")
    return error <= TOLERANCE


def random_feed(model):
    graph_input = model.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 2 for d in graph_input.type.tensor_type.shape.dim]
    dtype = NUMPY_TYPES[graph_input.type.tensor_type.elem_type]
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    gathered = [node.input[0] for node in model.graph.node if node.op_type == "Gather"]
    vocabulary = next(init.dims[0] for init in model.graph.initializer if init.name in gathered)
    return rng.integers(0, vocabulary, shape).astype(dtype)


def check_file(path):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = random_feed(model)
    (output,) = session.run(None, {model.graph.input[0].name: feed})
    print(f"{path}: input {feed.dtype} {list(feed.shape)}, output {list(output.shape)}")
    return bool(np.isfinite(output).all()) and output.shape[0] == feed.shape[0]


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "--file":
        failed = [path for path in sys.argv[2:] if not check_file(path)]
        if failed:
            print("not finite or not one row per input row:", " ".join(failed))
        return 1 if failed else 0
    directory = sys.argv[1]
    failed = [name for name in sys.argv[2:] if not check(directory, name)]
    if failed:
        print("above the tolerance of", TOLERANCE, ":", " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
