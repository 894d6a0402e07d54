# Neti: two commands do everything on a fresh Debian 12 machine (as root):
#   make demo   the lab fleet with the console (no AWS account needed)
#   make test   the test suite against real ZooKeeper, iptables, ipset and moto
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
DEMO_ARGS ?= --hosts 40 --vpc 25 --unregistered 5

.PHONY: test demo deps venv lint bench clean

test: deps venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

demo: deps venv
	$(BIN)/neti lab up $(DEMO_ARGS)

deps:
	@scripts/install-deps

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

bench: deps venv
	$(BIN)/python bench/registration.py --hosts 200
	$(BIN)/python bench/convergence.py --agents 20
	$(BIN)/python bench/apply.py --members 1000
	$(BIN)/python bench/console.py --hosts 10000
	$(BIN)/python bench/lab_down.py --hosts 40

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
