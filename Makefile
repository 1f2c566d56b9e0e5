# Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/provisioner demo

test: $(STAMP)
	@# pytest exits 5 when it collected nothing: that is a failure, not a pass.
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo 'no tests were collected' >&2; exit 1; fi; exit $$status

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
