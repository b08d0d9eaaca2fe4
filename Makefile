# Meta-SpikeFormer hardware co-design flow. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Parallel test workers; CI machines have two cores.
JOBS ?= 2
CKPT ?= golden/checkpoints/demo.pth
BITS ?= 8
OUT ?= build

.PHONY: help install test test-all rtl sim quantize demo bench clean

help:
	@echo "install   create $(VENV) and install the project with its dev extras (idempotent)"
	@echo "test      the fast test suite (unit, golden, quant and Verilator tests)"
	@echo "test-all  every test, including the slow ones"
	@echo "rtl       emit Verilog and its manifest under $(OUT)/rtl"
	@echo "sim       co-simulate the RTL on Verilator against the Python references"
	@echo "quantize  quantize CKPT=... (default $(CKPT)) at BITS=$(BITS) into QOUT=$(QOUT)"
	@echo "demo      the whole flow on the shipped default"
	@echo "bench     benchmark scripts (speed, cycles); prints numbers"
	@echo "clean     remove build outputs (keeps $(VENV))"

install: $(STAMP)

# torch is installed first and pinned: a CPU build of exactly 2.13.0 is on the machine's disk,
# while any looser request would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -n $(JOBS) -m "not slow"

test-all: install
	$(PY) -m pytest -q -n $(JOBS)

rtl: install
	$(PY) -m rtl_gen --out $(OUT)/rtl

sim: install
	$(PY) -m pytest -q -n $(JOBS) -m verilator

# The output directory is refused if it exists: remove it (or pick QOUT=...) to re-run.
QOUT ?= $(OUT)/quant/$(basename $(notdir $(CKPT)))-w$(BITS)
quantize: install
	$(PY) -m quant.cli $(CKPT) --bits $(BITS) --out $(QOUT)

demo: rtl sim

bench: install
	@echo "bench: no benchmark scripts yet (issues 3-8 add them)"; exit 1

clean:
	rm -rf $(OUT) sim_build .pytest_cache
