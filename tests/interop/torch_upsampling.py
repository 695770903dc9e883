"""PyTorch's nn.ConvTranspose2d and nn.Upsample on libgpudl's inputs and parameters.

torch_upsampling.py DIR    (tests/conv_transpose_test.cpp) reads DIR/cases.safetensors, whose
    metadata names each case: "conv_transpose IN OUT KERNEL STRIDE PADDING OUTPUT_PADDING DILATION
    GROUPS BIAS" with tensors NAME.x, NAME.dy, NAME.weight and (BIAS 1) NAME.bias, or
    "upsample SCALE nearest|bilinear" with NAME.x and NAME.dy. Runs each module forward and
    backward in float64 and writes DIR/torch.safetensors: NAME.y, NAME.dx and, for transposed
    convolutions, NAME.dweight and NAME.dbias (zeros without a bias).
"""

import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def module(spec, tensors, name):
    words = spec.split()
    if words[0] == "upsample":
        scale, mode = int(words[1]), words[2]
        if mode == "nearest":
            return torch.nn.Upsample(scale_factor=scale, mode="nearest")
        return torch.nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
    cin, cout, kernel, stride, padding, output_padding, dilation, groups, bias = map(int, words[1:])
    m = torch.nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding, output_padding=output_padding,
                                 groups=groups, bias=bool(bias), dilation=dilation).double()
    with torch.no_grad():
        m.weight.copy_(tensors.get_tensor(f"{name}.weight"))
        if bias:
            m.bias.copy_(tensors.get_tensor(f"{name}.bias"))
    return m


def main(directory):
    out = {}
    with safe_open(f"{directory}/cases.safetensors", framework="pt") as tensors:
        for name, spec in tensors.metadata().items():
            m = module(spec, tensors, name)
            x = tensors.get_tensor(f"{name}.x").double().requires_grad_()
            y = m(x)
            y.backward(tensors.get_tensor(f"{name}.dy").double())
            out[f"{name}.y"] = y.detach().float().contiguous()
            out[f"{name}.dx"] = x.grad.float().contiguous()
            if isinstance(m, torch.nn.ConvTranspose2d):
                out[f"{name}.dweight"] = m.weight.grad.float().contiguous()
                out[f"{name}.dbias"] = (m.bias.grad if m.bias is not None else torch.zeros(1)).float().contiguous()
            print(f"{name}: {spec}, output {tuple(y.shape)}")
    save_file(out, f"{directory}/torch.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
