"""The `vaultsync` command: `vaultsync run` starts the operator, `--version` says which, and
the modules in `vaultsync.commands` add the tools for the people who run it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import sys

import kopf
from aiohttp import web
from prometheus_client import start_http_server

from vaultsync import __version__, logsafety
from vaultsync.commands import COMMANDS
from vaultsync.config import Config, add_run_arguments, from_arguments
from vaultsync.kube import Kube
from vaultsync.leader import Leadership, LeaseTiming
from vaultsync.metrics import LEADER
from vaultsync.readiness import TRACKER
from vaultsync.registry import REGISTRY, UnstoredMemories

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_HAND_ON_SECONDS = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaultsync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vaultsync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator against the current cluster")
    add_run_arguments(run)
    for command in COMMANDS:
        command.register(commands)
    args = parser.parse_args(argv)
    if args.command == "run":
        config = from_arguments(args)
        try:
            _timing(config)
        except ValueError as exc:
            parser.error(str(exc))
        return run_operator(config)
    return int(args.handler(args))


def run_operator(config: Config) -> int:
    from vaultsync import handlers, startup  # noqa: F401  (registers the handlers with kopf)

    configure_logging(config.verbose)
    TRACKER.configure(
        config.external_secret_metrics, config.external_secret_metrics_max_series, config.min_refresh_interval
    )
    return asyncio.run(_run(config))


async def _run(config: Config) -> int:
    """Without leader election: kopf and every service. With it: wait for the Lease, run
    while it is held, release it on a clean stop; exit 1 when it is lost."""
    # /metrics is up from the start, like /healthz: a standby's figures are part of the fleet.
    start_http_server(config.metrics_port)
    health = await _serve_health(config)
    try:
        if not config.leader_elect:
            LEADER.set(1)
            await _kopf(config, None)
            return 0
        return await _elected(config)
    finally:
        await health.cleanup()


async def _elected(config: Config) -> int:
    kube = Kube()
    try:
        leadership = Leadership(
            kube, config.operator_namespace, config.leader_election_id, _identity(), _timing(config)
        )
        if not await _standby(leadership):
            return 0
        # A lost Lease stops kopf the way a signal does: through kopf's own SIGTERM handler.
        # (kopf's stop_flag would leave a waiter pending after a real signal, and kopf waits
        # 5 s on such hung tasks before it exits.)
        leadership.on_lost(lambda: os.kill(os.getpid(), signal.SIGTERM))
        leadership.start_renewing()
        try:
            await _kopf(config, leadership)
        finally:
            await leadership.release()  # startup.stop released it already, after its services
        return 1 if leadership.lost else 0
    finally:
        await kube.close()


async def _kopf(config: Config, leadership: Leadership | None) -> None:
    await kopf.operator(
        registry=REGISTRY,
        memories=UnstoredMemories(),
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
        # The Lease, not kopf's peering, keeps other replicas idle: only its holder runs kopf.
        standalone=True,
        memo=kopf.Memo(config=config, leadership=leadership),
    )


async def _serve_health(config: Config) -> web.AppRunner:
    """One /healthz for the whole life of the process, standby and leader alike. (kopf's own
    liveness endpoint only opens once kopf runs: handing the port over from a standby's server
    to kopf's left a moment with nothing listening, and a probe then was refused or reset.)
    It answers from the event loop that runs everything, so an answer means that loop is alive,
    which is all kopf's endpoint told without probe handlers."""
    app = web.Application()
    app.router.add_get("/healthz", _alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.health_address, config.health_port).start()
    return runner


async def _standby(leadership: Leadership) -> bool:
    """Until the Lease is held, SIGTERM ends the wait (kopf's handler is not installed yet).

    A signal that lands while the winning request is in flight still stops: the Lease just
    won is released at once. From the win until kopf installs its own handlers, a signal is
    handed on to them (never the default action, which would exit holding the Lease)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    log.info("leader election: waiting for the Lease", extra={"identity": leadership.identity})
    acquired = await leadership.acquire(stop)
    if acquired and stop.is_set():
        await leadership.release()
        return False
    if acquired:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, _hand_on_to_kopf, loop, signum)
    return acquired


def _hand_on_to_kopf(loop: asyncio.AbstractEventLoop, signum: int) -> None:
    """Send the signal again shortly: by then kopf's handler replaces this one (else this
    one runs again and waits once more)."""
    loop.call_later(SIGNAL_HAND_ON_SECONDS, os.kill, os.getpid(), signum)


async def _alive(_: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def _identity() -> str:
    """client-go's: the pod name (hostname outside a pod) and a random suffix, so a
    restarted pod of the same name is a new candidate."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}_{secrets.token_hex(4)}"


def _timing(config: Config) -> LeaseTiming:
    return LeaseTiming(config.lease_duration, config.renew_deadline, config.retry_period)


def configure_logging(verbose: bool) -> None:
    """JSON lines on stderr; `verbose` is DEBUG, yet never the SDKs' (see `logsafety`)."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    logsafety.install()
    if not verbose:  # one line per watch event is noise at ten thousand objects
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
