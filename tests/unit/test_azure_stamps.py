"""Azure Key Vault's change-detection stamps from whole-second times (pure logic).

A listing shows each secret's `updated` time in whole seconds. A value read within that
second could be followed by another version in the same second, which would list the same
time; so such a read carries no stamp and the value is read again at its next refresh.
"""

from __future__ import annotations

from datetime import UTC, datetime

from azure.keyvault.secrets import SecretProperties

from vaultsync.providers.azure import listed_stamp, read_stamp

UPDATED = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)
SECOND = str(int(UPDATED.timestamp()))


def test_a_value_served_after_its_second_is_stamped_with_that_second() -> None:
    assert read_stamp(UPDATED, "Mon, 30 Nov 2026 09:00:01 GMT") == SECOND
    assert read_stamp(UPDATED, "Mon, 30 Nov 2026 10:00:00 GMT") == SECOND


def test_a_value_served_within_its_own_second_has_no_stamp() -> None:
    assert read_stamp(UPDATED, "Mon, 30 Nov 2026 09:00:00 GMT") == ""
    assert read_stamp(UPDATED, "Mon, 30 Nov 2026 08:59:58 GMT") == ""  # a vault clock behind


def test_without_a_date_or_an_updated_time_there_is_no_stamp() -> None:
    assert read_stamp(UPDATED, "") == ""
    assert read_stamp(UPDATED, "not a date") == ""
    assert read_stamp(None, "Mon, 30 Nov 2026 09:00:01 GMT") == ""


def test_a_listed_secret_has_the_stamp_a_read_of_it_would_have() -> None:
    enabled = SecretProperties(Attributes(enabled=True), "https://v.vault.azure.net/secrets/db")
    assert listed_stamp(enabled) == read_stamp(UPDATED, "Mon, 30 Nov 2026 09:00:05 GMT") == SECOND


def test_a_disabled_secret_is_listed_as_gone_so_it_is_read_and_the_read_says_why() -> None:
    disabled = SecretProperties(Attributes(enabled=False), "https://v.vault.azure.net/secrets/db")
    assert listed_stamp(disabled) is None


class Attributes:
    """The attributes of a listed item, as the SDK hands them to `SecretProperties`."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.updated = UPDATED
        self.created = UPDATED
        self.not_before = self.expires = None
        self.recovery_level = "Recoverable"
        self.recoverable_days = 90
