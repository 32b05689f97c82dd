"""`python -m vaultsync` is the `vaultsync` command."""

import sys

from vaultsync.cli import main

sys.exit(main())
