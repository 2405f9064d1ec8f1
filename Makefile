# The two commands of the quick start (`make run`, `make test`) set everything up themselves.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_LOCK := requirements/runtime.lock
DEV_LOCK := requirements/dev.lock
UV_VERSION := 0.13.10

.PHONY: run test broker lint asyncapi system-deps install lock prometheusrule clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the locked dependencies change: every package, pinned and hash-checked, from the
# dev lock; then the project itself, editable, with --no-deps (its dependencies are all in the lock).
$(STAMP): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps -e .
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

# RabbitMQ at AMQP_URL (default localhost:5672): started when nothing listens on that loopback port,
# and Debian's rabbitmq-server installed first when it is missing. A remote AMQP_URL is only checked.
broker: install
	@$(BIN)/python -m services.dev.broker --installed || { echo "installing rabbitmq-server"; \
	  apt-get update -qq && $(APT_INSTALL) rabbitmq-server >/dev/null; }
	@$(BIN)/python -m services.dev.broker

run: install broker
	$(BIN)/connect dev

test: install system-deps broker
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

lint: install
	$(BIN)/ruff check services shared tests bench
	$(BIN)/ruff format --check services shared tests bench
	$(BIN)/mypy

# Re-resolve both locks after changing pyproject.toml's dependencies (uv only resolves; pip installs).
# --universal: one lock for every platform (the image may be built for arm64); hashes for every file.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'
lock: | $(BIN)/python
	$(BIN)/pip install -q 'uv==$(UV_VERSION)'
	$(UV_COMPILE) -o $(RUNTIME_LOCK)
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK)

# The PrometheusRule (deploy/k8s) is written from deploy/prometheus/alerts.yml: run after editing the alerts.
prometheusrule: install
	$(BIN)/python deploy/prometheus/to_prometheusrule.py

# Regenerate the committed AsyncAPI document after changing messages or consumers.
asyncapi: install
	$(BIN)/faststream docs gen services.asyncapi:docs --out docs/asyncapi.json

clean:
	rm -rf $(VENV) var
