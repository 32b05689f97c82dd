# `make demo`: vaultsync end to end on this machine, from nothing running to a rolled
# Deployment (demo/ says how). It uses the current kubeconfig if that cluster answers, else
# kind if Docker and kind are installed, else the local control plane (tests/env), and stops
# everything it started except the cluster. DEMO_ARGS=--keep keeps the demo namespace.

.PHONY: demo

demo: venv runtime
	VAULTSYNC_CACHE=$(CACHE) $(PY) -m demo $(DEMO_ARGS)
