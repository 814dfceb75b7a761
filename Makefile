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

.PHONY: run test lint install java chromium

run: install java
	snakemake --cores all results/tables.md

# Test modules run side by side on up to 4 pytest-xdist workers (one per core), a module per worker at a time
# (--dist loadfile: a module's built pipeline is built once); the minutes-long end-to-end modules are collected
# first and not re-sorted by xdist (--no-loadscope-reorder, see tests/conftest.py), so neither core idles at the end.
test: install java chromium
	python -m pytest -q --durations=25 --numprocesses auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# ruff over the Python code, snakefmt over the Snakefile and rules (both configured in pyproject.toml).
lint: install
	ruff check .
	snakefmt --check Snakefile rules/

install: $(VENV)/.installed

# pip byte-compiles what it installs one file at a time: 201 s of install on 2 cores. Installing with
# --no-compile and compiling on every core afterwards took 163 s. Compiled it must be: where
# PYTHONDONTWRITEBYTECODE is set (as on this machine) nothing compiled at run time is kept, and every job
# then took 28 s instead of 11 s to import torch and transformers. A few files written for newer
# Pythons do not compile (pip skips them too), hence -qq and || true.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[test]'
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $@

# pycocoevalcap's PTB tokenizer and METEOR need a Java runtime.
java:
	@command -v java >/dev/null || { apt-get update -q && apt-get install -y -q default-jre-headless; }

# The review page's browser test (tests/test_review_browser.py) needs Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
