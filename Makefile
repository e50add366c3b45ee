# smartPDU monitoring. `make run` and `make test` set up everything they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEBIAN_PACKAGES := chromium socat tmux mosquitto iproute2

.PHONY: setup debian run test bench lint format clean

setup: debian $(STAMP)

# Debian packages the tests and the virtual PDU use; installed only when missing.
debian:
	@tools/install-debian-packages.sh $(DEBIAN_PACKAGES)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# MicroPython stubs live apart from the venv so they never shadow CPython's stdlib.
	$(PY) -m pip install --quiet --upgrade --target $(VENV)/mpy-stubs \
		'micropython-rp2-rpi-pico-stubs==1.29.0.post1'
	rm -f $(VENV)/.installed-*
	touch $@

# The main job: a complete virtual smartPDU (no hardware needed).
run: setup
	$(VENV)/bin/smartpdu run

# The whole test suite. pytest's exit code 5 (nothing collected) is reported, not hidden.
test: setup
	@set +e; $(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

bench: setup
	$(VENV)/bin/smartpdu bench --json all

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
	$(VENV)/bin/pyright -p pyrightconfig.mpy.json

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
