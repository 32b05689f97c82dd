"""What the scenarios need of the vault the operators read from, whichever provider it is.

The bench measures AWS Secrets Manager (moto, `bench/aws.py`), HashiCorp Vault (OpenBao,
`bench/vault.py`) and Azure Key Vault (the test emulator, `bench/azure.py`) the same way:
seeded with the same M keys and values, counted on the server side (every request the
operator makes, and the bytes of the answers where the server can say), and rotated by the
harness with requests that are not counted as the operator's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from bench.aws import ROTATION_KEY, key_name, value
from bench.operators import Body


class Remote(Protocol):
    name: str  # aws | vault | azure: the `--provider` that selects it

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def seed(self, keys: int) -> None:
        """Creates bench/key-0000 … and the rotation key; counts are reset after."""
        ...

    def rotate(self, key: str, generation: int) -> None: ...

    def rotate_many(self, keys: list[str], generation: int) -> None: ...

    def reset(self) -> None:
        """Zeroes the counts."""
        ...

    def summary(self) -> dict[str, float]:
        """The operator's requests since the last reset: `provider_requests`,
        `provider_bytes`, `provider_read_requests`, `provider_keys_read`, and the
        provider's own operations (`<operation>_requests`)."""
        ...

    def cost(self, requests_per_cycle: float, cycle_seconds: float) -> dict[str, float]:
        """What that many requests per refresh cycle mean for this provider (a bill, or a
        share of a throttle)."""
        ...

    def vaultsync_provider(self) -> Body:
        """The `spec.provider` of vaultsync's ClusterSecretStore for this vault."""
        ...

    def credentials(self) -> list[Body]:
        """The Secrets that store's credentials live in (in the credentials namespace)."""
        ...


class Seeded(ABC):
    """Seeding and rotations of a vault the harness writes one key at a time."""

    @abstractmethod
    def write(self, key: str, text: str) -> None:
        """A new version of `key` with the JSON document `text`, as the harness (uncounted)."""

    @abstractmethod
    def reset(self) -> None: ...

    def seed(self, keys: int) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: self.write(key_name(i), value(i, 1)), range(keys)))
        self.write(ROTATION_KEY, value("rotation", 1))
        self.reset()

    def rotate(self, key: str, generation: int) -> None:
        self.write(key, value(key, generation))

    def rotate_many(self, keys: list[str], generation: int) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda k: self.rotate(k, generation), keys))
