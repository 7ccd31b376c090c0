# crontick: `make run` serves locally, `make test` runs the whole suite. Both set up .venv first.
# The interpreter for .venv: the distribution's python3.11 when installed, else python3 (PYTHON=... overrides).
# Debian builds its python3.11 with profile-guided optimisation and links it statically, as the image's
# python:3.11-slim is built with --enable-optimizations --with-lto; a pyenv default build has neither
# (--enable-shared, no PGO) and started the service 1.1-1.3x slower here (docs/benchmarks.md, figure 4).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV := .venv
PY := $(VENV)/bin/python
# What names an interpreter: its version and base prefix. .venv is rebuilt when PYTHON names another.
INTERPRETER_ID := import sys; print(sys.version.split()[0], sys.base_prefix)
PYTHON_ID := $(shell $(PYTHON) -c '$(INTERPRETER_ID)' 2>/dev/null | cksum | cut -d' ' -f1)
# .venv holds exactly the locked dev set (requirements-dev.lock, hashes checked); `make lock` regenerates the locks.
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock | cksum | cut -d' ' -f1)-$(PYTHON_ID)
# The Cloud Tasks emulator (a real gRPC Cloud Tasks server) pins protobuf<5, which google-cloud-firestore
# cannot share, so it gets a virtualenv of its own; web/local_tasks.py runs it from there (for make run and the tests).
TASKS_VENV := .venv-tasks
TASKS_EMULATOR_REQUIREMENT := gcloud-tasks-emulator>=0.6,<0.7
TASKS_STAMP := $(TASKS_VENV)/.installed-$(shell echo '$(TASKS_EMULATOR_REQUIREMENT)' | cksum | cut -d' ' -f1)

.PHONY: run test check venv tasks-venv clean bench drills lock

venv: $(STAMP) $(VENV)/bin/crontick

$(STAMP): requirements-dev.lock
	@if [ -x $(PY) ] && [ "$$($(PY) -c '$(INTERPRETER_ID)')" != "$$($(PYTHON) -c '$(INTERPRETER_ID)')" ]; then \
		echo "$(VENV) was made from another interpreter: rebuilding it from $(PYTHON)"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@rm -f $(VENV)/.installed-*
	@touch $@

# `crontick` = `flask --app main`: a launcher script that web/cli_entry.py writes (why not a packaged entry point: there).
$(VENV)/bin/crontick: $(STAMP) web/cli_entry.py
	$(PY) -m web.cli_entry --write-launcher $@

## Regenerate requirements.lock (the runtime set: the Dockerfile installs it) and requirements-dev.lock (the dev
## set: .venv), pinned with hashes, from requirements.txt and requirements-dev.txt. pip-tools runs from a throwaway
## virtualenv (never .venv), resolves for Python 3.11 (the image's) from the public index alone (this machine's pip
## configuration is left out, so no local path or mirror ends up in a lock), and keeps the pins that still fit:
## LOCK_ARGS=--upgrade takes the newest that fit, LOCK_ARGS='--upgrade-package flask' one package. The dev lock is
## constrained by the runtime lock, so tests run the versions production runs.
PIP_TOOLS_REQUIREMENT := pip-tools>=7.4,<8
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock"
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS)
lock:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "make lock resolves for Python 3.11, the image'"'"'s: run it with PYTHON=python3.11")'
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check '$(PIP_TOOLS_REQUIREMENT)' && \
	$(LOCK_ENV) "$$tmp/venv/bin/pip-compile" $(LOCK_FLAGS) --output-file requirements.lock requirements.txt && \
	$(LOCK_ENV) "$$tmp/venv/bin/pip-compile" $(LOCK_FLAGS) --constraint requirements.lock --output-file requirements-dev.lock requirements-dev.txt
	@echo "requirements.lock and requirements-dev.lock written; make venv installs the new dev lock"

tasks-venv: $(TASKS_STAMP)

$(TASKS_STAMP):
	@test -x $(TASKS_VENV)/bin/python || $(PYTHON) -m venv $(TASKS_VENV)
	$(TASKS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(TASKS_EMULATOR_REQUIREMENT)'
	@rm -f $(TASKS_VENV)/.installed-*
	@touch $@

## Serve on 127.0.0.1:8080 (HOST, PORT) with the JSON store, auth disabled, and a local ticker posting to /cron/tick;
## log lines as text (LOG_FORMAT=json for Cloud Logging's JSON).
## HOST=0.0.0.0 opens it to the network: with auth disabled it starts with a loud warning.
## SCHEDULER_DISPATCH=cloud_tasks runs jobs through the local Cloud Tasks emulator (web/devserver.py), so only then
## does run need .venv-tasks (a pip install of the emulator and its grpcio: too slow to make for every run).
run: venv $(if $(filter cloud_tasks CLOUD_TASKS,$(strip $(SCHEDULER_DISPATCH))),tasks-venv)
	ENVIRONMENT=$${ENVIRONMENT:-local} AUTH_MODE=$${AUTH_MODE:-disabled} LOG_FORMAT=$${LOG_FORMAT:-text} $(PY) -m web.devserver

## The whole suite (the Firestore tests start the emulator themselves).
test: venv tasks-venv
	$(PY) -m pytest

## The fast lane: unit and contract tests without the Firestore emulator, PostgreSQL, the drills (tests/reliability),
## the deploy scripts (tests/deploy) or slow tests; stops at the first failure. `make test` runs everything.
## Spread over the cores (pytest-xdist): 1,338 tests in 1 min 14 s on the quiet 2-core machine, against
## 2 min 16 s in one process; the gunicorn, Cloud Tasks emulator and hypothesis tests take most of it.
check: venv
	$(PY) -m pytest -q -n auto -m "not slow and not firestore and not postgres" --ignore=tests/reliability --ignore=tests/deploy -x

BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat requirements.txt requirements-dev.txt requirements-bench.txt | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@rm -f $(VENV)/.bench-installed-*
	@touch $@

## The benchmark on the JSON store and the Firestore emulator (the dispatch figures with the Cloud Tasks emulator too):
## writes bench/results.md and bench/results.json (docs/benchmarks.md).
bench: $(BENCH_STAMP) tasks-venv
	$(PY) -m bench.run

## The reliability drills in their long form (`make test` runs them in their short form).
drills: venv
	CRONTICK_DRILLS=long $(PY) -m pytest tests/reliability -m slow --timeout 3600

clean:
	rm -rf $(VENV) $(TASKS_VENV) .pytest_cache
