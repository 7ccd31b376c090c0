# crontick: `make run` serves locally, `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: run test venv clean

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

clean:
	rm -rf $(VENV) .pytest_cache
