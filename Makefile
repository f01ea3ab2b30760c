# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv from requirements.lock and runs the default pipeline
#   make test   creates .venv from requirements.lock and runs the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline and quiet, also for tools started by make (the package sets these too).
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export NML_DISABLE_USAGE_LOGGING := 1
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo test lint format lock clean-data

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kedro run

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-resolve the pinned set from the ranges in pyproject.toml (needs the package index).
lock:
	rm -rf /tmp/shadowdrift-lock && $(PYTHON) -m venv /tmp/shadowdrift-lock
	/tmp/shadowdrift-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/shadowdrift-lock/bin/python -m pip install --quiet "torch==2.13.0" -e ".[dev]"
	/tmp/shadowdrift-lock/bin/python -m pip freeze --exclude-editable > requirements.lock

clean-data:
	find data -type f ! -name .gitkeep -delete
