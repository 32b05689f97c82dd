"""The `vaultsync` subcommands besides `run`: one module each, registered by `cli.main`.

Each module exposes `register(subparsers) -> None`, which adds its parser and sets
`handler` (a function of the parsed arguments returning the exit code) as its default.
"""

from __future__ import annotations

from vaultsync.commands import convert

COMMANDS = (convert,)
