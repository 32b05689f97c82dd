# The Helm chart: its CRDs (copied from crds/), its README values table, and
# `make chart-test` (lint, render, server-side dry run, install, uninstall).

CHART := charts/vaultsync

.PHONY: chart-crds chart-docs chart-test

chart-crds: ## copy crds/ into the chart (the chart's CRDs must equal crds/ byte for byte)
	rm -rf $(CHART)/files/crds
	mkdir -p $(CHART)/files/crds
	cp crds/*.yaml $(CHART)/files/crds/

chart-docs: venv ## regenerate the chart README's values table from values.yaml
	$(PY) mk/chart_docs.py

# The chart tests build helm if needed and start the local cluster (or use
# VAULTSYNC_TEST_KUBECONFIG); the installed Deployment runs the image vaultsync:dev.
chart-test: venv tools ## helm lint, template (4 value sets), server-side dry run, install, uninstall
	VAULTSYNC_CACHE=$(CACHE) $(PY) -m pytest tests/chart

# tests/chart needs helm, which `make tools` builds with the other test binaries.
TEST_PREREQS += tools

.PHONY: crds
crds: venv ## write spec.provider of the store CRDs from the provider models, then the chart's copies
	$(PY) mk/crds.py
	$(MAKE) -s chart-crds
