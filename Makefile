# The two set-up commands are `make demo` and `make test`; both install what is missing first.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: install demo test lint bench-all

install:
	@bash scripts/bootstrap.sh

demo: install
	$(PY) -m dataplane.demo

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
