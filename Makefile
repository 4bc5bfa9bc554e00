# The two set-up commands are `make demo` and `make test`; both install what is missing first.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: install demo test lint bench-all

install:
	@bash scripts/bootstrap.sh

demo: install
	$(PY) -m dataplane.demo

# The browser tests drive Debian's chromium, so the test target installs it too.
test:
	@IOTCAST_WITH_BROWSER=1 bash scripts/bootstrap.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
