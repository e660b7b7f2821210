# Two commands for a fresh machine:  `make demo` (the embedded study, end to end) and `make test`.
# Both create the virtual environment in .venv first if it is missing.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint lock clean-outputs

# The tested versions come from requirements.lock (scripts/lock_env.py writes it); torch first, from $(TORCH)
# (here a local CPU wheel; elsewhere see the README for a CPU-only wheel), then the project itself without resolving.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)

# The embedded study: tiny LED and BigBird-Pegasus x three input lengths, fine-tuned, evaluated and reported.
demo: setup
	$(BIN)/python train.py -m experiment=demo
	$(BIN)/python infer.py run_dir=outputs/sweeps/demo
	$(BIN)/python report.py outputs/sweeps/demo

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest

test-all: setup lint
	$(BIN)/python -m pytest -m "slow or not slow"

# After changing dependencies: install them, run the tests, then freeze what was tested.
lock:
	$(BIN)/python scripts/lock_env.py
