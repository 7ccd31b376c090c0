# crontick: `make run` serves locally, `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: run test venv clean bench drills

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

## Serve on :8080 with the JSON store, auth disabled, and a local ticker posting to /cron/tick.
run: venv
	ENVIRONMENT=$${ENVIRONMENT:-local} AUTH_MODE=$${AUTH_MODE:-disabled} $(PY) -m web.devserver

## The whole suite (the Firestore tests start the emulator themselves).
test: venv
	$(PY) -m pytest

BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat requirements.txt requirements-dev.txt requirements-bench.txt | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@rm -f $(VENV)/.bench-installed-*
	@touch $@

## The benchmark on the JSON store and the Firestore emulator: writes bench/results.md and bench/results.json (docs/benchmarks.md).
bench: $(BENCH_STAMP)
	$(PY) -m bench.run

## The reliability drills in their long form (`make test` runs them in their short form).
drills: venv
	CRONTICK_DRILLS=long $(PY) -m pytest tests/reliability -m slow --timeout 3600

clean:
	rm -rf $(VENV) .pytest_cache
