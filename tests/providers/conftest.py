"""Fixtures that run the provider tests against every backend's real server.

Backends are the modules of `tests/providers/backends/` (see its `base.py` for
the convention). Each server starts at most once per session, on first use,
and is stopped at the end. A server that cannot start fails the tests that
need it, with the reason; nothing is skipped.

Provider clients are async; `async def` tests here run in a fresh event loop
each, which needs no plugin.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest

from tests.e2e.conftest import Vaultsync
from tests.env.kube import KubeApi
from tests.providers.backends.aws import AwsBackend
from tests.providers.backends.azure import AzureBackend
from tests.providers.backends.base import Backend, DetectingBackend, ListingBackend, LiveBackend

BACKENDS_PACKAGE = "tests.providers.backends"
NOT_BACKENDS = frozenset({"base", "credentials"})


def _backend_modules() -> dict[str, ModuleType]:
    found = pkgutil.iter_modules([str(Path(__file__).parent / "backends")])
    names = sorted(m.name for m in found if m.name not in NOT_BACKENDS)
    return {name: importlib.import_module(f"{BACKENDS_PACKAGE}.{name}") for name in names}


BACKEND_MODULES = _backend_modules()
# Backends whose provider detects changes by version stamps.
DETECTING_BACKENDS = ["aws", "awsparams", "azure", "vault"]
# Backends whose provider lists secrets (dataFrom.find); every real one does.
LISTING_BACKENDS = ["aws", "azure", "vault"]
LIVE_BACKENDS = [name for name, module in BACKEND_MODULES.items() if getattr(module, "LIVE", True)]


class Backends:
    """Starts each backend on first use and stops every one it started.

    A backend that failed to start is not tried again by every test: they all fail
    with the first error.
    """

    def __init__(self) -> None:
        self._started: dict[str, Backend] = {}
        self._failed: dict[str, Exception] = {}

    def get(self, name: str) -> Backend:
        if name in self._failed:
            raise RuntimeError(f"the {name} backend failed to start") from self._failed[name]
        if name not in self._started:
            try:
                self._started[name] = BACKEND_MODULES[name].start_backend()
            except Exception as exc:
                self._failed[name] = exc
                raise
        return self._started[name]

    def close(self) -> None:
        for backend in self._started.values():
            backend.close()


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    started = Backends()
    yield started
    started.close()


@pytest.fixture(scope="session", params=sorted(BACKEND_MODULES))
def backend(request: pytest.FixtureRequest, backends: Backends) -> Backend:
    """Every backend, the fake included."""
    return backends.get(request.param)


@pytest.fixture(scope="session", params=LIVE_BACKENDS)
def live_backend(request: pytest.FixtureRequest, backends: Backends) -> LiveBackend:
    """Every backend with a real server."""
    return cast(LiveBackend, backends.get(request.param))


@pytest.fixture(scope="session", params=DETECTING_BACKENDS)
def detecting_backend(request: pytest.FixtureRequest, backends: Backends) -> DetectingBackend:
    """Every backend whose provider has change detection."""
    return cast(DetectingBackend, backends.get(request.param))


@pytest.fixture(scope="session", params=LISTING_BACKENDS)
def listing_backend(request: pytest.FixtureRequest, backends: Backends) -> ListingBackend:
    """Every backend whose provider lists secrets."""
    return cast(ListingBackend, backends.get(request.param))


@pytest.fixture(scope="session")
def aws(backends: Backends) -> AwsBackend:
    return cast(AwsBackend, backends.get("aws"))


@pytest.fixture(scope="session")
def azure(backends: Backends) -> AzureBackend:
    return cast(AzureBackend, backends.get("azure"))


@pytest.fixture
def vs(kube_api: KubeApi, namespace: str, install_crds: list[str]) -> Vaultsync:
    """The test namespace's vaultsync objects, for the tests that run the operator."""
    return Vaultsync(kube_api, namespace)


@pytest.fixture
def operator(run_operator: Callable[..., Any], namespace: str) -> Iterator[Any]:
    with run_operator(namespace, "--namespace", namespace) as running:
        yield running


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**arguments))
    return True
