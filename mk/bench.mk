# The benchmark (bench/, docs/benchmarks.md): vaultsync and its peers on the same load, on a
# kwok cluster of its own (bench/.work/), against one counting moto server (or --provider).
#   make bench                          the recorded size, N=10,000 over M=1,000 keys
#   make bench BENCH_ARGS="--n 500 --m 50 --namespaces 10"   a quick run
#   make bench BENCH_ARGS="--provider azure"   vaultsync alone against Azure Key Vault (the test
#                                       emulator) or, with vault, OpenBao; bench/results/latest-<provider>.json
# The peers (External Secrets Operator; Stakater Reloader if the module proxy serves it) are
# built from the Go module proxy on first use and cached in $(CACHE)/bin.

BENCH_ARGS ?=
BENCH := VAULTSYNC_CACHE=$(CACHE) $(PY) -m bench

.PHONY: bench bench-quick bench-peers bench-regexps

bench: venv runtime ## the benchmark: bench/results/latest.json and a summary (BENCH_ARGS="--n 500 --m 50" for a quick run)
	$(BENCH) $(BENCH_ARGS)

bench-quick: venv runtime ## a small benchmark run (N=500, M=50, 10 namespaces) while developing
	$(BENCH) --n 500 --m 50 --namespaces 10 --memory-points 0,100 $(BENCH_ARGS)

bench-peers: venv ## build (or reuse) the peers the benchmark compares against
	VAULTSYNC_CACHE=$(CACHE) $(PY) -m bench.peers.build

bench-regexps: venv ## what tenants' regexps cost on RE2 (the figures behind the regexp work budget)
	$(PY) -m bench.regexps
