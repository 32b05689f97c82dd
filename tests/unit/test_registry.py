"""kopf's per-object memories are not stored: vaultsync has only `on.event` handlers, and
keeping one record per ExternalSecret and Secret cost ~1.5 KiB each (24 MiB at 10,000)."""

import asyncio

import kopf

from vaultsync.registry import REGISTRY, UnstoredMemories


def _body(uid: str) -> dict[str, object]:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "team"}}


def test_each_event_gets_a_fresh_memory_that_is_not_kept() -> None:
    memories = UnstoredMemories()

    async def recall_twice() -> bool:
        first = await memories.recall(_body("a"), memobase=kopf.Memo(), noticed_by_listing=True)
        second = await memories.recall(_body("a"), memobase=kopf.Memo())
        return first is not second

    assert asyncio.run(recall_twice())
    assert list(memories.iter_all_memories()) == []


def test_the_registry_is_not_kopfs_default_one() -> None:
    """kopf's default registry imports the official kubernetes client when it is installed."""
    assert type(REGISTRY) is kopf.OperatorRegistry
