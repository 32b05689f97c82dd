"""moto's server with one fix, so the tests see what AWS does when a version is rolled back.

moto 5.2 keeps reading the version last put (its `default_version_id`) after
UpdateSecretVersionStage moved AWSCURRENT elsewhere; AWS reads whatever AWSCURRENT
points at, which is how a rotation is rolled back. This entry point makes moto move
its default along with AWSCURRENT, then runs moto's own server unchanged.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.secretsmanager.models import SecretsManagerBackend
from moto.server import main

_update_stage = SecretsManagerBackend.update_secret_version_stage


def _update_stage_and_default(
    self: SecretsManagerBackend,
    secret_id: str,
    version_stage: str,
    remove_from_version_id: str,
    move_to_version_id: str,
) -> Any:
    answer = _update_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
    if version_stage == "AWSCURRENT" and move_to_version_id:
        self.secrets[secret_id].set_default_version_id(move_to_version_id)
    return answer


SecretsManagerBackend.update_secret_version_stage = _update_stage_and_default  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
