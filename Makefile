# Two commands do all set-up on a fresh machine:
#   make run    the service on the built-in demo model, at http://127.0.0.1:8000
#   make test   installs what the tests need, then lint, types, the docs site and the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-deps lint typecheck docs docs-config pytest clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m service --demo --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

test: $(STAMP) test-deps
	$(MAKE) lint typecheck docs pytest

# Programs the browser, nginx, client-module and egress-proxy tests drive, as command:debian-package. Each is
# installed with apt-get only when missing, and only as root (CI); elsewhere those tests skip.
TEST_TOOLS := chromium:chromium nginx:nginx node:nodejs npm:npm tinyproxy:tinyproxy redis-server:redis-server

test-deps:
	@missing=""; \
	for tool in $(TEST_TOOLS); do \
		name=$${tool%%:*}; \
		command -v $$name >/dev/null 2>&1 || [ -x /usr/sbin/$$name ] || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "test-deps: not root, not installing:$$missing (their tests skip)"; exit 0; fi; \
	echo "test-deps: installing$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The docs site, built into site/ (git-ignored); --strict fails on a broken link, anchor or include.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# docs/configuration.md's tables, from service.settings.Settings and the command line's parser.
docs-config: $(STAMP)
	$(BIN)/python -m docs.gen_config

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
