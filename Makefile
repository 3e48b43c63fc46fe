# Two commands matter: `make run` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
TOOLS  := .tools
BUF    := $(TOOLS)/node_modules/.bin/buf
LISTEN ?= 127.0.0.1:50051

.PHONY: run test lint typecheck protos buf-lint pytest bench image tools redis-server clean

# Two stamps: `make run` needs only the service; `make test` adds the tools and test
# dependencies (the Helm libraries alone are a few hundred MB).
$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# helm-sdkpy declares Python >= 3.12 but works on 3.11; it is only for the chart tests.
	$(BIN)/python -m pip install -q --ignore-requires-python 'helm-sdkpy==0.1.32'
	@touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/ringfence serve --rules rules --listen $(LISTEN) --state memory://

test: $(STAMP) tools lint typecheck buf-lint pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) redis-server
	$(BIN)/pytest -q

# Generated code is committed; tests/server/test_api_generated.py fails when it is stale.
protos: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m server.api.generate

tools: $(BUF) redis-server

$(BUF):
	@command -v npm >/dev/null || { echo "npm is needed for buf (npm package @bufbuild/buf)"; exit 1; }
	mkdir -p $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-fund --no-audit --no-save @bufbuild/buf@1.75.0
	@touch $(BUF)

buf-lint: $(BUF)
	cd protos && ../$(BUF) lint

# The Redis tests start their own redis-server on a free loopback port (and a 3-master
# cluster, made with redis-cli); install them if missing.
redis-server:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	  else echo "redis-server or redis-cli is missing: install them (e.g. sudo apt-get install redis-server redis-tools)"; exit 1; fi; }

# The container image localhost/ringfence:dev, built with podman on a Debian base bootstrapped
# from this machine's apt mirror (needs root; installs podman and debootstrap with apt-get
# when missing). Cold ~100 s, unchanged ~4 s. tests/deploy/test_image.py runs it.
image:
	.ci/image.sh

bench: $(STAMP) redis-server
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
