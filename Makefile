# Two commands matter: `make run` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
TOOLS  := .tools
BUF    := $(TOOLS)/node_modules/.bin/buf
LISTEN ?= 127.0.0.1:50051
# The VS Code extension: its npm packages (the client, and VS Code's tokenizer for the
# grammar tests) and the packaging tool, which alone is ~140 MB, kept out of `make test`.
VSCODE := editors/vscode
VSCODE_STAMP := $(VSCODE)/node_modules/.installed
VSCE := $(TOOLS)/vsce/node_modules/.bin/vsce

CHECKOV := $(TOOLS)/checkov/bin/checkov
SBOM    := build/sbom.cdx.json

.PHONY: run test test-noisy lint typecheck protos buf-lint pytest bench image tools redis-server bundle-servers lock sbom \
	browser-and-prometheus report clean vsix grammar


# Two stamps: `make run` needs only the service; `make test` adds the tools and test
# dependencies (the Helm libraries alone are a few hundred MB).
# The service's dependencies come from the hashed lock, as in the image: what the tests run
# is what ships.
$(RUN_STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# helm-sdkpy declares Python >= 3.12 but works on 3.11; it is only for the chart tests.
	$(BIN)/python -m pip install -q --ignore-requires-python 'helm-sdkpy==0.1.32'
	@touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/ringfence serve --rules rules --listen $(LISTEN) --state memory://

test: $(STAMP) tools lint typecheck buf-lint sbom pytest

# `make test` on a busy machine, as CI machines are: a busy loop on every core, at normal
# priority, for as long as the suite runs (killed by their pids when it ends, pass or fail).
# Tests wait for states with generous caps, never for fixed deadlines, so this passes too;
# a test that fails only here has a timing assumption to remove.
test-noisy: $(STAMP)
	@pids=""; \
	for i in $$(seq "$$(nproc)"); do (while :; do :; done) & pids="$$pids $$!"; done; \
	trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	echo "test-noisy: $$(nproc) busy loop(s) running beside the suite (pids$$pids)"; \
	$(MAKE) test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# One test process per core (pytest-xdist): most tests wait on servers, browsers and
# image builds, so two processes on two cores take ~60 % of the time of one. Tests start
# their own servers on free loopback ports, so the processes never share one.
PYTEST_PROCS ?= auto
pytest: $(STAMP) redis-server bundle-servers browser-and-prometheus $(VSCODE_STAMP)
	$(BIN)/pytest -q -n $(PYTEST_PROCS)

# Generated code is committed; tests/server/test_api_generated.py fails when it is stale.
protos: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m server.api.generate

tools: $(BUF) redis-server bundle-servers browser-and-prometheus $(CHECKOV) $(VSCODE_STAMP)

# checkov pins many libraries of its own: it gets a venv apart from the project's, filled by
# uv (cold: ~15 s; pip needs ~80 s). tests/deploy/test_checkov.py runs it on the rendered
# chart and the Dockerfile.
$(CHECKOV): $(STAMP)
	@test -x $(TOOLS)/checkov/bin/python || $(PYTHON) -m venv $(TOOLS)/checkov
	$(BIN)/uv pip install -q --python $(TOOLS)/checkov/bin/python 'checkov==3.3.30'
	@touch $(CHECKOV)

# The hashed lock files the image and `make run` install from. Run after changing the
# dependencies in pyproject.toml (tests/deploy/test_supply_chain.py fails until then).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 \
	  --custom-compile-command "make lock" -q -o requirements.lock
	$(BIN)/uv pip compile requirements-build.in --generate-hashes --universal \
	  --python-version 3.11 --custom-compile-command "make lock" -q -o requirements-build.lock

# A CycloneDX SBOM of what the image installs (the lock, with hashes) and of ringfence itself.
sbom: $(SBOM)

$(SBOM): requirements.lock pyproject.toml $(STAMP)
	@mkdir -p $(dir $(SBOM))
	$(BIN)/cyclonedx-py requirements requirements.lock --pyproject pyproject.toml \
	  --output-reproducible --of JSON -o $(SBOM)

$(VSCODE_STAMP): $(VSCODE)/package.json $(VSCODE)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the editor tests (Node 20+)"; exit 1; }
	cd $(VSCODE) && npm ci --silent --no-fund --no-audit
	@touch $(VSCODE_STAMP)

$(VSCE):
	@command -v npm >/dev/null || { echo "npm is needed to package the VS Code extension"; exit 1; }
	mkdir -p $(TOOLS)/vsce
	@# --prefix: without it npm installs into the nearest folder above that has a
	@# node_modules (.tools/, where buf is), and vsce never lands here.
	npm install --prefix $(TOOLS)/vsce --silent --no-fund --no-audit --no-save @vscode/vsce@3.9.1
	@touch $(VSCE)

# The VS Code extension package, editors/vscode/ringfence-<version>.vsix (CI builds it).
vsix: $(VSCE) $(VSCODE_STAMP) $(STAMP)
	$(BIN)/python -m server.lsp.textmate --check
	cd $(VSCODE) && $(CURDIR)/$(VSCE) package --skip-license --out ringfence.vsix
	$(BIN)/python -m server.lsp.textmate --check-vsix $(VSCODE)/ringfence.vsix

# Regenerate the TextMate grammar from dsl/ (tests fail when it is stale).
grammar: $(STAMP)
	$(BIN)/python -m server.lsp.textmate

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

# The bundle tests serve bundles from a real nginx and a real OCI registry (Debian's
# docker-registry) they start on free loopback ports with configs of their own
# (tests/conftest_nginx.py, tests/conftest_registry.py); the shutdown tests balance
# through nginx's stream module as a Service would. Installed when missing.
bundle-servers:
	@missing=""; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	test -e /usr/lib/nginx/modules/ngx_stream_module.so || missing="$$missing libnginx-mod-stream"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing:$$missing (install them, e.g. sudo apt-get install$$missing)"; exit 1; fi; \
	fi

# The report's browser test drives Debian's chromium through its chromedriver; the alert
# and dashboard tests run Debian's prometheus and promtool. Installed when missing, in one
# apt-get call, without recommends: about 40 s with the apt-get update on a machine without them.
browser-and-prometheus:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing:$$missing (install them, e.g. sudo apt-get install$$missing)"; exit 1; fi; \
	fi

# A sample backtest report: bench/traffic.py's day (fixed date and seed) replayed through
# rules/ and, as the candidate, the same rules with the run threshold lowered from 20 to 10.
# Writes build/report/{day.jsonl,report.html,report.json}; see docs/replay.md.
report: $(STAMP)
	$(BIN)/python bench/sample_report.py --out build/report

# The container image localhost/ringfence:dev, built with podman on a Debian base bootstrapped
# from this machine's apt mirror (needs root; installs podman and debootstrap with apt-get
# when missing). Cold ~100 s, unchanged ~4 s. tests/deploy/test_image.py runs it.
image:
	.ci/image.sh

bench: $(STAMP) redis-server
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache \
	  $(VSCODE)/node_modules $(VSCODE)/*.vsix
