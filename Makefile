# Two commands do all the set-up: `make demo` (the quick-start suite) and `make test`.
# Each creates or reuses the virtual environment in $(VENV) and installs the package first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-runs

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mtlda run configs/suites/quickstart.yaml --output runs

test: $(STAMP)
	$(BIN)/python -m pytest

clean-runs:
	rm -rf runs
