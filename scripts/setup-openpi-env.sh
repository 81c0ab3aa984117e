#!/usr/bin/env bash
# Creates .venv-openpi: openpi's JAX Pi0 / Pi0.5 (`--backend openpi`) in its own environment, because openpi pins
# numpy<2 and jax 0.5 while lerobot (.venv) needs numpy>=2. openpi is not on PyPI: `rpent-openpi` repackages upstream's
# `openpi` package unchanged; it is installed --no-deps and its runtime dependencies are listed here instead (its own
# pins drag in old torch/jax), upstream's openpi-client among them (openpi.transforms imports its image_tools).
# torch is needed too: openpi.models.model imports torch and openpi's PyTorch model at import time, even for the JAX
# path. Same torch version as .venv so that uv's cache is shared.
# bench itself is installed there too (editable, numpy<2, pyarrow<22: later pyarrow needs numpy 2), so that
# `.venv-openpi/bin/bench run --backend openpi ...` works.
# Idempotent: does nothing when the venv was already made by this exact script for this pyproject.toml.
# Usage: scripts/setup-openpi-env.sh [VENV_DIR]   (default .venv-openpi; PYTHON312=/path/to/python3.12 to choose)
# Test:  make test-openpi
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-openpi}"
STAMP="$VENV/.installed"
WANT="$(cat "$0" pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('openpi') and u.find_spec('jax')" 2>/dev/null; then
  exit 0
fi

PY=""
# an interpreter that runs (a pyenv shim may exist and fail); 3.12 like the project, else 3.11 (the pins work on both)
for cand in "${PYTHON312:-}" python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12 python3.11; do
  [ -n "$cand" ] || continue
  if PY="$("$cand" -c "import sys; assert sys.version_info[:2] in ((3, 12), (3, 11)); print(sys.executable)" 2>/dev/null)"; then
    break
  fi
  PY=""
done
[ -n "$PY" ] || { echo "setup-openpi-env: need Python 3.12 or 3.11 (set PYTHON312=/path/to/python)" >&2; exit 2; }
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv

uv venv -q --allow-existing --python "$PY" "$VENV"
uv pip install -q --python "$VENV/bin/python" --no-deps rpent-openpi==0.2.2
uv pip install -q --python "$VENV/bin/python" \
  jax==0.5.3 jaxlib==0.5.3 flax==0.10.2 orbax-checkpoint==0.11.13 jaxtyping==0.2.36 beartype==0.19.0 chex==0.1.90 \
  "numpy<2" "transformers>=4.57.1,<4.58" torch==2.11.0 \
  augmax==0.4.1 einops==0.8.2 numpydantic==1.8.1 pydantic==2.14.3 sentencepiece==0.2.3 safetensors==0.8.0 \
  ml-collections==1.1.0 tyro==1.0.17 etils==1.15.0 filelock fsspec tqdm-loggable==0.4.1 dm-tree==0.1.10 pytest \
  openpi-client==0.1.2
# openpi's training data loader reads LeRobot v2.1 through `lerobot.datasets` (lerobot 0.3.3, the last v2.1 release
# on PyPI; openpi imports either layout): --no-deps (its pins drag in torch<2.8), its dataset dependencies listed here.
# Its video decoding needs torchvision.io.VideoReader (gone from torchvision 0.26) or torchcodec: PNG datasets only.
uv pip install -q --python "$VENV/bin/python" --no-deps lerobot==0.3.3
uv pip install -q --python "$VENV/bin/python" "datasets==3.6.0" "av>=14.2,<16" "jsonlines>=4" torchvision==0.26.0 "numpy<2" "pyarrow<22"
uv pip install -q --python "$VENV/bin/python" -e ".[test]" "numpy<2" "pyarrow<22"
"$VENV/bin/python" -c "import openpi.models.pi0, openpi.models.pi0_config, openpi.transforms, jax, numpy, bench.cli, lerobot.datasets.lerobot_dataset; assert numpy.__version__ < '2'"
echo "$WANT" > "$STAMP"
