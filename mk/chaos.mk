# The fault-injection suite (tests/chaos, docs/reliability.md "Chaos suite"): the real
# operator, two replicas, keys rotating, and every fault of issue 12 injected in turn.
# `make test` runs its short form (tests/chaos is under tests/); `make chaos CHAOS=full`
# runs the full one (1,000 ExternalSecrets, 10 leader kills with the default Lease
# timings). Each run writes tests/chaos/results/<form>.json. Toxiproxy is built by
# `make tools` with the cluster's binaries (tests/env/tools.py).

CHAOS ?= short

.PHONY: chaos

chaos: venv runtime tools vault-bin ## fault-injection suite (short form; CHAOS=full for the full one)
	VAULTSYNC_CACHE=$(CACHE) VAULTSYNC_CHAOS=$(CHAOS) $(PY) -m pytest tests/chaos -x -q -s -rA
