# PoNAS chain. `make demo` and `make test` each create .venv and install into it first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PONAS  := $(VENV)/bin/ponas
STAMP  := $(VENV)/.installed
DEMO   := demo-devnet

.PHONY: venv test demo bench bench-paper soak lint clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch first and pinned: the CPU build (a looser pin pulls a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The whole system on this machine: a devnet of three nodes (node0 closes the rounds with the
# beacon's key), a pool manager with three members and a solo miner, all training real models
# on MNIST-1D sequences the chain generates. Five blocks are mined, a transfer from wallet alice
# to wallet bob is confirmed in one of them, and a summary shows who won and who was paid.
# Everything stops at the end; the chain and the logs stay in $(DEMO)/.
demo: $(STAMP)
	$(PONAS) devnet up --dir $(DEMO) --fresh --preset devnet --rounds 5 --send 12.5

bench: $(STAMP)
	$(PY) bench/bench_core.py
	$(PY) bench/bench_verify.py
	$(PY) bench/bench_node.py
	$(PY) bench/bench_pool.py

# The paper's claims measured on the score tables (bench/paper/): the simulations on the
# default task (MNIST-1D) and on the digits baseline, then docs/results.md with their tables,
# plots, a verdict per claim and the two side by side. About 70 minutes on 2 cores (MNIST-1D 25, digits 42).
bench-paper: $(STAMP)
	$(PY) bench/paper/simulate.py --table bench/paper/v1/nb201_mnist1d_devnet_e0.csv.gz --out docs/results/mnist1d
	$(PY) bench/paper/simulate.py --table bench/paper/nb201_digits_devnet.csv.gz --out docs/results/digits
	$(PY) bench/paper/report.py --results docs/results/mnist1d --baseline docs/results/digits --out docs/results.md

# The reliability harnesses (docs/reliability.md), small by default; the full run is
# `make soak KILLS=1000 INPUTS=1000000 EXAMPLES=1000` (about an hour on 2 shared cores).
# All three run even if one fails; the target fails if any did.
KILLS    ?= 20
INPUTS   ?= 20000
EXAMPLES ?= 25
SOAK_STAMP := $(VENV)/.soak-installed

$(SOAK_STAMP): $(STAMP) setup.cfg
	$(PY) -m pip install -q -e '.[soak]'
	touch $(SOAK_STAMP)

soak: $(SOAK_STAMP)
	rc=0; \
	$(PY) bench/soak_crash.py --kills $(KILLS) || rc=1; \
	$(PY) bench/fuzz_decode.py --inputs $(INPUTS) || rc=1; \
	$(PY) bench/fuzz_api.py --max-examples $(EXAMPLES) || rc=1; \
	exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check consensus p2p node pool wallet nodeclient tests bench
	$(VENV)/bin/mypy consensus node p2p pool wallet nodeclient

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
