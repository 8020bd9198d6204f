# Two commands do all the set-up: `make demo` (the quick-start suite, its tables and pictures) and `make test`.
# Each creates or reuses the virtual environment in $(VENV) and installs the package first,
# with pytest and the pytorch-adapt reference (extra `reference`) that the parity tests compare with.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-runs

# pytorch-adapt's DEV validator trains with ignite; ignite 0.4.9 declares torch<2, which pip
# would satisfy by downgrading torch, so it goes in without its dependencies (and the last line
# checks that torch is still 2.x).
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,reference]"
	$(BIN)/python -m pip install --quiet --no-deps "pytorch-ignite==0.4.9"
	$(BIN)/python -c "import torch, sys; sys.exit(0 if int(torch.__version__.split('.')[0]) >= 2 else 'torch ' + torch.__version__ + ' < 2: the reference install downgraded it')"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m benchmarks.quickstart --output runs --workers 2

test: $(STAMP)
	$(BIN)/python -m pytest

clean-runs:
	rm -rf runs
