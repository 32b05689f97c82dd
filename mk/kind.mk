# `make e2e-kind`: vaultsync on a real kind cluster, the operator running as the chart's pod
# and real app containers reading the Secrets it writes (tests/kind, docs/testenv.md).
#
# On the build machines nothing can be pulled, so the node image is built here from the
# package registries (`make kind-node`, tests/env/kindnode/) and kind itself from the
# sigs.k8s.io/kind module. On a laptop the same target runs with the public image:
#   make e2e-kind KIND_NODE_IMAGE=kindest/node:v1.36.3

# One cluster per checkout (several clones share a machine and its Docker engine).
KIND_CLUSTER ?= vaultsync-$(shell printf %s '$(CURDIR)' | sha256sum | cut -c1-6)
# kind writes the cluster's credentials here only: never into $KUBECONFIG (the kwok cluster's,
# which the Makefile exports) or ~/.kube/config.
KIND_KUBECONFIG := $(CURDIR)/.testenv/kind-kubeconfig
KIND_RELEASE_NAMESPACE := vaultsync
# The kind binary built from sigs.k8s.io/kind (tests/env/tools.py pins it); KIND=kind uses
# one on PATH instead.
KIND ?= $(CACHE)/bin/current/kind
# Empty: the node image built here, named by its content key (vaultsync.local/kind-node:...).
KIND_NODE_IMAGE ?=
KIND_LOCAL_NODE_IMAGE = $(shell VAULTSYNC_CACHE=$(CACHE) $(PY) -m tests.env kind-node-tag)
KIND_IMAGE = $(or $(KIND_NODE_IMAGE),$(KIND_LOCAL_NODE_IMAGE))
# kind runs nodes with --privileged, which this machine's engine refuses (no CAP_SYS_RESOURCE
# in the bounding set): the docker shim (tests/env/kindnode/shim/docker) is first on PATH for
# kind's commands, and rewrites --privileged only where a probe shows it fails.
KIND_SHIM_DIR := $(CURDIR)/tests/env/kindnode/shim
KIND_RUN = PATH=$(KIND_SHIM_DIR):$$PATH VAULTSYNC_REAL_DOCKER=$(DOCKER) \
	VAULTSYNC_KIND_UNPRIVILEGED=$$($(CURDIR)/mk/kind-privileged-probe.sh $(DOCKER)) $(KIND)
KIND_TIMEOUT ?= 600s

.PHONY: e2e-kind kind-down kind-prereqs kind-node kind-bin kind-up kind-name

kind-prereqs:
	@test -x $(KIND) || command -v $(KIND) >/dev/null 2>&1 || { \
		echo "e2e-kind: '$(KIND)' is not installed. 'make kind-bin' builds it from the Go module proxy"; \
		echo "          ('make test' and 'make e2e-kind' do so first); KIND=kind uses one on PATH."; \
		exit 1; } >&2
	@timeout 15 $(DOCKER) info >/dev/null 2>&1 || { \
		echo "e2e-kind: no Docker engine answers to '$(DOCKER) info' ('make docker-engine' starts one)."; \
		exit 1; } >&2

kind-bin: venv ## build (or reuse) kind from the sigs.k8s.io/kind module
	VAULTSYNC_CACHE=$(CACHE) $(PY) -m tests.env kind-bin

kind-node: venv docker-engine base-image ## build (or reuse) the kind node image from the package registries
	VAULTSYNC_CACHE=$(CACHE) nice -n 19 $(PY) -m tests.env kind-node

# The node image is built only when no image was named (the public one is pulled by kind).
kind-up: venv tools kind-bin docker-engine $(if $(KIND_NODE_IMAGE),,kind-node) kind-prereqs ## create (or reuse) the kind cluster
	mkdir -p $(dir $(KIND_KUBECONFIG))
	@# A cluster on another node image (the content key changed) is stale: make it anew.
	@if $(KIND_RUN) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' && [ "$$($(DOCKER) inspect \
		-f '{{.Config.Image}}' $(KIND_CLUSTER)-control-plane 2>/dev/null)" != "$(KIND_IMAGE)" ]; then \
		echo "kind-up: $(KIND_CLUSTER) runs another node image than $(KIND_IMAGE): recreating it"; \
		$(KIND_RUN) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG); fi
	$(KIND_RUN) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
		$(KIND_RUN) create cluster --name $(KIND_CLUSTER) --config kind-config.yaml \
			--image $(KIND_IMAGE) --wait $(KIND_TIMEOUT) --retain --kubeconfig $(KIND_KUBECONFIG)
	$(KIND_RUN) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)

# tests/kind loads $(IMAGE) and the app image into the nodes and installs the chart itself.
KIND_TEST_ENV = VAULTSYNC_KIND_KUBECONFIG=$(KIND_KUBECONFIG) VAULTSYNC_KIND_CLUSTER=$(KIND_CLUSTER) \
	VAULTSYNC_KIND_RUN="$(KIND_RUN)" VAULTSYNC_CACHE=$(CACHE) IMAGE=$(IMAGE) DOCKER=$(DOCKER)

e2e-kind: kind-up image ## the operator as the chart's pod on a kind cluster, with real app pods (tests/kind)
	$(KIND_TEST_ENV) $(PY) -m pytest tests/kind -x

kind-name: ## print this checkout's kind cluster name
	@echo $(KIND_CLUSTER)

kind-down: ## delete the kind cluster made by e2e-kind
	$(KIND_RUN) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)

# `make test` runs tests/kind. kind and the node image are built before pytest starts (a
# build that fails stops make there, with its error). The cluster exists only for its own
# suite, after the kwok-based ones, so that its nodes never take the cores from them:
# test-kind creates it (or reuses this checkout's), runs tests/kind and deletes it, pass,
# fail or interrupt. If kind cannot create it, test-kind fails with kind's error and saves
# the nodes' logs first.
# Tests pointed at another cluster (VAULTSYNC_TEST_KUBECONFIG) build and start nothing.
KIND_LOGS := $(CURDIR)/.testenv/kind-logs
ifndef VAULTSYNC_TEST_KUBECONFIG
TEST_PREREQS += kind-bin $(if $(KIND_NODE_IMAGE),,kind-node) kind-prereqs
TEST_SUITES += test-kind
endif

.PHONY: test-kind
test-kind: venv image ## make test's kind part: the cluster, tests/kind, the cluster deleted (pass or fail)
	@trap '$(KIND_RUN) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)' EXIT; \
	if ! $(SUBMAKE) kind-up; then \
		rm -rf $(KIND_LOGS); $(KIND_RUN) export logs $(KIND_LOGS) --name $(KIND_CLUSTER) >/dev/null 2>&1; \
		echo "make test: the kind cluster $(KIND_CLUSTER) could not be created (the reason is above;" \
			"the nodes' logs, if any started, are in $(KIND_LOGS))" >&2; \
		exit 1; \
	fi; \
	$(KIND_TEST_ENV) $(PY) -m pytest tests/kind -x
