# Two commands do all set-up on a fresh machine:
#   make serve   - create .venv, install, run the service on http://127.0.0.1:8080
#   make test    - the same set-up plus Chromium, then the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: serve test bench lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/video-refresher serve

test: $(STAMP)
	bash scripts/ensure-chromium
	$(VENV)/bin/ruff check pipeline web bench tests
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(VENV)/bin/python -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline web bench tests
