"""Every version the test environment pins, in one place.

The Go wrapper modules under `tests/env/go/` require the same versions; the builder refuses
to build when a go.mod disagrees with this file, so the two cannot drift apart silently.
"""

from typing import Final

KUBERNETES: Final = "v1.36.3"
# Kubernetes publishes its staging modules (k8s.io/api, client-go, ...) as v0.<minor>.<patch>.
KUBERNETES_STAGING: Final = "v0.36.3"
ETCD: Final = "v3.6.16"
KWOK: Final = "v0.8.0"
HELM: Final = "v3.21.4"
# promtool checks the chart's alert rules; Prometheus 3.x is published as module v0.3xx.
PROMETHEUS: Final = "v0.316.0"
# The Lua interpreter (Lua 5.1, as Argo CD's gopher-lua) the Argo CD health checks are tested with.
LUPA: Final = "2.8"
# The fault proxy tests/chaos puts in front of moto and OpenBao.
TOXIPROXY: Final = "v2.5.0"

# Stamped into the Kubernetes binaries so that /version reports a real, reproducible build.
KUBERNETES_BUILD_DATE: Final = "2026-01-01T00:00:00Z"
