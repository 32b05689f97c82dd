"""The provider registry: the name under `spec.provider` → the backend that serves it.

Adding a backend is one module in this package and one line here.
"""

from __future__ import annotations

from vaultsync.providers.aws import AwsProvider
from vaultsync.providers.azure import AzureKeyVaultProvider
from vaultsync.providers.base import Provider
from vaultsync.providers.fake import FakeProvider
from vaultsync.providers.vault import VaultProvider

PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        AwsProvider(),
        AzureKeyVaultProvider(),
        FakeProvider(),
        VaultProvider(),
    )
}
