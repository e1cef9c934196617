# CloudBranch — `make run` starts the server with demo data; `make test` runs lint, types and
# every test (browser tests included). Both install what they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
export CLOUDBRANCH_SHARED_DATA ?= $(abspath $(SHARED))/data
export CLOUDBRANCH_SHARED_MODELS ?= $(abspath $(SHARED))/models

.PHONY: run test setup deps apt-deps npm-deps lint types pytest bench clean

run: deps
	$(VENV)/bin/cloudbranch seed-demo
	$(VENV)/bin/cloudbranch serve

test: deps apt-deps lint types pytest

setup: deps apt-deps

deps: $(VENV)/.installed npm-deps

$(VENV)/.installed: requirements.txt requirements-mediapipe.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel "setuptools<81"
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-mediapipe.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

npm-deps: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests need (Chromium; nginx runs the shipped proxy config); installed only
# when missing.
apt-deps:
	@command -v chromium >/dev/null 2>&1 || ./scripts/apt-install.sh chromium fonts-noto-cjk
	@test -x /usr/sbin/nginx || ./scripts/apt-install.sh nginx

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types:
	$(VENV)/bin/mypy

# Tests run in a loopback-only network namespace when we can make one (root), so that no test,
# ICE included, can send a packet anywhere but 127.0.0.1.
pytest:
	./scripts/loopback-only.sh $(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: deps
	./scripts/loopback-only.sh $(PY) bench/media_sessions.py

clean:
	rm -rf $(VENV) node_modules var .mypy_cache .ruff_cache
