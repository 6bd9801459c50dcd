# Every target installs what it needs into .venv first, so a fresh clone needs only `make demo`
# or `make test`. The CPU build of torch is pinned here (the package itself asks for a range).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
PYTEST_WORKERS ?= 2
PYTEST_ARGS    ?=

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/helm demo

# PYTHONDONTWRITEBYTECODE (set on some boxes) stops Python caching bytecode, so each of the
# suite's thousands of helm subprocesses (CLI calls, daemons, agents) would compile helm's
# modules again: compile them once (a stale .pyc is checked against its source and ignored)
test: $(STAMP)
	$(PY) -m compileall -q helm golf_task bench > /dev/null
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) bench/cli_latency.py

clean:
	rm -rf $(VENV) .pytest_cache
