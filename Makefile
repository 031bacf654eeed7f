# PoNAS chain. `make demo` and `make test` each create .venv and install into it first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PONAS  := $(VENV)/bin/ponas
STAMP  := $(VENV)/.installed
DEMO   := demo-data

.PHONY: venv test demo bench lint clean

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

# The most complete real thing the project does today: a regtest chain mined by neural-
# architecture search. Three local miners train real models on digits each round, commit, the
# beacon closes the round, they reveal their test scores, and the best verified one is the block.
demo: $(STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(PONAS) genesis new --preset regtest --out $(DEMO)/genesis.json --demo-keys $(DEMO)/keys --demo-count 3
	@A0=$$($(PY) -c "import json;print(json.load(open('$(DEMO)/keys/demo0.key'))['address'])"); \
	 A1=$$($(PY) -c "import json;print(json.load(open('$(DEMO)/keys/demo1.key'))['address'])"); \
	 A2=$$($(PY) -c "import json;print(json.load(open('$(DEMO)/keys/demo2.key'))['address'])"); \
	 set -x; \
	 $(PONAS) chain generate --datadir $(DEMO)/node --genesis $(DEMO)/genesis.json --beacon-key $(DEMO)/beacon.key \
	     --blocks 5 --address $$A0 --address $$A1 --address $$A2 \
	     --send-from $(DEMO)/keys/demo0.key --send-to $$A1 --amount 12.5 && \
	 $(PONAS) chain show --datadir $(DEMO)/node --genesis $(DEMO)/genesis.json --accounts

bench: $(STAMP)
	$(PY) bench/bench_core.py
	$(PY) bench/bench_verify.py
	$(PY) bench/bench_node.py
	$(PY) bench/bench_pool.py

lint: $(STAMP)
	$(VENV)/bin/ruff check consensus p2p node pool wallet tests bench
	$(VENV)/bin/mypy consensus node p2p pool wallet

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
