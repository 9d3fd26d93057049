# Quickstart: `make demo` runs the main job, `make test` the tests. Both create or reuse .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install gpu-check

install: $(STAMP)

# torch/torchvision pinned to the builds this project is tested with (taken from the local wheel cache when present).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dali-has demo --out demo_out

# ruff first: a lint error fails fast, before the ~5-minute suite.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# On a machine with an NVIDIA GPU: every GPU test, bench and a short training, one JSON summary in $(OUT).
# Uses .venv when `make install` made one, else the python3 on PATH (e.g. a machine without a package registry
# that has the dependencies already, with this checkout on PYTHONPATH).
OUT ?= gpu_check_out
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) -m train.cli gpu-check --out $(OUT)
