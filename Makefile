# Two commands for a fresh machine:  `make demo` (the embedded study, end to end) and `make test`.
# Both create the virtual environment in .venv first if it is missing.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all clean-outputs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# The embedded study: tiny LED and BigBird-Pegasus x three input lengths, fine-tuned, evaluated and reported.
demo: setup
	$(BIN)/python train.py -m experiment=demo
	$(BIN)/python infer.py run_dir=outputs/sweeps/demo
	$(BIN)/python report.py outputs/sweeps/demo

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m "slow or not slow"
