"""The `vaultsync` command: `vaultsync run` starts the operator, `--version` says which."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from typing import Any

import kopf

from vaultsync import __version__, logsafety
from vaultsync.config import Config, add_run_arguments, from_arguments
from vaultsync.registry import REGISTRY, UnstoredMemories


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaultsync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vaultsync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator against the current cluster")
    add_run_arguments(run)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_operator(from_arguments(args))
    return 2  # argparse rejects unknown commands before this


def run_operator(config: Config) -> int:
    from vaultsync import handlers  # noqa: F401  (registers the handlers with kopf)

    configure_logging(config.verbose)
    asyncio.run(
        kopf.operator(
            registry=REGISTRY,
            memories=UnstoredMemories(),
            clusterwide=config.clusterwide,
            namespaces=list(config.namespaces),
            standalone=config.peering is None,
            **_peering(config),
            liveness_endpoint=f"http://{config.health_address}:{config.health_port}/healthz",
            memo=kopf.Memo(config=config),
        )
    )
    return 0


def configure_logging(verbose: bool) -> None:
    """JSON lines on stderr; `verbose` is DEBUG, yet never the SDKs' (see `logsafety`)."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    logsafety.install()
    if not verbose:  # one line per watch event is noise at ten thousand objects
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _peering(config: Config) -> dict[str, Any]:
    """kopf pauses every peer that shares the highest priority, so each replica draws its own."""
    if config.peering is None:
        return {}
    return {"peering_name": config.peering, "priority": secrets.randbelow(2**31)}


if __name__ == "__main__":
    sys.exit(main())
