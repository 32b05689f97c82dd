"""When a failed Kubernetes API request may be sent again, and how long to wait first.

The API server sheds load with 429 (API Priority and Fairness rejects a request before
any handler runs, so every verb may be resent), restarts behind load balancers (502,
503, 504, reset connections) and times out. A request is resent only when sending it
twice cannot do more than sending it once:

- 429 and a connection that was never established: the server did not see the request,
  so any verb is resent;
- 5xx, a reset connection or a timeout: only idempotent requests (GET, a PUT guarded by
  resourceVersion, a DELETE with preconditions, a PATCH that sets values, a TokenRequest).
  A POST that creates an object is resent only when its caller reads a 409 AlreadyExists
  as "maybe my own first attempt" (the HMAC key, a target Secret); an Event's POST never.

Waits grow exponentially with full jitter so replicas do not retry in step, a server's
Retry-After is honoured (jitter added on top, never less) but capped, and the whole
request has a time budget. The pure
functions here are the policy; `kube.Kube` applies it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vaultsync import constants as c

RETRYABLE_5XX = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of one request's retries; the defaults are in constants.py."""

    attempts: int = c.KUBE_RETRY_ATTEMPTS
    base_delay: float = c.KUBE_RETRY_BASE_SECONDS
    max_delay: float = c.KUBE_RETRY_MAX_DELAY_SECONDS
    max_retry_after: float = c.KUBE_RETRY_AFTER_CAP_SECONDS
    budget: float = c.KUBE_RETRY_BUDGET_SECONDS

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**retry)] (retry counts from 0)."""
        ceiling = min(self.max_delay, self.base_delay * (2**retry))
        return (rng or random).uniform(0.0, ceiling)

    def wait_for(self, status: int | None, retry_after: str | None, retry: int) -> float:
        """Seconds before resend `retry`: the server's Retry-After (capped) plus the jittered
        backoff, so clients turned away together do not come back together; without a
        Retry-After, the jittered backoff alone."""
        asked = parse_retry_after(retry_after)
        if asked is not None:
            return min(asked + self.backoff(retry), self.max_retry_after)
        if status == 429:  # throttled without a hint: at least a second, like client-go
            return max(1.0, self.backoff(retry))
        return self.backoff(retry)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the API server sends an integer); None if absent or not a number."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def retryable_status(status: int, idempotent: bool) -> bool:
    """429 for every request; a 5xx (not 501) only when resending is idempotent."""
    return status == 429 or (idempotent and status in RETRYABLE_5XX)
