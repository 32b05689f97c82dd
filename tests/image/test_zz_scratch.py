from typing import Any
from tests.image import container as c
from tests.image.test_image_operator import *  # noqa
from tests.image.test_image_operator import _store_and_external_secret, _crd_names

PATCH = ("import functools, random, sys, kopf; from vaultsync import cli; "
         "kopf.operator = functools.partial(kopf.operator, priority=random.randrange(2**31)); "
         "sys.exit(cli.main(sys.argv[1:]))")

class Patched(c.OperatorContainer):
    def __enter__(self):
        c.docker("run", "--detach", "--name", self.name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
                 "--volume", f"{self._kubeconfig}:{c.KUBECONFIG_IN_CONTAINER}:ro",
                 "--env", f"KUBECONFIG={c.KUBECONFIG_IN_CONTAINER}",
                 "--env", f"VAULTSYNC_OPERATOR_NAMESPACE={self._operator_namespace}",
                 "--entrypoint", "python", c.IMAGE, "-c", PATCH, "run",
                 f"--health-port={self.health_port}", f"--metrics-port={self.metrics_port}", *self._args)
        self._wait_healthy()
        return self

def test_scratch(kube_api, install_crds, namespace, app_namespace, chart_rbac):
    kinds = RBAC_KINDS | {"KopfPeering"}
    if "kopfpeerings.kopf.dev" not in _crd_names(kube_api):
        kinds |= {"CustomResourceDefinition"}
    objects = chart_rbac.apply({"replicaCount": 2, "watchNamespaces": [app_namespace]}, namespace, kinds=kinds)
    account = next(m for m in objects if m["kind"] == "ServiceAccount")
    peering = next(m for m in objects if m["kind"] == "KopfPeering")["metadata"]["name"]
    args = [f"--namespace={app_namespace}", f"--peering={peering}"]
    kubeconfig = chart_rbac.kubeconfig(account)
    vs = Vaultsync(kube_api, app_namespace)
    with Patched(kubeconfig, namespace, args) as first, Patched(kubeconfig, namespace, args) as second:
        _store_and_external_secret(vs)
        vs.wait_data("db-creds", {"password": "from-the-image"}, timeout=30)
        def one_paused():
            paused = [x for x in (first, second) if "Pausing operations in favour" in x.logs()]
            assert len(paused) == 1
        eventually(one_paused, what="one standby")
        print("FIRST", first.logs()[-1500:]); print("SECOND", second.logs()[-1500:])
