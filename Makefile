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

.PHONY: install system-deps demo test lint format lock clean-data drift-report viz mlflow-ui strip-notebooks serve bento replay loop rollback

$(STAMP): requirements.lock pyproject.toml setup.py src/shadowdrift/serving/_forest.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kedro run

# Debian packages the tests use: PostgreSQL (MLflow on a real database), Chromium (kedro-viz
# rendered headless), Prometheus with promtool and the Pushgateway (monitoring/: rules tested,
# dashboards queried). Installed only when missing; needs root (CI runs as root).
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-pushgateway >/dev/null 2>&1 || missing="$$missing prometheus-pushgateway"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages:$$missing (sudo apt-get install -y$$missing); their tests will be skipped" >&2; \
		fi; \
	fi

test: install system-deps
	$(BIN)/pytest

# The drift report notebook, executed headless by papermill, with an HTML export
# (data/08_reporting/notebook_reports/03_drift_report_<UTC>.ipynb and .html).
drift-report: install
	$(BIN)/python -m shadowdrift.notebook_report --env base --chunk-period W

# kedro-viz on loopback. It asks PyPI for its latest version at start-up; the refusing proxy
# makes that fail at once instead of after a 30 s timeout on an offline machine.
viz: install
	HTTPS_PROXY=http://127.0.0.1:9 $(BIN)/kedro viz run --host 127.0.0.1 --no-browser

# The service on loopback (after `make demo`, which runs packaging); docs/serving.md.
serve: install
	$(BIN)/bentoml serve --host 127.0.0.1 --port 3000

# A Bento without a container image: BentoML's image build step needs `uv`, which the project
# does not install (docs/serving.md).
bento: install
	BENTOML_ENABLE_FEATURES=no_image $(BIN)/bentoml build

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/06_models/mlflow.db --host 127.0.0.1 --port 5000

# Notebooks are committed without outputs (tests/test_notebooks_clean.py checks).
strip-notebooks: install
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

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

# Close the loop (docs/closing_the_loop.md), against `make serve` on 127.0.0.1:3000. The service
# and these targets need SHADOWDRIFT_RELOAD_TOKEN set to the same value.
replay: install
	$(BIN)/kedro replay --url http://127.0.0.1:3000 --batch-size 100 --rate 5000 --max-seconds 300

loop: install
	$(BIN)/kedro loop --url http://127.0.0.1:3000

rollback: install
	$(BIN)/kedro rollback --url http://127.0.0.1:3000
