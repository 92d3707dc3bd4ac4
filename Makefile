# Two commands do all set-up on a fresh machine:
#   make serve   - create .venv, install what running needs, run the service on http://127.0.0.1:8080
#   make test    - the same plus the test tools and Chromium, then the whole test suite
# Both installs are redone when pyproject.toml changes. The project is installed editable, so
# code edits need no reinstall; tests/test_wheel.py checks the non-editable wheel.
PYTHON ?= python3
VENV := .venv
RUN_STAMP := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp

.PHONY: serve test bench lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP) pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

serve: $(RUN_STAMP)
	$(VENV)/bin/video-refresher serve

test: $(TEST_STAMP)
	bash scripts/ensure-chromium
	$(VENV)/bin/ruff check pipeline web bench tests
	$(VENV)/bin/pytest -q

# The benchmark's HTTP client (httpx) comes with the test tools.
bench: $(TEST_STAMP)
	$(VENV)/bin/python -m bench

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check pipeline web bench tests
