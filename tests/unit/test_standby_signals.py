"""A stop signal around the moment the Lease is won is never lost and never kills the
process with the Lease held (cli._standby): both are races a CI run under load once hit."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import cast

from vaultsync.cli import STOP_SIGNALS, _standby
from vaultsync.leader import Leadership


class _WinningLeadership:
    """Wins the Lease on the first try; `signal_while_winning` sends SIGTERM to this process
    while that winning request is still in flight."""

    identity = "test_standby"

    def __init__(self, *, signal_while_winning: bool) -> None:
        self._signal = signal_while_winning
        self.released = False

    async def acquire(self, stop: asyncio.Event) -> bool:
        if self._signal:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 5)  # the signal reaches the loop mid-request
        return True

    async def release(self) -> None:
        self.released = True


def _restore_default_handlers() -> None:
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)


def test_a_signal_while_the_lease_is_being_won_releases_it_and_stops() -> None:
    leadership = _WinningLeadership(signal_while_winning=True)

    async def scenario() -> bool:
        try:
            return await _standby(cast(Leadership, leadership))
        finally:
            _restore_default_handlers()

    assert asyncio.run(scenario()) is False
    assert leadership.released


def test_a_signal_after_the_win_and_before_kopf_installs_its_handler_reaches_kopf() -> None:
    leadership = _WinningLeadership(signal_while_winning=False)

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        try:
            assert await _standby(cast(Leadership, leadership))
            os.kill(os.getpid(), signal.SIGTERM)  # before kopf has replaced the handler
            await asyncio.sleep(0.01)
            kopf_saw: asyncio.Future[int] = loop.create_future()
            loop.add_signal_handler(signal.SIGTERM, kopf_saw.set_result, signal.SIGTERM)
            return await asyncio.wait_for(kopf_saw, 5)
        finally:
            _restore_default_handlers()

    assert asyncio.run(scenario()) == signal.SIGTERM
    assert not leadership.released
