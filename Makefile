PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs dist unit browser bench bench-quick bench-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo, and `eventfold serve` after it, need eventfold with the http extra.
$(VENV)/.demo: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[http]'
	touch $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/python -m eventfold.examples.shop.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site (mkdocs.yml): the pages in docs/ and an API reference
# generated from the docstrings, into site/; any warning fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# An sdist and a wheel in dist/ (the version is eventfold.__version__).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

unit: $(STAMP)
	$(BIN)/python -m pytest -q

# The documentation pages and the console are checked in a real browser: Debian's chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: lint typecheck docs browser
	$(BIN)/python -m pytest -q

# Benchmarks (bench/run.py): the bench extra brings the peer library, matplotlib and profilers.
$(VENV)/.bench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python -m bench.run --docs
	$(BIN)/python -m bench.replicas --docs

bench-quick: $(VENV)/.bench
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.replicas --quick
	$(BIN)/python -m bench.scale --quick

# The scale run (bench/scale.py): 1, 3 and 10 million events over 100,000
# streams on SQLite and PostgreSQL; hours on a small machine.
bench-scale: $(VENV)/.bench
	$(BIN)/python -m bench.scale --out bench/results/scale.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site dist build
