"""The two sizes of the chaos suite: `short` runs inside `make test`, `full` on demand.

`make chaos` runs the short form; `make chaos CHAOS=full` (VAULTSYNC_CHAOS=full) the full one.
Every bound the suite asserts is here, stated once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

FORM_ENV = "VAULTSYNC_CHAOS"


@dataclass(frozen=True)
class Form:
    name: str
    moto_entries: int
    vault_entries: int
    workload_every: int  # every n-th ExternalSecret's Secret has an opted-in Deployment
    refresh: str
    lease: tuple[str, str, str]  # duration, renew deadline, retry period
    random_kills: int  # SIGKILL of the leader at a random moment under churn
    pending_kills: int  # SIGKILL of the leader while a Secret carries the pending-restart mark
    fault_seconds: float  # how long each vault fault lasts
    deletions: int  # ExternalSecrets deleted during faults
    rotations_per_second: float
    convergence_bound: float  # seconds after a fault stops until every Secret and restart is done
    failover_bound: float  # seconds from SIGKILL of the leader to a new Lease holder
    setup_bound: float  # seconds for the first sync of everything
    sample_seconds: float  # between two checks of every Secret and Deployment
    timeout: float  # the whole test, in place of pytest-timeout's default


SHORT = Form(
    name="short",
    moto_entries=30,
    vault_entries=10,
    workload_every=4,
    refresh="2s",
    # The defaults: the e2e suite's 4/3/1 s lost the Lease over and over at a load average
    # of 40 on two cores (a leader that cannot renew within 3 s stops), and nothing converged.
    lease=("15s", "10s", "2s"),
    random_kills=1,
    pending_kills=1,
    fault_seconds=4.0,
    deletions=3,
    rotations_per_second=3.0,
    convergence_bound=150.0,
    failover_bound=60.0,
    setup_bound=180.0,
    sample_seconds=0.5,
    timeout=1200.0,
)

FULL = Form(
    name="full",
    moto_entries=800,
    vault_entries=200,
    workload_every=20,
    refresh="60s",
    lease=("15s", "10s", "2s"),
    random_kills=6,
    pending_kills=4,
    fault_seconds=10.0,
    deletions=10,
    rotations_per_second=5.0,
    convergence_bound=420.0,
    failover_bound=60.0,
    setup_bound=900.0,
    sample_seconds=2.0,
    timeout=4 * 3600.0,
)


def selected() -> Form:
    name = os.environ.get(FORM_ENV, "short")
    forms = {form.name: form for form in (SHORT, FULL)}
    if name not in forms:
        raise ValueError(f"{FORM_ENV}={name!r}: must be one of {sorted(forms)}")
    return forms[name]
