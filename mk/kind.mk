# `make e2e-kind`: the end-to-end suite on a kind cluster, for machines that have Docker
# and kind (the build machines do not: no registry, so no kind node image). It creates
# the cluster from kind-config.yaml, loads vaultsync:dev, installs the chart watching one
# namespace (so the suite's own operators own the test namespaces), checks that the
# installed operator really syncs the examples, then runs every e2e test against it.

KIND ?= kind
KIND_CLUSTER ?= vaultsync
KIND_NODE_IMAGE ?=
KIND_KUBECONFIG := $(CURDIR)/.testenv/kind-kubeconfig
KIND_DEMO_NAMESPACE := vaultsync-demo
KIND_HELM = helm --kubeconfig $(KIND_KUBECONFIG)
KIND_KUBECTL = kubectl --kubeconfig $(KIND_KUBECONFIG)

.PHONY: e2e-kind kind-down kind-prereqs

kind-prereqs:
	@command -v $(KIND) >/dev/null 2>&1 || { \
		echo "e2e-kind: '$(KIND)' is not installed. Install kind (and Docker) to run the suite on kind;"; \
		echo "          without them, 'make test' runs the same suite on the local control plane."; \
		exit 1; } >&2
	@timeout 15 $(DOCKER) info >/dev/null 2>&1 || { \
		echo "e2e-kind: no Docker engine answers to '$(DOCKER) info' (set DOCKER=docker to use the one on PATH)."; \
		exit 1; } >&2

e2e-kind: kind-prereqs venv tools image ## e2e tests on a kind cluster (needs Docker and kind)
	mkdir -p $(dir $(KIND_KUBECONFIG))
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
		$(KIND) create cluster --name $(KIND_CLUSTER) --config kind-config.yaml --wait 180s \
			$(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))
	$(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	$(KIND_KUBECTL) create namespace $(KIND_DEMO_NAMESPACE) --dry-run=client -o yaml | $(KIND_KUBECTL) apply -f -
	# The CRDs are applied from crds/, not owned by this release: the chart tests install
	# and uninstall releases of their own that take the CRDs over for a while.
	$(KIND_KUBECTL) apply --server-side --force-conflicts -f crds/
	$(KIND_HELM) upgrade --install vaultsync $(CHART) --namespace vaultsync --create-namespace \
		--set installCRDs=false --set image.tag=$(lastword $(subst :, ,$(IMAGE))) \
		--set 'watchNamespaces={$(KIND_DEMO_NAMESPACE)}' --wait --timeout 180s
	$(KIND_KUBECTL) -n $(KIND_DEMO_NAMESPACE) apply -f examples/fake-store.yaml -f examples/externalsecret.yaml
	$(KIND_KUBECTL) -n $(KIND_DEMO_NAMESPACE) wait --for=condition=Ready externalsecret/db-creds --timeout=120s
	VAULTSYNC_TEST_KUBECONFIG=$(KIND_KUBECONFIG) VAULTSYNC_CACHE=$(CACHE) $(PY) -m pytest -m e2e tests

kind-down: ## delete the kind cluster made by e2e-kind
	$(KIND) delete cluster --name $(KIND_CLUSTER)
