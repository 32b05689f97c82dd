# The operator's runtime: only the package's own dependencies, exactly what the image holds.
# The e2e tests, `make demo` and `make bench` start the operator with this interpreter, so
# they exercise and measure what users run. The test venv also holds the official
# kubernetes client for the tests themselves; kopf imports that client whenever it is
# installed (about 43 MiB resident), and the operator does not need it.

RUNTIME_KEY := $(shell cat constraints.txt pyproject.toml | sha256sum | cut -c1-12)
RUNTIME := $(CACHE)/runtime-$(RUNTIME_KEY)
export VAULTSYNC_OPERATOR_PYTHON := $(RUNTIME)/bin/python

.PHONY: runtime

$(RUNTIME)/.installed:  # the key in $(RUNTIME) already names the pins and the dependency list
	python3 -m venv $(RUNTIME)
	$(RUNTIME)/bin/pip install -q -U pip
	python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' >$(RUNTIME)/requirements.txt
	$(RUNTIME)/bin/pip install -q -c constraints.txt -r $(RUNTIME)/requirements.txt
	env -u PYTHONPATH $(RUNTIME)/bin/pip check
	touch $@

runtime: $(RUNTIME)/.installed ## the operator's own venv (its dependencies only, as in the image)

TEST_PREREQS += runtime
