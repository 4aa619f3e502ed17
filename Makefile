# Everything runs in a local virtual environment made from pyproject.toml.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench gpu-check lint clean

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

test: install
	$(BIN)/pytest -q

# Speed and memory at the paper's sizes (prints figures; not a test).
bench: install
	$(BIN)/python -m foads.bench

# On a machine with CUDA: every method offline and online on the smoke stream, on the GPU,
# with the wall time; then the report (the prepared check for a lent GPU session).
gpu-check: install
	time $(BIN)/python -m foads.run sweep=comparison_smoke trainer=gpu \
		'method=glob(*,exclude=kng_paper)' overwrite=true hydra.sweep.dir=outputs/gpu_check
	$(BIN)/python -m foads.report outputs/gpu_check --no-figures

lint: install
	$(BIN)/ruff check src tests baselines
	$(BIN)/ruff format --check src tests baselines

clean:
	rm -rf outputs/demo outputs/runs outputs/multiruns
