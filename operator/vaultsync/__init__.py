"""vaultsync: keep Kubernetes Secrets in sync with external vaults and roll what uses them."""

__version__ = "0.1.0"
