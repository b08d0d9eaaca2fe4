# Meta-SpikeFormer hardware co-design flow. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
comma := ,
# Parallel test workers; CI machines have two cores.
JOBS ?= 2
CKPT ?= golden/checkpoints/demo.pth
BITS ?= 8
OUT ?= build

.PHONY: help install system-tools test test-all rtl rtl-band synth dse sim sim-paper sim-ablations project quantize demo demo-dvs bench energy demo-model demo-dvs-model clean mutate

help:
	@echo "install   create $(VENV) and install the project with its dev extras (idempotent);"
	@echo "          as root also apt-get installs iverilog and liblz4-dev when missing"
	@echo "test      the fast test suite (unit, golden, quant and Verilator tests)"
	@echo "test-all  every test, including the slow ones"
	@echo "rtl       emit and lint Verilog of CONFIG=$(CONFIG) under $(OUT)/rtl"
	@echo "rtl-band  emit and lint the band core (a conv + LIF chain over AXI4, BAND_CASE=$(BAND_CASE)) under $(OUT)/rtl-band"
	@echo "synth     Yosys resources and nextpnr Fmax of CONFIG's units (installs the synth extra)"
	@echo "dse       design-space sweep SWEEP=$(SWEEP): Yosys resources, cycle model, Pareto table"
	@echo "          and plot under $(OUT)/dse (DSE_WORKERS=N, PLACE=1, BACKGROUND=1; installs"
	@echo "          the dse extra)"
	@echo "sim       co-simulate the RTL on Verilator against the Python references"
	@echo "          (SIM=icarus: on Icarus Verilog; WAVES=1: an FST per run in its build dir)"
	@echo "sim-paper a paper model's structure (PAPER=15M, PAPER_SIZE=64) bit-exact on Verilator"
	@echo "sim-ablations  every Table-5 ablation the hardware runs, at demo scale, T=1 and T=4,"
	@echo "          bit-exact on Verilator, cycles per step (writes $(OUT)/ablations)"
	@echo "project   projected images/s, memories, energy and external bytes of the paper's models"
	@echo "          against lanes and clock (PROJECT_ARGS=...; writes $(OUT)/project)"
	@echo "quantize  quantize CKPT=... (default $(CKPT)) at BITS=$(BITS) into QOUT=$(QOUT)"
	@echo "demo      the whole flow on the shipped default"
	@echo "demo-dvs  the whole flow on the shipped event-camera checkpoint (T=4, no multiplier)"
	@echo "bench     benchmark scripts (speed, cycles, accuracy); prints numbers"
	@echo "energy    firing rates and energy report of CKPT"
	@echo "demo-model  retrain the shipped demo checkpoint"
	@echo "demo-dvs-model  retrain the shipped event-camera checkpoint"
	@echo "clean     remove build outputs (keeps $(VENV))"
	@echo "mutate    mutation testing of hw/ sources against their fast tests (MUTATE_ARGS=...)"

install: $(STAMP) system-tools

