"""The Kubernetes client's pure policies: how long to wait before a resend, and what of a
422 or 403 Status may be repeated (fields or who refused, never the values its messages quote)."""

from __future__ import annotations

import json
import random

from vaultsync import constants as c
from vaultsync.kuberetry import RetryPolicy, parse_retry_after, retryable_status
from vaultsync.kubestatus import MAX_CAUSES, forbidden_cause, invalid_fields


def test_backoff_doubles_under_a_cap_with_full_jitter() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for retry in range(12):
        ceiling = min(c.KUBE_RETRY_MAX_DELAY_SECONDS, c.KUBE_RETRY_BASE_SECONDS * 2**retry)
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # jitter spreads over the whole range


def test_retry_after_is_honoured_up_to_the_cap_and_nonsense_is_ignored() -> None:
    policy = RetryPolicy()
    assert 3.0 <= policy.wait_for(429, "3", 0) <= 3.0 + c.KUBE_RETRY_BASE_SECONDS
    assert policy.wait_for(429, "86400", 0) == c.KUBE_RETRY_AFTER_CAP_SECONDS
    assert 2.0 <= policy.wait_for(503, "2", 5) <= 2.0 + c.KUBE_RETRY_MAX_DELAY_SECONDS
    waits = {policy.wait_for(429, "1", 2) for _ in range(20)}
    assert len(waits) > 1 and min(waits) >= 1.0  # never sooner than asked, not all at once
    assert 1.0 <= policy.wait_for(429, None, 0) <= c.KUBE_RETRY_MAX_DELAY_SECONDS
    for nonsense in ("-1", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", ""):
        assert parse_retry_after(nonsense) is None


def test_only_429_is_resent_for_a_request_that_is_not_idempotent() -> None:
    assert retryable_status(429, idempotent=False)
    assert not any(retryable_status(s, idempotent=False) for s in (500, 502, 503, 504))
    assert all(retryable_status(s, idempotent=True) for s in (429, 500, 502, 503, 504))
    assert not any(retryable_status(s, idempotent=True) for s in (400, 401, 403, 404, 409, 422, 501))


def _status(*causes: object) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "message": 'Secret "x" is invalid: metadata.labels: Invalid value: "hunter2"',
            "details": {"causes": list(causes)},
            "code": 422,
        }
    ).encode()


def test_a_422_keeps_fields_and_fixed_words_never_messages() -> None:
    payload = _status(
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "hunter2"', "field": "metadata.labels"},
        {"reason": "FieldValueTooLong", "message": "Too long: 262144", "field": "metadata.annotations"},
        {"reason": "FieldValueRequired", "message": "Required value", "field": "data[tls.crt]"},
        {"reason": "SomethingNew", "message": "hunter2", "field": "spec.x"},
    )
    assert invalid_fields(payload) == [
        "metadata.labels: Invalid value",
        "metadata.annotations: Too long",
        "data[tls.crt]: Required value",
        "spec.x: invalid",
    ]
    assert "hunter2" not in json.dumps(invalid_fields(payload))


def test_a_field_that_could_carry_a_value_is_dropped_and_causes_are_bounded() -> None:
    quoted = {"reason": "FieldValueInvalid", "field": 'data["hunter2 is here"]'}
    huge = {"reason": "FieldValueInvalid", "field": "a" * 1000}
    assert invalid_fields(_status(quoted, huge)) == ["Invalid value"]
    many = [{"reason": "FieldValueInvalid", "field": f"f{i}"} for i in range(50)]
    assert len(invalid_fields(_status(*many))) == MAX_CAUSES
    assert invalid_fields(b"not json") == invalid_fields(b'{"details": 3}') == []


def test_a_403_names_who_refused_in_fixed_words_never_the_message() -> None:
    def status(message: str) -> bytes:
        return json.dumps({"kind": "Status", "code": 403, "reason": "Forbidden", "message": message}).encode()

    quota = 'secrets "app" is forbidden: exceeded quota: q, requested: count/secrets=1'
    assert forbidden_cause(status(quota)) == "a ResourceQuota of the namespace"
    webhook = 'admission webhook "deny.example.com" denied the request: value "s3cret" not allowed'
    assert forbidden_cause(status(webhook)) == "an admission policy"
    rbac = 'secrets is forbidden: User "system:serviceaccount:x:y" cannot create resource "secrets"'
    assert forbidden_cause(status(rbac)) == "RBAC"
    assert forbidden_cause(b"not json") == "RBAC"
