# The local Kubernetes cluster for the end-to-end tests (tests/env, docs/testenv.md).
# Binaries are built from the Go module proxy into $(CACHE)/bin; the cluster's state and
# kubeconfig live in this checkout's .testenv/.

TESTENV := VAULTSYNC_CACHE=$(CACHE) $(PY) -m tests.env

.PHONY: tools cluster-up cluster-down cluster-status

tools: venv ## build (or reuse) etcd, Kubernetes, kwok, kubectl and helm
	$(TESTENV) tools

cluster-up: venv ## start (or reuse) the local cluster; kubeconfig in .testenv/kubeconfig
	$(TESTENV) up

cluster-down: venv ## delete the local cluster and stop its processes
	$(TESTENV) down

cluster-status: venv ## is the local cluster running, which version, which nodes
	$(TESTENV) status

# The cold build takes longer than one test may; do it before pytest starts. Tests pointed
# at another cluster (VAULTSYNC_TEST_KUBECONFIG) need neither.
ifndef VAULTSYNC_TEST_KUBECONFIG
TEST_PREREQS += cluster-up
endif
