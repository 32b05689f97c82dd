"""The kopf registry that holds vaultsync's handlers, made explicitly on purpose.

kopf's default registry probes for the official `kubernetes` client and imports it
(about 43 MiB resident) so it can borrow that client's login. vaultsync logs in with
kopf's own kubeconfig and ServiceAccount readers (`kube.connection_info`), so with
an explicit registry the client is never loaded into the operator.
"""

from __future__ import annotations

import kopf

REGISTRY = kopf.OperatorRegistry()
