# Everything runs in a local virtual environment made from pyproject.toml.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench bench-gpu gpu-check lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The main job on the embedded default data (synthetic textures, offline EfficientNet-Lite0
# weights): K-NG offline and online on the same stream, then the comparison table.
demo: install
	$(BIN)/python -m foads.run --multirun experiment=demo mode=offline,online overwrite=true \
		hydra.sweep.dir=outputs/demo
	$(BIN)/python -m foads.report outputs/demo

# On every core (pytest-xdist), each worker with its share of the threads.
test: install
	$(BIN)/pytest -q -n auto

# Speed and memory at the paper's sizes (prints figures; not a test).
bench: install
	$(BIN)/python -m foads.bench

# On a machine with CUDA: every method offline and online at the paper's sizes, in batches
# of 10 and of 100: fit time, images/s and peak GPU memory, and the total against a 5-minute
# budget (prints figures; stops with status 2 where there is no CUDA).
bench-gpu: install
	$(BIN)/python -m foads.bench_gpu

# On a machine with CUDA: every method offline and online on the smoke stream, on the GPU,
# with the wall time; then the report (the prepared check for a lent GPU session).
gpu-check: install
	time $(BIN)/python -m foads.run sweep=comparison_smoke trainer=gpu \
		'method=glob(*,exclude=kng_paper)' overwrite=true hydra.sweep.dir=outputs/gpu_check
	$(BIN)/python -m foads.report outputs/gpu_check --no-figures

# Ruff's lint rules and formatting, then mypy (pyproject.toml's [tool.mypy]), on one set
# of paths. mypy checks foads as installed: baselines/ is foads.baselines (setup.py's
# package_dir), which mypy cannot map, so build/mypy/foads links src/foads/* and baselines/
# into that layout; the errors are shown at the repository's own paths.
LINT_PATHS := src tests baselines docs/examples

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	rm -rf build/mypy && mkdir -p build/mypy/foads
	ln -s $(CURDIR)/src/foads/* $(CURDIR)/baselines build/mypy/foads/
	set -o pipefail; $(BIN)/mypy | sed -e 's|^build/mypy/foads/baselines/|baselines/|' \
		-e 's|^build/mypy/foads/|src/foads/|'

clean:
	rm -rf outputs/demo outputs/runs outputs/multiruns
