"""vaultsync's test suite; a package so `tests.env` is importable from tests and `python -m`."""
