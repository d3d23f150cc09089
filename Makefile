# DeCOR Gateway — the two commands a new user needs:
#   make demo [DURATION=40]   set up, start the local services, run gateway + simulators
#   make test                 set up, start the local services, run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?=
DEVICES ?= 4
INTERVAL ?= 1.0
PYTEST_ARGS ?=

.PHONY: setup services services-down demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

services:
	scripts/services up

services-down:
	scripts/services down

demo: setup services
	DURATION="$(DURATION)" DEVICES="$(DEVICES)" INTERVAL="$(INTERVAL)" scripts/demo

test: setup services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup services
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
