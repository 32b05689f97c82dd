# The fault-injection suite (tests/chaos, docs/reliability.md "Chaos suite"): the real
# operator, two replicas, keys rotating, and every fault of issue 12 injected in turn.
# `make test` runs its short form (tests/chaos is under tests/); `make chaos CHAOS=full`
# runs the full one (>= 1,000 ExternalSecrets, >= 10 leader kills with the default Lease
# timings). Each run writes tests/chaos/results/<form>.json.

CHAOS ?= short

.PHONY: chaos toxiproxy

toxiproxy: venv ## build (or reuse) the Toxiproxy server the chaos suite puts in front of the vaults
	VAULTSYNC_CACHE=$(CACHE) nice -n 19 $(PY) -c 'from tests.env import tools; tools.ensure_module(next(m for m in tools.MODULES if m.directory == "toxiproxy"))'

chaos: venv runtime tools toxiproxy vault-bin ## fault-injection suite; CHAOS=full for the full form
	VAULTSYNC_CACHE=$(CACHE) VAULTSYNC_CHAOS=$(CHAOS) $(PY) -m pytest tests/chaos -x -q -rA

TEST_PREREQS += toxiproxy
