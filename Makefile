# smartPDU monitoring. `make run` and `make test` set up everything they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEBIAN_PACKAGES := chromium socat tmux mosquitto iproute2 faketime prometheus
# Building MicroPython (make firmware) and running it on the emulated RP2040 (rp2040js).
# NAME:COMMAND = needed only while COMMAND is missing (nodesource's nodejs bundles npm, and
# Debian's npm conflicts with it).
FIRMWARE_DEBIAN_PACKAGES := cmake gcc-arm-none-eabi libnewlib-arm-none-eabi \
	libstdc++-arm-none-eabi-newlib gcc-multilib pkg-config patch nodejs:node npm:npm

# MicroPython 1.28.0 for the RP2040 and a 32-bit unix port, built from the offline bundle.
RP2_SHARED ?= ../shared/rp2
RP2_BUILD ?= build/rp2
RP2_MANIFEST := tools/rp2/manifest.py
# Rebuilt when the frozen sources, the manifest or the build script change.
FIRMWARE_HASH := $(shell find protocol firmware boards -name '*.py' -not -path '*/__pycache__/*' \
	| LC_ALL=C sort | xargs cat $(RP2_MANIFEST) tools/rp2build.sh tools/rp2/*.diff | cksum | cut -d' ' -f1)
FIRMWARE_STAMP := $(RP2_BUILD)/out/.smartpdu-$(FIRMWARE_HASH)

.PHONY: setup debian firmware run test bench lint format clean

EMU_DIR := tools/rp2emu
EMU_STAMP := $(EMU_DIR)/node_modules/.installed-$(shell cksum $(EMU_DIR)/package-lock.json | cut -d' ' -f1)

setup: debian $(STAMP) $(FIRMWARE_STAMP) $(EMU_STAMP)

# The emulated RP2040 (rp2040js, pinned in tools/rp2emu/package-lock.json).
$(EMU_STAMP): $(EMU_DIR)/package.json $(EMU_DIR)/package-lock.json | debian
	cd $(EMU_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests and the virtual PDU use; installed only when missing.
debian:
	@tools/install-debian-packages.sh $(DEBIAN_PACKAGES) $(FIRMWARE_DEBIAN_PACKAGES)

# build/rp2/out/{firmware-stock.uf2, smartpdu-rp2.uf2, micropython-32, mpy-cross}: the stock
# image and the 32-bit unix port once, the production image whenever the stamp is stale.
firmware: $(FIRMWARE_STAMP)

$(FIRMWARE_STAMP):
	@tools/install-debian-packages.sh $(FIRMWARE_DEBIAN_PACKAGES)
	tools/rp2build.sh $(RP2_SHARED) $(RP2_BUILD) $(RP2_MANIFEST) $@

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
# SMARTPDU_REQUIRE_ALL=1: a test whose tool `make setup` provides fails, not skips, when the
# tool is missing (tests/requirements.py).
test: setup
	@set +e; SMARTPDU_REQUIRE_ALL=1 $(PY) -m pytest -q tests; rc=$$?; \
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
