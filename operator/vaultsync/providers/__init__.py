"""The provider registry: the name under `spec.provider` → the backend that serves it.

Adding a backend is one module in this package, one line here and `make crds`
(its CRD block is generated from its config model: vaultsync.providers.schema). A backend's
module (and its SDK: boto3, hvac, azure) is imported the first time a store
uses it, so an operator that only talks to one vault does not carry the
memory of the other SDKs.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from vaultsync.providers.base import Provider


class _Registry(Mapping[str, Provider]):
    def __init__(self, locations: Mapping[str, str]) -> None:
        self._locations = dict(locations)
        self._loaded: dict[str, Provider] = {}

    def __getitem__(self, name: str) -> Provider:
        if name not in self._loaded:
            module, _, cls = self._locations[name].partition(":")
            provider = getattr(importlib.import_module(module), cls)()
            if not isinstance(provider, Provider) or provider.name != name:
                raise TypeError(f"{self._locations[name]} is not the {name!r} provider")
            self._loaded[name] = provider
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations)

    def __len__(self) -> int:
        return len(self._locations)


PROVIDERS: Mapping[str, Provider] = _Registry(
    {
        "aws": "vaultsync.providers.aws:AwsProvider",
        "vault": "vaultsync.providers.vault:VaultProvider",
        "azurekv": "vaultsync.providers.azure:AzureKeyVaultProvider",
        "fake": "vaultsync.providers.fake:FakeProvider",
    }
)
