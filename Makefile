# Two commands do all the set-up: `make serve` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench clean conformance

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/gateway serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway protocols translators tests bench
	$(BIN)/ruff format --check gateway protocols translators tests bench
	$(BIN)/mypy gateway protocols translators

test: lint editors-check
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Compile (tsc, strict) and lint (eslint) the VS Code extension; skipped when npm is not installed.
.PHONY: editors-check
editors-check:
	@if command -v npm >/dev/null 2>&1; then \
		cd editors/vscode && npm ci --no-audit --no-fund && npm test; \
	else \
		echo "editors-check: npm not on PATH, skipping the VS Code extension check"; \
	fi

# The official MCP conformance suite (npm, pinned in tests/conformance/package-lock.json, with its own Node 22)
# against `gateway serve`'s /mcp. `make test` runs it as well: tests/conformance is part of the pytest suite.
conformance: $(STAMP)
	$(BIN)/pytest -q tests/conformance $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/rest.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
