"""Authentication and authorization are real: the TokenRequest API issues ServiceAccount
tokens, TokenReview validates them, and RBAC decides what they may read."""

import pytest
from kubernetes import client

from tests.env.kube import Cluster, KubeApi, bearer_token_api
from tests.env.waiting import NotYet, eventually

pytestmark = pytest.mark.e2e

ACCOUNT = "reader"


def _token(api: KubeApi, namespace: str) -> str:
    api.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=ACCOUNT))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    issued = api.core.create_namespaced_service_account_token(ACCOUNT, namespace, request)
    return str(issued.status.token)


def _list_secrets(api: KubeApi, namespace: str) -> tuple[int, str]:
    """The HTTP status of listing Secrets, and the API server's message when refused."""
    try:
        api.core.list_namespaced_secret(namespace)
    except client.ApiException as exc:
        return int(exc.status), str(exc.body)
    return 200, ""


def _grant_secret_reading(api: KubeApi, namespace: str) -> None:
    api.rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="secret-reader"),
            rules=[
                client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list", "watch"])
            ],
        ),
    )
    api.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="secret-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="secret-reader"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=ACCOUNT, namespace=namespace)],
        ),
    )


def test_token_request_issues_a_token_that_token_review_accepts(kube_api: KubeApi, namespace: str) -> None:
    token = _token(kube_api, namespace)

    review = kube_api.authentication.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )

    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:{ACCOUNT}"


def test_a_service_account_reads_secrets_only_once_a_role_allows_it(
    cluster: Cluster, kube_api: KubeApi, namespace: str
) -> None:
    user = f"system:serviceaccount:{namespace}:{ACCOUNT}"
    as_account = bearer_token_api(cluster.kubeconfig, _token(kube_api, namespace))
    try:
        status, message = _list_secrets(as_account, namespace)
        assert status == 403
        assert f'User \\"{user}\\" cannot list resource \\"secrets\\"' in message, message

        _grant_secret_reading(kube_api, namespace)

        def allowed() -> None:
            status, message = _list_secrets(as_account, namespace)
            if status != 200:
                raise NotYet(f"listing Secrets answered {status}: {message}")

        eventually(allowed, what="RBAC to allow the ServiceAccount to list Secrets")
        assert _list_secrets(as_account, "default")[0] == 403
    finally:
        as_account.client.close()
