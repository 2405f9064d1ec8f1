# The two commands of the quick start (`make run`, `make test`) set everything up themselves.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint asyncapi system-deps install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --pre -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need (real sshd for SFTP tests); skipped when present.
system-deps:
	@command -v /usr/sbin/sshd >/dev/null || { \
	  echo "installing openssh-server (real sshd for the SFTP tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null); }

run: install
	$(BIN)/connect dev

test: install system-deps
	$(BIN)/pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check services shared tests bench
	$(BIN)/ruff format --check services shared tests bench
	$(BIN)/mypy

# Regenerate the committed AsyncAPI document after changing messages or consumers.
asyncapi: install
	$(BIN)/faststream docs gen services.asyncapi:docs --out docs/asyncapi.json

clean:
	rm -rf $(VENV) var
