#!/usr/bin/env bash
# Makes BUILD/pyenv: a virtual environment over Debian's Python (which has PyTorch) holding the
# packages of scripts/python-requirements.txt that the interop tests need; a no-op when current.
set -euo pipefail
build=${1:?usage: scripts/pyenv.sh BUILD_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements="$root/scripts/python-requirements.txt"
env="$build/pyenv"
stamp="$env/requirements.installed"
if [[ -x "$env/bin/python3" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then exit 0; fi
# Debian's interpreter, not whichever python3 comes first on PATH: PyTorch is a Debian package.
python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "pyenv: $python cannot import torch; install Debian's python3-torch (scripts/quickstart.sh does)" >&2
  exit 1
fi
"$python" -m venv --system-site-packages "$env"
if ! "$env/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$requirements"; then
  echo "pyenv: pip could not install $requirements into $env (is PyPI reachable?)" >&2
  exit 1
fi
"$env/bin/python3" -c 'import torch, numpy, safetensors.torch, tensorboard, matplotlib, onnx, onnxruntime; torch.from_numpy(numpy.zeros(1))'
cp "$requirements" "$stamp"
echo "pyenv: $env ready"
