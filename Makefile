# Set-up and the two commands of the README.
#   make run    install everything, then run the main job on the default profile, independent jobs side by
#               side on every core (each job pins itself to one thread: the same bytes as --cores 1)
#   make test   install everything (with test dependencies), then run the whole test suite
#   make lint   ruff and snakefmt, as CI runs them before the tests

VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# Offline by design: nothing is fetched from the Hugging Face hub at run time.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test lint install lock java chromium

run: install java
	snakemake --cores all results/tables.md

# Test modules run side by side on up to 4 pytest-xdist workers (one per core), a module per worker at a time
# (--dist loadfile: a module's built pipeline is built once); the minutes-long end-to-end modules are collected
# first and not re-sorted by xdist (--no-loadscope-reorder, see tests/conftest.py), so neither core idles at the end.
test: install java chromium
	python -m pytest -q --durations=25 --numprocesses auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# ruff (lint and format) over the Python code, snakefmt over the Snakefile and rules (configured in pyproject.toml).
lint: install
	ruff check .
	ruff format --check .
	snakefmt --check Snakefile rules/

install: $(VENV)/.installed

# The environment is requirements.lock: every package, transitive ones included, pinned with its hashes
# (uv pip compile from pyproject.toml, all extras). uv installs it in parallel and byte-compiles on every core.
# Compiled it must be: where PYTHONDONTWRITEBYTECODE is set (as on this machine) nothing compiled at run time
# is kept, and every job then takes 28 s instead of 11 s to import torch and transformers.
UV_VERSION := 0.13.10
UV := $(BIN)/uv
# uv reads no pip configuration: hand it the machine's package mirrors and wheel folder, where pip has any
# (the hashes in the lock decide what is accepted, wherever a file comes from).
PIP_MIRRORS := $(shell python3 -m pip config get global.extra-index-url 2>/dev/null) $(PIP_EXTRA_INDEX_URL)
PIP_WHEELS := $(shell python3 -m pip config get global.find-links 2>/dev/null) $(PIP_FIND_LINKS)
UV_SOURCES := --index-strategy unsafe-best-match $(foreach u,$(PIP_MIRRORS),--extra-index-url $(u)) \
	$(foreach d,$(sort $(PIP_WHEELS)),--find-links $(d))

$(UV):
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)

$(VENV)/.installed: requirements.lock pyproject.toml | $(UV)
	$(UV) pip sync -q --python $(BIN)/python --compile-bytecode $(UV_SOURCES) requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# Refresh requirements.lock after editing pyproject.toml's dependencies; pins not touched by the edit stay.
# `make lock LOCK_ARGS=--upgrade` moves every unpinned transitive package to its newest release. Resolved on
# PyPI alone, for every platform (--universal), so the lock holds the hash of every file of each release.
lock: | $(UV)
	cp requirements.lock requirements.lock.new
	$(UV) pip compile -q pyproject.toml --all-extras --generate-hashes --universal --python-version 3.11 \
		--no-emit-index-url --no-emit-find-links --custom-compile-command "make lock" $(LOCK_ARGS) -o requirements.lock.new \
		|| { rm -f requirements.lock.new; exit 1; }
	@# replaced only when it changed: a new modification time alone would make the next make reinstall everything
	@if cmp -s requirements.lock.new requirements.lock; then rm requirements.lock.new; echo "requirements.lock: unchanged"; \
	else mv requirements.lock.new requirements.lock; echo "requirements.lock: updated"; fi

# pycocoevalcap's PTB tokenizer and METEOR need a Java runtime.
java:
	@command -v java >/dev/null || { apt-get update -q && apt-get install -y -q default-jre-headless; }

# The review page's browser test (tests/test_review_browser.py) needs Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
