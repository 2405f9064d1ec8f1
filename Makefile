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

# Debian packages the tests need: sshd (real SFTP server), promtool (alert rules), Chromium (the
# console's browser tests; Playwright drives /usr/bin/chromium, it never downloads one) and gnupg (gpg
# decrypts and encrypts PGP files at run time, and is the tests' independent tool); skipped when present.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
system-deps:
	@missing=""; \
	  [ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	  command -v promtool >/dev/null || missing="$$missing prometheus"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  command -v gpg >/dev/null && command -v gpgconf >/dev/null || missing="$$missing gnupg"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && $(APT_INSTALL) $$missing >/dev/null; \
	  fi

run: install
	$(BIN)/connect dev

test: install system-deps
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

lint: install
	$(BIN)/ruff check services shared tests bench
	$(BIN)/ruff format --check services shared tests bench
	$(BIN)/mypy

# Regenerate the committed AsyncAPI document after changing messages or consumers.
asyncapi: install
	$(BIN)/faststream docs gen services.asyncapi:docs --out docs/asyncapi.json

clean:
	rm -rf $(VENV) var
