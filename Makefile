# The two commands a newcomer needs (see README.md): `make demo` and `make test`.
# Each installs what it needs first, so both work on a fresh clone.
.PHONY: demo test test-long bench lint typecheck domain setup postgres chromium clean

VENV := .venv
BIN := $(VENV)/bin

setup:
	@scripts/bootstrap

postgres:
	@scripts/ensure-postgres

chromium:
	@scripts/ensure-chromium

## The main job on the embedded default: SQLite under ./var, simulators, Prefect in-process.
demo: setup
	$(BIN)/clerk demo

## The whole test suite: lint, types, then every test on SQLite and PostgreSQL and every benchmark at
## small size (so none rots: tests/system/test_bench_quick.py), in two pytest processes
## (pytest-xdist; most tests wait on servers and subprocesses, so two share two cores well). The tests
## that take minutes start first (marker `minutes`). 15 min 10 s for the whole of `make test` on a clean
## clone of a 2-core machine (2026-11-30), against 24 min 15 s with the benchmarks before pytest.
PYTEST_WORKERS ?= 2
test: setup postgres chromium lint typecheck domain
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist load --maxschedchunk 2

## The long variants of the reliability tests: random kills, more debtors, more state-machine examples
## (about eleven minutes; not part of `make test`).
test-long: setup postgres
	$(BIN)/pytest -m long

## The benchmarks at full size; figures go to bench/results/results.jsonl.
bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

## The domain tier alone, in a virtual environment with only pytest, hypothesis and cryptography (.venv-domain).
domain: setup
	@scripts/domain-tests

typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .venv-domain var .pytest_cache .mypy_cache .ruff_cache .hypothesis
