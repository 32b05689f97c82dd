"""`make demo`: vaultsync end to end on this machine, from nothing running to a rolled Deployment.

Run it as `python -m demo` from the repository root (the Makefile does); `--help` lists its
options. `demo.cluster` finds or starts a cluster, `demo.moto` runs the local AWS Secrets
Manager, and `demo.__main__` walks through the story step by step.
"""
