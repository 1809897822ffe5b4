# The two commands: `make run` starts the whole pipeline, `make test` runs every test.
# Both set up what they need first (a virtualenv with pinned packages; Maven for the
# Elasticsearch download, from Debian's archive when missing and we are root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format install system-deps apt-install clean bench package
STAGE ?= prod

run: install system-deps
	$(BIN)/currencies up

test: install system-deps lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	@command -v mvn >/dev/null || $(MAKE) --no-print-directory apt-install PACKAGES=maven WHY="Maven (mvn) fetches Elasticsearch"
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || $(MAKE) --no-print-directory apt-install PACKAGES=prometheus WHY="Prometheus and promtool run the rules and dashboards' queries"
	@command -v prometheus-pushgateway >/dev/null || $(MAKE) --no-print-directory apt-install PACKAGES=prometheus-pushgateway WHY="the Pushgateway receives the Lambdas' metrics"
	@command -v docker-compose >/dev/null || $(MAKE) --no-print-directory apt-install PACKAGES=docker-compose WHY="docker-compose validates docker-compose.yml offline"

# Debian packages, installed without recommends (nothing is started by them).
apt-install:
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PACKAGES); \
	else echo "$(WHY): sudo apt-get install --no-install-recommends $(PACKAGES)" >&2; exit 1; fi

# The CloudFormation path: build/$(STAGE)/sam.json and deployment.zip (a region, no AWS credentials).
package: install
	$(BIN)/currencies package --stage $(STAGE) --out build/$(STAGE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Quick by default (checks the harnesses work); BENCH_FULL=1 measures in full and rewrites docs/benchmarks.md.
BENCH_DOCS := $(if $(filter 1,$(BENCH_FULL)),--write-docs,)
# A quick run's JSON goes to bench/results/quick/ (not in git): only a full run replaces the published results.
BENCH_OUT := bench/results$(if $(filter 1,$(BENCH_FULL)),,/quick)
bench: install system-deps
	mkdir -p $(BENCH_OUT)
	$(BIN)/python -m bench.consumer --engine both --json $(BENCH_OUT)/consumer.json $(BENCH_DOCS)
	$(BIN)/python -m bench.metrics_push --json $(BENCH_OUT)/metrics_push.json
	$(BIN)/python -m bench.load --changes 10000 --clients 4 --json $(BENCH_OUT)/load.json
	$(BIN)/python -m bench.stream_handler --json $(BENCH_OUT)/stream_handler.json $(BENCH_DOCS)
	$(BIN)/python -m bench.freshness --json $(BENCH_OUT)/freshness.json $(BENCH_DOCS)
	$(BIN)/python -m bench.footprint --json $(BENCH_OUT)/footprint.json $(BENCH_DOCS)
