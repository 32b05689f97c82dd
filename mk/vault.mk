# The HashiCorp Vault server the provider tests run against, built from the Go module proxy
# (tests/env/go/vault) and cached as $(CACHE)/bin/vault-<version>.

VAULT_SERVER := VAULTSYNC_CACHE=$(CACHE) $(PY) -m tests.providers.servers.vault

.PHONY: vault-bin vault-server

vault-bin: venv ## build (or reuse) the pinned Vault binary for the provider tests
	$(VAULT_SERVER) build

vault-server: vault-bin ## a Vault dev server in the foreground, for trying the vault provider
	$(VAULT_SERVER) run

# A cold build takes ~10 minutes; do it before pytest starts.
TEST_PREREQS += vault-bin
