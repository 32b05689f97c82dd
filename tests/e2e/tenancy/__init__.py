"""Tenant-attack tests: a hostile app team against the operator and its neighbours (see conftest.py)."""
