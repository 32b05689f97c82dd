"""The `vaultsync` subcommands an operator's users run (kubectl-style), one module each.

Each module exposes `register(subparsers)`, which adds its parser and sets `handler`;
`cli.main` registers every module listed in `COMMANDS`.
"""

from __future__ import annotations

from vaultsync.commands import convert, impact, render, respond, status, sync

COMMANDS = (status, sync, render, impact, respond, convert)
