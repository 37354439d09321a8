# Two commands do everything on a fresh machine:
#   make reproduce   install, get the data, run the notebooks (papermill, 'quick' profile)
#   make test        install, get the data, run every test
#   make lab         install, get the data, open the notebooks in JupyterLab
#                    (ARGS="--no-browser --port 8899" passes options to jupyter lab)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install data test reproduce reproduce-gpu lab binder-check gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77"
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

data: install
	$(BIN)/python -m hipcore data fetch fashion-mnist

# Lint, then every notebook through nbval at the 'smoke' profile (see conftest.py) and the unit
# tests, a test file per core at once (each test runs one torch thread; TEST_WORKERS=0: one process).
TEST_WORKERS ?= auto
test: data
	$(BIN)/python -m ruff check hipcore tests tools conftest.py
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# ARGS=--resume: keep the notebooks an earlier part finished; "--resume --commit": commit each one
reproduce: data
	$(BIN)/python -m hipcore reproduce --profile quick $(ARGS)

# JupyterLab on the notebooks, in this project's environment (.venv).
lab: data
	$(BIN)/python -m jupyter lab notebooks $(ARGS)

# Each notebook at the 'binder' profile, with its peak memory against Binder's 2 GB.
binder-check: data
	$(BIN)/python -m hipcore.binder

# On a GPU: notebooks 01 and 03's verdict pairs at the full profile, to their plateau, within
# BUDGET seconds; run it again to go on from runs/gpu (tools/gpu_session.sh adds the speed checks).
BUDGET ?= 540
reproduce-gpu: data
	$(BIN)/python -m hipcore reproduce-gpu --profile full --device cuda --out runs/gpu --budget-seconds $(BUDGET)

# Once, on a machine with a GPU: every precision, a one-GPU torchrun, HiP at 224-1024.
gpu-check: install
	$(BIN)/python -m hipcore.bench.gpu_check

clean:
	rm -rf $(VENV) build *.egg-info