# Icarus Verilog (the second simulator: SIM=icarus, the `icarus` tests), lz4.h (Verilator's
# FST waves: WAVES=1) and ccache (every Verilator build compiles the same Verilator runtime, about
# 10 s a build; ccache compiles it once) come from Debian, not PyPI. As root they are apt-get
# installed when missing; otherwise one line says how to get them (without them those tests skip
# and builds are slower; nothing else needs them).
SYSTEM_TOOLS_HINT := SIM=icarus runs and the icarus tests need Icarus Verilog, Verilator's FST waves need lz4.h, ccache halves the Verilator builds
system-tools:
	@missing=""; \
	{ command -v iverilog && command -v vvp; } >/dev/null 2>&1 || missing="$$missing iverilog"; \
	[ -f /usr/include/lz4.h ] || missing="$$missing liblz4-dev"; \
	command -v ccache >/dev/null 2>&1 || missing="$$missing ccache"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "apt-get install$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; } \
	    >/dev/null || echo "apt-get install$$missing failed ($(SYSTEM_TOOLS_HINT))"; \
	else echo "not installed:$$missing; get it with \`sudo apt-get install$$missing\` ($(SYSTEM_TOOLS_HINT))"; fi

# torch is installed first and pinned: a CPU build of exactly 2.13.0 is on the machine's disk,
# while any looser request would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# One torch thread per worker: two workers with two threads each fight over two cores.
TEST_ENV := OMP_NUM_THREADS=1
# pytest rewrites the asserts of every test module at collection (5 s of each worker's 10 s
# collection on a 2-core machine) and keeps the result beside the module's bytecode, unless
# PYTHONDONTWRITEBYTECODE is set: it is cleared for pytest, so a second run reads them.
PYTEST_ENV := $(TEST_ENV) PYTHONDONTWRITEBYTECODE=

# --dist loadgroup: tests sharing one Verilator build (xdist_group) run on one worker, one after
# the other, instead of one worker waiting on the other's build lock. The sources are compiled to
# bytecode first: the suite starts many Python processes (CLIs, cocotb), and where
# PYTHONDONTWRITEBYTECODE is set each of them would compile every module it imports again.
PYC := $(PY) -m compileall -q golden quant hw sim rtl_gen tests >/dev/null
test: install
	$(PYC)
	$(PYTEST_ENV) $(PY) -m pytest -q -n $(JOBS) --dist loadgroup -m "not slow"

test-all: install
	$(PYC)
	$(PYTEST_ENV) $(PY) -m pytest -q -n $(JOBS) --dist loadgroup

CONFIG ?= rtl_gen/configs/default.json
# CKPT=... given on the command line (or in the environment) replaces the design point's
# checkpoint in `make rtl`; left at its default, the design point's own is emitted.
CKPT_GIVEN := $(filter command line environment,$(origin CKPT))

rtl: install
	$(PY) -m rtl_gen --config $(CONFIG) $(if $(CKPT_GIVEN),--checkpoint $(CKPT)) --out $(OUT)/rtl --lint

# The band core (docs/bandcore.md): a conv + LIF chain with every map and weight over AXI4,
# behind an AXI4-Lite slave; BAND_CASE names a chain of sim/cases_bandlayer.py (or its JSON).
BAND_CASE ?= four
rtl-band: install
	$(PY) -m rtl_gen.band --case '$(BAND_CASE)' --out $(OUT)/rtl-band --lint

# Place-and-route needs the 'synth' extra (nextpnr for ECP5 and iCE40, ~390 MB more).
# SEEDS="1 2 3" places every design with each seed (Fmax median and min-max spread);
# SYNTH_JOBS=2 runs two nextpnr processes at a time. UNITS=shared_network picks units.
SEEDS ?= 1
SYNTH_JOBS ?= 1
UNITS ?=
synth: install
	$(PY) -m pip install --quiet -e ".[dev,synth]"
	$(PY) -m rtl_gen --config $(CONFIG) --out $(OUT)/rtl --synth --seeds $(SEEDS) --jobs $(SYNTH_JOBS) $(if $(UNITS),--units $(UNITS))

# Design-space exploration (rtl_gen/dse.py, docs/dse.md): every point of SWEEP synthesized with
# Yosys and joined with the cycle model's images/s; pareto.csv, .json and .png under $(OUT)/dse.
# Finished points are kept in $(OUT)/dse/results: a rerun (after a kill) skips them.
# DSE_WORKERS=N local Dask workers (one Yosys each: 1 on a 2-core machine); DSE_SCHEDULER=
# tcp://host:port runs on a running Dask cluster instead; PLACE=1 also places and routes every
# point that fits (nextpnr, 30-90 min each for the shared network; installs the synth extra);
# BACKGROUND=1 runs the sweep detached, its log in $(OUT)/dse.log.
SWEEP ?= rtl_gen/configs/dse.json
DSE_WORKERS ?= 1
DSE_SCHEDULER ?=
PLACE ?=
BACKGROUND ?=
DSE_ARGS ?=
DSE_CMD := $(PY) -m rtl_gen.dse --sweep $(SWEEP) --out $(OUT)/dse \
	$(if $(DSE_SCHEDULER),--scheduler $(DSE_SCHEDULER),--workers $(DSE_WORKERS)) \
	$(if $(PLACE),--place --seeds $(SEEDS)) $(DSE_ARGS)
dse: install
	$(PY) -m pip install --quiet -e ".[dev,dse$(if $(PLACE),$(comma)synth)]"
ifneq ($(BACKGROUND),)
	mkdir -p $(OUT)
	$(TEST_ENV) nohup $(DSE_CMD) > $(OUT)/dse.log 2>&1 & echo "sweep running in the background (pid $$!); log: $(OUT)/dse.log"
else
	$(TEST_ENV) $(DSE_CMD)
endif

# IMAGES images at each of TSTEPS time steps through the whole network of CKPT on Verilator:
# INPUTS=images.npy (or .pt: float images [N, C, H, W] in the model's pixel range; all of them
# unless IMAGES is given), else the held-out digits for a model taking 1x32x32, else seeded
# random images (INPUTS=random asks for them). SIM=icarus runs everything on Icarus Verilog
# instead (far slower on the whole network: docs/simulators.md); WAVES=1 writes an FST of every
# run into its build directory under build/sim.
IMAGES ?= 4
TSTEPS ?= 1 2
INPUTS ?=
SIM_IMAGES := $(if $(and $(INPUTS),$(filter file,$(origin IMAGES))),,--images $(IMAGES))

# Unit co-simulations, then the whole network end to end (hw/shared.py, reports under $(OUT)/e2e),
# in the checkpoint's own configuration.
sim: install
	$(PYTEST_ENV) $(PY) -m pytest -q -n $(JOBS) -m "verilator and not slow"
	$(TEST_ENV) $(PY) -m sim.e2e --arch shared --checkpoint $(CKPT) $(SIM_IMAGES) $(if $(INPUTS),--inputs $(INPUTS)) --T $(TSTEPS) --out $(OUT)/e2e

# The output directory is refused if it exists: remove it (or pick QOUT=...) to re-run.
QOUT ?= $(OUT)/quant/$(basename $(notdir $(CKPT)))-w$(BITS)
quantize: install
	$(PY) -m quant.cli $(CKPT) --bits $(BITS) --out $(QOUT)

# The whole flow on the shipped demo checkpoint: energy report, quantize, emit and lint Verilog,
# run the network on Verilator against the integer and float golden models, report.
demo: install
	$(TEST_ENV) $(PY) -m golden energy --ckpt $(CKPT)
	rm -rf $(OUT)/demo/quant
	$(TEST_ENV) $(PY) -m quant.cli $(CKPT) --bits $(BITS) --out $(OUT)/demo/quant
	$(TEST_ENV) $(PY) -m rtl_gen --config $(CONFIG) --out $(OUT)/rtl --lint
	$(TEST_ENV) $(PY) -m sim.e2e --arch shared --checkpoint $(CKPT) --images $(IMAGES) --T $(TSTEPS) --out $(OUT)/e2e

# The whole flow on the shipped event-camera checkpoint (digits turned into ON/OFF events, T=4):
# energy report (no MAC term: the first layer acts on spikes), quantize (no pixel codes), emit and
# lint the network's Verilog (an events port, no stem, no multiplier), run it on Verilator against
# the integer and float golden models, report.
DVS_CKPT ?= golden/checkpoints/demo_dvs.pth
demo-dvs: install
	$(TEST_ENV) $(PY) -m golden energy --ckpt $(DVS_CKPT)
	rm -rf $(OUT)/demo-dvs/quant
	$(TEST_ENV) $(PY) -m quant.cli $(DVS_CKPT) --bits $(BITS) --out $(OUT)/demo-dvs/quant
	$(TEST_ENV) $(PY) -m rtl_gen --config $(CONFIG) --checkpoint $(DVS_CKPT) --units shared_network --out $(OUT)/demo-dvs/rtl --lint
	$(TEST_ENV) $(PY) -m sim.e2e --arch shared --checkpoint $(DVS_CKPT) --images $(IMAGES) --T 4 --out $(OUT)/demo-dvs/e2e

# A paper model's whole structure on Verilator: PAPER (15M, 31M or 55M) at PAPER_SIZE x PAPER_SIZE,
# T=1, with seeded random weights calibrated so that every LIF fires (sim.paper refuses a model
# whose LIFs fire outside 1-50 %), one seeded random image through the public co-simulation
# command line: logits and every spike map == the integer golden model. 15M at 64: about
# 10 minutes here (docs/shared-network.md, "Envelope").
PAPER ?= 15M
PAPER_SIZE ?= 64
sim-paper: install
	$(TEST_ENV) $(PY) -m sim.paper --variant $(PAPER) --img-size $(PAPER_SIZE) --out $(OUT)/paper/$(PAPER)-$(PAPER_SIZE).pth
	$(TEST_ENV) $(PY) -m sim.e2e --checkpoint $(OUT)/paper/$(PAPER)-$(PAPER_SIZE).pth --inputs random --images 1 --T 1 --out $(OUT)/paper/$(PAPER)-$(PAPER_SIZE)

# Every Table-5 ablation the hardware runs (sim.paper.DEMO_ABLATIONS), at demo scale, through the
# public command lines; about 3 minutes an ablation on 2 cores.
sim-ablations: install
	$(TEST_ENV) $(PY) tests/data/make_perf_ablations.py $(OUT)/ablations/perf_ablations.json $(OUT)/ablations

# Projection (sim.project, docs/perf.md "Projection"): the paper's 15M, 31M and 55M at 224x224,
# T=1 and 4, lanes 16 to 1024, 100 and 500 MHz: cycles per image from the cycle model on one
# trace of a calibrated random model (every LIF ~10 %), images/s, on-chip memories and padding,
# energy per image, external bytes per image; a table, projection.{csv,json,png} under
# $(OUT)/project. 17 minutes on a loaded 2-core machine, 12 GB peak. PROJECT_ARGS="--variant 15M --T 1"
# (or --checkpoint PATH, --lanes, --clock-mhz, --rates 0.05 0.1 0.2) narrows or changes it.
PROJECT_ARGS ?=
project: install
	$(TEST_ENV) $(PY) -m sim.project --out $(OUT)/project $(PROJECT_ARGS)

# Each script prints its numbers; JSON copies land under $(OUT)/bench.
bench: install
	$(PY) -m golden bench --variant 55M --batch 1 8
	$(PY) -m quant.bench speed
	$(PY) -m quant.bench accuracy --ckpt $(CKPT)
	$(PY) -m sim.bench_units --json $(OUT)/bench/hw_units.json
	$(PY) -m sim.bench_sdsa

energy: install
	$(PY) -m golden energy --ckpt $(CKPT)

# Retrain the shipped demo checkpoint (about 3-5 minutes on one thread; bit-identical weights).
demo-model: install
	$(PY) -m golden train --variant demo --out golden/checkpoints/demo.pth

# Retrain the shipped event checkpoint (about 5 minutes on one thread, bit-identical weights;
# docs/events.md).
demo-dvs-model: install
	$(PY) -m golden train --variant demo_dvs --epochs 13 --batch-size 32 --lr 6e-3 --max-shift 0 --threads 1 --out golden/checkpoints/demo_dvs.pth

clean:
	rm -rf $(OUT) sim_build .pytest_cache

# Mutation testing: flip one operator or constant at a time in hw/ sources and run the fast
# tests that cover the file; prints the kill rate per file and every surviving mutant, and keeps
# the log and per-mutant outcomes under $(OUT)/mutate. E.g. MUTATE_ARGS="--files hw/lif.py".
MUTATE_ARGS ?=
mutate: install
	mkdir -p $(OUT)/mutate
	$(TEST_ENV) $(PY) -m tests.mutate --jobs $(JOBS) --results $(OUT)/mutate/results.json $(MUTATE_ARGS) 2>&1 | tee $(OUT)/mutate/log.txt
