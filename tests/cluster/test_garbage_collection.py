"""The garbage collector deletes dependents with the owner they reference, which the
operator relies on for Secrets it creates with creationPolicy Owner."""

import pytest
from kubernetes import client

from tests.env.kube import KubeApi
from tests.env.waiting import NotYet, eventually

pytestmark = pytest.mark.e2e


def _config_map(name: str, owner: client.V1ConfigMap | None = None) -> client.V1ConfigMap:
    references = None
    if owner is not None:
        references = [
            client.V1OwnerReference(
                api_version="v1", kind="ConfigMap", name=owner.metadata.name, uid=owner.metadata.uid
            )
        ]
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, owner_references=references), data={"k": "v"}
    )


def test_deleting_an_owner_garbage_collects_its_dependent(kube_api: KubeApi, namespace: str) -> None:
    owner = kube_api.core.create_namespaced_config_map(namespace, _config_map("owner"))
    kube_api.core.create_namespaced_config_map(namespace, _config_map("dependent", owner))
    kube_api.core.create_namespaced_config_map(namespace, _config_map("bystander"))

    kube_api.core.delete_namespaced_config_map("owner", namespace)

    def dependent_is_gone() -> None:
        try:
            kube_api.core.read_namespaced_config_map("dependent", namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        raise NotYet("the dependent ConfigMap still exists")

    eventually(dependent_is_gone, what="the garbage collector to delete the dependent")
    assert kube_api.core.read_namespaced_config_map("bystander", namespace).data == {"k": "v"}
