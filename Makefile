# The project's interface: every command a user or CI runs is a target here.
# Areas own their own fragment in mk/*.mk so the file stays small.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE ?= $(HOME)/.cache/vaultsync
VENV_KEY := $(shell sha256sum constraints.txt | cut -c1-12)
VENV := $(CACHE)/venv-$(VENV_KEY)
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(CACHE)/bin/current:$(PATH)
export KUBECONFIG ?= $(CURDIR)/.testenv/kubeconfig
# The venv is shared by every clone; this clone's own sources win over its editable install.
export PYTHONPATH := $(CURDIR)/operator$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help venv lint typecheck unit test run

help:
	@echo "make demo   - see vaultsync sync and rotate a secret end to end"
	@echo "make test   - install what is missing, start the test environment, run every test"
	@echo "make run    - run the operator in the foreground against \$$KUBECONFIG"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## / - /'

# Dependencies live in a venv outside the repo, keyed by the pinned set; only the
# project itself is (re)installed, editable, from whichever clone runs make.
$(VENV)/.installed:  # the key in $(VENV) already names the pinned set
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip "setuptools>=77" wheel
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed
	@$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || $(VENV)/bin/pip install --no-deps --no-build-isolation -e .

lint: venv ## ruff, import contracts
	$(VENV)/bin/ruff check operator tests bench demo
	$(VENV)/bin/ruff format --check operator tests bench demo
	cd operator && $(VENV)/bin/lint-imports --config ../.importlinter

typecheck: venv ## mypy --strict on the package
	$(VENV)/bin/mypy

unit: venv ## unit tests only (no servers)
	$(PY) -m pytest tests/unit

run: venv ## the operator in the foreground
	$(VENV)/bin/vaultsync run

-include mk/*.mk

# Areas add what must exist before pytest starts (servers to build) to TEST_PREREQS, and a
# target that runs a suite of its own after pytest to TEST_SUITES (mk/kind.mk): each runs
# even when pytest or an earlier one failed, and `make test` fails if any of them did.
# SUBMAKE, never $(MAKE) itself, in recipes that also run tests: make executes any recipe
# line naming $(MAKE) even under `make -n`, which would run the whole suite.
SUBMAKE = $(MAKE) --no-print-directory
test: venv lint typecheck $(TEST_PREREQS) ## everything: unit, cluster, providers, e2e, kind
	status=0; $(PY) -m pytest tests || status=1; \
	for suite in $(TEST_SUITES); do $(SUBMAKE) $$suite || status=1; done; \
	exit $$status

venv-path: ## print the venv in use (for scripts and helpers)
	@echo $(VENV)
