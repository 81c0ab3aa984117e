# `make run` and `make test` work on a fresh Debian machine with no GPU: they install the system
# libraries (needs root), create .venv with Python 3.12 and install the package, then do their job.
PYTHON312 ?= $(shell python3.12 -c "import sys; print(sys.executable)" 2>/dev/null || echo /root/.pyenv/versions/3.12.1/bin/python3.12)
VENV := .venv
BENCH := $(VENV)/bin/bench
EPISODES ?= 4
NUM_ENVS ?= 2

.PHONY: setup run test test-main test-openpi bench-quick clean

$(VENV)/.installed: pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	@test -x "$(PYTHON312)" || { echo "Python 3.12 not found: set PYTHON312=/path/to/python3.12"; exit 2; }
	command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	uv venv -q --allow-existing --python "$(PYTHON312)" $(VENV)
	uv pip install -q --python $(VENV)/bin/python -e ".[test,lerobot,ray]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BENCH) run --policy expert --tasks all --episodes $(EPISODES) --num-envs $(NUM_ENVS)

# everything CI runs: the main suite, then the openpi backend's tests in their own venv
test: test-main test-openpi

test-main: setup
	$(VENV)/bin/python -m pytest -q

# openpi (JAX) pins numpy<2, lerobot needs numpy>=2: its backend is tested in a venv of its own (bench installed
# there too). Runs after setup so that uv's cache already holds torch.
test-openpi: setup
	bash scripts/setup-openpi-env.sh .venv-openpi
	.venv-openpi/bin/python -m pytest -q tests/openpi

bench-quick: setup
	$(VENV)/bin/python benchmarks/env_throughput.py --quick

clean:
	rm -rf $(VENV) .venv-openpi
