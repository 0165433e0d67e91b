# `make demo` and `make test` set everything up on a fresh machine, then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# No CUDA here: take the CPU wheel first, so no dependency pulls a multi-GB CUDA build.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")

.PHONY: install demo test test-heavy lint unit adapter clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: install
	$(VENV)/bin/clinicflow demo

lint: install
	$(VENV)/bin/ruff check clinicflow tests bench
	$(VENV)/bin/ruff format --check clinicflow tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q -ra -m "not heavy" --durations=10

test-heavy: install
	$(PY) -m pytest -q -ra -m heavy

unit: install
	$(PY) -m pytest -q tests/unit

# Rebuild the shipped adapter from scratch (the commands of its model card; about 70 minutes on 2 cores).
ADAPTER_WORK ?= adapter-work
adapter: install
	$(VENV)/bin/clinicflow model make-data --out $(ADAPTER_WORK)/data --seed 1001 --patients 16 --per-patient 40 --max-per-group 22
	$(VENV)/bin/clinicflow model train $(ADAPTER_WORK)/data/train.jsonl --val $(ADAPTER_WORK)/data/val.jsonl \
	  --out $(ADAPTER_WORK)/run --seed 1001 --epochs 1.0 --lr 4e-4 --grad-accum 4 --max-tokens 2048 --stop-after 100

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
